"""Reverse-KL training of flows: settings, the pure loop, the session, warm starts.

* :mod:`.config`: :class:`TrainSettings`, the history columns, torch's CPU threads;
* :mod:`.metrics`: :func:`reverse_kl_loss`, IMH acceptance, Kish ESS and Var(log w) of a batch;
* :mod:`.schedule`: learning-rate schedules (cosine, constant, step decay, warm-up);
* :mod:`.streams`: the seeds of a run's random streams;
* :mod:`.guard`: the divergence guard (skip, roll back, lower the rate) and the best-flow keeper;
* :mod:`.trainer`: :class:`Trainer` (one flow's optimizer, streams, guard and history);
* :mod:`.loop`: :func:`run_loop`, :func:`fit` (takes a flow and an action, returns the flow and
  its history; writes no files);
* :mod:`.session`: :func:`train_flow` and :class:`TrainResult` (checkpoints, resume, signals,
  history.csv, summary.json, figure, DDP);
* :mod:`.warmstart`: :func:`init_from_checkpoint` (weights across lattice sizes);
* :mod:`.curriculum`: :func:`train_curriculum` (stage by stage, warm-started).
"""

from lattice_samplers.autocorr import ess_kish
from lattice_samplers.flows.train.config import (
    HISTORY_COLUMNS,
    TrainSettings,
    default_threads,
    physical_cores,
    set_torch_threads,
    trajectory_changes,
)
from lattice_samplers.flows.train.curriculum import (
    CurriculumResult,
    CurriculumStage,
    train_curriculum,
)
from lattice_samplers.flows.train.loop import (
    LoopOutcome,
    NonFiniteLossError,
    Trainer,
    TrainingDiverged,
    fit,
    imh_acceptance,
    reverse_kl_loss,
    run_loop,
    weight_metrics,
)
from lattice_samplers.flows.train.session import (
    CHECKPOINT_NAME,
    FIGURE_NAME,
    HISTORY_NAME,
    SUMMARY_NAME,
    TrainingInterrupted,
    TrainResult,
    check_output_dir,
    plot_history,
    read_history_csv,
    train_flow,
    write_history_csv,
)
from lattice_samplers.flows.train.warmstart import init_from_checkpoint, init_from_flow

__all__ = [
    "CHECKPOINT_NAME",
    "FIGURE_NAME",
    "HISTORY_COLUMNS",
    "HISTORY_NAME",
    "SUMMARY_NAME",
    "CurriculumResult",
    "CurriculumStage",
    "LoopOutcome",
    "NonFiniteLossError",
    "TrainSettings",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "check_output_dir",
    "default_threads",
    "ess_kish",
    "fit",
    "imh_acceptance",
    "init_from_checkpoint",
    "init_from_flow",
    "physical_cores",
    "plot_history",
    "read_history_csv",
    "reverse_kl_loss",
    "run_loop",
    "set_torch_threads",
    "train_curriculum",
    "train_flow",
    "trajectory_changes",
    "weight_metrics",
    "write_history_csv",
]
