"""Curriculum training across lattice sizes: each stage warm-starts from the one before.

Training cost is counted honestly: every stage's training seconds are kept, and
:attr:`CurriculumResult.train_seconds` is their sum, the cost to charge the final flow with.
With ``final_out_dir`` the final flow's checkpoint records that sum as its ``train_s`` (what
``compare --flow`` charges) and the stages under ``curriculum``; its ``summary.json`` has the
same total as ``train_seconds`` (``history.csv`` keeps the last stage's own clock).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lattice_samplers import records
from lattice_samplers.flows.checkpoint import read_checkpoint
from lattice_samplers.flows.model import Flow, FlowSettings
from lattice_samplers.flows.train.config import TrainSettings
from lattice_samplers.theory import Phi4Theory
from lattice_samplers.workflows.train.session import TrainResult, train_flow

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

    def stage_records(self) -> list[dict[str, Any]]:
        """One JSON-friendly row per stage: L, beta, steps, seconds, held-out acceptance, ESS."""
        rows = []
        for s in self.stages:
            summary = s.result.summary()
            rows.append(
                {
                    "L": s.theory.L,
                    "theory": s.theory.to_dict(),
                    "n_steps": s.result.n_steps,
                    "train_seconds": s.train_seconds,
                    "wall_seconds": s.result.wall_seconds,
                    "final_acceptance": summary["final_acceptance"],
                    "ess_kish": summary["ess_kish"],
                    "var_log_weight": summary["var_log_weight"],
                    "stop_reason": s.result.stop_reason,
                    "out": None if s.out_dir is None else str(s.out_dir),
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        """The last stage's summary with the totals: ``train_seconds`` is the sum over stages.

        ``final_stage_train_seconds`` is the last stage alone, ``n_steps_total`` all stages'
        steps, ``curriculum`` the per-stage rows of :meth:`stage_records`.
        """
        last = self.stages[-1].result.summary()
        return {
            **last,
            "train_seconds": self.train_seconds,
            "wall_seconds": float(sum(s.result.wall_seconds for s in self.stages)),
            "final_stage_train_seconds": last["train_seconds"],
            "n_steps_total": self.n_steps,
            "curriculum": self.stage_records(),
        }


def _charge_total(out: Path, result: CurriculumResult) -> None:
    """Make the final stage's checkpoint and summary.json carry the curriculum's total."""
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        data = read_checkpoint(ckpt)
        state = dict(data.get("train") or {})
        state["final_stage_train_s"] = state.get("train_s")
        state["train_s"] = result.train_seconds
        state["curriculum"] = [
            {k: v for k, v in row.items() if k != "theory"} for row in result.stage_records()
        ]
        data["train"] = state
        records.atomic_write(ckpt, lambda tmp: torch.save(data, tmp))
    summary_path = out / "summary.json"
    if summary_path.is_file():
        old = json.loads(summary_path.read_text())
        records.write_json(summary_path, {**old, **result.summary()}, indent=2)


def train_curriculum(
    theories: Sequence[Phi4Theory],
    flow_config: FlowSettings,
    train_config: TrainSettings | Sequence[TrainSettings],
    out_dir: str | Path | None = None,
    progress: bool = False,
    final_out_dir: str | Path | None = None,
) -> CurriculumResult:
    """Train on each theory in turn, warm-starting every stage from the previous flow.

    Parameters
    ----------
    theories : sequence of Phi4Theory
        The stages, e.g. the same couplings at L = 8, 16, 32.
    flow_config : FlowSettings
        One architecture for all stages; its parameter shapes must not depend on L (a conv
        conditioner), else the second stage is refused with a one-line error.
    train_config : TrainSettings or sequence of TrainSettings
        Settings for every stage, or one per stage.
    out_dir : str or Path, optional
        Each stage writes into ``out_dir/stage{i}_L{L}`` (see :func:`train_flow`).
    progress : bool
        Show progress bars.
    final_out_dir : str or Path, optional
        Where the last stage writes instead (``lattice-samplers train`` puts the final flow in
        its output folder, the earlier stages under it).

    Raises
    ------
    ValueError
        No stages, a wrong number of configs, or a stage that cannot be warm-started.
    """
    if not theories:
        raise ValueError("a curriculum needs at least one theory")
    configs = (
        [train_config] * len(theories)
        if isinstance(train_config, TrainSettings)
        else list(train_config)
    )
    if len(configs) != len(theories):
        raise ValueError(f"{len(configs)} train configs for {len(theories)} stages")
    stages: list[CurriculumStage] = []
    flow: Flow | None = None
    for i, (theory, cfg) in enumerate(zip(theories, configs)):
        stage_dir = None if out_dir is None else Path(out_dir) / f"stage{i}_L{theory.L}"
        if final_out_dir is not None and i == len(theories) - 1:
            stage_dir = Path(final_out_dir)
        flow, result = train_flow(
            theory, flow_config, cfg, out_dir=stage_dir, progress=progress, init_from=flow
        )
        if result.stop_reason == "nonfinite_loss":
            raise FloatingPointError(f"curriculum stage {i} (L = {theory.L}): {result.message}")
        stages.append(CurriculumStage(theory, result, stage_dir))
    assert flow is not None
    result = CurriculumResult(stages, flow)
    if final_out_dir is not None:
        _charge_total(Path(final_out_dir), result)
    return result
