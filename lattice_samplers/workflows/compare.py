"""The ``compare`` workflow: every sampler on one theory point, the flow's training counted.

All samplers run on the same theory, the same machine and in the same process, one after the
other, with the same chain lengths (``[run]``), and are summarized by the same code
(:func:`lattice_samplers.summary.summarize_observables`, lattice convention tau_int = 1/2 + sum
rho; tau_int, errors, ESS and costs come from ``[analysis] tau_estimator``, ArviZ by default,
with the Gamma method's tau_int reported beside it). For every observable the comparison
reports core seconds (summed over chains: hardware neutral, independent of ``[run] workers``)
per effective sample of production alone and with the flow's training seconds added, and the
elapsed (wall) seconds per effective sample beside them (:mod:`lattice_samplers.cost`), the
flow's break-even chain length against each classical sampler, and a consistency check: a
sampler whose estimate disagrees (beyond ``k_sigma`` combined errors) with most of the other
samplers is flagged (see :func:`_consistency`).

Config sections (all optional; unknown sections or keys are errors):

* ``[theory]``: as everywhere (default: L = 8, ising beta = 0.576, lam = 0.5);
* ``[run]``: ``n_therm``, ``n_steps``, ``thin``, ``n_chains``, ``seed``, ``workers`` shared by all
  samplers;
* ``[compare]``: ``samplers`` (subset of metropolis, hmc, cluster, fourier_hmc, flow,
  flow_hmc; flow_hmc uses the flow of ``flow`` and is charged its training), ``k_sigma``,
  ``flow_checkpoint`` (use a trained flow instead of training);
* ``[metropolis]``, ``[hmc]``, ``[cluster]``: settings of each classical sampler;
* ``[flow]``, ``[train]``: architecture and training of the flow (see ``lattice-samplers
  train``); ``[flow_sampler]``: ``batch_size`` of the independence Metropolis proposals.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers.config import ConfigError
from lattice_samplers.cost import break_even, cost_per_effective_sample
from lattice_samplers.driver import RunResult, run_sampler, write_results
from lattice_samplers.records import json_safe, versions, write_csv, write_json
from lattice_samplers.samplers.flow import FlowSampler, flow_diagnostics
from lattice_samplers.samplers.flow_hmc import cnf_exactness, exactness_diagnostics
from lattice_samplers.specs import (
    ALL_SAMPLERS,
    CLASSICAL,
    FLOW_HMC,
    FLOW_SAMPLER,
    CompareSpec,
    compare_spec,
    flow_hmc_sampler,
)
from lattice_samplers.summary import (
    diagnostics,
    summarize_observables,
)
from lattice_samplers.workflows.outputs import TRAINING_FILES, OutputClaim, check_outputs

__all__ = [
    "Comparison",
    "SamplerRun",
    "TABLE_OBSERVABLES",
    "compare_task",
    "run_comparison",
    "summarize_compare",
    "validate_compare",
    "write_outputs",
    "compare_outputs",
]

#: Observables shown in the printed table (all are in the JSON and CSV).
TABLE_OBSERVABLES = ("abs_magnetization", "two_point_susceptibility", "action_density")


def _sampler_seeds(seed: int, names: tuple[str, ...]) -> dict[str, int]:
    """One independent master seed per sampler (and the flow's proposals) from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, np.uint32)[0]) for n, c in zip(names, children)}


@dataclass
class SamplerRun:
    """One sampler's run in a comparison, with its summary."""

    name: str
    result: RunResult
    observables: dict[str, dict[str, Any]]
    diagnostics: dict[str, Any]
    training_s: float = 0.0
    costs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Comparison:
    """The outcome of :func:`run_comparison`."""

    plan: CompareSpec
    runs: dict[str, SamplerRun]
    seeds: dict[str, int]
    training: dict[str, Any]
    break_even: dict[str, dict[str, dict[str, Any]]]
    consistency: dict[str, dict[str, dict[str, Any]]]
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: ``{"theory": ..., "samplers": {name: {...}}, ...}``."""
        samplers = {}
        for name, r in self.runs.items():
            samplers[name] = {
                "acceptance": r.result.acceptance,
                "wall_time_s": r.result.wall_time_s,
                "core_time_s": r.result.core_time_s,
                "settings": r.result.settings,
                "work": r.result.work,
                "observables": r.observables,
                "cost_per_ess_s": {o: c["seconds_per_ess"] for o, c in r.costs.items()},
                "cost_per_ess_wall_s": {o: c["wall_seconds_per_ess"] for o, c in r.costs.items()},
                "cost_per_ess_with_training_s": {
                    o: c["with_training_s"] for o, c in r.costs.items()
                },
                "cost": r.costs,
                "training_s": r.training_s,
                "diagnostics": r.diagnostics,
                "n_chains": r.result.n_chains,
                "n_steps": r.result.n_steps,
                "n_therm": r.result.n_therm,
                "seed": self.seeds[name],
            }
        return json_safe(
            {
                "theory": self.plan.theory.to_dict(),
                "samplers": samplers,
                "training": self.training,
                "break_even": self.break_even,
                "consistency": self.consistency,
                "tau_int_convention": "lattice: tau_int = 1/2 + sum_t rho(t); "
                "ess = N / (2 tau_int), N = draws of all chains",
                "config": self.plan.config,
                "versions": versions(),
                "elapsed_s": self.elapsed_s,
            }
        )


def _train_or_load(plan: CompareSpec, out_dir: Path | None, progress: bool | None):
    """Return (flow, training record) by training, or by loading ``plan.flow_checkpoint``."""
    from lattice_samplers.flows import load_flow
    from lattice_samplers.flows.model import flow_family
    from lattice_samplers.workflows.train.session import train_flow

    if plan.flow_record is not None:  # read and checked against the theory by compare_spec
        flow = load_flow(plan.flow_record, device=plan.flow_device)
        train = plan.flow_record.get("train") or {}
        return flow, {
            "source": str(plan.flow_checkpoint),
            "family": flow_family(flow.arch),
            "train_seconds": float(train.get("train_s", math.nan)),
            "n_steps": train.get("step"),
            "n_parameters": plan.flow_record.get("n_parameters"),
            # set when the flow was trained at another beta or L (specs._checkpoint_flow)
            "trained_for": plan.flow_record.get("trained_for"),
        }
    if progress is None and not sys.stderr.isatty():  # a line for logs, where no bar is drawn
        print(
            f"flow L={plan.theory.L}: training ({plan.train_config.n_steps} steps)", file=sys.stderr
        )
    flow, tr = train_flow(
        plan.theory,
        plan.flow_config,
        plan.train_config,
        out_dir=None if out_dir is None else out_dir / "flow",
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    record = {
        "source": "trained",
        "family": flow_family(flow.arch),
        "train_seconds": tr.train_seconds,
        "n_steps": tr.n_steps,
        "final_acceptance": tr.final_acceptance,
        "final_ess_kish": tr.final_ess_kish,
        "steps_to_target": tr.steps_to_target,
        "seconds_to_target": tr.seconds_to_target,
        "n_parameters": tr.n_parameters,
        "stop_reason": tr.stop_reason,
        "message": tr.message,
    }
    return flow, record


def _consistency(runs: Mapping[str, SamplerRun], k: float) -> dict[str, dict[str, Any]]:
    """Pairwise agreement of the samplers' estimates, per observable.

    Two estimates agree when they differ by at most ``k`` combined standard errors.  A sampler
    is flagged (``consistent: False``) when it disagrees with more than half of the others, so
    one wrong sampler among three or more is singled out rather than dragging the rest along
    (with two samplers that disagree, both are flagged: the data cannot tell which is wrong).
    ``pull`` is the largest pairwise pull in units of the combined error; estimates without a
    finite error give ``consistent: None``.
    """

    def usable(s: Mapping[str, Any]) -> bool:
        err = s.get("err")
        return err is not None and math.isfinite(err) and err > 0

    out: dict[str, dict[str, Any]] = {}
    names = list(runs)
    for obs in runs[names[0]].observables:
        out[obs] = {}
        for name in names:
            mine = runs[name].observables[obs]
            others = [runs[o].observables[obs] for o in names if o != name]
            others = [s for s in others if usable(s)]
            if not usable(mine) or not others:
                out[obs][name] = {"pull": math.nan, "consistent": None, "disagrees_with": 0}
                continue
            pulls = [(mine["mean"] - s["mean"]) / math.hypot(mine["err"], s["err"]) for s in others]
            n_bad = sum(abs(p) > k for p in pulls)
            worst = max(pulls, key=abs)
            out[obs][name] = {
                "pull": worst,
                "consistent": bool(n_bad <= len(others) / 2),
                "disagrees_with": n_bad,
            }
    return out


def run_comparison(
    plan: CompareSpec,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
) -> Comparison:
    """Run every planned sampler and the flow, then compute costs, break-even and consistency.

    Parameters
    ----------
    plan : CompareSpec
        From :func:`lattice_samplers.specs.compare_spec`.
    out_dir : str or Path, optional
        Where results files, the flow's training output, summaries and figures go.
    progress : bool, optional
        Progress bars (None: only on a terminal).
    """
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    run = plan.run
    names = tuple(s for s in ALL_SAMPLERS if s in plan.compare.samplers)
    seeds = _sampler_seeds(run.seed, names)
    runs: dict[str, SamplerRun] = {}
    training: dict[str, Any] = {}
    exactness: dict[str, Any] = {}

    def execute(name: str, sampler: Any, training_s: float = 0.0) -> None:
        result = run_sampler(
            sampler,
            dataclasses.replace(run, seed=seeds[name]),
            progress=progress,
            config=plan.config,
        )
        diag = diagnostics(result)
        if name == FLOW_SAMPLER:
            diag.update(flow_diagnostics(result.stats["accepted"], result.stats["log_weight"]))
        observables = summarize_observables(result, tau_estimator=plan.analysis.tau_estimator)
        if name in exactness:  # a cnf flow: its RK4 log-det bias against the run's ESS
            ess = {o: s.get("ess") for o, s in observables.items()}
            diag.update(exactness_diagnostics(exactness[name], ess, name))
        runs[name] = SamplerRun(name, result, observables, diag, training_s)
        if out is not None:
            write_results(result, out / f"{name}.nc")

    # the flow first: a checkpoint for another theory, or a training run that diverged, is
    # reported before any classical sampler has spent its time
    flow_samplers: dict[str, Any] = {}
    if FLOW_SAMPLER in names or FLOW_HMC in names:
        from lattice_samplers.flows import FlowProposal

        flow, training = _train_or_load(plan, out, progress)
        if training.get("stop_reason") == "nonfinite_loss":
            print(
                f"lattice-samplers compare: warning: flow training failed "
                f"({training.get('message', 'non-finite loss')}); the flow sampler is "
                "skipped, the other samplers still run",
                file=sys.stderr,
            )
            names = tuple(n for n in names if n not in (FLOW_SAMPLER, FLOW_HMC))
        else:
            seconds = training.get("train_seconds")
            if seconds is None or not math.isfinite(seconds):
                raise ConfigError("the flow checkpoint does not record its training time")
            if plan.compare.flow_ode_steps is not None:
                try:
                    flow.set_ode_steps(plan.compare.flow_ode_steps)
                except ValueError as exc:
                    raise ConfigError(f"[compare] flow_ode_steps: {exc}") from None
            if "ode_steps" in flow.arch:
                training["sampling_ode_steps"] = int(flow.arch["ode_steps"])
            proposal = FlowProposal(flow)
            flow_samplers[FLOW_SAMPLER] = FlowSampler(
                plan.theory, plan.flow_sampler, proposal=proposal
            )
            # flow_hmc: the same flow, charged the same training seconds
            flow_samplers[FLOW_HMC] = flow_hmc_sampler(plan.theory, plan.flow_hmc, flow=flow)
            exactness[FLOW_SAMPLER] = cnf_exactness(flow)
            exactness[FLOW_HMC] = flow_samplers[FLOW_HMC].latent_map.exactness
    for name in names:
        if name in flow_samplers:
            execute(name, flow_samplers[name], float(training["train_seconds"]))
        else:
            execute(name, plan.samplers[name])

    for r in runs.values():
        n_draws = r.result.n_chains * r.result.n_draws
        for obs, s in r.observables.items():
            c = cost_per_effective_sample(
                r.result.core_time_s,
                n_draws,
                s["tau_int"] if s["tau_int"] is not None else math.nan,
                s["tau_int_err"] if s["tau_int_err"] is not None else math.nan,
                training_s=r.training_s,
                work=r.result.work,
                wall_time_s=r.result.wall_time_s,
            )
            r.costs[obs] = c.to_dict()

    be: dict[str, dict[str, dict[str, Any]]] = {}
    if FLOW_SAMPLER in runs:
        flow = runs[FLOW_SAMPLER]
        for obs, fc in flow.costs.items():
            be[obs] = {}
            for name in CLASSICAL:
                if name not in runs:
                    continue
                rc = runs[name].costs[obs]
                s = flow.observables[obs]
                be[obs][name] = break_even(
                    flow.training_s,
                    fc["seconds_per_ess"],
                    fc["seconds_per_ess_err"],
                    rc["seconds_per_ess"],
                    rc["seconds_per_ess_err"],
                    s["tau_int"],
                    s["tau_int_err"] or 0.0,
                ).to_dict()

    consistency = _consistency(runs, plan.compare.k_sigma)
    comparison = Comparison(
        plan, runs, seeds, training, be, consistency, time.perf_counter() - t_start
    )
    if out is not None:
        write_outputs(comparison, out)
    return comparison


def _csv_rows(comparison: Comparison) -> list[dict[str, Any]]:
    rows = []
    for name, r in comparison.runs.items():
        for obs, s in r.observables.items():
            c = r.costs[obs]
            cons = comparison.consistency.get(obs, {}).get(name, {})
            be = comparison.break_even.get(obs, {})
            rows.append(
                {
                    "sampler": name,
                    "observable": obs,
                    "acceptance": r.result.acceptance,
                    "mean": s["mean"],
                    "err": s["err"],
                    "tau_int": s["tau_int"],
                    "tau_int_err": s["tau_int_err"],
                    "ess": s["ess"],
                    "estimator": s.get("estimator"),
                    "tau_int_gamma": s.get("tau_int_gamma"),
                    "tau_int_gamma_err": s.get("tau_int_gamma_err"),
                    "window": s.get("window"),
                    "tau_int_arviz": s.get("tau_int_arviz"),
                    "ess_bulk": s.get("ess_bulk"),
                    "r_hat": s.get("r_hat"),
                    "wall_time_s": r.result.wall_time_s,
                    "core_time_s": r.result.core_time_s,
                    "training_s": r.training_s,
                    "ess_per_s": c["ess"] / r.result.core_time_s
                    if r.result.core_time_s > 0
                    else math.nan,
                    "cost_per_ess_s": c["seconds_per_ess"],
                    "cost_per_ess_err_s": c["seconds_per_ess_err"],
                    "cost_per_ess_wall_s": c["wall_seconds_per_ess"],
                    "cost_per_ess_with_training_s": c["with_training_s"],
                    "pull_vs_others": cons.get("pull"),
                    "consistent": cons.get("consistent"),
                    **{
                        f"break_even_steps_vs_{k}": v["n_steps"]
                        for k, v in be.items()
                        if name == "flow"
                    },
                }
            )
    return rows


#: What a comparison writes into its folder besides one results file per sampler.
SUMMARY_FILES: tuple[str, ...] = (
    "summary.json",
    "summary.csv",
    "autocorrelation.png",
    "histories.png",
    "cost_per_ess.png",
)


def compare_outputs(plan: CompareSpec, out: str | Path) -> OutputClaim:
    """Check, before any work, every file a comparison would write into ``out``.

    The folder may exist and hold other files; none of the comparison's own names (the
    samplers' ``NAME.nc``, the summaries and figures, the trained flow's ``flow/`` files) may
    be taken, whatever made them (an earlier comparison, a training, the user).

    Raises
    ------
    ConfigError
        One line naming what ``out`` holds and the files that would be replaced.
    """
    out = Path(out)
    files = [out / f"{name}.nc" for name in ALL_SAMPLERS if name in plan.compare.samplers]
    files += [out / name for name in SUMMARY_FILES]
    if FLOW_SAMPLER in plan.compare.samplers and plan.flow_record is None:
        files += [out / "flow" / name for name in TRAINING_FILES]
    return check_outputs(
        files=files,
        folders=[out],
        results=[out / "summary.json"],
        flag="--out",
        hint="choose another folder (nothing in it is replaced)",
    )


def write_outputs(comparison: Comparison, out: Path) -> None:
    """Write ``summary.json``, ``summary.csv`` and the figures into ``out`` (atomically)."""
    write_json(out / "summary.json", comparison.to_dict())
    write_csv(out / "summary.csv", _csv_rows(comparison))
    from lattice_samplers.plots import comparison_figures

    comparison_figures(comparison, out)


# ----------------------------------------------------------------------------- scan job
def validate_compare(config: Mapping[str, Any]) -> None:
    """Scan job hook: raise :class:`ConfigError` if ``config`` is not a valid comparison."""
    compare_spec(config)


def compare_task(config: Mapping[str, Any], out_path: Path) -> dict[str, Any]:
    """Scan job hook: run ``lattice-samplers compare`` on ``config`` into ``out_path``."""
    return run_comparison(compare_spec(config), out_path, progress=False).to_dict()


def summarize_compare(result: Mapping[str, Any]) -> dict[str, Any]:
    """Scan job hook: acceptance and tau_int(|M|) of every sampler, for the summary table."""
    row: dict[str, Any] = {}
    for name, s in result.get("samplers", {}).items():
        row[f"{name}:acc"] = s.get("acceptance")
        row[f"{name}:tau(|m|)"] = (
            s.get("observables", {}).get("abs_magnetization", {}).get("tau_int")
        )
    return row
