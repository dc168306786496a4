"""Packages perfci puts on an engine's path in place of one it cannot install (see each package's docstring).
This directory itself goes on PYTHONPATH, so only the stand-in packages are importable from it."""
