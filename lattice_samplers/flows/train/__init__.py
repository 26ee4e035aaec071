"""Reverse-KL training of flows: settings, the pure loop, warm starts.

* :mod:`.config`: :class:`TrainSettings`, the history columns, torch's CPU threads;
* :mod:`.loop`: :class:`Trainer`, :func:`reverse_kl_loss`, :func:`run_loop`, :func:`fit`
  (takes a flow and an action, returns the flow and its history; writes no files);
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
