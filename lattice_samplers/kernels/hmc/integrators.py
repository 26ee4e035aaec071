"""HMC integrators on row-padded fields: leapfrog, Omelyan, and the fused kick-drift passes.

* ``LEAPFROG`` (velocity Verlet): kick(eps/2) [drift(eps) kick(eps)] ... ending with kick(eps/2);
  one force evaluation per step.
* ``OMELYAN``: the second-order minimum-norm scheme (Omelyan, Mryglod, Folk 2003; Takaishi and
  de Forcrand 2006) in its force-first form, per step
  kick(lam eps) drift(eps/2) kick((1 - 2 lam) eps) drift(eps/2) kick(lam eps), lam ~ 0.1932,
  with adjacent kicks merged; two force evaluations per step, about ten times smaller energy
  error than leapfrog at equal step size.

Both are time reversible and volume preserving; the non-reversible integrator of the negative
controls is built in :mod:`lattice_samplers.testing` by replacing :func:`step_schedule`.

The arithmetic passes are compiled with a fastmath subset that keeps NaN/inf semantics.  The
Gaussian momenta come from :func:`lattice_samplers.kernels.counter_rng.normal_fill`, a
vectorized Box-Muller on a stream keyed by one variate of the caller's generator per
trajectory.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lattice_samplers.kernels.common import FASTMATH
from lattice_samplers.kernels.counter_rng import draw_key, normal_fill, normal_pair
from lattice_samplers.kernels.hmc.layout import (
    column_force,
    fill_halo,
    neighbour_views,
    pad_into,
    unpad_into,
)

LEAPFROG = 0
OMELYAN = 1

#: Omelyan's minimum-norm parameter for the 2nd-order scheme.
OMELYAN_LAMBDA = 0.1931833275037836

__all__ = [
    "LEAPFROG",
    "OMELYAN",
    "OMELYAN_LAMBDA",
    "compute_force",
    "force_into",
    "integrate",
    "kinetic_energy",
    "refresh_momenta",
    "step_schedule",
    "trajectory",
]


@njit(cache=True, fastmath=FASTMATH)
def _kick_drift(
    src: np.ndarray,
    dst: np.ndarray,
    mom: np.ndarray,
    eps_kick: float,
    eps_drift: float,
    h: float,
    a: float,
    b: float,
    L0: int,
    L1: int,
) -> None:
    """Mom -= eps_kick * dS/dphi(src), then dst = src + eps_drift * mom, in one pass.

    ``src`` and ``dst`` are distinct row-padded fields (neighbours must see un-drifted
    values); ``dst``'s halo rows are refreshed at the end.
    """
    volume = L0 * L1
    # The hot loop: contiguous, branch-free.  Shifted views, indexed by y in range(volume),
    # instead of src[y + offset]: numba then knows the index is >= 0 and emits no
    # negative-index wraparound select, which would block vectorization.
    up, left, mid, right, down = neighbour_views(src, volume, L1)
    out = dst[L1 : L1 + volume]
    for y in range(volume):
        p = mid[y]
        nn = left[y] + right[y] + up[y] + down[y]
        mm = mom[y] - eps_kick * (p * (a + b * p * p) - h * nn)
        mom[y] = mm
        out[y] = p + eps_drift * mm
    # The first and last column saw one wrong horizontal neighbour (the previous row's last
    # site, the next row's first); the force is linear in it, so correct by the difference.
    u1 = np.uint64(L1)
    one = np.uint64(1)
    last = u1 - one
    kick_h = eps_kick * h
    for i in range(L0):
        y = np.uint64(i) * u1
        x = y + u1
        d = kick_h * (src[x + last] - src[x - one])
        mom[y] += d
        dst[x] += eps_drift * d
        y = y + last
        x = x + last
        d = kick_h * (src[x - last] - src[x + one])
        mom[y] += d
        dst[x] += eps_drift * d
    fill_halo(dst, L0, L1)


@njit(cache=True, fastmath=FASTMATH)
def force_into(
    src: np.ndarray, force: np.ndarray, h: float, a: float, b: float, L0: int, L1: int
) -> None:
    """Force = dS/dphi of the row-padded field ``src`` (flat, V entries)."""
    last = L1 - 1
    up, left, mid, right, down = neighbour_views(src, L0 * L1, L1)
    for y in range(L0 * L1):
        p = mid[y]
        nn = left[y] + right[y] + up[y] + down[y]
        force[y] = p * (a + b * p * p) - h * nn
    u1 = np.uint64(L1)
    for i in range(L0):
        ui = np.uint64(i)
        for side in range(2):
            j = np.uint64(side * last)
            y = ui * u1 + j
            force[y] = column_force(src, y + u1, j, u1, h, a, b)


@njit(cache=True, fastmath=FASTMATH)
def _kick_store_measure(
    src: np.ndarray,
    mom: np.ndarray,
    eps: float,
    h: float,
    a: float,
    b: float,
    L0: int,
    L1: int,
    force: np.ndarray,
    sums: np.ndarray,
) -> float:
    """The last kick, fused with everything else the end of a trajectory needs, in one pass.

    force = dS/dphi(src) (the next trajectory's cache), mom -= eps * force, and the sums of
    :func:`~lattice_samplers.kernels.common.observables_from_sums` (sum phi, phi^2, phi^4, and
    the forward hopping sum) into ``sums[:4]``.  Returns 1/2 sum mom^2.  The long loop uses
    the wrong right/left neighbour in the last/first column; the edge pass puts the true
    force, momentum, kinetic and hopping terms in place of the loop's.
    """
    volume = L0 * L1
    up, left, mid, right, down = neighbour_views(src, volume, L1)
    k = 0.0
    s1 = 0.0
    s2 = 0.0
    s4 = 0.0
    hop = 0.0
    for y in range(volume):
        p = mid[y]
        p2 = p * p
        f = p * (a + b * p2) - h * (left[y] + right[y] + up[y] + down[y])
        force[y] = f
        m = mom[y] - eps * f
        mom[y] = m
        k += m * m
        s1 += p
        s2 += p2
        s4 += p2 * p2
        hop += p * (right[y] + down[y])
    u1 = np.uint64(L1)
    last = np.uint64(L1 - 1)
    one = np.uint64(1)
    for i in range(L0):
        for side in range(2):
            j = np.uint64(side) * last
            y = np.uint64(i) * u1 + j
            x = y + u1
            f = column_force(src, x, j, u1, h, a, b)
            m_wrong = mom[y]
            m = m_wrong + eps * (force[y] - f)
            force[y] = f
            mom[y] = m
            k += m * m - m_wrong * m_wrong
        # the last column's forward neighbour is the row's first site, not the next row's
        x = np.uint64(i + 1) * u1 + last
        hop += src[x] * (src[x - last] - src[x + one])
    sums[0] = s1
    sums[1] = s2
    sums[2] = s4
    sums[3] = hop
    return 0.5 * k


@njit(cache=True, fastmath=FASTMATH)
def _kick_cached_drift(
    src: np.ndarray,
    dst: np.ndarray,
    mom: np.ndarray,
    force: np.ndarray,
    eps_kick: float,
    eps_drift: float,
    L0: int,
    L1: int,
) -> float:
    """The first kick (force known at the start) fused with the first drift into ``dst``.

    Returns the kinetic energy 1/2 sum mom^2 *before* the kick (H_old's), saving a pass.
    """
    volume = L0 * L1
    mid = src[L1 : L1 + volume]
    out = dst[L1 : L1 + volume]
    k = 0.0
    for y in range(volume):
        m = mom[y]
        k += m * m
        m = m - eps_kick * force[y]
        mom[y] = m
        out[y] = mid[y] + eps_drift * m
    fill_halo(dst, L0, L1)
    return 0.5 * k


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _refresh_kick_drift(
    src: np.ndarray,
    dst: np.ndarray,
    mom: np.ndarray,
    force: np.ndarray,
    key: np.uint64,
    eps_kick: float,
    eps_drift: float,
    L0: int,
    L1: int,
) -> float:
    """Fresh momenta (as :func:`refresh_momenta` with ``key``), the first kick and drift.

    One pass instead of two: the Box-Muller pair x gives sites x and x + V // 2 (and pair
    V // 2 the last site for odd V), exactly normal_fill's layout; returns 1/2 sum mom^2 of
    the fresh momenta.  Compiled with FASTMATH (the kinetic sum must vectorize), which may
    reassociate the generator's polynomials: the variates then differ from normal_fill's
    in the last bits, deterministically.
    """
    volume = L0 * L1
    half = volume // 2
    mid_lo = src[L1 : L1 + half]
    mid_hi = src[L1 + half : L1 + 2 * half]
    out_lo = dst[L1 : L1 + half]
    out_hi = dst[L1 + half : L1 + 2 * half]
    mom_lo = mom[:half]
    mom_hi = mom[half : 2 * half]
    force_lo = force[:half]
    force_hi = force[half : 2 * half]
    k = 0.0
    for x in range(half):
        a, b = normal_pair(key, np.uint64(x))
        k += a * a + b * b
        m = a - eps_kick * force_lo[x]
        mom_lo[x] = m
        out_lo[x] = mid_lo[x] + eps_drift * m
        m = b - eps_kick * force_hi[x]
        mom_hi[x] = m
        out_hi[x] = mid_hi[x] + eps_drift * m
    if volume % 2 == 1:
        a, _ = normal_pair(key, np.uint64(half))
        k += a * a
        m = a - eps_kick * force[volume - 1]
        mom[volume - 1] = m
        dst[L1 + volume - 1] = src[L1 + volume - 1] + eps_drift * m
    fill_halo(dst, L0, L1)
    return 0.5 * k


@njit(cache=True, fastmath=FASTMATH)
def kinetic_energy(mom: np.ndarray) -> float:
    """1/2 sum_x mom_x^2."""
    L0, L1 = mom.shape
    k = 0.0
    for i in range(L0):
        for j in range(L1):
            k += mom[i, j] * mom[i, j]
    return 0.5 * k


@njit(cache=True)
def refresh_momenta(mom: np.ndarray, rng: np.random.Generator) -> None:
    """Fresh momenta mom_x ~ N(0, 1) for a C-contiguous ``mom`` of any shape.

    One key from ``rng`` (:func:`~lattice_samplers.kernels.counter_rng.draw_key`), then
    :func:`~lattice_samplers.kernels.counter_rng.normal_fill` over the flattened array.
    """
    normal_fill(mom.reshape(mom.size), draw_key(rng))


@njit(cache=True)
def compute_force(phi: np.ndarray, h: float, c2: float, c4: float, out: np.ndarray) -> None:
    """Write dS/dphi into ``out`` with the same arithmetic as the integrators' cached force."""
    L0, L1 = phi.shape
    pad = np.empty((L0 + 2) * L1)
    pad_into(pad, phi)
    force_into(pad, out.reshape(L0 * L1), h, 2.0 * c2, 4.0 * c4, L0, L1)


@njit(cache=True, inline="always")
def step_schedule(
    integrator: int, n_leapfrog: int, eps: float, lam: float
) -> tuple[int, float, float, float]:
    """(drifts, first kick, last kick, drift) of a trajectory; inner kicks: see trajectory."""
    if integrator == OMELYAN:
        # kick(lam) drift(1/2) kick(1 - 2 lam) drift(1/2) [kick(2 lam) drift(1/2) ...] kick(lam):
        # the closing lam-kick of a step and the opening one of the next share their force.
        return 2 * n_leapfrog, lam * eps, lam * eps, 0.5 * eps
    # LEAPFROG: kick(1/2) drift [kick drift ...] kick(1/2)
    return n_leapfrog, 0.5 * eps, 0.5 * eps, eps


@njit(cache=True)
def trajectory(
    src: np.ndarray,
    dst: np.ndarray,
    tmp: np.ndarray,
    mom: np.ndarray,
    force: np.ndarray,
    force_out: np.ndarray,
    sums: np.ndarray,
    refresh: bool,
    key: np.uint64,
    step_size: float,
    n_leapfrog: int,
    integrator: int,
    lam: float,
    h: float,
    c2: float,
    c4: float,
    L0: int,
    L1: int,
) -> tuple[float, float]:
    """Integrate on row-padded fields (``src`` -> ``dst``; see :func:`integrate`).

    With ``refresh`` the momenta are first replaced by fresh ones from stream ``key`` (in
    the first kick's pass); otherwise ``mom`` is used as given.  Returns the kinetic
    energies before and after; ``sums[:4]`` receives the final field's sums for
    :func:`~lattice_samplers.kernels.common.observables_from_sums`.
    """
    eps = step_size
    a = 2.0 * c2
    b = 4.0 * c4
    n_drifts, first_kick, last_kick, drift = step_schedule(integrator, n_leapfrog, eps, lam)
    # the drifted fields alternate between the two buffers; the n-th must be dst
    x, y = (dst, tmp) if n_drifts % 2 == 1 else (tmp, dst)
    if refresh:
        k_old = _refresh_kick_drift(src, x, mom, force, key, first_kick, drift, L0, L1)
    else:
        k_old = _kick_cached_drift(src, x, mom, force, first_kick, drift, L0, L1)
    for k in range(1, n_drifts):
        if integrator == OMELYAN:
            kick = (1.0 - 2.0 * lam) * eps if k % 2 == 1 else 2.0 * lam * eps
        else:
            kick = eps
        _kick_drift(x, y, mom, kick, drift, h, a, b, L0, L1)
        x, y = y, x
    k_new = _kick_store_measure(x, mom, last_kick, h, a, b, L0, L1, force_out, sums)
    return k_old, k_new


@njit(cache=True)
def integrate(
    phi: np.ndarray,
    phi_out: np.ndarray,
    mom: np.ndarray,
    force: np.ndarray,
    force_out: np.ndarray,
    step_size: float,
    n_leapfrog: int,
    integrator: int,
    lam: float,
    h: float,
    c2: float,
    c4: float,
) -> float:
    """Integrate Hamilton's equations for ``n_leapfrog`` steps of ``step_size``.

    A convenience wrapper over the block's in-place trajectory (it allocates its work
    buffers; :func:`hmc_block` allocates them once per block).

    Parameters
    ----------
    phi : ndarray, shape (L0, L1)
        Starting field (read only).
    phi_out : ndarray, shape (L0, L1)
        Receives the final field.
    mom : ndarray, shape (L0, L1), C-contiguous
        Momentum, updated in place.
    force : ndarray, shape (L0, L1), C-contiguous
        dS/dphi at ``phi`` (read only).
    force_out : ndarray, shape (L0, L1), C-contiguous
        Receives dS/dphi at the final field.
    integrator : int
        ``LEAPFROG`` or ``OMELYAN``.
    lam : float
        Omelyan's parameter (ignored by the other integrators).

    Returns
    -------
    float
        The final kinetic energy 1/2 sum mom^2.
    """
    L0, L1 = phi.shape
    volume = L0 * L1
    src = np.empty((L0 + 2) * L1)
    dst = np.empty_like(src)
    tmp = np.empty_like(src)
    pad_into(src, phi)
    _, k_new = trajectory(
        src,
        dst,
        tmp,
        mom.reshape(volume),
        force.reshape(volume),
        force_out.reshape(volume),
        np.empty(4),
        False,
        np.uint64(0),
        step_size,
        n_leapfrog,
        integrator,
        lam,
        h,
        c2,
        c4,
        L0,
        L1,
    )
    unpad_into(phi_out, dst)
    return k_new
