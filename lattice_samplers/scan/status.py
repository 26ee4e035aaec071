"""What a scan folder holds: done, missing and corrupt tasks, read from disk alone.

Needs no job table and runs nothing: the task list comes from ``scan.json``, and each task's
record is checked (format, checksum, id, seed, digests of its outputs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lattice_samplers.scan.engine import load_scan
from lattice_samplers.scan.results import format_table
from lattice_samplers.scan.taskfiles import (
    absent_outputs,
    check_task_file,
    claim_is_stale,
    task_paths,
)

__all__ = ["format_status", "scan_status"]


def scan_status(out_dir: str | Path) -> dict[str, Any]:
    """The state of every task recorded in ``out_dir/scan.json``.

    Returns
    -------
    dict
        ``{"done": int, "missing": int, "corrupt": int, "running": int, "job": str,
        "tasks": [{"task_id", "index", "status", "point", "reason"?}]}``; ``status`` is
        ``done``, ``missing`` (no record; ``running`` if a live claim exists, counted in
        ``missing`` as well) or ``corrupt`` (``reason`` says why: a damaged record, or an
        output whose size or digest differs).  A done task whose listed outputs are not all
        present (checkpoints are not committed, say) names them in ``absent_outputs``.

    Raises
    ------
    ConfigError
        If ``out_dir`` holds no readable ``scan.json``.
    """
    doc = load_scan(out_dir)
    tasks = []
    counts = {"done": 0, "missing": 0, "corrupt": 0, "running": 0}
    for entry in doc["tasks"]:
        task_id = entry["task_id"]
        paths = task_paths(out_dir, task_id)
        record, why = check_task_file(paths["record"], task_id, entry.get("seed"))
        row: dict[str, Any] = {
            "task_id": task_id,
            "index": entry.get("index"),
            "point": entry.get("point"),
        }
        if record is not None:
            row["status"] = "done"
            row["wall_s"] = record.get("timing", {}).get("wall_s")
            absent = absent_outputs(paths["folder"], record.get("outputs") or {})
            if absent:
                row["absent_outputs"] = absent
        elif why == "missing":
            row["status"] = "running" if _live_claim(paths["claim"]) else "missing"
            counts["missing"] += row["status"] == "running"
        else:
            row["status"] = "corrupt"
            row["reason"] = why
        counts[row["status"]] += 1
        tasks.append(row)
    return {**counts, "job": doc.get("job"), "n_tasks": len(tasks), "tasks": tasks}


def _live_claim(claim: Path) -> bool:
    try:
        json.loads(claim.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return not claim_is_stale(claim)


def format_status(status: dict[str, Any], out_dir: str | Path) -> str:
    """A table of the tasks and a one-line count, for people."""
    rows = []
    for t in status["tasks"]:
        row = {"index": t["index"], "status": t["status"]}
        row.update(t.get("point") or {})
        row["task_id"] = t["task_id"]
        if t.get("reason"):
            row["error"] = t["reason"]
        elif t.get("absent_outputs"):
            row["error"] = "absent: " + ", ".join(t["absent_outputs"])
        rows.append(row)
    table = format_table(rows, max_width=48, wide=("task_id",))
    return (
        f"{table}\n\n{status['n_tasks']} tasks in {out_dir}: {status['done']} done, "
        f"{status['missing']} missing, {status['corrupt']} corrupt"
    )
