"""The train workflow's entry: a validated spec in, one training (or a curriculum) run.

Under ``torchrun`` the run joins the process group (gloo on CPU, nccl on CUDA); every
process trains, rank 0 alone writes the output folder.  The command line prints what this
returns; torch is imported with this module.
"""

from __future__ import annotations

from pathlib import Path

from lattice_samplers.flows.distributed import session as process_group
from lattice_samplers.specs import TrainSpec
from lattice_samplers.workflows.train.curriculum import CurriculumResult, train_curriculum
from lattice_samplers.workflows.train.session import (
    TrainingInterrupted,
    TrainResult,
    check_output_dir,
    train_flow,
)

__all__ = ["TrainingInterrupted", "run_curriculum", "run_training"]


def run_training(
    spec: TrainSpec,
    out: Path,
    *,
    progress: bool,
    resume: bool = False,
    init_from: str | Path | None = None,
) -> tuple[TrainResult, bool]:
    """Train one flow as ``spec`` says into ``out``; return (result, this process reports).

    The process that reports is rank 0, or the only process.
    :func:`~lattice_samplers.workflows.train.session.train_flow` checks the output folder
    before writing; :class:`TrainingInterrupted` propagates after its checkpoint is saved.
    """
    with process_group(spec.train.device) as comm:
        _, result = train_flow(
            spec.theory,
            spec.flow,
            spec.train,
            out_dir=out,
            progress=progress,
            resume=resume,
            init_from=init_from,
            figure=True,
        )
    return result, comm is None or comm.is_main


def run_curriculum(spec: TrainSpec, out: Path, *, progress: bool) -> tuple[CurriculumResult, bool]:
    """Train the ``[curriculum]`` stages of ``spec``; return (result, this process reports).

    The last stage writes into ``out``, the earlier ones under ``out/stages``.  The folder
    is checked (against the final stage) before any stage runs.
    """
    curriculum = spec.curriculum
    if curriculum is None:
        raise ValueError("the spec has no [curriculum]")
    check_output_dir(out, spec.theory, spec.flow, False, curriculum.train[-1])
    with process_group(spec.train.device) as comm:
        result = train_curriculum(
            curriculum.theories,
            spec.flow,
            curriculum.train,
            out_dir=out / "stages",
            progress=progress,
            final_out_dir=out,
        )
    return result, comm is None or comm.is_main
