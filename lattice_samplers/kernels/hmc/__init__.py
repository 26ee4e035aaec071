"""Numba kernels for Hybrid (Hamiltonian) Monte Carlo on the hopping-form phi^4 action.

H(phi, pi) = S(phi) + 1/2 sum_x pi_x^2 with unit masses.  One trajectory: refresh pi ~ N(0, 1),
integrate Hamilton's equations with a reversible, volume-preserving integrator, then accept with
:func:`lattice_samplers.kernels.common.accept_test` on delta_h = H_new - H_old.

Integrators (``integrator`` argument):

* ``LEAPFROG`` (velocity Verlet): kick(eps/2) [drift(eps) kick(eps)] ... ending with kick(eps/2);
  one force evaluation per step.
* ``OMELYAN``: the second-order minimum-norm scheme (Omelyan, Mryglod, Folk 2003; Takaishi and
  de Forcrand 2006) in its force-first form, per step
  kick(lam eps) drift(eps/2) kick((1 - 2 lam) eps) drift(eps/2) kick(lam eps), lam ~ 0.1932,
  with adjacent kicks merged; two force evaluations per step, about ten times smaller energy
  error than leapfrog at equal step size.

The force at the end of a trajectory is stored, so the next trajectory starts without
recomputing it: a trajectory costs n_leapfrog (leapfrog) or 2 n_leapfrog (Omelyan) force
evaluations.  The arithmetic passes are compiled with a fastmath subset that keeps NaN/inf
semantics; the accept decision is made in non-fastmath code.

Layout, for SIMD: inside a block the fields live in *row-padded* flat buffers of
(L0 + 2) * L1 entries, the lattice in rows 1 .. L0 and copies of its last and first rows in
rows 0 and L0 + 1, so that every vertical neighbour is at x -+ L1 with no wrap.  A fused
kick-drift is then one long branch-free loop over all V sites, in which x -+ 1 are the
horizontal neighbours; that is wrong only for one neighbour of the first and last column,
and as the force is linear in it, a short pass (2 L0 sites) adds the difference.  Momenta
and forces are plain flat arrays of V entries.  The Gaussian momenta come from
:func:`lattice_samplers.kernels.counter_rng.normal_fill`, a vectorized Box-Muller on a stream
keyed by one variate of the caller's generator per trajectory.

Modules: :mod:`.layout` (row-padded buffers), :mod:`.integrators` (leapfrog, Omelyan, the
fused passes, :func:`integrate`), :mod:`.block` (:func:`hmc_block`).
"""

from lattice_samplers.kernels.hmc.block import HMC_STAT_NAMES, hmc_block
from lattice_samplers.kernels.hmc.integrators import (
    LEAPFROG,
    OMELYAN,
    OMELYAN_LAMBDA,
    compute_force,
    integrate,
    kinetic_energy,
    refresh_momenta,
)

__all__ = [
    "HMC_STAT_NAMES",
    "LEAPFROG",
    "OMELYAN",
    "OMELYAN_LAMBDA",
    "compute_force",
    "hmc_block",
    "integrate",
    "kinetic_energy",
    "refresh_momenta",
]
