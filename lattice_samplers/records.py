"""The one atomic file writer, strict JSON encoding, content digests and provenance.

Everything the package writes goes through :func:`atomic_write`: the content is written to a
temporary sibling, flushed to disk and moved into place with ``os.replace``, so a reader (or
a rerun after a crash) sees either the previous file or the complete new one, never a partial
write.  A symlink at the target is written through (its target is replaced, the link stays);
anything that is not a regular file (a device node, a folder) is refused.

Inside :func:`guarded_writes` (what every command's output check,
:mod:`lattice_samplers.workflows.outputs`, sets up) a write to a protected path that this run
has not written yet is published without replacing anything (``os.link``, which fails if the
name exists): an output that appeared after the check, from another run, is never replaced,
and this run's content is kept under a free sibling name named in the error.  Temporary files
are named ``.NAME.lstmp-HOST-PID-XXXX.tmp``; one whose process is gone (killed with ``kill
-9`` mid-write) is removed by the next write of ``NAME`` on the same host.  An ``OSError``
while writing (read-only file system, full disk, file-size limit) is an :class:`OutputError`
naming the path and the reason; the previous file is untouched.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import dataclasses
import errno
import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "OutputClash",
    "OutputError",
    "OutputWriteError",
    "WriteGuard",
    "atomic_write",
    "canonical_json",
    "check_output_path",
    "digest",
    "dumps",
    "current_guard",
    "environment",
    "guarded_writes",
    "json_default",
    "json_safe",
    "now",
    "remove_stale_temporaries",
    "versions",
    "write_csv",
    "write_json",
    "write_text",
]

#: Distributions whose versions determine results (recorded in every results file).
_VERSIONED = ("lattice_samplers", "numpy", "scipy", "numba", "torch", "arviz-stats", "xarray")


class OutputError(ValueError):
    """An output path that cannot be written (reported as one line, before any work)."""


class OutputWriteError(OutputError, OSError):
    """The system refused a write (read-only file system, full disk, file too large).

    An :class:`OutputError` for the one-line report, and still an ``OSError`` for callers that
    catch those.
    """


class OutputClash(OutputError):
    """A protected output appeared, from another run, between the check and the write.

    Attributes
    ----------
    path : pathlib.Path
        The output that was not replaced.
    kept : pathlib.Path or None
        Where this run's content was kept instead (None if it could not be kept).
    """

    def __init__(self, path: Path, kept: Path | None) -> None:
        self.path, self.kept = path, kept
        where = f"this run's output is kept in {kept}" if kept else "this run's output is lost"
        super().__init__(
            f"{path} was created by another run while this one was working; it is not "
            f"replaced, {where}"
        )


@dataclasses.dataclass
class WriteGuard:
    """What a command may replace: the files it wrote itself, or everything with ``overwrite``.

    Attributes
    ----------
    overwrite : bool
        Replace protected outputs that exist (``--overwrite``).
    files : set of str
        Real paths of protected output files.
    folders : set of str
        Real paths of protected folders (every file below them is protected).
    made : set of str
        Real paths this run has written (or adopted, e.g. a checkpoint it resumes): these it
        replaces freely.
    results : list of Path
        The outputs the user asked for, as given (named when the command is stopped).
    """

    overwrite: bool = False
    files: set[str] = dataclasses.field(default_factory=set)
    folders: set[str] = dataclasses.field(default_factory=set)
    made: set[str] = dataclasses.field(default_factory=set)
    results: list[Path] = dataclasses.field(default_factory=list)

    def protects(self, real: Path) -> bool:
        """Whether ``real`` (a resolved path) may only be published if it does not exist."""
        if self.overwrite or str(real) in self.made:
            return False
        if str(real) in self.files:
            return True
        return any(str(real).startswith(folder + os.sep) for folder in self.folders)

    def made_here(self, path: str | Path) -> bool:
        """Whether this run wrote (or adopted) ``path``."""
        return os.path.realpath(path) in self.made


_GUARD: contextvars.ContextVar[WriteGuard | None] = contextvars.ContextVar(
    "lattice_samplers_write_guard", default=None
)


@contextlib.contextmanager
def guarded_writes(guard: WriteGuard | None = None) -> Iterator[WriteGuard]:
    """Within this block :func:`atomic_write` never replaces a protected file it did not make."""
    guard = guard if guard is not None else WriteGuard()
    token = _GUARD.set(guard)
    try:
        yield guard
    finally:
        _GUARD.reset(token)


def current_guard() -> WriteGuard | None:
    """The :class:`WriteGuard` of the enclosing :func:`guarded_writes` block, if any."""
    return _GUARD.get()


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
        if _read_only_fs(parent):
            raise OutputError(f"{kind} {path}: {parent} is on a read-only file system")
        raise OutputError(f"{kind} {path}: no permission to write in {parent}")
    return real


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp)`` into a temporary sibling, then move it in place.

    A failure (exception, Ctrl-C) inside ``write`` removes the temporary file and leaves any
    previous file untouched.  Inside :func:`guarded_writes`, a protected file this run did not
    make is published only if the name is still free (:class:`OutputClash` otherwise).
    Returns ``path`` as given.

    Raises
    ------
    OutputError
        If the target is not a regular file, its folder is not writable, or the system
        refuses the write (``OSError``: read-only file system, full disk, file too large).
    """
    path = Path(path)
    real = check_output_path(path)
    guard = _GUARD.get()
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(real)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{real.name}.{_TMP_TAG}-{_host()}-{os.getpid()}-", suffix=".tmp",
            dir=real.parent,
        )  # fmt: skip
        os.close(fd)
    except OSError as exc:
        raise _os_error(path, exc) from None
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if guard is not None and guard.protects(real):
            _publish_new(tmp, real)
        else:
            os.replace(tmp, real)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _os_error(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if guard is not None:
        guard.made.add(str(real))
    return path


#: Marks this package's temporary files, so that stale ones can be told from anyone else's.
_TMP_TAG = "lstmp"
_TMP_NAME = re.compile(rf"^\.(?P<name>.+)\.{_TMP_TAG}-(?P<host>[\w-]*)-(?P<pid>\d+)-[^.]*\.tmp$")


def _host() -> str:
    return re.sub(r"[^\w-]", "_", socket.gethostname())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: a process of another user has this pid
        return True
    return True


def remove_stale_temporaries(target: str | Path, any_name: bool = False) -> list[Path]:
    """Remove the temporaries of writes of ``target`` whose process on this host is gone.

    A write killed by SIGKILL (or a power cut) leaves its hidden temporary behind; it can never
    be completed, so the next write of the same file removes it (with ``any_name``: of any
    file in ``target``'s folder, what the output check does before a run).  Files of live
    processes, of other hosts and of other programs are left alone.  Returns the removed paths.
    """
    target = Path(target)
    removed: list[Path] = []
    pattern = "*" if any_name else glob_escape(target.name)
    try:
        candidates = list(target.parent.glob(f".{pattern}.{_TMP_TAG}-*.tmp"))
    except OSError:
        return removed
    host = _host()
    for tmp in candidates:
        m = _TMP_NAME.match(tmp.name)
        if m is None or (m["name"] != target.name and not any_name) or m["host"] != host:
            continue
        if int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _publish_new(tmp: Path, real: Path) -> None:
    """Move ``tmp`` to ``real`` only if ``real`` does not exist; else keep it beside, and raise."""
    try:
        os.link(tmp, real)  # atomic, and fails if the name exists: no window for a clobber
    except FileExistsError:
        raise OutputClash(real, _keep_aside(tmp, real)) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # a file system without hard links: reserve the name, then replace the reservation
        try:
            os.close(os.open(real, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise OutputClash(real, _keep_aside(tmp, real)) from None
        os.replace(tmp, real)
        return
    tmp.unlink(missing_ok=True)


def _keep_aside(tmp: Path, real: Path) -> Path | None:
    """Give ``tmp`` a visible free name beside ``real`` (``NAME.PID.SUFFIX``); None if none."""
    stem, suffix = (real.stem, real.suffix) if real.suffix else (real.name, "")
    for i in range(100):
        tag = f"{os.getpid()}" + (f"-{i}" if i else "")
        candidate = real.with_name(f"{stem}.{tag}{suffix}")
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            continue
        except OSError:
            try:
                fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                continue
            except OSError:
                return None
            os.close(fd)
            os.replace(tmp, candidate)
            return candidate
        tmp.unlink(missing_ok=True)
        return candidate
    return None


def _os_error(path: Path, exc: OSError) -> OutputWriteError:
    """One line for a write the system refused: the path and the reason."""
    reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    if exc.errno is not None and exc.errno in errno.errorcode:
        reason = f"{reason} ({errno.errorcode[exc.errno]})"
    return OutputWriteError(f"cannot write {path}: {reason}; any earlier file there is unchanged")


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
