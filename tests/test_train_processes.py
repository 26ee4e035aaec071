"""``[train] processes``: the train command starts its own DDP processes, reproducibly."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from lattice_samplers.flows import TrainSettings
from lattice_samplers.flows.train.config import physical_cores, resolve_processes

CONFIG = (
    '[theory]\nL = 4\nparametrization = "ising"\nbeta = 0.5\nlam = 0.5\n'
    '[flow]\nfamily = "coupling"\nn_layers = 2\nhidden = [8]\n'
    "[train]\nn_steps = 3\nbatch_size = 16\neval_every = 3\neval_batch_size = 32\n"
    "processes = 2\nseed = 7\n"
)


def _train(tmp_path, name: str, *extra: str) -> tuple[dict, list[dict]]:
    config = tmp_path / "cfg.toml"
    config.write_text(CONFIG)
    out = tmp_path / name
    cmd = [sys.executable, "-m", "lattice_samplers.cli", "train", str(config), "--out", str(out)]
    cmd += ["--json", "--no-progress", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout  # rank 0 alone prints
    with open(out / "history.csv") as fh:
        return json.loads(lines[0]), list(csv.DictReader(fh))


def test_processes_setting_is_validated_and_resolved() -> None:
    assert resolve_processes(TrainSettings()) == 1
    assert resolve_processes(TrainSettings(processes="auto")) == physical_cores()
    assert resolve_processes(TrainSettings(processes=3, device="cuda")) == 1
    for bad in (0, "two", 1.5, True):
        with pytest.raises(ValueError, match="processes"):
            TrainSettings(processes=bad)


def test_the_command_hands_its_arguments_to_torchrun(tmp_path, monkeypatch) -> None:
    """Fast check of the launch: torchrun, the process count, every argument, the threads."""
    from lattice_samplers import cli

    config = tmp_path / "cfg.toml"
    config.write_text(CONFIG)
    seen = {}

    def fake_run(cmd, env, check):
        seen.update(cmd=cmd, env=env)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(subprocess, "run", fake_run)
    argv = ["train", str(config), "--out", str(tmp_path / "o"), "--json", "--set", "train.seed=1"]
    assert cli.main(argv) == 0
    cmd = seen["cmd"]
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[cmd.index("train") + 1 :] == [
        str(config),
        "--out",
        str(tmp_path / "o"),
        "--set",
        "train.seed=1",
        "--json",
        "--no-progress",
    ]
    assert int(seen["env"]["OMP_NUM_THREADS"]) * 2 <= max(2, physical_cores())
    assert not (tmp_path / "o").exists()  # the launcher itself writes nothing


@pytest.mark.slow
def test_two_processes_started_by_the_command_reproduce_their_run(tmp_path) -> None:
    """Three trainings in subprocesses (about 25 s on two idle cores, 76 s under load 7)."""
    first, history = _train(tmp_path, "a")
    second, again = _train(tmp_path, "b")
    assert first["world_size"] == 2 and first["prior_streams"] == 2
    assert [r["loss"] for r in history] == [r["loss"] for r in again]  # bit for bit (text)
    # negative control: one process (same seed) draws one prior stream: another trajectory
    single, alone = _train(tmp_path, "c", "--set", "train.processes=1")
    assert single["world_size"] == 1
    assert [r["loss"] for r in alone] != [r["loss"] for r in history]
