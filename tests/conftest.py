"""Shared test set-up: every test starts with Python's own SIGINT handler.

A process started in the background of a non-interactive shell inherits SIGINT ignored, and
the run driver keeps an ignored SIGINT ignored (see ``lattice_samplers.signals``).  The tests
that send themselves a real SIGINT stand for a run in the foreground, so they get the handler
Python installs in a foreground process, whatever started pytest; it is put back afterwards.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def foreground_sigint() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
