"""Bisection: the pure search (core.py) and what drives it on real builds and the store (drivers.py)."""
