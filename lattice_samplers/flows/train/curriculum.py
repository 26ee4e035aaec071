"""Curriculum training across lattice sizes: each stage warm-starts from the one before.

Training cost is counted honestly: every stage's training seconds are kept, and
:attr:`CurriculumResult.train_seconds` is their sum, the cost to charge the final flow with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lattice_samplers.flows.model import Flow, FlowConfig
from lattice_samplers.flows.train.config import TrainConfig
from lattice_samplers.flows.train.session import TrainResult, train_flow
from lattice_samplers.theory import Phi4Theory

__all__ = ["CurriculumResult", "CurriculumStage", "train_curriculum"]


@dataclass
class CurriculumStage:
    """One stage of a curriculum.

    Attributes
    ----------
    theory : Phi4Theory
        The stage's target.
    result : TrainResult
        Its training result (``result.train_seconds``: this stage alone).
    out_dir : Path or None
        Where the stage wrote its records.
    """

    theory: Phi4Theory
    result: TrainResult
    out_dir: Path | None = None

    @property
    def train_seconds(self) -> float:
        """Training seconds of this stage."""
        return self.result.train_seconds


@dataclass
class CurriculumResult:
    """The stages of a curriculum and the final flow.

    Attributes
    ----------
    stages : list of CurriculumStage
        In training order.
    flow : Flow
        The flow of the last stage.
    """

    stages: list[CurriculumStage]
    flow: Flow

    @property
    def train_seconds(self) -> float:
        """Total training seconds, summed over the stages."""
        return float(sum(s.train_seconds for s in self.stages))

    @property
    def n_steps(self) -> int:
        """Total optimizer steps, summed over the stages."""
        return int(sum(s.result.n_steps for s in self.stages))


def train_curriculum(
    theories: Sequence[Phi4Theory],
    flow_config: FlowConfig,
    train_config: TrainConfig | Sequence[TrainConfig],
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> CurriculumResult:
    """Train on each theory in turn, warm-starting every stage from the previous flow.

    Parameters
    ----------
    theories : sequence of Phi4Theory
        The stages, e.g. the same couplings at L = 8, 16, 32.
    flow_config : FlowConfig
        One architecture for all stages; its parameter shapes must not depend on L (a conv
        conditioner), else the second stage is refused with a one-line error.
    train_config : TrainConfig or sequence of TrainConfig
        Settings for every stage, or one per stage.
    out_dir : str or Path, optional
        Each stage writes into ``out_dir/stage{i}_L{L}`` (see :func:`train_flow`).
    progress : bool
        Show progress bars.

    Raises
    ------
    ValueError
        No stages, a wrong number of configs, or a stage that cannot be warm-started.
    """
    if not theories:
        raise ValueError("a curriculum needs at least one theory")
    configs = (
        [train_config] * len(theories)
        if isinstance(train_config, TrainConfig)
        else list(train_config)
    )
    if len(configs) != len(theories):
        raise ValueError(f"{len(configs)} train configs for {len(theories)} stages")
    stages: list[CurriculumStage] = []
    flow: Flow | None = None
    for i, (theory, cfg) in enumerate(zip(theories, configs)):
        stage_dir = None if out_dir is None else Path(out_dir) / f"stage{i}_L{theory.L}"
        flow, result = train_flow(
            theory, flow_config, cfg, out_dir=stage_dir, progress=progress, init_from=flow
        )
        if result.stop_reason == "nonfinite_loss":
            raise FloatingPointError(f"curriculum stage {i} (L = {theory.L}): {result.message}")
        stages.append(CurriculumStage(theory, result, stage_dir))
    assert flow is not None
    return CurriculumResult(stages, flow)
