"""`compare` end to end on a tiny config, the consistency check and bad input."""

from __future__ import annotations

import csv
import json
import math

import pytest

from lattice_samplers.cli import main
from lattice_samplers.config import ConfigError
from lattice_samplers.specs import compare_spec as plan_comparison
from lattice_samplers.workflows.compare import SamplerRun, _consistency

TINY = [
    "--set", "theory.L=4",
    "--set", "run.n_steps=1000",
    "--set", "run.n_therm=100",
    "--set", "run.n_chains=2",
    "--set", "train.n_steps=20",
    "--set", "train.batch_size=128",
    "--set", "train.eval_batch_size=256",
    "--set", "flow_sampler.batch_size=512",
    "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, object]:
    out = tmp_path_factory.mktemp("compare") / "run"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["compare", *TINY, "--out", str(out), "--json"]) == 0
    return json.loads(buf.getvalue()), out


def test_json_shape(tiny_run: tuple[dict, object]) -> None:
    summary, _ = tiny_run
    assert summary["samplers"]["flow"]["settings"]["batch_size"] == 512  # [flow_sampler]
    assert summary["theory"]["L"] == 4
    assert set(summary["samplers"]) == {"metropolis", "hmc", "cluster", "flow"}
    for name, s in summary["samplers"].items():
        for key in ("acceptance", "wall_time_s", "settings", "work", "observables"):
            assert key in s, (name, key)
        for obs in ("magnetization", "abs_magnetization", "two_point_susceptibility"):
            o = s["observables"][obs]
            assert set(o) >= {"mean", "err", "tau_int", "tau_int_err", "ess"}
            assert s["cost_per_ess_s"][obs] is None or s["cost_per_ess_s"][obs] > 0
        assert (
            s["cost_per_ess_with_training_s"]["abs_magnetization"]
            >= (s["cost_per_ess_s"]["abs_magnetization"])
        )
    flow = summary["samplers"]["flow"]
    assert flow["training_s"] > 0 and flow["work"]["flow_passes"] == 2 * 1000
    assert {"ess_kish", "longest_rejection_run", "tau_int_accept", "nonfinite_fraction"} <= set(
        flow["diagnostics"]
    )
    assert set(summary["break_even"]["abs_magnetization"]) == {"metropolis", "hmc", "cluster"}


def test_files_written(tiny_run: tuple[dict, object]) -> None:
    _, out = tiny_run
    for name in ("metropolis", "hmc", "cluster", "flow"):
        assert (out / f"{name}.nc").is_file()
    for name in ("summary.json", "summary.csv", "autocorrelation.png", "histories.png"):
        assert (out / name).is_file()
    assert (out / "cost_per_ess.png").stat().st_size > 1000
    assert (out / "flow" / "checkpoint.pt").is_file()
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["sampler"] for r in rows} == {"metropolis", "hmc", "cluster", "flow"}


def test_table_output(tmp_path, capsys: pytest.CaptureFixture) -> None:
    args = [*TINY, "--set", 'compare.samplers=["hmc", "cluster"]']
    assert main(["compare", *args, "--out", str(tmp_path / "t")]) == 0
    text = capsys.readouterr().out
    rows = [line.split()[0] for line in text.splitlines() if line.strip()]
    assert "tau_int:" in rows and "hmc" in rows and "cluster" in rows and "flow" not in rows
    # a second run into the same folder is refused instead of overwriting
    assert main(["compare", *args, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "holds a comparison" in err and "hmc.nc" in err and "summary.json" in err


def test_flow_checkpoint_for_another_lattice_is_used_with_a_note(
    tiny_run: tuple[dict, object], tmp_path, capsys: pytest.CaptureFixture
) -> None:
    """A cnf flow trained at L = 4 proposes at L = 6 (exact for any proposal), and says so."""
    _, out = tiny_run
    args = [*TINY, "--set", "theory.L=6", "--set", 'compare.samplers=["flow"]']
    args += ["--set", "run.n_steps=100", "--set", "run.n_therm=10", "--flow", str(out / "flow")]
    rc = main(["compare", *args, "--out", str(tmp_path / "x"), "--json"])
    captured = capsys.readouterr()
    assert rc == 0
    note = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "trained for L = 4" in note[0], captured.err
    summary = json.loads(captured.out)
    assert summary["training"]["trained_for"]["L"] == 4
    # another parametrization is refused in one line (the field's normalization differs)
    bad = ["--set", 'theory.parametrization="albergo"', "--set", "theory.m2=-4.0"]
    rc = main(["compare", *args, *bad, "--set", "theory.lam=8.0", "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "parametrization" in err[0], err
    assert not (tmp_path / "y").exists()


def test_flow_section_that_disagrees_with_the_checkpoint_is_refused(
    tiny_run: tuple[dict, object], tmp_path, capsys: pytest.CaptureFixture
) -> None:
    """--flow with a [flow] of another family never runs one flow and records the other."""
    import torch

    from lattice_samplers.flows import CouplingFlowSettings, build_flow, save_checkpoint
    from lattice_samplers.theory import Phi4Theory

    theory = Phi4Theory.from_dict(tiny_run[0]["theory"])
    dense = CouplingFlowSettings(n_layers=2, hidden=(8,))
    ckpt = save_checkpoint(tmp_path / "dense.pt", build_flow(theory, dense), theory, dense)
    torch.save({**torch.load(ckpt, weights_only=True), "train": {"train_s": 1.0}}, ckpt)
    args = [*TINY, "--set", 'compare.samplers=["flow"]', "--flow", str(ckpt)]
    rc = main(["compare", *args, "--set", 'flow.family="cnf"', "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "holds a coupling flow, not the cnf flow configured" in err[0]
    assert not (tmp_path / "x").exists()
    # without [flow] the checkpoint's own family runs and is what the summary records
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        args += ["--set", "run.n_steps=100", "--set", "run.n_therm=10"]
        assert main(["compare", *args, "--out", str(tmp_path / "y"), "--json"]) == 0
    summary = json.loads(buf.getvalue())
    assert summary["training"]["family"] == "coupling"
    assert "flow" not in summary["config"]


def test_flow_checkpoint_is_reused(tiny_run: tuple[dict, object], tmp_path) -> None:
    _, out = tiny_run
    plan = plan_comparison(
        {"theory": {"L": 4}, "compare": {"samplers": ["flow"]}}, flow_checkpoint=out / "flow"
    )
    assert plan.flow_checkpoint is not None
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        args = [*TINY, "--set", 'compare.samplers=["flow"]', "--flow", str(out / "flow")]
        assert main(["compare", *args, "--out", str(tmp_path / "reuse"), "--json"]) == 0
    summary = json.loads(buf.getvalue())
    trained = json.loads((out / "summary.json").read_text())
    # the loaded flow still carries its training cost
    assert summary["training"]["train_seconds"] == trained["training"]["train_seconds"]
    assert summary["samplers"]["flow"]["training_s"] > 0
    assert summary["training"]["sampling_ode_steps"] == 10  # the cnf default, as trained
    assert summary["training"]["family"] == "cnf"


def test_flow_can_be_sampled_with_more_ode_steps(tiny_run: tuple[dict, object], tmp_path) -> None:
    _, out = tiny_run
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        args = [*TINY, "--set", 'compare.samplers=["flow"]', "--set", "compare.flow_ode_steps=20"]
        args += ["--flow", str(out / "flow"), "--set", "run.n_steps=200"]
        assert main(["compare", *args, "--out", str(tmp_path / "ode20"), "--json"]) == 0
    assert json.loads(buf.getvalue())["training"]["sampling_ode_steps"] == 20


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"bogus": {}}, "unknown config section"),
        ({"run": {"n_steps": 0}}, "n_steps"),
        ({"hmc": {"step_size": -1.0}}, "step_size"),
        ({"compare": {"samplers": ["hmc", "nuts"]}}, "unknown: nuts"),
        ({"run": {"n_chains": "four"}}, "n_chains"),
        ({"flow": {"family": "coupling", "coupling": "magic"}}, "magic"),
        ({"compare": {"flow_ode_steps": 0}}, "flow_ode_steps"),
        ({"imh": {"batch_size": 512}}, r"^\[imh\] is now \[flow_sampler\]"),
        ({"flow_sampler": {"batch_size": 0}}, r"\[flow_sampler\] batch_size"),
    ],
)
def test_bad_config(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_comparison(config)


def test_partial_theory_is_completed_from_the_default_point() -> None:
    plan = plan_comparison({"theory": {"L": 12, "beta": 0.616}})
    assert plan.theory.couplings == {"beta": 0.616, "lam": 0.5} and plan.theory.L == 12
    # another parametrization is never mixed with the default's couplings
    with pytest.raises(ConfigError, match="missing lam"):
        plan_comparison({"theory": {"parametrization": "albergo", "m2": -4.0}})


def _fake(mean: float, err: float) -> SamplerRun:
    obs = {"x": {"mean": mean, "err": err, "tau_int": 1.0, "tau_int_err": 0.1, "ess": 100.0}}
    return SamplerRun("s", None, obs, {})  # type: ignore[arg-type]


def test_consistency_flags_a_disagreeing_sampler() -> None:
    runs = {"a": _fake(1.00, 0.01), "b": _fake(1.01, 0.01), "c": _fake(1.20, 0.01)}
    cons = _consistency(runs, k=4.0)["x"]
    assert cons["a"]["consistent"] and cons["b"]["consistent"]
    assert cons["c"]["consistent"] is False and cons["c"]["pull"] > 4
    # and the same check passes when c agrees
    runs["c"] = _fake(0.99, 0.01)
    assert all(v["consistent"] for v in _consistency(runs, k=4.0)["x"].values())


def test_consistency_without_errors_is_undecided() -> None:
    runs = {"a": _fake(1.0, math.nan), "b": _fake(1.0, 0.01)}
    assert _consistency(runs, k=4.0)["x"]["a"]["consistent"] is None


def test_every_summary_has_both_estimators_and_r_hat(tiny_run: tuple[dict, object]) -> None:
    summary, _ = tiny_run
    for name, s in summary["samplers"].items():
        for obs, o in s["observables"].items():
            missing = {"tau_int_arviz", "tau_int_gamma", "r_hat", "estimator"} - o.keys()
            assert not missing, (name, obs, missing)
            assert o["estimator"] == "arviz"


def test_a_diverging_flow_is_reported_and_the_others_still_summarized(tmp_path, capsys) -> None:
    """Issue 14.6: lr = 1 makes training diverge within a few steps.

    With the divergence guard off (``max_rollbacks = 0``): the guard would roll such a run
    back and return its best flow (tests/test_train_guard.py).
    """
    argv = [*TINY, "--set", "theory.L=6", "--set", "theory.beta=0.537", "--set", "train.lr=1.0"]
    argv += ["--set", "train.scheduler=constant", "--set", "train.n_steps=200"]
    argv += ["--set", "train.max_rollbacks=0"]
    code = main(["compare", *argv, "--out", str(tmp_path / "c"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "flow training failed" in err and "skipped" in err
    summary = json.loads(out)
    assert set(summary["samplers"]) == {"metropolis", "hmc", "cluster"}
    assert summary["training"]["stop_reason"] == "nonfinite_loss"
    assert (tmp_path / "c" / "summary.json").is_file()
