"""The ``train`` workflow: one flow trained by reverse KL, spec -> training -> summary.

The command line's ``lattice-samplers train`` and the scaling study's scan job both train
through :func:`lattice_samplers.flows.train_flow`; this module holds the scan job, which
resumes a killed task from its checkpoint and reports the held-out acceptance history and the
steps and seconds at which each target acceptance was first reached.  torch is imported only
when a task runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers.config import ConfigError
from lattice_samplers.growth_fits import first_reached
from lattice_samplers.specs import train_spec

__all__ = ["summarize_train", "train_task", "validate_train"]


def validate_train(config: Mapping[str, Any]) -> None:
    """Scan job hook: raise :class:`~lattice_samplers.config.ConfigError` for a bad task."""
    if train_spec(config, study=True).curriculum is not None:
        raise ConfigError("[curriculum] is for the train command; a scan task trains one stage")


def train_task(config: Mapping[str, Any], out_path: Path) -> dict[str, Any]:
    """Train one flow (resuming from ``out_path`` if a checkpoint is there) and summarize.

    Returns the training summary plus ``eval`` (held-out history: step, train_s,
    acceptance, ess_kish, var_log_weight), ``targets`` ({target: {step, seconds}}, None
    where not reached), ``L``, ``volume`` and ``var_log_weight_per_site`` at the end.
    """
    from lattice_samplers.workflows.train.session import train_flow

    validate_train(config)
    spec = train_spec(config, study=True)
    theory, flow_cfg, train_cfg, targets = spec.theory, spec.flow, spec.train, spec.targets
    out_path.mkdir(parents=True, exist_ok=True)
    resume = (out_path / "checkpoint.pt").is_file()
    _, result = train_flow(theory, flow_cfg, train_cfg, out_dir=out_path, progress=False,
                           resume=resume)  # fmt: skip
    h = result.history
    have = np.isfinite(np.asarray(h["eval_acceptance"], dtype=float))
    ev = {
        "step": np.asarray(h["step"])[have].astype(int).tolist(),
        "train_s": np.asarray(h["train_s"], dtype=float)[have].tolist(),
        "acceptance": np.asarray(h["eval_acceptance"], dtype=float)[have].tolist(),
        "ess_kish": np.asarray(h["eval_ess_kish"], dtype=float)[have].tolist(),
        "var_log_weight": np.asarray(h["eval_var_log_weight"], dtype=float)[have].tolist(),
    }
    reached = {}
    for t in targets:
        step, sec = first_reached(
            np.asarray(ev["step"]), np.asarray(ev["acceptance"]), np.asarray(ev["train_s"]), t
        )
        reached[f"{t:g}"] = {"step": step, "seconds": sec}
    summary = result.summary()
    var = summary.get("var_log_weight")
    return {
        **summary,
        "L": theory.L,
        "volume": theory.volume,
        "theory": theory.to_dict(),
        "device": train_cfg.device,
        "eval": ev,
        "targets": reached,
        "var_log_weight_per_site": None if var is None else var / theory.volume,
        "checkpoint_dir": out_path.name,
    }


def summarize_train(result: Mapping[str, Any]) -> dict[str, Any]:
    """Scan job hook: final acceptance, steps to each target and training seconds."""
    row = {"L": result.get("L"), "final_acc": result.get("final_acceptance")}
    for t, v in (result.get("targets") or {}).items():
        row[f"steps@{t}"] = v.get("step")
    row["train_s"] = result.get("train_seconds")
    return row
