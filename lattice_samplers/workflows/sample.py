"""The ``sample`` workflow: one classical sampler on one theory point, spec -> run -> result.

Output safety lives here, so every front end gets it, through the one output check
(:mod:`lattice_samplers.workflows.outputs`): the results file and its checkpoint are checked
before any work and again when written; an existing results file is replaced only when asked
(``overwrite``); an existing checkpoint is continued only with ``resume`` and never silently
restarted over; the checkpoint cannot be the results file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lattice_samplers.config import ConfigError, require_memory
from lattice_samplers.driver import RunResult, RunSettings, run_sampler, write_results
from lattice_samplers.kernels.common import N_OBS
from lattice_samplers.specs import SampleSpec, sample_spec
from lattice_samplers.summary import result_summary
from lattice_samplers.workflows.outputs import (
    OutputClaim,
    check_outputs,
    describe,
    protected,
    same_file,
)

__all__ = [
    "SampleOutputs",
    "FIELD_ARRAYS",
    "check_memory",
    "plan_outputs",
    "run_sample",
    "sample_task",
    "summarize_sample",
    "validate_sample",
]


#: Lattice-sized float64 arrays one chain holds at once, at most (the field, its proposal or
#: momentum and force, the cluster's labels and stack, the final field): an upper estimate.
FIELD_ARRAYS = 8


def check_memory(run: RunSettings, n_stats: int, L: int | None = None) -> None:
    """Refuse a run whose fields or recorded (chain, draw) series would not fit in memory.

    Estimated before anything is allocated: ``FIELD_ARRAYS`` lattice-sized float64 arrays per
    chain, and the recorded series of every chain.

    Raises
    ------
    ConfigError
        Naming what needs the memory, the bytes needed and the bytes available.
    """
    if L is not None:
        require_memory(
            run.n_chains * FIELD_ARRAYS * L * L * 8,
            f"[theory] L = {L} x n_chains = {run.n_chains} (the lattice fields)",
            "lower theory.L or run.n_chains",
        )
    require_memory(
        run.n_chains * (run.n_steps // run.thin) * (N_OBS + n_stats) * 8,
        f"[run] n_steps = {run.n_steps} x n_chains = {run.n_chains} (the recorded series)",
        "raise run.thin or lower run.n_steps",
    )


@dataclass(frozen=True)
class SampleOutputs:
    """Where a ``sample`` run writes: the results file and its checkpoint (either may be None).

    ``claim`` is the checked output set (:func:`~lattice_samplers.workflows.outputs.check_outputs`);
    None (a scan task, a library call) writes without the protection against other runs.
    """

    results: Path | None
    checkpoint: Path | None
    resume: bool = False
    claim: OutputClaim | None = None


def plan_outputs(
    out: str | Path | None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> SampleOutputs:
    """Check the output paths of a run before it starts (nothing is written).

    The checkpoint defaults to ``OUT.ckpt`` beside the results file.

    Raises
    ------
    ConfigError
        An unwritable path, the checkpoint and the results file being one file, a results
        file that exists (without ``overwrite``), a checkpoint of an earlier run or any other
        file at the checkpoint path (without ``resume`` or ``overwrite``), or ``resume``
        without a checkpoint.
    """
    results = Path(out) if out is not None else None
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is None and results is not None:
        ckpt = results.with_name(results.name + ".ckpt")
    if results is not None and ckpt is not None and same_file(results, ckpt):
        raise ConfigError(
            f"--checkpoint {ckpt} is the --out file: the results would be removed with the "
            "checkpoint at the end; give two different files"
        )
    if resume and (ckpt is None or not ckpt.is_file()):
        raise ConfigError(f"--resume: no checkpoint at {ckpt or '(give --out or --checkpoint)'}")
    if results is not None:
        check_outputs(
            files=[results],
            overwrite=overwrite,
            flag="--out",
            hint="choose another file or pass --overwrite to replace it",
        )
    if ckpt is not None:
        found = describe(ckpt) if ckpt.is_file() else ""
        hint = (
            "continue it with --resume, or pass --overwrite to start again"
            if found == "a checkpoint of an earlier run"
            else "it is not a checkpoint of this program; choose another --checkpoint file"
            " (--overwrite would replace it)"
        )
        check_outputs(
            files=[ckpt],
            overwrite=overwrite,
            adopt=[ckpt] if resume else [],
            flag="checkpoint",
            hint=hint,
        )
    claim = OutputClaim(
        files=tuple(p for p in (results, ckpt) if p is not None),
        overwrite=overwrite,
        adopt=(ckpt,) if resume and ckpt is not None else (),
        results=(results,) if results is not None else (),
    )
    return SampleOutputs(results, ckpt, resume, claim)


def run_sample(
    spec: SampleSpec, outputs: SampleOutputs | None = None, progress: bool | None = None
) -> RunResult:
    """Run a validated spec; write the results file (then drop the checkpoint) if asked.

    With a checked output set the files are written under its protection
    (:func:`~lattice_samplers.workflows.outputs.protected`): another run's file that appeared
    meanwhile is not replaced, and the checkpoint is removed only if this run wrote it.

    Raises
    ------
    lattice_samplers.driver.RunInterrupted
        On SIGINT/SIGTERM, after the checkpoint (if any) is saved.
    ConfigError
        The run's arrays would not fit in memory (before anything runs).
    lattice_samplers.records.OutputError
        A write failed, or an output appeared from another run (then this run's file is kept
        under another name, given in the message).
    """
    outputs = outputs or SampleOutputs(None, None)
    check_memory(spec.run, len(spec.sampler.stat_names), spec.theory.L)
    guard = protected(outputs.claim) if outputs.claim is not None else contextlib.nullcontext()
    with guard as active:
        if outputs.results is not None:
            outputs.results.parent.mkdir(parents=True, exist_ok=True)
        result = run_sampler(
            spec.sampler,
            spec.run,
            checkpoint_path=outputs.checkpoint,
            resume=outputs.resume,
            progress=progress,
            config=spec.config,
        )
        if outputs.results is not None:
            write_results(result, outputs.results)
            # the results file now holds everything; the checkpoint only served this run (one
            # made by another run, or a file that is not ours, is left alone unless the user
            # asked to start over with --overwrite)
            ckpt = outputs.checkpoint
            ours = active is None or active.overwrite or active.made_here(ckpt or "")
            if ckpt is not None and ours:
                ckpt.unlink(missing_ok=True)
    return result


# ----------------------------------------------------------------------------- scan job
def validate_sample(config: Mapping[str, Any]) -> None:
    """Scan job hook: raise :class:`ConfigError` if ``config`` is not a valid sample task."""
    spec = sample_spec(config)
    check_memory(spec.run, len(spec.sampler.stat_names), spec.theory.L)


def sample_task(config: Mapping[str, Any], out_path: Path) -> dict[str, Any]:
    """Scan job hook: one ``sample`` run from ``config`` (as ``lattice-samplers sample``).

    Writes the run to ``out_path/results.nc`` and returns its JSON summary plus
    ``results_file`` (relative to the scan folder).  While it runs, ``out_path/run.ckpt`` is
    checkpointed; a task that was killed resumes from it when the scan is run again.
    """
    spec = sample_spec(config)
    out_path = Path(out_path)
    out_path.mkdir(parents=True, exist_ok=True)
    checkpoint = out_path / "run.ckpt"
    outputs = SampleOutputs(out_path / "results.nc", checkpoint, checkpoint.is_file())
    result = run_sample(spec, outputs, progress=False)
    summary = result_summary(result, tau_estimator=spec.analysis.tau_estimator)
    summary["results_file"] = (out_path / "results.nc").relative_to(out_path.parent.parent)
    summary["results_file"] = summary["results_file"].as_posix()
    return summary


def summarize_sample(result: Mapping[str, Any]) -> dict[str, Any]:
    """Scan job hook: the headline columns of a sample task in the scan's summary table."""
    obs = result.get("observables", {})
    absm = obs.get("abs_magnetization", {})
    chi = obs.get("two_point_susceptibility", {})
    return {
        "acceptance": result.get("acceptance"),
        "|m|": absm.get("mean"),
        "|m|_err": absm.get("err"),
        "tau_int(|m|)": absm.get("tau_int"),
        "tau_int(M^2/V)": chi.get("tau_int"),
        "tau_int_arviz(|m|)": absm.get("tau_int_arviz"),
        "r_hat(|m|)": absm.get("r_hat"),
        "estimator": absm.get("estimator"),
        "wall_time_s": result.get("wall_time_s"),
        "core_time_s": result.get("core_time_s"),
    }
