"""The scan job table: what each ``[scan] job = ...`` name runs, checks and summarizes.

The scan engine (:mod:`lattice_samplers.scan`) knows no workflow; this module binds the
workflows to it.  :data:`JOBS` maps a name to a :class:`~lattice_samplers.scan.Job`:

* ``selftest``: draws a few normal numbers from the task seed (no numba, no torch), a check
  of the scan machinery (:mod:`lattice_samplers.testing.selftest`);
* ``sample``: one classical sampler run as ``lattice-samplers sample`` does it, the full run
  in ``<task_id>/results.nc``, checkpointed there so a killed task resumes;
* ``compare``: every sampler on one theory point (:mod:`lattice_samplers.workflows.compare`);
  ``compare.flow_checkpoint`` is a path key (identified by content, stored relative);
* ``train``: one flow training (:mod:`lattice_samplers.workflows.train`);
* ``tune``: one row of the tuning table (:mod:`lattice_samplers.workflows.tune`).

Each workflow provides its hooks (``*_task``, ``validate_*``, ``summarize_*``); this module
only binds them.  ``sample``, ``compare`` and ``train`` resolve ``theory.beta = "tuned"`` per
task in their ``prepare`` hook (:func:`lattice_samplers.beta_table.resolve_tuned`).  torch is
loaded only when a flow is built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lattice_samplers.beta_table import resolve_tuned
from lattice_samplers.records import write_json, write_text
from lattice_samplers.scan import Job
from lattice_samplers.testing.selftest import SELFTEST_JOB
from lattice_samplers.workflows import compare as compare_workflow
from lattice_samplers.workflows import sample as sample_workflow
from lattice_samplers.workflows import train as train_workflow
from lattice_samplers.workflows import tune as tune_workflow

__all__ = ["JOBS", "compare_job", "train_job"]


# ---------------------------------------------------------------------------- compare, train
def _replace_strings(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, dict):
        return {k: _replace_strings(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_strings(v, old, new) for v in obj]
    return obj


def _portable_outputs(out_path: Path, replacements: dict[str, str]) -> None:
    """Rewrite absolute paths in the JSON and CSV files a workflow wrote into ``out_path``."""
    for path in sorted(out_path.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        if any(old in text for old in replacements):
            data = json.loads(text)
            for old, new in replacements.items():
                data = _replace_strings(data, old, new)
            write_json(path, data)
    for path in sorted(out_path.glob("*.csv")):
        text = path.read_text(encoding="utf-8")
        if any(old in text for old in replacements):
            for old, new in replacements.items():
                text = text.replace(old, new)
            write_text(path, text)


def _scan_relative(out_path: Path, extra: str | None = None) -> dict[str, str]:
    """Absolute prefixes -> their form relative to the scan folder (``out_path/../..``)."""
    scan = out_path.parent.parent
    out = {}
    if extra and os.path.isabs(extra):
        out[extra] = Path(os.path.relpath(extra, scan)).as_posix()
    out[str(scan.resolve()) + os.sep] = ""
    out[str(scan) + os.sep] = ""
    return out


def _relative_to_scan(result: Any, out_path: Path, extra: str | None = None) -> Any:
    """The task's result, and its JSON/CSV outputs on disk, with paths relative to the scan."""
    replacements = _scan_relative(out_path, extra)
    for old, new in replacements.items():
        result = _replace_strings(result, old, new)
    _portable_outputs(out_path, replacements)
    return result


def compare_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Run ``lattice-samplers compare`` on ``config``; outputs go to ``out_path``.

    The flow checkpoint arrives as an absolute path; the result and the JSON/CSV outputs
    name it relative to the scan folder (``out_path/../..``), as every scan record does.
    """
    result = compare_workflow.compare_task(config, out_path)
    checkpoint = (config.get("compare") or {}).get("flow_checkpoint")
    return _relative_to_scan(result, out_path, checkpoint)


def train_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Train one flow (:func:`lattice_samplers.workflows.train.train_task`); resumes.

    Paths in the result and in the JSON/CSV outputs are made relative to the scan folder.
    """
    return _relative_to_scan(train_workflow.train_task(config, out_path), out_path)


#: name -> Job: the table the CLI and the analysis scripts pass to the scan engine.
JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        SELFTEST_JOB,
        Job(
            "sample",
            sample_workflow.sample_task,
            validate=sample_workflow.validate_sample,
            prepare=resolve_tuned,
            seed_keys=("run.seed",),
            summarize=sample_workflow.summarize_sample,
            description="one classical sampler run (Metropolis, HMC, cluster) with errors",
        ),
        Job(
            "compare",
            compare_job,
            validate=compare_workflow.validate_compare,
            prepare=resolve_tuned,
            seed_keys=("run.seed", "train.seed"),
            path_keys=("compare.flow_checkpoint",),
            summarize=compare_workflow.summarize_compare,
            description="every sampler on one theory point, flow training counted",
        ),
        Job(
            "train",
            train_job,
            validate=train_workflow.validate_train,
            prepare=resolve_tuned,
            seed_keys=("train.seed",),
            summarize=train_workflow.summarize_train,
            description="train one flow; held-out acceptance history and steps to targets",
        ),
        Job(
            "tune",
            tune_workflow.tune_task,
            validate=tune_workflow.validate_tune,
            seed_keys=("tune.seed",),
            summarize=tune_workflow.summarize_tune,
            description="tune the ising beta to a target xi/L (one row of the tuning table)",
        ),
    )
}
