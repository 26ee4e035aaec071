"""``train`` with a ``[curriculum]`` section: stages in one command, warm starts, total cost."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from lattice_samplers.beta_table import tuned_beta  # noqa: E402
from lattice_samplers.config import ConfigError  # noqa: E402
from lattice_samplers.flows import read_checkpoint  # noqa: E402
from lattice_samplers.specs import compare_spec, train_spec  # noqa: E402

CONFIG = """
[theory]
L = 6
parametrization = "ising"
beta = 0.5
lam = 0.5

[flow]
family = "cnf"
cnf_frequencies = 2
cnf_time_basis = 2
kernel_radius = 1
ode_steps = 2

[train]
n_steps = 6
batch_size = 32
eval_every = 3
eval_batch_size = 64

[curriculum]
L = [4, 6]
n_steps = [4, 6]
"""


def _config(**theory) -> dict:
    cfg = {
        "theory": {"L": 8, "parametrization": "ising", "beta": "tuned", "lam": 0.5, **theory},
        "flow": {"family": "cnf"},
        "train": {"n_steps": 10},
    }
    return cfg


def test_spec_resolves_tuned_beta_per_stage_and_per_stage_lists() -> None:
    stages = {"L": [6, 8], "time_budget_s": [1.0, 2.0], "lr": [1e-2, 1e-3]}
    cfg = {**_config(), "curriculum": stages}
    spec = train_spec(cfg)
    cur = spec.curriculum
    assert cur is not None and cur.L == (6, 8) and cur.theories[-1] is spec.theory
    assert [t.L for t in cur.theories] == [6, 8]
    assert cur.theories[0].couplings["beta"] == pytest.approx(tuned_beta(6, 0.5))
    assert cur.theories[1].couplings["beta"] == pytest.approx(tuned_beta(8, 0.5))
    assert [t.time_budget_s for t in cur.train] == [1.0, 2.0]
    assert [t.lr for t in cur.train] == [1e-2, 1e-3]
    assert all(t.n_steps == 10 for t in cur.train)
    assert train_spec(_config()).curriculum is None


@pytest.mark.parametrize(
    "section, match",
    [
        ({"L": [6, 12]}, "must end with the final stage"),
        ({"L": [8, 6, 8]}, "increasing list"),
        ({"L": []}, "increasing list"),
        ({"L": [6, 8], "n_steps": [5]}, "one value per stage"),
        ({"L": [6, 8], "depth": [1, 2]}, "unknown key"),
        ({"L": [6, 8], "n_steps": [0, 5]}, "stage 0"),
    ],
)
def test_bad_curriculum_is_one_line_error(section, match) -> None:
    with pytest.raises(ConfigError, match=match):
        train_spec({**_config(), "curriculum": section})


def test_cli_curriculum_trains_every_stage_and_charges_the_total(tmp_path, capsys) -> None:
    from lattice_samplers.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    stages = summary["curriculum"]
    assert [s["L"] for s in stages] == [4, 6] and [s["n_steps"] for s in stages] == [4, 6]
    total = sum(s["train_seconds"] for s in stages)
    assert summary["train_seconds"] == pytest.approx(total)
    assert summary["final_stage_train_seconds"] == pytest.approx(stages[-1]["train_seconds"])
    assert summary["train_seconds"] > summary["final_stage_train_seconds"]
    assert (out / "stages" / "stage0_L4" / "checkpoint.pt").is_file()
    assert not (out / "stages" / "stage1_L6").exists()  # the final stage is the folder itself
    record = read_checkpoint(out)
    assert record["L"] == 6 and record["train"]["train_s"] == pytest.approx(total)
    assert [s["L"] for s in record["train"]["curriculum"]] == [4, 6]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["train_seconds"] == pytest.approx(total)
    assert math.isfinite(summary["final_acceptance"])
    # compare --flow charges the total
    from lattice_samplers.workflows.compare import _train_or_load

    spec = compare_spec(
        {"theory": {"L": 6, "beta": 0.5, "lam": 0.5}, "compare": {"samplers": ["flow"]}},
        flow_checkpoint=out,
    )
    _, training = _train_or_load(spec, None, False)
    assert training["train_seconds"] == pytest.approx(total)
    # the folder is not clobbered; resume is refused
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 2
    assert main(["train", str(cfg), "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "not supported with [curriculum]" in capsys.readouterr().err


def test_scan_job_refuses_curriculum() -> None:
    from lattice_samplers.workflows.train import validate_train

    with pytest.raises(ConfigError, match="curriculum"):
        validate_train({**_config(), "curriculum": {"L": [6, 8]}})
