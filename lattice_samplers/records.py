"""The one atomic file writer, strict JSON encoding, content digests and provenance.

Everything the package writes goes through :func:`atomic_write`: the content is written to a
temporary sibling, flushed to disk and moved into place with ``os.replace``, so a reader (or
a rerun after a crash) sees either the previous file or the complete new one, never a partial
write.  A symlink at the target is written through (its target is replaced, the link stays);
anything that is not a regular file (a device node, a folder) is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "OutputError",
    "atomic_write",
    "canonical_json",
    "check_output_path",
    "digest",
    "dumps",
    "environment",
    "json_default",
    "json_safe",
    "now",
    "versions",
    "write_csv",
    "write_json",
    "write_text",
]

#: Distributions whose versions determine results (recorded in every results file).
_VERSIONED = ("lattice_samplers", "numpy", "scipy", "numba", "torch", "arviz-stats", "xarray")


class OutputError(ValueError):
    """An output path that cannot be written (reported as one line, before any work)."""


def json_default(obj: Any) -> Any:
    """JSON encoder hook for NumPy scalars and arrays, paths, dataclasses, tuples and sets."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None``, so the JSON is strict.

    Records are read by other tools (jq, JavaScript, pandas) for which ``NaN`` is not JSON;
    ``null`` marks a missing estimate.  NumPy scalars and arrays are converted on the way.
    """
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (non-finite floats as null)."""
    return json.dumps(json_safe(obj), indent=indent, default=json_default, allow_nan=False)


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: equal content gives equal text (for digests)."""
    return json.dumps(json_safe(obj), sort_keys=True, separators=(",", ":"), default=json_default)


def digest(obj: Any, length: int = 64) -> str:
    """SHA-256 hex digest of the canonical JSON of ``obj`` (first ``length`` characters)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def check_output_path(path: str | Path, kind: str = "output") -> Path:
    """Return the real file that writing ``path`` will replace, or raise :class:`OutputError`.

    Symlinks are followed (a write replaces the link's target, the link stays).  An existing
    target that is not a regular file, or a parent folder that exists but is not writable,
    is refused; a missing parent folder is fine (it is created on write).
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    if real.exists() and not real.is_file():
        what = "a folder" if real.is_dir() else "not a regular file"
        raise OutputError(f"{kind} {path} is {what}; refusing to replace it")
    parent = real.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{kind} {path}: cannot create it, {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{kind} {path}: no permission to write in {parent}")
    return real


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp)`` into a temporary sibling, then ``os.replace``.

    A failure (exception, Ctrl-C) inside ``write`` removes the temporary file and leaves any
    previous file untouched.  Returns ``path`` as given.

    Raises
    ------
    OutputError
        If the target is not a regular file or its folder is not writable.
    """
    path = Path(path)
    real = check_output_path(path)
    real.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, real)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (NaN as null) to ``path`` atomically."""
    return write_text(path, dumps(obj, indent=indent) + "\n")


def write_csv(
    path: str | Path, rows: Iterable[Mapping[str, Any]], fieldnames: list[str] | None = None
) -> Path:
    """Write dict rows as CSV atomically; columns are ``fieldnames`` or the union in order.

    Non-finite floats and ``None`` are written as empty cells.
    """
    rows = list(rows)
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return write_text(path, buf.getvalue())


def _csv_cell(value: Any) -> Any:
    value = json_safe(value)
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


@functools.cache
def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages that determine results."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in _VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


@functools.cache
def environment() -> dict[str, Any]:
    """Provenance of this process: versions, code revision, host and CPU count (cached)."""
    return {
        "versions": versions(),
        "git": _git_revision(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def _git_revision() -> str | None:
    """Commit of the package's source tree when it is a git checkout (editable install)."""
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


def now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
