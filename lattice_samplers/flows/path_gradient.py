"""Path-gradient estimator of the reverse KL (Vaitl, Nicoli, Nakajima, Kessel, arXiv:2207.08219).

With phi = T_theta(z), z from the prior, the reverse-KL loss is E_z[log q_theta(T_theta(z)) +
S(T_theta(z))].  Its gradient has two parts: the *path* term, through phi = T_theta(z), and
the *score* term E_z[d/dtheta log q_theta(phi)] at fixed phi, whose expectation vanishes.  The
path-gradient estimator drops the score term: it has the same expectation and, unlike the
standard estimator, no variance left when q equals the target (then grad_phi log q = -grad S,
so every sample's gradient is zero).

It is the gradient of the surrogate

    loss = mean over the batch of [ sum_x phi_x G_x + S(phi) ],
    G = grad_phi log q(phi)  at phi = T(z), with the parameters held fixed (not differentiated),

where G comes from the flow's density of the given field (the inverse pass).  The surrogate's
value is not the KL: log it as ``mean(log_q + S)`` instead (returned alongside).

Cost: one differentiable forward pass (as in standard training) plus one inverse pass
differentiated with respect to the field only.  The forward pass is done once: its output,
detached, is the field phi0 = T(z) at which G is taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from lattice_samplers.flows.model import Flow

__all__ = [
    "PathGradientLoss",
    "path_gradient_loss",
]


class PathGradientLoss(NamedTuple):
    """What :func:`path_gradient_loss` returns (all per-batch tensors have shape ``(n,)``).

    Attributes
    ----------
    loss : torch.Tensor
        The surrogate (scalar); its gradient is the path gradient of the reverse KL.
    log_q : torch.Tensor
        The flow's log-density of the samples (differentiable, from the forward pass).
    action : torch.Tensor
        S(phi) of the samples (differentiable).
    phi : torch.Tensor
        The samples ``(n, L, L)`` (differentiable), e.g. for float64 log weights.
    """

    loss: torch.Tensor
    log_q: torch.Tensor
    action: torch.Tensor
    phi: torch.Tensor

    def kl_estimate(self) -> torch.Tensor:
        """mean(log_q + S) = KL(q || p) - log Z estimated on the batch (detached)."""
        return (self.log_q + self.action).mean().detach()


def path_gradient_loss(
    flow: Flow,
    action: Callable[[torch.Tensor], torch.Tensor],
    n: int | None = None,
    z: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model: nn.Module | None = None,
) -> PathGradientLoss:
    """Draw a batch and form the path-gradient surrogate of the reverse KL.

    Parameters
    ----------
    flow : Flow
        The flow; its parameters receive the path gradient on ``loss.backward()``.
    action : callable
        ``action(phi) -> S(phi)``, differentiable (e.g. :class:`TorchAction`).
    n : int, optional
        Batch size, if ``z`` is not given.
    z : torch.Tensor, optional
        Prior noise ``(n, L, L)`` in the flow's dtype (overrides ``n`` and ``generator``).
    generator : torch.Generator, optional
        Draws the noise when ``z`` is None.
    model : torch.nn.Module, optional
        The module whose forward is differentiated (e.g. a DistributedDataParallel wrapper of
        ``flow``, so that gradients are averaged); default ``flow``.

    Returns
    -------
    PathGradientLoss
        ``(loss, log_q, action, phi)``.

    Raises
    ------
    ValueError
        If neither ``n`` nor ``z`` is given.
    """
    if z is None:
        if n is None:
            raise ValueError("path_gradient_loss needs a batch size n or prior noise z")
        z = flow.prior_noise(n, generator)
    phi, log_det = (model or flow)(z)
    log_q = flow.log_prior(z) - log_det
    # G = grad_phi log q(phi) with the parameters held fixed: differentiate the density of the
    # detached field with respect to that field only (no parameter gradient is accumulated)
    with torch.enable_grad():
        phi0 = phi.detach().requires_grad_(True)
        (grad_log_q,) = torch.autograd.grad(flow.log_q(phi0).sum(), phi0)
    s = action(phi)
    loss = ((phi * grad_log_q).sum(dim=(-2, -1)) + s).mean()
    return PathGradientLoss(loss, log_q, s, phi)
