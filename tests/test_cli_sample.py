"""``lattice-samplers sample``: JSON and table output, results file, bad input, Ctrl-C/resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from lattice_samplers.cli import main
from lattice_samplers.driver.results_file import read_results

CONFIG = """
[theory]
L = 4
parametrization = "ising"
beta = 0.5
lam = 0.5

[sampler]
kind = "{kind}"

[run]
n_therm = 50
n_steps = 200
n_chains = 2
seed = 3
"""


def write_config(tmp_path: Path, kind: str = "hmc", text: str | None = None) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(kind=kind) if text is None else text)
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sample", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", ["metropolis", "hmc", "cluster"])
def test_json_output(kind: str, tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(capsys, str(write_config(tmp_path, kind)), "--json", "--no-progress")
    assert code == 0, err
    data = json.loads(out)
    assert {
        "sampler",
        "L",
        "n_steps",
        "acceptance",
        "wall_time_s",
        "settings",
        "work",
        "observables",
    } <= data.keys()
    assert data["sampler"] == kind and data["L"] == 4 and data["n_steps"] == 200
    for name in ("magnetization", "abs_magnetization", "two_point_susceptibility"):
        assert set(data["observables"][name]) >= {"mean", "err", "tau_int", "tau_int_err", "ess"}
    for name in ("action_density", "phi2"):
        assert data["observables"][name]["err"] > 0
    assert data["work"]["steps"] == 400
    assert 0.3 < data["acceptance"] <= 1.0


def test_table_output_and_overrides(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    code, out, err = run_cli(
        capsys, str(config), "--set", "sampler.integrator=omelyan", "--set", "run.n_steps=100"
    )
    assert code == 0, err
    assert "hmc on L=4 ising(beta=0.5, lam=0.5): 2 chains x 100 steps" in out
    assert "integrator=omelyan" in out
    assert "abs_magnetization" in out and "tau_int" in out


def test_results_file(tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "run.nc"
    code, out, err = run_cli(
        capsys, str(write_config(tmp_path, "cluster")), "--out", str(out_file), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["out"] == str(out_file)
    result = read_results(out_file)
    assert result.sampler == "cluster" and result.n_steps == 200
    assert result.config["run"]["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "run.nc"]


BAD_INPUT = [
    ("--set", "sampler.nonsense=1", "unknown key"),
    ("--set", "run.n_step=10", "unknown key"),
    ("--set", "run.n_steps='many'", "n_steps must be int"),
    ("--set", "sampler.n_leapfrog=2.5", "n_leapfrog must be int"),
    ("--set", "sampler.step_size=0", "step_size must be a positive"),
    ("--set", "sampler.step_size=-0.1", "step_size must be a positive"),
    ("--set", "run.n_steps=0", "n_steps must be a positive"),
    ("--set", "run.n_therm=-1", "n_therm must be"),
    ("--set", "run.thin=3", "multiple of thin"),
    ("--set", "run.workers=-1", "workers must be an integer >= 0"),
    ("--set", "sampler.kind=gibbs", "unknown kind"),
    ("--set", "sampler.integrator=euler", "integrator"),
    ("--set", "output.dir=x", "unknown config section"),
    ("--set", "theory.parametrization=albergo", "missing m2"),
]


@pytest.mark.parametrize(("flag", "value", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_writes_nothing(
    flag: str, value: str, message: str, tmp_path: Path, capsys
) -> None:
    out_file = tmp_path / "run.nc"
    code, out, err = run_cli(
        capsys, str(write_config(tmp_path)), flag, value, "--out", str(out_file)
    )
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not out_file.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_missing_couplings_and_files(tmp_path: Path, capsys) -> None:
    text = CONFIG.format(kind="hmc").replace("lam = 0.5\n", "")
    code, _, err = run_cli(capsys, str(write_config(tmp_path, text=text)))
    assert code == 2 and "missing lam" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, str(tmp_path / "nope.toml"))
    assert code == 2 and "not found" in err
    under_a_file = tmp_path / "config.toml" / "dir" / "x.nc"
    code, _, err = run_cli(capsys, str(write_config(tmp_path)), "--out", str(under_a_file))
    assert code == 2 and "cannot create" in err
    nested = tmp_path / "new" / "dir" / "x.nc"  # a missing folder is made, as a user expects
    code, _, err = run_cli(
        capsys, str(write_config(tmp_path)), "--out", str(nested), "--set", "run.n_steps=100"
    )
    assert code == 0 and nested.is_file()
    code, _, err = run_cli(capsys, str(write_config(tmp_path)), "--resume")
    assert code == 2 and "--resume" in err


def test_ctrl_c_exits_nonzero_and_resume_completes(tmp_path: Path, capsys, monkeypatch) -> None:
    config = str(write_config(tmp_path, "metropolis"))
    straight = tmp_path / "straight.nc"
    assert run_cli(capsys, config, "--out", str(straight), "--set", "run.block_size=20")[0] == 0

    from lattice_samplers.samplers.metropolis import MetropolisSampler

    real_run_block = MetropolisSampler.run_block
    calls = {"n": 0}

    def run_block_then_ctrl_c(self, *args, **kwargs):
        real_run_block(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 60:  # a real SIGINT in the middle of the run
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(MetropolisSampler, "run_block", run_block_then_ctrl_c)
    out_file = tmp_path / "run.nc"
    argv = [config, "--out", str(out_file), "--set", "run.block_size=20"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 130
    assert "interrupted" in err and "--resume" in err
    assert not out_file.exists()
    assert (tmp_path / "run.nc.ckpt").is_file()

    monkeypatch.setattr(MetropolisSampler, "run_block", real_run_block)
    code, out, err = run_cli(capsys, *argv, "--resume")
    assert code == 0, err
    assert not (tmp_path / "run.nc.ckpt").exists()
    a, b = read_results(straight), read_results(out_file)
    for name in a.observables:
        assert (a.observables[name] == b.observables[name]).all(), name
