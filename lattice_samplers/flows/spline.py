"""The monotone rational-quadratic spline of Durkan et al. (arXiv:1906.04032), batched.

K bins on [-B, B] with learnable widths, heights and internal knot derivatives, identity
outside the interval and unit derivative at +-B, so the map is continuous with its first
derivative.  :func:`rq_spline` evaluates it (or its inverse) with the log-derivative;
:class:`lattice_samplers.flows.layers.SplineCoupling` applies one spline per active site.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["rq_spline", "spline_knots"]


def spline_knots(
    raw_w: torch.Tensor,
    raw_h: torch.Tensor,
    raw_d: torch.Tensor,
    bound: float,
    min_bin: float,
    min_derivative: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Knot positions x_k, y_k (K + 1 each) and derivatives d_k (K + 1, ends = 1).

    Widths and heights are a softmax (each bin at least ``min_bin`` of the interval) scaled
    to 2B; internal derivatives are ``min_derivative + softplus(raw + shift)``, with the shift
    chosen so that raw = 0 gives derivative 1 (raw parameters near 0 give the identity).
    """
    K = raw_w.shape[-1]
    w = min_bin + (1.0 - min_bin * K) * torch.softmax(raw_w, dim=-1)
    hh = min_bin + (1.0 - min_bin * K) * torch.softmax(raw_h, dim=-1)
    shift = math.log(math.expm1(1.0 - min_derivative))
    d_inner = min_derivative + nn.functional.softplus(raw_d + shift)
    pad = [1, 0]
    xk = torch.nn.functional.pad(torch.cumsum(w, dim=-1), pad) * (2 * bound) - bound
    yk = torch.nn.functional.pad(torch.cumsum(hh, dim=-1), pad) * (2 * bound) - bound
    # pin the ends exactly, cumsum rounding must not move them
    xk = torch.cat(
        [
            xk[..., :1].new_full(xk[..., :1].shape, -bound),
            xk[..., 1:-1],
            xk[..., :1].new_full(xk[..., :1].shape, bound),
        ],
        dim=-1,
    )
    yk = torch.cat(
        [
            yk[..., :1].new_full(yk[..., :1].shape, -bound),
            yk[..., 1:-1],
            yk[..., :1].new_full(yk[..., :1].shape, bound),
        ],
        dim=-1,
    )
    ones = torch.ones_like(d_inner[..., :1])
    dk = torch.cat([ones, d_inner, ones], dim=-1)
    return xk, yk, dk


def rq_spline(
    x: torch.Tensor,
    raw_w: torch.Tensor,
    raw_h: torch.Tensor,
    raw_d: torch.Tensor,
    bound: float,
    inverse: bool = False,
    min_bin: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monotone rational-quadratic spline (Durkan et al. 2019), elementwise.

    Parameters
    ----------
    x : torch.Tensor
        Inputs, any shape ``S``.
    raw_w, raw_h : torch.Tensor
        Unnormalized bin widths and heights, shape ``S + (K,)``.
    raw_d : torch.Tensor
        Unnormalized derivatives at the K - 1 internal knots, shape ``S + (K - 1,)``.
    bound : float
        The spline acts on [-B, B] and is the identity outside (derivative 1 at both ends
        makes the map C^1).
    inverse : bool
        Evaluate the inverse map instead.

    Returns
    -------
    (y, log_deriv) : tuple of torch.Tensor
        Outputs and log |dy/dx| elementwise (for ``inverse``, log |dx/dy|), shape ``S``.

    Notes
    -----
    In bin k with xi = (x - x_k) / w_k, s_k = h_k / w_k and D = d_k + d_{k+1} - 2 s_k:

        y = y_k + h_k (s_k xi^2 + d_k xi (1 - xi)) / (s_k + D xi (1 - xi)),
        dy/dx = s_k^2 (d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2)
                / (s_k + D xi (1 - xi))^2.

    The inverse solves a xi^2 + b xi + c = 0 with a = h_k (s_k - d_k) + dy D,
    b = h_k d_k - dy D, c = -s_k dy (dy = y - y_k), using the root 2c / (-b - sqrt(b^2 - 4ac)),
    which avoids cancellation.
    """
    xk, yk, dk = spline_knots(raw_w, raw_h, raw_d, bound, min_bin, min_derivative)
    inside = (x > -bound) & (x < bound)
    # Clamp so that the unused branch of ``where`` stays finite (NaN there poisons gradients).
    xc = torch.clamp(x, -bound, bound)
    knots_in = yk if inverse else xk
    # bin index: the number of internal knots at or below the value
    k = (xc.unsqueeze(-1) >= knots_in[..., 1:-1]).sum(dim=-1, keepdim=True)
    x_lo = xk.gather(-1, k).squeeze(-1)
    x_hi = xk.gather(-1, k + 1).squeeze(-1)
    y_lo = yk.gather(-1, k).squeeze(-1)
    y_hi = yk.gather(-1, k + 1).squeeze(-1)
    d_lo = dk.gather(-1, k).squeeze(-1)
    d_hi = dk.gather(-1, k + 1).squeeze(-1)
    w = x_hi - x_lo
    hgt = y_hi - y_lo
    s = hgt / w
    D = d_lo + d_hi - 2.0 * s
    if not inverse:
        xi = (xc - x_lo) / w
        xi1 = xi * (1.0 - xi)
        denom = s + D * xi1
        y = y_lo + hgt * (s * xi * xi + d_lo * xi1) / denom
        deriv_num = s * s * (d_hi * xi * xi + 2.0 * s * xi1 + d_lo * (1.0 - xi) ** 2)
        log_deriv = torch.log(deriv_num) - 2.0 * torch.log(denom)
        return torch.where(inside, y, x), torch.where(inside, log_deriv, torch.zeros_like(x))
    dy = xc - y_lo
    a = hgt * (s - d_lo) + dy * D
    b = hgt * d_lo - dy * D
    c = -s * dy
    disc = torch.clamp(b * b - 4.0 * a * c, min=0.0)
    xi = (2.0 * c) / (-b - torch.sqrt(disc))
    xi = torch.clamp(xi, 0.0, 1.0)
    xout = x_lo + xi * w
    xi1 = xi * (1.0 - xi)
    denom = s + D * xi1
    deriv_num = s * s * (d_hi * xi * xi + 2.0 * s * xi1 + d_lo * (1.0 - xi) ** 2)
    log_deriv = -(torch.log(deriv_num) - 2.0 * torch.log(denom))
    return torch.where(inside, xout, x), torch.where(inside, log_deriv, torch.zeros_like(x))
