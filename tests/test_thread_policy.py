"""The torch thread policy: threads x processes never exceed the cores other work leaves free."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lattice_samplers.flows.train.config import (
    available_cores,
    busy_from_times,
    physical_cores,
    thread_policy,
)


def test_busy_from_times_counts_busy_fractions() -> None:
    before = {0: (1000, 500), 1: (1000, 900)}
    after = {0: (1100, 500), 1: (1100, 950)}  # cpu 0 fully busy, cpu 1 half busy
    assert busy_from_times(before, after) == pytest.approx(1.5)
    assert busy_from_times(before, before) == 0.0  # no ticks: nothing measured


@pytest.mark.parametrize(
    ("busy", "processes", "expected"),
    [(0.0, 1, None), (0.0, 2, None), (0.4, 1, None), (0.6, 1, -1), (99.0, 1, 1), (99.0, 4, 1)],
)
def test_policy_rounds_down_and_never_below_one(
    busy: float, processes: int, expected: int | None
) -> None:
    cores = physical_cores()
    if expected is None:
        expected = max(1, cores // processes)
    elif expected < 0:
        expected = max(1, cores - 1)
    assert thread_policy(processes, busy=busy) == expected
    if thread_policy(processes, busy=busy) > 1:
        assert thread_policy(processes, busy=busy) * processes <= cores


def test_policy_rejects_zero_processes() -> None:
    with pytest.raises(ValueError, match="processes"):
        thread_policy(0)


def test_policy_leaves_a_busy_process_its_core() -> None:
    """Beside a competing busy loop the measured policy picks fewer threads than the cores.

    The negative control is the old default, one thread per physical core, which on this
    2-core machine picks 2 threads here: the case measured at 10-100x slower.
    """
    cores = physical_cores()
    if cores < 2:
        pytest.skip("one core: every policy picks one thread")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it reach its core
        chosen = thread_policy(1)
        free = available_cores()
    finally:
        busy.kill()
        busy.wait()
    assert chosen <= cores - 1
    assert chosen == max(1, free)
    assert cores > chosen  # the old policy (physical_cores) would have oversubscribed
