"""The packaged beta table is exactly what studies.beta_table generates from data/tuning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check(tuning: Path) -> subprocess.CompletedProcess:
    """``python -m studies.beta_table --check`` from the repository root (as CI runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "studies.beta_table", "--check", "--tuning", str(tuning)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def test_packaged_table_equals_the_generated_one():
    run = _check(ROOT / "data" / "tuning")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "up to date" in run.stdout


def test_a_drifted_table_is_caught(tmp_path):
    """Negative control: without the L = 32 scan the generated table lacks a packaged row."""
    tuning = tmp_path / "tuning"
    shutil.copytree(ROOT / "data" / "tuning", tuning)
    shutil.rmtree(tuning / "L32")
    run = _check(tuning)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "DIFFERS" in run.stdout


def test_a_scan_with_a_corrupt_task_is_refused(tmp_path):
    """A tampered task record is not silently dropped from the table: the study stops."""
    tuning = tmp_path / "tuning"
    shutil.copytree(ROOT / "data" / "tuning", tuning)
    record = next((tuning / "L32" / "scan" / "tasks").glob("*.json"))
    record.write_text(record.read_text().replace('"beta": 0.66', '"beta": 0.67', 1))
    run = _check(tuning)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "rerun its tune" in run.stderr
