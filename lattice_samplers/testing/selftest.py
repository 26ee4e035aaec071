"""The ``selftest`` scan job: a check of the scan machinery that runs in a second.

It draws a few normal numbers from the task seed (no numba, no torch) and reports the thread
settings the task saw.  Its knobs let tests interrupt, slow down and count the runs of a scan;
``examples/scan_selftest.toml`` runs it from the command line.  :data:`SELFTEST_JOB` is
registered in :data:`lattice_samplers.jobs.JOBS` like every other job.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers.config import check_sections, section_to_dataclass
from lattice_samplers.records import write_text
from lattice_samplers.scan import THREAD_ENV, Job

__all__ = ["SELFTEST_JOB", "SelfTestSettings", "selftest_job"]


@dataclasses.dataclass(frozen=True)
class SelfTestSettings:
    """``[selftest]`` section of the ``selftest`` job (a scan-machinery check).

    ``fail_if_exists``: raise while that file exists; ``sleep_s``: sleep first; ``log``:
    append one line (task seed, pid) to that file when the task runs.  Tests use them to
    interrupt, slow down and count runs of a scan.
    """

    n: int = 4
    x: float = 0.0
    label: str = ""
    sleep_s: float = 0.0
    fail_if_exists: str = ""
    log: str = ""
    write_bytes: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.sleep_s < 0:
            raise ValueError(f"sleep_s must be >= 0, got {self.sleep_s}")


def validate_selftest(config: dict[str, Any]) -> None:
    """Scan job hook: only a valid ``[selftest]`` section."""
    check_sections(config, ["selftest"])
    section_to_dataclass(SelfTestSettings, config.get("selftest"), "selftest")


def selftest_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Draw ``n`` normal numbers (shifted by ``x``) from the task seed; no numba, no torch.

    With ``write_bytes`` > 0 it also writes that many bytes to ``out_path/data.bin`` (an
    output file whose integrity the scan checks).
    """
    cfg = section_to_dataclass(SelfTestSettings, config.get("selftest"), "selftest")
    if cfg.log:
        with open(cfg.log, "a", encoding="utf-8") as f:
            f.write(f"{cfg.seed} {os.getpid()}\n")
    if cfg.fail_if_exists and Path(cfg.fail_if_exists).exists():
        raise RuntimeError(f"selftest: failing on purpose ({cfg.fail_if_exists} exists)")
    if cfg.sleep_s:
        time.sleep(cfg.sleep_s)
    rng = np.random.default_rng(cfg.seed)
    draws = cfg.x + rng.standard_normal(cfg.n)
    if cfg.write_bytes:
        out_path.mkdir(parents=True, exist_ok=True)
        write_text(out_path / "data.bin", "x" * cfg.write_bytes)
    return {
        "mean": float(draws.mean()),
        "draws": [float(d) for d in draws],
        "label": cfg.label,
        # what the task saw: the scan promises single-threaded tasks on every backend
        "thread_env": _thread_env(),
    }


def _thread_env() -> dict[str, str | None]:
    """The thread settings a task runs with (numba's own count once numba is loaded)."""
    env = {k: os.environ.get(k) for k in THREAD_ENV}
    numba = sys.modules.get("numba")
    if numba is not None:  # the scan limits a loaded numba directly, not by its variable
        env["NUMBA_NUM_THREADS"] = str(numba.get_num_threads())
    return env


def summarize_selftest(result: dict[str, Any]) -> dict[str, Any]:
    """Scan job hook: the mean of the draws."""
    return {"mean": result["mean"]}


SELFTEST_JOB = Job(
    "selftest",
    selftest_job,
    validate=validate_selftest,
    seed_keys=("selftest.seed",),
    summarize=summarize_selftest,
    description="draw numbers from the task seed (checks the scan machinery)",
)
