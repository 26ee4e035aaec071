"""The scan job table: what each ``[scan] job = ...`` name runs, checks and summarizes.

The scan engine (:mod:`lattice_samplers.scan`) knows no workflow; this module binds the
workflows to it.  :data:`JOBS` maps a name to a :class:`~lattice_samplers.scan.Job`:

* ``selftest``: draws a few normal numbers from the task seed (no numba, no torch; tests);
* ``sample``: one classical sampler run as ``lattice-samplers sample`` does it, the full run
  in ``<task_id>/results.nc``, checkpointed there so a killed task resumes;
* ``compare``: every sampler on one theory point (:mod:`lattice_samplers.compare`);
  ``compare.flow_checkpoint`` is a path key (identified by content, stored relative);
* ``train``: one flow training (:mod:`lattice_samplers.scaling`);
* ``tune``: one row of the tuning table (:func:`lattice_samplers.tune.tune_job`).

``sample``, ``compare`` and ``train`` resolve ``theory.beta = "tuned"`` per task in their
``prepare`` hook (:func:`lattice_samplers.tune.resolve_tuned`).  Torch-bearing workflows
(compare, train) are imported when their job runs or is validated, not with this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers import tune
from lattice_samplers.config import check_sections, section_to_dataclass
from lattice_samplers.records import write_json, write_text
from lattice_samplers.scan import THREAD_ENV, Job

__all__ = [
    "JOBS",
    "SelfTestConfig",
    "compare_job",
    "sample_job",
    "selftest_job",
    "train_job",
    "tune_job",
]


# ---------------------------------------------------------------------------- selftest
@dataclasses.dataclass(frozen=True)
class SelfTestConfig:
    """``[selftest]`` section of the ``selftest`` job (a scan-machinery check).

    ``fail_if_exists``: raise while that file exists; ``sleep_s``: sleep first; ``log``:
    append one line (task seed, pid) to that file when the task runs.  Tests use them to
    interrupt, slow down and count runs of a scan.
    """

    n: int = 4
    x: float = 0.0
    label: str = ""
    sleep_s: float = 0.0
    fail_if_exists: str = ""
    log: str = ""
    write_bytes: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.sleep_s < 0:
            raise ValueError(f"sleep_s must be >= 0, got {self.sleep_s}")


def _validate_selftest(config: dict[str, Any]) -> None:
    check_sections(config, ["selftest"])
    section_to_dataclass(SelfTestConfig, config.get("selftest"), "selftest")


def selftest_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Draw ``n`` normal numbers (shifted by ``x``) from the task seed; no numba, no torch.

    With ``write_bytes`` > 0 it also writes that many bytes to ``out_path/data.bin`` (an
    output file whose integrity the scan checks).
    """
    cfg = section_to_dataclass(SelfTestConfig, config.get("selftest"), "selftest")
    if cfg.log:
        with open(cfg.log, "a", encoding="utf-8") as f:
            f.write(f"{cfg.seed} {os.getpid()}\n")
    if cfg.fail_if_exists and Path(cfg.fail_if_exists).exists():
        raise RuntimeError(f"selftest: failing on purpose ({cfg.fail_if_exists} exists)")
    if cfg.sleep_s:
        time.sleep(cfg.sleep_s)
    rng = np.random.default_rng(cfg.seed)
    draws = cfg.x + rng.standard_normal(cfg.n)
    if cfg.write_bytes:
        out_path.mkdir(parents=True, exist_ok=True)
        write_text(out_path / "data.bin", "x" * cfg.write_bytes)
    return {
        "mean": float(draws.mean()),
        "draws": [float(d) for d in draws],
        "label": cfg.label,
        # what the task saw: the scan promises single-threaded tasks on every backend
        "thread_env": _thread_env(),
    }


def _thread_env() -> dict[str, str | None]:
    """The thread settings a task runs with (numba's own count once numba is loaded)."""
    env = {k: os.environ.get(k) for k in THREAD_ENV}
    numba = sys.modules.get("numba")
    if numba is not None:  # the scan limits a loaded numba directly, not by its variable
        env["NUMBA_NUM_THREADS"] = str(numba.get_num_threads())
    return env


# ---------------------------------------------------------------------------- sample
def _validate_sample(config: dict[str, Any]) -> None:
    from lattice_samplers.commands.sample import build  # the sample spec lives there for now

    build(config)


def sample_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Run one classical sampler from ``config`` (as ``lattice-samplers sample`` does).

    Writes the full run to ``out_path/results.nc`` and returns its JSON summary
    (:func:`lattice_samplers.summary.result_summary`) plus ``results_file`` (relative to the
    scan folder).  ``out_path/run.ckpt`` is checkpointed while it runs; a task that was
    killed resumes from it when the scan is run again.
    """
    from lattice_samplers.commands.sample import build
    from lattice_samplers.driver.results_file import write_results
    from lattice_samplers.run import run_with_settings
    from lattice_samplers.summary import result_summary

    sampler, run = build(config)
    out_path.mkdir(parents=True, exist_ok=True)
    checkpoint = out_path / "run.ckpt"
    result = run_with_settings(
        sampler,
        run,
        checkpoint_path=checkpoint,
        resume=checkpoint.is_file(),
        progress=False,
        config=config,
    )
    results_file = write_results(result, out_path / "results.nc")
    checkpoint.unlink(missing_ok=True)
    summary = result_summary(result)
    summary["results_file"] = Path(results_file).relative_to(out_path.parent.parent).as_posix()
    return summary


def _summarize_sample(result: dict[str, Any]) -> dict[str, Any]:
    obs = result.get("observables", {})
    absm = obs.get("abs_magnetization", {})
    chi = obs.get("two_point_susceptibility", {})
    return {
        "acceptance": result.get("acceptance"),
        "|m|": absm.get("mean"),
        "|m|_err": absm.get("err"),
        "tau_int(|m|)": absm.get("tau_int"),
        "tau_int(M^2/V)": chi.get("tau_int"),
        "wall_time_s": result.get("wall_time_s"),
    }


# ---------------------------------------------------------------------------- compare
def _validate_compare(config: dict[str, Any]) -> None:
    from lattice_samplers.compare import plan_comparison

    plan_comparison(config)


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


def compare_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Run ``lattice-samplers compare`` on ``config``; outputs go to ``out_path``.

    The flow checkpoint arrives as an absolute path; the result and the JSON/CSV outputs
    name it relative to the scan folder (``out_path/../..``), as every scan record does.
    """
    from lattice_samplers.compare import plan_comparison, run_comparison

    comparison = run_comparison(plan_comparison(config), out_path, progress=False)
    result = comparison.to_dict()
    replacements = _scan_relative(out_path, (config.get("compare") or {}).get("flow_checkpoint"))
    for old, new in replacements.items():
        result = _replace_strings(result, old, new)
    _portable_outputs(out_path, replacements)
    return result


def _summarize_compare(result: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, s in result.get("samplers", {}).items():
        row[f"{name}:acc"] = s.get("acceptance")
        row[f"{name}:tau(|m|)"] = (
            s.get("observables", {}).get("abs_magnetization", {}).get("tau_int")
        )
    return row


# ---------------------------------------------------------------------------- train
def _validate_train(config: dict[str, Any]) -> None:
    from lattice_samplers.scaling import validate_train_job

    validate_train_job(config)


def train_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Train one flow (:func:`lattice_samplers.scaling.train_job`); resumes if interrupted.

    Paths in the result and in the JSON/CSV outputs are made relative to the scan folder.
    """
    from lattice_samplers.scaling import train_job as job

    result = job(config, out_path)
    replacements = _scan_relative(out_path)
    for old, new in replacements.items():
        result = _replace_strings(result, old, new)
    _portable_outputs(out_path, replacements)
    return result


def _summarize_train(result: dict[str, Any]) -> dict[str, Any]:
    row = {"L": result.get("L"), "final_acc": result.get("final_acceptance")}
    for t, v in (result.get("targets") or {}).items():
        row[f"steps@{t}"] = v.get("step")
    row["train_s"] = result.get("train_seconds")
    return row


# ---------------------------------------------------------------------------- tune
def _validate_tune(config: dict[str, Any]) -> None:
    tune.validate_tune_config(config)


def tune_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Tune beta to xi/L for one ``[tune]`` section (:func:`lattice_samplers.tune.tune_job`)."""
    return tune.tune_job(config, out_path)


def _summarize_tune(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("beta", "beta_err", "xi_over_L", "xi_over_L_err", "converged")}


def _summarize_selftest(result: dict[str, Any]) -> dict[str, Any]:
    return {"mean": result["mean"]}


#: name -> Job: the table the CLI and the analysis scripts pass to the scan engine.
JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            "selftest",
            selftest_job,
            validate=_validate_selftest,
            seed_keys=("selftest.seed",),
            summarize=_summarize_selftest,
            description="draw numbers from the task seed (checks the scan machinery)",
        ),
        Job(
            "sample",
            sample_job,
            validate=_validate_sample,
            prepare=tune.resolve_tuned,
            seed_keys=("run.seed",),
            summarize=_summarize_sample,
            description="one classical sampler run (Metropolis, HMC, cluster) with errors",
        ),
        Job(
            "compare",
            compare_job,
            validate=_validate_compare,
            prepare=tune.resolve_tuned,
            seed_keys=("run.seed", "train.seed"),
            path_keys=("compare.flow_checkpoint",),
            summarize=_summarize_compare,
            description="every sampler on one theory point, flow training counted",
        ),
        Job(
            "train",
            train_job,
            validate=_validate_train,
            prepare=tune.resolve_tuned,
            seed_keys=("train.seed",),
            summarize=_summarize_train,
            description="train one flow; held-out acceptance history and steps to targets",
        ),
        Job(
            "tune",
            tune_job,
            validate=_validate_tune,
            seed_keys=("tune.seed",),
            summarize=_summarize_tune,
            description="tune the ising beta to a target xi/L (one row of the tuning table)",
        ),
    )
}
