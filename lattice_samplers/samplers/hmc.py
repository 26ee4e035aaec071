"""Hybrid (Hamiltonian) Monte Carlo with leapfrog or Omelyan integration.

A step is one trajectory: fresh Gaussian momenta, ``n_leapfrog`` integrator steps of
``step_size``, and a Metropolis test on delta_h = H_new - H_old.  The step size is tuned during
thermalization toward ``target_acceptance`` (default 0.8) and then frozen.  Per trajectory
the sampler records ``accepted``, ``acceptance_prob`` = min(1, exp(-delta_h)), ``delta_h``
and ``exp_minus_delta_h``, whose mean is Creutz's <exp(-delta_H)> (= 1 for an exact
integrator-plus-accept scheme in equilibrium).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lattice_samplers.kernels import hmc as khmc
from lattice_samplers.samplers.base import Sampler, State, check_fraction, check_positive

__all__ = ["HMCSampler", "HMCSettings"]

_INTEGRATORS = {"leapfrog": khmc.LEAPFROG, "omelyan": khmc.OMELYAN}


@dataclass(frozen=True)
class HMCSettings:
    """Settings of :class:`HMCSampler` (also the ``[sampler]`` config keys).

    Attributes
    ----------
    step_size : float
        Integrator step (initial value when ``tune``).
    n_leapfrog : int
        Integrator steps per trajectory.
    trajectory_length : float or None
        If set, ``n_leapfrog = max(1, round(trajectory_length / step_size))`` is derived from
        it (also after every tuning update), overriding the given ``n_leapfrog``.
    integrator : {"leapfrog", "omelyan"}
        Leapfrog (1 force evaluation per step) or Omelyan's 2nd-order minimum-norm scheme
        (2 per step, smaller energy error).
    omelyan_lambda : float
        Omelyan's parameter (minimum norm: 0.1931833...).
    target_acceptance : float
        Acceptance the step size is tuned to during thermalization.
    tune : bool
        Tune the step size during thermalization (then freeze it).
    metropolis : bool
        Accept/reject test (True).  False keeps every trajectory: not exact, but the
        free-field magnetization is then an exact AR(1) process (the autocorrelation oracle).
    """

    step_size: float = 0.1
    n_leapfrog: int = 10
    trajectory_length: float | None = None
    integrator: Literal["leapfrog", "omelyan"] = "leapfrog"
    omelyan_lambda: float = khmc.OMELYAN_LAMBDA
    target_acceptance: float = 0.8
    tune: bool = True
    metropolis: bool = True

    def __post_init__(self) -> None:
        check_positive("step_size", self.step_size)
        if self.n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be >= 1, got {self.n_leapfrog}")
        if self.trajectory_length is not None:
            check_positive("trajectory_length", self.trajectory_length)
            n = max(1, round(self.trajectory_length / self.step_size))
            object.__setattr__(self, "n_leapfrog", int(n))
        if self.integrator not in _INTEGRATORS:
            raise ValueError(f"integrator must be 'leapfrog' or 'omelyan', got {self.integrator!r}")
        if not 0.0 < self.omelyan_lambda < 0.5:
            raise ValueError(f"omelyan_lambda must be in (0, 0.5), got {self.omelyan_lambda}")
        check_fraction("target_acceptance", self.target_acceptance)


class HMCSampler(Sampler):
    """HMC sampler (numba); one step = one trajectory.

    State caches: ``force`` (dS/dphi at the current field, so a trajectory costs n_leapfrog
    force evaluations with leapfrog, 2 n_leapfrog with Omelyan) and ``momentum``.
    """

    kind = "hmc"
    settings_class = HMCSettings
    stat_names = khmc.HMC_STAT_NAMES
    tuned_setting = "step_size"
    tune_stat = "acceptance_prob"
    #: the compiled kernels (a test-only subclass may swap in broken twins)
    block_kernel = staticmethod(khmc.hmc_block)
    integrate_kernel = staticmethod(khmc.integrate)

    @property
    def integrator_code(self) -> int:
        """Kernel code of the configured integrator."""
        return _INTEGRATORS[self.settings.integrator]

    @property
    def forces_per_step(self) -> int:
        """Force evaluations per integrator step (2 for Omelyan)."""
        return 2 if self.integrator_code == khmc.OMELYAN else 1

    def init(self, phi0: np.ndarray | None = None, rng: np.random.Generator | None = None) -> State:
        """State with ``phi0`` (zeros if None), its action, observables, force and momentum.

        The momentum buffer starts at zero: every trajectory refreshes it first.
        """
        state = super().init(phi0, rng)
        phi, scalars = state.phi, state.scalars
        h, c2, c4 = self.theory.hopping
        force = np.zeros_like(phi)
        khmc.compute_force(phi, h, c2, c4, force)
        momentum = np.zeros_like(phi)
        return State(phi, scalars, {"force": force, "momentum": momentum})

    def run_block(
        self,
        state: State,
        n_steps: int,
        thin: int,
        rng: np.random.Generator,
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """Run ``n_steps`` trajectories in compiled code (see :meth:`Sampler.run_block`)."""
        s = self.settings
        h, c2, c4 = self.theory.hopping
        phi = state.phi
        self.block_kernel(
            phi,
            state.aux["force"],
            state.aux["momentum"],
            state.scalars,
            float(s.step_size),
            int(s.n_leapfrog),
            self.integrator_code,
            float(s.omelyan_lambda),
            bool(s.metropolis),
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
        """``steps`` (trajectories), ``leapfrog_steps`` and ``force_evaluations``."""
        n = int(stats.shape[0])
        n_lf = int(self.settings.n_leapfrog)
        return {
            "steps": n,
            "leapfrog_steps": n * n_lf,
            "force_evaluations": n * n_lf * self.forces_per_step,
        }

    def step_cost(self) -> float:
        """Rough cost in site updates (a leapfrog site-step is ~10x cheaper than a sweep's)."""
        return self.theory.volume * self.settings.n_leapfrog * self.forces_per_step / 8.0

    def _clip_tuned(self, value: float) -> float:
        # (n_leapfrog follows from trajectory_length in HMCSettings.__post_init__ if set.)
        # Above ~2 / omega_max leapfrog is unstable anyway; keep the search bounded.
        return float(min(max(value, 1e-5), 10.0))

    def integrate(
        self, phi: np.ndarray, momentum: np.ndarray, step_size: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One trajectory of the integrator alone (no refresh, no accept); returns copies.

        For tests of reversibility and energy conservation: with ``phi1, p1 = integrate(phi, p)``,
        ``integrate(phi1, -p1)`` returns to ``(phi, -p)`` up to rounding for a reversible scheme.
        """
        h, c2, c4 = self.theory.hopping
        phi = np.array(phi, dtype=np.float64, order="C", copy=True)
        mom = np.array(momentum, dtype=np.float64, order="C", copy=True)
        force = np.empty_like(phi)
        khmc.compute_force(phi, h, c2, c4, force)
        phi_out = np.empty_like(phi)
        eps = self.settings.step_size if step_size is None else float(step_size)
        self.integrate_kernel(
            phi,
            phi_out,
            mom,
            force,
            np.empty_like(phi),
            eps,
            int(self.settings.n_leapfrog),
            self.integrator_code,
            float(self.settings.omelyan_lambda),
            h,
            c2,
            c4,
        )
        phi = phi_out
        return phi, mom

    def hamiltonian(self, phi: np.ndarray, momentum: np.ndarray) -> float:
        """H = S(phi) + 1/2 sum pi^2 (full action with its constant)."""
        return float(self.theory.action(phi)) + 0.5 * float(np.sum(np.square(momentum)))
