"""``lattice-samplers compare [CONFIG.toml]``: every sampler on one theory point.

Without a config it runs the built-in default (L = 8, ising beta = 0.576, lam = 0.5: the
paper's L = 8 ensemble), which takes a few minutes on 2 CPU cores.  It prints a table per
observable (acceptance, mean, tau_int +/- error, ESS per second, seconds per effective sample
without and with the flow's training, the flow's break-even chain length against each
classical sampler, and a consistency flag), and writes into ``--out DIR``: one netCDF results
file per sampler, the flow's training output (``flow/``), ``summary.json``, ``summary.csv`` and
figures (``autocorrelation.png``, ``histories.png``, ``cost_per_ess.png``).  None of these
names may be taken in ``DIR`` (whatever made the file: an earlier comparison, a training, the
user): checked before any work and again as each file is written
(:mod:`lattice_samplers.workflows.outputs`).  See :mod:`lattice_samplers.specs` for the config
sections.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from lattice_samplers.commands.common import add_common_arguments
from lattice_samplers.config import apply_overrides, load_config
from lattice_samplers.records import dumps
from lattice_samplers.specs import compare_spec
from lattice_samplers.workflows.compare import (
    TABLE_OBSERVABLES,
    compare_outputs,
    run_comparison,
)
from lattice_samplers.workflows.outputs import protected
from lattice_samplers.workflows.sample import check_memory

__all__ = ["add_arguments", "format_table", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``compare``: [CONFIG], --set, --json, --out, --flow, progress."""
    add_common_arguments(parser, config_required=False)
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder (default: runs/compare-L<L>-<date>-<time>)",
    )
    parser.add_argument(
        "--flow",
        metavar="CHECKPOINT",
        default=None,
        help="use this trained flow (checkpoint file or training folder) instead of training",
    )


def _f(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-" if x is None or math.isnan(x) else ("inf" if x > 0 else "-inf")
    return format(x, spec)


def _cell(x: Any, spec: str, width: int) -> str:
    """A right-aligned cell that always starts with a space: columns never run together.

    (A 7-character error such as ``1.8e+02`` in a 7-wide column once read ``4011.8e+02``.)
    """
    return " " + _f(x, spec).rjust(width - 1)


def format_table(summary: dict[str, Any]) -> str:
    """The printed report of a comparison summary (``Comparison.to_dict()``)."""
    from lattice_samplers.plots import LABELS  # matplotlib: loaded only when printing

    th = summary["theory"]
    couplings = ", ".join(
        f"{k}={v:g}" for k, v in th.items() if k not in ("L", "parametrization", "hopping_form")
    )
    samplers = summary["samplers"]
    any_run = next(iter(samplers.values()))
    lines = [
        f"Comparison on L={th['L']} {th['parametrization']}({couplings}); "
        f"{any_run['n_chains']} chains x {any_run['n_steps']} steps per sampler "
        f"(n_therm {any_run['n_therm']})",
    ]
    tr = summary.get("training") or {}
    if tr:
        lines.append(
            f"flow: {tr.get('source')}, {tr.get('n_parameters')} parameters, "
            f"training {_f(tr.get('train_seconds'), '.1f')} s"
            + (
                f" ({tr.get('n_steps')} steps, final acceptance "
                f"{_f(tr.get('final_acceptance'), '.3f')})"
                if tr.get("source") == "trained"
                else ""
            )
        )
    estimators = sorted(
        {
            str(o.get("estimator", "gamma"))
            for s in samplers.values()
            for o in s["observables"].values()
        }
    )
    lines.append(
        f"tau_int, ESS and costs by: {', '.join(estimators)} (both estimates, R-hat and flags "
        "in summary.json/csv)"
    )
    lines += [
        "costs: core s/ESS = core seconds (summed over chains) per effective sample: the",
        "hardware-neutral figure used for comparisons and break-even; wall s/ESS = elapsed",
        "seconds per effective sample (they depend on [run] workers and the machine)",
    ]
    head = (
        f"{'sampler':<11}{'accept':>7}{'mean':>12}{'err':>9}{'tau_int':>9}{'+-':>7}"
        f"{'ESS/core-s':>11}{'core s/ESS':>11}{'+train':>10}{'wall s/ESS':>11}"
        f"  {'break-even (flow steps)':<36}check"
    )
    for obs in TABLE_OBSERVABLES:
        lines += ["", f"== {LABELS.get(obs, obs)} ({obs})", head, "-" * len(head)]
        for name, s in samplers.items():
            o = s["observables"][obs]
            # files from before parallel chains have no core time: there wall == core
            core = s.get("core_time_s", s["wall_time_s"])
            ess_s = (o["ess"] / core) if o["ess"] is not None and core else None
            wall_cost = s.get("cost_per_ess_wall_s", s["cost_per_ess_s"])[obs]
            cons = summary["consistency"].get(obs, {}).get(name, {})
            ok = cons.get("consistent")
            check = (
                "ok" if ok else ("-" if ok is None else f"DISAGREES ({cons['pull']:+.1f} sigma)")
            )
            flags = [f for f in o.get("flags") or [] if f != "anticorrelated"]
            if flags:  # e.g. "short": tau_int and errors are unreliable, run longer
                check += f" [{', '.join(flags)}]"
            be = ""
            if name == "flow" and summary["break_even"].get(obs):
                # None in the JSON is an infinite break-even: the flow never pays off
                be = " ".join(
                    f"{k[:4]}:{'never' if v['n_steps'] is None else format(v['n_steps'], '.2g')}"
                    for k, v in summary["break_even"][obs].items()
                )
            cells = [
                _cell(s["acceptance"], ".3f", 7),
                _cell(o["mean"], ".5g", 12),
                _cell(o["err"], ".2g", 9),
                _cell(o["tau_int"], ".3g", 9),
                _cell(o["tau_int_err"], ".2g", 7),
                _cell(ess_s, ".4g", 11),
                _cell(s["cost_per_ess_s"][obs], ".3g", 11),
                _cell(s["cost_per_ess_with_training_s"][obs], ".3g", 10),
                _cell(wall_cost, ".3g", 11),
            ]
            lines.append(f"{name:<11}{''.join(cells)}  {be:<36}{check}")
    lines += [
        "",
        "tau_int: " + summary["tau_int_convention"] + "; core s/ESS: production core seconds "
        "per effective sample, +train: with the flow's training seconds added; break-even: flow "
        "chain length (steps) at which the flow's total cost equals each classical sampler's; "
        "[short]: fewer than 50 tau_int per chain, so tau_int and errors are unreliable",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the ``compare`` command; returns the exit status."""
    config = apply_overrides(load_config(args.config), args.overrides)
    spec = compare_spec(config, flow_checkpoint=args.flow)
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / f"compare-L{spec.theory.L}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    check_memory(spec.run, 0, spec.theory.L)  # the lattice fields, before any allocation
    claim = compare_outputs(spec, out)  # every file it would write, before any work
    with protected(claim):  # ... and again as each is written
        comparison = run_comparison(spec, out, progress=args.progress)  # None: auto
    summary = comparison.to_dict()
    if args.json:
        print(dumps(summary))
    else:
        print(format_table(summary))
        flow_dir = "flow/ (the trained flow, for --flow), " if (out / "flow").is_dir() else ""
        print(
            f"\nwrote {out}/: summary.json, summary.csv, *.nc, {flow_dir}figures "
            f"(autocorrelation.png, histories.png, cost_per_ess.png); "
            f"{comparison.elapsed_s:.0f} s in all"
        )
    return 0
