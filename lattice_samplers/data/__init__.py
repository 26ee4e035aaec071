"""Data shipped with the package: the tuned beta(L) table (read via importlib.resources)."""
