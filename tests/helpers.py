"""Test-only helpers (not part of the package)."""

from __future__ import annotations

from typing import Any

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
    )
    return run_sampler(sampler, run, observer=callback, **options)
