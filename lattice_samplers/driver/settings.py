"""Run settings: chain lengths, seed, checkpoint interval and block size (the ``[run]`` section).

Every default of a run is defined here once; the spec module, the workflows and the CLI take
them from :class:`RunSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RunSettings"]


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
    """

    n_therm: int = 2000
    n_steps: int = 50_000
    thin: int = 1
    n_chains: int = 4
    seed: int = 2112
    checkpoint_every: int = 0
    checkpoint_interval_s: float = 300.0
    block_size: int = 0

    def __post_init__(self) -> None:
        _positive_int("n_steps", self.n_steps)
        _positive_int("n_therm", self.n_therm, 0)
        _positive_int("thin", self.thin)
        _positive_int("n_chains", self.n_chains)
        _positive_int("seed", self.seed, 0)
        _positive_int("checkpoint_every", self.checkpoint_every, 0)
        _positive_int("block_size", self.block_size, 0)
        if not (self.checkpoint_interval_s >= 0 and self.checkpoint_interval_s < float("inf")):
            raise ValueError(
                f"checkpoint_interval_s must be a finite number >= 0, "
                f"got {self.checkpoint_interval_s!r}"
            )
        if self.n_steps % self.thin:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of thin ({self.thin})")
