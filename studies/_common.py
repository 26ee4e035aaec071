"""Shared plumbing of the analysis scripts: provenance, atomic CSV/JSON writing, printing.

Nothing here records an absolute path: paths in the provenance are relative to the folder
of the file that records them (or to the source tree).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python analysis/x.py` from a source checkout
    sys.path.insert(0, str(ROOT))

from lattice_samplers.jobs import JOBS  # noqa: E402,F401 (re-exported)
from lattice_samplers.records import versions, write_csv, write_json  # noqa: E402,F401

__all__ = [
    "JOBS",
    "finish",
    "hardware",
    "plus_minus",
    "provenance",
    "report",
    "write_csv",
    "write_json",
]


def hardware() -> dict[str, Any]:
    """What ran this: CPU count and model, and the GPU if torch sees one."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "machine": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def _portable(value: Any, folder: Path) -> Any:
    """A path argument relative to ``folder`` (absolute paths are never recorded)."""
    if isinstance(value, Path):
        return Path(os.path.relpath(value.resolve(), folder.resolve())).as_posix()
    return value


def provenance(args: Any, started: float, folder: Path | None = None) -> dict[str, Any]:
    """Command line, versions, hardware, git revision and elapsed time of a script run.

    Path arguments are recorded relative to ``folder`` (default: the source tree).
    """
    folder = ROOT if folder is None else folder
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return {
        "command": " ".join(
            [Path(sys.argv[0]).name]
            + [_portable(Path(a), folder) if os.path.isabs(a) else a for a in sys.argv[1:]]
        ),
        "arguments": {k: _portable(v, folder) for k, v in vars(args).items()},
        "versions": versions(),
        "hardware": hardware(),
        "git_revision": rev,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "elapsed_s": time.perf_counter() - started,
    }


def plus_minus(value: Any, err: Any = None, spec: str = ".3g", err_spec: str = ".2g") -> str:
    """``value ± err`` for a table cell ("" without a value, just the value without an error)."""
    if value is None:
        return ""
    text = format(value, spec)
    return text if err is None else f"{text} ± {format(err, err_spec)}"


def report(paths: Iterable[Path]) -> None:
    """Print what a script wrote."""
    for p in paths:
        print(f"wrote {p}")


def finish(
    scan: Any, written: list[Path], json_path: Path, payload: dict, args: Any, started: float
) -> int:
    """Write the summary JSON (payload + provenance + failed tasks), print the scan table and
    what was written; the exit status is 1 if a task failed."""
    payload = {
        **payload,
        "provenance": provenance(args, started, json_path.parent),
        "failed": [r.task_id for r in scan if r.status == "failed"],
    }
    written.append(write_json(json_path, payload))
    print(scan.table())
    report(written)
    return 0 if scan.ok else 1
