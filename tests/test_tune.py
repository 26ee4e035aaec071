"""Tests of beta tuning to fixed xi/L and of the tuning table lookup."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lattice_samplers.beta_table import (
    TABLE_COLUMNS,
    TABLE_ENV,
    load_table,
    resolve_tuned,
    tuned_beta,
)
from lattice_samplers.cli import main
from lattice_samplers.config import ConfigError
from lattice_samplers.jobs import JOBS
from lattice_samplers.scan import plan_scan
from lattice_samplers.workflows.tune import (
    PAPER_BETA,
    interpolate_paper_beta,
    result_from_dict,
    tune_beta,
    write_table,
)


def _fake_measure(beta_true: float, noise: float = 0.002):
    """A curved, increasing xi/L(beta) through 0.25 at ``beta_true`` with seeded noise."""

    def measure(L, beta, lam, n_steps, n_therm, seed):  # noqa: ANN001, ANN202
        d = beta - beta_true
        value = 0.25 * math.exp(8.0 * d + 10.0 * d * d)
        rng = np.random.default_rng(seed)
        return value + noise * rng.standard_normal(), noise

    return measure


@pytest.mark.parametrize("beta0", [0.40, 0.55, 0.62, 0.70])
def test_fit_logic_finds_known_beta(beta0: float) -> None:
    res = tune_beta(8, 0.5, beta0=beta0, step=0.01, measure=_fake_measure(0.6), seed=3)
    assert res.converged
    assert abs(res.beta - 0.6) < 4 * res.beta_err + 1e-3
    assert 0 < res.beta_err < 0.005
    fit = [res.points[i] for i in res.fit_points]
    # the final fit is local and brackets the target
    assert min(p.xi_over_L for p in fit) < 0.25 < max(p.xi_over_L for p in fit)
    assert all(abs(p.beta - res.beta) < 0.03 for p in fit)
    # deterministic: same seed, same points
    again = tune_beta(8, 0.5, beta0=beta0, step=0.01, measure=_fake_measure(0.6), seed=3)
    assert again.points == res.points
    assert len({p.seed for p in res.points}) == len(res.points)


def test_no_bracket_is_an_error() -> None:
    def flat(L, beta, lam, n_steps, n_therm, seed):  # noqa: ANN001, ANN202
        return 0.1, 0.01

    with pytest.raises(ValueError, match="no bracket"):
        tune_beta(8, 0.5, measure=flat, max_bracket=4)


def test_tune_brackets_known_beta_on_small_lattice() -> None:
    """Real sampler, L = 6, starting far below the PHYSICS.md value 0.537."""
    res = tune_beta(6, 0.5, beta0=0.45, step=0.02, n_steps=4000, n_therm=500, seed=1)
    pts = sorted(res.points, key=lambda p: p.beta)
    xs = [p.xi_over_L for p in pts]
    # xi/L grows with beta (within 3 sigma between neighbours)
    for a, b in zip(pts, pts[1:]):
        assert b.xi_over_L > a.xi_over_L - 3 * math.hypot(a.xi_over_L_err, b.xi_over_L_err)
    below = [p.beta for p in pts if p.xi_over_L < 0.25]
    above = [p.beta for p in pts if p.xi_over_L >= 0.25]
    lo, hi = max(below), min(above)
    # the solution lies between the bracketing betas, and so does the known value
    assert lo - 3 * res.beta_err < res.beta < hi + 3 * res.beta_err
    assert lo < PAPER_BETA[6] + 0.01 and PAPER_BETA[6] - 0.01 < hi
    assert abs(res.beta - PAPER_BETA[6]) < 4 * res.beta_err + 0.01
    assert xs[0] < 0.25 < xs[-1]
    d = res.to_dict()
    assert json.dumps(result_from_dict(json.loads(json.dumps(d))).to_dict()) == json.dumps(d)


def test_cli_table_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["tune", "--L", "4", "6", "--lam", "0.5", "--n-steps", "2000", "--n-therm", "200"]
    assert main([*argv, "--out", str(tmp_path), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert [r["L"] for r in first["results"]] == [4, 6]
    assert [r["L"] for r in load_table(tmp_path / "beta_tuned.csv")] == [4, 6]
    meta = json.loads((tmp_path / "beta_tuned.json").read_text())["meta"]
    assert meta["command"].startswith("lattice-samplers tune --L 4 6 --lam 0.5")
    tasks = sorted((tmp_path / "scan" / "tasks").glob("*.json"))
    mtimes = [t.stat().st_mtime_ns for t in tasks]
    # a second call finds both tasks done and adds a third L to the same table
    assert main([*argv[:4], "8", *argv[4:], "--out", str(tmp_path), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert [r["L"] for r in second["results"]] == [4, 6, 8]
    assert second["results"][:2] == first["results"]
    assert [t.stat().st_mtime_ns for t in tasks] == mtimes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"L": 2}, "L must be"),
        ({"L": 8.0}, "L must be"),
        ({"lam": 0.0}, "lam must be > 0"),
        ({"xi_over_L": -0.1}, "xi/L"),
        ({"n_steps": 10}, "n_steps"),
        ({"beta0": -1.0}, "beta0"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"L": 8, "lam": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        tune_beta(args.pop("L"), args.pop("lam"), **args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--L", "2", "--lam", "0.5"], "L must be"),
        (["--L", "8", "--lam", "-1"], "lam must be > 0"),
        (["--L", "8", "8", "--lam", "0.5"], "repeat"),
        (["--L", "8", "--lam", "0.5", "--n-steps", "5"], "n_steps"),
        (["--L", "8", "--lam", "0.5", "--sampler", "gibbs"], "unknown sampler"),
    ],
)
def test_cli_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["tune", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_paper_beta_interpolation() -> None:
    assert interpolate_paper_beta(8) == 0.576
    assert interpolate_paper_beta(7) == pytest.approx((0.537 + 0.576) / 2)
    assert interpolate_paper_beta(40) == 0.645  # clamped


# ---------------------------------------------------------------------------- the table
def _table(tmp_path: Path) -> Path:
    results = [
        tune_beta(L, 0.5, beta0=0.55, measure=_fake_measure(0.55 + 0.01 * L), seed=L)
        for L in (6, 8)
    ]
    path = write_table(results, tmp_path, {"command": "test"})
    return path


def test_table_roundtrip_and_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _table(tmp_path)
    with path.open() as f:
        header = next(csv.reader(f))
    assert tuple(header) == TABLE_COLUMNS
    rows = load_table(path)
    assert [r["L"] for r in rows] == [6, 8]
    meta = json.loads((tmp_path / "beta_tuned.json").read_text())
    assert meta["meta"]["command"] == "test" and len(meta["results"]) == 2

    monkeypatch.setenv(TABLE_ENV, str(path))
    beta8 = tuned_beta(8, 0.5)
    assert beta8 == pytest.approx(0.63, abs=0.01)
    cfg = {"theory": {"L": 8, "beta": "tuned", "lam": 0.5}, "run": {"n_steps": 10}}
    out = resolve_tuned(cfg)
    assert out["theory"]["beta"] == beta8 and cfg["theory"]["beta"] == "tuned"
    assert resolve_tuned({"theory": {"L": 8, "beta": 0.5, "lam": 0.5}})["theory"]["beta"] == 0.5

    # scans resolve "tuned" per grid point before validating and hashing
    scan_cfg = {
        "scan": {"job": "sample", "grid": {"theory.L": [6, 8]}},
        "theory": {"L": 6, "beta": "tuned", "lam": 0.5},
        "run": {"n_steps": 100, "n_therm": 10, "n_chains": 1},
    }
    tasks = plan_scan(scan_cfg, JOBS).tasks
    assert [t.config["theory"]["beta"] for t in tasks] == [tuned_beta(6, 0.5), beta8]

    with pytest.raises(ConfigError, match="no tuned beta for L=10"):
        resolve_tuned({"theory": {"L": 10, "beta": "tuned", "lam": 0.5}})
    with pytest.raises(ConfigError, match="no tuned beta"):
        resolve_tuned({"theory": {"L": 8, "beta": "tuned:0.5", "lam": 0.5}})
    with pytest.raises(ConfigError, match="tuned"):
        resolve_tuned({"theory": {"L": 8, "beta": "auto", "lam": 0.5}})
    with pytest.raises(ConfigError, match="ising"):
        resolve_tuned({"theory": {"L": 8, "parametrization": "kappa", "beta": "tuned"}})
    monkeypatch.setenv(TABLE_ENV, str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="tuning table not found"):
        tuned_beta(8, 0.5)


def test_committed_table_covers_the_study() -> None:
    """The packaged table has lam = 0.5, xi = L/4 rows for L = 6, 8, ..., 20 (and may go on:
    L = 32 was added for the flow study)."""
    rows = load_table()
    Ls = sorted(r["L"] for r in rows if r["lam"] == 0.5 and r["xi_over_L_target"] == 0.25)
    assert [L for L in Ls if L <= 20] == list(range(6, 21, 2)) and 32 in Ls
    for r in rows:
        assert r["beta_err"] > 0 and r["converged"]
        assert abs(r["xi_over_L"] - r["xi_over_L_target"]) <= 2.5 * r["xi_over_L_err"]
