"""The command line: the commands (main.py) and the references generated from them (docs.py, suite_reference.py)."""
