"""Flow training cost against L at fixed xi = L/4 (arXiv:2112.15532, figures a, b and e).

Trains the paper's model family (``family = "coupling"`` with its defaults: 8 dense
Z2-equivariant affine couplings, hidden width 2 L^2, global rescaling) at each L with the
same per-step settings, at lam = 0.5 and beta(L) from the tuning table (data/tuning),
through the scan machinery: each L is one resumable task, so an interrupted run continues
where it stopped.

Writes into --out (default data/training_cost/cpu):

* ``training_summary.csv``/``.json``: per L the final acceptance, ess_kish, log-weight
  variance, steps and training seconds to each target acceptance, parameter count, and (in
  the JSON) the fits of steps/seconds against L and the full provenance;
* ``training_histories.csv``: held-out acceptance, ess_kish and log-weight variance against
  step for every L;
* figures/``acceptance_vs_step.png``, ``steps_to_target.png``, ``logweight_scaling.png``.

Examples::

    python -m studies.training_cost --quick          # CI: seconds
    python -m studies.training_cost --L 6 8 10 12 --backend process --workers 2
    python -m studies.training_cost --device cuda --L 6 8 10 12 14 16 18 20
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from lattice_samplers.growth_fits import DEFAULT_TARGETS, fit_growth, lognormal_acceptance
from lattice_samplers.scan import run_scan
from studies._common import (
    JOBS,
    finish,
    publish_table,
    recorded_command,
    report,
    write_csv,
    write_data_readme,
)

__all__ = ["collect", "figures", "fits", "main", "markdown_table", "scan_config"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--L", type=int, nargs="+", default=[6, 8, 10, 12, 14, 16, 18, 20])
    p.add_argument("--lam", type=float, default=0.5)
    p.add_argument("--n-steps", type=int, default=4000, help="training steps per L")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--targets", type=float, nargs="+", default=list(DEFAULT_TARGETS))
    p.add_argument("--time-budget-s", type=float, default=None, help="per L (cuts training)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--backend", default="serial", choices=["serial", "process", "dask"])
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--scheduler", default=None, help="Dask scheduler address")
    p.add_argument("--out", type=Path, default=Path("data/training_cost/cpu"))
    p.add_argument("--quick", action="store_true", help="tiny run for CI (L = 6, 8)")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the figures from the summary files in OUT")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.L = [6, 8]
        args.n_steps, args.batch_size, args.eval_every, args.eval_batch_size = 40, 64, 10, 256
        if args.out == Path("data/training_cost/cpu"):
            args.out = Path("runs/scaling-quick")
    return args


def scan_config(args: argparse.Namespace) -> dict[str, Any]:
    """The scan over L: one training task per lattice size."""
    train = {
        "n_steps": args.n_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "eval_every": args.eval_every,
        "eval_batch_size": args.eval_batch_size,
        "device": args.device,
        "checkpoint_every": max(args.eval_every, 500),
        # the same schedule at every L: no early stop, the targets are read off the history
        "stop_at_target": False,
    }
    if args.time_budget_s:
        train["time_budget_s"] = args.time_budget_s
    return {
        "scan": {"job": "train", "grid": {"theory.L": list(args.L)}, "seed": args.seed},
        "theory": {"parametrization": "ising", "beta": "tuned", "lam": args.lam},
        "flow": {"family": "coupling"},  # the paper's family (the default flow is cnf)
        "train": train,
        "study": {"targets": list(args.targets)},
    }


def collect(scan: Any) -> tuple[list[dict], list[dict]]:
    """Summary rows (one per L) and history rows (one per L and evaluation)."""
    rows, hist = [], []
    for rec in sorted(scan, key=lambda r: r.point.get("theory.L", 0)):
        if rec.result is None:
            continue
        r = rec.result
        row = {
            "L": r["L"],
            "volume": r["volume"],
            "beta": r["theory"]["beta"],
            "lam": r["theory"]["lam"],
            "n_parameters": r["n_parameters"],
            "n_steps": r["n_steps"],
            "train_seconds": r["train_seconds"],
            "seconds_per_step": r["train_seconds"] / max(r["n_steps"], 1),
            "final_acceptance": r["final_acceptance"],
            "final_ess_kish": r["ess_kish"],
            "final_var_log_weight": r["var_log_weight"],
            "var_log_weight_per_site": r["var_log_weight_per_site"],
            "device": r["device"],
            "seed": rec.seed,
            "task_id": rec.task_id,
        }
        for t, v in r["targets"].items():
            row[f"steps_to_{t}"] = v["step"]
            row[f"seconds_to_{t}"] = v["seconds"]
        rows.append(row)
        ev = r["eval"]
        for i, step in enumerate(ev["step"]):
            hist.append(
                {
                    "L": r["L"],
                    "step": step,
                    "train_s": ev["train_s"][i],
                    "acceptance": ev["acceptance"][i],
                    "ess_kish": ev["ess_kish"][i],
                    "var_log_weight": ev["var_log_weight"][i],
                }
            )
    return rows, hist


def fits(rows: list[dict], targets: list[float]) -> dict[str, Any]:
    """Growth fits of steps and seconds to each target against L."""
    out: dict[str, Any] = {}
    for t in targets:
        key = f"{t:g}"
        for what in ("steps", "seconds"):
            pts = [(r["L"], r[f"{what}_to_{key}"]) for r in rows if r[f"{what}_to_{key}"]]
            if pts:
                L, n = zip(*pts)
                out[f"{what}_to_{key}"] = fit_growth(L, n)
    return out


def figures(rows: list[dict], hist: list[dict], fit: dict, targets: list[float], out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    Ls = sorted({h["L"] for h in hist})
    cmap = plt.get_cmap("viridis")
    colors = {L: cmap(i / max(len(Ls) - 1, 1)) for i, L in enumerate(Ls)}

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for L in Ls:
        h = [x for x in hist if x["L"] == L]
        ax.plot([x["step"] for x in h], [x["acceptance"] for x in h], color=colors[L],
                label=f"L = {L}")  # fmt: skip
    for t in targets:
        ax.axhline(t, color="gray", lw=0.5, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("acceptance (held-out batch)")
    ax.set_ylim(0, 1)
    ax.set_title("Flow training at ξ = L/4 (λ = 0.5)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    paths.append(out / "acceptance_vs_step.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, what, unit in ((axes[0], "steps", "training steps"), (axes[1], "seconds", "s")):
        for i, t in enumerate(targets):
            key = f"{t:g}"
            pts = [(r["L"], r[f"{what}_to_{key}"]) for r in rows if r[f"{what}_to_{key}"]]
            if not pts:
                continue
            L, n = map(np.asarray, zip(*pts))
            ax.plot(L, n, "o", color=f"C{i}", label=f"acceptance {key}")
            # lattices that never reached this target: their step count is a lower bound
            low = [(r["L"], r["n_steps" if what == "steps" else "train_seconds"]) for r in rows
                   if not r[f"{what}_to_{key}"]]  # fmt: skip
            if low:
                ax.plot(*zip(*low), "^", mfc="none", color=f"C{i}",
                        label=f"not reached ({key}): > this")  # fmt: skip
            f = fit.get(f"{what}_to_{key}", {})
            xs = np.linspace(min(L), max(L), 50)
            ev, pl = f.get("exponential_volume", {}), f.get("power_law", {})
            if ev.get("params"):
                a, b = ev["params"]
                ax.plot(xs, np.exp(a + b * xs**2), color=f"C{i}", lw=1,
                        label=f"exp(b V), b = {b:.2g}")  # fmt: skip
            if pl.get("params"):
                a, p = pl["params"]
                ax.plot(xs, np.exp(a) * xs**p, color=f"C{i}", lw=1, ls="--",
                        label=f"L^p, p = {p:.2g}")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("L")
        ax.set_ylabel(f"{unit} to reach target")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no target reached", ha="center", transform=ax.transAxes)
    axes[0].set_title("Training steps to target acceptance")
    axes[1].set_title("Training seconds to target acceptance")
    fig.tight_layout()
    paths.append(out / "steps_to_target.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    L = np.array([r["L"] for r in rows])
    v = np.array([np.nan if r["var_log_weight_per_site"] is None
                  else r["var_log_weight_per_site"] for r in rows])  # fmt: skip
    axes[0].plot(L, v, "o-")
    axes[0].set_xlabel("L")
    axes[0].set_ylabel("Var(log w) / V at the end of training")
    axes[0].set_yscale("log")
    axes[0].set_title("Log-weight variance per site")
    for Lh in Ls:
        h = [x for x in hist if x["L"] == Lh and math.isfinite(x["var_log_weight"] or math.nan)]
        s2 = np.array([x["var_log_weight"] for x in h])
        axes[1].plot(lognormal_acceptance(s2), [x["acceptance"] for x in h], ".", ms=3,
                     color=colors[Lh], label=f"L = {Lh}")  # fmt: skip
    axes[1].plot([0, 1], [0, 1], "k--", lw=0.8, label="erfc(σ/2)")
    axes[1].set_xlabel("log-normal prediction erfc(σ/2)")
    axes[1].set_ylabel("measured acceptance")
    axes[1].set_title("Acceptance vs the log-normal prediction")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out / "logweight_scaling.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def markdown_table(rows: list[dict], targets: list[float]) -> str:
    """The results table: per L the training run's size, speed, quality and cost to targets.

    A target entry is "steps (seconds)" to the first held-out evaluation at or above it.
    """
    head = ["L", "beta", "parameters", "steps", "training s", "ms/step", "final acceptance",
            "ess_kish", "Var(log w)/V"] + [f"steps (s) to {t:g}" for t in targets]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["L"]), f"{r['beta']:.4f}", f"{r['n_parameters']:,}", str(r["n_steps"]),
                 f"{r['train_seconds']:.0f}", f"{1e3 * r['seconds_per_step']:.1f}",
                 f"{r['final_acceptance']:.3f}", f"{r['final_ess_kish']:.3f}",
                 f"{r['var_log_weight_per_site']:.4f}"]  # fmt: skip
        for t in targets:
            steps, secs = r.get(f"steps_to_{t:g}"), r.get(f"seconds_to_{t:g}")
            ok = steps is not None and not (isinstance(steps, float) and math.isnan(steps))
            cells.append(f"{steps:.0f} ({secs:.0f} s)" if ok else "not reached")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def publish(
    out: Path, rows: list[dict], targets: list[float], command: str | None = None
) -> list[Path]:
    """The table (``training_OUTNAME``) and this study's section of the data README."""
    written = publish_table(out, "training_cost", f"training_{out.name}",
                            markdown_table(rows, targets))  # fmt: skip
    what = (
        "Flow training cost against L at fixed xi = L/4 with the paper's dense family: "
        "`training_summary.csv`/`.json` (one row per L, growth fits and provenance in the "
        "JSON), `training_histories.csv` (held-out acceptance against step), `figures/`, "
        "`training_scan/` (task records, for runs made in this folder; checkpoints are not "
        "committed). Results page: docs/results/training_cost.md."
    )
    files = ["training_summary.csv", "training_summary.json", "training_histories.csv",
             f"training_{out.name}.md", "figures/", "training_scan/", "log.txt"]  # fmt: skip
    written.append(write_data_readme(out, "training_cost", what, files, command))
    return written


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.replot:
        import csv
        import json

        saved = json.loads((args.out / "training_summary.json").read_text())
        with (args.out / "training_histories.csv").open() as f:
            hist = [{k: float(v) if v else math.nan for k, v in r.items()}
                    for r in csv.DictReader(f)]  # fmt: skip
        targets = saved["config"]["study"]["targets"]
        report(figures(saved["rows"], hist, saved["fits"], targets, args.out / "figures"))
        report(publish(args.out, saved["rows"], targets, recorded_command(saved)))
        return 0
    config = scan_config(args)
    scan = run_scan(config, args.out / "training_scan", JOBS, backend=args.backend,
                    workers=args.workers, scheduler=args.scheduler)  # fmt: skip
    rows, hist = collect(scan)
    fit = fits(rows, args.targets)
    written = [
        write_csv(args.out / "training_summary.csv", rows),
        write_csv(args.out / "training_histories.csv", hist),
    ]
    if rows:
        written += figures(rows, hist, fit, args.targets, args.out / "figures")
        written += publish(args.out, rows, args.targets)
    return finish(
        scan,
        written,
        args.out / "training_summary.json",
        {"rows": rows, "fits": fit, "config": config},
        args,
        started,
    )


if __name__ == "__main__":
    raise SystemExit(main())
