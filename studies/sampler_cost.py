"""Autocorrelation and cost per effective sample against L for every sampler (figures c, d).

For each L with a flow trained by ``studies.training_cost`` (its training scan folder),
runs ``compare`` (Metropolis, HMC, cluster and flow independence Metropolis, the flow loaded
from its checkpoint with its training seconds counted) at lam = 0.5 and beta(L) from the
tuning table, through the scan machinery (one resumable task per L).

Writes into --out (default data/training_cost/cpu, beside the flows it loads):

* ``sampler_summary.csv``/``.json``: per L and sampler the acceptance, tau_int of |M| and of
  M^2/V with errors, seconds per effective sample without and with training, and the flow's
  break-even chain length against each classical sampler; provenance in the JSON;
* ``samplers_<OUT folder name>.md``: the table of those numbers (also written into
  docs/results/sampler_cost.md when OUT is under data/), and OUT/README.md's section;
* figures/``tau_int_vs_L.png``, ``cost_vs_L.png``, ``break_even_vs_L.png``.

Examples::

    python -m studies.sampler_cost --quick       # after studies.training_cost --quick
    python -m studies.sampler_cost --L 6 8 10 12 --backend process --workers 2
    # the cnf flows of studies.flow_families (equal training budgets) (one seed, standard gradient)
    python -m studies.sampler_cost --training data/flow_families/scan \\
        --select flow.family=cnf --select train.gradient=standard --replica 2 \\
        --out data/flow_families --n-steps 20000 --n-therm 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from lattice_samplers.scan import collect_scan, load_scan, run_scan
from studies._common import (
    JOBS,
    finish,
    plus_minus,
    publish_table,
    recorded_command,
    report,
    write_csv,
    write_data_readme,
)

__all__ = [
    "collect",
    "figures",
    "main",
    "markdown_table",
    "scan_config",
    "trained_flows",
]

OBSERVABLES = ("abs_magnetization", "two_point_susceptibility")
SAMPLER_ORDER = ("metropolis", "hmc", "cluster", "flow")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--L", type=int, nargs="+", default=None, help="default: every trained L")
    p.add_argument("--training", type=Path, default=None,
                   help="training scan folder (default: OUT/training_scan)")  # fmt: skip
    p.add_argument("--select", action="append", default=[], metavar="KEY=VALUE",
                   help="use only training tasks whose grid point has KEY = VALUE, e.g. "
                   "flow.family=cnf (repeatable)")  # fmt: skip
    p.add_argument("--replica", type=int, default=None,
                   help="use only this seed replica of the training scan")  # fmt: skip
    p.add_argument("--n-steps", type=int, default=50_000, help="steps per chain")
    p.add_argument("--n-therm", type=int, default=2000)
    p.add_argument("--n-chains", type=int, default=4)
    p.add_argument("--flow-batch", type=int, default=8192)
    p.add_argument("--seed", type=int, default=2112)
    p.add_argument("--backend", default="serial", choices=["serial", "process", "dask"])
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--out", type=Path, default=Path("data/training_cost/cpu"))
    p.add_argument("--quick", action="store_true", help="tiny run for CI")
    p.add_argument("--replot", action="store_true",
                   help="only redraw figures and tables from OUT/sampler_summary.json")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.n_steps, args.n_therm, args.n_chains, args.flow_batch = 1000, 100, 2, 512
        if args.out == Path("data/training_cost/cpu"):
            args.out = Path("runs/scaling-quick")
    if args.training is None:
        args.training = args.out / "training_scan"
    return args


def _matches(point: dict[str, Any], select: list[str]) -> bool:
    """Whether a grid point has every KEY = VALUE of ``select`` (values compared as text)."""
    for item in select:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--select {item!r}: expected KEY=VALUE, e.g. flow.family=cnf")
        if str(point.get(key.strip())) != value.strip():
            return False
    return True


def trained_flows(
    training: Path,
    wanted: list[int] | None,
    select: list[str] | None = None,
    replica: int | None = None,
) -> dict[int, Path]:
    """L -> checkpoint folder of the completed training tasks in ``training`` that match.

    A task matches when its grid point has every ``KEY=VALUE`` of ``select``, its replica is
    ``replica`` (if given) and its checkpoint is on disk; with several matches per L the last
    one in scan order is used.
    """
    if not (training / "scan.json").is_file():
        raise SystemExit(
            f"no training scan at {training}: run python -m studies.training_cost first"
        )
    config = load_scan(training)["config"]  # its paths are relative to the training folder
    flows = {}
    for rec in collect_scan(config, training, JOBS, base_dir=training):
        if rec.result is None or not _matches(rec.point, select or []):
            continue
        if replica is not None and rec.replica != replica:
            continue
        folder = training / "tasks" / rec.task_id
        if not (folder / "checkpoint.pt").is_file():
            continue  # checkpoints are not committed: only this machine's runs have them
        L = int(rec.result["L"])
        if wanted is None or L in wanted:
            flows[L] = folder
    if not flows:
        raise SystemExit(
            f"no finished training task with a checkpoint in {training} for L = {wanted}"
            + (f", {' '.join(select or [])}" if select else "")
            + (f", replica {replica}" if replica is not None else "")
        )
    return dict(sorted(flows.items()))


def scan_config(args: argparse.Namespace, flows: dict[int, Path]) -> dict[str, Any]:
    return {
        "scan": {
            "job": "compare",
            "zip": {
                "theory.L": list(flows),
                # relative to here; the scan records them relative to its folder and
                # identifies them by the training task's id, never by the path
                "compare.flow_checkpoint": [p.as_posix() for p in flows.values()],
            },
            "seed": args.seed,
        },
        "theory": {"parametrization": "ising", "beta": "tuned", "lam": 0.5},
        "run": {"n_steps": args.n_steps, "n_therm": args.n_therm, "n_chains": args.n_chains},
        "flow_sampler": {"batch_size": args.flow_batch},
    }


def collect(scan: Any) -> list[dict[str, Any]]:
    rows = []
    for rec in sorted(scan, key=lambda r: r.point.get("theory.L", 0)):
        if rec.result is None:
            continue
        r = rec.result
        L = r["theory"]["L"]
        for name in SAMPLER_ORDER:
            s = r["samplers"].get(name)
            if s is None:
                continue
            row = {"L": L, "beta": r["theory"]["beta"], "sampler": name,
                   "acceptance": s["acceptance"], "wall_time_s": s["wall_time_s"],
                   # core seconds: summed over chains (records before parallel chains: = wall)
                   "core_time_s": s.get("core_time_s", s["wall_time_s"]),
                   "training_s": s["training_s"], "n_chains": s["n_chains"],
                   "n_steps": s["n_steps"]}  # fmt: skip
            for obs in OBSERVABLES:
                o = s["observables"][obs]
                row[f"{obs}_mean"] = o["mean"]
                row[f"{obs}_err"] = o["err"]
                row[f"tau_int_{obs}"] = o["tau_int"]
                row[f"tau_int_{obs}_err"] = o["tau_int_err"]
                # both estimators (summaries since issue 12; absent in older task records)
                columns = {
                    "tau_int_gamma": f"tau_int_gamma_{obs}",
                    "tau_int_gamma_err": f"tau_int_gamma_{obs}_err",
                    "tau_int_arviz": f"tau_int_arviz_{obs}",
                    "r_hat": f"r_hat_{obs}",
                }
                row.update({col: o[key] for key, col in columns.items() if key in o})
                row[f"cost_per_ess_{obs}_s"] = s["cost_per_ess_s"][obs]
                row[f"cost_per_ess_{obs}_with_training_s"] = s["cost_per_ess_with_training_s"][obs]
                c = s["cost"][obs]
                row[f"cost_per_ess_{obs}_err_s"] = c["seconds_per_ess_err"]
                if name == "flow":
                    for ref, be in r["break_even"].get(obs, {}).items():
                        row[f"break_even_steps_{obs}_vs_{ref}"] = be["n_steps"]
            if name == "flow":
                d = s["diagnostics"]
                row.update({k: d.get(k) for k in ("ess_kish", "tau_int_accept",
                            "log_weight_var", "longest_rejection_run")})  # fmt: skip
            rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table: per L and sampler, |M|/V, tau_int, cost per ESS and break-even.

    Break-even is the flow chain length (steps) beyond which the flow's cost per effective
    sample of |M|/V, training included, drops below the other sampler's; "never" when the flow
    costs more per effective sample even without training.
    """
    obs = "abs_magnetization"
    head = ["L", "sampler", "acceptance", "|M|/V", "tau_int(|M|)", "tau_int(M^2/V)",
            "s per ESS (|M|)", "with training"]  # fmt: skip
    head.append("break-even vs metropolis / hmc / cluster")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["sampler"] == "flow":
            # absent (summaries from before break-even was recorded): "-"; None: never
            keys = [f"break_even_steps_{obs}_vs_{ref}" for ref in SAMPLER_ORDER[:3]]
            breaks = " / ".join(
                "-" if k not in r else "never" if r[k] is None else f"{r[k]:.3g}" for k in keys
            )
        else:
            breaks = ""
        cells = [str(r["L"]), r["sampler"], f"{r['acceptance']:.3g}",
                 plus_minus(r[f"{obs}_mean"], r[f"{obs}_err"], ".4f"),
                 plus_minus(r[f"tau_int_{obs}"], r[f"tau_int_{obs}_err"]),
                 plus_minus(r["tau_int_two_point_susceptibility"],
                     r["tau_int_two_point_susceptibility_err"]),
                 f"{r[f'cost_per_ess_{obs}_s']:.2e}",
                 f"{r[f'cost_per_ess_{obs}_with_training_s']:.2e}", breaks]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figures(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lattice_samplers.plots import COLORS, LABELS

    out.mkdir(parents=True, exist_ok=True)
    paths = []

    def series(name: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        sel = [r for r in rows if r["sampler"] == name and r.get(key) is not None]
        return np.array([r["L"] for r in sel]), np.array([r[key] for r in sel], dtype=float)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, obs in zip(axes, OBSERVABLES):
        for name in SAMPLER_ORDER:
            L, tau = series(name, f"tau_int_{obs}")
            _, err = series(name, f"tau_int_{obs}_err")
            if L.size:
                ax.errorbar(L, tau, yerr=err if err.size == L.size else None, fmt="o-",
                            color=COLORS.get(name), label=name, capsize=2)  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("L (ξ = L/4)")
        ax.set_ylabel(f"τ_int of {LABELS.get(obs, obs)} (steps)")
        ax.legend(fontsize=8)
    fig.suptitle("Integrated autocorrelation time at fixed ξ/L")
    fig.tight_layout()
    paths.append(out / "tau_int_vs_L.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, obs in zip(axes, OBSERVABLES):
        for name in SAMPLER_ORDER:
            L, c = series(name, f"cost_per_ess_{obs}_s")
            if L.size:
                ax.plot(L, c, "o-", color=COLORS.get(name), label=f"{name}")
            if name == "flow":
                L, ct = series(name, f"cost_per_ess_{obs}_with_training_s")
                ax.plot(L, ct, "s--", color=COLORS.get(name), label="flow + training")
        ax.set_yscale("log")
        ax.set_xlabel("L (ξ = L/4)")
        ax.set_ylabel(f"seconds per effective sample of {LABELS.get(obs, obs)}")
        ax.legend(fontsize=8)
    fig.suptitle("Cost per effective sample (training amortized over this chain)")
    fig.tight_layout()
    paths.append(out / "cost_vs_L.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    obs = "abs_magnetization"
    for ref in ("metropolis", "hmc", "cluster"):
        L, n = series("flow", f"break_even_steps_{obs}_vs_{ref}")
        finite = np.isfinite(n)
        if L.size:
            ax.plot(L[finite], n[finite], "o-", color=COLORS.get(ref), label=f"vs {ref}")
            if (~finite).any():
                ax.plot(L[~finite], np.full((~finite).sum(), np.nan), "x", color=COLORS.get(ref))
    ax.set_yscale("log")
    ax.set_xlabel("L (ξ = L/4)")
    ax.set_ylabel("flow chain length to break even (steps)")
    ax.set_title("Break-even of the flow, |M|/V (missing: never breaks even)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "break_even_vs_L.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def publish(out: Path, rows: list[dict[str, Any]], command: str | None = None) -> list[Path]:
    """The table (``samplers_OUTNAME``) and this study's section of the data README."""
    written = publish_table(out, "sampler_cost", f"samplers_{out.name}", markdown_table(rows))
    what = (
        "Every sampler at each L with the flows trained here: `sampler_summary.csv`/`.json` "
        "(acceptance, tau_int with errors, cost per effective sample without and with "
        "training, break-even; provenance in the JSON), `sampler_scan/` (task records, for "
        "runs made in this folder), `figures/` (tau_int, cost and break-even against L). Results "
        "page: docs/results/sampler_cost.md."
    )
    files = ["sampler_summary.csv", "sampler_summary.json", f"samplers_{out.name}.md",
             "figures/", "sampler_scan/"]  # fmt: skip
    written.append(write_data_readme(out, "sampler_cost", what, files, command))
    return written


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "sampler_summary.json").read_text())
        written = figures(saved["rows"], args.out / "figures")
        report(written + publish(args.out, saved["rows"], recorded_command(saved)))
        return 0
    flows = trained_flows(args.training, args.L, args.select, args.replica)
    config = scan_config(args, flows)
    scan = run_scan(config, args.out / "sampler_scan", JOBS, backend=args.backend,
                    workers=args.workers, scheduler=args.scheduler)  # fmt: skip
    rows = collect(scan)
    written = [write_csv(args.out / "sampler_summary.csv", rows)]
    if rows:
        written += figures(rows, args.out / "figures")
        written += publish(args.out, rows)
    return finish(
        scan,
        written,
        args.out / "sampler_summary.json",
        # the scan config as recorded: its paths are relative to sampler_scan/
        {"rows": rows, "scan_dir": "sampler_scan", "config": scan.config},
        args,
        started,
    )


if __name__ == "__main__":
    raise SystemExit(main())
