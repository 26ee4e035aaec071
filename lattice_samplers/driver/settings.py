"""Run settings: chain lengths, seed, checkpoints, block size, workers (the ``[run]`` section).

Every default of a run is defined here once; the spec module, the workflows and the CLI take
them from :class:`RunSettings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["SINGLE_THREAD_ENV", "RunSettings", "usable_cores"]

#: Environment variables that, set to ``"1"``, ask this process to stay single-threaded (the
#: scan engine sets them for every task); ``workers = 0`` then runs the chains one by one.
SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class RunSettings:
    """Chain lengths and run options (the ``[run]`` config section).

    Attributes
    ----------
    n_therm : int
        Thermalization steps per chain (settings are tuned during the first 3/4).
    n_steps : int
        Production steps per chain.
    thin : int
        Record observables every ``thin`` steps (n_steps must be a multiple).
    n_chains : int
        Independent chains.
    seed : int
        Master seed (>= 0); chain streams come from ``SeedSequence(seed).spawn``.
    checkpoint_every : int
        Steps per chain between checkpoints (0: none by step count).
    checkpoint_interval_s : float
        Also checkpoint when this many seconds passed since the last save (0: never), so a
        killed run (SIGKILL, a crash, a batch system's hard limit) loses at most this much.
        A checkpoint is always written at the end and on SIGINT/SIGTERM.
    block_size : int
        Steps per compiled block (0: automatic, about 2e6 site updates per block).
    workers : int
        Threads that run the chains of a block concurrently (0: automatic, see
        :meth:`resolved_workers`).  Results do not depend on it: every chain has its own
        generator and state, and tuning uses all chains after each block as with one worker.
    """

    n_therm: int = 2000
    n_steps: int = 50_000
    thin: int = 1
    n_chains: int = 4
    seed: int = 2112
    checkpoint_every: int = 0
    checkpoint_interval_s: float = 300.0
    block_size: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        _positive_int("n_steps", self.n_steps)
        _positive_int("n_therm", self.n_therm, 0)
        _positive_int("thin", self.thin)
        _positive_int("n_chains", self.n_chains)
        _positive_int("seed", self.seed, 0)
        _positive_int("checkpoint_every", self.checkpoint_every, 0)
        _positive_int("block_size", self.block_size, 0)
        _positive_int("workers", self.workers, 0)
        if not (self.checkpoint_interval_s >= 0 and self.checkpoint_interval_s < float("inf")):
            raise ValueError(
                f"checkpoint_interval_s must be a finite number >= 0, "
                f"got {self.checkpoint_interval_s!r}"
            )
        if self.n_steps % self.thin:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of thin ({self.thin})")

    def resolved_workers(self) -> int:
        """Threads for the chains of a block: ``workers``, at most one per chain.

        ``workers = 0`` means ``min(n_chains, usable cores)``, except in a process asked to stay
        single-threaded (``OMP_NUM_THREADS`` or ``NUMBA_NUM_THREADS`` set to ``1``, as the scan
        engine does for its tasks, which are parallel across tasks instead): then 1.  An
        explicit ``workers`` is used as given (capped at ``n_chains``).
        """
        if self.workers > 0:
            return min(int(self.workers), self.n_chains)
        if any(os.environ.get(k, "").strip() == "1" for k in SINGLE_THREAD_ENV):
            return 1
        return min(self.n_chains, usable_cores())
