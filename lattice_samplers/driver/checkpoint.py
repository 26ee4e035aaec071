"""Checkpoints of a run and the signals that ask for one.

A checkpoint holds everything needed to continue bit-identically: the (chain, draw) arrays so
far, each chain's state (field, action, caches), each generator's ``bit_generator.state``, the
current (tuned) settings and the tuning counter.  It is written atomically
(:func:`lattice_samplers.records.atomic_write`).

:class:`lattice_samplers.signals.StopRequest` turns the first SIGINT or SIGTERM into a flag
that the driver checks between blocks: the current block finishes, the checkpoint is saved and
:class:`RunInterrupted` is raised.  A second signal aborts at once.
"""

from __future__ import annotations

import json
import signal
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers.driver.settings import RunSettings
from lattice_samplers.records import atomic_write, json_default
from lattice_samplers.samplers.base import Sampler

__all__ = [
    "CHECKPOINT_FORMAT",
    "RunInterrupted",
    "check_compatible",
    "load_checkpoint",
    "rng_from_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "lattice_samplers.checkpoint/1"


class RunInterrupted(KeyboardInterrupt):
    """Raised by the run driver after SIGINT or SIGTERM, once the finished work is saved.

    Attributes
    ----------
    checkpoint_path : pathlib.Path or None
        Where the checkpoint was written (None if the run had no checkpoint path).
    steps_done : int
        Steps per chain completed (thermalization included).
    signal_name : str
        ``SIGINT`` or ``SIGTERM``.
    """

    def __init__(
        self, checkpoint_path: Path | None, steps_done: int, signal_name: str = "SIGINT"
    ) -> None:
        self.checkpoint_path = checkpoint_path
        self.steps_done = steps_done
        self.signal_name = signal_name or "SIGINT"
        where = f"checkpoint saved to {checkpoint_path}" if checkpoint_path else "no checkpoint"
        super().__init__(f"{self.signal_name} after {steps_done} steps per chain; {where}")

    @property
    def exit_status(self) -> int:
        """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM)."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


def save_checkpoint(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write a run checkpoint (JSON metadata + arrays in one ``.npz``) atomically."""
    payload = dict(arrays)
    payload["meta"] = np.array(json.dumps(meta, default=json_default))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)

    atomic_write(path, write)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a checkpoint written by the run driver: (metadata dict, arrays dict).

    Raises
    ------
    FileNotFoundError
        If there is no file.
    ValueError
        If the file is not a lattice_samplers checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"{path}: not a readable checkpoint, damaged or truncated ({reason})"
        ) from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    return meta, arrays


def rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """Rebuild a generator from its recorded ``bit_generator.state``."""
    name = state["bit_generator"]
    bit_generator = getattr(np.random, name)()
    bit_generator.state = dict(state)
    return np.random.Generator(bit_generator)


def check_compatible(meta: Mapping[str, Any], sampler: Sampler, run: RunSettings) -> None:
    """Refuse to resume a checkpoint of a different run (one line naming the mismatch)."""
    expected = {
        "sampler": sampler.kind,
        "initial_settings": json.loads(json.dumps(sampler.settings_dict())),
        "theory": json.loads(json.dumps(sampler.theory.to_dict())),
        "seed": run.seed,
        "n_chains": run.n_chains,
        "thin": run.thin,
        "n_therm": run.n_therm,
    }
    for key, value in expected.items():
        if meta.get(key) != value:
            raise ValueError(
                f"the checkpoint is for another run: {key} = {meta.get(key)!r}, "
                f"this run has {value!r}"
            )
