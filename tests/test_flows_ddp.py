"""Flow training with DistributedDataParallel: 2 gloo processes against one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402

from lattice_samplers.flows import (  # noqa: E402
    CheckpointError,
    CouplingFlowSettings,
    TrainSettings,
    read_checkpoint,
)
from lattice_samplers.flows.distributed import backend_for, session  # noqa: E402
from lattice_samplers.theory import Phi4Theory  # noqa: E402
from lattice_samplers.workflows.train.session import train_flow  # noqa: E402

THEORY = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
FLOW = CouplingFlowSettings(n_layers=2, hidden=(16,), dtype="float64")
CFG = TrainSettings(
    n_steps=6,
    batch_size=32,
    lr=1e-2,
    scheduler="constant",  # so that a resumed run with more steps equals a straight one
    eval_every=3,
    eval_batch_size=64,
    checkpoint_every=3,
    seed=11,
    num_threads=1,
)
WORLD = 2
ONE_PROCESS = replace(CFG, prior_streams=WORLD)  # the same samples as WORLD processes draw
DEADLINE_S = 120.0  # generous for a loaded machine; a hang fails instead of blocking CI
COLLECTIVE_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    # what torchrun would set
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    with session("cpu", timeout_s=COLLECTIVE_TIMEOUT_S) as comm:
        assert comm is not None and comm.backend == "gloo" and comm.rank == rank
        flow, res = train_flow(THEORY, FLOW, CFG, out_dir=Path(tmp) / "ddp", progress=False)
    torch.save(
        {"params": flow.state_dict(), "history": res.history, "summary": res.summary()},
        Path(tmp) / f"rank{rank}.pt",
    )


def _run_ddp(tmp: Path) -> list[dict]:
    args = (WORLD, _free_port(), str(tmp))
    ctx = mp.start_processes(_worker, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"DDP training did not finish within {DEADLINE_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    tmp = tmp_path_factory.mktemp("ddp")
    return tmp, _run_ddp(tmp)


def _max_rel_diff(a: dict, b: dict) -> float:
    return max(
        float(((a[k] - b[k]).abs() / b[k].abs().clamp_min(1e-12)).max()) for k in a if b[k].numel()
    )


def test_ddp_keeps_parameters_identical_across_ranks(ddp_run) -> None:
    _, (r0, r1) = ddp_run
    for name, p in r0["params"].items():
        assert torch.equal(p, r1["params"][name]), name
    for col, values in r0["history"].items():  # metrics, eval, clock: one history
        np.testing.assert_array_equal(values, r1["history"][col], err_msg=col)
    assert r0["summary"]["world_size"] == WORLD == r0["summary"]["prior_streams"]


def test_ddp_matches_one_process_with_the_combined_batch(ddp_run) -> None:
    _, (r0, _) = ddp_run
    flow, res = train_flow(THEORY, FLOW, ONE_PROCESS, progress=False)
    single = flow.state_dict()
    assert _max_rel_diff(r0["params"], single) < 1e-9
    h = r0["history"]
    for col in ("loss", "acceptance", "ess_kish", "var_log_weight", "lr"):
        np.testing.assert_allclose(h[col], res.history[col], rtol=1e-9, err_msg=col)
    ev = np.isfinite(res.history["eval_acceptance"])
    np.testing.assert_array_equal(np.isfinite(h["eval_acceptance"]), ev)
    np.testing.assert_allclose(h["eval_acceptance"][ev], res.history["eval_acceptance"][ev])
    # negative control: the same combined batch size from one stream is another run
    other, _ = train_flow(THEORY, FLOW, CFG, progress=False)
    assert _max_rel_diff(other.state_dict(), single) > 1e-3


def test_rank0_writes_the_single_process_format_and_it_resumes(ddp_run, tmp_path) -> None:
    tmp, (r0, _) = ddp_run
    out = tmp / "ddp"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    train_flow(THEORY, FLOW, CFG, out_dir=tmp_path / "one", progress=False)
    assert summary.keys() == json.loads((tmp_path / "one" / "summary.json").read_text()).keys()
    assert summary["n_steps"] == CFG.n_steps and summary["world_size"] == WORLD
    data = read_checkpoint(out / "checkpoint.pt")
    assert len(data["train"]["rng"]["train_noise_streams"]) == WORLD
    for name, p in data["model"].items():
        assert torch.equal(p, r0["params"][name]), name
    # one process continues the distributed run with its streams, as if it had run it
    more = replace(CFG, n_steps=CFG.n_steps + 3)
    with pytest.raises(CheckpointError, match="prior_streams = 2, not 1"):
        train_flow(THEORY, FLOW, replace(more, prior_streams=1), out_dir=out, resume=True)
    resumed, res = train_flow(THEORY, FLOW, more, out_dir=out, resume=True, progress=False)
    assert res.summary()["prior_streams"] == WORLD
    straight, _ = train_flow(THEORY, FLOW, replace(more, prior_streams=WORLD), progress=False)
    assert _max_rel_diff(resumed.state_dict(), straight.state_dict()) < 1e-9


def test_streams_must_split_batch_and_processes_and_backend_follows_device() -> None:
    with pytest.raises(ValueError, match="not divisible by the 3 prior streams"):
        train_flow(THEORY, FLOW, replace(CFG, prior_streams=3), progress=False)
    with pytest.raises(ValueError, match="prior_streams must be >= 1"):
        replace(CFG, prior_streams=0)
    assert backend_for("cpu") == "gloo" and backend_for("cuda") == "nccl"
    with session("cpu") as comm:  # not under torchrun: plain single-process training
        assert comm is None


def test_torchrun_runs_the_train_command(tmp_path) -> None:
    # two prior streams per process: the result depends on the streams, not the processes
    config = tmp_path / "cfg.toml"
    config.write_text(
        '[theory]\nL = 4\nparametrization = "ising"\nbeta = 0.5\nlam = 0.5\n'
        '[flow]\nfamily = "coupling"\nn_layers = 2\nhidden = [16]\ndtype = "float64"\n'
        "[train]\nn_steps = 4\nbatch_size = 32\neval_every = 2\neval_batch_size = 64\n"
        "num_threads = 1\nprior_streams = 4\n"
    )
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        "-m",
        "lattice_samplers.cli",
        "train",
        str(config),
        "--out",
        str(out),
        "--json",
        "--no-progress",
    ]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE_S, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout  # rank 0 alone prints
    summary = json.loads(lines[0])
    assert summary["world_size"] == WORLD and summary["prior_streams"] == 4
    assert summary["n_steps"] == 4
    for name in ("checkpoint.pt", "history.csv", "training.png", "summary.json"):
        assert (out / name).is_file(), name
    cfg = TrainSettings(
        n_steps=4, batch_size=32, eval_every=2, eval_batch_size=64, num_threads=1, prior_streams=4
    )
    flow, _ = train_flow(THEORY, FLOW, cfg, progress=False)
    assert _max_rel_diff(read_checkpoint(out / "checkpoint.pt")["model"], flow.state_dict()) < 1e-9
