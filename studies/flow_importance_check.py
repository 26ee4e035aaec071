"""Importance-sampling estimate of <phi^2> from a trained flow, independent of the IMH kernel.

Draws n independent proposals from the flow and reweights them with w = exp(-S - log q)
(self-normalized), in the flow's own dtype and ODE steps and, for the cnf family, also in
float64 with the trained and with twice the ODE steps (where the RK4 density error is ~30x
smaller).  A flow-independent-Metropolis chain on the same flow must agree with these within
errors; so must the classical samplers.  The error is the delta-method standard error of the
self-normalized estimator.

With ``--out DIR`` the lines are also written to ``DIR/importance_check_L<L>.txt`` with the
command, and ``DIR/README.md`` gets this study's section.

Examples::

    python -m studies.flow_importance_check --quick      # CI: the committed L = 6 cnf flow
    python -m studies.flow_importance_check --checkpoint TASK_DIR --n 204800 \\
        --out data/flow_importance_check
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from studies._common import DATA, command_line, report, write_data_readme, write_text

#: The committed L = 6 cnf flow of the flow_families study (what --quick samples).
QUICK_CHECKPOINT = next(
    (DATA / "flow_families" / "scan" / "tasks").glob(
        "family=cnf__gradient=standard__*__L=6__seed=2__*/"
    ),
    None,
)

__all__ = ["importance_estimate", "main"]


def importance_estimate(proposal, action, n: int, batch: int = 8192) -> dict[str, float]:
    """Self-normalized importance estimate of <phi^2> (site mean) with its standard error."""
    import numpy as np

    log_w, obs = [], []
    for start in range(0, n, batch):
        phi, log_q = proposal.sample(min(batch, n - start))
        log_w.append(-action(phi) - log_q)
        obs.append((phi * phi).mean(axis=(1, 2)))
    lw, o = np.concatenate(log_w), np.concatenate(obs)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    mean = float((w * o).sum())
    return {
        "phi2": mean,
        "phi2_err": float(np.sqrt((w * w * (o - mean) ** 2).sum())),
        "ess_kish": float(1.0 / (w * w).sum()),
        "n": int(lw.size),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="a trained flow (file or folder)")
    p.add_argument("--n", type=int, default=204_800)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", type=Path, default=None, help="also write the lines here")
    p.add_argument("--quick", action="store_true", help="CI: the committed L = 6 flow, n = 2048")
    p.add_argument("--replot", action="store_true",
                   help="only rewrite OUT/README.md's section from the results in OUT")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.checkpoint = args.checkpoint or QUICK_CHECKPOINT
        args.n = min(args.n, 2048)
    if args.replot:
        if args.out is None:
            p.error("--replot needs --out (the folder of earlier results)")
        report([_readme(args.out, None)])
        return 0
    if args.checkpoint is None:
        p.error("--checkpoint is required (or --quick)")

    import torch

    from lattice_samplers import Phi4Theory
    from lattice_samplers.flows import FlowProposal, load_flow, phi4_action, read_checkpoint

    data = read_checkpoint(args.checkpoint)
    theory = Phi4Theory.from_dict(data["theory"])
    h, c2, c4 = (float(v) for v in theory.hopping)

    def action(phi):
        return phi4_action(torch.from_numpy(phi), h, c2, c4, float(theory.c0)).numpy()

    base = load_flow(data)
    layer = next((x for x in base.layers if hasattr(x, "ode_steps")), None)
    variants = [(str(base.dtype).replace("torch.", ""), None)]
    if layer is not None:
        variants += [("float64", layer.ode_steps), ("float64", 2 * layer.ode_steps)]
    lines: list[str] = []
    for dtype, steps in variants:
        flow = load_flow(data)
        if dtype == "float64":
            flow = flow.double()
        if steps is not None:
            flow.set_ode_steps(steps)
        t0 = time.perf_counter()
        r = importance_estimate(FlowProposal(flow, seed=args.seed), action, args.n)
        lines.append(
            f"L = {theory.L} {dtype} ode_steps {steps or '-'}: <phi^2> = {r['phi2']:.5f} "
            f"± {r['phi2_err']:.5f} (Kish ESS {r['ess_kish']:.0f} of {r['n']}), "
            f"{time.perf_counter() - t0:.0f} s"
        )
        print(lines[-1], flush=True)
    if args.out is not None:
        name = f"importance_check_L{theory.L}.txt"
        text = "\n".join([f"# {command_line()}", *lines]) + "\n"
        report([write_text(args.out / name, text)])
        report([_readme(args.out, command_line())])
    return 0


def _readme(out: Path, command: str | None) -> Path:
    """This study's section of ``OUT/README.md``; the command defaults to the recorded one."""
    files = sorted(p.name for p in out.glob("importance_check_L*.txt"))
    if command is None:
        if not files:
            raise SystemExit(f"flow_importance_check: no importance_check_L*.txt in {out}")
        command = (out / files[-1]).read_text().splitlines()[0].lstrip("# ")
    what = (
        "Self-normalized importance-sampling estimates of <phi^2> from a trained flow, "
        "independent of any Markov chain: one file per flow, its first line the command. "
        "Results page: docs/results/flow_importance_check.md."
    )
    return write_data_readme(out, "flow_importance_check", what, files, command)


if __name__ == "__main__":
    raise SystemExit(main())
