"""The record of a run: several chains of one sampler and everything needed to interpret them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lattice_samplers.kernels.common import N_OBS
from lattice_samplers.samplers.base import Chain, State
from lattice_samplers.theory import Phi4Theory

__all__ = ["RunResult"]


@dataclass(eq=False)
class RunResult:
    """Several chains of one sampler: (chain, draw) series plus everything to interpret them.

    Attributes
    ----------
    sampler : str
        Sampler kind.
    theory : Phi4Theory
        The theory sampled.
    observables : dict of str to ndarray, shape (n_chains, n_draws)
        Scalar observables (:data:`OBSERVABLE_NAMES`, definitions of
        :mod:`lattice_samplers.observables`), in the theory's field normalization.
    stats : dict of str to ndarray, shape (n_chains, n_draws)
        Per-step sampler statistics (``accepted``, ``delta_h``, ...), averaged over each
        window of ``thin`` steps.
    settings : dict
        Sampler settings after tuning (JSON-ready).
    initial_settings : dict
        Settings before tuning.
    work, work_therm : dict of str to int
        Hardware-neutral counters of production and thermalization, summed over chains.
    wall_time_s, therm_time_s : float
        Elapsed seconds of production / thermalization (from dispatching each block to the
        end of its last chain), JIT excluded; smaller than the core seconds when chains run
        in parallel (``[run] workers``).
    core_time_s, therm_core_time_s : float
        Seconds in production / thermalization blocks summed over chains: the
        hardware-neutral time used for cost comparisons (independent of ``workers`` up to
        contention for cores).  Equal to ``sum(chain_wall_time_s)``.
    compile_time_s : float
        Seconds of :meth:`Sampler.warmup` (JIT compilation or cache load).
    n_steps, n_therm, thin, n_chains, seed : int
        The run's lengths and master seed.
    chain_wall_time_s : list of float
        Production seconds per chain.
    chain_work : list of dict
        Production work counters per chain.
    final_phi : ndarray, shape (n_chains, L, L)
        Each chain's last field.
    versions : dict of str to str
        Package versions (:func:`versions`).
    config : dict or None
        The full configuration, if the run came from one.
    workers : int
        Threads that ran the chains (1: one after the other); explains wall against core time.
    """

    sampler: str
    theory: Phi4Theory
    observables: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    settings: dict[str, Any]
    initial_settings: dict[str, Any]
    work: dict[str, int]
    work_therm: dict[str, int]
    wall_time_s: float
    core_time_s: float
    therm_time_s: float
    therm_core_time_s: float
    compile_time_s: float
    n_steps: int
    n_therm: int
    thin: int
    n_chains: int
    seed: int
    chain_wall_time_s: list[float]
    chain_work: list[dict[str, int]]
    final_phi: np.ndarray
    versions: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    workers: int = 1

    @property
    def n_draws(self) -> int:
        """Draws per chain, n_steps // thin."""
        return self.n_steps // self.thin

    @property
    def acceptance(self) -> float:
        """Mean of the ``accepted`` statistic over all chains and steps."""
        acc = self.stats.get("accepted")
        return float(np.mean(acc)) if acc is not None and acc.size else math.nan

    @property
    def chain_seeds(self) -> list[dict[str, Any]]:
        """The SeedSequence of each chain: ``{"entropy": seed, "spawn_key": [i]}``."""
        return [{"entropy": self.seed, "spawn_key": [i]} for i in range(self.n_chains)]

    def chain(self, i: int) -> Chain:
        """The record of chain ``i`` (its final state holds only the field)."""
        return Chain(
            observables={k: v[i] for k, v in self.observables.items()},
            stats={k: v[i] for k, v in self.stats.items()},
            n_steps=self.n_steps,
            thin=self.thin,
            work=dict(self.chain_work[i]),
            wall_time_s=self.chain_wall_time_s[i],
            settings=dict(self.settings),
            state=State(self.final_phi[i].copy(), np.full(1 + N_OBS, np.nan)),
        )
