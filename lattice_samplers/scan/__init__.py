"""Parameter scans: a grid of independent tasks run serially, on a process pool or on Dask.

The engine is job-agnostic: it imports no workflow.  Callers pass a job table (name ->
:class:`Job`); :data:`lattice_samplers.jobs.JOBS` holds the package's (selftest, sample,
compare, train, tune).  A scan config is an ordinary job config plus a ``[scan]`` section::

    [scan]
    job = "sample"          # a name in the job table: what each task runs
    n_seeds = 2             # replicas of every grid point (independent seeds)
    seed = 0                # root seed of the whole scan
    grid = { "theory.L" = [6, 8], "sampler.kind" = ["hmc", "metropolis"] }
    # optional: axes that vary together (equal-length lists), one axis of the product
    zip = { "theory.L" = [6, 8], "run.n_steps" = [1000, 2000] }

The tasks are the cartesian product of the ``zip`` axis (if any) and the ``grid`` axes, in the
order written, times ``n_seeds`` replicas (innermost).  Every dotted key sets one entry of the
task's config; the job's ``prepare`` hook then resolves named values (``theory.beta =
"tuned"``).  The whole grid is validated before anything runs or is written.

Seeds.  Task ``(i_1, ..., i_k, r)`` gets ``SeedSequence(seed, spawn_key=(i_1, ..., i_k, r))``:
independent streams fixed by the task's position in the grid alone, so results do not depend
on the backend, on the order of completion or on which tasks were already done.

Portability.  Task ids hold no path: a path-valued key (a job's ``path_keys``, e.g.
``compare.flow_checkpoint``) is identified by a content id (the producing task's hash, or a
digest of the bytes).  Paths stored in ``scan.json`` and task records are relative to the
scan folder and resolved against it when read, so a scan folder can be moved or cloned.

Results.  Each task writes ``DIR/tasks/<task_id>.json`` atomically with its config, seed,
result, the size and SHA-256 of every file in its artifact folder ``DIR/tasks/<task_id>/``,
timing and provenance, a completion marker and a checksum.  A task whose record is intact
and whose outputs have their recorded sizes and digests is skipped; a missing, truncated or
corrupt record, or a truncated or altered output, makes it run again (an absent output does
not: large artifacts are often not copied along with the records).  Tasks are claimed with
exclusive claim files, so two scans on one folder run each task once.  SIGINT/SIGTERM cancel
queued tasks, terminate running workers and write the summary of what was done.

Each task runs single-threaded (:data:`THREAD_ENV` in every worker's environment; the chain
driver's ``[run] workers = 0`` then runs a task's chains one after the other).
"""

from lattice_samplers.scan.engine import (
    check_scan_folder,
    collect_scan,
    load_scan,
    portable_plan,
    run_scan,
    scan_document,
)
from lattice_samplers.scan.execute import (
    BACKENDS,
    SCHEDULER_TIMEOUT_S,
    THREAD_ENV,
    ScanInterrupted,
    execute_task,
)
from lattice_samplers.scan.plan import (
    Job,
    JobFunction,
    ScanPlan,
    ScanSettings,
    Task,
    content_id,
    make_task_id,
    parse_scan_settings,
    plan_scan,
    scan_axes,
    task_seed,
)
from lattice_samplers.scan.results import SUMMARY_FORMAT, ScanResult, TaskRecord, write_summary
from lattice_samplers.scan.status import format_status, scan_status
from lattice_samplers.scan.taskfiles import SCAN_FORMAT, TASK_FORMAT, read_task_file

__all__ = [
    "BACKENDS",
    "SCAN_FORMAT",
    "SCHEDULER_TIMEOUT_S",
    "SUMMARY_FORMAT",
    "TASK_FORMAT",
    "THREAD_ENV",
    "Job",
    "JobFunction",
    "ScanInterrupted",
    "ScanPlan",
    "ScanResult",
    "ScanSettings",
    "Task",
    "TaskRecord",
    "check_scan_folder",
    "collect_scan",
    "content_id",
    "execute_task",
    "format_status",
    "load_scan",
    "make_task_id",
    "parse_scan_settings",
    "plan_scan",
    "portable_plan",
    "read_task_file",
    "run_scan",
    "scan_axes",
    "scan_document",
    "scan_status",
    "task_seed",
    "write_summary",
]
