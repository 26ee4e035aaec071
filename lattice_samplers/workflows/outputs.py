"""The one output check of every command: nothing a user has is replaced unless asked.

Rule: an output that exists and was not made by this very run is never replaced without
``--overwrite`` (or ``--resume``, which adopts the checkpoint it continues).  It is checked
twice:

1. before any work, by :func:`check_outputs`, over the whole set of files the command would
   write (one line naming what is there and what it looks like: a comparison, a training
   folder, a checkpoint, a results file, a file of another program); hidden temporaries of
   earlier runs killed mid-write (``kill -9``) are removed there;
2. at the moment of writing, by :func:`protected`: inside it the one atomic writer
   (:func:`lattice_samplers.records.atomic_write`) publishes a protected file this run has not
   written yet only if its name is still free, so of two runs started with the same ``--out``
   the second to finish gets a one-line :class:`~lattice_samplers.records.OutputClash` and its
   output is kept beside under ``NAME.PID.SUFFIX`` (named in the message), never lost.

The command line (:mod:`lattice_samplers.cli`) opens one guard per command; a workflow called
as a library opens its own.  :func:`completed_results` lists the results the current command
has written (so a stop after them can say they are complete).
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lattice_samplers.config import ConfigError
from lattice_samplers.records import (
    OutputError,
    WriteGuard,
    check_output_path,
    current_guard,
    guarded_writes,
    remove_stale_temporaries,
)

__all__ = [
    "TRAINING_FILES",
    "OutputClaim",
    "check_outputs",
    "completed_results",
    "describe",
    "protected",
    "same_file",
]

#: The files a flow training writes into its folder (the names of
#: :mod:`lattice_samplers.workflows.train.session`; a test keeps the two lists equal).
TRAINING_FILES: tuple[str, ...] = ("checkpoint.pt", "history.csv", "summary.json", "training.png")

#: Files whose presence names what a folder holds, in the order they are tried.
_FOLDER_MARKERS: tuple[tuple[str, str], ...] = (
    ("scan.json", "a scan"),
    ("analysis.json", "an analysis"),
    ("checkpoint.pt", "a flow training"),
    ("history.csv", "a flow training's records"),
)


@dataclass(frozen=True)
class OutputClaim:
    """The outputs of one run, checked: what it may write and what it may replace.

    Attributes
    ----------
    files : tuple of Path
        Every file the run writes (protected).
    folders : tuple of Path
        Folders every file below which is protected (figures, a flow's training output).
    overwrite : bool
        ``--overwrite`` was given: existing outputs may be replaced.
    adopt : tuple of Path
        Existing files this run continues (the checkpoint of ``--resume``): it replaces them.
    results : tuple of Path
        The results the user asked for (named when the command is stopped after them).
    """

    files: tuple[Path, ...] = ()
    folders: tuple[Path, ...] = ()
    overwrite: bool = False
    adopt: tuple[Path, ...] = ()
    results: tuple[Path, ...] = ()


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (after symlinks; the file need not exist)."""
    return os.path.realpath(a) == os.path.realpath(b)


def describe(path: str | Path) -> str:
    """What an existing output looks like, in a few words (for the messages)."""
    path = Path(path)
    if path.is_dir():
        summary = path / "summary.json"
        if summary.is_file():
            try:
                doc = json.loads(summary.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                doc = {}
            if isinstance(doc, dict) and "samplers" in doc:
                return "a comparison"
            if isinstance(doc, dict) and ("stop_reason" in doc or "train" in doc):
                return "a flow training"
        for name, what in _FOLDER_MARKERS:
            if (path / name).exists():
                return what
        return "a folder"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return "a file"
    if head.startswith(b"\x89HDF"):
        return "a netCDF file"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except (OSError, zipfile.BadZipFile):
            return "a damaged archive"
        if "meta.npy" in names:
            return "a checkpoint of an earlier run"
        if "data.pkl" in names or any(n.endswith("/data.pkl") for n in names):
            return "a torch file (a flow checkpoint?)"
        return "a zip archive"
    return "a file this run did not write"


def check_outputs(
    *,
    files: Iterable[str | Path] = (),
    folders: Iterable[str | Path] = (),
    overwrite: bool = False,
    adopt: Iterable[str | Path] = (),
    results: Iterable[str | Path] = (),
    flag: str = "--out",
    hint: str | None = None,
) -> OutputClaim:
    """Check the outputs of a run before it starts; nothing is written.

    Parameters
    ----------
    files : paths
        Every file the run would write.
    folders : paths
        Folders the run writes below (their files are protected at write time; those named in
        ``files`` are checked here).
    overwrite : bool
        Existing outputs may be replaced.
    adopt : paths
        Existing files this run continues (``--resume``); they are not counted as taken.
    results : paths
        The results the user asked for.
    flag : str
        The option that named the outputs, for the message.
    hint : str, optional
        What the user can do when outputs exist (ends the message); default: choose another
        folder (or file) or, where ``overwrite`` is offered, pass it.

    Raises
    ------
    ConfigError
        One line: an output that cannot be written (a folder where a file goes, no
        permission), or outputs that exist (without ``overwrite``), named with what they are.
    """
    files, folders = [Path(p) for p in files], [Path(p) for p in folders]
    adopted = {os.path.realpath(p) for p in adopt}
    try:
        for folder in folders:
            if folder.exists() and not folder.is_dir():
                raise OutputError(f"{flag} {folder} exists and is not a folder")
        for path in files:
            check_output_path(path, flag)
    except OutputError as exc:
        raise ConfigError(str(exc)) from None
    for parent in {p.parent for p in files if p.parent.is_dir()}:
        remove_stale_temporaries(parent / "_", any_name=True)  # of runs killed mid-write
    taken = [p for p in files if p.exists() and os.path.realpath(p) not in adopted]
    if taken and not overwrite:
        if hint is None:
            hint = f"choose another {'folder' if folders else 'file'} (nothing is replaced)"
        raise ConfigError(_taken_message(taken, folders, flag, hint))
    return OutputClaim(
        files=tuple(files),
        folders=tuple(folders),
        overwrite=overwrite,
        adopt=tuple(Path(p) for p in adopt),
        results=tuple(Path(p) for p in results),
    )


def _taken_message(taken: list[Path], folders: list[Path], flag: str, hint: str) -> str:
    """One line naming the outputs that exist and what they look like."""
    folder = next((f for f in folders if all(f in p.parents for p in taken)), None)
    if folder is not None:
        names = ", ".join(p.relative_to(folder).as_posix() for p in taken[:6])
        more = f" and {len(taken) - 6} more" if len(taken) > 6 else ""
        what = describe(folder)
        if what == "a folder":  # nothing tells what made the files: name them
            return f"{flag} {folder} already has {names}{more}, which this run writes; {hint}"
        return f"{flag} {folder} holds {what} ({names}{more} would be replaced); {hint}"
    if len(taken) == 1:
        return f"{flag} {taken[0]} exists ({describe(taken[0])}); {hint}"
    return f"{flag}: {', '.join(map(str, taken))} exist; {hint}"


def _add(guard: WriteGuard, claim: OutputClaim) -> None:
    guard.overwrite = guard.overwrite or claim.overwrite
    guard.files.update(os.path.realpath(p) for p in claim.files)
    guard.folders.update(os.path.realpath(p) for p in claim.folders)
    guard.made.update(os.path.realpath(p) for p in claim.adopt if Path(p).exists())
    guard.results.extend(p for p in claim.results if p not in guard.results)


@contextlib.contextmanager
def protected(claim: OutputClaim) -> Iterator[WriteGuard]:
    """While the run writes, never replace a claimed output it did not make itself.

    Joins the command's guard when there is one (the CLI opens it), else opens one.
    """
    guard = current_guard()
    if guard is not None:
        _add(guard, claim)
        yield guard
        return
    with guarded_writes() as guard:
        _add(guard, claim)
        yield guard


def completed_results() -> list[Path]:
    """The results of the current command that it has written and that are still there."""
    guard = current_guard()
    if guard is None:
        return []
    return [p for p in guard.results if guard.made_here(p) and p.is_file()]
