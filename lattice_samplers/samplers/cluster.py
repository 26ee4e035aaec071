"""Wolff single-cluster updates of the embedded Ising signs, composed with Metropolis sweeps.

A step is ``n_clusters`` Wolff updates (Brower-Tamayo bond probability
p = 1 - exp(-2 h |phi_x phi_y|) between same-sign neighbours; the cluster's signs flip) followed
by ``n_sweeps`` local Metropolis sweeps, which change |phi| and make the chain ergodic.  The
sweeps' proposal width is tuned during thermalization like :class:`MetropolisSampler`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lattice_samplers.kernels import cluster as kcl
from lattice_samplers.samplers.base import Sampler, State, check_fraction, check_positive

__all__ = ["ClusterSampler", "ClusterSettings"]


@dataclass(frozen=True)
class ClusterSettings:
    """Settings of :class:`ClusterSampler` (also the ``[sampler]`` config keys).

    Attributes
    ----------
    n_clusters : int
        Wolff cluster updates per step.
    n_sweeps : int
        Metropolis sweeps per step (after the cluster updates); at least 1 for ergodicity.
    width, n_hits, order, target_acceptance, tune
        The sweeps' settings, as in :class:`~lattice_samplers.samplers.MetropolisSettings`.
    """

    n_clusters: int = 1
    n_sweeps: int = 1
    width: float = 1.0
    n_hits: int = 1
    order: Literal["checkerboard", "lexicographic"] = "checkerboard"
    target_acceptance: float = 0.5
    tune: bool = True

    def __post_init__(self) -> None:
        if self.n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {self.n_clusters}")
        if self.n_sweeps < 1:
            raise ValueError(
                f"n_sweeps must be >= 1 (cluster flips leave |phi| unchanged), got {self.n_sweeps}"
            )
        check_positive("width", self.width)
        if self.n_hits < 1:
            raise ValueError(f"n_hits must be >= 1, got {self.n_hits}")
        if self.order not in ("checkerboard", "lexicographic"):
            raise ValueError(f"order must be 'checkerboard' or 'lexicographic', got {self.order!r}")
        check_fraction("target_acceptance", self.target_acceptance)


class ClusterSampler(Sampler):
    """Wolff cluster + Metropolis sampler (numba); one step = clusters + sweeps.

    Statistics per step: ``accepted`` (fraction of accepted sweep proposals),
    ``sites_flipped`` (sum over the step's clusters) and ``cluster_size`` (their mean).
    Work: ``site_updates``, ``cluster_updates``, ``cluster_sites_flipped``.
    """

    kind = "cluster"
    settings_class = ClusterSettings
    stat_names = kcl.CLUSTER_STAT_NAMES
    tuned_setting = "width"
    #: the compiled block of steps (a test-only subclass may swap in a broken twin)
    block_kernel = staticmethod(kcl.cluster_block)

    def _check_theory(self) -> None:
        if self.theory.h < 0:
            raise ValueError(
                f"the cluster update needs a ferromagnetic hopping coefficient h >= 0, "
                f"got h = {self.theory.h:g}"
            )

    def run_block(
        self,
        state: State,
        n_steps: int,
        thin: int,
        rng: np.random.Generator,
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """Run ``n_steps`` cluster steps in compiled code (see :meth:`Sampler.run_block`)."""
        s = self.settings
        h, c2, c4 = self.theory.hopping
        self.block_kernel(
            state.phi,
            state.scalars,
            np.empty((2, self.theory.volume + 1), dtype=np.int64),
            int(s.n_clusters),
            int(s.n_sweeps),
            float(s.width),
            int(s.n_hits),
            s.order == "checkerboard",
            h,
            c2,
            c4,
            self.theory.c0,
            rng,
            int(n_steps),
            int(thin),
            obs_out,
            stats_out,
        )

    def work(self, stats: np.ndarray) -> dict[str, int]:
        """``steps``, ``site_updates``, ``cluster_updates``, ``cluster_sites_flipped``."""
        n = int(stats.shape[0])
        s = self.settings
        flipped = int(round(float(stats[:, 1].sum()))) if n else 0
        return {
            "steps": n,
            "site_updates": n * self.theory.volume * s.n_hits * s.n_sweeps,
            "cluster_updates": n * s.n_clusters,
            "cluster_sites_flipped": flipped,
        }

    def step_cost(self) -> float:
        """Rough cost in site updates (sweeps plus at most one site per cluster site)."""
        s = self.settings
        return float(self.theory.volume * (s.n_hits * s.n_sweeps + s.n_clusters))
