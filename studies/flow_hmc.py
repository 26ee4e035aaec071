"""hmc against fourier_hmc (and flow_hmc with a given flow) on the tuned ensembles, side by side.

For each L (ising, lam = 0.5, beta from the packaged beta(L) table at xi = L/4) every sampler
runs with the same chains, seed and lengths; printed per sampler: acceptance, tau_int(|M|),
tau_int(phi^2) (lattice convention, ArviZ estimate, in trajectories) and core seconds per
effective sample of |M| (production only; a flow's training seconds are not included here).

Usage::

    python studies/flow_hmc.py --quick                 # L = 8, 16, 32, short chains
    python studies/flow_hmc.py --L 32 --n-steps 20000  # one size, longer
    python studies/flow_hmc.py --L 8 --flow runs/train-L8/   # adds flow_hmc with that flow

Run with ``nice``: it is CPU-bound.  Not part of the package.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from lattice_samplers.beta_table import tuned_beta
from lattice_samplers.driver import RunSettings, run_sampler
from lattice_samplers.samplers import FourierHMCSampler, HMCSampler
from lattice_samplers.summary import summarize_observables
from lattice_samplers.theory import Phi4Theory

__all__ = ["compare_at", "main"]


def _samplers(theory: Phi4Theory, flow_dir: str | None) -> dict[str, Any]:
    samplers: dict[str, Any] = {
        "hmc": HMCSampler(theory),
        "fourier_hmc": FourierHMCSampler(theory),
        "fourier_hmc_pi": FourierHMCSampler(theory, trajectory_length=math.pi),
    }
    if flow_dir is not None:
        from lattice_samplers.specs import flow_hmc_sampler

        samplers["flow_hmc"] = flow_hmc_sampler(theory, {"flow": flow_dir})
    return samplers


def compare_at(
    L: int, n_steps: int, n_therm: int, n_chains: int, seed: int, flow_dir: str | None = None
) -> list[dict[str, Any]]:
    """Run every sampler at L; one row per sampler (see the module docstring)."""
    theory = Phi4Theory.create(L, "ising", beta=tuned_beta(L, 0.5), lam=0.5)
    rows = []
    for name, sampler in _samplers(theory, flow_dir).items():
        run = RunSettings(n_steps=n_steps, n_therm=n_therm, n_chains=n_chains, seed=seed)
        result = run_sampler(sampler, run, progress=False)
        obs = summarize_observables(result, ["abs_magnetization", "phi2"])
        absm, phi2 = obs["abs_magnetization"], obs["phi2"]
        ess = absm["ess"] if absm["ess"] else math.nan
        rows.append(
            {
                "L": L,
                "sampler": name,
                "acceptance": result.acceptance,
                "n_leapfrog": result.settings.get("n_leapfrog"),
                "abs_m": absm["mean"],
                "abs_m_err": absm["err"],
                "tau_abs_m": absm["tau_int"],
                "tau_abs_m_err": absm["tau_int_err"],
                "tau_phi2": phi2["tau_int"],
                "core_s": result.core_time_s,
                "core_s_per_ess": result.core_time_s / ess,
            }
        )
    return rows


def main() -> None:
    """Command line: print one table row per (L, sampler)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L = 8, 16, 32, short chains")
    parser.add_argument("--L", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--n-steps", type=int, default=20000)
    parser.add_argument("--n-therm", type=int, default=2000)
    parser.add_argument("--n-chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--flow", default=None, help="a trained flow for flow_hmc (one L)")
    args = parser.parse_args()
    if args.quick:
        args.n_steps, args.n_therm, args.n_chains = 1000, 300, 2
    head = f"{'L':>3} {'sampler':<15} {'acc':>5} {'nlf':>4} {'|M|':>14} {'tau|M|':>13}"
    print(head + f" {'tau phi2':>8} {'core s':>7} {'core s/ESS':>10}")
    for L in args.L:
        for r in compare_at(L, args.n_steps, args.n_therm, args.n_chains, args.seed, args.flow):
            print(
                f"{r['L']:>3} {r['sampler']:<15} {r['acceptance']:>5.3f} {r['n_leapfrog']:>4} "
                f"{r['abs_m']:>8.4f}±{r['abs_m_err']:<5.4f} "
                f"{r['tau_abs_m']:>6.2f}±{r['tau_abs_m_err']:<5.2f} {r['tau_phi2']:>8.2f} "
                f"{r['core_s']:>7.2f} {r['core_s_per_ess']:>10.3g}"
            )


if __name__ == "__main__":
    main()
