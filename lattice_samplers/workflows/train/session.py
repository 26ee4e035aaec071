"""A training session: the loop plus checkpoints, resume, signals, records and DDP.

:func:`train_flow` checks the output folder before any work, builds the trainer (optionally
warm-started, or resumed from the folder's checkpoint), runs
:func:`~lattice_samplers.flows.train.loop.run_loop` with a per-step callback that writes
periodic checkpoints and watches for SIGINT/SIGTERM, and writes what the run produced:

* ``checkpoint.pt``: weights, optimizer, scheduler, RNG states, history (resumable);
* ``history.csv``: one row per step (:data:`HISTORY_COLUMNS`; empty cells for NaN);
* ``summary.json``: :meth:`TrainResult.summary` plus the resolved configuration;
* ``training.png`` (with ``figure=True``): loss and acceptance against step.

Every file goes through :func:`lattice_samplers.records.atomic_write`.

Signals: SIGINT and SIGTERM set a flag that the loop reads at the next step boundary; the
session then saves exactly what a periodic checkpoint at that step would hold and raises
:class:`TrainingInterrupted`, so ``--resume`` continues bit for bit as if never stopped.  A
second signal of the same kind stops at once (no checkpoint: the state may be mid-step; the
last one is kept).

Time: ``train_s`` counts sampling, loss, backward, update and batch metrics; ``wall_s`` also
counts held-out evaluations and checkpoint writing.  Both are cumulative over resumes;
``time_budget_s`` and ``seconds_to_target`` use ``train_s``.

Several processes (torch DistributedDataParallel under torchrun, see
:mod:`lattice_samplers.flows.distributed`): each batch is drawn in ``prior_streams`` equal
parts from independent prior streams (default: one per process); gradients are averaged, the
batch metrics are computed over the combined batch, rank 0 evaluates, keeps the clock, decides
on signals and writes; the history and results have the same format as in one process.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lattice_samplers import records
from lattice_samplers.flows.checkpoint import (
    CheckpointError,
    check_compatible,
    read_checkpoint,
    save_checkpoint,
)
from lattice_samplers.flows.distributed import DistContext, broadcast_floats, on_main
from lattice_samplers.flows.distributed import current as current_group
from lattice_samplers.flows.model import CNFSettings, Flow, FlowSettings
from lattice_samplers.flows.train.config import (
    TrainSettings,
    set_torch_threads,
    thread_policy,
    trajectory_changes,
)
from lattice_samplers.flows.train.loop import (
    Trainer,
    check_streams,
    run_loop,
    saved_streams,
)
from lattice_samplers.flows.train.warmstart import init_from_checkpoint, init_from_flow
from lattice_samplers.signals import StopRequest
from lattice_samplers.theory import Phi4Theory
from lattice_samplers.workflows.outputs import check_outputs
from lattice_samplers.workflows.train.history_files import plot_history, write_history_csv

__all__ = [
    "CHECKPOINT_NAME",
    "FIGURE_NAME",
    "HISTORY_NAME",
    "SUMMARY_NAME",
    "TrainResult",
    "TrainingInterrupted",
    "check_output_dir",
    "train_flow",
]

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.csv"
SUMMARY_NAME = "summary.json"
FIGURE_NAME = "training.png"


@dataclass
class TrainResult:
    """What a training run produced (also the ``--json`` summary, via :meth:`summary`).

    Attributes
    ----------
    history : dict of str to numpy.ndarray
        Per-step columns, see :data:`HISTORY_COLUMNS` and :mod:`.loop`.
    n_steps : int
        Optimizer steps done in total (over resumes).
    train_seconds, wall_seconds : float
        Cumulative training and total seconds.
    steps_to_target, seconds_to_target : int or float or None
        First step (and training seconds) at which the held-out acceptance reached the
        target; None if it was not reached or no target was set.
    final_acceptance, final_ess_kish, final_var_log_weight : float
        Held-out metrics of the final model (NaN if never evaluated).
    n_parameters : int
        Trainable scalars of the flow.
    stop_reason : str
        ``n_steps``, ``target``, ``time_budget``, ``until_step`` or ``nonfinite_loss``.
    message : str
        Human-readable explanation of the stop (the error text for ``nonfinite_loss``).
    checkpoint : Path or None
        The checkpoint file, if an output folder was given and one was written.
    """

    history: dict[str, np.ndarray]
    n_steps: int
    train_seconds: float
    wall_seconds: float
    steps_to_target: int | None
    seconds_to_target: float | None
    final_acceptance: float
    final_ess_kish: float
    final_var_log_weight: float
    n_parameters: int
    stop_reason: str
    message: str = ""
    checkpoint: Path | None = None
    target_acceptance: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no per-step history)."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        losses = self.history["loss"]
        return {
            "final_acceptance": num(self.final_acceptance),
            "ess_kish": num(self.final_ess_kish),
            "var_log_weight": num(self.final_var_log_weight),
            "steps_to_target": self.steps_to_target,
            "seconds_to_target": num(self.seconds_to_target),
            "target_acceptance": self.target_acceptance,
            "n_parameters": self.n_parameters,
            "n_steps": self.n_steps,
            "train_seconds": self.train_seconds,
            "wall_seconds": self.wall_seconds,
            "final_loss": num(float(losses[-1])) if len(losses) else None,
            "stop_reason": self.stop_reason,
            "message": self.message,
            "checkpoint": str(self.checkpoint) if self.checkpoint is not None else None,
            **self.extra,
        }


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM at a step boundary, after saving a checkpoint.

    Attributes
    ----------
    signum : int
        The signal received.
    step : int
        The last completed step (the checkpoint's).
    checkpoint : Path or None
        The checkpoint written, None without an output folder.
    exit_status : int
        128 + signum, the conventional exit status (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        name = signal.Signals(signum).name
        if checkpoint is not None:
            how = f"checkpoint saved in {checkpoint}; continue with --resume"
        else:
            how = "no output folder, nothing saved"
        super().__init__(f"interrupted by {name} after step {step}; {how}")
        self.signum = signum
        self.step = step
        self.checkpoint = checkpoint
        self.exit_status = 128 + signum


def _agreed_signal(stop: StopRequest, comm: DistContext | None) -> int | None:
    """The signal to stop for: this process's, or rank 0's under a process group.

    Collective, so that every process stops at the same step.
    """
    if comm is None:
        return stop.signum
    (value,) = broadcast_floats([float(stop.signum or 0)], comm)
    return int(value) or None


def check_output_dir(
    out_dir: str | Path,
    theory: Phi4Theory,
    flow_config: FlowSettings,
    resume: bool,
    train_config: TrainSettings | None = None,
) -> dict[str, Any] | None:
    """Validate an output folder before anything is written; return the checkpoint to resume.

    Raises
    ------
    OutputError
        If the folder (or the nearest existing folder above it) cannot be written, or one of
        the output names is taken by something that is not a file.
    CheckpointError
        If the folder holds a checkpoint and ``resume`` is False (nothing is overwritten), if
        ``resume`` is True and there is no checkpoint, if the checkpoint belongs to another
        lattice size, theory or architecture, or (given ``train_config``) was trained with
        settings that change the trajectory (:func:`trajectory_changes`).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise records.OutputError(f"output path {out_dir} exists and is not a folder")
    for name in (CHECKPOINT_NAME, HISTORY_NAME, SUMMARY_NAME, FIGURE_NAME):
        records.check_output_path(out_dir / name, kind="output")
    ckpt = out_dir / CHECKPOINT_NAME
    if not ckpt.exists():
        if resume:
            raise CheckpointError(f"nothing to resume: no flow checkpoint at {ckpt}")
        # the one output check: no training record, kept history or comparison is replaced
        names = (HISTORY_NAME, SUMMARY_NAME, FIGURE_NAME)
        check_outputs(files=[out_dir / n for n in names], folders=[out_dir], flag="output")
        return None
    data = read_checkpoint(ckpt)
    arch = flow_config.resolve(theory)
    if not resume:
        try:
            check_compatible(data, theory, arch, where=f"existing checkpoint {ckpt}")
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; refusing to overwrite it") from None
        raise CheckpointError(
            f"{ckpt} already exists; resume it (--resume) or choose another output folder"
        )
    check_compatible(data, theory, arch, where=f"checkpoint {ckpt}")
    if data.get("train") is None:
        raise CheckpointError(f"{ckpt} holds no trainer state to resume")
    if train_config is not None:
        changed = trajectory_changes(data["train"].get("train_config") or {}, train_config)
        if changed:
            raise CheckpointError(
                f"cannot resume {ckpt} with other training settings ({'; '.join(changed)}); "
                "use the settings it was trained with, or a new output folder"
            )
    return data


# ---------------------------------------------------------------------- the session
def train_flow(
    theory: Phi4Theory,
    flow_config: FlowSettings | None = None,
    train_config: TrainSettings | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    until_step: int | None = None,
    distributed: bool | None = None,
    *,
    init_from: str | Path | Flow | None = None,
    figure: bool = False,
) -> tuple[Flow, TrainResult]:
    """Train a flow for ``theory`` by reverse KL; return the model and a :class:`TrainResult`.

    Parameters
    ----------
    theory : Phi4Theory
        Target theory.
    flow_config : FlowSettings, optional
        Architecture (default: :class:`~lattice_samplers.flows.settings.CNFSettings`).
    train_config : TrainSettings, optional
        Settings (defaults of :class:`TrainSettings`).
    out_dir : str or Path, optional
        Folder for ``checkpoint.pt``, ``history.csv`` and ``summary.json``, written every
        ``checkpoint_every`` steps and at the end.  None: nothing is written.
    progress : bool
        Show a tqdm bar with loss and acceptance (on stderr).
    resume : bool
        Continue from the checkpoint in ``out_dir`` (required to exist, to match, and to have
        been trained with the same trajectory-deciding settings).
    until_step : int, optional
        Stop after this step without changing the schedule (for training in pieces; the
        cosine schedule still spans ``n_steps``).
    distributed : bool, optional
        Train in the initialized process group, with DistributedDataParallel.  None
        (default): if one of two or more processes is initialized.  Every process calls
        ``train_flow`` with the same arguments; rank 0 alone writes ``out_dir`` and shows
        progress, and every process returns the same model and history.
    init_from : str or Path or Flow, optional
        Warm start: load the weights of this checkpoint (or flow) before training, e.g. from a
        smaller lattice (see :func:`~lattice_samplers.flows.train.warmstart.init_from_checkpoint`:
        every parameter shape must match).  Ignored on resume (the checkpoint holds them).
    figure : bool
        Also write ``training.png`` into ``out_dir``.

    Returns
    -------
    (Flow, TrainResult)
        After a NaN/inf loss the flow holds the weights of the last checkpoint, if any, and
        ``stop_reason`` is ``"nonfinite_loss"`` with the one-line cause in ``message``; the
        history so far is still written to ``out_dir``.

    Raises
    ------
    ValueError
        Bad settings, odd L with checkerboard layers, unavailable device, an unwritable
        output folder (:class:`~lattice_samplers.records.OutputError`), or an output folder
        that holds a checkpoint (without ``resume``), a mismatched one, or one trained with
        other settings (nothing is written); prior streams that do not split the work.
    TrainingInterrupted
        On SIGINT or SIGTERM, after saving a checkpoint at the last completed step.
    """
    from tqdm.auto import tqdm

    flow_config = flow_config or CNFSettings()
    cfg = train_config or TrainSettings()
    flow_config.resolve(theory)  # fail early on odd L etc.
    comm = current_group(cfg.device) if distributed is not False else None
    if distributed and comm is None:
        raise ValueError("distributed training needs an initialized group of >= 2 processes")
    main = comm is None or comm.is_main
    resume_data = None
    if out_dir is not None:
        # rank 0 reads the folder (it need not be shared) and hands the result to all
        resume_data = on_main(
            lambda: check_output_dir(out_dir, theory, flow_config, resume, cfg), comm
        )
    elif resume:
        raise ValueError("resume needs an output folder holding a checkpoint")
    if resume_data is not None and cfg.prior_streams is None:
        saved = saved_streams(resume_data["train"])
        if saved != (comm.world_size if comm is not None else 1):
            cfg = replace(cfg, prior_streams=saved)  # continue the run's own streams
    check_streams(cfg, comm)
    n_threads = cfg.num_threads
    if n_threads is None and comm is not None:
        # threads x processes within the cores other work leaves free (never oversubscribe)
        n_threads = thread_policy(comm.local_world_size)
    set_torch_threads(n_threads)

    trainer = Trainer.for_theory(theory, flow_config, cfg, comm=comm)
    warm_source = None
    if resume_data is not None:
        trainer.load_state_dict(resume_data["train"], resume_data["model"])
    elif isinstance(init_from, Flow):
        init_from_flow(trainer.flow, init_from)
    elif init_from is not None:
        init_from_checkpoint(trainer.flow, init_from)
        warm_source = str(init_from)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    last_ckpt_step = trainer.step if resume_data is not None else None

    def save() -> None:
        nonlocal last_ckpt_step
        if ckpt_path is None:
            return
        t0 = time.perf_counter()
        state = trainer.state_dict()  # collective under a process group
        if main:
            save_checkpoint(ckpt_path, trainer.flow, theory, flow_config, state)
            write_history_csv(trainer.history, out / HISTORY_NAME)
        last_ckpt_step = trainer.step
        trainer.wall_s += time.perf_counter() - t0

    bar = tqdm(
        total=cfg.n_steps,
        initial=trainer.step,
        desc=f"train L={theory.L}",
        disable=not (progress and main),
        dynamic_ncols=True,
        mininterval=0.5,
    )
    # torchrun follows SIGINT with SIGTERM to its workers: only a repeat of the same signal
    # aborts, so the pending stop still finishes its checkpoint
    signals = StopRequest(abort_on_other=False)

    def on_step(tr: Trainer, row: dict[str, float]) -> str | None:
        bar.update(1)
        if progress and (tr.step % 10 == 0 or math.isfinite(row["eval_acceptance"])):
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acceptance']:.3f}")
        if tr.step % cfg.checkpoint_every == 0:
            save()
        return "interrupted" if _agreed_signal(signals, comm) is not None else None

    try:
        with signals:
            outcome = run_loop(trainer, until_step, on_step)
    finally:
        bar.close()
    stop_reason, message = outcome.stop_reason, outcome.message

    if stop_reason == "interrupted":
        if last_ckpt_step != trainer.step:
            save()  # exactly the state a periodic checkpoint at this step holds
        written = ckpt_path if last_ckpt_step is not None else None
        raise TrainingInterrupted(signals.signum or signal.SIGTERM, trainer.step, written)
    if stop_reason != "nonfinite_loss":
        trainer.evaluate_last()  # the final model is always measured on a held-out batch
        if last_ckpt_step != trainer.step or resume_data is None:
            save()
    else:
        where = (
            f"the last good checkpoint (step {last_ckpt_step}) is kept in {ckpt_path}"
            if last_ckpt_step is not None
            else "no checkpoint was written"
        )
        message = f"{message} (try a smaller lr or grad_clip); {where}"
        if last_ckpt_step is not None:
            model = on_main(lambda: read_checkpoint(ckpt_path)["model"], comm)
            trainer.flow.load_state_dict(model)

    steps_t, secs_t = trainer.steps_to_target()
    acc, ess, var = trainer.final_eval()
    if not message:
        message = {
            "n_steps": f"finished {trainer.step} steps",
            "target": f"held-out acceptance reached {cfg.target_acceptance} at step {steps_t}",
            "time_budget": f"time budget of {cfg.time_budget_s} s used after {trainer.step} steps",
            "until_step": f"paused at step {trainer.step} of {cfg.n_steps}",
        }[stop_reason]
    result = TrainResult(
        history=trainer.history_arrays(),
        n_steps=trainer.step,
        train_seconds=trainer.train_s,
        wall_seconds=trainer.wall_s,
        steps_to_target=steps_t,
        seconds_to_target=secs_t,
        final_acceptance=acc,
        final_ess_kish=ess,
        final_var_log_weight=var,
        n_parameters=trainer.flow.n_parameters,
        stop_reason=stop_reason,
        message=message,
        checkpoint=ckpt_path if last_ckpt_step is not None else None,
        target_acceptance=cfg.target_acceptance,
        extra={
            "device": str(trainer.device),
            "dtype": flow_config.dtype,
            "torch_threads": torch.get_num_threads(),
            "world_size": comm.world_size if comm is not None else 1,
            "prior_streams": trainer.n_streams,
            "init_from": warm_source,
        },
    )
    if main and out is not None:
        _write_records(out, result, trainer, theory, cfg, figure)
    trainer.flow.eval()
    return trainer.flow, result


def _write_records(
    out: Path,
    result: TrainResult,
    trainer: Trainer,
    theory: Phi4Theory,
    cfg: TrainSettings,
    figure: bool,
) -> None:
    """Write summary.json (and training.png); after a NaN/inf loss also the history so far."""
    if result.stop_reason == "nonfinite_loss" and trainer.history["step"]:
        write_history_csv(trainer.history, out / HISTORY_NAME)
    if result.checkpoint is None and not trainer.history["step"]:
        return
    summary = {**result.summary(), "theory": theory.to_dict(), "flow": trainer.arch}
    records.write_json(out / SUMMARY_NAME, {**summary, "train": asdict(cfg)}, indent=2)
    if figure and trainer.history["step"]:
        plot_history(result.history, out / FIGURE_NAME, cfg.target_acceptance)
