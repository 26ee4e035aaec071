"""Flow HMC: HMC on the latent field z of a normalizing flow phi = f(z).

For a bijection f, sampling z from exp(-S~(z)) with the pulled-back action

    S~(z) = S(f(z)) - log|det df/dz|

and mapping phi = f(z) samples exp(-S(phi)) exactly (PHYSICS.md section 8).  A step is one HMC
trajectory in z: fresh momenta p ~ N(0, 1), ``n_leapfrog`` leapfrog (or Omelyan) steps with
H(z, p) = |p|^2 / 2 + S~(z), and the Metropolis test on delta_h = H_new - H_old (accept if
log(u) < -delta_h), H in float64.  Observables are those of phi = f(z).  A perfect trivializing
map makes S~ = |z|^2 / 2 + const, for which a trajectory of length pi / 2 is an independent
draw (the default length); an imperfect one still keeps the acceptance high.

The map is any object with the :class:`LatentMap` protocol; :class:`TorchFlowMap` wraps a
trained :class:`~lattice_samplers.flows.Flow` (any family) and computes the force dS~/dz by
autograd through the flow, the chains of a batch in one pass, then casts everything to float64
(a float32 flow makes the dynamics reversible only to float32 rounding: the per-run
reversibility check, every ``reversibility_every``-th trajectory integrated back from
(z', -p'), records max |dz| and |dH| in the statistics ``reverse_max_dz`` and
``reverse_abs_dh``).  A float32 flow evaluates f at z rounded to float32, so the map
actually applied is f(round(z)): a relative perturbation of ~1e-7 of the sampled density,
far below any statistical error here.  With the ``cnf`` family the log-det is RK4-accurate,
not exact: more ODE steps (``Flow.set_ode_steps``) make the bias smaller; coupling flows are
exact.

This module imports torch only inside :class:`TorchFlowMap`'s methods.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from lattice_samplers.kernels import fourier as kf
from lattice_samplers.kernels.common import accept_test, measure_into
from lattice_samplers.samplers.base import (
    BatchedChainsSampler,
    State,
    check_fraction,
    check_positive,
)
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "FlowHMCSampler",
    "FlowHMCSettings",
    "LatentMap",
    "TorchFlowMap",
    "cnf_exactness",
    "exactness_diagnostics",
]

OMELYAN_LAMBDA = 0.1931833275037836

FLOW_HMC_STAT_NAMES: tuple[str, ...] = (
    "accepted",
    "acceptance_prob",
    "delta_h",
    "exp_minus_delta_h",
    "reverse_max_dz",
    "reverse_abs_dh",
)


@runtime_checkable
class LatentMap(Protocol):
    """What flow HMC needs from a map phi = f(z)."""

    def pullback(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For z (n, L, L) float64: (phi (n, L, L), S~(z) (n,), dS~/dz (n, L, L)), float64.

        S~ = S(f(z)) - log|det df/dz| with the full action S (its constant included).
        """
        ...


def cnf_exactness(flow: Any, n: int = 64, seed: int = 0) -> dict[str, float] | None:
    """Cheap estimate of a cnf flow's log-det error e and its safe effective sample count.

    The reported log-det of an RK4 flow with h = 1 / ode_steps is off by e(z) = O(h^4); the
    sampled density is then p exp(e) instead of p, which biases an average by about
    Cov(O, e), below one standard error while N_eff < 1 / Var(e) (the "safe count", see
    docs/results/cnf_density_error.md).  Here e is estimated as the difference of the
    log-dets at ``ode_steps`` and ``2 ode_steps`` for ``n`` fixed base draws (the finer one is
    ~16x more accurate), without gradients.

    Returns
    -------
    dict or None
        ``ode_steps``, ``sd_e`` and ``safe_ess`` = 1 / Var(e); None for a flow without ODE
        steps (coupling flows are exact).
    """
    steps = flow.arch.get("ode_steps")
    if not steps:
        return None
    import torch

    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((n, int(flow.L), int(flow.L)), generator=gen, dtype=torch.float64)
    z = z.to(device=flow.device, dtype=flow.dtype)
    with torch.no_grad():
        coarse = flow(z)[1].double()
        flow.set_ode_steps(2 * int(steps))
        try:
            fine = flow(z)[1].double()
        finally:
            flow.set_ode_steps(int(steps))
    sd = float(torch.std(coarse - fine).cpu())
    return {"ode_steps": int(steps), "sd_e": sd, "safe_ess": 1.0 / sd**2 if sd > 0 else math.inf}


def exactness_diagnostics(
    exactness: Mapping[str, float] | None, ess: Mapping[str, float | None], name: str
) -> dict[str, Any]:
    """Diagnostics of a run with a cnf flow: safe count against the run's largest ESS.

    Prints a warning on stderr when an observable's effective sample count exceeds the safe
    count 1 / Var(e) of :func:`cnf_exactness` (its RK4 bias may then exceed its error).
    ``ess``: effective sample count per observable; ``name``: the sampler, for the warning.
    Empty for an exact flow.
    """
    if exactness is None:
        return {}
    finite = [float(v) for v in ess.values() if v is not None and math.isfinite(v)]
    max_ess = max(finite) if finite else math.nan
    exceeds = bool(max_ess > exactness["safe_ess"])
    if exceeds:
        print(
            f"lattice-samplers: warning: {name}: effective sample count {max_ess:.3g} exceeds "
            f"the cnf flow's safe count {exactness['safe_ess']:.3g} (1/Var(e) at ode_steps "
            f"{exactness['ode_steps']}): the RK4 log-det bias may exceed the errors; sample "
            "with more ODE steps",
            file=sys.stderr,
        )
    return {
        "cnf_ode_steps": exactness["ode_steps"],
        "cnf_sd_e": exactness["sd_e"],
        "cnf_safe_ess": exactness["safe_ess"],
        "max_ess": max_ess,
        "exceeds_safe_ess": exceeds,
    }


class TorchFlowMap:
    """A trained flow as a :class:`LatentMap`: forward pass and autograd force, batched.

    Parameters
    ----------
    flow : Flow
        Any flow of :mod:`lattice_samplers.flows` (``flow(z) -> (phi, log_det)``); its
        parameters are not changed.
    theory : Phi4Theory
        The target; S is evaluated in float64 from the flow's phi.
    ode_steps : int, optional
        RK4 steps of a cnf flow for sampling (a copy of the flow is changed; None: as given).

    Notes
    -----
    ``thread_safe = False``: torch's reductions are not bit-reproducible across threads, so the
    chains run one after the other (as for the independence sampler) when not batched.  A
    batch is not bit-invariant either: torch's matrix products round differently for different
    batch sizes, so the batched driver path (all chains in one pass, the default) matches the
    per-chain one to the last bits only; each path on its own is reproducible and resumes bit
    for bit.
    """

    thread_safe = False

    def __init__(self, flow: Any, theory: Phi4Theory, ode_steps: int | None = None) -> None:
        if int(flow.L) != theory.L:
            raise ValueError(f"the flow is for L = {flow.L}, the theory has L = {theory.L}")
        if ode_steps is not None and int(flow.arch.get("ode_steps", 0) or 0) != ode_steps:
            # a copy: compare's independence sampler keeps the flow as it was given
            flow = copy.deepcopy(flow)
            flow.set_ode_steps(int(ode_steps))
        self.flow = flow.eval()
        for p in self.flow.parameters():
            p.requires_grad_(False)
        self.theory = theory
        self.passes = 0
        #: the cnf log-det error estimate (:func:`cnf_exactness`), None for exact flows
        self.exactness = cnf_exactness(self.flow)

    def pullback(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(phi, S~(z), dS~/dz) in float64 for a batch z (n, L, L); one forward+backward pass."""
        import torch

        h, c2, c4 = self.theory.hopping
        volume_c0 = self.theory.volume * self.theory.c0
        zt = torch.tensor(z, dtype=self.flow.dtype, device=self.flow.device, requires_grad=True)
        with torch.enable_grad():
            phi, log_det = self.flow(zt)
            p = phi.double()
            hop = p * (torch.roll(p, -1, dims=-1) + torch.roll(p, -1, dims=-2))
            p2 = p * p
            action = (-h * hop + c2 * p2 + c4 * p2 * p2).sum(dim=(-2, -1)) + volume_c0
            tilde = action - log_det.double()
            (grad,) = torch.autograd.grad(tilde.sum(), zt)
        self.passes += 1
        return (
            p.detach().cpu().numpy(),
            tilde.detach().cpu().numpy(),
            grad.double().cpu().numpy(),
        )


@dataclass(frozen=True)
class FlowHMCSettings:
    """Settings of :class:`FlowHMCSampler` (the ``[flow_hmc]`` config section).

    Attributes
    ----------
    flow : str or None
        The trained flow (checkpoint file or training folder) for ``sample``; ``compare``
        uses the flow of its ``flow`` sampler.  Not read by the sampler itself.
    step_size, n_leapfrog, trajectory_length, integrator, omelyan_lambda : see ``[hmc]``
        Leapfrog in z; ``trajectory_length`` (default pi / 2) sets n_leapfrog from the
        (tuned) step size.
    target_acceptance, tune, metropolis : see ``[hmc]``
    reversibility_every : int
        Integrate every n-th trajectory back to check reversibility (0: never).
    ode_steps : int or None
        RK4 steps of a cnf flow for sampling (more: a smaller log-det error, proportionally
        slower forces); None: as trained.  Read when the map is built, like ``flow``.
    """

    flow: str | None = None
    step_size: float = 0.2
    n_leapfrog: int = 8
    trajectory_length: float | None = math.pi / 2
    integrator: Literal["leapfrog", "omelyan"] = "leapfrog"
    omelyan_lambda: float = OMELYAN_LAMBDA
    target_acceptance: float = 0.8
    tune: bool = True
    metropolis: bool = True
    reversibility_every: int = 100
    ode_steps: int | None = None

    def __post_init__(self) -> None:
        check_positive("step_size", self.step_size)
        if self.ode_steps is not None and (
            isinstance(self.ode_steps, bool) or not isinstance(self.ode_steps, int)
        ):
            raise ValueError(f"ode_steps must be a positive integer, got {self.ode_steps!r}")
        if self.ode_steps is not None and self.ode_steps < 1:
            raise ValueError(f"ode_steps must be a positive integer, got {self.ode_steps!r}")
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
        check_fraction("target_acceptance", self.target_acceptance)
        if self.reversibility_every < 0:
            raise ValueError(f"reversibility_every must be >= 0, got {self.reversibility_every}")


class FlowHMCSampler(BatchedChainsSampler):
    """HMC on the latent field of a flow (see the module docstring); one step = one trajectory.

    Parameters
    ----------
    theory : Phi4Theory
        The target theory.
    settings : FlowHMCSettings, optional
    latent_map : LatentMap
        The map phi = f(z) with its pulled-back action and force (e.g. :class:`TorchFlowMap`).

    State: ``phi`` = f(z) with its observables; ``aux``: ``z``, ``force`` (dS~/dz at z),
    ``action_tilde`` (S~(z)) and ``trajectories`` (for the reversibility schedule).
    Test-only variants are subclasses in the tests (overriding :meth:`_integrate` or
    :meth:`_fresh_momenta`, or wrapping the map).
    """

    kind: ClassVar[str] = "flow_hmc"
    settings_class: ClassVar[type] = FlowHMCSettings
    stat_names: ClassVar[tuple[str, ...]] = FLOW_HMC_STAT_NAMES
    tuned_setting: ClassVar[str | None] = "step_size"
    tune_stat: ClassVar[str] = "acceptance_prob"

    def __init__(
        self,
        theory: Phi4Theory,
        settings: FlowHMCSettings | None = None,
        *,
        latent_map: LatentMap,
        **overrides: Any,
    ) -> None:
        if not isinstance(latent_map, LatentMap):
            raise TypeError("latent_map must have a method pullback(z) -> (phi, action, force)")
        self.latent_map = latent_map
        super().__init__(theory, settings, **overrides)

    # ------------------------------------------------------------------ Sampler interface
    def init(self, phi0: np.ndarray | None = None, rng: np.random.Generator | None = None) -> State:
        """Start from z ~ N(0, 1) drawn from ``rng`` (a flow sample).

        ``phi0`` is ignored: a general flow has no cheap inverse here, and a flow sample is a
        better start than any fixed field.
        """
        rng = rng if rng is not None else np.random.default_rng()
        z = rng.standard_normal((1, *self.theory.shape))
        phi, tilde, force = self.latent_map.pullback(z)
        scalars = self._new_scalars()
        h, c2, c4 = self.theory.hopping
        scalars[0] = measure_into(phi[0], h, c2, c4, self.theory.c0, scalars[1:])
        aux = {
            "z": z[0],
            "force": np.ascontiguousarray(force[0]),
            "action_tilde": np.array([float(tilde[0])]),
            "trajectories": np.zeros(1),
        }
        return State(np.ascontiguousarray(phi[0]), scalars, aux)

    def _fresh_momenta(self, states: list[State], rngs: list[np.random.Generator]) -> np.ndarray:
        """Momenta p ~ N(0, 1), shape (n_chains, L, L), each chain's from its own generator."""
        return np.stack([rng.standard_normal(self.theory.shape) for rng in rngs])

    def _integrate(
        self, z: np.ndarray, p: np.ndarray, force: np.ndarray, step_size: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integrate (z, p) in place; returns (phi, S~, force) at the end (batches)."""
        s = self.settings
        kicks, drift = kf.leapfrog_kicks(
            step_size, int(s.n_leapfrog), s.integrator == "omelyan", float(s.omelyan_lambda)
        )
        phi = tilde = None
        for k in range(len(kicks) - 1):
            p -= kicks[k] * force
            z += drift * p
            phi, tilde, force = self.latent_map.pullback(z)
        p -= kicks[-1] * force
        return phi, tilde, force

    def run_block_batched(
        self,
        states: list[State],
        n_steps: int,
        thin: int,
        rngs: list[np.random.Generator],
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """Run ``n_steps`` trajectories of every chain together, one flow pass per force.

        ``obs_out`` (n_chains, n_steps // thin, n_obs) and ``stats_out`` (n_chains, n_steps,
        n_stats) as in :meth:`Sampler.run_block`, per chain.  Each chain draws from its own
        generator in the order of :meth:`run_block`, so a chain's result does not depend on
        the others (as long as the map is batch invariant, see :class:`TorchFlowMap`).
        Random stream per chain and trajectory: L^2 standard normals, then one standard
        exponential.
        """
        s = self.settings
        h, c2, c4 = self.theory.hopping
        n = len(states)
        obs_new = np.empty(states[0].scalars.shape[0] - 1)
        every = int(s.reversibility_every)
        eps = float(s.step_size)
        # a diverging trajectory (too large a step while tuning) gives inf/NaN: an honest,
        # counted rejection, not a warning per transform
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(n_steps):
                p = self._fresh_momenta(states, rngs)
                k_old = 0.5 * np.sum(p * p, axis=(1, 2))
                h_old = np.array([st.aux["action_tilde"][0] for st in states]) + k_old
                z = np.stack([st.aux["z"] for st in states])
                check = [every > 0 and int(st.aux["trajectories"][0]) % every == 0 for st in states]
                z0, p0 = z.copy(), p.copy()
                force0 = np.stack([st.aux["force"] for st in states])
                phi, tilde, force = self._integrate(z, p, force0, eps)
                k_new = 0.5 * np.sum(p * p, axis=(1, 2))
                stats_out[:, t, 4:6] = 0.0
                rows = [c for c in range(n) if check[c]]
                if rows:
                    back = self._reverse_check(
                        z0[rows], p0[rows], z[rows], p[rows], force[rows], h_old[rows], eps
                    )
                    stats_out[rows, t, 4:6] = back
                for c, st in enumerate(states):
                    # Sign convention: delta_h = H_new - H_old, accept if log(u) < -delta_h.
                    delta_h = float(tilde[c]) + float(k_new[c]) - float(h_old[c])
                    e = rngs[c].standard_exponential()
                    accepted = accept_test(delta_h, e) if s.metropolis else True
                    if accepted:
                        st.aux["z"][...] = z[c]
                        st.aux["force"][...] = force[c]
                        st.aux["action_tilde"][0] = float(tilde[c])
                        st.phi[...] = phi[c]
                        st.scalars[0] = measure_into(phi[c], h, c2, c4, self.theory.c0, obs_new)
                        st.scalars[1:] = obs_new
                    st.aux["trajectories"][0] += 1.0
                    finite = math.isfinite(delta_h)
                    out = stats_out[c, t]
                    out[0] = 1.0 if accepted else 0.0
                    out[1] = min(1.0, math.exp(-delta_h)) if finite else 0.0
                    out[2] = delta_h
                    out[3] = math.exp(min(-delta_h, 700.0)) if finite else 0.0
                    if (t + 1) % thin == 0:
                        obs_out[c, (t + 1) // thin - 1, :] = st.scalars[1:]

    def _reverse_check(
        self,
        z0: np.ndarray,
        p0: np.ndarray,
        z1: np.ndarray,
        p1: np.ndarray,
        force1: np.ndarray,
        h0: np.ndarray,
        step_size: float,
    ) -> np.ndarray:
        """Integrate a batch back from (z1, -p1): rows (max |z_back - z0|, |H_back - H0|)."""
        z, p = z1.copy(), -p1
        _, tilde, _ = self._integrate(z, p, force1, step_size)
        h_back = tilde + 0.5 * np.sum(p * p, axis=(1, 2))
        del p0  # -p_back equals p0 up to rounding; the position test suffices
        return np.stack([np.max(np.abs(z - z0), axis=(1, 2)), np.abs(h_back - h0)], axis=1)

    @property
    def parallel_chains(self) -> bool:
        """Unless the map says ``thread_safe = False`` (torch flows do)."""
        return bool(getattr(self.latent_map, "thread_safe", True))

    @property
    def forces_per_step(self) -> int:
        """Flow passes (forward + backward) per integrator step (2 for Omelyan)."""
        return 2 if self.settings.integrator == "omelyan" else 1

    def work(self, stats: np.ndarray) -> dict[str, int]:
        """``steps``, ``leapfrog_steps``, ``force_evaluations`` and ``flow_passes``.

        Each force is one forward and one backward pass of the flow (``flow_passes`` counts
        the pair once); reversibility checks add theirs.
        """
        n = int(stats.shape[0])
        n_lf = int(self.settings.n_leapfrog)
        checks = int(np.count_nonzero((stats[:, 4] != 0.0) | (stats[:, 5] != 0.0)))
        forces = (n + checks) * n_lf * self.forces_per_step
        return {
            "steps": n,
            "leapfrog_steps": n * n_lf,
            "force_evaluations": forces,
            "flow_passes": forces,
        }

    def step_cost(self) -> float:
        """Rough cost in site updates: a flow pass is ~100x a local update per site."""
        return 100.0 * self.theory.volume * self.settings.n_leapfrog * self.forces_per_step

    def _clip_tuned(self, value: float) -> float:
        return float(min(max(value, 1e-4), 1.9))

    def warmup(self) -> None:
        """Compile the measurement kernel (the flow needs no compilation)."""
        measure_into(np.zeros((2, 2)), 1.0, 1.0, 1.0, 0.0, np.empty(6))
