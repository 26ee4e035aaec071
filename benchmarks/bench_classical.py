"""Performance of the classical samplers, measured side by side in one run.

Prints (this machine is shared and noisy, so compare the ratios):

* HMC all-in (refresh, trajectory, action, accept, measurement) in ns per site per leapfrog
  step at L = 32 and 64 with 10 leapfrog steps: the current kernel, the previous one (the
  kernels of git revision ``--baseline-rev``, default d473c33, the code before issue 13 parts
  2-3, built at run time from ``git show REV:lattice_samplers/kernels/*.py`` into a temporary
  package) and a plain NumPy (np.roll) HMC, interleaved in every repeat; medians over repeats
  and the median of the per-repeat ratios new / previous (target <= 0.5);
* Metropolis checkerboard sweeps in ns per single-site update, the same way, against the
  previous kernel and a vectorized NumPy checkerboard sweep (target new / previous <= 0.6);
* Wolff cluster ns per flipped site, and the cost per effective sample of |M| of cluster,
  HMC and Metropolis at L = 16 (ising lam = 0.5, beta = 0.633, xi ~ L/4).

Times are the process's CPU time (``time.process_time``): on a machine shared with other
jobs it is much less disturbed than wall time, and these kernels are single-threaded.

Run from a git checkout: ``python -m benchmarks.bench_classical [--quick] [--baseline-rev REV]``
(or ``python benchmarks/bench_classical.py``; a few minutes, --quick: about 30 s).  The
baseline revision must have the kernel interface of d473c33 (``hmc_block`` with its three
scratch arrays, ``metropolis_block``); another one is refused with a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import NoReturn

import numpy as np
from numba import njit

from lattice_samplers import observables
from lattice_samplers.driver import RunSettings, run_sampler
from lattice_samplers.kernels import hmc as khmc
from lattice_samplers.kernels import metropolis as kmet
from lattice_samplers.kernels.cluster import wolff_update
from lattice_samplers.kernels.common import N_OBS
from lattice_samplers.samplers import ClusterSampler, HMCSampler, MetropolisSampler, Sampler
from lattice_samplers.summary import summarize_series
from lattice_samplers.theory import Phi4Theory

N_LEAPFROG = 10
#: The kernels before the SIMD rewrite of issue 13 parts 2-3: the reference of the ratios.
BASELINE_REV = "d473c33"
KERNELS = "lattice_samplers/kernels"
ROOT = Path(__file__).resolve().parents[1]
SIZES = [32, 64]


def _fail(message: str) -> NoReturn:
    print(f"bench_classical: {message}", file=sys.stderr)
    raise SystemExit(2)


def _git(*args: str) -> str:
    """``git ARGS`` in the source tree; a one-line error (exit 2) when git cannot answer."""
    try:
        run = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    except OSError as exc:
        _fail(f"--baseline-rev needs git and a git checkout ({exc})")
    if run.returncode != 0:
        message = (run.stderr.strip().splitlines() or ["git failed"])[-1]
        _fail(f"--baseline-rev: git {' '.join(args)}: {message}")
    return run.stdout


def load_baseline(rev: str, folder: Path) -> types.ModuleType:
    """The kernels package of git revision ``rev``, written into ``folder`` and imported.

    Every module of ``lattice_samplers/kernels`` at ``rev`` is copied under a package name
    of its own (``baseline_<sha>``), with its imports of ``lattice_samplers.kernels``
    pointed there, so the old HMC and Metropolis kernels run beside the current ones with
    the helpers they were written against.  Returns the package with ``hmc`` and
    ``metropolis`` imported.
    """
    sha = _git("rev-parse", "--short", f"{rev}^{{commit}}").strip()
    name = f"baseline_{sha}"
    package = folder / name
    package.mkdir(parents=True, exist_ok=True)
    for path in _git("ls-tree", "--name-only", f"{sha}:{KERNELS}").split():
        if path.endswith(".py"):
            source = _git("show", f"{sha}:{KERNELS}/{path}")
            (package / path).write_text(source.replace("lattice_samplers.kernels", name))
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for sub in ("hmc", "metropolis"):
        setattr(module, sub, importlib.import_module(f"{name}.{sub}"))
    _check_interface(module, rev)
    return module


def _check_interface(baseline: types.ModuleType, rev: str) -> None:
    """Refuse a baseline whose kernels do not take the arguments this benchmark passes."""
    params = inspect.signature(baseline.hmc.hmc_block.py_func).parameters
    if len(params) != 23 or not hasattr(baseline.hmc, "LEAPFROG"):
        _fail(
            f"the kernels at {rev} do not have the d473c33 interface (hmc_block takes "
            f"{len(params)} arguments, expected 23); pick another --baseline-rev"
        )


def theory_for(L: int) -> Phi4Theory:
    """The ising-form lam = 0.5 point with xi ~ L/4 where known, else a nearby beta."""
    beta = {8: 0.576, 16: 0.633}.get(L, 0.65)
    return Phi4Theory.create(L, "ising", beta=beta, lam=0.5)


def tuned(sampler: Sampler, seed: int = 0) -> tuple[Sampler, np.ndarray]:
    """Tune the sampler's settings and return it with an equilibrated field."""
    result = run_sampler(sampler, RunSettings(n_steps=100, n_therm=400, n_chains=1, seed=seed))
    return sampler, result.final_phi[0]


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


def numpy_metropolis(
    theory: Phi4Theory, phi: np.ndarray, width: float, n_sweeps: int, rng: np.random.Generator
) -> np.ndarray:
    """A vectorized NumPy checkerboard Metropolis (np.roll neighbour sums), same law."""
    h, c2, c4 = theory.hopping
    i, j = np.indices(phi.shape)
    masks = [(i + j) % 2 == parity for parity in (0, 1)]
    phi = phi.copy()
    for _ in range(n_sweeps):
        for mask in masks:
            nn = sum(np.roll(phi, s, axis=a) for s in (1, -1) for a in (0, 1))
            d = rng.uniform(-width, width, phi.shape)
            q = phi + d
            p2, q2 = phi * phi, q * q
            ds = -h * d * nn + c2 * (q2 - p2) + c4 * (q2 * q2 - p2 * p2)
            accept = mask & (rng.standard_exponential(phi.shape) > ds)
            phi = np.where(accept, q, phi)
    return phi


def _cpu_seconds(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _interleaved(runs: dict[str, tuple], repeats: int) -> dict[str, list[float]]:
    """CPU seconds per unit of work of each (callable, units) in ``runs``, in every repeat."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (fn, units) in runs.items():
            times[name].append(_cpu_seconds(fn) / units)
    return times


def _ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over repeats of the per-repeat ratio a / b (both measured in that repeat)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def _hmc_runs(
    sampler: HMCSampler, phi: np.ndarray, n_fast: int, n_slow: int, previous: types.ModuleType
) -> dict:
    """The three HMC implementations, each a callable over a fixed number of trajectories."""
    theory = sampler.theory
    h, c2, c4 = theory.hopping
    s = sampler.settings
    volume = theory.volume

    def new() -> None:
        state = sampler.init(phi, np.random.default_rng(0))
        khmc.hmc_block(
            state.phi, state.aux["force"], state.aux["momentum"], state.scalars,
            s.step_size, N_LEAPFROG, khmc.LEAPFROG, s.omelyan_lambda, True, h, c2, c4,
            theory.c0, np.random.default_rng(1), n_fast, 1, np.empty((n_fast, N_OBS)),
            np.empty((n_fast, 4)),
        )  # fmt: skip

    def old() -> None:
        state = sampler.init(phi, np.random.default_rng(0))
        scratch = [np.empty_like(phi) for _ in range(3)]
        previous.hmc.hmc_block(
            state.phi, state.aux["force"], state.aux["momentum"], state.scalars, *scratch,
            np.empty(N_OBS), s.step_size, N_LEAPFROG, previous.hmc.LEAPFROG, s.omelyan_lambda,
            True, h, c2, c4, theory.c0, np.random.default_rng(1), n_fast, 1,
            np.empty((n_fast, N_OBS)), np.empty((n_fast, 4)), 0,
        )  # fmt: skip

    def slow() -> None:
        numpy_hmc(theory, phi.copy(), s.step_size, n_slow, np.random.default_rng(2))

    site_steps = volume * N_LEAPFROG
    return {
        "new": (new, n_fast * site_steps),
        "previous": (old, n_fast * site_steps),
        "numpy": (slow, n_slow * site_steps),
    }


def bench_hmc(
    sizes: list[int], repeats: int, budget: float, previous: types.ModuleType
) -> list[tuple]:
    """Rows (L, step_size, ns new, ns previous, ns numpy, new/previous, numpy/new)."""
    rows = []
    for L in sizes:
        theory = theory_for(L)
        sampler, phi = tuned(HMCSampler(theory, n_leapfrog=N_LEAPFROG))
        sampler.settings = type(sampler.settings)(**{**sampler.settings_dict(), "tune": False})
        site_steps = theory.volume * N_LEAPFROG
        n_fast = max(20, int(budget / (site_steps * 3e-9)))
        n_slow = max(3, int(budget / (site_steps * 1e-7)))
        runs = _hmc_runs(sampler, phi, n_fast, n_slow, previous)
        for fn, _ in runs.values():  # compile / warm caches
            fn()
        t = _interleaved(runs, repeats)
        med = {k: statistics.median(v) * 1e9 for k, v in t.items()}
        rows.append(
            (
                L,
                sampler.settings.step_size,
                med["new"],
                med["previous"],
                med["numpy"],
                _ratio(t, "new", "previous"),
                _ratio(t, "numpy", "new"),
            )
        )
    return rows


def _metropolis_runs(
    sampler: MetropolisSampler,
    phi: np.ndarray,
    n_fast: int,
    n_slow: int,
    previous: types.ModuleType,
) -> dict:
    """The three Metropolis implementations, each a callable over a fixed number of sweeps."""
    theory = sampler.theory
    h, c2, c4 = theory.hopping
    width = sampler.settings.width
    volume = theory.volume

    def block(module) -> None:
        state = sampler.init(phi, np.random.default_rng(0))
        control = () if module is kmet else (0,)  # the previous kernels took a test switch
        module.metropolis_block(
            state.phi, state.scalars, width, 1, True, h, c2, c4, theory.c0,
            np.random.default_rng(1), n_fast, n_fast, np.empty((1, N_OBS)),
            np.empty((n_fast, 1)), *control,
        )  # fmt: skip

    def slow() -> None:
        numpy_metropolis(theory, phi, width, n_slow, np.random.default_rng(2))

    return {
        "new": (lambda: block(kmet), n_fast * volume),
        "previous": (lambda: block(previous.metropolis), n_fast * volume),
        "numpy": (slow, n_slow * volume),
    }


def bench_metropolis(
    sizes: list[int], repeats: int, budget: float, previous: types.ModuleType
) -> list[tuple]:
    """Rows (L, width, ns new, ns previous, ns numpy, new/previous, numpy/new)."""
    rows = []
    for L in sizes:
        theory = theory_for(L)
        sampler, phi = tuned(MetropolisSampler(theory))
        width = sampler.settings.width
        n_fast = max(20, int(budget / (theory.volume * 30e-9)))
        n_slow = max(3, int(budget / (theory.volume * 300e-9)))
        runs = _metropolis_runs(sampler, phi, n_fast, n_slow, previous)
        for fn, _ in runs.values():
            fn()
        t = _interleaved(runs, repeats)
        med = {k: statistics.median(v) * 1e9 for k, v in t.items()}
        rows.append(
            (
                L,
                width,
                med["new"],
                med["previous"],
                med["numpy"],
                _ratio(t, "new", "previous"),
                _ratio(t, "numpy", "new"),
            )
        )
    return rows


@njit(cache=True)
def _wolff_loop(phi: np.ndarray, h: float, rng: np.random.Generator, n: int) -> int:
    stack = np.empty((2, phi.size + 1), dtype=np.int64)
    flipped = 0
    for _ in range(n):
        flipped += wolff_update(phi, h, rng, stack)
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
        run = RunSettings(n_steps=n_steps, n_therm=2000, n_chains=2, seed=3)
        result = run_sampler(sampler, run)
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
    parser.add_argument(
        "--baseline-rev", default=BASELINE_REV, help=f"the old kernels' revision ({BASELINE_REV})"
    )
    args = parser.parse_args()
    repeats, budget, n_ess = (5, 0.02, 5000) if args.quick else (9, 0.25, 100_000)
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as folder:
        previous = load_baseline(args.baseline_rev, Path(folder))
        report(args, repeats, budget, n_ess, previous)


def report(
    args: argparse.Namespace, repeats: int, budget: float, n_ess: int, previous: types.ModuleType
) -> None:
    """Run every benchmark and print its table."""

    t_start = time.perf_counter()
    print(f"CPU-time medians over {repeats} interleaved repeats; ratios are medians of per-repeat")
    print("ratios (new / previous: lower is better; numpy / new: the speed-up over NumPy)")
    print(f"previous = the kernels of git revision {args.baseline_rev}\n")
    print("HMC all-in, leapfrog, n_leapfrog = 10 (ns per site per leapfrog step)")
    print(
        f"{'L':>4} {'step_size':>10} {'new':>8} {'previous':>9} {'numpy':>8} "
        f"{'new/prev':>9} {'numpy/new':>10}"
    )
    for L, eps, new, old, slow, ratio, speedup in bench_hmc(SIZES, repeats, budget, previous):
        print(
            f"{L:>4} {eps:>10.4f} {new:>8.3f} {old:>9.3f} {slow:>8.1f} "
            f"{ratio:>9.3f} {speedup:>9.0f}x"
        )
    print("  target: new/prev <= 0.5")

    print("\nMetropolis, checkerboard sweeps, n_hits = 1 (ns per site update)")
    print(
        f"{'L':>4} {'width':>10} {'new':>8} {'previous':>9} {'numpy':>8} "
        f"{'new/prev':>9} {'numpy/new':>10}"
    )
    for L, width, new, old, slow, ratio, speedup in bench_metropolis(
        SIZES, repeats, budget, previous
    ):
        print(
            f"{L:>4} {width:>10.4f} {new:>8.2f} {old:>9.2f} {slow:>8.1f} "
            f"{ratio:>9.3f} {speedup:>9.1f}x"
        )
    print("  target: new/prev <= 0.6")

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
