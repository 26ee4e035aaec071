"""Tests of the scan engine: backends agree, resume, corrupt files, bad input."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from lattice_samplers.cli import main
from lattice_samplers.config import ConfigError
from lattice_samplers.jobs import JOBS
from lattice_samplers.scan import Job, plan_scan, read_task_file, run_scan, task_seed
from lattice_samplers.testing.selftest import selftest_job

SELFTEST = {
    "scan": {
        "job": "selftest",
        "n_seeds": 2,
        "seed": 7,
        "grid": {"selftest.x": [0.0, 10.0]},
    },
    "selftest": {"n": 3},
}


def _results(scan) -> list:
    return [(r.task_id, r.seed, r.result) for r in scan]


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "tasks").glob("*.json")}


def test_plan_order_seeds_and_ids() -> None:
    plan = plan_scan(SELFTEST, JOBS)
    assert len(plan.tasks) == 4
    assert [t.point["selftest.x"] for t in plan.tasks] == [0.0, 0.0, 10.0, 10.0]
    assert [t.replica for t in plan.tasks] == [0, 1, 0, 1]
    assert [t.spawn_key for t in plan.tasks] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # the seed is a hierarchical SeedSequence spawn, written into the job's seed key
    assert plan.tasks[3].seed == task_seed(7, (1, 1))
    assert all(t.config["selftest"]["seed"] == t.seed for t in plan.tasks)
    assert len({t.seed for t in plan.tasks}) == 4
    assert plan.tasks[0].task_id.startswith("x=0.0__seed=0__")
    assert "scan" not in plan.tasks[0].config
    # appending a grid value keeps the existing tasks (ids and seeds) unchanged
    bigger = copy.deepcopy(SELFTEST)
    bigger["scan"]["grid"]["selftest.x"].append(20.0)
    ids = {t.task_id for t in plan.tasks}
    assert ids < {t.task_id for t in plan_scan(bigger, JOBS).tasks}


def test_zip_axis() -> None:
    cfg = {
        "scan": {
            "job": "selftest",
            "zip": {"selftest.x": [1.0, 2.0], "selftest.n": [2, 5]},
            "grid": {"selftest.label": ["a", "b"]},
        }
    }
    tasks = plan_scan(cfg, JOBS).tasks
    assert [(t.config["selftest"]["x"], t.config["selftest"]["n"]) for t in tasks] == [
        (1.0, 2),
        (1.0, 2),
        (2.0, 5),
        (2.0, 5),
    ]


def test_backends_agree(tmp_path: Path) -> None:
    serial = run_scan(SELFTEST, tmp_path / "serial", JOBS, backend="serial", progress=False)
    process = run_scan(
        SELFTEST, tmp_path / "process", JOBS, backend="process", workers=2, progress=False
    )
    dask = run_scan(SELFTEST, tmp_path / "dask", JOBS, backend="dask", workers=2, progress=False)
    assert serial.ok and process.ok and dask.ok
    assert _results(serial) == _results(process) == _results(dask)
    assert all(
        r.result["thread_env"]
        == {
            "NUMBA_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        for r in dask
    )
    assert len({r.record["pid"] for r in process}) >= 1
    assert all(r.record["pid"] != os.getpid() for r in dask)
    # the same numbers as calling the job directly with the task's config
    t = plan_scan(SELFTEST, JOBS).tasks[2]
    assert serial[2].result["draws"] == selftest_job(t.config, tmp_path)["draws"]
    summary = json.loads((tmp_path / "dask" / "summary.json").read_text())
    assert summary["n_tasks"] == 4 and summary["n_run"] == 4
    csv_lines = (tmp_path / "dask" / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and "selftest.x" in csv_lines[0]


def test_resume_after_failure_runs_only_missing(tmp_path: Path) -> None:
    marker = tmp_path / "fail-now"
    marker.touch()
    cfg = copy.deepcopy(SELFTEST)
    cfg["scan"]["grid"]["selftest.fail_if_exists"] = ["", str(marker)]
    out = tmp_path / "scan"
    first = run_scan(cfg, out, JOBS, progress=False)
    assert (first.n_run, first.n_failed) == (4, 4)
    assert not first.ok
    failed = {r.task_id for r in first if r.status == "failed"}
    assert all((out / "tasks" / f"{t}.error.txt").exists() for t in failed)
    before = _mtimes(out)
    assert len(before) == 4

    marker.unlink()
    second = run_scan(cfg, out, JOBS, backend="process", workers=2, progress=False)
    assert second.ok and (second.n_run, second.n_skipped) == (4, 4)
    assert {r.task_id for r in second if r.status == "done"} == failed
    after = _mtimes(out)
    assert all(after[name] == t for name, t in before.items())  # finished files untouched
    assert not list((out / "tasks").glob("*.error.txt"))

    third = run_scan(cfg, out, JOBS, progress=False)
    assert (third.n_run, third.n_skipped) == (0, 8)
    assert _mtimes(out) == after


def test_subset_then_full(tmp_path: Path) -> None:
    small = copy.deepcopy(SELFTEST)
    small["scan"]["n_seeds"] = 1
    out = tmp_path / "scan"
    assert run_scan(small, out, JOBS, progress=False).n_run == 2
    with pytest.raises(ConfigError, match="holds a different scan .*n_seeds.*--force") as info:
        run_scan(SELFTEST, out, JOBS, progress=False)
    assert "\n" not in str(info.value)
    full = run_scan(SELFTEST, out, JOBS, progress=False, force=True)
    assert (full.n_run, full.n_skipped) == (2, 2)
    fresh = run_scan(SELFTEST, tmp_path / "fresh", JOBS, progress=False)
    assert _results(full) == _results(fresh)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper", "incomplete", "empty"])
def test_corrupt_task_file_is_redone(tmp_path: Path, damage: str) -> None:
    out = tmp_path / "scan"
    first = run_scan(SELFTEST, out, JOBS, progress=False)
    assert first[1].path == Path("tasks") / f"{first[1].task_id}.json"  # relative to the scan
    path = out / first[1].path
    assert read_task_file(path) is not None
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif damage == "empty":
        path.write_text("")
    else:
        record = json.loads(text)
        if damage == "tamper":
            record["result"]["mean"] += 1.0  # checksum no longer matches
        else:
            record["complete"] = False
        path.write_text(json.dumps(record))
    assert read_task_file(path) is None
    second = run_scan(SELFTEST, out, JOBS, progress=False)
    assert (second.n_run, second.n_skipped, second.n_redone) == (1, 3, 1)
    assert second[1].status == "done"
    assert _results(second) == _results(first)
    assert read_task_file(path) is not None


def test_custom_job_table_and_out_path(tmp_path: Path) -> None:
    name = "test-artifact"
    jobs = {name: Job(name, _artifact_job, seed_keys=("selftest.seed",))}
    cfg = {"scan": {"job": name, "grid": {"selftest.x": [1.0]}}}
    result = run_scan(cfg, tmp_path, jobs, progress=False)
    # the job returned an absolute path; the record holds it relative to the scan folder
    art = Path(result[0].result["artifact"])
    assert art == Path("tasks") / result[0].task_id / "seed.txt"
    art = tmp_path / art
    assert art.read_text() == str(result[0].seed)
    # the artifact's size and digest are in the record
    assert result[0].record["outputs"]["seed.txt"]["size"] == len(str(result[0].seed))
    with pytest.raises(ValueError, match="must be dotted"):
        Job(name, _artifact_job, seed_keys=("seed",))


def _artifact_job(config: dict, out_path: Path) -> dict:
    out_path.mkdir(parents=True, exist_ok=True)
    art = out_path / "seed.txt"
    art.write_text(str(config["selftest"]["seed"]))
    return {"artifact": str(art)}


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        ({"job": "selftest", "grid": {}}, "grid is empty"),
        ({"job": "selftest"}, "grid is empty"),
        ({"job": "selftest", "grid": {"selftest.x": []}}, "empty list"),
        ({"job": "selftest", "grid": {"selftest.bogus": [1]}}, r"unknown key\(s\) in \[selftest\]"),
        ({"job": "selftest", "grid": {"nosuch.x": [1]}}, "unknown config section"),
        ({"job": "selftest", "grid": {"x": [1]}}, "SECTION.KEY"),
        ({"job": "selftest", "grid": {"selftest.x": 1}}, "must be a list"),
        ({"job": "selftest", "grid": {"selftest.n": [0]}}, "n must be >= 1"),
        ({"job": "selftest", "grid": {"selftest.seed": [1]}}, "set by the scan"),
        ({"job": "nosuch", "grid": {"selftest.x": [1]}}, "unknown job"),
        ({"job": "selftest", "grid": {"selftest.x": [1]}, "n_seeds": 0}, "n_seeds"),
        (
            {"job": "selftest", "grid": {"selftest.x": [1]}, "sed": 0},
            r"unknown key\(s\) in \[scan\]",
        ),
        ({"job": "selftest", "zip": {"selftest.x": [1], "selftest.n": [1, 2]}}, "equal lengths"),
    ],
)
def test_bad_scan_config(tmp_path: Path, scan: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        run_scan({"scan": scan}, tmp_path / "out", JOBS, progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()  # validated before anything is written


def test_unreachable_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler") as info:
        run_scan(
            SELFTEST,
            tmp_path,
            JOBS,
            backend="dask",
            scheduler="tcp://127.0.0.1:1",
            scheduler_timeout=1.0,
            progress=False,
        )
    assert "\n" not in str(info.value)
    assert not (tmp_path / "scan.json").exists()  # connected before writing anything
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="127.0.0.1:1"):
        run_scan(SELFTEST, tmp_path, JOBS, backend="dask", scheduler_timeout=0.5, progress=False)
    with pytest.raises(ConfigError, match="needs the dask backend"):
        run_scan(SELFTEST, tmp_path, JOBS, backend="serial", scheduler="tcp://127.0.0.1:1")


def _write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TOML = """
[scan]
job = "selftest"
n_seeds = 2
grid = { "selftest.x" = [1.0, 2.0] }

[selftest]
n = 2
"""


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write_toml(tmp_path / "scan.toml", TOML)
    out = tmp_path / "out"
    assert main(["scan", str(cfg), "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_tasks"] == 4 and data["n_run"] == 4
    assert main(["scan", str(cfg), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "4 already done" in text and "selftest.x" in text
    assert main(["scan", str(cfg), "--out", str(out), "--list"]) == 0
    assert "4 with results" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "scan.grid={}"], "grid is empty"),
        (["--set", 'scan.grid={"selftest.bogus"=[1]}'], "unknown key"),
        (["--scheduler", "tcp://127.0.0.1:1", "--scheduler-timeout", "1"], "cannot reach"),
        (["--workers", "0", "--backend", "process"], "workers"),
    ],
)
def test_cli_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    cfg = _write_toml(tmp_path / "scan.toml", TOML)
    rc = main(["scan", str(cfg), "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err and len(err.splitlines()) == 1


def test_cli_failed_task_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "marker"
    marker.touch()
    cfg = _write_toml(tmp_path / "scan.toml", TOML + f'fail_if_exists = "{marker}"\n')
    assert main(["scan", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    assert "failed" in capsys.readouterr().err
    marker.unlink()
    assert main(["scan", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 0


SAMPLE = {
    "scan": {"job": "sample", "seed": 3, "grid": {"sampler.kind": ["metropolis", "hmc"]}},
    "theory": {"L": 4, "beta": 0.5, "lam": 0.5},
    "sampler": {},
    "run": {"n_therm": 50, "n_steps": 200, "n_chains": 1},
}


def _sample_results(scan) -> list:
    return [(r.task_id, r.result["observables"], r.result["acceptance"]) for r in scan]


def test_sample_job_serial_and_process_agree(tmp_path: Path) -> None:
    cfg = copy.deepcopy(SAMPLE)
    cfg["scan"]["n_seeds"] = 2  # 4 tasks
    serial = run_scan(cfg, tmp_path / "serial", JOBS, progress=False)
    process = run_scan(
        cfg, tmp_path / "process", JOBS, backend="process", workers=2, progress=False
    )
    assert serial.ok and process.ok and len(serial) == 4
    assert _sample_results(serial) == _sample_results(process)
    rec = serial[0]
    assert rec.config["run"]["seed"] == rec.seed and rec.result["seed"] == rec.seed
    assert (tmp_path / "serial" / rec.result["results_file"]).is_file()
    assert {r.result["sampler"] for r in serial} == {"metropolis", "hmc"}


@pytest.mark.slow
def test_sample_job_dask_agrees(tmp_path: Path) -> None:
    serial = run_scan(SAMPLE, tmp_path / "serial", JOBS, progress=False)
    dask = run_scan(SAMPLE, tmp_path / "dask", JOBS, backend="dask", workers=2, progress=False)
    assert dask.ok
    assert _sample_results(serial) == _sample_results(dask)


def test_sample_grid_validation(tmp_path: Path) -> None:
    cfg = copy.deepcopy(SAMPLE)
    cfg["scan"]["grid"] = {"sampler.kind": ["hmc"], "sampler.step_sise": [0.1]}
    with pytest.raises(ConfigError, match="step_sise"):
        plan_scan(cfg, JOBS)
    cfg["scan"]["grid"] = {"run.n_stepz": [10]}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[run\]"):
        plan_scan(cfg, JOBS)
