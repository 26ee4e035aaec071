"""Numba kernels for local Metropolis sweeps, the shared accept test and in-loop measurement.

Everything here is pure (no I/O, no globals); randomness comes from an explicit
``numpy.random.Generator`` passed into the compiled code, which numba drives with numpy's exact
stream.  Three pieces are shared by every classical sampler and live here so that each is
written once:

* :func:`accept_test` -- the Metropolis accept/reject decision and its sign convention;
* :func:`measure_into` -- the scalar observables of :mod:`lattice_samplers.observables`
  computed in one pass, together with the action;
* :func:`sweep` -- one full sweep of single-site updates (also used by the cluster sampler).

Fields are float64 arrays of shape (L, L) with periodic boundaries; ``h, c2, c4`` are the
hopping-form coefficients of :class:`lattice_samplers.theory.Phi4Theory`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Observables recorded inside the compiled loops, in the order of :func:`measure_into`'s
#: output; the names and definitions of ``lattice_samplers.observables.SCALAR_OBSERVABLES``.
OBSERVABLE_NAMES: tuple[str, ...] = (
    "magnetization",
    "abs_magnetization",
    "two_point_susceptibility",
    "action_density",
    "phi2",
    "ising_energy",
)
N_OBS = len(OBSERVABLE_NAMES)

#: fastmath flags for pure arithmetic (reductions may be reordered and vectorized, FMAs may
#: be contracted).  ``nnan``/``ninf`` are deliberately left out: a diverging trajectory must
#: produce an honest inf/NaN that the (non-fastmath) accept test rejects and counts.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: Values of the test-only ``broken`` argument (negative controls; never use in production).
BROKEN_NONE = 0
BROKEN_REVERSED_ACCEPT = 1


@njit(cache=True, inline="always")
def accept_test(delta_h: float, e: float, sign: float) -> bool:
    """Metropolis decision for delta_h = H_new - H_old, given a fresh variate e ~ Exp(1).

    The sign convention, written once for every sampler: accept if log(u) < -delta_h with
    u ~ U(0, 1].  It is evaluated as ``e > delta_h`` with e = -log(u) drawn directly as a
    standard exponential (``rng.standard_exponential()``, numpy's ziggurat): the same test in
    law, without a logarithm.  Callers draw e for every proposal, so the code is branch-free
    and the random stream does not depend on outcomes.  A non-finite ``delta_h`` (NaN, +-inf
    from a diverging update) is always rejected; callers count it from the recorded delta_h.

    ``sign`` is +1.0.  The test-only negative control ``sign = -1.0`` (see
    :func:`accept_sign`) reverses the test: accept if log(u) > -delta_h.  Compiled without
    fastmath, so comparisons with NaN keep their IEEE meaning.
    """
    return (sign * (e - delta_h) > 0.0) & (abs(delta_h) < np.inf)


@njit(cache=True)
def accept_sign(broken: int) -> float:
    """The ``sign`` argument of :func:`accept_test`: -1.0 for the reversed-accept control."""
    return -1.0 if broken == BROKEN_REVERSED_ACCEPT else 1.0


@njit(cache=True, fastmath=FASTMATH)
def measure_into(
    phi: np.ndarray, h: float, c2: float, c4: float, c0: float, out: np.ndarray
) -> float:
    """Write the scalar observables of ``phi`` into ``out[:N_OBS]`` and return the full action.

    One pass computes sum phi, sum phi^2, sum phi^4 and the forward hopping sum, from which
    every entry of :data:`OBSERVABLE_NAMES` follows with the definitions of
    :mod:`lattice_samplers.observables` (M/V, |M|/V, M^2/V, S/V incl. c0, mean phi^2, mean
    forward-neighbour product).  The returned action includes the constant V c0.
    """
    L0, L1 = phi.shape
    s1 = 0.0
    s2 = 0.0
    s4 = 0.0
    hop = 0.0
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        for j in range(L1 - 1):
            p = phi[i, j]
            p2 = p * p
            s1 += p
            s2 += p2
            s4 += p2 * p2
            hop += p * (phi[ip, j] + phi[i, j + 1])
        j = L1 - 1
        p = phi[i, j]
        p2 = p * p
        s1 += p
        s2 += p2
        s4 += p2 * p2
        hop += p * (phi[ip, j] + phi[i, 0])
    volume = L0 * L1
    action = -h * hop + c2 * s2 + c4 * s4 + volume * c0
    m = s1 / volume
    out[0] = m
    out[1] = abs(m)
    out[2] = s1 * s1 / volume
    out[3] = action / volume
    out[4] = s2 / volume
    out[5] = hop / volume
    return action


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


@njit(cache=True)
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
