"""Reverse-KL training of flows: settings, the pure loop, warm starts.

* :mod:`.config`: :class:`TrainSettings`, the history columns, torch's CPU threads;
* :mod:`.metrics`: :func:`reverse_kl_loss`, IMH acceptance, Kish ESS and Var(log w) of a batch;
* :mod:`.schedule`: learning-rate schedules (cosine, constant, step decay, warm-up);
* :mod:`.streams`: the seeds of a run's random streams;
* :mod:`.guard`: the divergence guard (skip, roll back, lower the rate) and the best-flow keeper;
* :mod:`.trainer`: :class:`Trainer` (one flow's optimizer, streams, guard and history);
* :mod:`.loop`: :func:`run_loop`, :func:`fit` (takes a flow and an action, returns the flow and
  its history; writes no files);
* :mod:`.warmstart`: :func:`init_from_checkpoint` (weights across lattice sizes).

The training session (checkpoints, resume, signals, files) and the curriculum are the train
workflow: :mod:`lattice_samplers.workflows.train`.
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
from lattice_samplers.flows.train.warmstart import init_from_checkpoint, init_from_flow

__all__ = [
    "HISTORY_COLUMNS",
    "LoopOutcome",
    "NonFiniteLossError",
    "TrainSettings",
    "Trainer",
    "TrainingDiverged",
    "default_threads",
    "ess_kish",
    "fit",
    "imh_acceptance",
    "init_from_checkpoint",
    "init_from_flow",
    "physical_cores",
    "reverse_kl_loss",
    "run_loop",
    "set_torch_threads",
    "trajectory_changes",
    "weight_metrics",
]
