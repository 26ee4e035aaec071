"""Scan results: one record per task, the summary table and the summary files."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lattice_samplers.records import json_safe, write_csv, write_json
from lattice_samplers.scan.plan import Job, Task

__all__ = [
    "SUMMARY_FORMAT",
    "ScanResult",
    "TaskRecord",
    "format_table",
    "record_from_file",
    "write_summary",
]

#: Format tag of summary.json.
SUMMARY_FORMAT = "lattice_samplers.scan.summary/1"


@dataclasses.dataclass
class TaskRecord:
    """The outcome of one task.

    ``status`` is ``done`` (ran now), ``skipped`` (valid file found), ``failed`` (the job
    raised; ``error`` says why), ``missing`` (not run yet, or cancelled by an interrupt) or
    ``running`` (claimed by another live process).  ``record`` is the full content of the
    task file (empty unless done or skipped).  ``path`` is the task file, relative to the
    scan folder.
    """

    index: int
    task_id: str
    point: dict[str, Any]
    replica: int
    seed: int
    status: str
    result: dict[str, Any] | None = None
    wall_s: float | None = None
    error: str | None = None
    path: Path | None = None
    record: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The task's full config (from its file when it ran)."""
        return self.record.get("config", {})

    @classmethod
    def empty(cls, task: Task, status: str, **kwargs: Any) -> TaskRecord:
        """A record of ``task`` without a result (missing, running, failed)."""
        return cls(task.index, task.task_id, task.point, task.replica, task.seed, status, **kwargs)


def record_from_file(task: Task, record: dict[str, Any], status: str) -> TaskRecord:
    """The :class:`TaskRecord` of ``task`` from the content of its task file."""
    return TaskRecord(
        index=task.index,
        task_id=task.task_id,
        point=task.point,
        replica=task.replica,
        seed=task.seed,
        status=status,
        result=record.get("result"),
        wall_s=record.get("timing", {}).get("wall_s"),
        path=Path("tasks") / f"{task.task_id}.json",
        record=record,
    )


class ScanResult(list):
    """The task records of a scan in task order (a list of :class:`TaskRecord`).

    Attributes
    ----------
    out_dir : Path
        The scan folder (task paths are relative to it).
    job : str
        The job name.
    config : dict
        The scan config as recorded in ``scan.json`` (paths relative to ``out_dir``).
    n_redone : int
        Tasks run again because their file or outputs were corrupt or partial.
    wall_s : float
        Seconds this call took.
    interrupted : str or None
        The signal that stopped the scan (``"SIGINT"``, ``"SIGTERM"``), else ``None``.
    """

    def __init__(
        self,
        records: Sequence[TaskRecord],
        out_dir: Path,
        job: Job,
        config: Mapping[str, Any] | None = None,
        n_redone: int = 0,
        wall_s: float = 0.0,
        interrupted: str | None = None,
    ) -> None:
        super().__init__(records)
        self.out_dir = Path(out_dir)
        self.job = job.name
        self.config = dict(config or {})
        self._summarize = job.summarize
        self.n_redone = n_redone
        self.wall_s = wall_s
        self.interrupted = interrupted

    def _count(self, status: str) -> int:
        return sum(r.status == status for r in self)

    @property
    def n_run(self) -> int:
        """Tasks that ran (successfully) in this call."""
        return self._count("done")

    @property
    def n_skipped(self) -> int:
        """Tasks whose valid result file was already present."""
        return self._count("skipped")

    @property
    def n_failed(self) -> int:
        """Tasks whose job raised."""
        return self._count("failed")

    @property
    def n_missing(self) -> int:
        """Tasks without a result that did not fail (not run, cancelled, run elsewhere)."""
        return self._count("missing") + self._count("running")

    @property
    def ok(self) -> bool:
        """True when every task has a result."""
        return all(r.status in ("done", "skipped") for r in self)

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per task: id, status, grid values, seed, time and headline results."""
        rows = []
        for r in self:
            row: dict[str, Any] = {"index": r.index, "task_id": r.task_id, "status": r.status}
            row.update(r.point)
            row["replica"] = r.replica
            row["seed"] = r.seed
            row["wall_s"] = r.wall_s
            if r.result is not None:
                row.update(_headline(r.result, self._summarize))
            if r.error:
                row["error"] = r.error
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        """The JSON summary (also written to ``summary.json``); strict JSON, no absolute path."""
        return json_safe(
            {
                "format": SUMMARY_FORMAT,
                "job": self.job,
                "n_tasks": len(self),
                "n_run": self.n_run,
                "n_skipped": self.n_skipped,
                "n_failed": self.n_failed,
                "n_missing": self.n_missing,
                "n_redone": self.n_redone,
                "interrupted": self.interrupted,
                "wall_s": self.wall_s,
                "tasks": [
                    {
                        "index": r.index,
                        "task_id": r.task_id,
                        "status": r.status,
                        "point": r.point,
                        "replica": r.replica,
                        "seed": r.seed,
                        "wall_s": r.wall_s,
                        "error": r.error,
                        "path": r.path.as_posix() if r.path else None,
                        "result": r.result,
                    }
                    for r in self
                ],
            }
        )

    def table(self, max_width: int = 16) -> str:
        """A plain-text table of :meth:`rows` (without task ids, which are long)."""
        return format_table(self.rows(), skip=("task_id", "seed"), max_width=max_width)


def format_table(
    rows: Sequence[Mapping[str, Any]],
    skip: Sequence[str] = (),
    max_width: int = 16,
    wide: Sequence[str] = (),
) -> str:
    """A plain-text table of dict rows; ``wide`` columns and ``error`` (last) are not cut."""
    if not rows:
        return "(no tasks)"
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns and c not in skip)
    if "error" in columns:
        columns.remove("error")
        columns.append("error")
    cells = [list(columns)] + [
        [_cell(row.get(c), 200 if c in wide or c == "error" else max_width) for c in columns]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(s.rjust(w) for s, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any, width: int) -> str:
    if value is None:
        s = ""
    elif isinstance(value, float):
        s = "nan" if math.isnan(value) else f"{value:.4g}"
    else:
        s = str(value)
    return s if len(s) <= width else s[: width - 1] + "~"


def _flatten_scalars(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten_scalars(v, name + "."))
        elif isinstance(v, int | float | str | bool) or v is None:
            out[name] = v
    return out


def _headline(result: dict[str, Any], summarize: Callable | None) -> dict[str, Any]:
    if summarize is not None:
        try:
            return dict(summarize(result))
        except Exception:  # noqa: BLE001 - a summary problem must not lose the scan
            pass
    return _flatten_scalars(result)


def write_summary(result: ScanResult) -> None:
    """Write ``summary.json`` and ``summary.csv`` of a scan into its folder (atomically)."""
    write_json(result.out_dir / "summary.json", result.to_json())
    write_csv(result.out_dir / "summary.csv", result.rows())
