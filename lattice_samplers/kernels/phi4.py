"""Numba kernels for the hopping-form phi^4 action on an L x L periodic lattice.

All kernels take the field ``phi`` (float64, shape (L, L)) and the hopping-form coefficients
``h, c2, c4`` of :class:`lattice_samplers.theory.Phi4Theory` (the additive constant is left to
the caller).  They are pure: no I/O, no globals, no hidden randomness.  Each has a NumPy twin
in :mod:`lattice_samplers.theory` and the tests assert agreement.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "action",
    "batch_action",
    "force",
    "local_delta_action",
    "neighbour_sum",
]


@njit(cache=True)
def action(phi: np.ndarray, h: float, c2: float, c4: float) -> float:
    """S(phi) without the additive constant: sum_x [-h phi_x (phi_{x+1} + phi_{x+L}) + ...]."""
    L0, L1 = phi.shape
    s = 0.0
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            p = phi[i, j]
            p2 = p * p
            s += -h * p * (phi[ip, j] + phi[i, jp]) + c2 * p2 + c4 * p2 * p2
    return s


@njit(cache=True)
def force(phi: np.ndarray, h: float, c2: float, c4: float, out: np.ndarray) -> None:
    """Write dS/dphi into ``out`` (same shape as phi): -h sum_nn phi + 2 c2 phi + 4 c4 phi^3."""
    L0, L1 = phi.shape
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        im = i - 1 if i > 0 else L0 - 1
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            jm = j - 1 if j > 0 else L1 - 1
            p = phi[i, j]
            nn = phi[ip, j] + phi[im, j] + phi[i, jp] + phi[i, jm]
            out[i, j] = -h * nn + p * (2.0 * c2 + 4.0 * c4 * p * p)


@njit(cache=True)
def neighbour_sum(phi: np.ndarray, i: int, j: int) -> float:
    """Sum of the four nearest neighbours of site (i, j), periodic."""
    L0, L1 = phi.shape
    ip = i + 1 if i + 1 < L0 else 0
    im = i - 1 if i > 0 else L0 - 1
    jp = j + 1 if j + 1 < L1 else 0
    jm = j - 1 if j > 0 else L1 - 1
    return phi[ip, j] + phi[im, j] + phi[i, jp] + phi[i, jm]


@njit(cache=True)
def local_delta_action(
    phi: np.ndarray, i: int, j: int, d: float, h: float, c2: float, c4: float
) -> float:
    """Change of S when phi[i, j] -> phi[i, j] + d (only the site's own terms change)."""
    p = phi[i, j]
    q = p + d
    p2 = p * p
    q2 = q * q
    return -h * d * neighbour_sum(phi, i, j) + c2 * (q2 - p2) + c4 * (q2 * q2 - p2 * p2)


@njit(cache=True, nogil=True)
def batch_action(phi: np.ndarray, h: float, c2: float, c4: float, out: np.ndarray) -> None:
    """Write S(phi[n]) (without constant) into out[n] for a batch of shape (n, L, L)."""
    for n in range(phi.shape[0]):
        out[n] = action(phi[n], h, c2, c4)
