"""Numba kernels: pure functions over arrays with an explicit Generator (no I/O, no globals)."""
