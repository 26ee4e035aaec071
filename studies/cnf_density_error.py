"""How far the cnf flow's reported log-density is from the exact density of its discrete map.

The ``cnf`` family integrates the field and the divergence with RK4, so its log q is the base
density minus the RK4 integral of the exact divergence, while the proposal it draws from is the
discrete RK4 map z -> T(z), whose exact density has log|det dT/dz| in place of that integral.
The two differ by e(z) = (RK4 integral) - log|det dT/dz| = O(h^4), h = 1 / ode_steps.

An independence-Metropolis chain that weights proposals with the reported density samples
p(phi) exp(e) / Z instead of p(phi): a constant part of e cancels, the rest biases an average by
Cov_p(O, e) <= sd(O) sd(e).  The statistical error of the average from N_eff effective samples
is sd(O) / sqrt(N_eff), so the bias stays below one standard error while
N_eff < 1 / Var(e): this script reports that bound ("safe ESS") per flow and ode_steps, and
the first-order bias of <phi^2> itself, Cov(phi^2, e), estimated over the flow's samples.

e(z) is measured by brute force: the V x V Jacobian of the whole map by autograd, in float64,
for proposals z drawn from the base.  Feasible up to L of about 16 (V backward copies).

Examples::

    python -m studies.cnf_density_error --quick                   # CI: an untrained flow
    python -m studies.cnf_density_error --checkpoint TASK_DIR ... --ode-steps 5 10 20
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from studies._common import (
    provenance,
    publish_table,
    recorded_command,
    report,
    write_csv,
    write_data_readme,
    write_json,
)

__all__ = ["density_error", "main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, nargs="+", default=[],
                   help="trained cnf flows (checkpoint files or training folders)")  # fmt: skip
    p.add_argument("--ode-steps", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--n", type=int, default=32, help="proposals per flow and ode_steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("data/cnf_density_error"))
    p.add_argument("--quick", action="store_true", help="an untrained L = 6 flow, 8 proposals")
    p.add_argument("--replot", action="store_true",
                   help="only rewrite the table from OUT/density_error.json")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.ode_steps = 8, [5, 10]
        if args.out == Path("data/cnf_density_error"):
            args.out = Path("runs/cnf_density_error-quick")
    elif not args.checkpoint and not args.replot:
        p.error("give --checkpoint (one or more trained cnf flows) or --quick")
    return args


def density_error(flow: Any, n: int, seed: int) -> dict[str, float]:
    """e(z) for ``n`` base draws: mean, standard deviation and the safe-ESS bound 1 / Var(e).

    ``flow`` is a float64 :class:`~lattice_samplers.flows.model.Flow`.
    """
    import torch

    V = flow.volume
    gen = torch.Generator().manual_seed(seed)
    z = flow.prior_noise(n, gen)
    with torch.no_grad():
        phi, reported = flow(z)
    phi2 = (phi**2).mean(dim=(1, 2))
    exact = []
    for i in range(n):
        # V copies of one z in a batch: one backward pass of sum_k y[k, k] gives row k of the
        # Jacobian in copy k (the copies do not interact)
        xs = z[i].reshape(1, V).repeat(V, 1).requires_grad_(True)
        y = flow(xs.view(V, flow.L, flow.L))[0].reshape(V, V)
        (jac,) = torch.autograd.grad(y.diagonal().sum(), xs)
        sign, logabs = torch.linalg.slogdet(jac)
        if float(sign) == 0.0:
            raise RuntimeError("singular Jacobian: the discrete map is not invertible here")
        exact.append(float(logabs))
    e = reported.double() - torch.tensor(exact, dtype=torch.float64)
    sd = float(e.std())
    cov = float(((e - e.mean()) * (phi2 - phi2.mean())).sum() / (n - 1))
    return {
        "mean_e": float(e.mean()),
        "sd_e": sd,
        "max_abs_e_minus_mean": float((e - e.mean()).abs().max()),
        "safe_ess": 1.0 / sd**2 if sd > 0 else math.inf,
        # the bias of <phi^2> to first order, Cov(phi^2, e), estimated under q (~ p for a good
        # flow), and the correlation that says how much of e moves with phi^2
        "phi2_bias": cov,
        "corr_phi2_e": cov / (sd * float(phi2.std())) if sd > 0 else math.nan,
    }


def _flows(args: argparse.Namespace) -> list[tuple[str, Any, dict[str, Any]]]:
    """(label, float64 flow, its record) for each checkpoint (or the --quick flow)."""
    import torch

    from lattice_samplers.flows import CNFSettings, build_flow, load_flow, read_checkpoint
    from lattice_samplers.flows.checkpoint import checkpoint_theory
    from lattice_samplers.theory import Phi4Theory

    out = []
    if args.quick:
        theory = Phi4Theory.create(6, "ising", beta=0.537209, lam=0.5)
        flow = build_flow(theory, CNFSettings(dtype="float64"), seed=1)
        with torch.no_grad():  # a generic, clearly non-identity map
            for p in flow.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2),
                                          dtype=p.dtype))  # fmt: skip
        out.append(("untrained L=6", flow, {"L": 6}))
    for path in args.checkpoint:
        data = read_checkpoint(path)
        flow = load_flow(data).double()
        if flow.arch.get("family") != "cnf":
            raise SystemExit(f"{path}: not a cnf flow (family {flow.arch.get('family')!r})")
        theory = checkpoint_theory(data)
        info = {"L": theory.L, "beta": theory.to_dict().get("beta")}
        out.append((Path(path).name, flow, info))
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table: per flow and ode_steps the size of e and the bias it implies."""
    head = ["L", "ode_steps", "mean e", "sd(e)", "safe ESS = 1/Var(e)",
            "bias of <phi^2> ~ Cov(phi^2, e)", "corr(phi^2, e)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        steps = str(r["ode_steps"])
        if r["ode_steps"] == r["trained_ode_steps"]:
            steps = f"**{steps}**"  # the steps the flow was trained with
        cells = [str(r["L"]), steps, f"{r['mean_e']:.2g}", f"{r['sd_e']:.2g}",
                 f"{r['safe_ess']:.3g}", f"{r['phi2_bias']:.2g}",
                 f"{r['corr_phi2_e']:.2f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def publish(out: Path, rows: list[dict[str, Any]], command: str | None = None) -> list[Path]:
    """The table (``density_error``) and this study's section of the data README."""
    written = publish_table(out, "cnf_density_error", "density_error", markdown_table(rows))
    what = (
        "The cnf flow's RK4 density error e(z) against the exact log-det of its discrete map, "
        "per flow and ode_steps: `density_error.csv`/`.json` (mean, sd, safe ESS, bias of "
        "<phi^2>, correlation; provenance in the JSON). Results page: "
        "docs/results/cnf_density_error.md."
    )
    names = ["density_error.csv", "density_error.json", "density_error.md"]
    written.append(write_data_readme(out, "cnf_density_error", what, names, command))
    return written


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "density_error.json").read_text())
        report(publish(args.out, saved["rows"], recorded_command(saved)))
        return 0
    rows = []
    for label, flow, info in _flows(args):
        layer = next(x for x in flow.layers if hasattr(x, "ode_steps"))
        trained_steps = layer.ode_steps
        for steps in args.ode_steps:
            layer.ode_steps = steps
            t0 = time.perf_counter()
            r = density_error(flow, args.n, args.seed)
            row = {"flow": label, **info, "trained_ode_steps": trained_steps,
                   "ode_steps": steps, "n": args.n, **r,
                   "seconds": time.perf_counter() - t0}  # fmt: skip
            rows.append(row)
            print(
                f"{label}: L = {info['L']}, ode_steps {steps:3d}: mean e {r['mean_e']:+.2e}, "
                f"sd(e) {r['sd_e']:.2e}, safe ESS 1/Var(e) {r['safe_ess']:.3g}, "
                f"bias of <phi^2> ~ Cov(phi^2, e) = {r['phi2_bias']:+.1e}",
                flush=True,
            )
        layer.ode_steps = trained_steps
    json_path = args.out / "density_error.json"
    payload = {"rows": rows, "provenance": provenance(args, started, json_path.parent)}
    written = [write_csv(args.out / "density_error.csv", rows), write_json(json_path, payload)]
    report(written + publish(args.out, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
