"""Numba kernels for the Wolff single-cluster update of phi^4 (Brower-Tamayo embedding).

The embedded Ising variables are the signs s_x = sign(phi_x).  A bond <x, y> between
same-sign neighbours is activated with probability p = 1 - exp(-2 h |phi_x phi_y|) (Brower and
Tamayo, PRL 62 (1989) 1087); the cluster grown from a random seed site through active bonds has
its signs flipped.  |phi| is unchanged, so the update must be composed with local sweeps to be
ergodic (:func:`cluster_block` does that).  Requires h >= 0 (ferromagnetic hopping).

Growth uses an explicit preallocated stack (no recursion) and flips a site when it joins the
cluster, so "already in the cluster" is simply "sign differs from the cluster's original sign":
no visited array is needed.  Bond activation uses an exponential variate instead of exp().
On L = 2 each neighbour pair is linked by two bonds and is tested twice, exactly matching the
doubled coupling of the action there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lattice_samplers.kernels.common import measure_into
from lattice_samplers.kernels.metropolis import sweep_into

__all__ = [
    "CLUSTER_STAT_NAMES",
    "bond_active",
    "cluster_block",
    "wolff_update",
]

#: Per-step statistics written by :func:`cluster_block`, in column order.
CLUSTER_STAT_NAMES: tuple[str, ...] = ("accepted", "sites_flipped", "cluster_size")


@njit(cache=True, inline="always")
def bond_active(e: float, two_h_abs_phi: float, v: float) -> bool:
    """Whether a same-sign bond joins the cluster: E < 2 h |phi_x phi_y|, E ~ Exp(1)."""
    return e < two_h_abs_phi * abs(v)


@njit(cache=True)
def wolff_update(phi: np.ndarray, h: float, rng: np.random.Generator, stack: np.ndarray) -> int:
    """Grow one Wolff cluster from a uniformly random seed, flip its signs; return its size.

    Parameters
    ----------
    phi : ndarray, shape (L, L)
        Field, updated in place.
    h : float
        Hopping coefficient (>= 0).
    stack : ndarray of int64, shape (2, L * L + 1)
        Scratch space for the growth front, row and column indices (each site enters once;
        the extra slot takes the unconditional write of the branch-free push).

    Notes
    -----
    A bond is activated with p = 1 - exp(-2 h |phi_x phi_y|) = P(E < 2 h |phi_x phi_y|) for
    E ~ Exp(1), so no exponential is evaluated.  One E is drawn for every neighbour of every
    cluster site, candidate or not, and the push is written as selects: whether a neighbour
    joins is a coin flip the CPU cannot predict, and mispredicted branches would cost more
    than the extra random numbers.
    """
    L0, L1 = phi.shape
    seed = rng.integers(0, L0 * L1)
    i0 = seed // L1
    j0 = seed - i0 * L1
    s = 1.0 if phi[i0, j0] >= 0.0 else -1.0  # the cluster's sign before flipping
    phi[i0, j0] = -phi[i0, j0]
    si = stack[0]
    sj = stack[1]
    si[0] = i0
    sj[0] = j0
    top = 1
    size = 1
    two_h = 2.0 * h
    while top > 0:
        top -= 1
        i = si[top]
        j = sj[top]
        ax = two_h * abs(phi[i, j])
        for k in range(4):
            if k == 0:
                ni = i + 1 if i + 1 < L0 else 0
                nj = j
            elif k == 1:
                ni = i - 1 if i > 0 else L0 - 1
                nj = j
            elif k == 2:
                ni = i
                nj = j + 1 if j + 1 < L1 else 0
            else:
                ni = i
                nj = j - 1 if j > 0 else L1 - 1
            v = phi[ni, nj]
            # same sign as the cluster had, so not flipped yet: a candidate
            candidate = v * s > 0.0
            e = rng.standard_exponential()
            add = candidate & bond_active(e, ax, v)
            phi[ni, nj] = -v if add else v
            si[top] = ni
            sj[top] = nj
            top += add
            size += add
    return size


@njit(cache=True, nogil=True)
def cluster_block(
    phi: np.ndarray,
    current: np.ndarray,
    stack: np.ndarray,
    n_clusters: int,
    n_sweeps: int,
    width: float,
    n_hits: int,
    checkerboard: bool,
    h: float,
    c2: float,
    c4: float,
    c0: float,
    rng: np.random.Generator,
    n_steps: int,
    thin: int,
    obs_out: np.ndarray,
    stats_out: np.ndarray,
) -> None:
    """Run ``n_steps`` steps of (n_clusters Wolff updates + n_sweeps Metropolis sweeps).

    Parameters
    ----------
    phi : ndarray, shape (L, L)
        Field, updated in place.
    current : ndarray, shape (1 + N_OBS,)
        [action, observables...] of ``phi``; updated at every recorded draw and at the end.
    stack : ndarray of int64, shape (2, L * L + 1)
        Scratch for :func:`wolff_update`.
    obs_out : ndarray, shape (n_steps // thin, N_OBS)
    stats_out : ndarray, shape (n_steps, 3)
        Per step, :data:`CLUSTER_STAT_NAMES`: fraction of accepted Metropolis proposals, total
        sites flipped by the step's clusters, mean cluster size of the step.
    """
    n_prop = phi.shape[0] * phi.shape[1] * n_hits * n_sweeps
    obs = current[1:]
    work = np.empty((2 * n_hits + 1) * phi.shape[0] * phi.shape[1])  # the sweeps' scratch
    for t in range(n_steps):
        flipped = 0
        for _ in range(n_clusters):
            flipped += wolff_update(phi, h, rng, stack)
        n_acc = 0
        for _ in range(n_sweeps):
            n_acc += sweep_into(phi, width, n_hits, checkerboard, h, c2, c4, rng, work)
        stats_out[t, 0] = n_acc / n_prop
        stats_out[t, 1] = flipped
        stats_out[t, 2] = flipped / n_clusters
        if (t + 1) % thin == 0:
            current[0] = measure_into(phi, h, c2, c4, c0, obs)
            obs_out[(t + 1) // thin - 1, :] = obs
    if n_steps % thin != 0:
        current[0] = measure_into(phi, h, c2, c4, c0, obs)
