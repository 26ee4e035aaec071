"""Performance of the classical samplers, measured side by side in one run.

Prints (medians over repeats; this machine is shared and noisy, so compare the ratios):

* HMC all-in (refresh, trajectory, action, accept, measurement) in ns per site per leapfrog
  step at L = 8, 32, 64 with 10 leapfrog steps, and the speed-up over a plain NumPy (np.roll)
  HMC with the same settings (targets: <= 1.2 ns at L = 32, >= 50x);
* Metropolis ns per single-site update (target <= 15 ns);
* Wolff cluster ns per flipped site, and the cost per effective sample of |M| of cluster,
  HMC and Metropolis at L = 16 (ising lam = 0.5, beta = 0.633, xi ~ L/4).

Run: ``python benchmarks/bench_classical.py [--quick]`` (about a minute; --quick: seconds).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from lattice_samplers.run import run_sampler
from numba import njit

from lattice_samplers import observables
from lattice_samplers.kernels.cluster import wolff_update
from lattice_samplers.samplers import ClusterSampler, HMCSampler, MetropolisSampler, Sampler
from lattice_samplers.summary import summarize_series
from lattice_samplers.theory import Phi4Theory

N_LEAPFROG = 10


def theory_for(L: int) -> Phi4Theory:
    """The ising-form lam = 0.5 point with xi ~ L/4 where known, else a nearby beta."""
    beta = {8: 0.576, 16: 0.633}.get(L, 0.65)
    return Phi4Theory.create(L, "ising", beta=beta, lam=0.5)


def tuned(sampler: Sampler, seed: int = 0) -> tuple[Sampler, np.ndarray]:
    """Tune the sampler's settings and return it with an equilibrated field."""
    result = run_sampler(sampler, 100, n_therm=400, n_chains=1, seed=seed)
    return sampler, result.final_phi[0]


def time_sampler(sampler: Sampler, phi: np.ndarray, n_steps: int, repeats: int) -> float:
    """Median wall seconds of ``sampler.run`` over ``n_steps`` steps (frozen settings)."""
    rng = np.random.default_rng(1)
    state = sampler.init(phi, rng)
    sampler.run(state, max(1, n_steps // 10), rng)  # warm caches and the JIT
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sampler.run(state, n_steps, rng)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def numpy_hmc(
    theory: Phi4Theory, phi: np.ndarray, step_size: float, n_traj: int, rng: np.random.Generator
) -> np.ndarray:
    """A plain NumPy HMC (np.roll force), all-in like the numba one; returns the last field."""
    action = theory.action(phi)
    for _ in range(n_traj):
        mom = rng.standard_normal(phi.shape)
        h_old = action + 0.5 * np.sum(mom * mom)
        x = phi.copy()
        mom -= 0.5 * step_size * theory.force(x)
        for k in range(N_LEAPFROG):
            x += step_size * mom
            mom -= (step_size if k < N_LEAPFROG - 1 else 0.5 * step_size) * theory.force(x)
        new_action = theory.action(x)
        delta_h = new_action + 0.5 * np.sum(mom * mom) - h_old
        if np.log(rng.random()) < -delta_h:
            phi, action = x, new_action
        observables.measure(theory, phi)
    return phi


def bench_hmc(sizes: list[int], repeats: int, budget: float) -> list[tuple]:
    rows = []
    for L in sizes:
        theory = theory_for(L)
        sampler, phi = tuned(HMCSampler(theory, n_leapfrog=N_LEAPFROG))
        sampler.settings = type(sampler.settings)(**{**sampler.settings_dict(), "tune": False})
        site_steps = theory.volume * N_LEAPFROG
        n_fast = max(20, int(budget / (site_steps * 1.5e-9)))
        t_fast = time_sampler(sampler, phi, n_fast, repeats) / (n_fast * site_steps)
        n_slow = max(3, int(budget / (site_steps * 1e-7)))
        times = []
        for r in range(max(1, repeats // 2)):
            rng = np.random.default_rng(r)
            t0 = time.perf_counter()
            numpy_hmc(theory, phi.copy(), sampler.settings.step_size, n_slow, rng)
            times.append(time.perf_counter() - t0)
        t_slow = statistics.median(times) / (n_slow * site_steps)
        rows.append((L, sampler.settings.step_size, t_fast * 1e9, t_slow * 1e9, t_slow / t_fast))
    return rows


def bench_metropolis(sizes: list[int], repeats: int, budget: float) -> list[tuple]:
    rows = []
    for L in sizes:
        theory = theory_for(L)
        sampler, phi = tuned(MetropolisSampler(theory))
        n = max(20, int(budget / (theory.volume * 12e-9)))
        t = time_sampler(sampler, phi, n, repeats) / (n * theory.volume)
        rows.append((L, sampler.settings.width, t * 1e9))
    return rows


@njit(cache=True)
def _wolff_loop(phi: np.ndarray, h: float, rng: np.random.Generator, n: int) -> int:
    stack = np.empty((2, phi.size + 1), dtype=np.int64)
    flipped = 0
    for _ in range(n):
        flipped += wolff_update(phi, h, rng, stack, 0)
    return flipped


def bench_cluster_flip(sizes: list[int], repeats: int, budget: float) -> list[tuple]:
    """ns per flipped site of the Wolff update alone, on equilibrated fields."""
    rows = []
    for L in sizes:
        theory = theory_for(L)
        _, phi = tuned(ClusterSampler(theory))
        rng = np.random.default_rng(0)
        _wolff_loop(phi, theory.h, rng, 10)
        n = max(100, int(budget / (theory.volume * 0.2 * 20e-9)))
        per_site = []
        sizes_seen = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            flipped = _wolff_loop(phi, theory.h, rng, n)
            per_site.append((time.perf_counter() - t0) / flipped)
            sizes_seen.append(flipped / n / theory.volume)
        rows.append((L, statistics.median(sizes_seen), statistics.median(per_site) * 1e9))
    return rows


def bench_cost_per_ess(L: int, n_steps: int) -> list[tuple]:
    """Seconds per effective sample of |M| (Gamma method over 2 chains), per sampler."""
    theory = theory_for(L)
    rows = []
    for sampler in (ClusterSampler(theory), HMCSampler(theory), MetropolisSampler(theory)):
        result = run_sampler(sampler, n_steps, n_therm=2000, n_chains=2, seed=3)
        s = summarize_series(result.observables["abs_magnetization"])
        rows.append(
            (
                sampler.kind,
                result.acceptance,
                s["tau_int"],
                s["tau_int_err"],
                s["ess"],
                result.wall_time_s,
                result.wall_time_s / s["ess"],
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    args = parser.parse_args()
    repeats, budget, n_ess = (3, 0.02, 5000) if args.quick else (7, 0.25, 100_000)

    t_start = time.perf_counter()
    print("HMC all-in, leapfrog, n_leapfrog = 10 (ns per site per leapfrog step; median)")
    print(f"{'L':>4} {'step_size':>10} {'numba':>9} {'numpy':>9} {'speed-up':>9}")
    for L, eps, fast, slow, ratio in bench_hmc([8, 32, 64], repeats, budget):
        print(f"{L:>4} {eps:>10.4f} {fast:>9.3f} {slow:>9.1f} {ratio:>8.0f}x")
    print("  targets: <= 1.2 ns at L = 32; >= 50x faster than NumPy")

    print("\nMetropolis, checkerboard sweeps, n_hits = 1 (ns per site update; median)")
    print(f"{'L':>4} {'width':>10} {'ns':>9}")
    for L, width, ns in bench_metropolis([8, 32, 64], repeats, budget):
        print(f"{L:>4} {width:>10.4f} {ns:>9.2f}")
    print("  target: <= 15 ns")

    print("\nWolff cluster update alone (ns per flipped site; median)")
    print(f"{'L':>4} {'<|C|>/V':>10} {'ns':>9}")
    for L, frac, ns in bench_cluster_flip([16, 64], repeats, budget):
        print(f"{L:>4} {frac:>10.3f} {ns:>9.2f}")

    print(f"\nCost per effective sample of |M| at L = 16 (2 chains x {n_ess} steps each)")
    print(
        f"{'sampler':>11} {'accept':>7} {'tau_int':>8} {'+-':>6} {'ESS':>8} "
        f"{'wall s':>8} {'us/ESS':>9} {'vs HMC':>7}"
    )
    rows = bench_cost_per_ess(16, n_ess)
    hmc_cost = next(r[6] for r in rows if r[0] == "hmc")
    for kind, acc, tau, tau_err, ess, wall, cost in rows:
        print(
            f"{kind:>11} {acc:>7.3f} {tau:>8.2f} {tau_err:>6.2f} {ess:>8.0f} "
            f"{wall:>8.3f} {cost * 1e6:>9.2f} {hmc_cost / cost:>6.1f}x"
        )
    print("  tau_int in steps (lattice convention 1/2 + sum rho); 'vs HMC' = HMC cost / cost")
    print(f"\n(total benchmark time {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
