"""Bijective flow layers on batches of lattice fields ``(n, L, L)``.

Every layer maps ``x -> (y, log_det)`` with ``log_det = log|det dy/dx|`` per sample (shape
``(n,)``), and has ``inverse(y) -> (x, log_det_inverse)`` with ``log_det_inverse = -log_det``.

* :class:`AffineCoupling`: phi_a -> phi_a * exp(s(phi_p)) + t(phi_p); log-det = sum s.
* :class:`AdditiveCoupling`: phi_a -> phi_a + t(phi_p); log-det 0 (volume preserving).
* :class:`SplineCoupling`: a monotone rational-quadratic spline per active site (Durkan et al.,
  arXiv:1906.04032, :mod:`lattice_samplers.flows.spline`): K bins on [-B, B], identity
  outside, unit derivative at +-B.
* :class:`GlobalRescaling`: phi -> a phi with learnable a > 0; log-det V log a.
* :class:`FreeFieldLayer`: white noise -> free field, phi = F^-1 sqrt(G~(k)) F z, exact and
  parameter-free; log-det = (1/2) sum_k log G~(k).

Coupling layers split the lattice in a checkerboard: the active parity (updated) and the
passive parity (conditioning).  With periodic boundaries, a checkerboard is only a proper
2-colouring for even L; odd L is refused.

Z2 equivariance (f(-x) = -f(x)): the affine coupling is equivariant when t is odd and s is
even in phi_p (see :mod:`lattice_samplers.flows.nets` for the exact constructions); additive
when t is odd; rescaling and the free-field layer are linear, hence odd.  The spline coupling
is *not* offered in an equivariant form (it would need the spline for -phi_p to be the point
reflection of the spline for phi_p); asking for it raises ValueError.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lattice_samplers.flows.nets import Conditioner
from lattice_samplers.flows.spline import rq_spline

__all__ = [
    "AdditiveCoupling",
    "AffineCoupling",
    "FlowLayer",
    "FreeFieldLayer",
    "GlobalRescaling",
    "SplineCoupling",
    "checkerboard_indices",
    "checkerboard_order",
    "free_field_spectrum",
    "rq_spline",
]


def checkerboard_indices(L: int, parity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat site indices ``(active, passive)`` for the checkerboard with active ``parity``.

    Site (x, y) has flat index ``x * L + y`` and parity ``(x + y) % 2``.

    Raises
    ------
    ValueError
        For odd L: with periodic boundaries sites (0, y) and (L-1, y) would be neighbours of
        the same parity, so a coupling would condition a site on itself.
    """
    if L % 2 != 0:
        raise ValueError(
            f"checkerboard coupling layers need an even lattice extent L, got L = {L} "
            "(periodic wrap-around joins same-parity sites)"
        )
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity}")
    x, y = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    par = ((x + y) % 2).reshape(-1)
    flat = torch.arange(L * L)
    return flat[par == parity], flat[par != parity]


class FlowLayer(nn.Module):
    """Base class: a bijection on ``(n, L, L)`` fields with a per-sample log-det."""

    #: Whether the layer claims f(-x) = -f(x) (checked by the tests).
    equivariant: bool = False
    #: Whether the layer has ``forward_split`` on the checkerboard layout (pair of halves).
    split_native: bool = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """Return ``(y, log|det dy/dx|)``."""
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """Return ``(x, log|det dx/dy|)`` for ``y = f(x)``."""
        raise NotImplementedError


def checkerboard_order(L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(split, unsplit)`` permutations between site order and checkerboard order.

    ``x.reshape(n, V)[:, split]`` lists the parity-0 sites, then the parity-1 sites (each in
    increasing flat index); ``xs[:, unsplit]`` undoes it.
    """
    split = torch.cat([checkerboard_indices(L, 0)[0], checkerboard_indices(L, 1)[0]])
    return split, torch.argsort(split)


class _Coupling(FlowLayer):
    """Checkerboard coupling: transform the active sites given the passive ones.

    Internally a coupling works on the *split* layout, a pair ``(x0, x1)`` of the parity-0 and
    parity-1 site values, each ``(n, V/2)`` in increasing flat index: a coupling replaces one
    half and passes the other through untouched, so a stack of couplings inside a
    :class:`~lattice_samplers.flows.model.Flow` moves no data between layers
    (``forward_split``).  ``forward`` / ``inverse`` accept and return ``(n, L, L)``.
    """

    #: Flows keep consecutive split-native layers in the split layout.
    split_native = True

    def __init__(
        self,
        L: int,
        parity: int,
        heads: list[tuple[int, str]],
        conditioner: str,
        hidden: tuple[int, ...],
        activation: str,
        kernel_size: int,
        init_scale: float,
    ) -> None:
        """Set up the masks and the conditioner with the subclass's output ``heads``."""
        super().__init__()
        active, passive = checkerboard_indices(L, parity)
        self.L = L
        self.parity = parity
        split, unsplit = checkerboard_order(L)
        self.register_buffer("split", split, persistent=False)
        self.register_buffer("unsplit", unsplit, persistent=False)
        self.conditioner = Conditioner(
            conditioner, L, active, passive, heads, hidden, activation, kernel_size, init_scale
        )

    def to_split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, L, L)`` -> ``(x0, x1)``, the parity-0 and parity-1 halves ``(n, V/2)``."""
        n = x.shape[0]
        xs = x.reshape(n, -1).index_select(1, self.split)
        half = xs.shape[1] // 2
        return xs[:, :half], xs[:, half:]

    def from_split(self, xs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``(x0, x1)`` -> ``(n, L, L)``."""
        n = xs[0].shape[0]
        flat = torch.cat(xs, dim=1).index_select(1, self.unsplit)
        return flat.view(n, self.L, self.L)

    def forward_split(
        self, xs: tuple[torch.Tensor, torch.Tensor], inverse: bool = False
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The map (or its inverse) on the split layout: ``((y0, y1), log_det)``."""
        p = self.parity
        xa, xp = xs[p], xs[1 - p]
        # the passive sites are unchanged, so the inverse sees the same parameters
        params = self.conditioner(xp)
        ya, log_det = self._transform(xa, params, inverse)
        return ((ya, xp) if p == 0 else (xp, ya)), log_det

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(y, log_det)``; see the class docstring for the map."""
        ys, log_det = self.forward_split(self.to_split(x), inverse=False)
        return self.from_split(ys), log_det

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, log_det_inverse)``."""
        xs, log_det = self.forward_split(self.to_split(y), inverse=True)
        return self.from_split(xs), log_det

    def _transform(
        self, xa: torch.Tensor, params: list[torch.Tensor], inverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


class AffineCoupling(_Coupling):
    """Affine coupling phi_a -> phi_a * exp(s(phi_p)) + t(phi_p); log-det = sum_a s.

    Parameters
    ----------
    L : int
        Even lattice extent.
    parity : {0, 1}
        Parity of the updated (active) sites.
    conditioner : {"dense", "conv"}
        Network family for s and t.
    hidden : sequence of int
        Hidden widths or channels.
    activation : str
        Hidden activation.
    equivariant : bool
        If True, t is an odd and s an even network of phi_p, so the layer is Z2-equivariant.
    kernel_size : int
        Convolution kernel (conv only).
    init_scale : float
        Scale of the last layers' initial weights (near-identity start).
    """

    def __init__(
        self,
        L: int,
        parity: int,
        conditioner: str = "dense",
        hidden: tuple[int, ...] = (),
        activation: str = "tanh",
        equivariant: bool = False,
        kernel_size: int = 3,
        init_scale: float = 0.01,
    ) -> None:
        heads = [(1, "even" if equivariant else "none"), (1, "odd" if equivariant else "none")]
        super().__init__(L, parity, heads, conditioner, hidden, activation, kernel_size, init_scale)
        self.equivariant = bool(equivariant)

    def _transform(self, xa, params, inverse):
        s = params[0][:, 0]
        t = params[1][:, 0]
        log_det = s.sum(dim=1)
        if inverse:
            return (xa - t) * torch.exp(-s), -log_det
        return xa * torch.exp(s) + t, log_det


class AdditiveCoupling(_Coupling):
    """Additive (volume-preserving) coupling phi_a -> phi_a + t(phi_p); log-det 0.

    Parameters are as for :class:`AffineCoupling`; with ``equivariant`` t is odd.
    """

    def __init__(
        self,
        L: int,
        parity: int,
        conditioner: str = "dense",
        hidden: tuple[int, ...] = (),
        activation: str = "tanh",
        equivariant: bool = False,
        kernel_size: int = 3,
        init_scale: float = 0.01,
    ) -> None:
        heads = [(1, "odd" if equivariant else "none")]
        super().__init__(L, parity, heads, conditioner, hidden, activation, kernel_size, init_scale)
        self.equivariant = bool(equivariant)

    def _transform(self, xa, params, inverse):
        t = params[0][:, 0]
        zero = torch.zeros(xa.shape[0], dtype=xa.dtype, device=xa.device)
        return (xa - t if inverse else xa + t), zero


class SplineCoupling(_Coupling):
    """Rational-quadratic spline coupling: phi_a -> RQS(phi_a; theta(phi_p)).

    Each active site gets its own monotone spline with ``bins`` bins on [-bound, bound]
    (identity outside, unit derivatives at the ends), parameters from a conditioner head of
    3 K - 1 outputs per site.  Not Z2-equivariant.

    Parameters
    ----------
    L, parity, conditioner, hidden, activation, kernel_size, init_scale
        As for :class:`AffineCoupling`.
    bins : int
        Number of bins K (>= 2).
    bound : float
        Half-width B of the spline interval.
    equivariant : bool
        Must be False (not supported; raises ValueError).
    """

    def __init__(
        self,
        L: int,
        parity: int,
        conditioner: str = "dense",
        hidden: tuple[int, ...] = (),
        activation: str = "tanh",
        equivariant: bool = False,
        kernel_size: int = 3,
        init_scale: float = 0.01,
        bins: int = 8,
        bound: float = 4.0,
    ) -> None:
        if equivariant:
            raise ValueError(
                "the spline coupling has no Z2-equivariant form here; "
                "set flow.equivariant = false to use splines"
            )
        if bins < 2:
            raise ValueError(f"spline bins must be >= 2, got {bins}")
        if not bound > 0:
            raise ValueError(f"spline bound must be > 0, got {bound}")
        heads = [(3 * int(bins) - 1, "none")]
        super().__init__(L, parity, heads, conditioner, hidden, activation, kernel_size, init_scale)
        self.bins = int(bins)
        self.bound = float(bound)

    def _transform(self, xa, params, inverse):
        p = params[0].transpose(1, 2)  # (n, V/2, 3K - 1)
        K = self.bins
        y, log_deriv = rq_spline(
            xa, p[..., :K], p[..., K : 2 * K], p[..., 2 * K :], self.bound, inverse=inverse
        )
        return y, log_deriv.sum(dim=1)


# ---------------------------------------------------------------------- global and base layers
class GlobalRescaling(FlowLayer):
    """phi -> a phi with one learnable a = exp(log_scale) > 0; log-det = V log a."""

    equivariant = True

    def __init__(self, L: int, init_scale: float = 1.0) -> None:
        super().__init__()
        if not init_scale > 0:
            raise ValueError(f"global rescaling needs a positive initial scale, got {init_scale}")
        self.volume = L * L
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(a x, V log a)``."""
        ld = (self.volume * self.log_scale).expand(x.shape[0])
        return x * torch.exp(self.log_scale), ld

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(y / a, -V log a)``."""
        ld = (-self.volume * self.log_scale).expand(y.shape[0])
        return y * torch.exp(-self.log_scale), ld


def free_field_spectrum(L: int, h: float, c2: float) -> torch.Tensor:
    """Free propagator G~(k) = 1 / (2 c2 - 2 h (cos k1 + cos k2)) on the L x L momentum grid.

    This is the covariance in momentum space of exp(-S) with the quadratic hopping action
    S = sum_x [-h sum_mu phi_x phi_{x+mu} + c2 phi_x^2] = (1/2) phi M phi, whose eigenvalues
    are 2 c2 - 2 h (cos k1 + cos k2), k = 2 pi n / L.  Returned in float64, shape (L, L).

    Raises
    ------
    ValueError
        Unless c2 > 2 |h| (M positive definite).
    """
    if not c2 > 2.0 * abs(h):
        raise ValueError(
            f"the free-field base layer needs a positive-definite quadratic form "
            f"(c2 > 2|h|), got h = {h:g}, c2 = {c2:g}"
        )
    k = 2.0 * math.pi * torch.arange(L, dtype=torch.float64) / L
    lam = 2.0 * c2 - 2.0 * h * (torch.cos(k)[:, None] + torch.cos(k)[None, :])
    return 1.0 / lam


class FreeFieldLayer(FlowLayer):
    """White noise -> free field: phi = F^-1 sqrt(G~(k)) F z (exact, no parameters).

    With z ~ N(0, 1) on every site, phi is exactly Gaussian with covariance M^-1 of the free
    hopping action (see :func:`free_field_spectrum`).  The map is real, symmetric and linear
    (G~(k) = G~(-k)), so it is a bijection with the constant log-det (1/2) sum_k log G~(k).

    Parameters
    ----------
    L : int
        Lattice extent (any L >= 1; no checkerboard involved).
    h, c2 : float
        Quadratic part of the hopping action that the layer reproduces exactly.
    """

    equivariant = True

    def __init__(self, L: int, h: float, c2: float) -> None:
        super().__init__()
        g = free_field_spectrum(L, h, c2)
        self.L = L
        self.h = float(h)
        self.c2 = float(c2)
        half = L // 2 + 1  # rfft2 keeps the non-negative frequencies of the last axis
        self.register_buffer("sqrt_g", torch.sqrt(g[:, :half]), persistent=False)
        self.log_det_value = float(0.5 * torch.log(g).sum())

    def _scale(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        xk = torch.fft.rfft2(x)
        return torch.fft.irfft2(xk * factor.to(x.dtype), s=x.shape[-2:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(F^-1 sqrt(G~) F x, (1/2) sum log G~)``."""
        ld = x.new_full((x.shape[0],), self.log_det_value)
        return self._scale(x, self.sqrt_g), ld

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(F^-1 F y / sqrt(G~), -(1/2) sum log G~)``."""
        ld = y.new_full((y.shape[0],), -self.log_det_value)
        return self._scale(y, 1.0 / self.sqrt_g), ld
