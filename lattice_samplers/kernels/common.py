"""What every classical kernel shares: the accept test, in-loop measurement, observable names.

Pure numba code (no I/O, no globals).  Written once here so that the Metropolis, HMC, cluster
and independence-Metropolis kernels import a common base instead of each other:

* :func:`accept_test` -- the Metropolis accept/reject decision and its sign convention;
* :func:`measure_into` -- the scalar observables of :mod:`lattice_samplers.observables`
  computed in one pass, together with the action;
* :data:`OBSERVABLE_NAMES`, :data:`FASTMATH` and the negative-control switches.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "FASTMATH",
    "N_OBS",
    "OBSERVABLE_NAMES",
    "accept_test",
    "measure_into",
    "observables_from_sums",
]

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
#: produce an honest inf/NaN that the (non-fastmath) accept test rejects and counts.  ``nsz``
#: is left out too: with ``reassoc`` it made the HMC block compiled in a process round
#: differently from the same block loaded from Numba's cache, so one seed gave two chains
#: (tests/test_kernels_reproducible.py); leaving it out cost no measurable speed.
FASTMATH: set[str] = {"arcp", "contract", "afn", "reassoc"}


@njit(cache=True, inline="always")
def accept_test(delta_h: float, e: float) -> bool:
    """Metropolis decision for delta_h = H_new - H_old, given a fresh variate e ~ Exp(1).

    The sign convention, written once for every sampler: accept if log(u) < -delta_h with
    u ~ U(0, 1].  It is evaluated as ``e > delta_h`` with e = -log(u) drawn directly as a
    standard exponential (``rng.standard_exponential()``, numpy's ziggurat): the same test in
    law, without a logarithm.  Callers draw e for every proposal, so the code is branch-free
    and the random stream does not depend on outcomes.  A non-finite ``delta_h`` (NaN, +-inf
    from a diverging update) is always rejected; callers count it from the recorded delta_h.

    Compiled without fastmath, so comparisons with NaN keep their IEEE meaning.  (The
    reversed test of the negative controls is built in :mod:`lattice_samplers.testing`.)
    """
    return (e - delta_h > 0.0) & (abs(delta_h) < np.inf)


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
    return observables_from_sums(s1, s2, s4, hop, L0 * L1, h, c2, c4, c0, out)


@njit(cache=True, inline="always", fastmath=FASTMATH)
def observables_from_sums(
    s1: float,
    s2: float,
    s4: float,
    hop: float,
    volume: int,
    h: float,
    c2: float,
    c4: float,
    c0: float,
    out: np.ndarray,
) -> float:
    """The observables and full action from sum phi, sum phi^2, sum phi^4 and the hopping sum.

    The one place the definitions of :data:`OBSERVABLE_NAMES` are written; kernels that get
    the four sums for free from a pass they make anyway (HMC's last kick) finish with it.
    """
    action = -h * hop + c2 * s2 + c4 * s4 + volume * c0
    m = s1 / volume
    out[0] = m
    out[1] = abs(m)
    out[2] = s1 * s1 / volume
    out[3] = action / volume
    out[4] = s2 / volume
    out[5] = hop / volume
    return action
