"""What one batch of model samples says: IMH acceptance, Kish ESS, Var(log w), and the loss.

:func:`reverse_kl_loss` is the one place the reverse-KL loss is formed; :func:`weight_metrics`
turns float64 log weights log w = -S - log_q into (acceptance, ess_kish, Var log w), the
columns of every history row and training summary; :class:`NonFiniteLossError` names what went
non-finite.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lattice_samplers.autocorr import ess_kish
from lattice_samplers.flows.action import TorchAction
from lattice_samplers.flows.model import Flow
from lattice_samplers.flows.path_gradient import path_gradient_loss
from lattice_samplers.kernels.imh import imh_pass

__all__ = [
    "NonFiniteLossError",
    "imh_acceptance",
    "nonfinite_cause",
    "reverse_kl_loss",
    "weight_metrics",
]


def imh_acceptance(log_w: np.ndarray, rng: np.random.Generator) -> float:
    """Acceptance rate of one independence-Metropolis pass over proposals with log weights.

    The chain starts at proposal 0 and is offered proposals 1..n-1 in order, accepting
    proposal i if ``log(u) < log_w[i] - log_w[current]`` (the one accept/reject
    implementation, :func:`~lattice_samplers.kernels.imh.imh_pass`).  A non-finite log weight
    is a rejection.  Draws n - 1 uniforms from ``rng``; returns accepted / (n - 1).
    """
    log_w = np.ascontiguousarray(log_w, dtype=np.float64)
    n = log_w.shape[0]
    if n < 2:
        return float("nan")
    log_u = np.log(rng.random(n - 1))
    start = float(log_w[0]) if math.isfinite(log_w[0]) else -math.inf
    accepted = np.empty(n - 1, dtype=np.bool_)
    index = np.empty(n - 1, dtype=np.int64)
    imh_pass(log_w[1:], log_u, start, 0, accepted, index)
    return int(accepted.sum()) / (n - 1)


def weight_metrics(log_w: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """(acceptance, ess_kish, variance of the finite log weights) of one batch."""
    finite = log_w[np.isfinite(log_w)]
    var = float(finite.var()) if finite.size > 1 else float("nan")
    return imh_acceptance(log_w, rng), ess_kish(log_w), var


# ---------------------------------------------------------------------- the loss
def reverse_kl_loss(
    model: torch.nn.Module,
    flow: Flow,
    action: TorchAction,
    z: torch.Tensor,
    gradient: str = "standard",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reverse-KL loss of one batch of prior noise; the one place the loss is formed.

    Parameters
    ----------
    model : torch.nn.Module
        The module whose forward is differentiated (the flow, or its DDP wrapper).
    flow : Flow
        The flow itself (for the prior density).
    action : TorchAction
        The target's action S.
    z : torch.Tensor
        Prior noise, shape ``(n, L, L)``.
    gradient : str
        ``standard``: differentiate mean(log_q + S); ``path``: the path-gradient surrogate of
        :func:`lattice_samplers.flows.path_gradient.path_gradient_loss`, whose gradient is the
        path gradient and whose value is not the KL.

    Returns
    -------
    (loss, kl, phi, log_q)
        The tensor to differentiate, the detached estimate mean(log_q + S) to log, the samples
        and their log_q.
    """
    if gradient == "path":
        loss, log_q, s, phi = path_gradient_loss(flow, action, z=z, model=model)
        return loss, (log_q + s).mean().detach(), phi, log_q
    phi, log_det = model(z)
    log_q = flow.log_prior(z) - log_det
    loss = (log_q + action(phi)).mean()
    return loss, loss.detach(), phi, log_q


class NonFiniteLossError(FloatingPointError):
    """A NaN or infinite loss; the message names the step and what went non-finite."""

    def __init__(self, step: int, cause: str) -> None:
        super().__init__(f"non-finite loss at step {step}: {cause}")
        self.step = step
        self.cause = cause


def nonfinite_cause(
    loss: float, phi: torch.Tensor, log_q: torch.Tensor, action: TorchAction
) -> str:
    """One phrase saying which part of the loss went non-finite first, and how often."""
    n = phi.shape[0]
    phi, log_q = phi.detach(), log_q.detach()
    finite_phi = torch.isfinite(phi).flatten(1).all(dim=1)
    bad_phi = int((~finite_phi).sum())
    if bad_phi:
        return f"loss is {loss}; the flow produced non-finite fields in {bad_phi} of {n} samples"
    big = f"{float(phi.abs().max()):.3g}"
    bad_q = int((~torch.isfinite(log_q)).sum())
    if bad_q:
        return f"loss is {loss}; log_q is non-finite for {bad_q} of {n} samples (max |phi| {big})"
    with torch.no_grad():
        s = action(phi)
    bad_s = int((~torch.isfinite(s)).sum())
    if bad_s:
        return (
            f"loss is {loss}; the action S(phi) in {str(s.dtype).removeprefix('torch.')} is "
            f"non-finite for {bad_s} of {n} samples (max |phi| {big})"
        )
    return f"loss is {loss}; the sum of log_q + S overflowed (max |phi| {big})"
