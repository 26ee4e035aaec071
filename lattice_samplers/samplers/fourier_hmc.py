"""Fourier-accelerated HMC: HMC in the variables of the exact free-field map.

The map is phi = A z, A = F^-1 sqrt(G~(k)) F, with the free propagator

    G~(k) = 1 / (h (khat^2 + M^2)),   khat^2 = 4 sin^2(k1/2) + 4 sin^2(k2/2),  k = 2 pi n / L,

of the hopping form S = sum[-h sum_mu phi phi_{+mu} + c2 phi^2 + c4 phi^4]: its Gaussian part
is 1/2 phi^T [h (-Laplacian) + 2 (c2 - 2 h)] phi, so M^2 = 2 (c2 - 2 h) / h is the free field
itself (see :mod:`lattice_samplers.kernels.fourier` for the derivation).  HMC on z with
H = |p|^2 / 2 + S(A z) is, in phi, HMC with the kinetic term pi G~ pi / 2: every free mode
oscillates with period 2 pi, so the natural trajectory length is pi / 2 (an exact
independent draw for the free field with the matching mass), whatever the correlation length.

The mass is the setting ``mass`` (M in lattice units; None: :func:`default_mass2`, the free
value if above (4/L)^2, else (4/L)^2, i.e. xi = L/4; valid for every theory, including a
negative quadratic coefficient).  Any M > 0 is exact.

A step is one trajectory: fresh momenta p ~ N(0, 1) (the velocity u = A p, one FFT round
trip), ``n_leapfrog`` leapfrog (or Omelyan) steps of ``step_size`` (each one local force and
one FFT round trip), the kinetic energy |p|^2 / 2 = u^T G^-1 u / 2 (one forward FFT), and the
Metropolis test on delta_h = H_new - H_old (accept if log(u) < -delta_h).  The step size is
tuned during thermalization toward ``target_acceptance`` like :mod:`~.hmc`.

Reversibility: every ``reversibility_every``-th trajectory of a chain is integrated back from
(phi', -u'); the statistics ``reverse_max_dz`` (max |z_back - z| = max |A^-1 (phi_back - phi)|)
and ``reverse_abs_dh`` (|H_back - H|) record it (0 on the other trajectories).

No torch on this path: NumPy/SciPy real FFTs (``fft_workers`` threads) and numba passes on
batches of fields; a chain is a batch of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lattice_samplers.kernels import fourier as kf
from lattice_samplers.kernels.common import accept_test, measure_into
from lattice_samplers.samplers.base import (
    BatchedChainsSampler,
    State,
    check_fraction,
    check_positive,
)

__all__ = ["FourierHMCSampler", "FourierHMCSettings"]

#: Omelyan's minimum-norm parameter (as in :mod:`lattice_samplers.kernels.hmc`).
OMELYAN_LAMBDA = 0.1931833275037836

#: per-trajectory statistics, in column order
FOURIER_HMC_STAT_NAMES: tuple[str, ...] = (
    "accepted",
    "acceptance_prob",
    "delta_h",
    "exp_minus_delta_h",
    "reverse_max_dz",
    "reverse_abs_dh",
)


@dataclass(frozen=True)
class FourierHMCSettings:
    """Settings of :class:`FourierHMCSampler` (the ``[fourier_hmc]`` config section).

    Attributes
    ----------
    step_size : float
        Integrator step in the natural time of the Fourier kinetic term (initial value when
        ``tune``).
    n_leapfrog : int
        Integrator steps per trajectory (derived from ``trajectory_length`` when that is set).
    trajectory_length : float or None
        Default pi / 2; ``n_leapfrog = max(1, round(trajectory_length / step_size))``, also
        after every tuning update.  None: use ``n_leapfrog`` as given.
    integrator : {"leapfrog", "omelyan"}
        One, or two, force evaluations and FFT round trips per step.
    omelyan_lambda : float
        Omelyan's parameter.
    mass : float or None
        M of the propagator 1 / (h (khat^2 + M^2)); None: the default of the module docstring.
    target_acceptance : float
        Acceptance the step size is tuned to during thermalization.
    tune : bool
        Tune the step size during thermalization (then freeze it).
    metropolis : bool
        Accept/reject test (True).  False keeps every trajectory: not exact; for the free field
        the magnetization is then an exact AR(1) process (the autocorrelation oracle).
    fft_workers : int
        Threads of each SciPy FFT (1: chains already run in parallel with ``[run] workers``).
    reversibility_every : int
        Integrate every n-th trajectory back to check reversibility (0: never).
    """

    step_size: float = 0.25
    n_leapfrog: int = 6
    trajectory_length: float | None = math.pi / 2
    integrator: Literal["leapfrog", "omelyan"] = "leapfrog"
    omelyan_lambda: float = OMELYAN_LAMBDA
    mass: float | None = None
    target_acceptance: float = 0.8
    tune: bool = True
    metropolis: bool = True
    fft_workers: int = 1
    reversibility_every: int = 100

    def __post_init__(self) -> None:
        check_positive("step_size", self.step_size)
        if self.n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be >= 1, got {self.n_leapfrog}")
        if self.trajectory_length is not None:
            check_positive("trajectory_length", self.trajectory_length)
            n = max(1, round(self.trajectory_length / self.step_size))
            object.__setattr__(self, "n_leapfrog", int(n))
        if self.integrator not in ("leapfrog", "omelyan"):
            raise ValueError(f"integrator must be 'leapfrog' or 'omelyan', got {self.integrator!r}")
        if not 0.0 < self.omelyan_lambda < 0.5:
            raise ValueError(f"omelyan_lambda must be in (0, 0.5), got {self.omelyan_lambda}")
        if self.mass is not None:
            check_positive("mass", self.mass)
        check_fraction("target_acceptance", self.target_acceptance)
        if self.fft_workers < 1:
            raise ValueError(f"fft_workers must be >= 1, got {self.fft_workers}")
        if self.reversibility_every < 0:
            raise ValueError(f"reversibility_every must be >= 0, got {self.reversibility_every}")


class _Buffers:
    """Preallocated work arrays of a batch of n fields: trajectories allocate nothing."""

    def __init__(self, n: int, shape: tuple[int, int]) -> None:
        L0, L1 = shape
        self.force = np.empty((n, L0, L1))
        self.gforce = np.empty((n, L0, L1))
        self.velocity = np.empty((n, L0, L1))
        self.xi = np.empty((n, L0, L1))
        self.proposal = np.empty((n, L0, L1))
        self.spectrum = np.empty((n, L0, L1 // 2 + 1), dtype=np.complex128)
        self.kinetic = np.empty(n)


class FourierHMCSampler(BatchedChainsSampler):
    """Fourier-accelerated HMC (see the module docstring); one step = one trajectory.

    State caches: ``gforce`` (G dS/dphi at the current field, so a leapfrog trajectory costs
    n_leapfrog force evaluations) and ``trajectories`` (trajectories run, for the
    reversibility schedule).

    Test-only variants are subclasses in the tests that override :meth:`_integrate` (a
    non-reversible integrator) or :meth:`_fresh_velocity` (no momentum refresh).
    """

    kind = "fourier_hmc"
    settings_class = FourierHMCSettings
    stat_names = FOURIER_HMC_STAT_NAMES
    tuned_setting = "step_size"
    tune_stat = "acceptance_prob"

    def _check_theory(self) -> None:
        if not self.theory.h > 0:
            raise ValueError(
                f"fourier_hmc needs a positive hopping coefficient, h = {self.theory.h}"
            )
        self._ops_key: float | None = None

    # ------------------------------------------------------------------ the map
    @property
    def mass2(self) -> float:
        """M^2 of the propagator (the setting squared, or the default)."""
        if self.settings.mass is not None:
            return float(self.settings.mass) ** 2
        h, c2, _ = self.theory.hopping
        return kf.default_mass2(self.theory.L, h, c2)

    def _ops(self) -> None:
        """(Re)build the propagator and its derived arrays when the mass changed."""
        m2 = self.mass2
        if self._ops_key == m2:
            return
        L0, L1 = self.theory.shape
        self.propagator = kf.free_propagator(L0, L1, self.theory.h, m2)
        self.sqrt_propagator = np.sqrt(self.propagator)
        self.inv_sqrt_propagator = 1.0 / self.sqrt_propagator
        self.weights = kf.kinetic_weights(self.propagator, L1)
        self._ops_key = m2

    def _buffers(self, n: int = 1) -> _Buffers:
        """Work arrays for a batch of ``n`` fields (one set per block and thread)."""
        self._ops()
        return _Buffers(n, self.theory.shape)

    def gforce(self, phi: np.ndarray, buf: _Buffers | None = None) -> np.ndarray:
        """G dS/dphi for a batch of fields (n, L, L): the kick of the velocity u.

        With ``buf`` the result is ``buf.gforce`` (overwritten by the next call), else new.
        """
        buf = buf if buf is not None else self._buffers(phi.shape[0])
        h, c2, c4 = self.theory.hopping
        kf.force_into(phi, h, c2, c4, buf.force)
        w = self.settings.fft_workers
        return kf.apply_propagator(buf.force, self.propagator, buf.spectrum, buf.gforce, w)

    def to_latent(self, phi: np.ndarray) -> np.ndarray:
        """The latent field z = A^-1 phi of a batch of fields (reversibility measure, tests)."""
        buf = self._buffers(phi.shape[0])
        w = self.settings.fft_workers
        return kf.apply_propagator(phi, self.inv_sqrt_propagator, buf.spectrum, buf.force, w)

    def kinetic(self, u: np.ndarray, buf: _Buffers | None = None) -> np.ndarray:
        """u^T G^-1 u / 2 (= |p|^2 / 2) for each velocity field of a batch."""
        buf = buf if buf is not None else self._buffers(u.shape[0])
        w = self.settings.fft_workers
        return kf.kinetic_energy(u, self.weights, buf.spectrum, buf.kinetic, w)

    # ------------------------------------------------------------------ Sampler interface
    def init(self, phi0: np.ndarray | None = None, rng: np.random.Generator | None = None) -> State:
        """State with ``phi0`` (zeros if None), its observables, G dS/dphi and a counter."""
        state = super().init(phi0, rng)
        gforce = self.gforce(state.phi[None])[0]
        return State(state.phi, state.scalars, {"gforce": gforce, "trajectories": np.zeros(1)})

    def _fresh_velocity(
        self, states: list[State], rngs: list[np.random.Generator], buf: _Buffers
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fresh velocities u = A p, p ~ N(0, 1) drawn into ``buf.xi``: (u, |p|^2 / 2).

        Each chain's p from its own generator; one batched FFT round trip for all.
        """
        xi = buf.xi
        k_old = np.empty(len(states))
        for c, rng in enumerate(rngs):
            rng.standard_normal(out=xi[c])
            flat = xi[c].reshape(xi[c].size)
            k_old[c] = 0.5 * float(np.dot(flat, flat))
        w = self.settings.fft_workers
        u = kf.sample_velocity(xi, self.sqrt_propagator, buf.spectrum, buf.velocity, w)
        return u, k_old

    def _integrate(
        self, phi: np.ndarray, u: np.ndarray, gforce: np.ndarray, step_size: float, buf: _Buffers
    ) -> np.ndarray:
        """Integrate (phi, u) in place over one trajectory; returns G dS/dphi at the end.

        ``gforce`` is G dS/dphi at the starting ``phi`` (read only); the result is
        ``buf.gforce``.  Batches (n, L, L).
        """
        s = self.settings
        kicks, drift = kf.leapfrog_kicks(
            step_size, int(s.n_leapfrog), s.integrator == "omelyan", float(s.omelyan_lambda)
        )
        for k in range(len(kicks) - 1):
            kf.kick_drift(phi, u, gforce, kicks[k], drift)
            gforce = self.gforce(phi, buf)
        kf.kick(u, gforce, kicks[-1])
        return gforce

    def run_block_batched(
        self,
        states: list[State],
        n_steps: int,
        thin: int,
        rngs: list[np.random.Generator],
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """Run ``n_steps`` trajectories of every chain, the chains batched through the FFTs.

        ``obs_out`` (n_chains, n_steps // thin, n_obs) and ``stats_out`` (n_chains, n_steps,
        n_stats) as in :meth:`Sampler.run_block`, per chain.  A chain's result does not depend
        on the others: each draws from its own generator, and the transforms and local passes
        treat the fields of a batch independently.  Random stream per chain and trajectory:
        L^2 standard normals (the momenta), then one standard exponential for the accept test
        (when ``metropolis``).
        """
        n = len(states)
        buf = self._buffers(n)
        s = self.settings
        h, c2, c4 = self.theory.hopping
        c0 = self.theory.c0
        cur = np.stack([st.phi for st in states])
        gf_cur = np.stack([st.aux["gforce"] for st in states])
        new = buf.proposal
        obs_new = np.empty((n, states[0].scalars.shape[0] - 1))
        s_new = np.empty(n)
        every = int(s.reversibility_every)
        eps = float(s.step_size)
        # a diverging trajectory (too large a step while tuning) gives inf/NaN: an honest,
        # counted rejection, not a warning per transform
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(n_steps):
                u, k_old = self._fresh_velocity(states, rngs, buf)
                new[...] = cur
                rows = [
                    c
                    for c, st in enumerate(states)
                    if every > 0 and int(st.aux["trajectories"][0]) % every == 0
                ]
                h_old = None
                if rows:
                    h_old = np.array([st.scalars[0] for st in states]) + self.kinetic(u, buf)
                gforce = self._integrate(new, u, gf_cur, eps, buf)
                k_new = self.kinetic(u, buf).copy()
                for c in range(n):
                    s_new[c] = measure_into(new[c], h, c2, c4, c0, obs_new[c])
                stats_out[:, t, 4:6] = 0.0
                if rows:
                    back = self._reverse_check(
                        cur[rows], new[rows], u[rows], gforce[rows], h_old[rows], eps
                    )
                    stats_out[rows, t, 4:6] = back
                for c, st in enumerate(states):
                    # Sign convention: delta_h = H_new - H_old, accept if log(u) < -delta_h.
                    delta_h = (s_new[c] - st.scalars[0]) + (k_new[c] - k_old[c])
                    accepted = (
                        accept_test(delta_h, rngs[c].standard_exponential())
                        if s.metropolis
                        else True
                    )
                    if accepted:
                        cur[c] = new[c]
                        gf_cur[c] = gforce[c]
                        st.scalars[0] = s_new[c]
                        st.scalars[1:] = obs_new[c]
                    st.aux["trajectories"][0] += 1.0
                    finite = math.isfinite(delta_h)
                    out = stats_out[c, t]
                    out[0] = 1.0 if accepted else 0.0
                    out[1] = min(1.0, math.exp(-delta_h)) if finite else 0.0
                    out[2] = delta_h
                    out[3] = math.exp(min(-delta_h, 700.0)) if finite else 0.0
                    if (t + 1) % thin == 0:
                        obs_out[c, (t + 1) // thin - 1, :] = st.scalars[1:]
        for c, st in enumerate(states):
            st.phi[...] = cur[c]
            st.aux["gforce"][...] = gf_cur[c]

    def _reverse_check(
        self,
        phi0: np.ndarray,
        phi1: np.ndarray,
        u1: np.ndarray,
        gforce1: np.ndarray,
        h0: np.ndarray,
        step_size: float,
    ) -> np.ndarray:
        """Integrate a batch back from (phi1, -u1): rows (max |z_back - z0|, |H_back - H0|).

        ``h0`` is H at the start of the forward trajectories, with the same kinetic formula.
        """
        back = phi1.copy()
        v = -u1
        buf = self._buffers(back.shape[0])
        self._integrate(back, v, gforce1.copy(), step_size, buf)
        h_back = np.array([self.theory.action(f) for f in back]) + self.kinetic(v, buf)
        dz = np.max(np.abs(self.to_latent(back - phi0)), axis=(1, 2))
        return np.stack([dz, np.abs(h_back - h0)], axis=1)

    @property
    def forces_per_step(self) -> int:
        """Force evaluations (and FFT round trips) per integrator step (2 for Omelyan)."""
        return 2 if self.settings.integrator == "omelyan" else 1

    def work(self, stats: np.ndarray) -> dict[str, int]:
        """``steps``, ``leapfrog_steps``, ``force_evaluations`` and ``fft_round_trips``.

        A trajectory makes one round trip per force, one for the momenta and a forward
        transform for the kinetic energy (counted as half); reversibility checks add theirs.
        """
        n = int(stats.shape[0])
        n_lf = int(self.settings.n_leapfrog)
        forces = n_lf * self.forces_per_step
        checks = int(np.count_nonzero((stats[:, 4] != 0.0) | (stats[:, 5] != 0.0)))
        return {
            "steps": n,
            "leapfrog_steps": n * n_lf,
            "force_evaluations": (n + checks) * forces,
            "fft_round_trips": (n + checks) * forces + n + (n + 2 * checks + 1) // 2,
        }

    def step_cost(self) -> float:
        """Rough cost in site updates: the FFTs dominate, ~40 site updates per site and force."""
        return 40.0 * self.theory.volume * self.settings.n_leapfrog * self.forces_per_step

    def _clip_tuned(self, value: float) -> float:
        # leapfrog on the unit-frequency free modes is unstable beyond eps = 2
        return float(min(max(value, 1e-4), 1.9))

    def warmup(self) -> None:
        """Compile the numba passes on a 2 x 2 copy (same argument types)."""
        tiny = type(self)(self.theory.with_L(2), self.settings)
        rng = np.random.default_rng(0)
        state = tiny.init(None, rng)
        tiny.run(state, 2, rng, thin=2)

    def hamiltonian(self, phi: np.ndarray, u: np.ndarray) -> float:
        """H = S(phi) + u^T G^-1 u / 2 of one field and velocity (full action)."""
        return float(self.theory.action(phi)) + float(self.kinetic(u[None])[0])
