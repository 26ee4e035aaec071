"""The phi^4 action in torch, for training flows (differentiable, batched).

It is the torch twin of :meth:`lattice_samplers.theory.Phi4Theory.action`: the hopping form

    S(phi) = sum_x [ -h sum_{mu=1,2} phi_x phi_{x+mu} + c2 phi_x^2 + c4 phi_x^4 ] + V c0

evaluated with ``torch.roll`` (periodic boundaries) in the dtype of ``phi``.  Log weights for
accept/reject are formed from a float64 evaluation (:meth:`TorchAction.float64`).
"""

from __future__ import annotations

import torch

from lattice_samplers.theory import Phi4Theory

__all__ = [
    "TorchAction",
    "phi4_action",
]


def phi4_action(phi: torch.Tensor, h: float, c2: float, c4: float, c0: float = 0.0) -> torch.Tensor:
    """Return S(phi) of the hopping form for a batch of fields.

    Parameters
    ----------
    phi : torch.Tensor
        Fields of shape ``(n, L, L)`` (or ``(L, L)``), periodic in the last two axes.
    h, c2, c4, c0 : float
        Hopping-form coefficients; ``c0`` is the additive constant per site.

    Returns
    -------
    torch.Tensor
        Shape ``(n,)`` (or a scalar for one field), in the dtype of ``phi``.
    """
    hop = phi * (torch.roll(phi, -1, dims=-1) + torch.roll(phi, -1, dims=-2))
    phi2 = phi * phi
    density = -h * hop + c2 * phi2 + c4 * phi2 * phi2
    volume = phi.shape[-1] * phi.shape[-2]
    return density.sum(dim=(-2, -1)) + volume * c0


class TorchAction:
    """The action of one :class:`~lattice_samplers.theory.Phi4Theory` as a torch callable.

    Parameters
    ----------
    theory : Phi4Theory
        The target theory; its field normalization is the flow's output normalization.
    """

    def __init__(self, theory: Phi4Theory) -> None:
        self.theory = theory
        self.h, self.c2, self.c4 = (float(v) for v in theory.hopping)
        self.c0 = float(theory.c0)

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        """S(phi) in the dtype of ``phi`` (differentiable)."""
        return phi4_action(phi, self.h, self.c2, self.c4, self.c0)

    def float64(self, phi: torch.Tensor) -> torch.Tensor:
        """S(phi) evaluated in float64, as accept/reject needs (no gradient kept)."""
        with torch.no_grad():
            return phi4_action(phi.detach().double(), self.h, self.c2, self.c4, self.c0)
