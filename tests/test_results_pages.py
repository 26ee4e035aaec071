"""The results pages' tables are what the studies write from the committed data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _check(results: Path) -> subprocess.CompletedProcess:
    """``python -m studies.tables --check`` from the repository root (as CI runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "studies.tables", "--check", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def test_every_table_matches_the_committed_data():
    run = _check(RESULTS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(": ok") >= 8


def test_a_hand_edited_table_is_caught(tmp_path):
    """Negative control: one number changed on a copy of the pages fails the check."""
    pages = tmp_path / "results"
    shutil.copytree(RESULTS, pages)
    page = pages / "flow_families.md"
    page.write_text(page.read_text().replace("| 0.809 ± 0.015 |", "| 0.819 ± 0.015 |", 1))
    run = _check(pages)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "flow_families.md table:training_table: DIFFERS" in run.stdout


def test_every_relative_link_of_the_pages_resolves():
    broken = []
    for page in RESULTS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert not broken, broken
