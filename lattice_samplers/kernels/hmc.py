"""Numba kernels for Hybrid (Hamiltonian) Monte Carlo on the hopping-form phi^4 action.

H(phi, pi) = S(phi) + 1/2 sum_x pi_x^2 with unit masses.  One trajectory: refresh pi ~ N(0, 1),
integrate Hamilton's equations with a reversible, volume-preserving integrator, then accept with
:func:`lattice_samplers.kernels.metropolis.accept_test` on delta_h = H_new - H_old.

Integrators (``integrator`` argument):

* ``LEAPFROG`` (velocity Verlet): kick(eps/2) [drift(eps) kick(eps)] ... ending with kick(eps/2);
  one force evaluation per step.
* ``OMELYAN``: the second-order minimum-norm scheme (Omelyan, Mryglod, Folk 2003; Takaishi and
  de Forcrand 2006) in its force-first form, per step
  kick(lam eps) drift(eps/2) kick((1 - 2 lam) eps) drift(eps/2) kick(lam eps), lam ~ 0.1932,
  with adjacent kicks merged; two force evaluations per step, about ten times smaller energy
  error than leapfrog at equal step size.
* ``BROKEN_EULER`` -- *test-only negative control*: symplectic Euler kick(eps) drift(eps),
  volume preserving but not time reversible, so HMC built on it is biased.

The force at the end of a trajectory is stored, so the next trajectory starts without
recomputing it: a trajectory costs n_leapfrog (leapfrog) or 2 n_leapfrog (Omelyan) force
evaluations.  The arithmetic passes are compiled with a fastmath subset that keeps NaN/inf
semantics; the accept decision is made in non-fastmath code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lattice_samplers.kernels.common import (
    BROKEN_NONE,
    BROKEN_REVERSED_ACCEPT,
    FASTMATH,
    accept_sign,
    accept_test,
    measure_into,
)

LEAPFROG = 0
OMELYAN = 1
BROKEN_EULER = 2  # test-only: non-reversible integrator

#: Omelyan's minimum-norm parameter for the 2nd-order scheme.
OMELYAN_LAMBDA = 0.1931833275037836

#: Test-only ``broken`` code of the no-refresh control (the reversed-accept control is
#: :data:`lattice_samplers.kernels.metropolis.BROKEN_REVERSED_ACCEPT`).
BROKEN_NO_REFRESH = 2

#: Per-trajectory statistics written by :func:`hmc_block`, in column order.
HMC_STAT_NAMES: tuple[str, ...] = ("accepted", "acceptance_prob", "delta_h", "exp_minus_delta_h")

__all__ = [
    "BROKEN_EULER",
    "BROKEN_NONE",
    "BROKEN_NO_REFRESH",
    "BROKEN_REVERSED_ACCEPT",
    "HMC_STAT_NAMES",
    "LEAPFROG",
    "OMELYAN",
    "OMELYAN_LAMBDA",
    "compute_force",
    "hmc_block",
    "integrate",
    "kinetic_energy",
]


@njit(cache=True, fastmath=FASTMATH)
def _kick_drift(
    phi: np.ndarray,
    phi_out: np.ndarray,
    mom: np.ndarray,
    eps_kick: float,
    eps_drift: float,
    h: float,
    c2: float,
    c4: float,
    edge: np.ndarray,
) -> None:
    """Mom -= eps_kick * dS/dphi(phi), then phi_out = phi + eps_drift * mom, in one pass.

    Every kick of a trajectory but the last is followed by a drift; fusing them (reading
    ``phi``, writing the drifted field into another buffer, so neighbours still see the
    un-drifted values) saves a pass over the lattice per integrator step.

    Rows are short (L), and a vectorized loop per row spends most of its time in remainder
    and setup code, so the rows 1 .. L-2 are swept as one long contiguous range in which
    x +- 1 are the horizontal neighbours.  That is wrong only in the first and last column,
    which are then redone from their saved starting momenta (``edge``, length >= 2 L0); the
    first and last rows, whose vertical neighbours wrap, are done site by site.
    """
    L0, L1 = phi.shape
    volume = L0 * L1
    a = 2.0 * c2
    b = 4.0 * c4
    for i in range(1, L0 - 1):
        edge[2 * i] = mom[i, 0]
        edge[2 * i + 1] = mom[i, L1 - 1]
    n = volume - 2 * L1
    if n > 2:
        flat_phi = phi.reshape(volume)
        flat_mom = mom.reshape(volume)
        flat_out = phi_out.reshape(volume)
        c = flat_phi[L1 : volume - L1]
        up = flat_phi[2 * L1 :]
        dn = flat_phi[:n]
        m = flat_mom[L1 : volume - L1]
        out = flat_out[L1 : volume - L1]
        for x in range(1, n - 1):
            p = c[x]
            mm = m[x] - eps_kick * (p * (a + b * p * p) - h * (c[x - 1] + c[x + 1] + up[x] + dn[x]))
            m[x] = mm
            out[x] = p + eps_drift * mm
    # the first and last column of the middle rows, from their saved momenta
    for i in range(1, L0 - 1):
        for side in range(2):
            j = 0 if side == 0 else L1 - 1
            jp = 1 if side == 0 else 0
            jm = L1 - 1 if side == 0 else L1 - 2
            p = phi[i, j]
            nn = phi[i + 1, j] + phi[i - 1, j] + phi[i, jp] + phi[i, jm]
            mm = edge[2 * i + side] - eps_kick * (p * (a + b * p * p) - h * nn)
            mom[i, j] = mm
            phi_out[i, j] = p + eps_drift * mm
    # the first and last row (vertical wrap)
    for i in (0, L0 - 1):
        ip = i + 1 if i + 1 < L0 else 0
        im = i - 1 if i > 0 else L0 - 1
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            jm = j - 1 if j > 0 else L1 - 1
            p = phi[i, j]
            nn = phi[ip, j] + phi[im, j] + phi[i, jp] + phi[i, jm]
            mm = mom[i, j] - eps_kick * (p * (a + b * p * p) - h * nn)
            mom[i, j] = mm
            phi_out[i, j] = p + eps_drift * mm


@njit(cache=True, fastmath=FASTMATH)
def _kick_store(
    phi: np.ndarray,
    mom: np.ndarray,
    eps: float,
    h: float,
    c2: float,
    c4: float,
    force: np.ndarray,
) -> float:
    """Mom -= eps * F, force = F = dS/dphi (the next trajectory's cache); returns 1/2 sum mom^2.

    The last kick of a trajectory: storing the force and summing the kinetic energy here saves
    two passes over the lattice.
    """
    L0, L1 = phi.shape
    a = 2.0 * c2
    b = 4.0 * c4
    k = 0.0
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        im = i - 1 if i > 0 else L0 - 1
        p = phi[i, 0]
        nn = phi[ip, 0] + phi[im, 0] + phi[i, 1] + phi[i, L1 - 1]
        f = p * (a + b * p * p) - h * nn
        force[i, 0] = f
        m = mom[i, 0] - eps * f
        mom[i, 0] = m
        k += m * m
        for j in range(1, L1 - 1):
            p = phi[i, j]
            nn = phi[ip, j] + phi[im, j] + phi[i, j + 1] + phi[i, j - 1]
            f = p * (a + b * p * p) - h * nn
            force[i, j] = f
            m = mom[i, j] - eps * f
            mom[i, j] = m
            k += m * m
        j = L1 - 1
        p = phi[i, j]
        nn = phi[ip, j] + phi[im, j] + phi[i, 0] + phi[i, j - 1]
        f = p * (a + b * p * p) - h * nn
        force[i, j] = f
        m = mom[i, j] - eps * f
        mom[i, j] = m
        k += m * m
    return 0.5 * k


@njit(cache=True, fastmath=FASTMATH)
def _kick_cached_drift(
    phi: np.ndarray,
    phi_out: np.ndarray,
    mom: np.ndarray,
    force: np.ndarray,
    eps_kick: float,
    eps_drift: float,
) -> None:
    """The first kick (force known at the start) fused with the first drift into phi_out."""
    L0, L1 = phi.shape
    for i in range(L0):
        for j in range(L1):
            m = mom[i, j] - eps_kick * force[i, j]
            mom[i, j] = m
            phi_out[i, j] = phi[i, j] + eps_drift * m


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
def _refresh(mom: np.ndarray, rng: np.random.Generator) -> float:
    """Draw fresh momenta mom_x ~ N(0, 1) (lexicographic order); returns 1/2 sum mom^2."""
    L0, L1 = mom.shape
    k = 0.0
    for i in range(L0):
        for j in range(L1):
            m = rng.standard_normal()
            mom[i, j] = m
            k += m * m
    return 0.5 * k


@njit(cache=True, fastmath=FASTMATH)
def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    L0, L1 = dst.shape
    for i in range(L0):
        for j in range(L1):
            dst[i, j] = src[i, j]


@njit(cache=True)
def compute_force(phi: np.ndarray, h: float, c2: float, c4: float, out: np.ndarray) -> None:
    """Write dS/dphi into ``out`` with the same arithmetic as the integrators' cached force."""
    L0, L1 = phi.shape
    scratch = np.zeros((L0, L1))
    _kick_store(phi, scratch, 0.0, h, c2, c4, out)


@njit(cache=True)
def integrate(
    phi: np.ndarray,
    phi_out: np.ndarray,
    phi_tmp: np.ndarray,
    mom: np.ndarray,
    force: np.ndarray,
    force_out: np.ndarray,
    edge: np.ndarray,
    step_size: float,
    n_leapfrog: int,
    integrator: int,
    lam: float,
    h: float,
    c2: float,
    c4: float,
) -> float:
    """Integrate Hamilton's equations for ``n_leapfrog`` steps of ``step_size``.

    Parameters
    ----------
    phi : ndarray, shape (L, L)
        Starting field (read only).
    phi_out : ndarray, shape (L, L)
        Receives the final field.
    phi_tmp : ndarray, shape (L, L)
        Scratch: the fused kick-drift passes alternate between ``phi_out`` and ``phi_tmp``,
        arranged so that the last one lands in ``phi_out``.  All three fields are distinct.
    mom : ndarray, shape (L, L)
        Momentum, updated in place.
    force : ndarray, shape (L, L)
        dS/dphi at ``phi`` (read only).
    force_out : ndarray, shape (L, L)
        Receives dS/dphi at the final field.
    edge : ndarray, shape (>= 2 L,)
        Scratch for the fused kick-drift passes.
    integrator : int
        ``LEAPFROG``, ``OMELYAN`` or the test-only ``BROKEN_EULER``.
    lam : float
        Omelyan's parameter (ignored by the other integrators).

    Returns
    -------
    float
        The final kinetic energy 1/2 sum mom^2.
    """
    eps = step_size
    if integrator == OMELYAN:
        # kick(lam) drift(1/2) kick(1 - 2 lam) drift(1/2) [kick(2 lam) drift(1/2) ...] kick(lam):
        # the closing lam-kick of a step and the opening one of the next share their force.
        n_drifts = 2 * n_leapfrog
        first_kick = lam * eps
        last_kick = lam * eps
        drift = 0.5 * eps
    elif integrator == LEAPFROG:
        # kick(1/2) drift [kick drift ...] kick(1/2)
        n_drifts = n_leapfrog
        first_kick = 0.5 * eps
        last_kick = 0.5 * eps
        drift = eps
    else:
        # BROKEN_EULER (negative control): [kick(eps) drift(eps)] ..., force at the start of
        # each step: volume preserving but not time reversible.
        n_drifts = n_leapfrog
        first_kick = eps
        last_kick = 0.0
        drift = eps
    # the drifted fields alternate between the two buffers; the n-th must be phi_out
    a, b = (phi_out, phi_tmp) if n_drifts % 2 == 1 else (phi_tmp, phi_out)
    _kick_cached_drift(phi, a, mom, force, first_kick, drift)
    for k in range(1, n_drifts):
        if integrator == OMELYAN:
            kick = (1.0 - 2.0 * lam) * eps if k % 2 == 1 else 2.0 * lam * eps
        else:
            kick = eps
        _kick_drift(a, b, mom, kick, drift, h, c2, c4, edge)
        a, b = b, a
    return _kick_store(a, mom, last_kick, h, c2, c4, force_out)


@njit(cache=True, nogil=True)
def hmc_block(
    phi: np.ndarray,
    force: np.ndarray,
    mom: np.ndarray,
    current: np.ndarray,
    phi_new: np.ndarray,
    phi_tmp: np.ndarray,
    force_new: np.ndarray,
    obs_new: np.ndarray,
    step_size: float,
    n_leapfrog: int,
    integrator: int,
    lam: float,
    metropolis: bool,
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
    """Run ``n_steps`` HMC trajectories in place, recording observables every ``thin``.

    Parameters
    ----------
    phi, force : ndarray, shape (L, L)
        Current field and its force dS/dphi; updated in place.
    mom : ndarray, shape (L, L)
        Momentum buffer (carried between trajectories only by the no-refresh control).
    current : ndarray, shape (1 + N_OBS,)
        [action incl. constant, observables...] of ``phi``; updated in place.
    phi_new, phi_tmp, force_new, obs_new : ndarray
        Scratch buffers of the shapes of ``phi``, ``phi``, ``force`` and ``current[1:]``.
    metropolis : bool
        False skips the accept/reject step (every trajectory is kept); used by the free-field
        AR(1) autocorrelation oracle, not an exact algorithm otherwise.
    obs_out : ndarray, shape (n_steps // thin, N_OBS)
    stats_out : ndarray, shape (n_steps, 4)
        Per trajectory, :data:`HMC_STAT_NAMES`: accepted (0/1), min(1, exp(-delta_h)) (0 for
        non-finite delta_h), delta_h (as computed, possibly NaN/inf), exp(-delta_h) (0 for
        non-finite delta_h).
    broken : int
        Test-only negative controls: ``BROKEN_REVERSED_ACCEPT`` or ``BROKEN_NO_REFRESH``.
    """
    sign = accept_sign(broken)
    # Accepting swaps the roles of the buffers instead of copying; the state's own arrays get
    # the final field once, at the end of the block.
    cur_phi, cur_force = phi, force
    new_phi, new_force = phi_new, force_new
    swapped = False
    edge = np.empty(2 * phi.shape[0])
    for t in range(n_steps):
        if broken != BROKEN_NO_REFRESH:
            k_old = _refresh(mom, rng)
        else:
            k_old = kinetic_energy(mom)
        k_new = integrate(
            cur_phi,
            new_phi,
            phi_tmp,
            mom,
            cur_force,
            new_force,
            edge,
            step_size,
            n_leapfrog,
            integrator,
            lam,
            h,
            c2,
            c4,
        )
        s_new = measure_into(new_phi, h, c2, c4, c0, obs_new)
        # Sign convention: delta_h = H_new - H_old, accept if log(u) < -delta_h.
        delta_h = (s_new - current[0]) + (k_new - k_old)
        if metropolis:
            accepted = accept_test(delta_h, rng.standard_exponential(), sign)
        else:
            accepted = True
        if accepted:
            cur_phi, new_phi = new_phi, cur_phi
            cur_force, new_force = new_force, cur_force
            swapped = not swapped
            current[0] = s_new
            current[1:] = obs_new
        finite = np.isfinite(delta_h)
        stats_out[t, 0] = 1.0 if accepted else 0.0
        stats_out[t, 1] = min(1.0, np.exp(-delta_h)) if finite else 0.0
        stats_out[t, 2] = delta_h
        stats_out[t, 3] = np.exp(-delta_h) if finite else 0.0
        if (t + 1) % thin == 0:
            obs_out[(t + 1) // thin - 1, :] = current[1:]
    if swapped:
        _copy(phi, cur_phi)
        _copy(force, cur_force)
