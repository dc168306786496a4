"""The command line: the commands (main.py) and the references generated from them (docs.py, suite_reference.py).
`cli` is the command group, the `perfci` console script's entry point."""

from perfci.cli.main import cli

__all__ = ["cli"]
