"""The reverse-KL training loop: takes a flow and an action, returns the flow and its history.

The loss is the reverse Kullback-Leibler divergence up to the constant log Z,

    loss = mean over a model batch of (log_q(phi) + S(phi)) = KL(q || p) - log Z,

formed in one place, :func:`~lattice_samplers.flows.train.metrics.reverse_kl_loss`, and
minimized with Adam and a cosine-annealed learning rate by default (other schedules:
:mod:`.schedule`).  Every step logs the loss and, from float64 log weights
log_w = -S - log_q of the same batch, the acceptance of one independence-Metropolis pass over
the batch, ``ess_kish`` and the variance of log w (:mod:`.metrics`).  Every ``eval_every``
steps the same quantities are measured on a held-out batch of fixed size drawn from generators
seeded by (seed, step): the stop rule on ``target_acceptance`` uses the held-out value only.
The divergence guard and the best-flow keeper (:mod:`.guard`) watch every batch and every
evaluation.

History rows: row ``step = k`` holds the loss and batch metrics of the batch used for update k
(parameters before that update), the learning rate used, the gradient norm before clipping,
the rollbacks so far and the cumulative training seconds after it; the ``eval_*`` columns (NaN
on other rows) describe the model after update k.

Nothing here writes files, installs signal handlers or prints: checkpoints, CSV, figures,
signals and process groups belong to :mod:`lattice_samplers.workflows.train.session`, which drives
:func:`run_loop` through its per-step callback.  Under a process group (DistributedDataParallel,
see :mod:`lattice_samplers.flows.distributed`) :meth:`Trainer.train_step`,
:meth:`Trainer.evaluate_shared` and :meth:`Trainer.state_dict` are collective (every decision
of the guard is taken from the gathered batch and the broadcast evaluation, so all processes
take it together).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lattice_samplers.flows.action import TorchAction
from lattice_samplers.flows.model import Flow
from lattice_samplers.flows.train.config import HISTORY_COLUMNS, TrainSettings
from lattice_samplers.flows.train.metrics import (
    NonFiniteLossError,
    imh_acceptance,
    reverse_kl_loss,
    weight_metrics,
)
from lattice_samplers.flows.train.streams import check_streams, saved_streams
from lattice_samplers.flows.train.trainer import Trainer

__all__ = [
    "LoopOutcome",
    "NonFiniteLossError",
    "StepCallback",
    "Trainer",
    "TrainingDiverged",
    "check_streams",
    "fit",
    "imh_acceptance",
    "reverse_kl_loss",
    "run_loop",
    "saved_streams",
    "weight_metrics",
]

#: Stop reasons after which the run is finished: the best held-out flow is kept.
FINISHED = frozenset({"n_steps", "target", "time_budget", "diverged"})


# ---------------------------------------------------------------------- the loop
#: Called after every completed step (history row appended) with the trainer and the row;
#: returns a stop reason (e.g. ``"interrupted"``) to end the loop at this step boundary, or
#: None to go on.  The session's checkpoints and signal checks are such a callback.
StepCallback = Callable[[Trainer, dict[str, float]], str | None]


@dataclass
class LoopOutcome:
    """What :func:`run_loop` ended with.

    Attributes
    ----------
    flow : Flow
        The trained flow (the trainer's, in training mode): after a finished run (stop reason
        ``n_steps``, ``target``, ``time_budget`` or ``diverged``) the best held-out one
        (``keep_best``), else the current one.
    history : dict of str to list of float
        Per-step rows in columns (:data:`HISTORY_COLUMNS`), over all segments of the run.
    stop_reason : str
        ``n_steps``, ``target``, ``time_budget``, ``until_step``, ``diverged`` (the guard's
        rollbacks are used up), ``nonfinite_loss`` (guard off), or the reason a callback
        returned.
    message : str
        One line: the cause for ``nonfinite_loss``; for a finished run what the guard did and
        which flow was kept, when that is anything but "no anomaly, the final flow"; else "".
    error : NonFiniteLossError or None
        The error behind ``nonfinite_loss``.
    kept_step : int or None
        The step of the returned flow when it is an earlier held-out one.
    """

    flow: Flow
    history: dict[str, list[float]]
    stop_reason: str
    message: str = ""
    error: NonFiniteLossError | None = None
    kept_step: int | None = None


class TrainingDiverged(FloatingPointError):
    """:func:`fit` ended with stop reason ``diverged``; ``outcome`` holds the kept flow."""

    def __init__(self, outcome: LoopOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _ode_note(trainer: Trainer) -> str:
    """For a flow with an ODE: its held-out Var(log w) at the trained and twice the RK4 steps.

    A trained model whose weights look good only at the trained step count has learned the
    integrator's error, not the target: measured on issue 19's diverging cnf (radius-8
    kernels, 6 frequencies, 10 steps), the kept flow had Var(log w) 2.1 at 10 steps and 24.6
    at 20, and lowering the rate did not stop the blow-ups.  Collective (two evaluations).
    """
    steps = trainer.flow.arch.get("ode_steps")
    if trainer.flow.arch.get("family") != "cnf" or not steps:
        return ""
    var_n = trainer.evaluate_shared()[2]
    trainer.flow.set_ode_steps(2 * int(steps))
    try:
        var_2n = trainer.evaluate_shared()[2]
    finally:
        trainer.flow.set_ode_steps(int(steps))
    return (
        f"held-out Var(log w) of the returned flow: {var_n:.3g} with {steps} RK4 steps, "
        f"{var_2n:.3g} with {2 * int(steps)}"
        + (
            " (the training exploits the ODE discretization: raise ode_steps)"
            if var_2n > 2 * var_n
            else ""
        )
    )


def _finish_message(trainer: Trainer, stop_reason: str, kept: str) -> str:
    """The one-line message of a finished run, or "" when the default one says it all."""
    guard = trainer.guard.summary()
    if not guard and not kept and stop_reason != "diverged":
        return ""
    cfg = trainer.cfg
    base = {
        "n_steps": f"finished {trainer.step} steps",
        "target": f"held-out acceptance reached {cfg.target_acceptance} at step "
        f"{trainer.steps_to_target()[0]}",
        "time_budget": f"time budget of {cfg.time_budget_s} s used after {trainer.step} steps",
        "diverged": f"diverged: {cfg.max_rollbacks} rollbacks did not stop the loss exploding "
        "(try a smaller lr, grad_clip, warmup_steps, or for a cnf more ode_steps)",
    }[stop_reason]
    ode = _ode_note(trainer) if stop_reason == "diverged" else ""
    return "; ".join(p for p in (base, guard, kept, ode) if p)


def run_loop(
    trainer: Trainer, end: int | None = None, callback: StepCallback | None = None
) -> LoopOutcome:
    """Train from ``trainer.step`` up to step ``end`` (default ``n_steps``) or a stop rule.

    Stop rules, checked at step boundaries: the held-out acceptance reached the target (with
    ``stop_at_target``), the training seconds exceeded ``time_budget_s``, the divergence guard
    used up its rollbacks (``diverged``; with the guard off, a NaN/inf loss stops at once:
    the failed step makes no update and adds no row), or a stop reason from ``callback``.
    A finished run measures its final model and returns the best held-out flow
    (:meth:`Trainer.keep_best`); a pause (``until_step``, a callback's reason) keeps the
    current model unevaluated (see :meth:`Trainer.evaluate_last`), so resuming continues bit
    for bit.  Writes nothing; the flow is left in training mode.
    """
    cfg = trainer.cfg
    trainer.resume_live()
    end = cfg.n_steps if end is None else min(cfg.n_steps, end)
    if cfg.stop_at_target and trainer.steps_to_target()[0] is not None:
        kept = trainer.keep_best()  # a finished run resumed: return what it returned
        kept_step = trainer.kept[0] if trainer.kept is not None else None
        message = _finish_message(trainer, "target", kept)
        return LoopOutcome(trainer.flow, trainer.history, "target", message, None, kept_step)
    guard = trainer.guard if cfg.max_rollbacks > 0 else None
    stop_reason, error, kept = "n_steps", None, None
    if trainer.step >= end and trainer.step < cfg.n_steps:
        stop_reason = "until_step"
    while trainer.step < end:
        if cfg.time_budget_s is not None and trainer.train_s >= cfg.time_budget_s:
            stop_reason = "time_budget"
            break
        t_wall = time.perf_counter()
        try:
            batch = trainer.measure()
            cause = guard.check(batch.row["var_log_weight"]) if guard else None
        except NonFiniteLossError as exc:
            if guard is None:
                stop_reason, error = "nonfinite_loss", exc
                break
            cause = exc.cause
        if guard is not None and cause is not None:
            action = guard.anomalous(trainer, cause)  # no update for this batch
            trainer.wall_s += time.perf_counter() - t_wall
            trainer.sync_clock()
            if action == "stop":
                stop_reason = "diverged"
                break
            continue
        if guard is not None:
            guard.healthy(trainer, batch.row["var_log_weight"])
        row = trainer.update(batch)
        k = trainer.step
        is_eval = k % cfg.eval_every == 0 or k == end
        ev = trainer.evaluate_shared() if is_eval else (math.nan, math.nan, math.nan)
        if is_eval:
            trainer.best.note(k, ev, trainer.flow)
            trainer.check_ode()  # after the eval: this row measured the old steps
        trainer.wall_s += time.perf_counter() - t_wall
        trainer.sync_clock()
        row.update(
            train_s=trainer.train_s,
            wall_s=trainer.wall_s,
            eval_acceptance=ev[0],
            eval_ess_kish=ev[1],
            eval_var_log_weight=ev[2],
        )
        for c in HISTORY_COLUMNS:
            trainer.history[c].append(float(row[c]))
        stop = None
        if is_eval and cfg.stop_at_target and cfg.target_acceptance is not None:
            if ev[0] >= cfg.target_acceptance:
                stop = "target"
        if stop is None and k >= end:
            stop = "n_steps" if k >= cfg.n_steps else "until_step"
        if stop in FINISHED:
            # before the callback, so that a checkpoint it writes holds the returned flow
            kept = trainer.keep_best()
        reason = callback(trainer, row) if callback is not None else None
        if stop is not None:
            stop_reason = stop
            break
        if reason:
            stop_reason = reason
            break
    if error is not None:
        return LoopOutcome(trainer.flow, trainer.history, stop_reason, str(error), error)
    if stop_reason not in FINISHED:
        return LoopOutcome(trainer.flow, trainer.history, stop_reason)
    if kept is None:  # finished without a completed step after it: time budget, diverged
        kept = trainer.keep_best()
        if callback is not None and trainer.history["step"]:
            # the state changed at this step boundary (restored or kept flow): let the
            # callback see it, e.g. to checkpoint what is returned
            callback(trainer, {c: trainer.history[c][-1] for c in HISTORY_COLUMNS})
    message = _finish_message(trainer, stop_reason, kept)
    kept_step = trainer.kept[0] if trainer.kept is not None else None
    return LoopOutcome(trainer.flow, trainer.history, stop_reason, message, None, kept_step)


def fit(
    flow: Flow,
    action: TorchAction,
    train_config: TrainSettings,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> tuple[Flow, dict[str, list[float]]]:
    """Train ``flow`` on ``action`` by reverse KL in one process; return it and its history.

    The functional form of :class:`Trainer` + :func:`run_loop` (cf. FlowJAX's
    ``fit_to_key``): no files, no printing, no signal handling.  The flow returned is the
    best held-out one (``keep_best``).

    Parameters
    ----------
    flow : Flow
        The model (trained in place and returned).
    action : TorchAction
        The target's action.
    train_config : TrainSettings
        Settings (one prior stream).
    generator : torch.Generator, optional
        The prior-noise generator (default: seeded from ``train_config.seed``).
    callback : StepCallback, optional
        Called after every step; may stop the loop by returning a reason.

    Raises
    ------
    NonFiniteLossError
        If the loss went non-finite with the guard off (``max_rollbacks = 0``; the flow holds
        the weights of the step before).
    TrainingDiverged
        If the guard used up its rollbacks (the flow holds the best held-out weights; the
        error's ``outcome`` has the history and the message).
    """
    gens = None if generator is None else [generator]
    trainer = Trainer(flow, action, train_config, generators=gens)
    outcome = run_loop(trainer, callback=callback)
    if outcome.error is not None:
        raise outcome.error
    if outcome.stop_reason == "diverged":
        raise TrainingDiverged(outcome)
    return outcome.flow, outcome.history
