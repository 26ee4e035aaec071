"""A block of HMC trajectories in compiled code: refresh, integrate, accept, record.

One trajectory: refresh pi ~ N(0, 1), integrate Hamilton's equations with a reversible,
volume-preserving integrator (:mod:`.integrators`), then accept with
:func:`lattice_samplers.kernels.common.accept_test` on delta_h = H_new - H_old (the accept
decision is made here, in non-fastmath code).  The force at the end of a trajectory is kept,
so the next one starts without recomputing it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lattice_samplers.kernels.common import accept_test, observables_from_sums
from lattice_samplers.kernels.counter_rng import draw_key
from lattice_samplers.kernels.hmc.integrators import trajectory
from lattice_samplers.kernels.hmc.layout import pad_into, unpad_into

#: Per-trajectory statistics written by :func:`hmc_block`, in column order.
HMC_STAT_NAMES: tuple[str, ...] = ("accepted", "acceptance_prob", "delta_h", "exp_minus_delta_h")

__all__ = ["HMC_STAT_NAMES", "hmc_block"]


@njit(cache=True, nogil=True)
def hmc_block(
    phi: np.ndarray,
    force: np.ndarray,
    mom: np.ndarray,
    current: np.ndarray,
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
) -> None:
    """Run ``n_steps`` HMC trajectories in place, recording observables every ``thin``.

    Per trajectory the random stream is: one key for the momentum refresh (the momenta of
    :func:`refresh_momenta` with that key, drawn inside the first kick's pass), then one
    standard exponential for the accept test.

    Parameters
    ----------
    phi, force : ndarray, shape (L0, L1), C-contiguous
        Current field and its force dS/dphi; updated in place.
    mom : ndarray, shape (L0, L1), C-contiguous
        Momentum buffer (refreshed at the start of every trajectory).
    current : ndarray, shape (1 + N_OBS,)
        [action incl. constant, observables...] of ``phi``; updated in place.
    metropolis : bool
        False skips the accept/reject step (every trajectory is kept); used by the free-field
        AR(1) autocorrelation oracle, not an exact algorithm otherwise.
    obs_out : ndarray, shape (n_steps // thin, N_OBS)
    stats_out : ndarray, shape (n_steps, 4)
        Per trajectory, :data:`HMC_STAT_NAMES`: accepted (0/1), min(1, exp(-delta_h)) (0 for
        non-finite delta_h), delta_h (as computed, possibly NaN/inf), exp(-delta_h) (0 for
        non-finite delta_h).
    """
    L0, L1 = phi.shape
    volume = L0 * L1
    # Work buffers, once per block.  Accepting swaps the roles of the buffers instead of
    # copying; the state's own arrays get the final field and force at the end of the block.
    cur_phi = np.empty((L0 + 2) * L1)
    new_phi = np.empty_like(cur_phi)
    tmp_phi = np.empty_like(cur_phi)
    pad_into(cur_phi, phi)
    cur_force = force.reshape(volume)
    new_force = np.empty(volume)
    flat_mom = mom.reshape(volume)
    obs_new = np.empty(current.shape[0] - 1)
    sums = np.empty(4)
    swapped = False
    for t in range(n_steps):
        key = draw_key(rng)
        k_old, k_new = trajectory(
            cur_phi,
            new_phi,
            tmp_phi,
            flat_mom,
            cur_force,
            new_force,
            sums,
            True,
            key,
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
        s_new = observables_from_sums(
            sums[0], sums[1], sums[2], sums[3], volume, h, c2, c4, c0, obs_new
        )
        # Sign convention: delta_h = H_new - H_old, accept if log(u) < -delta_h.
        delta_h = (s_new - current[0]) + (k_new - k_old)
        if metropolis:
            accepted = accept_test(delta_h, rng.standard_exponential())
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
    unpad_into(phi, cur_phi)
    if swapped:
        flat_force = force.reshape(volume)
        for y in range(volume):
            flat_force[y] = cur_force[y]
