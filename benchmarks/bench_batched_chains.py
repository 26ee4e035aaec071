"""Cost per trajectory of fourier_hmc and flow_hmc: chains batched against one by one.

For each L, 4 chains of each sampler advance the same number of trajectories twice, in turns:
once through ``run_block_batched`` (all chains in one FFT batch / one autograd pass per
force, what the driver does) and once with one ``run_block`` per chain (the per-chain
reference path).  Printed: the medians over ``--repeats`` of the seconds per trajectory and
chain, and their ratio.  flow_hmc uses the committed cnf flow of the flow-family scan at that
L (standard gradient, seed 2) with its training ODE steps.  Fixed step size and trajectory
length (n_leapfrog = 8), no tuning.

Usage: ``python benchmarks/bench_batched_chains.py [--L 8 16] [--repeats 5] [--n-traj 20]``.
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time

import numpy as np
import torch

from lattice_samplers.beta_table import tuned_beta
from lattice_samplers.flows import load_flow
from lattice_samplers.kernels.common import N_OBS
from lattice_samplers.samplers import FourierHMCSampler
from lattice_samplers.samplers.flow_hmc import FlowHMCSampler, TorchFlowMap
from lattice_samplers.theory import Phi4Theory

N_CHAINS = 4
SETTINGS = {"step_size": 0.2, "n_leapfrog": 8, "trajectory_length": None, "tune": False}


def _cnf_flow(L: int, theory: Phi4Theory):  # noqa: ANN202
    pattern = f"data/flow_families/scan/tasks/family=cnf__gradient=standard__*__L={L}__seed=2__*/"
    return load_flow(sorted(glob.glob(pattern))[0], theory)


def _seconds(sampler: object, n_traj: int, batched: bool) -> float:
    """Seconds per trajectory and chain for ``n_traj`` trajectories of 4 chains."""
    rngs = [np.random.default_rng(c) for c in range(N_CHAINS)]
    states = [sampler.init(None, r) for r in rngs]
    n_stats = len(sampler.stat_names)
    obs = np.empty((N_CHAINS, n_traj, N_OBS))
    stats = np.empty((N_CHAINS, n_traj, n_stats))
    t0 = time.perf_counter()
    if batched:
        sampler.run_block_batched(states, n_traj, 1, rngs, obs, stats)
    else:
        for c in range(N_CHAINS):
            sampler.run_block(states[c], n_traj, 1, rngs[c], obs[c], stats[c])
    return (time.perf_counter() - t0) / (n_traj * N_CHAINS)


def main() -> None:
    """Print the per-trajectory medians and the speed-up of batching for each L."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-traj", type=int, default=20)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}; 4 chains, n_leapfrog 8, ms per trajectory")
    print(f"{'L':>3} {'sampler':<12} {'per-chain':>10} {'batched':>10} {'speed-up':>9}")
    for L in args.L:
        theory = Phi4Theory.create(L, "ising", beta=tuned_beta(L, 0.5), lam=0.5)
        samplers = {
            "fourier_hmc": FourierHMCSampler(theory, **SETTINGS),
            "flow_hmc": FlowHMCSampler(
                theory, latent_map=TorchFlowMap(_cnf_flow(L, theory), theory), **SETTINGS
            ),
        }
        for name, sampler in samplers.items():
            sampler.warmup()
            n = args.n_traj * (20 if name == "fourier_hmc" else 1)
            _seconds(sampler, 2, True)
            one, many = [], []
            for _ in range(args.repeats):
                one.append(_seconds(sampler, n, False))
                many.append(_seconds(sampler, n, True))
            a, b = statistics.median(one) * 1e3, statistics.median(many) * 1e3
            print(f"{L:>3} {name:<12} {a:>10.3f} {b:>10.3f} {a / b:>8.2f}x")


if __name__ == "__main__":
    main()
