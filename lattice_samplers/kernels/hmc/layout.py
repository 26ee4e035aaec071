"""Row-padded field layout of the HMC kernels: padding, halo rows, neighbour views.

Inside a block the fields live in *row-padded* flat buffers of (L0 + 2) * L1 entries, the
lattice in rows 1 .. L0 and copies of its last and first rows in rows 0 and L0 + 1, so that
every vertical neighbour is at x -+ L1 with no wrap.  A fused kick-drift is then one long
branch-free loop over all V sites, in which x -+ 1 are the horizontal neighbours; that is
wrong only for one neighbour of the first and last column, and as the force is linear in it,
a short pass (2 L0 sites, :func:`column_force`) adds the difference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lattice_samplers.kernels.common import FASTMATH

__all__ = ["column_force", "fill_halo", "neighbour_views", "pad_into", "unpad_into"]


@njit(cache=True, fastmath=FASTMATH)
def fill_halo(pad: np.ndarray, L0: int, L1: int) -> None:
    """Rows 0 and L0 + 1 of a row-padded field become copies of rows L0 and 1."""
    top = pad[:L1]
    last_row = pad[L0 * L1 : (L0 + 1) * L1]
    bottom = pad[(L0 + 1) * L1 : (L0 + 2) * L1]
    first_row = pad[L1 : 2 * L1]
    for j in range(L1):
        top[j] = last_row[j]
        bottom[j] = first_row[j]


@njit(cache=True, fastmath=FASTMATH)
def pad_into(pad: np.ndarray, phi: np.ndarray) -> None:
    """Copy the (L0, L1) field ``phi`` into the row-padded buffer ``pad`` (halo included)."""
    L0, L1 = phi.shape
    flat = phi.reshape(L0 * L1)
    mid = pad[L1 : L1 + L0 * L1]
    for y in range(L0 * L1):
        mid[y] = flat[y]
    fill_halo(pad, L0, L1)


@njit(cache=True, fastmath=FASTMATH)
def unpad_into(phi: np.ndarray, pad: np.ndarray) -> None:
    """Copy the lattice rows of a row-padded buffer into the (L0, L1) field ``phi``."""
    L0, L1 = phi.shape
    flat = phi.reshape(L0 * L1)
    mid = pad[L1 : L1 + L0 * L1]
    for y in range(L0 * L1):
        flat[y] = mid[y]


@njit(cache=True, inline="always")
def neighbour_views(
    src: np.ndarray, volume: int, L1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Views of a row-padded field such that view[y] is site y's up/left/self/right/down."""
    return (
        src[:volume],
        src[L1 - 1 : L1 - 1 + volume],
        src[L1 : L1 + volume],
        src[L1 + 1 : L1 + 1 + volume],
        src[2 * L1 : 2 * L1 + volume],
    )


@njit(cache=True, inline="always", fastmath=FASTMATH)
def column_force(
    src: np.ndarray, x: np.uint64, j: np.uint64, L1: np.uint64, h: float, a: float, b: float
) -> float:
    """dS/dphi at padded index x of column j (the first or last), periodic wrap included.

    Indices are unsigned: numba then emits no negative-index wraparound code.
    """
    one = np.uint64(1)
    left = x - one if j != np.uint64(0) else x + L1 - one
    right = x + one if j + one < L1 else x + one - L1
    p = src[x]
    return p * (a + b * p * p) - h * (src[left] + src[right] + src[x - L1] + src[x + L1])
