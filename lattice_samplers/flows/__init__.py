"""Normalizing flows for lattice fields: layers, models, reverse-KL training, checkpoints.

This is the only package folder that imports torch.  The public API:

* :class:`CNFSettings` (the default flow) and :class:`CouplingFlowSettings`, one settings
  class per family (:func:`flow_settings` reads a ``[flow]`` section into one),
  :func:`build_flow`, :class:`Flow` (``flow.sample(n)`` gives float64 NumPy
  ``(phi, log_q)``), :class:`FlowProposal` (the independence-Metropolis proposal);
* :class:`TrainSettings`, :class:`Trainer`, :func:`init_from_checkpoint` (see
  :mod:`lattice_samplers.flows.train`; the training session with its files is the train
  workflow, :mod:`lattice_samplers.workflows.train`); :func:`path_gradient_loss` (the
  path-gradient reverse-KL surrogate, ``TrainSettings(gradient="path")``);
* :func:`load_flow`, :func:`save_checkpoint`, :class:`CheckpointError`;
* :class:`TorchAction` (torch twin of ``Phi4Theory.action``).
"""

from lattice_samplers.flows.action import TorchAction, phi4_action
from lattice_samplers.flows.checkpoint import (
    CheckpointError,
    load_flow,
    read_checkpoint,
    save_checkpoint,
)
from lattice_samplers.flows.model import Flow, build_flow
from lattice_samplers.flows.path_gradient import PathGradientLoss, path_gradient_loss
from lattice_samplers.flows.proposal import FlowProposal
from lattice_samplers.flows.settings import (
    CNFSettings,
    CouplingFlowSettings,
    FlowSettings,
    flow_settings,
)
from lattice_samplers.flows.train import (
    Trainer,
    TrainSettings,
    ess_kish,
    imh_acceptance,
    init_from_checkpoint,
    set_torch_threads,
)

__all__ = [
    "CNFSettings",
    "CheckpointError",
    "CouplingFlowSettings",
    "Flow",
    "FlowSettings",
    "FlowProposal",
    "PathGradientLoss",
    "TorchAction",
    "TrainSettings",
    "Trainer",
    "build_flow",
    "flow_settings",
    "ess_kish",
    "imh_acceptance",
    "init_from_checkpoint",
    "path_gradient_loss",
    "load_flow",
    "phi4_action",
    "read_checkpoint",
    "save_checkpoint",
    "set_torch_threads",
]
