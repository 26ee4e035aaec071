"""Parallel chains: elapsed production time with ``workers = 2`` against ``workers = 1``.

For each case the same run (4 chains, same seed) is done with one and with two workers,
alternating, ``--repeats`` times; printed are the median ``wall_time_s`` of each, their ratio
(target <= 0.6 on two free cores), the ratio of core seconds (about 1 unless the cores are
contended), and whether the observables are bit-identical.  This machine is shared and noisy:
compare the ratios, measured side by side.

Cases: HMC at L = 8 and 32, Metropolis at L = 32, independence Metropolis with the exact
free-field proposal (NumPy FFTs) and with an untrained flow (torch) as proposal; the flow
proposal keeps its chains on one thread (``used`` column: the workers the second run got).

Run: ``python benchmarks/bench_parallel.py [--quick] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable

import numpy as np

from lattice_samplers.driver import RunResult, RunSettings, run_sampler
from lattice_samplers.exact import FreeFieldSampler
from lattice_samplers.samplers import HMCSampler, MetropolisSampler, Sampler
from lattice_samplers.samplers.flow import FlowSampler, FlowSamplerSettings
from lattice_samplers.theory import Phi4Theory

__all__ = ["main", "measure"]


def _ising(L: int) -> Phi4Theory:
    return Phi4Theory.create(L, "ising", beta=0.576, lam=0.5)


def _free(L: int) -> Phi4Theory:
    return Phi4Theory.create(L, "albergo", m2=1.0, lam=0.0)


def _flow_imh(L: int) -> Sampler:
    from lattice_samplers.flows import FlowProposal, build_flow

    theory = _ising(L)
    return FlowSampler(
        theory, FlowSamplerSettings(batch_size=1024), proposal=FlowProposal(build_flow(theory))
    )


def cases(quick: bool) -> dict[str, tuple[Callable[[], Sampler], RunSettings]]:
    """Name -> (sampler factory, run settings with 4 chains) of every measured case."""
    scale = 10 if quick else 1
    run = RunSettings(n_therm=200, n_chains=4, seed=5)
    return {
        "hmc L=8": (
            lambda: HMCSampler(_ising(8)),
            dataclasses.replace(run, n_steps=20_000 // scale),
        ),
        "hmc L=32": (
            lambda: HMCSampler(_ising(32)),
            dataclasses.replace(run, n_steps=4000 // scale),
        ),
        "metropolis L=32": (
            lambda: MetropolisSampler(_ising(32)),
            dataclasses.replace(run, n_steps=4000 // scale),
        ),
        "imh exact L=16": (
            lambda: FlowSampler(
                _free(16),
                FlowSamplerSettings(batch_size=1024),
                proposal=FreeFieldSampler(_free(16)),
            ),
            dataclasses.replace(run, n_steps=40_000 // scale),
        ),
        "imh flow L=8": (lambda: _flow_imh(8), dataclasses.replace(run, n_steps=8192 // scale)),
    }


def measure(
    factory: Callable[[], Sampler], run: RunSettings, repeats: int
) -> tuple[float, float, float, bool, int]:
    """Median wall seconds with 1 and 2 workers, core-seconds ratio, bit-identity, workers used."""
    walls: dict[int, list[float]] = {1: [], 2: []}
    cores: dict[int, list[float]] = {1: [], 2: []}
    last: dict[int, RunResult] = {}
    # discarded: first calls pay one-time costs (torch's lazy initialization, numba's cache)
    run_sampler(factory(), dataclasses.replace(run, n_steps=run.thin, n_therm=0, workers=2))
    for _ in range(repeats):
        for workers in (1, 2):
            result = run_sampler(factory(), dataclasses.replace(run, workers=workers))
            walls[workers].append(result.wall_time_s)
            cores[workers].append(result.core_time_s)
            last[workers] = result
    same = all(
        np.array_equal(last[1].observables[k], last[2].observables[k]) for k in last[1].observables
    )
    w1, w2 = statistics.median(walls[1]), statistics.median(walls[2])
    core_ratio = statistics.median(cores[2]) / statistics.median(cores[1])
    return w1, w2, core_ratio, same, last[2].workers


def main() -> None:
    """Print the table of ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short chains (seconds)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="substring of the case names to run")
    args = parser.parse_args()
    print(
        f"{'case':<18}{'wall w=1':>10}{'wall w=2':>10}{'used':>6}{'ratio':>8}{'core ratio':>12}"
        "  identical"
    )
    for name, (factory, run) in cases(args.quick).items():
        if args.only not in name:
            continue
        w1, w2, core_ratio, same, used = measure(factory, run, args.repeats)
        print(
            f"{name:<18}{w1:>10.3f}{w2:>10.3f}{used:>6}{w2 / w1:>8.2f}{core_ratio:>12.2f}  {same}"
        )


if __name__ == "__main__":
    main()
