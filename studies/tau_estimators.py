"""tau_int of |M|/V and of M^2/V against L for every sampler, by both estimators.

Sources (all in the lattice convention tau_int = 1/2 + sum rho, in recorded draws):

* by default the committed sampler studies, ``data/**/sampler_summary.json`` (one dataset
  per folder: training_cost's cpu and gpu, flow_families). Those were summarized before the
  summaries carried ArviZ's estimate, so they hold the Gamma method's tau_int only; the
  figure says so in its legend. Rows that do carry ``tau_int_arviz_<obs>`` (newer
  summaries) are shown with both;
* or files given on the command line: ``lattice_samplers`` results files (``*.nc``: sampler
  and L from the file's attributes; both estimators are computed here with
  :func:`lattice_samplers.summary.summarize_series`), ``sampler_summary.json`` files, or
  ``compare`` ``summary.json`` files (both estimators when their entries have them).

Writes into --out (default runs/tau_estimators): ``autocorrelation_vs_L.csv``/``.json``
(rows: dataset, L, sampler, observable, tau_int_gamma +- err, tau_int_arviz +- err; the JSON
with provenance) and ``tau_int_estimators_vs_L.png``.

Examples::

    python -m studies.tau_estimators --quick
    python -m studies.tau_estimators data/training_cost/gpu/sampler_summary.json --out runs/ac
    python -m studies.tau_estimators runs/compare-L8/*.nc --out runs/ac-nc
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from studies._common import DATA, ROOT, provenance, report, write_csv, write_json

OBSERVABLES = ("abs_magnetization", "two_point_susceptibility")
SAMPLER_ORDER = ("metropolis", "hmc", "cluster", "flow")
QUICK_DRAWS = 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="*", type=Path,
                   help="results files (.nc) or summary JSON files; default: the committed "
                   "data/**/sampler_summary.json")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/tau_estimators"))
    p.add_argument("--quick", action="store_true",
                   help=f"CI: only the first {QUICK_DRAWS} draws per chain of .nc inputs, "
                   "only the first committed dataset")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick and args.out == Path("runs/tau_estimators"):
        args.out = Path("runs/tau_estimators-quick")
    return args


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _row(dataset: str, L: int, sampler: str, obs: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One output row from a summary entry of either generation (old: Gamma only)."""
    if "tau_int_gamma" in entry:
        gamma, gamma_err = _num(entry["tau_int_gamma"]), _num(entry["tau_int_gamma_err"])
        arviz = _num(entry.get("tau_int_arviz"))
        arviz_err = arviz * gamma_err / gamma if gamma > 0 else math.nan
    else:  # summaries before issue 12: tau_int came from the Gamma method
        gamma, gamma_err = _num(entry.get("tau_int")), _num(entry.get("tau_int_err"))
        arviz = arviz_err = math.nan
    return {"dataset": dataset, "L": int(L), "sampler": sampler, "observable": obs,
            "tau_int_gamma": gamma, "tau_int_gamma_err": gamma_err,
            "tau_int_arviz": arviz, "tau_int_arviz_err": arviz_err}  # fmt: skip


def rows_from_scaling_summary(path: Path, dataset: str) -> list[dict[str, Any]]:
    """Rows of a ``sampler_summary.json`` (studies.sampler_cost)."""
    rows = []
    for r in json.loads(path.read_text())["rows"]:
        for obs in OBSERVABLES:
            entry = {"tau_int": r.get(f"tau_int_{obs}"), "tau_int_err": r.get(f"tau_int_{obs}_err")}
            if f"tau_int_arviz_{obs}" in r:
                entry = {"tau_int_gamma": r.get(f"tau_int_gamma_{obs}", entry["tau_int"]),
                         "tau_int_gamma_err": r.get(f"tau_int_gamma_{obs}_err",
                                                    entry["tau_int_err"]),
                         "tau_int_arviz": r[f"tau_int_arviz_{obs}"]}  # fmt: skip
            rows.append(_row(dataset, r["L"], r["sampler"], obs, entry))
    return rows


def rows_from_compare_summary(path: Path, dataset: str) -> list[dict[str, Any]]:
    """Rows of a ``compare`` ``summary.json`` (one L, every sampler)."""
    data = json.loads(path.read_text())
    L = data["theory"]["L"]
    return [
        _row(dataset, L, name, obs, s["observables"][obs])
        for name, s in data["samplers"].items()
        for obs in OBSERVABLES
        if obs in s["observables"]
    ]


def rows_from_results(path: Path, dataset: str, max_draws: int | None) -> list[dict[str, Any]]:
    """Rows of a results file, both estimators computed from its chains here."""
    from lattice_samplers.driver import read_results
    from lattice_samplers.summary import summarize_series

    result = read_results(path)
    rows = []
    for obs in OBSERVABLES:
        x = result.observables[obs][:, :max_draws]
        rows.append(_row(dataset, result.theory.L, result.sampler, obs, summarize_series(x)))
    return rows


def collect(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """All rows, and the sources they came from (paths relative to the repository)."""
    inputs = list(args.inputs)
    if not inputs:
        inputs = sorted(DATA.glob("**/sampler_summary.json"))
        if args.quick:
            inputs = inputs[:1]
    rows: list[dict[str, Any]] = []
    for path in inputs:
        if not path.is_file():
            raise SystemExit(f"tau_estimators: no such file: {path}")
        dataset = path.parent.name or "."
        if path.suffix == ".nc":
            rows += rows_from_results(path, dataset, QUICK_DRAWS if args.quick else None)
        elif "rows" in json.loads(path.read_text()):
            rows += rows_from_scaling_summary(path, dataset)
        else:  # a compare summary.json: its folder is a long scan task id
            rows += rows_from_compare_summary(path, "compare")
    sources = []
    for p in inputs:
        try:
            sources.append(str(p.resolve().relative_to(ROOT)))
        except ValueError:
            sources.append(p.name)  # never record an absolute path
    return rows, sources


def figure(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lattice_samplers.plots import COLORS, LABELS

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    gamma_only = all(not math.isfinite(r["tau_int_arviz"]) for r in rows)
    for ax, obs in zip(axes, OBSERVABLES):
        for d_i, dataset in enumerate(datasets):
            for name in SAMPLER_ORDER:
                sel = [r for r in rows if r["dataset"] == dataset and r["sampler"] == name
                       and r["observable"] == obs]  # fmt: skip
                if not sel:
                    continue
                sel.sort(key=lambda r: r["L"])
                L = np.array([r["L"] for r in sel], dtype=float)
                g = np.array([r["tau_int_gamma"] for r in sel])
                ge = np.array([r["tau_int_gamma_err"] for r in sel])
                ax.errorbar(L, g, yerr=np.nan_to_num(ge), fmt="o", ls=styles[d_i % 4],
                            color=COLORS.get(name), capsize=2, ms=4,
                            label=f"{name}, {dataset}: Gamma")  # fmt: skip
                a = np.array([r["tau_int_arviz"] for r in sel])
                if np.isfinite(a).any():
                    ae = np.array([r["tau_int_arviz_err"] for r in sel])
                    ax.errorbar(L + 0.12, a, yerr=np.nan_to_num(ae), fmt="s", mfc="none",
                                ls=styles[d_i % 4], color=COLORS.get(name), alpha=0.7,
                                capsize=2, ms=5, label=f"{name}, {dataset}: ArviZ")  # fmt: skip
        ax.set_yscale("log")
        all_L = [r["L"] for r in rows]
        ax.set_xlim(min(all_L) - 1, max(all_L) + 1)
        ax.set_xlabel("L (ξ = L/4)")
        ax.set_ylabel(f"τ_int of {LABELS.get(obs, obs)} (draws)")
        handles, labels = ax.get_legend_handles_labels()
        if gamma_only:
            handles.append(plt.Line2D([], [], ls="none"))
            labels.append("ArviZ τ_int not in these data\n(summarized before issue 12)")
        ax.legend(handles, labels, fontsize=6.5, ncol=2)
    title = "τ_int against L: Gamma method (filled) and ArviZ (open)"
    fig.suptitle(title + ("; Gamma only available" if gamma_only else ""))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    rows, sources = collect(args)
    if not rows:
        raise SystemExit("tau_estimators: no rows in the inputs")
    args.out.mkdir(parents=True, exist_ok=True)
    written = [write_csv(args.out / "autocorrelation_vs_L.csv", rows)]
    written.append(figure(rows, args.out / "tau_int_estimators_vs_L.png"))
    payload = {"rows": rows, "sources": sources, "provenance": provenance(args, started)}
    payload["provenance"]["arguments"] = {
        "inputs": sources, "out": str(args.out), "quick": args.quick,
    }  # fmt: skip
    written.append(write_json(args.out / "autocorrelation_vs_L.json", payload))
    for r in rows:
        a = f"{r['tau_int_arviz']:.4g}" if math.isfinite(r["tau_int_arviz"]) else "-"
        g = f"{r['tau_int_gamma']:.4g} +- {r['tau_int_gamma_err']:.2g}"
        print(f"{r['dataset']:>6} L={r['L']:<3} {r['sampler']:<11}{r['observable']:<26}"
              f"gamma {g}   arviz {a}")  # fmt: skip
    report(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
