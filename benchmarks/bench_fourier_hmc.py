"""Cost of a fourier_hmc leapfrog step against its floor, and against an hmc step, side by side.

The floor of one Fourier-accelerated leapfrog step is two real 2D FFT round trips (rfft2 and
irfft2, with the same pocketfft calls into preallocated arrays the sampler uses) plus one
local force at the same L.  The sampler's cost per step is the time of whole trajectories
(momentum refresh, kinetic energy, measurement and accept test included) divided by the
leapfrog steps.  For each L the three are timed in turns, ``--repeats`` times, and the
medians are printed with the ratios; the target is ratio <= 1.5.

Usage: ``python benchmarks/bench_fourier_hmc.py [--L 8 16 32 64] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lattice_samplers.kernels import fourier as kf
from lattice_samplers.samplers import FourierHMCSampler, HMCSampler
from lattice_samplers.theory import Phi4Theory

N_LEAPFROG = 10


def _floor_seconds(L: int, n: int) -> float:
    """Seconds per (2 FFT round trips + 1 force) at L, the mean of ``n`` repetitions."""
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((1, L, L))
    force = np.empty_like(phi)
    out = np.empty_like(phi)
    spectrum = np.empty((1, L, L // 2 + 1), dtype=np.complex128)
    g = kf.free_propagator(L, L, 0.6, 0.1)
    t0 = time.perf_counter()
    for _ in range(n):
        kf.force_into(phi, 0.6, 0.0, 0.5, force)
        kf.apply_propagator(force, g, spectrum, out)
        kf.apply_propagator(phi, g, spectrum, out)  # fresh input: no growth over repeats
    return (time.perf_counter() - t0) / n


def _sampler_seconds(sampler: object, n_traj: int) -> float:
    """Seconds per leapfrog step over ``n_traj`` trajectories (after a warm start)."""
    rng = np.random.default_rng(1)
    state = sampler.init(None, rng)
    sampler.run(state, 5, rng)
    t0 = time.perf_counter()
    sampler.run(state, n_traj, rng)
    return (time.perf_counter() - t0) / (n_traj * N_LEAPFROG)


def main() -> None:
    """Print the per-step medians and ratios for each L."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'L':>4} {'floor us':>9} {'fourier us':>11} {'ratio':>6} {'hmc us':>8} {'f/hmc':>7}")
    for L in args.L:
        theory = Phi4Theory.create(L, "ising", beta=0.6, lam=0.5)
        settings = {"step_size": 0.15, "n_leapfrog": N_LEAPFROG, "tune": False}
        fourier = FourierHMCSampler(theory, trajectory_length=None, **settings)
        hmc = HMCSampler(theory, **settings)
        fourier.warmup()
        hmc.warmup()
        n_traj = max(20, 20000 // L**2 * 10 // N_LEAPFROG)
        floors, costs, hmcs = [], [], []
        for _ in range(args.repeats):
            floors.append(_floor_seconds(L, n_traj * N_LEAPFROG))
            costs.append(_sampler_seconds(fourier, n_traj))
            hmcs.append(_sampler_seconds(hmc, 20 * n_traj))
        f, c, h = (statistics.median(x) * 1e6 for x in (floors, costs, hmcs))
        print(f"{L:>4} {f:>9.2f} {c:>11.2f} {c / f:>6.2f} {h:>8.3f} {c / h:>7.1f}")


if __name__ == "__main__":
    main()
