"""Shared plumbing of the studies: provenance, atomic writing, generated tables and READMEs.

Nothing here records an absolute path: paths in the provenance are relative to the folder
of the file that records them (or to the source tree).  Generated text goes between markers
(:func:`write_between_markers`), so a study rewrites its own table or README section and
leaves the hand-written text around it alone.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lattice_samplers.jobs import JOBS
from lattice_samplers.records import versions, write_csv, write_json, write_text

__all__ = [
    "DATA",
    "JOBS",
    "RESULTS",
    "ROOT",
    "command_line",
    "finish",
    "hardware",
    "in_committed_data",
    "plus_minus",
    "provenance",
    "publish_table",
    "recorded_command",
    "report",
    "write_between_markers",
    "write_csv",
    "write_data_readme",
    "write_json",
    "write_text",
]

#: The source tree (the folder holding ``studies/``, ``data/`` and ``docs/``).
ROOT = Path(__file__).resolve().parents[1]
#: Committed data, one folder per study.
DATA = ROOT / "data"
#: The results pages, one per study; their tables are written by the studies.
RESULTS = ROOT / "docs" / "results"


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
        "command": command_line(folder),
        "arguments": {k: _portable(v, folder) for k, v in vars(args).items()},
        "versions": versions(),
        "hardware": hardware(),
        "git_revision": rev,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "elapsed_s": time.perf_counter() - started,
    }


def command_line(folder: Path | None = None) -> str:
    """This run's command as typed from the repository root: ``python -m studies.NAME ...``.

    Absolute path arguments are written relative to ``folder`` (default: the source tree).
    """
    folder = ROOT if folder is None else folder
    script = Path(sys.argv[0])
    head = f"python -m studies.{script.stem}" if script.suffix == ".py" else script.name
    args = [_portable(Path(a), folder) if os.path.isabs(a) else a for a in sys.argv[1:]]
    return " ".join([head, *args])


def plus_minus(value: Any, err: Any = None, spec: str = ".3g", err_spec: str = ".2g") -> str:
    """``value ± err`` for a table cell ("" without a value, just the value without an error)."""
    if value is None:
        return ""
    text = format(value, spec)
    return text if err is None else f"{text} ± {format(err, err_spec)}"


def report(paths: Iterable[Path]) -> None:
    """Print what a script wrote (relative to the working folder where it is inside it)."""
    here = Path.cwd().resolve()
    for p in paths:
        try:
            p = Path(p).resolve().relative_to(here)
        except ValueError:
            pass
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


def write_between_markers(path: Path, tag: str, body: str, create: str | None = None) -> Path:
    """Replace the text between ``<!-- TAG -->`` and ``<!-- /TAG-KIND -->`` in ``path``.

    ``tag`` is ``KIND:NAME`` (e.g. ``table:training``); the closing marker is ``<!-- /KIND
    -->``.  Without the markers the file is refused (a page whose table moved is an error to
    fix, not a place to append), unless ``create`` is given: then the marked section is added
    at the end, under ``create`` as the file's first line if the file does not exist yet.
    """
    kind = tag.split(":", 1)[0]
    start, end = f"<!-- {tag} -->", f"<!-- /{kind} -->"
    section = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return write_text(path, pattern.sub(lambda _: section, text, count=1))
    if create is None:
        raise SystemExit(f"{path}: no '{start}' ... '{end}' markers to write the table between")
    text = text.rstrip() + "\n\n" if text else create.rstrip() + "\n\n"
    return write_text(path, text + section + "\n")


def in_committed_data(out: Path) -> bool:
    """Whether ``out`` is inside the committed ``data/`` folder (then docs tables are updated)."""
    try:
        out.resolve().relative_to(DATA)
    except ValueError:
        return False
    return True


def publish_table(out: Path, page: str, name: str, table: str) -> list[Path]:
    """Write ``table`` to ``OUT/NAME.md`` and, for committed data, into its results page.

    The page is ``docs/results/PAGE.md``, between ``<!-- table:NAME -->`` and
    ``<!-- /table -->``; runs outside ``data/`` (``--quick``, scratch folders) leave the docs
    alone.
    """
    written = [write_text(out / f"{name}.md", table)]
    if in_committed_data(out):
        written.append(write_between_markers(RESULTS / f"{page}.md", f"table:{name}", table))
    return written


#: Script names of the data recorded before the studies became modules -> module names.
_RENAMED = {
    "flow_training_scaling.py": "training_cost",
    "sampler_scaling.py": "sampler_cost",
    "flows_v2.py": "flow_families",
    "cnf_density_error.py": "cnf_density_error",
    "autocorrelation.py": "tau_estimators",
}


def recorded_command(saved: dict[str, Any]) -> str:
    """The command recorded in a summary's provenance, as a ``python -m studies.NAME`` line."""
    command = saved.get("provenance", {}).get("command", "")
    head, _, rest = command.partition(" ")
    if head in _RENAMED:
        return f"python -m studies.{_RENAMED[head]} {rest}".rstrip()
    if head.endswith(".py"):
        return f"python -m studies.{Path(head).stem} {rest}".rstrip()
    return command


def write_data_readme(
    out: Path, study: str, what: str, files: Iterable[str], command: str | None = None
) -> Path:
    """Write this study's section of ``OUT/README.md``: what is there and the command.

    Several studies can share a data folder (the sampler scan lives beside the flows it
    loads); each one rewrites only its own section (``<!-- study:NAME -->``).  ``command``
    defaults to this run's; a replot passes the one recorded with the data.
    """
    # a summary JSON is written last (with the provenance), so it counts as present
    files = [f for f in files if (out / f).exists() or f.endswith("summary.json")]
    listing = "\n".join(f"- `{f}`" for f in files)
    what = textwrap.fill(" ".join(what.split()), width=95)
    body = (
        f"## {study}\n\n{what}\n\nMade by (from the repository root, "
        f"`studies/{study}.py`):\n\n```bash\n{command or command_line(ROOT)}\n```\n\n{listing}\n"
    )
    title = (
        f"# data/{out.resolve().relative_to(DATA).as_posix()}"
        if in_committed_data(out)
        else (f"# {out.name}")
    )
    title += "\n\nGenerated by the studies named below (each writes its own section)."
    return write_between_markers(out / "README.md", f"study:{study}", body, create=title)
