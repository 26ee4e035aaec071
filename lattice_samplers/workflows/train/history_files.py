"""A training run's history as files: ``history.csv`` (one row per step) and ``training.png``.

Both are written through :func:`lattice_samplers.records.atomic_write`, like every output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers import records
from lattice_samplers.flows.train.config import HISTORY_COLUMNS

__all__ = ["plot_history", "read_history_csv", "write_history_csv"]


def write_history_csv(history: dict[str, Any], path: str | Path) -> None:
    """Write the per-step history as CSV (one row per step, empty cells for NaN)."""
    rows = (
        {c: (int(v) if c == "step" else float(v)) for c, v in zip(HISTORY_COLUMNS, row)}
        for row in zip(*(history[c] for c in HISTORY_COLUMNS))
    )
    records.write_csv(path, rows, fieldnames=list(HISTORY_COLUMNS))


def read_history_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read a history CSV written by :func:`write_history_csv` (empty or ``nan`` is NaN)."""
    import csv

    with Path(path).open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols = {h: np.array([float(r[i] or "nan") for r in body]) for i, h in enumerate(header)}
    cols["step"] = cols["step"].astype(np.int64)
    return cols


def plot_history(history: dict[str, Any], path: str | Path, target: float | None = None) -> None:
    """Save a two-panel figure (atomically): loss, and batch / held-out acceptance, by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = np.asarray(history["step"])
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(7, 6), constrained_layout=True)
    ax1.plot(step, history["loss"], lw=0.8)
    ax1.set_ylabel("loss = <log q + S>")
    ax2.plot(step, history["acceptance"], lw=0.6, alpha=0.5, label="training batch")
    ev = np.asarray(history["eval_acceptance"])
    ok = np.isfinite(ev)
    ax2.plot(step[ok], ev[ok], "o-", ms=3, label="held-out batch")
    if target is not None:
        ax2.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target:g}")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("training step")
    ax2.set_ylabel("IMH acceptance")
    ax2.legend(loc="lower right")
    try:
        records.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
