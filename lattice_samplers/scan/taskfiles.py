"""Task records on disk: checksummed JSON files, digests of task outputs, and claim files.

Layout of a scan folder ``DIR``::

    DIR/scan.json               the scan (config with paths relative to DIR, task ids)
    DIR/tasks/<task_id>.json    one record per finished task (written last, atomically)
    DIR/tasks/<task_id>/        the task's own artifacts (results.nc, checkpoints, ...)
    DIR/tasks/<task_id>.claim   while a process runs the task (pid, host)
    DIR/summary.csv, summary.json

A record is valid when it parses, has this format, its completion marker and checksum agree
with its content, and every output file it lists that is present has the recorded size and
SHA-256 (an absent one is reported, not held against the record).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lattice_samplers.records import canonical_json, now

__all__ = [
    "absent_outputs",
    "SCAN_FORMAT",
    "TASK_FORMAT",
    "Claim",
    "checksum",
    "check_task_file",
    "claim_is_stale",
    "claim_task",
    "file_sha256",
    "output_digests",
    "read_task_file",
    "release_claim",
    "task_paths",
    "verify_outputs",
]

#: Format tag of a task record; bump when the layout changes (old files are redone).
TASK_FORMAT = "lattice_samplers.scan.task/1"
#: Format tag of scan.json.
SCAN_FORMAT = "lattice_samplers.scan/1"


def task_paths(out_dir: str | Path, task_id: str) -> dict[str, Path]:
    """The files of task ``task_id`` in scan folder ``out_dir``: record, folder, claim, error."""
    tasks = Path(out_dir) / "tasks"
    return {
        "record": tasks / f"{task_id}.json",
        "folder": tasks / task_id,
        "claim": tasks / f"{task_id}.claim",
        "error": tasks / f"{task_id}.error.txt",
    }


def checksum(record: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``record`` without its ``checksum`` entry."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def output_digests(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Relative path (POSIX) -> ``{"size", "sha256"}`` of every regular file under ``folder``.

    Temporary files of atomic writes (``.*.tmp``) are left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink() and not p.name.endswith(".tmp"):
            out[p.relative_to(folder).as_posix()] = {
                "size": p.stat().st_size,
                "sha256": file_sha256(p),
            }
    return out


def verify_outputs(folder: str | Path, outputs: Mapping[str, Any]) -> str | None:
    """``None`` if every listed output present in ``folder`` has its size and digest.

    A listed output that is absent is not a damage (large artifacts such as checkpoints and
    netCDF files are often not copied or committed along with the records; see
    :func:`absent_outputs`); one whose size or bytes differ is, and the reason is returned.
    """
    folder = Path(folder)
    for name, want in outputs.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        except OSError:
            return f"output {name} cannot be read"
        if size != want.get("size"):
            return f"output {name} has {size} bytes, recorded {want.get('size')}"
        if want.get("sha256") and file_sha256(path) != want["sha256"]:
            return f"output {name} differs from its recorded digest"
    return None


def absent_outputs(folder: str | Path, outputs: Mapping[str, Any]) -> list[str]:
    """The outputs listed in a record that are not in ``folder``."""
    return [name for name in outputs if not (Path(folder) / name).exists()]


def check_task_file(
    path: str | Path, task_id: str | None = None, seed: int | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) if the task file is complete and intact, else (None, why not).

    ``why`` is ``"missing"`` for an absent file and a short reason for a corrupt one.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    if not isinstance(record, dict) or record.get("format") != TASK_FORMAT:
        return None, "not a task record of this format"
    if record.get("complete") is not True:
        return None, "incomplete"
    if record.get("checksum") != checksum(record):
        return None, "checksum mismatch"
    if task_id is not None and record.get("task_id") != task_id:
        return None, f"holds task {record.get('task_id')!r}"
    if seed is not None and record.get("seed") != seed:
        return None, "seed differs"
    problem = verify_outputs(path.with_suffix(""), record.get("outputs") or {})
    if problem:
        return None, problem
    return record, None


def read_task_file(path: str | Path, task: Any = None) -> dict[str, Any] | None:
    """The record in a task file if it is complete and intact (see :func:`check_task_file`).

    Given ``task`` (a :class:`~lattice_samplers.scan.plan.Task`), its id and seed must match.
    """
    if task is None:
        return check_task_file(path)[0]
    return check_task_file(path, task.task_id, task.seed)[0]


# ---------------------------------------------------------------------------- claims
Claim = Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_is_stale(claim: Path) -> bool:
    """True if the claim was made on this host by a process that no longer runs."""
    try:
        info = json.loads(claim.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        # being written right now, or garbage: garbage older than a minute is stale
        with contextlib.suppress(OSError):
            return time.time() - claim.stat().st_mtime > 60
        return True
    if info.get("host") != socket.gethostname():
        return False  # cannot tell whether a process on another host runs
    return not _pid_alive(int(info.get("pid", -1)))


def claim_task(claim: str | Path) -> Claim | None:
    """Claim a task by creating ``claim`` exclusively; ``None`` if another live process has it.

    A claim left by a dead process of this host is taken over.  The claim holds the pid, the
    host and the time; :func:`release_claim` removes it.
    """
    claim = Path(claim)
    claim.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not claim_is_stale(claim):
                return None
            # take over: rename the stale claim away atomically, so two processes taking
            # it over at once do not both succeed
            grave = claim.with_name(f".{claim.name}.{os.getpid()}.stale")
            try:
                os.rename(claim, grave)
            except FileNotFoundError:
                continue
            if not claim_is_stale(grave):
                # another process took the stale claim over between our check and the
                # rename: give its claim back and leave the task to it
                with contextlib.suppress(OSError):
                    os.link(grave, claim)
                grave.unlink(missing_ok=True)
                return None
            grave.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": now()}, f)
        return claim
    return None


def release_claim(claim: Claim | None) -> None:
    """Remove a claim made by :func:`claim_task` (nothing if ``None`` or already gone)."""
    if claim is not None:
        with contextlib.suppress(OSError):
            Path(claim).unlink()
