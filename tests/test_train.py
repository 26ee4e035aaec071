"""Reverse-KL training: metrics, stop rules, reproducibility, resume, checkpoints, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lattice_samplers.config import ConfigError, section_to_dataclass  # noqa: E402
from lattice_samplers.flows import (  # noqa: E402
    CouplingFlowSettings,
    TrainSettings,
    ess_kish,
    imh_acceptance,
    load_flow,
    read_checkpoint,
)
from lattice_samplers.flows.action import TorchAction  # noqa: E402
from lattice_samplers.theory import Phi4Theory  # noqa: E402
from lattice_samplers.workflows.train.history_files import read_history_csv  # noqa: E402
from lattice_samplers.workflows.train.session import train_flow  # noqa: E402

FREE4 = Phi4Theory.create(4, "standard", m2=1.0, g=0.0)
ISING4 = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
TINY = CouplingFlowSettings(n_layers=2, hidden=(16,))
TIME_COLUMNS = ("train_s", "wall_s")


def _quick(**kw) -> TrainSettings:
    base = dict(n_steps=20, batch_size=64, eval_every=10, eval_batch_size=256, lr=5e-3)
    base.update(kw)
    return TrainSettings(**base)


def _same_history(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if k not in TIME_COLUMNS:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _same_params(f1, f2) -> None:
    for (n1, p1), (n2, p2) in zip(f1.state_dict().items(), f2.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1


# ---------------------------------------------------------------------- metrics
def test_imh_acceptance_and_ess_kish_limits() -> None:
    rng = np.random.default_rng(0)
    assert imh_acceptance(np.full(100, -3.0), rng) == 1.0
    assert ess_kish(np.full(100, 7.0)) == pytest.approx(1.0)
    one_big = np.zeros(100)
    one_big[0] = 50.0
    assert imh_acceptance(one_big, rng) == 0.0  # starts on the heavy sample, never leaves
    assert ess_kish(one_big) == pytest.approx(0.01)
    lw = np.zeros(11)
    lw[3] = np.nan
    lw[7] = -np.inf
    assert imh_acceptance(lw, rng) == pytest.approx(8 / 10)  # non-finite weights rejected


def test_imh_acceptance_matches_gaussian_log_weight_formula() -> None:
    # log w ~ N(mu, s^2): acceptance = erfc(s / 2), ess_kish -> exp(-s^2) (PHYSICS.md 5)
    rng = np.random.default_rng(1)
    s = 0.8
    lw = rng.normal(-4.0, s, size=200_000)
    acc = imh_acceptance(lw, rng)
    assert abs(acc - math.erfc(s / 2)) < 0.01
    assert abs(ess_kish(lw) - math.exp(-(s**2))) < 0.02
    # negative control: the wrong width is detected
    assert abs(acc - math.erfc(1.2 * s / 2)) > 0.03


# ---------------------------------------------------------------------- training quality
def test_free_theory_with_free_field_base_reaches_target_fast() -> None:
    cfg = CouplingFlowSettings(n_layers=2, hidden=(16,), free_field_base=True)
    flow, res = train_flow(FREE4, cfg, _quick(n_steps=200, target_acceptance=0.9), progress=False)
    assert res.stop_reason == "target"
    assert res.final_acceptance > 0.9 and res.steps_to_target == res.n_steps
    assert 0 < res.seconds_to_target <= res.train_seconds
    assert res.history["eval_acceptance"][-1] == res.final_acceptance


def test_free_theory_without_base_reaches_090() -> None:
    _, res = train_flow(
        FREE4,
        CouplingFlowSettings(n_layers=2, hidden=(32,)),
        _quick(n_steps=300, batch_size=256, lr=2e-2, eval_every=50, target_acceptance=0.9),
        progress=False,
    )
    assert res.final_acceptance > 0.9, res.summary()


@pytest.mark.slow
def test_paper_family_L6_reaches_040_within_2000_steps() -> None:
    # arXiv:2112.15532's family at the L = 6 point of its scaling study (xi ~ L/4)
    theory = Phi4Theory.create(6, "ising", beta=0.537, lam=0.5)
    cfg = CouplingFlowSettings()  # 8 dense affine couplings, hidden 2 L^2 = 72, Z2, rescaling
    assert cfg.resolve(theory)["hidden"] == [72]
    _, res = train_flow(
        theory,
        cfg,
        TrainSettings(n_steps=2000, batch_size=1000, target_acceptance=0.4, seed=0),
        progress=False,
    )
    print(res.summary())
    assert res.steps_to_target is not None and res.steps_to_target <= 2000


# ---------------------------------------------------------------------- reproducibility, resume
def test_one_seed_gives_identical_history_and_weights() -> None:
    f1, r1 = train_flow(ISING4, TINY, _quick(seed=3), progress=False)
    f2, r2 = train_flow(ISING4, TINY, _quick(seed=3), progress=False)
    _same_history(r1.history, r2.history)
    _same_params(f1, f2)
    _, r3 = train_flow(ISING4, TINY, _quick(seed=4), progress=False)
    assert not np.array_equal(r1.history["loss"], r3.history["loss"])


def test_resume_continues_bit_for_bit(tmp_path) -> None:
    cfg = _quick(n_steps=40, checkpoint_every=10, scheduler="cosine")
    straight, rs = train_flow(ISING4, TINY, cfg, out_dir=tmp_path / "a", progress=False)
    # pause at a step that is not an eval step: an extra evaluation must not shift anything
    _, r1 = train_flow(ISING4, TINY, cfg, out_dir=tmp_path / "b", progress=False, until_step=17)
    assert r1.stop_reason == "until_step" and r1.n_steps == 17
    assert read_checkpoint(tmp_path / "b" / "checkpoint.pt")["train"]["step"] == 17
    resumed, r2 = train_flow(ISING4, TINY, cfg, out_dir=tmp_path / "b", progress=False, resume=True)
    assert r2.n_steps == 40 and len(r2.history["step"]) == 40
    h2 = {k: v.copy() for k, v in r2.history.items()}
    for k in ("eval_acceptance", "eval_ess_kish", "eval_var_log_weight"):
        h2[k][16] = rs.history[k][16]  # the pause's own extra evaluation at step 17
    _same_history(rs.history, h2)
    _same_params(straight, resumed)
    on_disk = read_history_csv(tmp_path / "b" / "history.csv")
    np.testing.assert_array_equal(on_disk["loss"], r2.history["loss"])
    assert r2.train_seconds > r1.train_seconds  # cumulative over the resume


def test_nonfinite_loss_with_guard_off_stops_and_keeps_last_good_checkpoint(
    tmp_path, monkeypatch
) -> None:
    calls = {"n": 0}
    original = TorchAction.__call__

    def poisoned(self, phi):
        calls["n"] += 1
        s = original(self, phi)
        return s * float("nan") if calls["n"] == 8 else s

    monkeypatch.setattr(TorchAction, "__call__", poisoned)
    out = tmp_path / "run"
    cfg = _quick(n_steps=20, checkpoint_every=5, max_rollbacks=0)
    flow, res = train_flow(ISING4, TINY, cfg, out_dir=out, progress=False)
    assert res.stop_reason == "nonfinite_loss"
    assert "step 8" in res.message and "last good checkpoint (step 5)" in res.message
    assert "\n" not in res.message
    data = read_checkpoint(out / "checkpoint.pt")
    assert data["train"]["step"] == 5
    for k, v in flow.state_dict().items():
        assert torch.equal(v, data["model"][k])  # the returned model is the good one


def test_time_budget_stops_and_final_model_is_evaluated() -> None:
    _, res = train_flow(
        ISING4, TINY, _quick(n_steps=10**6, time_budget_s=0.3, eval_every=10**5), progress=False
    )
    assert res.stop_reason == "time_budget" and res.n_steps < 10**6
    assert res.train_seconds >= 0.3 and math.isfinite(res.final_acceptance)


def test_bad_train_config_is_one_line_error() -> None:
    for data, match in [
        ({"lr": -1.0}, "lr must be"),
        ({"lr_rate": 1.0}, "unknown key"),
        ({"n_steps": "many"}, "must be int"),
        ({"target_acceptance": 1.5}, "target_acceptance"),
        ({"scheduler": "linear"}, "unknown scheduler"),
    ]:
        with pytest.raises(ConfigError, match=match) as info:
            section_to_dataclass(TrainSettings, data, "train")
        assert "\n" not in str(info.value)


def test_output_folder_is_never_clobbered(tmp_path) -> None:
    out = tmp_path / "run"
    train_flow(ISING4, TINY, _quick(n_steps=5), out_dir=out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match="already exists; resume it"):
        train_flow(ISING4, TINY, _quick(n_steps=5), out_dir=out, progress=False)
    other = CouplingFlowSettings(n_layers=4, hidden=(16,))
    with pytest.raises(ValueError, match="different flow architecture.*refusing to overwrite"):
        train_flow(ISING4, other, _quick(n_steps=5), out_dir=out, progress=False)
    with pytest.raises(ValueError, match="different flow architecture"):
        train_flow(ISING4, other, _quick(n_steps=9), out_dir=out, progress=False, resume=True)
    six = Phi4Theory.create(6, "ising", beta=0.5, lam=0.5)
    with pytest.raises(ValueError, match="lattice size L = 4, not L = 6"):
        train_flow(six, TINY, _quick(n_steps=9), out_dir=out, progress=False, resume=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(ValueError, match="nothing to resume"):
        train_flow(ISING4, TINY, _quick(), out_dir=tmp_path / "none", progress=False, resume=True)
    assert not (tmp_path / "none").exists()
    # the trained flow loads for its theory
    assert load_flow(out, ISING4).L == 4


# ---------------------------------------------------------------------- the command
def _write(tmp_path, text: str):
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return str(p)


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
n_steps = 20
batch_size = 64
eval_every = 10
eval_batch_size = 256
target_acceptance = 0.99
"""


def test_cli_train_end_to_end(tmp_path, capsys) -> None:
    from lattice_samplers.cli import main

    out = tmp_path / "run"
    cfg = _write(tmp_path, CONFIG)
    assert main(["train", cfg, "--out", str(out), "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("final_acceptance", "ess_kish", "steps_to_target", "seconds_to_target"):
        assert key in summary
    assert summary["n_parameters"] > 0 and summary["n_steps"] == 20
    for name in ("checkpoint.pt", "history.csv", "training.png", "summary.json"):
        assert (out / name).is_file(), name
    assert len(read_history_csv(out / "history.csv")["step"]) == 20
    # refuses to overwrite; resumes with more steps
    before = (out / "checkpoint.pt").read_bytes()
    assert main(["train", cfg, "--out", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before
    args = ["train", cfg, "--out", str(out), "--no-progress", "--resume", "--json"]
    assert main([*args, "--set", "train.n_steps=30"]) == 2  # the cosine schedule would change
    err = capsys.readouterr().err.strip()
    assert "n_steps: 20 -> 30" in err and len(err.splitlines()) == 1, err
    assert (out / "checkpoint.pt").read_bytes() == before
    # a constant learning rate may be extended
    out2 = tmp_path / "const"
    const = [
        "train",
        cfg,
        "--out",
        str(out2),
        "--no-progress",
        "--set",
        "train.scheduler='constant'",
    ]
    assert main(const) == 0
    capsys.readouterr()
    assert main([*const, "--resume", "--json", "--set", "train.n_steps=30"]) == 0
    assert json.loads(capsys.readouterr().out)["n_steps"] == 30


@pytest.mark.parametrize(
    "override, match",
    [
        ("theory.L=5", "even lattice extent"),
        ("flow.layers=['affine','glow']", "unknown coupling layer kind 'glow'"),
        ("flow.activation='relu'", "odd activation"),
        ("train.lr=0", "lr must be"),
        ("train.device='tpu'", "device"),
        ("sampler.kind='hmc'", "unknown config section"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, override, match) -> None:
    from lattice_samplers.cli import main

    out = tmp_path / "run"
    cfg = _write(tmp_path, CONFIG)
    assert main(["train", cfg, "--out", str(out), "--no-progress", "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parents[1] / "examples").glob("train_*.toml")),
    ids=lambda p: p.name,
)
def test_example_configs_are_valid(path) -> None:
    from lattice_samplers.config import load_config
    from lattice_samplers.specs import train_spec

    spec = train_spec(load_config(path))
    assert spec.flow.resolve(spec.theory)["L"] == spec.theory.L


def test_default_threads_follow_omp_num_threads(monkeypatch) -> None:
    """A scan worker told to stay single-threaded (OMP_NUM_THREADS=1) trains on one thread."""
    import torch

    from lattice_samplers.flows.train import physical_cores, set_torch_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_torch_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        # without it, the thread policy: every physical core when no other work is running
        from lattice_samplers.flows.train import config

        monkeypatch.setattr(config, "busy_cpus", lambda interval_s=0.05: 0.0)
        assert set_torch_threads() == physical_cores()
    finally:
        torch.set_num_threads(before)
