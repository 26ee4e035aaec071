"""Flow families side by side at fixed xi = L/4: the paper's dense couplings and the cnf flow.

Trains, at each L (lam = 0.5, beta(L) from the tuning table), the paper's family (dense
Z2-equivariant affine couplings, ``flow.family = "coupling"``) and the equivariant continuous
flow (``flow.family = "cnf"``, arXiv:2207.00283) with the standard reverse-KL gradient and with
path gradients (``train.gradient = "path"``), each with the same wall-clock training budget
(``train.time_budget_s``, constant learning rate), several seeds per point.  One resumable scan
(job ``train``): grid over L, a zipped axis over (family, gradient, batch size, eval spacing),
``n_seeds`` replicas.

Writes into --out (default data/flow_families):

* ``training_summary.csv``: one row per (family, L, seed, gradient) with ``n_params``,
  ``train_seconds``, ``final_acceptance``, ``var_logw_per_site``, ``steps_to_0.3/0.5/0.7`` and
  ``seconds_to_*`` (empty where the target was not reached);
* ``training_histories.csv``: held-out acceptance against step and training seconds;
* ``training_summary.json``: the rows, per-(variant, L) seed means and errors, growth fits
  (:func:`lattice_samplers.growth_fits.fit_growth`) of steps and seconds to each target, provenance;
* ``training_table.md``: the results table (seed means ± standard errors per variant and L),
  also written into docs/results/flow_families.md when OUT is under data/; OUT/README.md's
  section;
* figures/``acceptance_vs_seconds.png``, ``cost_to_target.png``, ``logweight_per_site.png``.

Examples::

    python -m studies.flow_families --quick                       # CI: seconds
    python -m studies.flow_families --L 6 8 12 16 20 32 --n-seeds 3 --time-budget-s 60 \\
        --backend process --workers 2 --force   # extends the committed 2-seed scan
    python -m studies.flow_families --replot
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

from lattice_samplers.growth_fits import DEFAULT_TARGETS, fit_growth
from lattice_samplers.scan import run_scan
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
    "VARIANTS",
    "aggregate",
    "collect",
    "figures",
    "fits",
    "main",
    "markdown_table",
    "scan_config",
]

#: The compared variants: (label, flow.family, train.gradient, batch size, eval spacing).
#: The dense family keeps the paper's batch of 1000; the cnf flow uses Gerdes et al.'s 256.
VARIANTS: tuple[tuple[str, str, str, int, int], ...] = (
    ("dense", "coupling", "standard", 1000, 50),
    ("cnf", "cnf", "standard", 256, 10),
    ("cnf+path", "cnf", "path", 256, 10),
)
SUMMARY_COLUMNS = (
    "family",
    "L",
    "seed",
    "gradient",
    "n_params",
    "train_seconds",
    "final_acceptance",
    "var_logw_per_site",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--L", type=int, nargs="+", default=[6, 8, 12, 16, 20])
    p.add_argument("--lam", type=float, default=0.5)
    p.add_argument("--time-budget-s", type=float, default=60.0, help="training seconds per run")
    p.add_argument("--n-seeds", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--targets", type=float, nargs="+", default=list(DEFAULT_TARGETS))
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--backend", default="serial", choices=["serial", "process", "dask"])
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--scheduler", default=None, help="Dask scheduler address")
    p.add_argument("--out", type=Path, default=Path("data/flow_families"))
    p.add_argument("--quick", action="store_true", help="tiny run for CI (L = 4, 6; 3 s each)")
    p.add_argument(
        "--force",
        action="store_true",
        help="record a changed scan (more seeds or L) in OUT; finished tasks are kept",
    )
    p.add_argument("--replot", action="store_true",
                   help="only redraw the figures from the summary files in OUT")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.L, args.n_seeds, args.time_budget_s, args.eval_batch_size = [4, 6], 1, 3.0, 128
        args.lam = 0.5
        if args.out == Path("data/flow_families"):
            args.out = Path("runs/flow_families-quick")
    return args


def scan_config(args: argparse.Namespace) -> dict[str, Any]:
    """The scan: L x variant x seed, one training task each, equal training seconds."""
    zipped = {
        "flow.family": [v[1] for v in VARIANTS],
        "train.gradient": [v[2] for v in VARIANTS],
        "train.batch_size": [v[3] for v in VARIANTS],
        "train.eval_every": [v[4] for v in VARIANTS],
    }
    theory: dict[str, Any] = {"parametrization": "ising", "beta": "tuned", "lam": args.lam}
    if args.quick:  # L = 4 is not in the tuning table
        theory["beta"] = 0.5
    return {
        "scan": {
            "job": "train",
            "grid": {"theory.L": list(args.L)},
            "zip": zipped,
            "n_seeds": args.n_seeds,
            "seed": args.seed,
        },
        "theory": theory,
        "flow": {},
        "train": {
            # the budget decides: a constant rate and more steps than any run can take
            "n_steps": 1_000_000,
            "scheduler": "constant",
            "lr": args.lr,
            "time_budget_s": args.time_budget_s,
            "eval_batch_size": args.eval_batch_size,
            "checkpoint_every": 500,
            "stop_at_target": False,
            "num_threads": args.threads,
        },
        "study": {"targets": list(args.targets)},
    }


def _label(family: str, gradient: str) -> str:
    return "dense" if family == "coupling" else ("cnf+path" if gradient == "path" else "cnf")


def collect(scan: Any, targets: list[float]) -> tuple[list[dict], list[dict]]:
    """Summary rows (one per task) and history rows (one per task and evaluation)."""
    rows, hist = [], []
    for rec in scan:
        if rec.result is None:
            continue
        r, point = rec.result, rec.point
        family, gradient = point["flow.family"], point["train.gradient"]
        row: dict[str, Any] = {
            "family": "dense" if family == "coupling" else family,
            "L": r["L"],
            "seed": rec.replica,
            "gradient": gradient,
            "n_params": r["n_parameters"],
            "train_seconds": r["train_seconds"],
            "final_acceptance": r["final_acceptance"],
            "var_logw_per_site": r["var_log_weight_per_site"],
        }
        for t in targets:
            row[f"steps_to_{t:g}"] = r["targets"][f"{t:g}"]["step"]
        for t in targets:
            row[f"seconds_to_{t:g}"] = r["targets"][f"{t:g}"]["seconds"]
        row.update(
            variant=_label(family, gradient),
            beta=r["theory"]["beta"],
            n_steps=r["n_steps"],
            batch_size=point["train.batch_size"],
            task_id=rec.task_id,
        )
        rows.append(row)
        ev = r["eval"]
        for i, step in enumerate(ev["step"]):
            hist.append(
                {
                    "variant": row["variant"],
                    "L": r["L"],
                    "seed": row["seed"],
                    "step": step,
                    "train_s": ev["train_s"][i],
                    "acceptance": ev["acceptance"][i],
                    "var_log_weight": ev["var_log_weight"][i],
                }
            )
    rows.sort(key=lambda x: (x["variant"], x["L"], x["seed"]))
    hist.sort(key=lambda x: (x["variant"], x["L"], x["seed"], x["step"]))
    return rows, hist


def _mean_err(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None, 0
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None, 1
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return m, math.sqrt(var / len(vals)), len(vals)


def aggregate(rows: list[dict], targets: list[float]) -> list[dict]:
    """Seed means and standard errors per (variant, L); targets count only seeds that reached."""
    out = []
    for variant in [v[0] for v in VARIANTS]:
        for L in sorted({r["L"] for r in rows}):
            sel = [r for r in rows if r["variant"] == variant and r["L"] == L]
            if not sel:
                continue
            agg: dict[str, Any] = {"variant": variant, "L": L, "n_seeds": len(sel)}
            keys = ["final_acceptance", "var_logw_per_site", "train_seconds", "n_steps"]
            keys += [f"{w}_to_{t:g}" for t in targets for w in ("steps", "seconds")]
            for k in keys:
                m, e, n = _mean_err([r[k] for r in sel])
                agg[k], agg[f"{k}_err"] = m, e
                if k.startswith(("steps_to", "seconds_to")):
                    agg[f"{k}_n"] = n
            agg["n_params"] = sel[0]["n_params"]
            out.append(agg)
    return out


def fits(agg: list[dict], targets: list[float]) -> dict[str, Any]:
    """Growth fits of seed-mean steps and seconds to each target against L, per variant."""
    out: dict[str, Any] = {}
    for variant in [v[0] for v in VARIANTS]:
        for t in targets:
            for what in ("steps", "seconds"):
                key = f"{what}_to_{t:g}"
                pts = [(a["L"], a[key], a[f"{key}_err"]) for a in agg
                       if a["variant"] == variant and a[key]]  # fmt: skip
                if pts:
                    L, n, e = zip(*pts)
                    e = [math.nan if x is None else x for x in e]
                    out[f"{variant}:{key}"] = fit_growth(L, n, e)
    return out


def figures(rows: list[dict], hist: list[dict], agg: list[dict], fit: dict,
            targets: list[float], out: Path) -> list[Path]:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    variants = [v[0] for v in VARIANTS]
    styles = {"dense": ("C0", "-"), "cnf": ("C3", "-"), "cnf+path": ("C2", "--")}
    Ls = sorted({r["L"] for r in rows})

    ncol = min(len(Ls), 3)
    nrow = math.ceil(len(Ls) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), squeeze=False)
    for ax, L in zip(axes.flat, Ls):
        for variant in variants:
            color, ls = styles[variant]
            seeds = sorted({h["seed"] for h in hist if h["variant"] == variant and h["L"] == L})
            for j, seed in enumerate(seeds):
                h = [x for x in hist if x["variant"] == variant and x["L"] == L
                     and x["seed"] == seed]  # fmt: skip
                ax.plot([x["train_s"] for x in h], [x["acceptance"] for x in h], color=color,
                        ls=ls, lw=1, label=variant if j == 0 else None)  # fmt: skip
        for t in targets:
            ax.axhline(t, color="gray", lw=0.5, ls=":")
        ax.set_ylim(0, 1)
        ax.set_title(f"L = {L}", fontsize=9)
        ax.set_xlabel("training seconds")
        ax.set_ylabel("held-out acceptance")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(Ls) :]:
        ax.axis("off")
    fig.suptitle("Acceptance against training seconds (ξ = L/4, λ = 0.5; each line one seed)")
    fig.tight_layout()
    paths.append(out / "acceptance_vs_seconds.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, what, unit in ((axes[0], "steps", "training steps"), (axes[1], "seconds", "s")):
        drawn = False
        for variant in variants:
            color, _ = styles[variant]
            for i, t in enumerate(targets):
                key = f"{what}_to_{t:g}"
                pts = [a for a in agg if a["variant"] == variant and a[key]]
                if not pts:
                    continue
                drawn = True
                marker = "osd"[i % 3]
                L = np.array([a["L"] for a in pts], dtype=float)
                y = np.array([a[key] for a in pts])
                e = np.array([a[f"{key}_err"] or 0.0 for a in pts])
                ax.errorbar(L, y, yerr=e, fmt=marker, color=color, mfc="none" if i else color,
                            capsize=2, label=f"{variant} → {t:g}")  # fmt: skip
                pl = fit.get(f"{variant}:{key}", {}).get("power_law", {})
                if pl.get("params"):
                    a0, p = pl["params"]
                    xs = np.linspace(L.min(), L.max(), 40)
                    ax.plot(xs, np.exp(a0) * xs**p, color=color, lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("L")
        ax.set_ylabel(f"{unit} to reach target (seed mean ± s.e.)")
        if drawn:
            ax.legend(fontsize=6, ncol=2)
    axes[0].set_title("Steps to target acceptance (dotted: L^p fit)")
    axes[1].set_title("Training seconds to target acceptance")
    fig.tight_layout()
    paths.append(out / "cost_to_target.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    for variant in variants:
        color, ls = styles[variant]
        pts = [a for a in agg if a["variant"] == variant and a["var_logw_per_site"]]
        if pts:
            ax.errorbar([a["L"] for a in pts], [a["var_logw_per_site"] for a in pts],
                        yerr=[a["var_logw_per_site_err"] or 0.0 for a in pts], fmt="o",
                        ls=ls, color=color, capsize=2, label=variant)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("L")
    ax.set_ylabel("Var(log w) / V at the end of training")
    ax.set_title("Log-weight variance per site (equal training seconds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "logweight_per_site.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def markdown_table(agg: list[dict], targets: list[float]) -> str:
    """The results table: one row per (variant, L), seed means ± standard errors.

    A target entry is "steps (seconds)" over the seeds that reached it, with "[k/n seeds]"
    when only k of the n seeds did, and "not reached" when none did.
    """
    head = ["family", "gradient", "L", "seeds", "parameters", "steps in budget",
            "final acceptance", "Var(log w)/V"]  # fmt: skip
    head += [f"steps (s) to {t:g}" for t in targets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in agg:
        family, gradient = {"dense": ("dense", "standard"), "cnf": ("cnf", "standard"),
                            "cnf+path": ("cnf", "path")}[a["variant"]]  # fmt: skip
        cells = [family, gradient, str(a["L"]), str(a["n_seeds"]), f"{a['n_params']:,}",
                 plus_minus(a["n_steps"], a["n_steps_err"], ".0f", ".0f"),
                 plus_minus(a["final_acceptance"], a["final_acceptance_err"]),
                 plus_minus(a["var_logw_per_site"], a["var_logw_per_site_err"])]  # fmt: skip
        for t in targets:
            steps, secs = f"steps_to_{t:g}", f"seconds_to_{t:g}"
            k = a[f"{steps}_n"]
            if not k:
                cells.append("not reached")
                continue
            n_text = plus_minus(a[steps], a[steps + "_err"], ".0f", ".0f")
            text = f"{n_text} ({plus_minus(a[secs], a[secs + '_err'], '.0f', '.0f')} s)"
            cells.append(text + (f" [{k}/{a['n_seeds']} seeds]" if k < a["n_seeds"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _read_csv(path: Path) -> list[dict]:
    def conv(v: str) -> Any:
        if v == "":
            return None
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v

    with path.open() as f:
        return [{k: conv(v) for k, v in r.items()} for r in csv.DictReader(f)]


def publish(
    out: Path, agg: list[dict], targets: list[float], command: str | None = None
) -> list[Path]:
    """The table (``training_table``) and this study's section of the data README."""
    written = publish_table(out, "flow_families", "training_table", markdown_table(agg, targets))
    what = (
        "Dense couplings against the equivariant continuous flow (with and without path "
        "gradients) at equal training seconds per run: `scan/` (one task record per run; the "
        "cnf checkpoints are committed), `training_summary.csv`/`.json` (rows, seed means, "
        "growth fits, provenance), `training_histories.csv`, `figures/`. `runs/` holds the "
        "`lattice-samplers` runs of the results page (each with its command there). Results "
        "page: docs/results/flow_families.md."
    )
    files = ["scan/", "training_summary.csv", "training_summary.json", "training_histories.csv",
             "training_table.md", "figures/", "runs/"]  # fmt: skip
    written.append(write_data_readme(out, "flow_families", what, files, command))
    return written


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "training_summary.json").read_text())
        rows = _read_csv(args.out / "training_summary.csv")
        hist = _read_csv(args.out / "training_histories.csv")
        targets = saved["config"]["study"]["targets"]
        report(figures(rows, hist, saved["aggregate"], saved["fits"], targets,
                       args.out / "figures"))  # fmt: skip
        report(publish(args.out, saved["aggregate"], targets, recorded_command(saved)))
        return 0
    config = scan_config(args)
    scan = run_scan(config, args.out / "scan", JOBS, backend=args.backend,
                    workers=args.workers, scheduler=args.scheduler,
                    force=args.force)  # fmt: skip
    rows, hist = collect(scan, args.targets)
    agg = aggregate(rows, args.targets)
    fit = fits(agg, args.targets)
    written = [
        write_csv(args.out / "training_summary.csv", rows),
        write_csv(args.out / "training_histories.csv", hist),
    ]
    if rows:
        written += figures(rows, hist, agg, fit, args.targets, args.out / "figures")
        written += publish(args.out, agg, args.targets)
    return finish(
        scan,
        written,
        args.out / "training_summary.json",
        {"rows": rows, "aggregate": agg, "fits": fit, "config": config},
        args,
        started,
    )


if __name__ == "__main__":
    raise SystemExit(main())
