"""Scan robustness: status, portability, interrupts, damaged outputs, concurrency, bad --out."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lattice_samplers.cli import main
from lattice_samplers.config import ConfigError
from lattice_samplers.jobs import JOBS
from lattice_samplers.scan import (
    Job,
    collect_scan,
    load_scan,
    plan_scan,
    run_scan,
    scan_status,
)
from lattice_samplers.scan.taskfiles import claim_task, release_claim

ROOT = Path(__file__).resolve().parents[1]
#: an absolute path of some machine, in a scan record
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|home|tmp|root|Users|scratch)/")
#: the folder the committed results were built in (written so that grepping the repository
#: for it finds no false positive here)
BUILD_FOLDER = re.compile(r"(?<![\w.])/wor[k]/")
DATA = ROOT / "data"
SCAN_DIRS = sorted(p.parent for p in DATA.rglob("scan.json"))
#: the job table without validation (compare's validator loads flow checkpoints, which the
#: repository does not hold)
UNCHECKED = {k: dataclasses.replace(j, validate=None) for k, j in JOBS.items()}

TOML = """
[scan]
job = "selftest"
n_seeds = 2
grid = { "selftest.x" = [1.0, 2.0] }

[selftest]
n = 2
"""


def _cli(*args: str, cwd: Path | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys; from lattice_samplers.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# ---------------------------------------------------------------------------- committed data
def test_committed_scan_folders_exist() -> None:
    assert len(SCAN_DIRS) >= 3


@pytest.mark.parametrize("folder", SCAN_DIRS, ids=lambda p: str(p.relative_to(DATA)))
def test_committed_scan_folder_is_complete_and_portable(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--status", str(folder), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["missing"], status["corrupt"]) == (0, 0)
    assert status["done"] == len(status["tasks"]) > 0
    # planning the recorded config again, from the folder itself, gives the recorded ids
    doc = load_scan(folder)
    plan = plan_scan(doc["config"], UNCHECKED, base_dir=folder)
    assert [t.task_id for t in plan.tasks] == [t["task_id"] for t in doc["tasks"]]
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".txt"):
            text = path.read_text(encoding="utf-8")
            assert '"/' not in text and ",/" not in text, f"absolute path in {path}"
            assert not ABSOLUTE.search(text), f"absolute path in {path}"


def test_no_build_machine_path_in_data() -> None:
    # any machine's absolute folder, not only this one's (the GPU run once leaked /tmp paths)
    for path in DATA.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".txt", ".md", ".toml"):
            text = path.read_text(encoding="utf-8")
            assert not BUILD_FOLDER.search(text) and str(ROOT) not in text, path
            assert not ABSOLUTE.search(text), path


# ---------------------------------------------------------------------------- status
def test_status_lists_done_missing_corrupt(tmp_path: Path) -> None:
    cfg = {
        "scan": {"job": "selftest", "grid": {"selftest.x": [0.0, 1.0, 2.0]}},
        "selftest": {"write_bytes": 100},
    }
    out = tmp_path / "scan"
    result = run_scan(cfg, out, JOBS, progress=False)
    (out / result[0].path).unlink()
    data = out / "tasks" / result[1].task_id / "data.bin"
    data.write_bytes(data.read_bytes()[:10])
    status = scan_status(out)
    assert (status["done"], status["missing"], status["corrupt"]) == (1, 1, 1)
    assert [t["status"] for t in status["tasks"]] == ["missing", "corrupt", "done"]
    assert "data.bin" in status["tasks"][1]["reason"]
    with pytest.raises(ConfigError, match="no scan"):
        scan_status(tmp_path)


# ---------------------------------------------------------------------------- portability
def _read_job(config: dict, out_path: Path) -> dict:
    return {
        "text": Path(config["selftest"]["label"]).read_text(),
        "seed": config["selftest"]["seed"],
    }


def _check_label(config: dict) -> None:
    assert os.path.isabs(config["selftest"]["label"])  # the job gets an absolute path


def test_path_axis_is_identified_by_content_and_stored_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = {"reader": Job("reader", _read_job, validate=_check_label, seed_keys=("selftest.seed",),
                          path_keys=("selftest.label",))}  # fmt: skip
    project = tmp_path / "project"
    (project / "inputs").mkdir(parents=True)
    (project / "inputs" / "a.txt").write_text("alpha")
    (project / "inputs" / "b.txt").write_text("beta")
    monkeypatch.chdir(project)
    cfg = {"scan": {"job": "reader", "grid": {"selftest.label": ["inputs/a.txt", "inputs/b.txt"]}}}
    result = run_scan(cfg, "runs/scan", jobs, progress=False)
    assert [r.result["text"] for r in result] == ["alpha", "beta"]
    for r in result:
        assert "inputs" not in r.task_id and "txt" not in r.task_id
        assert r.point["selftest.label"].startswith("../../inputs/")
    for path in (project / "runs").rglob("*.json"):
        assert str(tmp_path) not in path.read_text()
    # the whole project moves: the scan is still complete and reruns nothing
    moved = tmp_path / "elsewhere"
    shutil.move(project, moved)
    monkeypatch.chdir(moved)
    doc = load_scan("runs/scan")
    again = collect_scan(doc["config"], "runs/scan", jobs, base_dir="runs/scan")
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert (
        run_scan(doc["config"], "runs/scan", jobs, base_dir="runs/scan", progress=False).n_run == 0
    )


# ---------------------------------------------------------------------------- damaged outputs
def test_truncated_output_is_detected_and_rerun(tmp_path: Path) -> None:
    cfg = {
        "scan": {"job": "selftest", "grid": {"selftest.x": [0.0, 1.0]}},
        "selftest": {"write_bytes": 1000},
    }
    out = tmp_path / "scan"
    first = run_scan(cfg, out, JOBS, progress=False)
    data = out / "tasks" / first[0].task_id / "data.bin"
    assert first[0].record["outputs"]["data.bin"]["size"] == 1000
    data.write_bytes(data.read_bytes()[:500])
    second = run_scan(cfg, out, JOBS, progress=False)
    assert (second.n_run, second.n_skipped, second.n_redone) == (1, 1, 1)
    assert data.stat().st_size == 1000
    data.write_bytes(b"y" * 1000)  # same size, other bytes
    assert run_scan(cfg, out, JOBS, progress=False).n_redone == 1
    # an absent output (a checkpoint not copied along) is reported, not held against the task
    data.unlink()
    status = scan_status(out)
    assert (status["done"], status["corrupt"]) == (2, 0)
    assert status["tasks"][0]["absent_outputs"] == ["data.bin"]
    assert run_scan(cfg, out, JOBS, progress=False).n_run == 0


# ---------------------------------------------------------------------------- claims
def test_claims(tmp_path: Path) -> None:
    claim = tmp_path / "t.claim"
    mine = claim_task(claim)
    assert mine is not None and claim_task(claim) is None  # held by a live process (us)
    release_claim(mine)
    assert not claim.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    claim.write_text(json.dumps({"pid": int(dead), "host": host}))
    assert claim_task(claim) is not None  # a dead process's claim is taken over
    claim.write_text(json.dumps({"pid": int(dead), "host": host + "-other"}))
    assert claim_task(claim) is None  # another host's claim is respected


def test_two_concurrent_scans_run_each_task_once(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    cfg = tmp_path / "scan.toml"
    cfg.write_text(
        '[scan]\njob = "selftest"\nn_seeds = 3\ngrid = { "selftest.x" = [1.0, 2.0] }\n'
        f'[selftest]\nsleep_s = 0.6\nlog = "{log}"\n'
    )
    out = tmp_path / "out"
    procs = [_cli("scan", str(cfg), "--out", str(out), "--no-progress") for _ in range(2)]
    for p in procs:
        p.communicate(timeout=180)
        assert p.returncode in (0, 1), p.stderr
    seeds = [line.split()[0] for line in log.read_text().splitlines()]
    assert len(seeds) == 6 and len(set(seeds)) == 6  # every task ran exactly once
    status = scan_status(out)
    assert (status["done"], status["missing"], status["corrupt"]) == (6, 0, 0)
    assert not list((out / "tasks").glob("*.claim"))


# ---------------------------------------------------------------------------- interrupts
def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


@pytest.mark.parametrize(("signame", "count"), [("SIGINT", 1), ("SIGTERM", 1), ("SIGINT", 2)])
def test_interrupt_process_scan_stops_promptly(tmp_path: Path, signame: str, count: int) -> None:
    cfg = tmp_path / "scan.toml"
    # the first task is quick, the others sleep far longer than the test waits
    cfg.write_text(
        '[scan]\njob = "selftest"\nzip = { "selftest.x" = [0.0, 1.0, 2.0, 3.0, 4.0], '
        '"selftest.sleep_s" = [0.0, 120.0, 120.0, 120.0, 120.0] }\n'
    )
    out = tmp_path / "out"
    proc = _cli("scan", str(cfg), "--out", str(out), "--backend", "process", "--workers", "2",
                "--no-progress")  # fmt: skip
    tasks = out / "tasks"
    try:
        try:
            _wait_for(
                lambda: (
                    len(list(tasks.glob("*.json"))) == 1 and len(list(tasks.glob("*.claim"))) == 2
                ),
                timeout=120,
            )
        except AssertionError:
            proc.kill()
            raise AssertionError(f"scan did not start its tasks: {proc.communicate()}") from None
        workers = [json.loads(c.read_text())["pid"] for c in tasks.glob("*.claim")]
        t0 = time.monotonic()
        for _ in range(count):
            proc.send_signal(getattr(signal, signame))
            time.sleep(0.05)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert elapsed < 20
    assert proc.returncode == 128 + getattr(signal, signame)
    # after a second signal the killed workers may leave semaphores that Python's own
    # resource_tracker warns about on exit; that warning is not ours to count
    lines = [line for line in err.strip().splitlines() if line.startswith("lattice-samplers")]
    assert 1 <= len(lines) <= count and all(signame in line for line in lines), err

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    for pid in workers:  # the running workers were terminated (the kernel may take a moment)
        _wait_for(lambda pid=pid: gone(pid), timeout=10)
    if count == 1:
        summary = json.loads((out / "summary.json").read_text())
        assert summary["interrupted"] == signame
        assert [t["status"] for t in summary["tasks"]] == ["done"] + ["missing"] * 4
        assert len((out / "summary.csv").read_text().splitlines()) == 6


# ---------------------------------------------------------------------------- bad input
def _run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["scan", *args])
    return rc, capsys.readouterr().err.strip()


def test_different_config_refused_unless_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "scan.toml"
    cfg.write_text(TOML)
    out = str(tmp_path / "out")
    assert _run_cli(capsys, str(cfg), "--out", out, "--no-progress")[0] == 0
    rc, err = _run_cli(capsys, str(cfg), "--out", out, "--set", "selftest.n=3")
    assert rc == 2 and len(err.splitlines()) == 1
    assert "different scan" in err and "selftest.n" in err and "--force" in err
    rc, _ = _run_cli(capsys, str(cfg), "--out", out, "--set", "selftest.n=3", "--force",
                     "--no-progress")  # fmt: skip
    assert rc == 0
    assert load_scan(out)["config"]["selftest"]["n"] == 3


def test_set_on_a_scan_axis_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "scan.toml"
    cfg.write_text(TOML)
    rc, err = _run_cli(capsys, str(cfg), "--out", str(tmp_path / "out"), "--set", "selftest.x=6")
    assert rc == 2 and len(err.splitlines()) == 1
    assert "selftest.x is a scan axis" in err
    assert not (tmp_path / "out").exists()


def test_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "scan.toml"
    cfg.write_text(TOML)
    target = tmp_path / "file"
    target.write_text("keep me")
    rc, err = _run_cli(capsys, str(cfg), "--out", str(target))
    assert rc == 2 and len(err.splitlines()) == 1 and "not a folder" in err
    assert target.read_text() == "keep me"


def test_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("the folder is still writable (running as root)")
        cfg = tmp_path / "scan.toml"
        cfg.write_text(TOML)
        rc, err = _run_cli(capsys, str(cfg), "--out", str(locked / "scan"))
        assert rc == 2 and len(err.splitlines()) == 1 and "permission" in err
    finally:
        locked.chmod(0o700)


def test_unwritable_out_check_without_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same refusal where the permission check says no (works as root too)."""
    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode)
    )
    cfg = tmp_path / "scan.toml"
    cfg.write_text(TOML)
    rc, err = _run_cli(capsys, str(cfg), "--out", str(locked / "scan"))
    assert rc == 2 and len(err.splitlines()) == 1 and "permission" in err
    assert not (locked / "scan").exists()


def test_unreachable_scheduler_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "scan.toml"
    cfg.write_text(TOML)
    out = tmp_path / "out"
    rc, err = _run_cli(capsys, str(cfg), "--out", str(out), "--scheduler", "tcp://127.0.0.1:1",
                       "--scheduler-timeout", "1")  # fmt: skip
    assert rc == 2 and "cannot reach" in err
    assert not (out / "scan.json").exists()


# ---------------------------------------------------------------------------- serial + numba
def _numba_job(config: dict, out_path: Path) -> dict:
    import numba

    @numba.njit
    def shift(x: int) -> int:
        return x + 1

    return {"y": shift(config["selftest"]["seed"] % 7)}


def test_serial_scan_compiles_after_numba_threads_launched(tmp_path: Path) -> None:
    """A serial task may compile numba code although this process's numba pool runs.

    Regression: setting NUMBA_NUM_THREADS=1 around a task after numba's threads were
    launched made every compilation in the task fail ("Cannot set NUMBA_NUM_THREADS ...").
    """
    import numba

    numba.get_num_threads()  # launches numba's thread pool in this process
    jobs = {"jit": Job("jit", _numba_job, seed_keys=("selftest.seed",))}
    cfg = {"scan": {"job": "jit", "grid": {"selftest.x": [0.0, 1.0]}}}
    result = run_scan(cfg, tmp_path, jobs, progress=False)
    assert result.ok, [r.error for r in result]
    assert run_scan(cfg, tmp_path / "again", jobs, progress=False).ok
