"""Numba kernels for local Metropolis sweeps.

Everything here is pure (no I/O, no globals); randomness comes from an explicit
``numpy.random.Generator`` passed into the compiled code, which numba drives with numpy's exact
stream.  The accept test and in-loop measurement shared with the other kernels live in
:mod:`lattice_samplers.kernels.common`; :func:`sweep` (one full sweep of single-site updates)
is also composed into the cluster sampler's step.

Fields are float64 arrays of shape (L, L) with periodic boundaries; ``h, c2, c4`` are the
hopping-form coefficients of :class:`lattice_samplers.theory.Phi4Theory`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lattice_samplers.kernels.common import (
    accept_sign,
    accept_test,
    measure_into,
)

__all__ = ["metropolis_block", "sweep"]


@njit(cache=True, inline="always")
def _update_site(
    phi: np.ndarray,
    i: int,
    j: int,
    ip: int,
    im: int,
    jp: int,
    jm: int,
    width: float,
    n_hits: int,
    h: float,
    c2: float,
    c4: float,
    rng: np.random.Generator,
    sign: float,
) -> int:
    """n_hits Metropolis proposals phi -> phi + U(-width, width) at one site; returns accepts."""
    nn = phi[ip, j] + phi[im, j] + phi[i, jp] + phi[i, jm]
    p = phi[i, j]
    p2 = p * p
    n_acc = 0
    for _ in range(n_hits):
        d = width * (2.0 * rng.random() - 1.0)
        e = rng.standard_exponential()
        q = p + d
        q2 = q * q
        ds = -h * d * nn + c2 * (q2 - p2) + c4 * (q2 * q2 - p2 * p2)
        acc = accept_test(ds, e, sign)
        # selects instead of branches: acceptance is a coin flip the CPU cannot predict
        p = q if acc else p
        p2 = q2 if acc else p2
        n_acc += acc
    phi[i, j] = p
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
    broken: int,
) -> int:
    """One full sweep of single-site Metropolis updates; returns the number of accepted moves.

    Every site gets ``n_hits`` successive proposals phi_x -> phi_x + d, d ~ U(-width, width)
    (multi-hit reuses the neighbour sum).  The order is lexicographic, or with
    ``checkerboard`` all even sites (i + j even) then all odd ones.  A proposal is accepted
    by :func:`accept_test` on the exact local change of the action.
    """
    L0, L1 = phi.shape
    sign = accept_sign(broken)
    n_acc = 0
    if checkerboard:
        for parity in range(2):
            for i in range(L0):
                ip = i + 1 if i + 1 < L0 else 0
                im = i - 1 if i > 0 else L0 - 1
                for j in range((i + parity) % 2, L1, 2):
                    jp = j + 1 if j + 1 < L1 else 0
                    jm = j - 1 if j > 0 else L1 - 1
                    n_acc += _update_site(
                        phi, i, j, ip, im, jp, jm, width, n_hits, h, c2, c4, rng, sign
                    )
    else:
        for i in range(L0):
            ip = i + 1 if i + 1 < L0 else 0
            im = i - 1 if i > 0 else L0 - 1
            for j in range(L1):
                jp = j + 1 if j + 1 < L1 else 0
                jm = j - 1 if j > 0 else L1 - 1
                n_acc += _update_site(
                    phi, i, j, ip, im, jp, jm, width, n_hits, h, c2, c4, rng, sign
                )
    return n_acc


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
    broken: int,
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
    for t in range(n_steps):
        n_acc = sweep(phi, width, n_hits, checkerboard, h, c2, c4, rng, broken)
        stats_out[t, 0] = n_acc / n_prop
        if (t + 1) % thin == 0:
            current[0] = measure_into(phi, h, c2, c4, c0, obs)
            obs_out[(t + 1) // thin - 1, :] = obs
    if n_steps % thin != 0:
        current[0] = measure_into(phi, h, c2, c4, c0, obs)
