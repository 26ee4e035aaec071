"""Test-only helpers (not part of the package)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import numpy as np

from lattice_samplers.driver import RunResult, RunSettings, run_sampler
from lattice_samplers.samplers import Sampler


def run_chains(
    sampler: Sampler,
    n_steps: int,
    *,
    n_therm: int = 0,
    thin: int = 1,
    n_chains: int = 1,
    seed: int = 0,
    block_size: int = 0,
    checkpoint_every: int = 0,
    workers: int = 0,
    callback: Any = None,
    **options: Any,
) -> RunResult:
    """:func:`run_sampler` with the lengths as keywords and a test's defaults (1 chain, no
    thermalization, seed 0), so that each test states only what it is about."""
    run = RunSettings(
        n_steps=n_steps,
        n_therm=n_therm,
        thin=thin,
        n_chains=n_chains,
        seed=seed,
        block_size=block_size,
        checkpoint_every=checkpoint_every,
        workers=workers,
    )
    return run_sampler(sampler, run, observer=callback, **options)


def assert_same_run(a: RunResult, b: RunResult) -> None:
    """Identical chains, bit for bit (timings aside)."""
    assert a.observables.keys() == b.observables.keys()
    for name in a.observables:
        np.testing.assert_array_equal(a.observables[name], b.observables[name], err_msg=name)
    for name in a.stats:
        np.testing.assert_array_equal(a.stats[name], b.stats[name], err_msg=name)
    np.testing.assert_array_equal(a.final_phi, b.final_phi)
    assert a.settings == b.settings
    assert a.work == b.work
    assert a.work_therm == b.work_therm
    assert a.chain_work == b.chain_work


def interrupt_after(n_blocks: int) -> Callable[[dict], None]:
    """A run callback that sends this process a real SIGINT after ``n_blocks`` blocks."""
    calls = {"n": 0}

    def callback(info: dict) -> None:
        calls["n"] += 1
        if calls["n"] == n_blocks:
            os.kill(os.getpid(), signal.SIGINT)

    return callback
