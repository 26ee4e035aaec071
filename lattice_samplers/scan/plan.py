"""Scan planning: the ``[scan]`` section, the job interface, task seeds and content ids.

A plan is pure: it reads the config (and, for path-valued axes, the bytes or task records the
paths name), asks each task's job to validate it, and writes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers.config import ConfigError, set_dotted
from lattice_samplers.records import digest
from lattice_samplers.scan.taskfiles import file_sha256

__all__ = [
    "Job",
    "JobFunction",
    "ScanPlan",
    "ScanSettings",
    "Task",
    "content_id",
    "get_job",
    "make_task_id",
    "one_line",
    "parse_scan_settings",
    "plan_scan",
    "relocate_paths",
    "resolve_paths",
    "scan_axes",
    "task_seed",
]

JobFunction = Callable[[dict[str, Any], Path], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Job:
    """What one task of a scan runs, and how its config is prepared and checked.

    Calling the job, ``job(config, out_path)``, runs it.  The scan engine knows jobs only
    through this interface; :mod:`lattice_samplers.jobs` builds the table of the package's
    workflows, and the caller passes such a table (name -> Job) to the engine.

    Attributes
    ----------
    name : str
        The name used in ``[scan] job = ...``.
    fn : callable
        ``fn(config, out_path) -> dict``: runs one task from its full config (sections as in
        a single-job TOML file, seed set, path values absolute) and returns a
        JSON-serializable result.  ``out_path`` is the task's own folder (not created) for
        artifacts.  Must be a module-level function so process and Dask workers can
        unpickle it.
    validate : callable or None
        ``validate(config)`` raises :class:`~lattice_samplers.config.ConfigError` for an
        invalid task config; run on every task before the scan starts (parent only).
    prepare : callable or None
        ``prepare(config) -> config``: replaces named values by numbers before the task id
        is formed (e.g. ``theory.beta = "tuned"`` by the tabulated beta).  Parent only.
    seed_keys : tuple of str
        Dotted config keys that receive the task's seed (e.g. ``("run.seed",)``).
    path_keys : tuple of str
        Dotted config keys whose values are filesystem paths.  The scan stores them relative
        to the scan folder, resolves them against it when a task runs, and identifies them
        in task ids by a content id (:func:`content_id`), never by the path.
    summarize : callable or None
        ``summarize(result) -> dict`` of a few scalars for the summary table; by default the
        scalar entries of the result (nested dicts flattened with dots).
    description : str
        One line for listings.
    """

    name: str
    fn: JobFunction
    validate: Callable[[dict[str, Any]], None] | None = None
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    seed_keys: tuple[str, ...] = ("run.seed",)
    path_keys: tuple[str, ...] = ()
    summarize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for key in (*self.seed_keys, *self.path_keys):
            if len(key.split(".")) < 2:
                raise ValueError(f"job {self.name!r}: key {key!r} must be dotted, e.g. 'run.seed'")

    def __call__(self, config: dict[str, Any], out_path: Path) -> dict[str, Any]:
        """Run the job on one task config."""
        return self.fn(config, out_path)


@dataclasses.dataclass(frozen=True)
class ScanSettings:
    """The parsed ``[scan]`` section."""

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
        Readable, filesystem-safe id with no path in it; ends with a hash of the job and the
        config (path values replaced by content ids).
    point : dict
        The grid values of this task, dotted key -> value (paths relative to the scan folder).
    replica : int
        Replica number, 0 .. n_seeds - 1.
    spawn_key : tuple of int
        The SeedSequence spawn key (axis indices, replica) under the root seed.
    seed : int
        The integer written into the job's seed keys.
    config : dict
        The full config the job receives, ``[scan]`` removed, named values resolved, path
        values relative to the scan folder (resolved against it when the task runs).
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
    """A validated scan: settings, job, the ordered tasks and the (portable) scan config."""

    settings: ScanSettings
    job: Job
    tasks: list[Task]
    base_config: dict[str, Any]
    config: dict[str, Any]


def one_line(exc: BaseException | str) -> str:
    """The message of ``exc`` on one line."""
    return " ".join(str(exc).split())


def get_job(jobs: Mapping[str, Job], name: str) -> Job:
    """The job ``name`` of the table ``jobs``, or a one-line :class:`ConfigError`."""
    if name not in jobs:
        known = ", ".join(sorted(jobs)) or "none"
        raise ConfigError(f"[scan] unknown job {name!r} (known: {known})")
    return jobs[name]


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


def scan_axes(config: Mapping[str, Any]) -> dict[str, str]:
    """Dotted key -> ``"grid"`` or ``"zip"`` for every axis of a scan config (unchecked)."""
    section = config.get("scan")
    out: dict[str, str] = {}
    if isinstance(section, Mapping):
        for kind in ("zip", "grid"):
            table = section.get(kind)
            if isinstance(table, Mapping):
                out.update(dict.fromkeys(table, kind))
    return out


def _get_dotted(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# ---------------------------------------------------------------------------- paths
def _move(value: Any, src: Path, dst: Path) -> Any:
    """A path value relative to ``src`` (or absolute) re-expressed relative to ``dst``."""
    if not isinstance(value, str) or not value:
        return value
    full = os.path.normpath(os.path.join(os.path.abspath(src), value))
    return Path(os.path.relpath(full, os.path.abspath(dst))).as_posix()


def relocate_paths(
    config: Mapping[str, Any], path_keys: Sequence[str], src: str | Path, dst: str | Path
) -> dict[str, Any]:
    """A copy of a scan config with its path values re-expressed relative to ``dst``.

    Path values (in the job sections and in the ``grid``/``zip`` lists of ``[scan]``) are
    read relative to ``src`` (absolute ones as they are) and written relative to ``dst``,
    so the scan folder ``dst`` records no absolute path.
    """
    out = copy.deepcopy(dict(config))
    scan = out.get("scan") if isinstance(out.get("scan"), dict) else {}
    for key in path_keys:
        value = _get_dotted(out, key)
        if isinstance(value, str):
            set_dotted(out, key, _move(value, Path(src), Path(dst)))
        for kind in ("grid", "zip"):
            table = scan.get(kind)
            if isinstance(table, dict) and isinstance(table.get(key), list):
                table[key] = [_move(v, Path(src), Path(dst)) for v in table[key]]
    return out


def resolve_paths(
    config: Mapping[str, Any], path_keys: Sequence[str], base: str | Path
) -> dict[str, Any]:
    """A copy of a task config with its relative path values made absolute against ``base``."""
    out = copy.deepcopy(dict(config))
    for key in path_keys:
        value = _get_dotted(out, key)
        if isinstance(value, str) and value:
            set_dotted(out, key, os.path.normpath(os.path.join(os.path.abspath(base), value)))
    return out


def content_id(path: str | Path) -> str:
    """A short id of what ``path`` holds, independent of where it is.

    A folder that is a scan task's artifact folder (``.../tasks/<task_id>/`` beside
    ``<task_id>.json``) is identified by the producing task's hash (the end of its id); a file
    by the SHA-256 of its bytes; another folder by the digest of its files' names and bytes.

    Raises
    ------
    ConfigError
        If ``path`` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        if path.parent.name == "tasks" and (path.parent / f"{path.name}.json").is_file():
            return "task-" + path.name.rsplit("__", 1)[-1]
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return digest([[p.relative_to(path).as_posix(), file_sha256(p)] for p in files], 10)
    if path.is_file():
        return file_sha256(path)[:10]
    raise ConfigError(f"{path} does not exist")


# ---------------------------------------------------------------------------- ids and seeds
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
    """Readable, filesystem-safe id of a task: its grid values, replica and a content hash.

    ``point`` and ``config`` must hold content ids, not paths, for path-valued keys.
    """
    names = _short_names(list(point))
    parts = [f"{names[k]}={_format_value(v)}" for k, v in point.items()]
    parts.append(f"seed={replica}")
    label = _UNSAFE.sub("_", "__".join(parts))[:120]
    return f"{label}__{digest({'job': job, 'config': config}, 10)}"


def task_seed(root: int, spawn_key: Sequence[int]) -> int:
    """The task's integer seed: 63 bits of ``SeedSequence(root, spawn_key=...)``."""
    ss = np.random.SeedSequence(root, spawn_key=tuple(spawn_key))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def plan_scan(
    config: Mapping[str, Any], jobs: Mapping[str, Job], base_dir: str | Path | None = None
) -> ScanPlan:
    """Expand and validate a scan config into its ordered tasks (nothing runs or is written).

    Parameters
    ----------
    config : mapping
        Job sections plus ``[scan]``.
    jobs : mapping of str to Job
        The job table (e.g. :data:`lattice_samplers.jobs.JOBS`).
    base_dir : str or Path, optional
        The folder relative path values are read against (the scan folder for a recorded
        scan); default: the current folder.

    Raises
    ------
    ConfigError
        For a bad ``[scan]`` section or any task config the job rejects (one line, naming
        the task).
    """
    if not isinstance(config, Mapping):
        raise ConfigError("the scan config must be a table")
    settings = parse_scan_settings(config.get("scan"))
    job = get_job(jobs, settings.job)
    for key in (*settings.grid, *settings.zip):
        if key in job.seed_keys:
            raise ConfigError(
                f"[scan] {key} is set by the scan from [scan] seed; use n_seeds for replicas"
            )
    base_dir = os.path.abspath(base_dir if base_dir is not None else os.getcwd())
    base = {k: copy.deepcopy(v) for k, v in config.items() if k != "scan"}

    # axes in order: the zip axis (its keys move together), then each grid key
    axes: list[list[dict[str, Any]]] = []
    if settings.zip:
        n = len(next(iter(settings.zip.values())))
        axes.append([{k: v[i] for k, v in settings.zip.items()} for i in range(n)])
    for key, values in settings.grid.items():
        axes.append([{key: v} for v in values])

    ids: dict[str, str] = {}

    def identify(value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        if value not in ids:
            try:
                ids[value] = content_id(os.path.normpath(os.path.join(base_dir, value)))
            except ConfigError as exc:
                raise ConfigError(f"scan: path {value!r}: {exc}") from None
        return ids[value]

    tasks: list[Task] = []
    seen: set[str] = set()
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
                set_dotted(cfg, key, value)
            if job.prepare is not None:
                cfg = job.prepare(cfg)
            for key in job.seed_keys:
                set_dotted(cfg, key, seed)
            id_cfg, id_point = copy.deepcopy(cfg), dict(point)
            for key in job.path_keys:
                if _get_dotted(id_cfg, key) is not None:
                    set_dotted(id_cfg, key, identify(_get_dotted(id_cfg, key)))
                if key in id_point:
                    id_point[key] = identify(id_point[key])
            task_id = make_task_id(id_point, replica, job.name, id_cfg)
            if job.validate is not None:
                try:
                    job.validate(resolve_paths(cfg, job.path_keys, base_dir))
                except ConfigError as exc:
                    raise ConfigError(f"scan task {task_id}: {one_line(exc)}") from None
            if task_id in seen:
                raise ConfigError(f"[scan] duplicate task {task_id} (repeated grid values?)")
            seen.add(task_id)
            tasks.append(Task(len(tasks), task_id, point, replica, spawn_key, seed, cfg))
    return ScanPlan(settings, job, tasks, base, copy.deepcopy(dict(config)))
