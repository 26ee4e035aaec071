"""Training that cannot silently diverge: skip and roll back on explosions, keep the best flow.

:class:`DivergenceGuard` inspects every batch before its update.  A batch is *anomalous* when
its loss is NaN/inf, or when its Var(log w) exceeds ``spike_factor`` times the median of the
last :data:`WINDOW` healthy batches (and exceeds :data:`VAR_FLOOR`; at least :data:`MIN_ROWS`
are needed; the window survives a rollback, so the reference is never lost).  Var(log w) per
site against its own running median is the same ratio, so the test does not depend on L.
An anomalous batch makes no update (one outlier
batch must not kick Adam's moments); :data:`PATIENCE` anomalous batches in a row mean the
parameters themselves are bad, and the guard restores model, optimizer and schedule from the
oldest of its last :data:`RING` snapshots (taken every :data:`SNAPSHOT_EVERY` steps of
parameters whose batch was healthy, so 10-20 steps before the trouble) and multiplies the
learning rate by ``rollback_lr_factor`` from then on.  The history is cut back to the
snapshot's step (its rows are the run that is kept; ``train_s`` keeps counting the lost work),
and the ``rollbacks`` column counts the rollbacks so far.  After ``max_rollbacks`` rollbacks
the next one ends the run at the snapshot with stop reason ``diverged``.

Measured on issue 19's diverging configuration (examples/train_L8_cnf_wide.toml): Var(log w)
went 1.8 -> 8 -> 15 -> 42 -> ... -> 1e12 within 20 steps and the run never recovered.

:class:`BestKeeper` remembers the flow of the best held-out evaluation (``keep_best``), so
that a finished run returns a flow never worse on held-out acceptance (or ESS) than any
evaluation of the run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lattice_samplers.flows.train.config import TrainSettings

__all__ = [
    "MIN_ROWS",
    "PATIENCE",
    "RING",
    "SNAPSHOT_EVERY",
    "VAR_FLOOR",
    "WINDOW",
    "BestKeeper",
    "DivergenceGuard",
    "Snapshot",
]

#: Anomalous batches in a row that trigger a rollback.
PATIENCE = 3
#: History rows whose median Var(log w) is the reference of the spike test.
WINDOW = 20
#: Rows needed before the spike test applies (the first steps only check for NaN/inf).
MIN_ROWS = 10
#: Var(log w) at or below this is never a spike: an IMH acceptance of ~erfc(1/2) ~ 0.48 for
#: Gaussian log w; relative jumps below it are noise of a good flow, not a divergence.
VAR_FLOOR = 1.0
#: Steps between snapshots.
SNAPSHOT_EVERY = 10
#: Snapshots kept; a rollback restores the oldest.
RING = 2


@dataclass
class Snapshot:
    """Model, optimizer and scheduler state before update ``step + 1`` (deep copies)."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    #: the guard's Var(log w) window at that time: a restored flow is judged against its own
    recent: list[float]

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form for a checkpoint."""
        return dict(
            step=self.step,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            recent=list(self.recent),
        )


class DivergenceGuard:
    """Anomaly test, snapshots and rollbacks of one trainer (see the module docstring).

    Parameters
    ----------
    cfg : TrainSettings
        ``max_rollbacks``, ``rollback_lr_factor`` and ``spike_factor`` are used.
    """

    def __init__(self, cfg: TrainSettings) -> None:
        self.cfg = cfg
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.streak = 0
        self.skipped = 0
        self.events: list[dict[str, Any]] = []
        self.ring: list[Snapshot] = []
        self.recent: list[float] = []

    # ------------------------------------------------------------------ decisions
    def check(self, var_log_w: float) -> str | None:
        """Why a batch with this Var(log w) is anomalous, or None if it is healthy."""
        recent = np.asarray(self.recent, dtype=np.float64)
        if not math.isfinite(var_log_w):
            return f"Var(log w) is {var_log_w}"
        if recent.size < MIN_ROWS:
            return None
        ref = float(np.median(recent))
        if var_log_w > max(self.cfg.spike_factor * ref, VAR_FLOOR):
            return (
                f"Var(log w) {var_log_w:.3g} > {self.cfg.spike_factor:g} x its running "
                f"median {ref:.3g}"
            )
        return None

    def healthy(self, trainer: Any, var_log_w: float) -> None:
        """A healthy batch of the current parameters: reset the streak, snapshot if due."""
        self.streak = 0
        self.recent = [*self.recent, float(var_log_w)][-WINDOW:]
        if not self.ring or trainer.step - self.ring[-1].step >= SNAPSHOT_EVERY:
            self.ring.append(
                Snapshot(
                    trainer.step,
                    copy.deepcopy(trainer.flow.state_dict()),
                    copy.deepcopy(trainer.optimizer.state_dict()),
                    copy.deepcopy(trainer.scheduler.state_dict()),
                    list(self.recent),
                )
            )
            del self.ring[:-RING]

    def anomalous(self, trainer: Any, cause: str) -> str:
        """Record an anomalous batch (no update); return ``skip``, ``rollback`` or ``stop``.

        On ``rollback`` and ``stop`` the trainer is already back at the oldest snapshot.
        """
        self.skipped += 1
        self.streak += 1
        if self.streak < PATIENCE:
            return "skip"
        self.streak = 0
        if not self.ring:  # no healthy batch yet, hence no update: nothing to go back to
            self.events.append(
                {
                    "at_step": trainer.step + 1,
                    "to_step": trainer.step,
                    "cause": cause,
                    "action": "stop",
                    "lr_scale": self.lr_scale,
                }
            )
            return "stop"
        snap = self.ring[0]
        action = "stop" if self.rollbacks >= self.cfg.max_rollbacks else "rollback"
        if action == "rollback":
            self.rollbacks += 1
            self.lr_scale *= self.cfg.rollback_lr_factor
        self.events.append(
            {
                "at_step": trainer.step + 1,
                "to_step": snap.step,
                "cause": cause,
                "action": action,
                "lr_scale": self.lr_scale,
            }
        )
        self.ring = [snap]
        self.recent = list(snap.recent)
        self._restore(trainer, snap)
        return action

    @staticmethod
    def _restore(trainer: Any, snap: Snapshot) -> None:
        trainer.flow.load_state_dict(snap.model)
        # load_state_dict may keep the given tensors: hand it copies, the snapshot stays clean
        trainer.optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
        trainer.scheduler.load_state_dict(copy.deepcopy(snap.scheduler))
        trainer.step = snap.step
        for col in trainer.history.values():
            del col[snap.step :]
        trainer.apply_lr()

    def summary(self) -> str:
        """One phrase on what the guard did ("" if nothing)."""
        if not self.events and not self.skipped:
            return ""
        parts = [f"{self.skipped} anomalous batches skipped"]
        for e in self.events:
            verb = "rolled back" if e["action"] == "rollback" else "gave up and went back"
            parts.append(
                f"at step {e['at_step']} ({e['cause']}) {verb} to step {e['to_step']}"
                + (f", lr x{e['lr_scale']:g}" if e["action"] == "rollback" else "")
            )
        return "; ".join(parts)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (snapshots included)."""
        return {
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "streak": self.streak,
            "skipped": self.skipped,
            "events": copy.deepcopy(self.events),
            "ring": [s.as_dict() for s in self.ring],
            "recent": list(self.recent),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` wrote."""
        self.lr_scale = float(state["lr_scale"])
        self.rollbacks = int(state["rollbacks"])
        self.streak = int(state["streak"])
        self.skipped = int(state["skipped"])
        self.events = copy.deepcopy(list(state["events"]))
        self.ring = [Snapshot(**s) for s in state["ring"]]
        self.recent = [float(v) for v in state["recent"]]


class BestKeeper:
    """The flow of the best held-out evaluation so far (``keep_best``).

    Parameters
    ----------
    metric : str
        ``acceptance``, ``ess_kish`` or ``last`` (keep nothing).
    """

    INDEX = {"acceptance": 0, "ess_kish": 1}

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.step: int | None = None
        self.values: tuple[float, float, float] | None = None
        self.model: dict[str, torch.Tensor] | None = None

    def note(self, step: int, ev: tuple[float, float, float], flow: torch.nn.Module) -> None:
        """A held-out evaluation ``ev`` = (acceptance, ess_kish, var) of ``flow`` at ``step``.

        Ties go to the later flow.
        """
        if self.metric == "last":
            return
        i = self.INDEX[self.metric]
        value = ev[i]
        if not math.isfinite(value):
            return
        if self.values is None or value >= self.values[i]:
            self.step, self.values = step, tuple(float(v) for v in ev)
            self.model = copy.deepcopy(flow.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """The best record (weights included)."""
        return {
            "metric": self.metric,
            "step": self.step,
            "values": self.values,
            "model": self.model,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` wrote (a record of another metric is dropped)."""
        if state.get("metric") != self.metric:
            return
        self.step = state["step"]
        self.values = tuple(state["values"]) if state["values"] is not None else None
        self.model = state["model"]
