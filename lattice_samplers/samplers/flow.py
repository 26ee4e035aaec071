"""The flow sampler: independence Metropolis-Hastings with an external proposal.

The proposal is a trained flow, the exact free field, or anything else that returns its log
density.

A step offers one proposal phi' ~ q, independent of the current state, and accepts it with
probability min(1, w(phi') / w(phi)), w = exp(-S - log q).  Proposals are drawn in large
batches (the expensive part: one flow forward pass per proposal, vectorized), their actions,
log weights and observables are formed in float64, and the accept/reject chain is a cheap
sequential pass in compiled code (:func:`lattice_samplers.kernels.imh.imh_pass`).

Randomness: each batch of proposals is drawn from the chain's own ``numpy.random.Generator``
(the proposal seeds its torch generator from it), so one seed reproduces a run and a
checkpoint (which stores the generator state) resumes it bit for bit.  Chains are therefore
fed by independent proposal streams; within a chain the flow still runs in batches of
``batch_size``.

This module does not import torch: the proposal is any object with
``sample(n, rng) -> (phi (n, L, L) float64, log_q (n,) float64)`` (see :class:`Proposal`).

Parallel chains: the run driver calls :meth:`~FlowSampler.run_block` of
different chains from several threads at once (``[run] workers``), so ``sample`` must draw only
from the ``rng`` it is given, change no shared state, and give the same numbers in any thread
(the exact free-field proposal does: NumPy FFTs).  A proposal for which that does not hold sets
``thread_safe = False`` and its chains run one after the other: the flow proposal does, since
torch's float32 reductions are not bit-reproducible across threads (see
:class:`lattice_samplers.flows.FlowProposal`).  A flow proposal draws in parallel on processes
instead (``proposal_workers``): the batches of a call, each from its own seed, so the chain does
not depend on the count.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from lattice_samplers.autocorr import AutocorrWarning, acceptance_tau, ess_kish
from lattice_samplers.kernels.common import N_OBS
from lattice_samplers.kernels.imh import imh_pass
from lattice_samplers.kernels.phi4 import batch_action
from lattice_samplers.observables import measure
from lattice_samplers.samplers.base import OBSERVABLE_NAMES, Sampler, State
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "FlowSamplerSettings",
    "FlowSampler",
    "Proposal",
    "flow_diagnostics",
]


@runtime_checkable
class Proposal(Protocol):
    """What independence Metropolis needs from a proposal distribution q."""

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` fields (n, L, L) float64 and their log densities log q (n,) float64."""
        ...


@dataclass(frozen=True)
class FlowSamplerSettings:
    """Settings of the flow sampler (the ``[flow_sampler]`` config section).

    Attributes
    ----------
    batch_size : int
        Proposals drawn per call of the proposal (one vectorized flow pass).
    proposal_workers : int
        Processes on which a flow proposal draws the batches of a call (default 1: the
        sampler's own process).  The proposals, and so the chain, are bit-identical for any
        count (:class:`lattice_samplers.flows.FlowProposal`); the accept/reject pass stays
        sequential.  Needs a proposal with ``use_workers(n)``.
    """

    batch_size: int = 4096
    proposal_workers: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        if (
            isinstance(self.proposal_workers, bool)
            or not isinstance(self.proposal_workers, int)
            or self.proposal_workers < 1
        ):
            raise ValueError(
                f"proposal_workers must be a positive integer, got {self.proposal_workers!r}"
            )


class FlowSampler(Sampler):
    """Independence Metropolis over proposals from ``proposal`` (see the module docstring).

    Parameters
    ----------
    theory : Phi4Theory
        The target theory; the proposal must produce fields of its shape.
    settings : FlowSamplerSettings, optional
        Batch size.
    proposal : Proposal
        ``sample(n, rng) -> (phi, log_q)``.
    """

    kind: ClassVar[str] = "flow"
    settings_class: ClassVar[type] = FlowSamplerSettings
    #: per step: accepted, the proposal's log weight, 1 if that weight was not finite
    stat_names: ClassVar[tuple[str, ...]] = ("accepted", "log_weight", "nonfinite")
    tuned_setting: ClassVar[str | None] = None

    def __init__(
        self,
        theory: Phi4Theory,
        settings: FlowSamplerSettings | None = None,
        *,
        proposal: Proposal,
        **overrides: Any,
    ) -> None:
        if not isinstance(proposal, Proposal):
            raise TypeError("proposal must have a method sample(n, rng) -> (phi, log_q)")
        self.proposal = proposal
        super().__init__(theory, settings, **overrides)
        workers = int(self.settings.proposal_workers)
        if workers > 1:
            use_workers = getattr(proposal, "use_workers", None)
            if use_workers is None:
                raise ValueError(
                    "proposal_workers > 1 needs a proposal that draws on processes (a flow)"
                )
            use_workers(workers)

    # ------------------------------------------------------------------ proposals
    def _draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` proposals; return (phi, log_w, scalars) with scalars = [S, *obs]."""
        phi, log_q = self.proposal.sample(n, rng)
        phi = np.ascontiguousarray(phi, dtype=np.float64)
        log_q = np.asarray(log_q, dtype=np.float64)
        if phi.shape != (n, *self.theory.shape) or log_q.shape != (n,):
            raise ValueError(
                f"proposal returned phi {phi.shape} and log_q {log_q.shape}; expected "
                f"({n}, {self.theory.L}, {self.theory.L}) and ({n},)"
            )
        h, c2, c4 = self.theory.hopping
        scalars = np.empty((n, 1 + N_OBS))
        batch_action(phi, h, c2, c4, scalars[:, 0])
        scalars[:, 0] += self.theory.volume * self.theory.c0
        obs = measure(self.theory, phi)
        for k, name in enumerate(OBSERVABLE_NAMES):
            scalars[:, 1 + k] = obs[name]
        return phi, self.log_weight(scalars[:, 0], log_q), scalars

    def log_weight(self, action: np.ndarray, log_q: np.ndarray) -> np.ndarray:
        """Importance log weights of proposals, log w = -S - log q (float64)."""
        return -action - log_q

    # ------------------------------------------------------------------ Sampler interface
    def init(self, phi0: np.ndarray | None = None, rng: np.random.Generator | None = None) -> State:
        """Start from one proposal (an independence chain needs a state with known log q).

        ``phi0`` is ignored: its log q is not available for a general proposal, and the first
        accepted proposal replaces any start anyway.
        """
        rng = rng if rng is not None else np.random.default_rng()
        phi, log_w, scalars = self._draw(1, rng)
        return State(phi[0].copy(), scalars[0].copy(), {"log_weight": log_w[:1].copy()})

    def run_block(
        self,
        state: State,
        n_steps: int,
        thin: int,
        rng: np.random.Generator,
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """Run ``n_steps`` independence Metropolis steps in batches of ``batch_size``."""
        batch = int(self.settings.batch_size)
        done = 0
        while done < n_steps:
            n = min(batch, n_steps - done)
            phi, log_w, scalars = self._draw(n, rng)
            log_u = np.log(rng.random(n))
            accepted = np.empty(n, dtype=np.bool_)
            index = np.empty(n, dtype=np.int64)
            log_w_cur, last, _ = imh_pass(
                log_w, log_u, float(state.aux["log_weight"][0]), -1, accepted, index
            )
            # observables after each step: the batch entry held, or the state from before
            held = np.where(index[:, None] >= 0, scalars[np.maximum(index, 0)], state.scalars)
            steps = np.arange(done, done + n)
            recorded = (steps + 1) % thin == 0
            obs_out[(steps[recorded] + 1) // thin - 1] = held[recorded, 1:]
            stats_out[done : done + n, 0] = accepted
            stats_out[done : done + n, 1] = log_w
            stats_out[done : done + n, 2] = ~np.isfinite(log_w)
            if last >= 0:
                state.phi[...] = phi[last]
                state.scalars[...] = scalars[last]
                state.aux["log_weight"][0] = log_w_cur
            done += n

    @property
    def parallel_chains(self) -> bool:
        """Unless the proposal says ``thread_safe = False`` (see the module docstring)."""
        return bool(getattr(self.proposal, "thread_safe", True))

    def work(self, stats: np.ndarray) -> dict[str, int]:
        """``steps`` and ``flow_passes`` (proposals drawn: one forward pass per sample)."""
        n = int(stats.shape[0])
        return {"steps": n, "flow_passes": n}

    def step_cost(self) -> float:
        """Blocks of about ``batch_size`` proposals keep the flow batched."""
        return float(self.theory.volume)

    def warmup(self) -> None:
        """Compile the accept/reject and action kernels on tiny inputs (no proposal draws)."""
        acc = np.empty(2, dtype=np.bool_)
        idx = np.empty(2, dtype=np.int64)
        imh_pass(np.zeros(2), np.full(2, -1.0), -math.inf, -1, acc, idx)
        batch_action(np.zeros((1, 2, 2)), 1.0, 1.0, 1.0, np.empty(1))


def flow_diagnostics(accepted: np.ndarray, log_weight: np.ndarray) -> dict[str, float]:
    """Diagnostics of an independence Metropolis run from its per-step statistics.

    Parameters
    ----------
    accepted : ndarray, shape (n_chains, n_steps)
        Accept flags per step (thin = 1).
    log_weight : ndarray, shape (n_chains, n_steps)
        Log weights of the proposals offered at each step.

    Returns
    -------
    dict
        ``acceptance``; ``longest_rejection_run`` (steps); ``tau_int_accept`` and its error
        (observable-independent estimate from the rejection runs, lattice convention) and
        ``tau_int_accept_flags`` (e.g. ``short``: fewer than 50 tau_int steps per chain);
        ``ess_kish`` (per sample, in [0, 1]) and ``log_weight_var`` over the finite weights;
        ``nonfinite_fraction``.
    """
    accepted = np.atleast_2d(np.asarray(accepted)).astype(bool)
    lw = np.asarray(log_weight, dtype=np.float64).ravel()
    finite = np.isfinite(lw)
    runs = 0
    for row in accepted:
        # longest stretch of consecutive rejections in this chain
        rejected = np.concatenate(([0], (~row).astype(np.int8), [0]))
        edges = np.flatnonzero(np.diff(rejected))
        if edges.size:
            runs = max(runs, int((edges[1::2] - edges[::2]).max()))
    with warnings.catch_warnings():
        # reported through the flags below instead of as Python warnings on stderr
        warnings.simplefilter("ignore", AutocorrWarning)
        tau = acceptance_tau(accepted)
    out = {
        "acceptance": float(accepted.mean()),
        "longest_rejection_run": runs,
        "tau_int_accept": float(tau.tau_int),
        "tau_int_accept_err": float(tau.tau_int_err),
        "tau_int_accept_flags": [f for f in tau.flags if f != "anticorrelated"],
        "nonfinite_fraction": float(1.0 - finite.mean()) if lw.size else math.nan,
    }
    out["ess_kish"] = ess_kish(lw)
    out["log_weight_var"] = float(lw[finite].var()) if finite.any() else math.nan
    return out
