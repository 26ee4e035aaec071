"""hmc, fourier_hmc, flow_hmc and flow side by side on the tuned ensembles (issue 20).

For each L (ising, lam = 0.5, beta from the packaged beta(L) table at xi = L/4) the four
samplers run with the same chains and seed: ``hmc`` and ``fourier_hmc`` (default settings,
step size tuned), ``flow_hmc`` and the independence sampler ``flow`` with the committed cnf
flow of the flow-family scan at that L (standard gradient, seed 2, 60 s of CPU training,
sampled with its training ODE steps).  Per row: acceptance, tau_int(|M|) and tau_int(phi^2)
(lattice convention, ArviZ estimate, in steps = trajectories for the HMC samplers), core
seconds per effective sample of |M| (production only) and with the flow's training seconds
added for a run of that length.  A row is *short* when the relative error of tau_int(|M|)
exceeds 15%.

Usage::

    python -m studies.flow_hmc --out data/flow_hmc                  # L = 8, 12, 16
    python -m studies.flow_hmc --quick                               # seconds, scratch folder
    python -m studies.flow_hmc --out data/flow_hmc --replot          # table from the JSON

Run with ``nice``: it is CPU-bound.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from lattice_samplers.beta_table import tuned_beta
from lattice_samplers.driver import RunSettings, run_sampler
from lattice_samplers.records import write_csv, write_json
from lattice_samplers.samplers import FourierHMCSampler, HMCSampler
from lattice_samplers.summary import summarize_observables
from lattice_samplers.theory import Phi4Theory
from studies._common import (
    DATA,
    provenance,
    publish_table,
    recorded_command,
    report,
    write_data_readme,
)

__all__ = ["compare_at", "main", "markdown_table"]

SCAN = DATA / "flow_families" / "scan" / "tasks"
SAMPLERS = ("hmc", "fourier_hmc", "flow_hmc", "flow")
SHORT = 0.15


def _flow_folder(L: int) -> Path | None:
    found = sorted(SCAN.glob(f"family=cnf__gradient=standard__*__L={L}__seed=2__*[0-9a-f]"))
    return found[0] if found and (found[0] / "checkpoint.pt").exists() else None


def _samplers(theory: Phi4Theory, names: tuple[str, ...]) -> dict[str, tuple[Any, float]]:
    """Sampler and training seconds per name (flow samplers only where a flow is committed)."""
    out: dict[str, tuple[Any, float]] = {}
    if "hmc" in names:
        out["hmc"] = (HMCSampler(theory), 0.0)
    if "fourier_hmc" in names:
        out["fourier_hmc"] = (FourierHMCSampler(theory), 0.0)
    folder = _flow_folder(theory.L)
    if folder is not None and {"flow_hmc", "flow"} & set(names):
        from lattice_samplers.flows import FlowProposal, load_flow
        from lattice_samplers.samplers.flow import FlowSampler
        from lattice_samplers.specs import flow_hmc_sampler

        flow = load_flow(folder, theory)
        train_s = float(json.loads((folder / "summary.json").read_text())["train_seconds"])
        if "flow_hmc" in names:
            out["flow_hmc"] = (flow_hmc_sampler(theory, {}, flow=flow), train_s)
        if "flow" in names:
            out["flow"] = (FlowSampler(theory, proposal=FlowProposal(flow)), train_s)
    return out


def compare_at(
    L: int, steps: dict[str, int], n_therm: int, n_chains: int, seed: int, names: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Run every sampler at L; one row per sampler (see the module docstring)."""
    beta = tuned_beta(L, 0.5)
    theory = Phi4Theory.create(L, "ising", beta=beta, lam=0.5)
    rows = []
    for name, (sampler, train_s) in _samplers(theory, names).items():
        n_steps = steps.get(name, steps["default"])
        run = RunSettings(n_steps=n_steps, n_therm=n_therm, n_chains=n_chains, seed=seed)
        result = run_sampler(sampler, run, progress=False)
        obs = summarize_observables(result, ["abs_magnetization", "phi2"])
        absm, phi2 = obs["abs_magnetization"], obs["phi2"]
        ess = absm["ess"] if absm["ess"] else math.nan
        tau, tau_err = absm["tau_int"], absm["tau_int_err"]
        row = {
            "L": L,
            "beta": beta,
            "sampler": name,
            "n_steps": n_steps,
            "n_chains": n_chains,
            "acceptance": result.acceptance,
            "n_leapfrog": result.settings.get("n_leapfrog"),
            "abs_m": absm["mean"],
            "abs_m_err": absm["err"],
            "phi2": phi2["mean"],
            "phi2_err": phi2["err"],
            "tau_abs_m": tau,
            "tau_abs_m_err": tau_err,
            "tau_phi2": phi2["tau_int"],
            "tau_phi2_err": phi2["tau_int_err"],
            "core_s": result.core_time_s,
            "core_s_per_ess": result.core_time_s / ess,
            "train_s": train_s,
            "core_s_per_ess_with_training": (result.core_time_s + train_s) / ess,
            "short": bool(not tau_err or tau_err > SHORT * tau),
        }
        rows.append(row)
        print(
            f"L={L:>3} {name:<12} acc {row['acceptance']:.3f} tau|M| {tau:.2f}±{tau_err:.2f} "
            f"tau phi2 {row['tau_phi2']:.2f} core s/ESS {row['core_s_per_ess']:.3g}"
            f"{' (short)' if row['short'] else ''}",
            flush=True,
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table: one line per (L, sampler); short rows marked."""
    head = ["L", "sampler", "steps x chains", "acceptance", "tau_int(abs M)", "tau_int(phi^2)",
            "core s / ESS(abs M)", "with training"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        tau = f"{r['tau_abs_m']:.2f} ± {r['tau_abs_m_err']:.2f}"
        if r["short"]:
            tau += " (short)"
        cells = [str(r["L"]), r["sampler"], f"{r['n_steps']} x {r['n_chains']}",
                 f"{r['acceptance']:.3f}", tau,
                 f"{r['tau_phi2']:.2f} ± {r['tau_phi2_err']:.2f}",
                 f"{r['core_s_per_ess']:.3g}",
                 f"{r['core_s_per_ess_with_training']:.3g}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def publish(out: Path, rows: list[dict[str, Any]], command: str | None = None) -> list[Path]:
    """The table (``flow_hmc``) and this study's section of the data README."""
    written = publish_table(out, "flow_hmc", "flow_hmc", markdown_table(rows))
    what = (
        "hmc, fourier_hmc, flow_hmc and flow on the tuned ensembles: acceptance, tau_int, cost "
        "per effective sample with and without training, per L and sampler: "
        "`flow_hmc.csv`/`.json` (provenance in the JSON). Results page: docs/results/flow_hmc.md."
    )
    names = ["flow_hmc.csv", "flow_hmc.json", "flow_hmc.md"]
    written.append(write_data_readme(out, "flow_hmc", what, names, command))
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="L = 8, short chains, scratch folder")
    p.add_argument("--L", type=int, nargs="+", default=[8, 12, 16])
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--n-steps", type=int, default=20000, help="hmc, fourier_hmc and flow")
    p.add_argument("--n-steps-flow-hmc", type=int, default=2000)
    p.add_argument("--n-therm", type=int, default=1000)
    p.add_argument("--n-chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", type=Path, default=Path("runs/flow_hmc"))
    p.add_argument("--replot", action="store_true", help="only rewrite the table from the JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.L, args.n_steps, args.n_steps_flow_hmc, args.n_therm = [8], 400, 100, 100
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line: run (or replot) and write the data, the table and the README section."""
    started = time.perf_counter()
    args = parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "flow_hmc.json").read_text())
        report(publish(args.out, saved["rows"], recorded_command(saved)))
        return 0
    steps = {"default": args.n_steps, "flow_hmc": args.n_steps_flow_hmc}
    rows = []
    for L in args.L:
        rows += compare_at(L, steps, args.n_therm, args.n_chains, args.seed, tuple(args.samplers))
    json_path = args.out / "flow_hmc.json"
    payload = {"rows": rows, "provenance": provenance(args, started, json_path.parent)}
    written = [write_csv(args.out / "flow_hmc.csv", rows), write_json(json_path, payload)]
    report(written + publish(args.out, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
