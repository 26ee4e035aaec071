"""The training session: signals and resume, failures reported as their cause, refusals,
warm starts across L and curricula, and the loop's IMH pass against a plain Python one."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lattice_samplers.flows import (  # noqa: E402
    CheckpointError,
    CNFSettings,
    CouplingFlowSettings,
    TrainSettings,
    build_flow,
    init_from_checkpoint,
    load_flow,
    read_checkpoint,
    save_checkpoint,
)
from lattice_samplers.flows.action import TorchAction  # noqa: E402
from lattice_samplers.flows.train import fit, imh_acceptance  # noqa: E402
from lattice_samplers.theory import Phi4Theory  # noqa: E402
from lattice_samplers.workflows.train.curriculum import train_curriculum  # noqa: E402
from lattice_samplers.workflows.train.session import train_flow  # noqa: E402

ROOT = Path(__file__).parents[1]
ISING4 = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
ISING6 = Phi4Theory.create(6, "ising", beta=0.5, lam=0.5)
TINY = CouplingFlowSettings(n_layers=2, hidden=(16,))
CONV = CouplingFlowSettings(n_layers=2, conditioner="conv", hidden=(4,))
TIME_COLUMNS = ("train_s", "wall_s")

CONFIG = """
[theory]
L = 4
parametrization = "ising"
beta = 0.5
lam = 0.5

[flow]
family = "coupling"
n_layers = 2
hidden = [16]

[train]
n_steps = {n_steps}
batch_size = 64
eval_every = 25
eval_batch_size = 128
checkpoint_every = {checkpoint_every}
num_threads = 1
seed = 5
"""


def _quick(**kw) -> TrainSettings:
    base = dict(n_steps=20, batch_size=64, eval_every=10, eval_batch_size=256, num_threads=1)
    base.update(kw)
    return TrainSettings(**base)


def _write(tmp_path: Path, n_steps: int = 20, checkpoint_every: int = 500) -> str:
    path = tmp_path / "cfg.toml"
    path.write_text(CONFIG.format(n_steps=n_steps, checkpoint_every=checkpoint_every))
    return str(path)


def _cli(*args: str) -> list[str]:
    code = "import sys; from lattice_samplers.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "train", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


# ---------------------------------------------------------------------- signals
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_then_resume_is_bit_identical_to_a_straight_run(tmp_path, signum, status) -> None:
    """Interrupt after the first periodic checkpoint; the save happens at a step boundary, so
    --resume continues exactly as a run that was never stopped (weights and history)."""
    n_steps = 300
    cfg = _write(tmp_path, n_steps=n_steps, checkpoint_every=20)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*_cli(cfg, "--out", str(out), "--no-progress")],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    stopped = read_checkpoint(out / "checkpoint.pt")["train"]["step"]
    if proc.returncode == 0:
        pytest.skip(f"training finished before the signal arrived (step {stopped})")
    assert proc.returncode == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0], err
    assert signal.Signals(signum).name in lines[0] and f"after step {stopped}" in lines[0]
    assert 20 <= stopped < n_steps

    resumed = subprocess.run(
        [*_cli(cfg, "--out", str(out), "--no-progress", "--resume")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    a = read_checkpoint(out / "checkpoint.pt")
    straight, res = train_flow(
        ISING4,
        TINY,
        _quick(n_steps=n_steps, eval_every=25, eval_batch_size=128, checkpoint_every=20, seed=5),
        progress=False,
    )
    for name, value in straight.state_dict().items():
        assert torch.equal(value, a["model"][name]), name
    hist = a["train"]["history"]
    for col, values in res.history.items():
        if col not in TIME_COLUMNS:
            np.testing.assert_array_equal(np.asarray(hist[col]), values, err_msg=col)


# ---------------------------------------------------------------------- failures
def test_nonfinite_loss_is_reported_as_its_cause(tmp_path, capsys, monkeypatch) -> None:
    """NaN before the first checkpoint: one line naming the step and what went non-finite,
    non-zero status, no secondary error about a missing figure; the history so far is kept."""
    from lattice_samplers.cli import main

    calls = {"n": 0}
    original = TorchAction.__call__

    def poisoned(self, phi):
        calls["n"] += 1
        s = original(self, phi)
        return s * float("nan") if calls["n"] == 7 else s

    monkeypatch.setattr(TorchAction, "__call__", poisoned)
    out = tmp_path / "f1"
    guard_off = ["--set", "train.max_rollbacks=0"]  # the guard would skip the batch
    assert main(["train", _write(tmp_path), "--out", str(out), "--no-progress", *guard_off]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "step 7" in err and "non-finite" in err and "no checkpoint was written" in err
    assert "No such file" not in err
    assert not (out / "checkpoint.pt").exists()
    assert (out / "history.csv").read_text().count("\n") == 1 + 6  # header + 6 good steps
    assert (out / "summary.json").is_file() and (out / "training.png").is_file()


def test_unwritable_output_folder_is_refused_before_training(tmp_path, capsys) -> None:
    from lattice_samplers.cli import main

    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("this user can write into a read-only folder (root)")
        t0 = time.perf_counter()
        status = main(["train", _write(tmp_path), "--out", str(parent / "run"), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1, err
        assert "permission" in err and str(parent) in err
        assert time.perf_counter() - t0 < 30
    finally:
        parent.chmod(0o700)


def test_unwritable_output_folder_is_refused_even_as_root(tmp_path, capsys, monkeypatch) -> None:
    """The same check where permissions do not bind (root): os.access says no."""
    from lattice_samplers.cli import main

    parent = tmp_path / "ro"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == parent else real_access(p, mode)
    )
    status = main(["train", _write(tmp_path), "--out", str(parent / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "permission" in err and str(parent) in err
    assert list(parent.iterdir()) == []


def test_zero_steps_is_refused(tmp_path, capsys) -> None:
    from lattice_samplers.cli import main

    status = main(
        ["train", _write(tmp_path), "--out", str(tmp_path / "r"), "--set", "train.n_steps=0"]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and "n_steps must be >= 1" in err and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        TrainSettings(n_steps=0)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"lr": 1e-2}, "lr: 0.005 -> 0.01"),
        ({"scheduler": "constant"}, "scheduler: 'cosine' -> 'constant'"),
        ({"n_steps": 30}, "n_steps: 20 -> 30"),
        ({"seed": 1}, "seed: 0 -> 1"),
        ({"batch_size": 32}, "batch_size: 64 -> 32"),
    ],
)
def test_resume_with_other_trajectory_settings_is_refused(tmp_path, change, match) -> None:
    out = tmp_path / "run"
    cfg = _quick(lr=5e-3)
    train_flow(ISING4, TINY, cfg, out_dir=out, progress=False, until_step=10)
    before = (out / "checkpoint.pt").read_bytes()
    other = replace(cfg, **change)
    with pytest.raises(CheckpointError, match=match) as info:
        train_flow(ISING4, TINY, other, out_dir=out, progress=False, resume=True)
    assert "\n" not in str(info.value)
    assert (out / "checkpoint.pt").read_bytes() == before
    # settings that do not change the updates may change
    free = replace(cfg, eval_every=5, target_acceptance=0.99)
    _, res = train_flow(ISING4, TINY, free, out_dir=out, progress=False, resume=True)
    assert res.n_steps == 20


def test_text_file_as_checkpoint_is_one_clear_line(tmp_path, capsys) -> None:
    from lattice_samplers.cli import main

    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a checkpoint\n")
    with pytest.raises(CheckpointError, match="text file") as info:
        load_flow(text)
    assert "\n" not in str(info.value) and "pickle" not in str(info.value)
    cfg = _write(tmp_path)
    status = main(["train", cfg, "--out", str(tmp_path / "r"), "--init-from", str(text)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "text file" in err, err
    assert "pickle" not in err


def test_summary_floats_have_four_significant_digits(capsys) -> None:
    from lattice_samplers.commands.train import _print_summary

    s = {
        "message": "finished 3 steps",
        "stop_reason": "n_steps",
        "final_acceptance": 0.0,
        "ess_kish": 0.001,
        "var_log_weight": 1.2345678e240,
        "target_acceptance": None,
        "n_parameters": 10,
        "n_steps": 3,
        "train_seconds": 1.0,
        "wall_seconds": 1.0,
        "out": "x",
    }
    _print_summary(s)
    out = capsys.readouterr().out
    assert "var log w 1.235e+240" in out and max(len(line) for line in out.splitlines()) < 100


# ---------------------------------------------------------------------- checkpoints
def test_version_1_checkpoint_with_couplings_record_still_loads(tmp_path) -> None:
    flow = build_flow(ISING4, TINY, seed=2)
    path = save_checkpoint(tmp_path / "new.pt", flow, ISING4, TINY)
    data = read_checkpoint(path)
    assert data["format_version"] == 2 and data["theory"]["beta"] == 0.5
    old = dict(data)
    old["format_version"] = 1
    old["theory"] = {
        "L": 4,
        "parametrization": "ising",
        "couplings": {"beta": 0.5, "lam": 0.5},
        "hopping_form": data["theory"]["hopping_form"],
    }
    torch.save(old, tmp_path / "old.pt")
    loaded = load_flow(tmp_path / "old.pt", ISING4, flow_config=TINY)
    z = torch.randn(3, 4, 4)
    assert torch.equal(loaded(z)[0], flow(z)[0])
    with pytest.raises(CheckpointError, match="trained for ising"):
        load_flow(tmp_path / "old.pt", Phi4Theory.create(4, "ising", beta=0.6, lam=0.5))


# ---------------------------------------------------------------------- warm starts
def test_dense_family_cannot_warm_start_across_L(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "d.pt", build_flow(ISING4, CouplingFlowSettings()), ISING4)
    with pytest.raises(CheckpointError, match=r"parameter \S+ has shape") as info:
        init_from_checkpoint(build_flow(ISING6, CouplingFlowSettings()), path)
    assert "\n" not in str(info.value) and "L = 4" in str(info.value)


def test_conv_family_warm_starts_across_L_and_trains(tmp_path, capsys) -> None:
    from lattice_samplers.cli import main

    small = build_flow(ISING4, CONV, seed=3)
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.05)
    path = save_checkpoint(tmp_path / "c.pt", small, ISING4, CONV)
    big = init_from_checkpoint(build_flow(ISING6, CONV, seed=0), path)
    for (n, a), (_, b) in zip(small.state_dict().items(), big.state_dict().items()):
        assert torch.equal(a, b), n
    # other settings that change the function class are refused
    other = CouplingFlowSettings(n_layers=2, conditioner="conv", hidden=(4,), activation="softsign")
    with pytest.raises(CheckpointError, match="activation"):
        init_from_checkpoint(build_flow(ISING6, other), path)
    # the command
    cfg = tmp_path / "six.toml"
    text = CONFIG.format(n_steps=3, checkpoint_every=500)
    cfg.write_text(
        text.replace("L = 4", "L = 6").replace(
            "hidden = [16]", 'conditioner = "conv"\nhidden = [4]'
        )
    )
    out = tmp_path / "six"
    args = ["train", str(cfg), "--out", str(out), "--no-progress", "--init-from", str(path)]
    assert main([*args, "--json"]) == 0
    assert '"init_from"' in capsys.readouterr().out
    dense = save_checkpoint(tmp_path / "d.pt", build_flow(ISING4, TINY), ISING4, TINY)
    args = ["train", str(cfg), "--out", str(tmp_path / "x"), "--init-from", str(dense)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot warm-start" in err and len(err.splitlines()) == 1, err


def test_warm_start_from_the_other_family_names_the_family(tmp_path) -> None:
    cnf = CNFSettings(cnf_frequencies=1, cnf_time_basis=1, kernel_radius=1)
    path = save_checkpoint(tmp_path / "cnf.pt", build_flow(ISING4, cnf), ISING4, cnf)
    with pytest.raises(CheckpointError, match="it is a cnf flow, this is a coupling flow") as info:
        init_from_checkpoint(build_flow(ISING4, TINY), path)
    assert "activation" not in str(info.value)
    dense = save_checkpoint(tmp_path / "d.pt", build_flow(ISING4, TINY), ISING4, TINY)
    with pytest.raises(CheckpointError, match="it is a coupling flow, this is a cnf flow"):
        init_from_checkpoint(build_flow(ISING4, cnf), dense)


def test_curriculum_L4_to_L6_counts_every_stage(tmp_path) -> None:
    res = train_curriculum(
        [ISING4, ISING6], CONV, _quick(n_steps=5, eval_every=5), out_dir=tmp_path / "cur"
    )
    assert [s.theory.L for s in res.stages] == [4, 6] and res.flow.L == 6
    assert res.train_seconds == pytest.approx(sum(s.result.train_seconds for s in res.stages))
    assert all(s.train_seconds > 0 for s in res.stages) and res.n_steps == 10
    assert (tmp_path / "cur" / "stage1_L6" / "checkpoint.pt").is_file()
    with pytest.raises(CheckpointError, match="cannot warm-start"):
        train_curriculum([ISING4, ISING6], TINY, _quick(n_steps=2))


# ---------------------------------------------------------------------- the loop
def _python_imh(log_w: np.ndarray, rng: np.random.Generator) -> float:
    """The Python accept loop that used to live in flows/train.py (reference)."""
    n = log_w.shape[0]
    log_u = np.log(rng.random(n - 1)).tolist()
    lw = log_w.tolist()
    finite = np.isfinite(log_w).tolist()
    cur = lw[0] if finite[0] else -math.inf
    accepted = 0
    for i in range(1, n):
        if finite[i] and log_u[i - 1] < lw[i] - cur:
            cur = lw[i]
            accepted += 1
    return accepted / (n - 1)


def test_imh_acceptance_equals_the_python_reference() -> None:
    rng = np.random.default_rng(0)
    for trial in range(20):
        lw = rng.normal(0, 1 + trial / 5, size=300)
        lw[rng.random(300) < 0.05] = np.nan
        lw[rng.random(300) < 0.02] = -np.inf
        if trial % 3 == 0:
            lw[0] = np.nan
        a = imh_acceptance(lw, np.random.default_rng(trial))
        b = _python_imh(lw, np.random.default_rng(trial))
        assert a == b


def test_fit_returns_flow_and_history_and_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    flow = build_flow(ISING4, TINY, seed=1)
    gen = torch.Generator().manual_seed(7)
    trained, history = fit(flow, TorchAction(ISING4), _quick(n_steps=4, eval_every=2), gen)
    assert trained is flow and history["step"] == [1, 2, 3, 4]
    assert list(tmp_path.iterdir()) == []


def test_fit_raises_the_nonfinite_loss_with_its_step(monkeypatch) -> None:
    from lattice_samplers.flows.train import NonFiniteLossError

    calls = {"n": 0}
    original = TorchAction.__call__

    def poisoned(self, phi):
        calls["n"] += 1
        s = original(self, phi)
        return s * float("inf") * 0 if calls["n"] == 3 else s

    monkeypatch.setattr(TorchAction, "__call__", poisoned)
    flow = build_flow(ISING4, TINY, seed=1)
    with pytest.raises(NonFiniteLossError, match="step 3") as info:
        fit(flow, TorchAction(ISING4), _quick(n_steps=5, eval_every=100, max_rollbacks=0))
    assert info.value.step == 3 and "\n" not in str(info.value)
