"""Shared test set-up: every test starts with Python's own SIGINT handler; ``one_torch_thread``.

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


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module of many tiny tensor ops (extra intra-op threads only
    contend on a shared machine); the count is put back afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
