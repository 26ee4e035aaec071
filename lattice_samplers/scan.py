"""Parameter scans: a grid of independent tasks run serially, on a process pool or on Dask.

A scan config is an ordinary job config (``[theory]``, ``[sampler]``, ``[run]``, or ``[flow]``,
``[train]``, ...) plus a ``[scan]`` section::

    [scan]
    job = "sample"          # a name in JOBS: what each task runs
    n_seeds = 2             # replicas of every grid point (independent seeds)
    seed = 0                # root seed of the whole scan
    grid = { "theory.L" = [6, 8], "sampler.kind" = ["hmc", "metropolis"] }
    # optional: axes that vary together (equal-length lists), one axis of the product
    zip = { "theory.L" = [6, 8], "run.n_steps" = [1000, 2000] }

The tasks are the cartesian product of the ``zip`` axis (if any) and the ``grid`` axes, in the
order written, times ``n_seeds`` replicas (innermost).  Every dotted key sets one entry of the
task's config (``theory.L = 6``); ``theory.beta = "tuned"`` is resolved from the tuning table
(:func:`lattice_samplers.tune.resolve_tuned`).  The whole grid is validated before anything
runs, with the same section validation the job itself uses.

Seeds.  Task ``(i_1, ..., i_k, r)`` (index ``i_j`` along axis ``j``, replica ``r``) gets
``SeedSequence(seed, spawn_key=(i_1, ..., i_k, r))``, which is exactly
``SeedSequence(seed).spawn(n_1)[i_1].spawn(n_2)[i_2] ... .spawn(n_seeds)[r]``: independent
streams from one root seed, fixed by the task's position in the grid alone, so results do not
depend on the backend, on the order of completion or on which tasks were already done, and
appending values to an axis (or raising ``n_seeds``) leaves existing tasks and their files
valid.  The integer written into the job's seed keys (``run.seed`` for ``sample``) is
``generate_state(1, uint64) >> 1`` of that SeedSequence (63 bits: a TOML/JSON-safe integer).

Results.  Each task writes ``DIR/tasks/<task_id>.json`` atomically (temporary file, fsync,
``os.replace``) with its config, seed, result, timing, host and versions, a completion marker
and a SHA-256 checksum of its content.  ``task_id`` is readable plus a hash of the task's job
and config (e.g. ``L=6__kind=hmc__seed=0__3f2a9c1b7e``), so a changed config never reuses a
stale file.  A task whose file is present and valid is skipped; a missing, truncated or
corrupt file is redone.  A job may write further artifacts into its own directory
``DIR/tasks/<task_id>/`` (the ``out_path`` it receives), e.g. checkpoints it resumes from.
At the end ``DIR/summary.csv`` and ``DIR/summary.json`` list all tasks of the scan.

Each task runs single-threaded: ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``
and ``OPENBLAS_NUM_THREADS`` are 1 in the environment of every worker process before it
imports anything, and ``numba.set_num_threads(1)`` / ``torch.set_num_threads(1)`` are applied
around each task when those libraries are loaded.  Workers of an external Dask cluster
(``--scheduler``) should be started with these variables set (see :func:`run_scan`).

Jobs are registered with :func:`register_job`; a job is a module-level function
``fn(config: dict, out_path: Path) -> dict`` (JSON-serializable result) plus a validator.
Built in: ``sample`` (one classical sampler run as ``lattice-samplers sample`` does it, full
run in ``<task_id>/results.nc``, checkpointed there so a killed task resumes), ``tune``
(:func:`lattice_samplers.tune.tune_beta` from a ``[tune]`` section) and ``selftest`` (draws a
few normal numbers from the task seed; no numba, for tests) and ``compare`` (every sampler
on one theory point, :mod:`lattice_samplers.compare`) and ``train`` (one flow training,
:mod:`lattice_samplers.scaling`).  Register more with
:func:`register_job`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lattice_samplers.config import ConfigError, check_sections, section_to_dataclass

#: Format tag of a task result file; bump when the layout changes (old files are redone).
TASK_FORMAT = "lattice_samplers.scan.task/1"
#: Format tag of summary.json.
SUMMARY_FORMAT = "lattice_samplers.scan.summary/1"

#: Environment that makes numba, OpenMP and BLAS single-threaded in a fresh process.
THREAD_ENV: Mapping[str, str] = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}

#: Default seconds to wait for an external Dask scheduler before giving up.
SCHEDULER_TIMEOUT_S = 10.0

Backend = Literal["serial", "process", "dask"]
BACKENDS: tuple[str, ...] = ("serial", "process", "dask")

JobFunction = Callable[[dict[str, Any], Path], dict[str, Any]]


# ============================================================================ job registry
@dataclasses.dataclass(frozen=True)
class Job:
    """A registered scan job: what one task runs, and how its config is checked.

    Calling the job, ``job(config, out_path)``, runs it.

    Attributes
    ----------
    name : str
        The name used in ``[scan] job = ...``.
    fn : callable
        ``fn(config, out_path) -> dict``: runs one task from its full config (sections as in
        a single-job TOML file, seed already set) and returns a JSON-serializable result.
        ``out_path`` is the task's own directory (not created) for artifacts.  Must be a
        module-level function so process and Dask workers can unpickle it.
    validate : callable or None
        ``validate(config)`` raises :class:`~lattice_samplers.config.ConfigError` for an
        invalid task config (unknown section or key, bad value); run on every task before the
        scan starts.  Runs in the parent only, so it may be a closure.
    seed_keys : tuple of str
        Dotted config keys that receive the task's seed (e.g. ``("run.seed",)``).
    summarize : callable or None
        ``summarize(result) -> dict`` of a few scalars for the summary table; by default the
        scalar entries of the result (nested dicts flattened with dots).
    description : str
        One line for listings.
    """

    name: str
    fn: JobFunction
    validate: Callable[[dict[str, Any]], None] | None = None
    seed_keys: tuple[str, ...] = ("run.seed",)
    summarize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    description: str = ""

    def __call__(self, config: dict[str, Any], out_path: Path) -> dict[str, Any]:
        """Run the job on one task config."""
        return self.fn(config, out_path)


#: name -> Job.  Register with :func:`register_job`.
JOBS: dict[str, Job] = {}


def register_job(
    name: str,
    fn: JobFunction,
    *,
    validate: Callable[[dict[str, Any]], None] | None = None,
    seed_keys: Sequence[str] = ("run.seed",),
    summarize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    description: str = "",
    replace: bool = False,
) -> Job:
    """Register ``fn`` as the scan job ``name`` (see :class:`Job` for the arguments).

    Returns
    -------
    Job
        The registered job.

    Raises
    ------
    ValueError
        If ``name`` is taken (and ``replace`` is false) or a seed key is not dotted.
    """
    if name in JOBS and not replace:
        raise ValueError(f"scan job {name!r} is already registered")
    keys = tuple(seed_keys)
    for key in keys:
        if len(key.split(".")) < 2:
            raise ValueError(f"seed key {key!r} must be dotted, e.g. 'run.seed'")
    job = Job(name, fn, validate, keys, summarize, description)
    JOBS[name] = job
    return job


def _get_job(name: str) -> Job:
    if name not in JOBS:
        raise ConfigError(
            f"[scan] unknown job {name!r} (known: {', '.join(sorted(JOBS)) or 'none'})"
        )
    return JOBS[name]


# ---------------------------------------------------------------------------- selftest job
@dataclasses.dataclass(frozen=True)
class SelfTestConfig:
    """``[selftest]`` section of the built-in ``selftest`` job (a scan-machinery check)."""

    n: int = 4
    x: float = 0.0
    label: str = ""
    sleep_s: float = 0.0
    fail_if_exists: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.sleep_s < 0:
            raise ValueError(f"sleep_s must be >= 0, got {self.sleep_s}")


def _validate_selftest(config: dict[str, Any]) -> None:
    check_sections(config, ["selftest"])
    section_to_dataclass(SelfTestConfig, config.get("selftest"), "selftest")


def selftest_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Draw ``n`` normal numbers (shifted by ``x``) from the task seed; no numba, no torch.

    ``fail_if_exists``: raise while that file exists (tests use it to interrupt a scan).
    """
    cfg = section_to_dataclass(SelfTestConfig, config.get("selftest"), "selftest")
    if cfg.fail_if_exists and Path(cfg.fail_if_exists).exists():
        raise RuntimeError(f"selftest: failing on purpose ({cfg.fail_if_exists} exists)")
    if cfg.sleep_s:
        time.sleep(cfg.sleep_s)
    rng = np.random.default_rng(cfg.seed)
    draws = cfg.x + rng.standard_normal(cfg.n)
    return {
        "mean": float(draws.mean()),
        "draws": [float(d) for d in draws],
        "label": cfg.label,
        # what the task saw: the scan promises single-threaded tasks on every backend
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
    }


register_job(
    "selftest",
    selftest_job,
    validate=_validate_selftest,
    seed_keys=("selftest.seed",),
    summarize=lambda r: {"mean": r["mean"]},
    description="draw numbers from the task seed (checks the scan machinery)",
)


# ---------------------------------------------------------------------------- workflows' jobs
def _call_workflow(module: str, attr: str, *args: Any) -> Any:
    import importlib

    return getattr(importlib.import_module(f"lattice_samplers.workflows.{module}"), attr)(*args)


def _workflow_job(module: str, name: str, seed_keys: tuple[str, ...], description: str) -> None:
    register_job(
        name,
        functools.partial(_call_workflow, module, f"{module}_task"),
        validate=functools.partial(_call_workflow, module, f"validate_{module}"),
        seed_keys=seed_keys,
        summarize=functools.partial(_call_workflow, module, f"summarize_{module}"),
        description=description,
    )


_workflow_job("sample", "sample", ("run.seed",), "one classical sampler run")
_workflow_job("compare", "compare", ("run.seed", "train.seed"), "every sampler on one point")
_workflow_job("train", "train", ("train.seed",), "train one flow")
_workflow_job("tune", "tune", ("tune.seed",), "tune the ising beta to a target xi/L")


# ============================================================================ planning
@dataclasses.dataclass(frozen=True)
class ScanSettings:
    """The parsed ``[scan]`` section (see the module docstring)."""

    job: str
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    n_seeds: int = 1
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of a scan: a grid point, a replica, its seed and its full config.

    Attributes
    ----------
    index : int
        Position in the deterministic task order (grid order, replicas innermost).
    task_id : str
        Readable, filesystem-safe, unique id; ends with a hash of the job and config.
    point : dict
        The grid values of this task, dotted key -> value.
    replica : int
        Replica number, 0 .. n_seeds - 1.
    spawn_key : tuple of int
        The SeedSequence spawn key (axis indices, replica) under the root seed.
    seed : int
        The integer written into the job's seed keys.
    config : dict
        The full config the job receives (base config with the grid point and seed applied,
        ``[scan]`` removed, ``"tuned"`` values resolved).
    """

    index: int
    task_id: str
    point: dict[str, Any]
    replica: int
    spawn_key: tuple[int, ...]
    seed: int
    config: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ScanPlan:
    """A validated scan: settings, job and the ordered list of tasks."""

    settings: ScanSettings
    job: Job
    tasks: list[Task]
    base_config: dict[str, Any]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _check_axes(table: Any, name: str) -> dict[str, list[Any]]:
    """Check a ``grid``/``zip`` table: dotted keys, non-empty lists of TOML scalars."""
    if not isinstance(table, dict):
        raise ConfigError(f"[scan] {name} must be a table of dotted keys to lists of values")
    out: dict[str, list[Any]] = {}
    for key, values in table.items():
        if isinstance(values, dict):
            # TOML turns an unquoted a.b = [...] into a nested table: say how to write it
            raise ConfigError(
                f"[scan] {name}: {key!r} is a table; quote dotted keys, e.g. "
                f'{name} = {{ "theory.L" = [6, 8] }}'
            )
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"[scan] {name} key {key!r} must be SECTION.KEY (e.g. theory.L or sampler.kind)"
            )
        if parts[0] == "scan":
            raise ConfigError(f"[scan] {name} key {key!r}: the scan cannot vary its own section")
        if not isinstance(values, list):
            raise ConfigError(
                f"[scan] {name} {key!r} must be a list of values, got {values!r}"
                f" (write {key} = [{values!r}] for a single value)"
            )
        if not values:
            raise ConfigError(f"[scan] {name} {key!r} is an empty list: the scan has no tasks")
        for v in values:
            if isinstance(v, dict):
                raise ConfigError(f"[scan] {name} {key!r}: values must be scalars or lists")
        out[key] = list(values)
    return out


def parse_scan_settings(section: Any) -> ScanSettings:
    """Parse and check a ``[scan]`` section.

    Raises
    ------
    ConfigError
        For a missing section, unknown keys, an empty grid, or wrong types.
    """
    if section is None:
        raise ConfigError("a scan config needs a [scan] section (job, grid, n_seeds, seed)")
    if not isinstance(section, dict):
        raise ConfigError("[scan] must be a table")
    known = {"job", "grid", "zip", "n_seeds", "seed"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [scan]: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    job = section.get("job", "sample")
    if not isinstance(job, str):
        raise ConfigError(f"[scan] job must be a string, got {job!r}")
    grid = _check_axes(section.get("grid", {}), "grid")
    zipped = _check_axes(section.get("zip", {}), "zip")
    if not grid and not zipped:
        raise ConfigError(
            '[scan] the grid is empty: give at least one axis, e.g. grid = { "theory.L" = [8] }'
        )
    both = sorted(set(grid) & set(zipped))
    if both:
        raise ConfigError(f"[scan] key(s) in both grid and zip: {', '.join(both)}")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise ConfigError(f"[scan] zip lists must have equal lengths ({detail})")
    n_seeds = section.get("n_seeds", 1)
    seed = section.get("seed", 0)
    for name, value, low in (("n_seeds", n_seeds, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"[scan] {name} must be an integer >= {low}, got {value!r}")
    return ScanSettings(job=job, grid=grid, zip=zipped, n_seeds=n_seeds, seed=seed)


def _set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    """JSON encoder for NumPy scalars/arrays, paths and dataclasses found in job results."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None``, so the JSON is strict.

    Task files and summaries are read by other tools (jq, JavaScript, pandas) for which
    ``NaN`` is not JSON; ``null`` marks a missing estimate, as in ``sample --json``.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return obj


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "-".join(_format_value(v) for v in value)
    return str(value)


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """Label each dotted key by its last part where that is unambiguous (theory.L -> L)."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def make_task_id(point: Mapping[str, Any], replica: int, job: str, config: Mapping) -> str:
    """Readable, filesystem-safe id of a task: its grid values, replica and a content hash."""
    names = _short_names(list(point))
    parts = [f"{names[k]}={_format_value(v)}" for k, v in point.items()]
    parts.append(f"seed={replica}")
    label = _UNSAFE.sub("_", "__".join(parts))[:120]
    digest = hashlib.sha256(_canonical({"job": job, "config": config}).encode()).hexdigest()
    return f"{label}__{digest[:10]}"


def task_seed(root: int, spawn_key: Sequence[int]) -> int:
    """The task's integer seed: 63 bits of ``SeedSequence(root, spawn_key=...)``."""
    ss = np.random.SeedSequence(root, spawn_key=tuple(spawn_key))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def plan_scan(config: Mapping[str, Any]) -> ScanPlan:
    """Expand and validate a scan config into its ordered tasks (nothing runs).

    Raises
    ------
    ConfigError
        For a bad ``[scan]`` section or any task config the job rejects (one line, naming
        the task).
    """
    if not isinstance(config, Mapping):
        raise ConfigError("the scan config must be a table")
    settings = parse_scan_settings(config.get("scan"))
    job = _get_job(settings.job)
    for key in (*settings.grid, *settings.zip):
        if key in job.seed_keys:
            raise ConfigError(
                f"[scan] {key} is set by the scan from [scan] seed; use n_seeds for replicas"
            )
    base = {k: copy.deepcopy(v) for k, v in config.items() if k != "scan"}

    # axes in order: the zip axis (its keys move together), then each grid key
    axes: list[list[dict[str, Any]]] = []
    if settings.zip:
        n = len(next(iter(settings.zip.values())))
        axes.append([{k: v[i] for k, v in settings.zip.items()} for i in range(n)])
    for key, values in settings.grid.items():
        axes.append([{key: v} for v in values])

    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for combo in itertools.product(*(list(enumerate(a)) for a in axes)):
        point: dict[str, Any] = {}
        for _, values in combo:
            point.update(values)
        axis_key = tuple(i for i, _ in combo)
        for replica in range(settings.n_seeds):
            spawn_key = (*axis_key, replica)
            seed = task_seed(settings.seed, spawn_key)
            cfg = copy.deepcopy(base)
            for key, value in point.items():
                _set_dotted(cfg, key, value)
            cfg = _resolve_named_values(cfg)
            for key in job.seed_keys:
                _set_dotted(cfg, key, seed)
            task_id = make_task_id(point, replica, job.name, cfg)
            if job.validate is not None:
                try:
                    job.validate(cfg)
                except ConfigError as exc:
                    raise ConfigError(f"scan task {task_id}: {_one_line(exc)}") from None
            if task_id in seen:
                raise ConfigError(f"[scan] duplicate task {task_id} (repeated grid values?)")
            seen[task_id] = len(tasks)
            tasks.append(Task(len(tasks), task_id, point, replica, spawn_key, seed, cfg))
    return ScanPlan(settings, job, tasks, base)


def _resolve_named_values(config: dict[str, Any]) -> dict[str, Any]:
    """Replace named values (``theory.beta = "tuned"``) by numbers; see lattice_samplers.tune."""
    theory = config.get("theory")
    if isinstance(theory, dict) and isinstance(theory.get("beta"), str):
        from lattice_samplers.tuned import resolve_tuned

        return resolve_tuned(config)
    return config


# ============================================================================ task files
def _checksum(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:  # noqa: D103 (interim, see records)
    """Write ``obj`` as JSON to ``path`` atomically (temp file in the same folder, fsync, rename).

    A reader sees either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_task_file(path: Path, task: Task | None = None) -> dict[str, Any] | None:
    """Return the record in a task file if it is complete and intact, else ``None``.

    Intact: valid JSON of this format, the completion marker set, the checksum matching the
    content, and (given ``task``) the same task id and seed.
    """
    try:
        with Path(path).open(encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != TASK_FORMAT:
        return None
    if record.get("complete") is not True or record.get("checksum") != _checksum(record):
        return None
    if task is not None and (
        record.get("task_id") != task.task_id or record.get("seed") != task.seed
    ):
        return None
    return record


@functools.cache
def _environment() -> dict[str, Any]:
    """Versions, host and code revision of this process (cached: one lookup per worker)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("lattice_samplers", "numpy", "scipy", "numba", "torch", "dask", "distributed"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "versions": versions,
        "git": _git_revision(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def _git_revision() -> str | None:
    repo = Path(__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("-dirty" if dirty else "")) or None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ============================================================================ execution
@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Run the enclosed code single-threaded; restore thread counts of this process after.

    Environment variables only act on libraries imported later (always the case in a fresh
    worker, which also gets them before it starts); numba and torch, if already loaded, are
    set directly (numba's setting is per thread, hence per task).
    """
    saved_env = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(THREAD_ENV)
    restore: list[Callable[[], None]] = []
    if "numba" in sys.modules:
        import numba

        n = numba.get_num_threads()
        numba.set_num_threads(1)
        restore.append(lambda: numba.set_num_threads(n))
    if "torch" in sys.modules:
        import torch

        t = torch.get_num_threads()
        torch.set_num_threads(1)
        restore.append(lambda: torch.set_num_threads(t))
    try:
        yield
    finally:
        for fn in restore:
            fn()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker() -> None:
    """Process-pool initializer: single-threaded environment for the life of the worker."""
    os.environ.update(THREAD_ENV)


def execute_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one task in the current process, write its result file, return its record.

    ``payload`` holds ``task`` (a :class:`Task` as a dict), ``fn`` (the job function),
    ``job`` (its name) and ``out_dir``.  A job exception is caught: the record then has
    ``status = "failed"`` and the traceback, no result file is written, and a
    ``<task_id>.error.txt`` is left for diagnosis.  Runs on any backend's worker.
    """
    task = payload["task"]
    out_dir = Path(payload["out_dir"])
    task_dir = out_dir / "tasks"
    task_path = task_dir / f"{task['task_id']}.json"
    error_path = task_dir / f"{task['task_id']}.error.txt"
    started = _now()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    try:
        with _single_threaded():
            result = payload["fn"](copy.deepcopy(task["config"]), task_dir / task["task_id"])
        if not isinstance(result, dict):
            raise TypeError(f"job {payload['job']!r} returned {type(result).__name__}, not dict")
        # round trip through JSON now, so a non-serializable result fails here, as a task error
        result = json_safe(json.loads(json.dumps(result, default=_json_default)))
    except Exception as exc:  # noqa: BLE001 - any job failure is recorded, the scan goes on
        tb = traceback.format_exc()
        with contextlib.suppress(OSError):
            task_dir.mkdir(parents=True, exist_ok=True)
            error_path.write_text(tb, encoding="utf-8")
        return {
            "task_id": task["task_id"],
            "status": "failed",
            "error": f"{type(exc).__name__}: {_one_line(exc)}",
            "traceback": tb,
            "wall_s": time.perf_counter() - t0,
        }
    record: dict[str, Any] = {
        "format": TASK_FORMAT,
        "task_id": task["task_id"],
        "index": task["index"],
        "job": payload["job"],
        "point": task["point"],
        "replica": task["replica"],
        "root_seed": payload["root_seed"],
        "spawn_key": list(task["spawn_key"]),
        "seed": task["seed"],
        "config": task["config"],
        "result": result,
        "timing": {
            "started": started,
            "finished": _now(),
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0,
        },
        **_environment(),
        "pid": os.getpid(),
        "complete": True,
    }
    record = json_safe(json.loads(json.dumps(record, default=_json_default)))
    record["checksum"] = _checksum(record)
    write_json_atomic(task_path, record)
    with contextlib.suppress(OSError):
        error_path.unlink(missing_ok=True)
    record["status"] = "done"
    return record


def _payload(plan: ScanPlan, task: Task, out_dir: Path) -> dict[str, Any]:
    return {
        "task": dataclasses.asdict(task),
        "fn": plan.job.fn,
        "job": plan.job.name,
        "root_seed": plan.settings.seed,
        "out_dir": str(out_dir),
    }


def _default_workers(n_pending: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_pending))


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """Put THREAD_ENV into this process's environment while workers are being spawned.

    Spawned processes copy the parent's environment at start, so they see the variables
    before importing numpy, numba or torch.
    """
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(THREAD_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_serial(payloads: list[dict[str, Any]], on_done: Callable[[dict], None]) -> None:
    for p in payloads:
        on_done(execute_task(p))


def _run_process(
    payloads: list[dict[str, Any]], on_done: Callable[[dict], None], workers: int
) -> None:
    # spawn, not fork: the parent may have started numba/OpenMP threads, and forking a
    # multithreaded process can deadlock
    ctx = multiprocessing.get_context("spawn")
    with _worker_environment():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
        try:
            futures = {pool.submit(execute_task, p): p for p in payloads}
            for fut in as_completed(futures):
                on_done(_future_record(fut, futures[fut]))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _future_record(fut: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """The record of a finished future; a crashed worker becomes a failed task."""
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool, a killed Dask worker
        return {
            "task_id": payload["task"]["task_id"],
            "status": "failed",
            "error": f"{type(exc).__name__}: {_one_line(exc)}",
            "traceback": "".join(traceback.format_exception(exc)),
            "wall_s": float("nan"),
        }


def _dask_client(workers: int, scheduler: str | None, timeout: float) -> tuple[Any, Any]:
    """Connect to ``scheduler`` or start a LocalCluster; return (client, cluster or None)."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                f"({type(exc).__name__})"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"bad Dask scheduler address {scheduler!r}: {exc}") from None
        return client, None
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        env=dict(THREAD_ENV),
    )
    try:
        client = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def _run_dask(payloads: list[dict[str, Any]], on_done: Callable[[dict], None], client: Any) -> None:
    from distributed import as_completed as dask_as_completed

    token = uuid.uuid4().hex[:8]  # keys unique per call: a reused scheduler keeps old keys
    futures = {}
    for p in payloads:
        fut = client.submit(execute_task, p, key=f"scan-{p['task']['task_id']}-{token}", pure=False)
        futures[fut.key] = (fut, p)
    for fut in dask_as_completed([f for f, _ in futures.values()], loop=client.loop):
        on_done(_future_record(fut, futures[fut.key][1]))


# ============================================================================ results
@dataclasses.dataclass
class TaskRecord:
    """The outcome of one task, as returned by :func:`run_scan`.

    ``status`` is ``done`` (ran now), ``skipped`` (valid file found), ``failed`` (the job
    raised; ``error`` says why) or ``missing`` (:func:`collect_scan` on a task not yet run).
    ``record`` is the full content of the task file (empty unless done or skipped).
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


class ScanResult(list):
    """The task records of a scan in task order (a list of :class:`TaskRecord`).

    Attributes
    ----------
    out_dir : Path
        The scan directory.
    job : str
        The job name.
    n_run, n_skipped, n_failed, n_redone : int
        Tasks run now, skipped (already complete), failed, and run again because their file
        was corrupt or partial.
    wall_s : float
        Seconds this call took.
    """

    def __init__(
        self,
        records: Sequence[TaskRecord],
        out_dir: Path,
        job: Job,
        n_redone: int = 0,
        wall_s: float = 0.0,
    ) -> None:
        super().__init__(records)
        self.out_dir = Path(out_dir)
        self.job = job.name
        self._summarize = job.summarize
        self.n_redone = n_redone
        self.wall_s = wall_s

    @property
    def n_run(self) -> int:
        """Tasks that ran (successfully) in this call."""
        return sum(r.status == "done" for r in self)

    @property
    def n_skipped(self) -> int:
        """Tasks whose valid result file was already present."""
        return sum(r.status == "skipped" for r in self)

    @property
    def n_failed(self) -> int:
        """Tasks whose job raised."""
        return sum(r.status == "failed" for r in self)

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
        """The JSON summary (also written to ``summary.json``); strict JSON (no NaN)."""
        return json_safe(
            {
                "format": SUMMARY_FORMAT,
                "out_dir": str(self.out_dir),
                "job": self.job,
                "n_tasks": len(self),
                "n_run": self.n_run,
                "n_skipped": self.n_skipped,
                "n_failed": self.n_failed,
                "n_redone": self.n_redone,
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
                        "path": str(r.path) if r.path else None,
                        "result": r.result,
                    }
                    for r in self
                ],
            }
        )

    def table(self, max_width: int = 16) -> str:
        """A plain-text table of :meth:`rows` (without task ids, which are long)."""
        rows = self.rows()
        if not rows:
            return "(no tasks)"
        columns: list[str] = []
        for row in rows:
            columns.extend(c for c in row if c not in columns and c not in ("task_id", "seed"))
        if "error" in columns:  # keep the error last and untruncated
            columns.remove("error")
            columns.append("error")
        cells = [list(columns)] + [
            [_cell(row.get(c), max_width if c != "error" else 200) for c in columns] for row in rows
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


def _record_from_file(task: Task, record: dict[str, Any], status: str, path: Path) -> TaskRecord:
    return TaskRecord(
        index=task.index,
        task_id=task.task_id,
        point=task.point,
        replica=task.replica,
        seed=task.seed,
        status=status,
        result=record.get("result"),
        wall_s=record.get("timing", {}).get("wall_s"),
        path=path,
        record=record,
    )


def write_summary(result: ScanResult) -> None:
    """Write ``summary.json`` and ``summary.csv`` of a scan into its directory (atomically)."""
    write_json_atomic(result.out_dir / "summary.json", result.to_json())
    rows = result.rows()
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    path = result.out_dir / "summary.csv"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, default=_json_default)
    return value


# ============================================================================ entry points
def collect_scan(config: Mapping[str, Any], out_dir: str | Path) -> ScanResult:
    """The records of a scan's tasks as found on disk, without running anything.

    Tasks without a valid file have status ``missing``.  For analysis scripts that read a
    finished (or partial) scan.
    """
    plan = plan_scan(config)
    out = Path(out_dir)
    records = []
    for task in plan.tasks:
        path = out / "tasks" / f"{task.task_id}.json"
        rec = read_task_file(path, task)
        if rec is None:
            records.append(
                TaskRecord(task.index, task.task_id, task.point, task.replica, task.seed, "missing")
            )
        else:
            records.append(_record_from_file(task, rec, "skipped", path))
    return ScanResult(records, out, plan.job)


def run_scan(
    config: Mapping[str, Any],
    out_dir: str | Path,
    backend: Backend = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    scheduler_timeout: float = SCHEDULER_TIMEOUT_S,
) -> ScanResult:
    """Run every task of a scan that has no valid result file yet; return all task records.

    Parameters
    ----------
    config : mapping
        A scan config: base job sections plus ``[scan]`` (see the module docstring).
    out_dir : str or Path
        The scan directory; task files go to ``out_dir/tasks/``, summaries to ``out_dir``.
    backend : {"serial", "process", "dask"}
        ``serial`` runs in this process; ``process`` on a spawn-context process pool;
        ``dask`` on a new ``LocalCluster`` (one single-threaded worker process per worker) or,
        with ``scheduler`` (or the ``DASK_SCHEDULER_ADDRESS`` environment variable), on an
        existing cluster.  External workers must share ``out_dir``'s filesystem for job
        artifacts (the client writes task files itself when workers cannot) and should run
        with ``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1`` and ``--nthreads 1``.
    workers : int, optional
        Worker processes (process pool, LocalCluster); default: the usable cores, at most
        the number of pending tasks.
    scheduler : str, optional
        Address of a Dask scheduler, e.g. ``tcp://10.0.0.1:8786`` (``dask`` backend only).
    progress : bool
        Show a tqdm progress bar over tasks on stderr.
    scheduler_timeout : float
        Seconds to wait for the scheduler before failing.

    Returns
    -------
    ScanResult
        All tasks in task order with status ``done``, ``skipped`` or ``failed``;
        ``summary.csv`` and ``summary.json`` are written.  Failed tasks leave no result file
        (a later call retries them) and a ``tasks/<task_id>.error.txt`` with the traceback.

    Raises
    ------
    ConfigError
        For an invalid scan (before anything runs) or an unreachable scheduler.
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
    plan = plan_scan(config)
    out = Path(out_dir)
    task_dir = out / "tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out / "scan.json",
        {
            "config": dict(config),
            "n_tasks": len(plan.tasks),
            "tasks": [{"index": t.index, "task_id": t.task_id} for t in plan.tasks],
        },
    )

    by_id = {t.task_id: t for t in plan.tasks}
    records: dict[str, TaskRecord] = {}
    pending: list[Task] = []
    n_redone = 0
    for task in plan.tasks:
        path = task_dir / f"{task.task_id}.json"
        rec = read_task_file(path, task)
        if rec is not None:
            records[task.task_id] = _record_from_file(task, rec, "skipped", path)
        else:
            n_redone += path.exists()
            pending.append(task)

    from tqdm.auto import tqdm

    bar: Any = None

    def on_done(rec: dict[str, Any]) -> None:
        task = by_id[rec["task_id"]]
        path = task_dir / f"{task.task_id}.json"
        if rec["status"] == "done":
            if read_task_file(path, task) is None:
                # the worker wrote to a filesystem this process does not see: write it here
                body = {k: v for k, v in rec.items() if k != "status"}
                write_json_atomic(path, body)
            records[task.task_id] = _record_from_file(task, rec, "done", path)
        else:
            records[task.task_id] = TaskRecord(
                task.index,
                task.task_id,
                task.point,
                task.replica,
                task.seed,
                "failed",
                wall_s=rec.get("wall_s"),
                error=rec.get("error"),
            )
            bar.write(f"task {task.task_id} failed: {rec.get('error')}", file=sys.stderr)
        bar.update(1)

    payloads = [_payload(plan, t, out) for t in pending]
    n_workers = workers or _default_workers(len(pending))
    with contextlib.ExitStack() as stack:
        client = None
        if payloads and backend == "dask":
            # connect (or start the LocalCluster) before the progress bar: a bad address
            # should fail with one line, not after a bar has been drawn
            with _worker_environment():
                client, cluster = _dask_client(n_workers, scheduler, scheduler_timeout)
            if cluster is not None:
                stack.callback(cluster.close)
            stack.callback(client.close)
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
        if payloads:
            if backend == "serial":
                _run_serial(payloads, on_done)
            elif backend == "process":
                _run_process(payloads, on_done, n_workers)
            else:
                _run_dask(payloads, on_done, client)

    ordered = sorted(records.values(), key=lambda r: r.index)
    result = ScanResult(ordered, out, plan.job, n_redone, time.perf_counter() - t_start)
    write_summary(result)
    return result
