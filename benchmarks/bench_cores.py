"""Both cores for flow work: proposals/s and training steps/s on 1 and 2 cores, idle and busy.

Proposals: an untrained cnf flow at L = 8 (the cost does not depend on the weights) drawn
through :class:`~lattice_samplers.flows.FlowProposal` in calls of 4096 (the flow sampler's
batch) with sampling batches of ``--batch``: ``1 core`` = this process on one torch thread,
``2 threads`` = this process on two torch threads, ``2 cores`` = two worker processes of one
thread each (``workers = 2``).  Training: ``lattice-samplers train`` with ``[train]
processes`` 1 and 2 (the command starts torchrun itself), steps / ``train_seconds``.

Each case runs on the machine as it is (``idle``) and beside a busy-loop process that this
benchmark starts and stops (``busy``).  Medians over ``--repeats``; ratios against ``1 core``
of the same condition.  Prints ``uptime`` before and after: the machine may be shared.

Run: ``python benchmarks/bench_cores.py [--repeats 3] [--steps 40]`` (about 2-3 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lattice_samplers.flows import FlowProposal, build_flow
from lattice_samplers.theory import Phi4Theory

__all__ = ["busy_process", "main", "proposals_per_s", "train_steps_per_s"]

THEORY = Phi4Theory.create(8, "ising", beta=0.6, lam=0.5)
CALL = 4096


@contextlib.contextmanager
def busy_process(on: bool) -> Iterator[None]:
    """A busy-loop Python process for the duration (nothing when ``on`` is False)."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def proposals_per_s(proposal: FlowProposal, threads: int, repeats: int, n: int = CALL) -> float:
    """Median proposals per second of ``sample(n, rng)`` with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    proposal.sample(n, rng)  # warm-up (workers' first batches, lazy init)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proposal.sample(n, rng)
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def train_steps_per_s(processes: int, steps: int) -> float:
    """Training steps per second of the train command with ``processes`` (train_seconds)."""
    config = (
        '[theory]\nL = 8\nparametrization = "ising"\nbeta = 0.6\nlam = 0.5\n'
        f"[train]\nn_steps = {steps}\nbatch_size = 256\neval_every = {steps}\n"
        f"eval_batch_size = 256\nprocesses = {processes}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "cfg.toml"
        cfg.write_text(config)
        cmd = [sys.executable, "-m", "lattice_samplers.cli", "train", str(cfg)]
        cmd += ["--out", str(Path(tmp) / "run"), "--json", "--no-progress"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    summary = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][0])
    return summary["n_steps"] / summary["train_seconds"]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    """Print proposals/s and training steps/s with ratios to one core."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="sampling batch (default: flow's)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    parser.add_argument("--no-train", action="store_true", help="proposals only")
    args = parser.parse_args()
    print("before:", _uptime())
    flow = build_flow(THEORY, seed=1)
    bs = args.batch or flow.sampling_batch_size()
    one = FlowProposal(flow, batch_size=bs)
    print(f"proposals, L = 8, calls of {CALL}, sampling batch {bs}")
    with FlowProposal(flow, batch_size=bs, workers=2) as two:
        for busy in (False, True):
            with busy_process(busy):
                r1 = proposals_per_s(one, 1, args.repeats)
                # two threads beside other work collapse (10-100x): a short call suffices
                r2t = proposals_per_s(one, 2, args.repeats, n=CALL // 8)
                r2 = proposals_per_s(two, 1, args.repeats)
            cond = "busy" if busy else "idle"
            print(
                f"  {cond}: 1 core {r1:9.0f}/s   2 threads {r2t:9.0f}/s ({r2t / r1:.2f}x)   "
                f"2 cores {r2:9.0f}/s ({r2 / r1:.2f}x)"
            )
    torch.set_num_threads(1)
    if not args.no_train:
        print(f"training, L = 8 cnf, batch 256, {args.steps} steps, [train] processes 1 vs 2")
        for busy in (False, True):
            with busy_process(busy):
                s1 = statistics.median(
                    train_steps_per_s(1, args.steps) for _ in range(max(1, args.repeats // 2))
                )
                s2 = statistics.median(
                    train_steps_per_s(2, args.steps) for _ in range(max(1, args.repeats // 2))
                )
            cond = "busy" if busy else "idle"
            print(f"  {cond}: 1 process {s1:7.2f} steps/s   2 processes {s2:7.2f} ({s2 / s1:.2f}x)")
    print("after:", _uptime())


if __name__ == "__main__":
    main()
