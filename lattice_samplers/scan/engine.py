"""The scan entry points: run a scan into a folder, or collect what a folder holds.

The engine is job-agnostic: callers pass the job table (name -> :class:`Job`).  Everything is
checked before anything is written: the output folder, the whole grid, a scan already
recorded in the folder, and the Dask scheduler.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lattice_samplers.config import ConfigError
from lattice_samplers.records import OutputError, check_output_path, digest, write_json
from lattice_samplers.scan.execute import (
    BACKENDS,
    SCHEDULER_TIMEOUT_S,
    ScanInterrupted,
    dask_client,
    default_workers,
    interrupts,
    make_payload,
    run_dask,
    run_process,
    run_serial,
)
from lattice_samplers.scan.plan import (
    Job,
    ScanPlan,
    get_job,
    parse_scan_settings,
    plan_scan,
    relocate_paths,
)
from lattice_samplers.scan.results import (
    ScanResult,
    TaskRecord,
    record_from_file,
    write_summary,
)
from lattice_samplers.scan.taskfiles import SCAN_FORMAT, check_task_file, task_paths

__all__ = [
    "check_scan_folder",
    "collect_scan",
    "load_scan",
    "portable_plan",
    "run_scan",
    "scan_document",
]


def check_scan_folder(out_dir: str | Path) -> Path:
    """Refuse a scan folder that is a file or cannot be written, before any work.

    Raises
    ------
    OutputError
        One line: ``out_dir`` exists and is not a folder, or a folder on its way cannot be
        written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder")
    check_output_path(out / "scan.json", "scan folder")
    if (out / "tasks").is_dir():
        check_output_path(out / "tasks" / "x.json", "scan folder")
    return out


def portable_plan(
    config: Mapping[str, Any],
    out_dir: str | Path,
    jobs: Mapping[str, Job],
    base_dir: str | Path | None = None,
) -> ScanPlan:
    """The plan of a scan run into ``out_dir``, its path values relative to ``out_dir``.

    ``base_dir`` is where relative path values of ``config`` are read from (default: the
    current folder; the scan folder itself for a config read from ``scan.json``).
    """
    if not isinstance(config, Mapping):
        raise ConfigError("the scan config must be a table")
    job = get_job(jobs, parse_scan_settings(config.get("scan")).job)
    src = base_dir if base_dir is not None else os.getcwd()
    portable = relocate_paths(config, job.path_keys, src, out_dir)
    return plan_scan(portable, jobs, base_dir=out_dir)


def scan_document(plan: ScanPlan) -> dict[str, Any]:
    """The content of ``scan.json``: the portable config, its digest and the task list."""
    return {
        "format": SCAN_FORMAT,
        "job": plan.job.name,
        "config": plan.config,
        "config_digest": digest(plan.config),
        "n_tasks": len(plan.tasks),
        "tasks": [
            {"index": t.index, "task_id": t.task_id, "seed": t.seed, "point": t.point}
            for t in plan.tasks
        ],
    }


def load_scan(out_dir: str | Path) -> dict[str, Any]:
    """The content of ``out_dir/scan.json`` (config paths are relative to ``out_dir``).

    Raises
    ------
    ConfigError
        If there is no readable scan record in ``out_dir``.
    """
    path = Path(out_dir) / "scan.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no scan in {out_dir} (no scan.json)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list):
        raise ConfigError(f"{path} is not a scan record")
    return doc


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def _check_same_scan(out: Path, doc: Mapping[str, Any], force: bool) -> None:
    """Refuse to run a different config into a folder that holds a recorded scan."""
    if force or not (out / "scan.json").exists():
        return
    try:
        old = load_scan(out)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; rerun with --force to replace it") from None
    if digest(old.get("config")) == doc["config_digest"]:
        return
    diff = _differences(old.get("config"), doc["config"])
    shown = ", ".join(diff[:4]) + (", ..." if len(diff) > 4 else "")
    raise ConfigError(
        f"{out} holds a different scan (config differs in {shown}); rerun with --force to "
        "record this one there (task files whose ids still match are kept), or pick another --out"
    )


def collect_scan(
    config: Mapping[str, Any],
    out_dir: str | Path,
    jobs: Mapping[str, Job],
    base_dir: str | Path | None = None,
) -> ScanResult:
    """The records of a scan's tasks as found on disk, without running anything.

    Tasks without a valid file have status ``missing``.  For a config read from
    ``scan.json`` pass ``base_dir=out_dir``.
    """
    out = Path(out_dir)
    plan = portable_plan(config, out, jobs, base_dir)
    records = []
    for task in plan.tasks:
        rec, _ = check_task_file(task_paths(out, task.task_id)["record"], task.task_id, task.seed)
        if rec is None:
            records.append(TaskRecord.empty(task, "missing"))
        else:
            records.append(record_from_file(task, rec, "skipped"))
    return ScanResult(records, out, plan.job, plan.config)


def run_scan(
    config: Mapping[str, Any],
    out_dir: str | Path,
    jobs: Mapping[str, Job],
    *,
    backend: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    scheduler_timeout: float = SCHEDULER_TIMEOUT_S,
    force: bool = False,
    base_dir: str | Path | None = None,
) -> ScanResult:
    """Run every task of a scan that has no valid record yet; return all task records.

    Parameters
    ----------
    config : mapping
        A scan config: job sections plus ``[scan]``.
    out_dir : str or Path
        The scan folder: ``scan.json``, ``tasks/`` and the summaries.
    jobs : mapping of str to Job
        The job table the ``[scan] job`` name is looked up in.
    backend : {"serial", "process", "dask"}
        ``serial`` runs in this process; ``process`` on a spawn-context process pool;
        ``dask`` on a new ``LocalCluster`` or, with ``scheduler`` (or the
        ``DASK_SCHEDULER_ADDRESS`` environment variable), on an existing cluster whose workers
        share ``out_dir``'s filesystem.
    workers : int, optional
        Worker processes (process pool, LocalCluster); default: the usable cores, at most
        the number of pending tasks.
    scheduler : str, optional
        Address of a Dask scheduler (``dask`` backend only).
    progress : bool
        Show a tqdm progress bar over tasks on stderr.
    scheduler_timeout : float
        Seconds to wait for the scheduler before failing.
    force : bool
        Record this config in a folder that holds a different scan (otherwise refused).
    base_dir : str or Path, optional
        Folder that relative path values in ``config`` are relative to (default: current).

    Returns
    -------
    ScanResult
        All tasks in task order with status ``done``, ``skipped``, ``failed`` or
        ``running`` (claimed by another live scan on the same folder); ``summary.csv`` and
        ``summary.json`` are written.

    Raises
    ------
    ConfigError
        For an invalid scan, a different scan already in the folder, or an unreachable
        scheduler; nothing is written then.
    OutputError
        For a folder that is a file or cannot be written; nothing is written then.
    ScanInterrupted
        On SIGINT/SIGTERM, after queued tasks were cancelled, running workers terminated and
        the summary of the tasks done so far written (``exc.result``).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is None and backend == "dask":
        scheduler = os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if scheduler and backend != "dask":
        raise ConfigError("a Dask scheduler address needs the dask backend (--backend dask)")

    t_start = time.perf_counter()
    out = check_scan_folder(out_dir)
    plan = portable_plan(config, out, jobs, base_dir)
    doc = scan_document(plan)
    _check_same_scan(out, doc, force)

    by_id = {t.task_id: t for t in plan.tasks}
    records: dict[str, TaskRecord] = {}
    pending = []
    n_redone = 0
    for task in plan.tasks:
        path = task_paths(out, task.task_id)["record"]
        rec, why = check_task_file(path, task.task_id, task.seed)
        if rec is not None:
            records[task.task_id] = record_from_file(task, rec, "skipped")
        else:
            n_redone += why != "missing"
            pending.append(task)

    from tqdm.auto import tqdm

    n_workers = workers or default_workers(len(pending))
    interrupted: ScanInterrupted | None = None
    # the first SIGINT/SIGTERM stops the tasks; a second one, while they are being stopped
    # and the summary written, exits at once
    with interrupts():
        with contextlib.ExitStack() as stack:
            client = None
            if pending and backend == "dask":
                # connect before writing anything: a bad address fails with one line and
                # leaves no scan.json behind
                client, cluster = dask_client(n_workers, scheduler, scheduler_timeout)
                if cluster is not None:
                    stack.callback(cluster.close)
                stack.callback(client.close)
            write_json(out / "scan.json", doc)
            (out / "tasks").mkdir(parents=True, exist_ok=True)
            bar = stack.enter_context(
                tqdm(
                    total=len(plan.tasks),
                    initial=len(plan.tasks) - len(pending),
                    desc=f"scan {plan.job.name}",
                    unit="task",
                    disable=not progress,
                    file=sys.stderr,
                )
            )

            def on_done(rec: dict[str, Any]) -> None:
                task = by_id[rec["task_id"]]
                path = task_paths(out, task.task_id)["record"]
                status = rec["status"]
                if status in ("done", "skipped"):
                    if (
                        status == "done"
                        and check_task_file(path, task.task_id, task.seed)[0] is None
                    ):
                        # the worker wrote to a filesystem this process does not see: write it here
                        write_json(path, {k: v for k, v in rec.items() if k != "status"})
                    records[task.task_id] = record_from_file(task, rec, status)
                elif status == "running":
                    records[task.task_id] = TaskRecord.empty(task, "running")
                else:
                    records[task.task_id] = TaskRecord.empty(
                        task, "failed", wall_s=rec.get("wall_s"), error=rec.get("error")
                    )
                    bar.write(f"task {task.task_id} failed: {rec.get('error')}", file=sys.stderr)
                bar.update(1)

            payloads = [make_payload(plan, t, out) for t in pending]
            try:
                if backend == "serial":
                    run_serial(payloads, on_done)
                elif backend == "process":
                    run_process(payloads, on_done, n_workers)
                elif payloads:
                    run_dask(payloads, on_done, client)
            except KeyboardInterrupt as exc:
                interrupted = exc if isinstance(exc, ScanInterrupted) else ScanInterrupted("SIGINT")

        for task in plan.tasks:
            rec = records.get(task.task_id)
            if rec is None or rec.status == "running":
                # claimed elsewhere or cancelled: it may have finished since
                found, _ = check_task_file(task_paths(out, task.task_id)["record"], task.task_id)
                if found is not None:
                    records[task.task_id] = record_from_file(task, found, "skipped")
                elif rec is None:
                    records[task.task_id] = TaskRecord.empty(task, "missing")
        ordered = sorted(records.values(), key=lambda r: r.index)
        result = ScanResult(
            ordered,
            out,
            plan.job,
            plan.config,
            n_redone,
            time.perf_counter() - t_start,
            interrupted.signame if interrupted else None,
        )
        write_summary(result)
    if interrupted is not None:
        interrupted.result = result
        raise interrupted
    return result
