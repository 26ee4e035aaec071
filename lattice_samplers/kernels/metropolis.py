"""Numba kernels for local Metropolis sweeps.

Everything here is pure (no I/O, no globals); randomness comes from an explicit
``numpy.random.Generator`` passed into the compiled code.  Each sweep draws one key from it and
fills its proposals and exponential variates in two vectorized batches from the counter-based
stream of :mod:`lattice_samplers.kernels.counter_rng` (numpy's per-variate calls cannot be
vectorized and cost more than the update itself); the update loop then only reads buffers and
uses selects, not branches.  The accept test and in-loop measurement shared with the other
kernels live in :mod:`lattice_samplers.kernels.common`; :func:`sweep_into` (one full sweep of
single-site updates) is also composed into the cluster sampler's step.

Fields are float64 arrays of shape (L, L) with periodic boundaries; ``h, c2, c4`` are the
hopping-form coefficients of :class:`lattice_samplers.theory.Phi4Theory`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lattice_samplers.kernels.common import (
    accept_test,
    measure_into,
)
from lattice_samplers.kernels.counter_rng import draw_key, exponential_fill, uniform_fill

__all__ = ["draw_proposals", "metropolis_block", "sweep", "sweep_into"]


@njit(cache=True)
def draw_proposals(
    n: int, width: float, rng: np.random.Generator, work: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A sweep's n proposals d ~ U(-width, width) and n variates e ~ Exp(1), in two batches.

    One key from ``rng``; d_k = width * (2 u_k - 1) from words 0 .. n-1 of its stream,
    e_k = -log(u'_k) from words n .. 2n-1.  Returns views (d, e) into ``work`` (>= 2n).
    """
    key = draw_key(rng)
    d = work[:n]
    e = work[n : 2 * n]
    uniform_fill(d, key, 0, 2.0 * width, -width)
    exponential_fill(e, key, n)
    return d, e


@njit(cache=True, inline="always")
def _update_site(
    phi: np.ndarray,
    i: int,
    j: int,
    ip: int,
    im: int,
    jp: int,
    jm: int,
    d: np.ndarray,
    e: np.ndarray,
    k: int,
    n_hits: int,
    h: float,
    c2: float,
    c4: float,
) -> int:
    """n_hits Metropolis proposals phi -> phi + d[k + hit] at one site; returns accepts."""
    nn = phi[ip, j] + phi[im, j] + phi[i, jp] + phi[i, jm]
    p = phi[i, j]
    p2 = p * p
    n_acc = 0
    for hit in range(n_hits):
        dd = d[k + hit]
        q = p + dd
        q2 = q * q
        ds = -h * dd * nn + c2 * (q2 - p2) + c4 * (q2 * q2 - p2 * p2)
        acc = accept_test(ds, e[k + hit])
        # selects instead of branches: acceptance is a coin flip the CPU cannot predict
        p = q if acc else p
        p2 = q2 if acc else p2
        n_acc += acc
    phi[i, j] = p
    return n_acc


@njit(cache=True)
def _gather_half(phi: np.ndarray, parity: int, cur: np.ndarray, nn: np.ndarray) -> None:
    """cur[s], nn[s] = value and neighbour sum of the s-th site of ``parity`` (even L0, L1).

    Sites of one parity are numbered row by row (s = i L1/2 + k for j = (i + parity) % 2 + 2k),
    the checkerboard sweep's order.  Unsigned flat indices: no wraparound code, and the
    horizontal wrap only at one end of each row, done apart.
    """
    L0, L1 = phi.shape
    flat = phi.reshape(L0 * L1)
    half = L1 // 2
    u1 = np.uint64(L1)
    one = np.uint64(1)
    two = np.uint64(2)
    for i in range(L0):
        row = np.uint64(i) * u1
        up = np.uint64(i - 1 if i > 0 else L0 - 1) * u1
        down = np.uint64(i + 1 if i + 1 < L0 else 0) * u1
        j0 = np.uint64((i + parity) % 2)
        s0 = i * half
        # k with both horizontal neighbours inside the row: 1 .. half-1 (j0 = 0), 0 .. half-2
        k_lo = 1 if j0 == 0 else 0
        k_hi = half if j0 == 0 else half - 1
        for k in range(k_lo, k_hi):
            j = j0 + two * np.uint64(k)
            x = row + j
            cur[s0 + k] = flat[x]
            nn[s0 + k] = flat[up + j] + flat[down + j] + flat[x - one] + flat[x + one]
        # the site whose left (j = 0) or right (j = L1 - 1) neighbour wraps
        k = 0 if j0 == 0 else half - 1
        j = j0 + two * np.uint64(k)
        x = row + j
        left = x - one if j > np.uint64(0) else row + u1 - one
        right = x + one if j + one < u1 else row
        cur[s0 + k] = flat[x]
        nn[s0 + k] = flat[up + j] + flat[down + j] + flat[left] + flat[right]


@njit(cache=True)
def _scatter_half(phi: np.ndarray, parity: int, cur: np.ndarray) -> None:
    """Write cur[s] back to the s-th site of ``parity`` (inverse of :func:`_gather_half`)."""
    L0, L1 = phi.shape
    flat = phi.reshape(L0 * L1)
    half = L1 // 2
    u1 = np.uint64(L1)
    two = np.uint64(2)
    for i in range(L0):
        row = np.uint64(i) * u1 + np.uint64((i + parity) % 2)
        s0 = i * half
        for k in range(half):
            flat[row + two * np.uint64(k)] = cur[s0 + k]


@njit(cache=True)
def _update_half(
    cur: np.ndarray,
    nn: np.ndarray,
    d: np.ndarray,
    e: np.ndarray,
    n_hits: int,
    h: float,
    c2: float,
    c4: float,
) -> int:
    """All proposals of one checkerboard half at once: the sites are independent.

    Site s, hit t uses d[s n_hits + t], e[s n_hits + t].  A branch-free loop over the sites
    (selects, an integer count), which LLVM vectorizes; not fastmath (the accept test).
    """
    n = cur.shape[0]
    n_acc = 0
    for t in range(n_hits):
        d_t = d[t:]
        e_t = e[t:]
        for s in range(n):
            p = cur[s]
            dd = d_t[s * n_hits]
            q = p + dd
            p2 = p * p
            q2 = q * q
            ds = -h * dd * nn[s] + c2 * (q2 - p2) + c4 * (q2 * q2 - p2 * p2)
            acc = accept_test(ds, e_t[s * n_hits])
            cur[s] = q if acc else p
            n_acc += 1 if acc else 0
    return n_acc


@njit(cache=True)
def sweep_into(
    phi: np.ndarray,
    width: float,
    n_hits: int,
    checkerboard: bool,
    h: float,
    c2: float,
    c4: float,
    rng: np.random.Generator,
    work: np.ndarray,
) -> int:
    """One full sweep of single-site Metropolis updates; returns the number of accepted moves.

    Every site gets ``n_hits`` successive proposals phi_x -> phi_x + d, d ~ U(-width, width)
    (multi-hit reuses the neighbour sum).  The order is lexicographic, or with
    ``checkerboard`` all even sites (i + j even) then all odd ones.  A proposal is accepted
    by :func:`accept_test` on the exact local change of the action.  The k-th proposal of
    the sweep (site number k // n_hits in this order, hit k % n_hits) uses d[k] and e[k] of
    :func:`draw_proposals`; ``work`` is scratch of >= (2 n_hits + 1) V entries.

    Checkerboard sweeps of even L0 and L1 update each half as a batch (gather the values and
    neighbour sums, one vectorized pass of proposals, scatter back): the result is that of
    the site-by-site loop, which the other cases run.
    """
    L0, L1 = phi.shape
    volume = L0 * L1
    d, e = draw_proposals(volume * n_hits, width, rng, work)
    n_acc = 0
    k = 0
    if checkerboard and L0 % 2 == 0 and L1 % 2 == 0:
        n_half = volume // 2
        cur = work[2 * volume * n_hits : 2 * volume * n_hits + n_half]
        nn = work[2 * volume * n_hits + n_half : 2 * volume * n_hits + volume]
        for parity in range(2):
            _gather_half(phi, parity, cur, nn)
            k = parity * n_half * n_hits
            n_acc += _update_half(
                cur,
                nn,
                d[k : k + n_half * n_hits],
                e[k : k + n_half * n_hits],
                n_hits,
                h,
                c2,
                c4,
            )
            _scatter_half(phi, parity, cur)
    elif checkerboard:
        for parity in range(2):
            for i in range(L0):
                ip = i + 1 if i + 1 < L0 else 0
                im = i - 1 if i > 0 else L0 - 1
                for j in range((i + parity) % 2, L1, 2):
                    jp = j + 1 if j + 1 < L1 else 0
                    jm = j - 1 if j > 0 else L1 - 1
                    n_acc += _update_site(phi, i, j, ip, im, jp, jm, d, e, k, n_hits, h, c2, c4)
                    k += n_hits
    else:
        for i in range(L0):
            ip = i + 1 if i + 1 < L0 else 0
            im = i - 1 if i > 0 else L0 - 1
            for j in range(L1):
                jp = j + 1 if j + 1 < L1 else 0
                jm = j - 1 if j > 0 else L1 - 1
                n_acc += _update_site(phi, i, j, ip, im, jp, jm, d, e, k, n_hits, h, c2, c4)
                k += n_hits
    return n_acc


@njit(cache=True)
def sweep(
    phi: np.ndarray,
    width: float,
    n_hits: int,
    checkerboard: bool,
    h: float,
    c2: float,
    c4: float,
    rng: np.random.Generator,
) -> int:
    """:func:`sweep_into` with its own scratch (allocated per call: for single sweeps)."""
    work = np.empty((2 * n_hits + 1) * phi.shape[0] * phi.shape[1])
    return sweep_into(phi, width, n_hits, checkerboard, h, c2, c4, rng, work)


@njit(cache=True, nogil=True)
def metropolis_block(
    phi: np.ndarray,
    current: np.ndarray,
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
    """Run ``n_steps`` sweeps in place, recording observables every ``thin`` sweeps.

    Parameters
    ----------
    phi : ndarray, shape (L, L)
        The field, updated in place.
    current : ndarray, shape (1 + N_OBS,)
        [action, observables...] of ``phi``; updated at every recorded draw and at the end.
    obs_out : ndarray, shape (n_steps // thin, N_OBS)
        Observables after sweeps thin, 2 thin, ...
    stats_out : ndarray, shape (n_steps, 1)
        Per sweep: the fraction of accepted proposals.
    """
    n_prop = phi.shape[0] * phi.shape[1] * n_hits
    obs = current[1:]
    work = np.empty(2 * n_prop + phi.shape[0] * phi.shape[1])
    for t in range(n_steps):
        n_acc = sweep_into(phi, width, n_hits, checkerboard, h, c2, c4, rng, work)
        stats_out[t, 0] = n_acc / n_prop
        if (t + 1) % thin == 0:
            current[0] = measure_into(phi, h, c2, c4, c0, obs)
            obs_out[(t + 1) // thin - 1, :] = obs
    if n_steps % thin != 0:
        current[0] = measure_into(phi, h, c2, c4, c0, obs)
