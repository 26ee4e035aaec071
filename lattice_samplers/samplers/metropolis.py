"""Local Metropolis: full sweeps of single-site updates with a uniform proposal.

A step is one sweep: every site gets ``n_hits`` proposals phi_x -> phi_x + d with
d ~ U(-width, width), accepted on the exact local change of the action.  The width is tuned
during thermalization toward ``target_acceptance`` and then frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lattice_samplers.kernels import metropolis as kmet
from lattice_samplers.samplers.base import Sampler, State, check_fraction, check_positive

__all__ = ["MetropolisSampler", "MetropolisSettings"]


@dataclass(frozen=True)
class MetropolisSettings:
    """Settings of :class:`MetropolisSampler` (also the ``[sampler]`` config keys).

    Attributes
    ----------
    width : float
        Half-width of the uniform proposal (initial value when ``tune``).
    n_hits : int
        Proposals per site per sweep (multi-hit).
    order : {"checkerboard", "lexicographic"}
        Site order within a sweep; checkerboard (even then odd sites) is faster because
        consecutive updates do not depend on each other.
    target_acceptance : float
        Acceptance the width is tuned to during thermalization.
    tune : bool
        Tune the width during thermalization (then freeze it).
    """

    width: float = 1.0
    n_hits: int = 1
    order: Literal["checkerboard", "lexicographic"] = "checkerboard"
    target_acceptance: float = 0.5
    tune: bool = True

    def __post_init__(self) -> None:
        check_positive("width", self.width)
        if self.n_hits < 1:
            raise ValueError(f"n_hits must be >= 1, got {self.n_hits}")
        if self.order not in ("checkerboard", "lexicographic"):
            raise ValueError(f"order must be 'checkerboard' or 'lexicographic', got {self.order!r}")
        check_fraction("target_acceptance", self.target_acceptance)


class MetropolisSampler(Sampler):
    """Local Metropolis sampler (numba); one step = one full sweep.

    Statistics per step: ``accepted``, the fraction of accepted proposals in the sweep.
    Work: ``site_updates`` = V * n_hits per sweep.
    """

    kind = "metropolis"
    settings_class = MetropolisSettings
    stat_names = ("accepted",)
    tuned_setting = "width"
    #: the compiled block of sweeps (a test-only subclass may swap in a broken twin)
    block_kernel = staticmethod(kmet.metropolis_block)

    def run_block(
        self,
        state: State,
        n_steps: int,
        thin: int,
        rng: np.random.Generator,
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """Run ``n_steps`` sweeps in compiled code (see :meth:`Sampler.run_block`)."""
        s = self.settings
        h, c2, c4 = self.theory.hopping
        self.block_kernel(
            state.phi,
            state.scalars,
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
        """``steps`` and ``site_updates`` (single-site proposals)."""
        n = int(stats.shape[0])
        return {"steps": n, "site_updates": n * self.theory.volume * self.settings.n_hits}

    def step_cost(self) -> float:
        """Site updates per sweep."""
        return float(self.theory.volume * self.settings.n_hits)
