"""``lattice-samplers tune --L L [L ...] --lam LAM``: the beta at which xi = (xi/L) * L.

With one or more ``--L`` it tunes each in this process and prints the results.  With
``--out DIR`` it runs one ``tune`` scan task per L (so an interrupted run resumes, and
``--backend process`` spreads the lattices over cores) and writes the table
``DIR/beta_tuned.csv`` and ``DIR/beta_tuned.json`` (see :mod:`lattice_samplers.workflows.tune`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from lattice_samplers import scan
from lattice_samplers.commands.common import add_progress_arguments, show_progress
from lattice_samplers.config import ConfigError
from lattice_samplers.jobs import JOBS
from lattice_samplers.records import environment
from lattice_samplers.specs import TuneSettings
from lattice_samplers.workflows import tune
from lattice_samplers.workflows.outputs import check_outputs

__all__ = [
    "add_arguments",
    "run",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the tune command's arguments."""
    parser.add_argument(
        "--L", type=int, nargs="+", required=True, metavar="L", help="lattice extent(s)"
    )
    parser.add_argument("--lam", type=float, required=True, help="ising-form quartic coupling")
    parser.add_argument(
        "--xi-over-L", type=float, default=0.25, help="target xi / L (default 0.25: m L = 4)"
    )
    parser.add_argument(
        "--n-steps", type=int, default=20_000, help="measured sampler steps per beta point"
    )
    parser.add_argument("--n-therm", type=int, default=1_000, help="thermalization steps")
    parser.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    parser.add_argument(
        "--beta0",
        type=float,
        default=None,
        help="starting beta (default: the paper's beta(L), arXiv:2112.15532, for lam = 0.5, "
        "else 0.6)",
    )
    parser.add_argument(
        "--step", type=float, default=0.01, help="initial beta spacing of the measurements"
    )
    parser.add_argument(
        "--sampler",
        default="cluster",
        help="sampler kind used to measure xi (default cluster: Wolff + Metropolis)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        help="accept the solution when xi/L there is within this many errors of the target",
    )
    parser.add_argument("--max-iter", type=int, default=3, help="fit-and-check rounds")
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write DIR/beta_tuned.csv and .json (runs as a resumable scan in DIR/scan)",
    )
    parser.add_argument(
        "--backend",
        choices=("serial", "process", "dask"),
        default=None,
        help="with --out: where the per-L tasks run (default serial)",
    )
    parser.add_argument("--workers", type=int, default=None, help="with --out: worker processes")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_progress_arguments(parser)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "lam": args.lam,
        "xi_over_L": args.xi_over_L,
        "beta0": args.beta0,
        "step": args.step,
        "n_steps": args.n_steps,
        "n_therm": args.n_therm,
        "sampler": args.sampler,
        "tolerance": args.tolerance,
        "max_iter": args.max_iter,
    }


def run(args: argparse.Namespace) -> int:
    """Tune every requested L; exit status 0 when all converged, 1 otherwise."""
    if len(set(args.L)) != len(args.L):
        raise ConfigError(f"--L values repeat: {args.L}")
    if args.out is None and (args.backend is not None or args.workers is not None):
        raise ConfigError("--backend and --workers need --out (the per-L tasks run as a scan)")
    if args.out is not None:
        # the one output check; the table is continued (rows of other L are kept), so the
        # existing table files are adopted, as --resume adopts a checkpoint
        table = [Path(args.out) / name for name in ("beta_tuned.csv", "beta_tuned.json")]
        check_outputs(files=table, folders=[args.out], adopt=table)
    args.backend = args.backend or "serial"
    settings = _settings(args)
    # validate everything (all L) before spending CPU time
    for L in args.L:
        try:
            TuneSettings(L=L, seed=args.seed, **settings)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    t0 = time.perf_counter()
    if args.out is None:
        results = [
            tune.tune_beta(
                L,
                seed=args.seed,
                progress=None
                if args.json or args.progress is False
                else lambda line: print(line, file=sys.stderr),
                **settings,
            )
            for L in args.L
        ]
        table = None
    else:
        results, table = _run_table(args, settings)
    wall = time.perf_counter() - t0

    if args.json:
        out = {"results": [r.to_dict() for r in results], "table": table, "wall_s": wall}
        print(json.dumps(out))
    else:
        print(_format(results))
        if table:
            print(f"\ntable: {table}")
    return 0 if all(r.converged for r in results) else 1


def _run_table(args: argparse.Namespace, settings: dict[str, Any]) -> tuple[list, str]:
    """Run the L values as a ``tune`` scan under OUT/scan and write OUT/beta_tuned.*."""
    out = Path(args.out)
    tune_section = {k: v for k, v in settings.items() if v is not None}
    config = {
        # sorted: a task's seed follows its grid position, so the order of --L must not matter
        "scan": {"job": "tune", "seed": args.seed, "grid": {"tune.L": sorted(args.L)}},
        "tune": tune_section,
    }
    t0 = time.perf_counter()
    result = scan.run_scan(
        config,
        out / "scan",
        JOBS,
        # more (or other) L values in the same folder are the point of --out: keep the task
        # files that still match and add the new ones
        force=True,
        backend=args.backend,
        workers=args.workers,
        progress=show_progress(args) and not args.json,
    )
    if not result.ok:
        failed = "; ".join(f"{r.task_id}: {r.error}" for r in result if r.error)
        raise ConfigError(f"tune: {result.n_failed} L value(s) failed: {failed}")
    results = [tune.result_from_dict(r.result) for r in result]
    # merge with rows already in the table for other L / lam / targets
    previous = out / "beta_tuned.json"
    if previous.is_file():
        old = json.loads(previous.read_text())
        keys = {(r.L, r.lam, r.xi_over_L_target) for r in results}
        for d in old.get("results", []):
            r = tune.result_from_dict(d)
            if (r.L, r.lam, r.xi_over_L_target) not in keys:
                results.append(r)
    meta = {
        "command": _command_line(args),
        "scan_config": config,
        "scan_dir": "scan",
        "environment": environment(),
        "wall_s_this_call": time.perf_counter() - t0,
        "task_wall_s": {str(r.point["tune.L"]): r.wall_s for r in result},
    }
    path = tune.write_table(results, out, meta)
    return sorted(results, key=lambda r: (r.lam, r.xi_over_L_target, r.L)), str(path)


def _command_line(args: argparse.Namespace) -> str:
    """The equivalent command line, all defaults spelled out (for the table's provenance)."""
    words = ["lattice-samplers", "tune", "--L", *map(str, args.L), "--lam", repr(args.lam)]
    for name in ("xi_over_L", "n_steps", "n_therm", "seed", "beta0", "step", "sampler"):
        value = getattr(args, name)
        if value is not None:
            words += ["--" + name.replace("_", "-"), str(value)]
    words += ["--tolerance", str(args.tolerance), "--max-iter", str(args.max_iter)]
    words += ["--out", str(args.out), "--backend", args.backend]
    if args.workers:
        words += ["--workers", str(args.workers)]
    return shlex.join(words)


def _format(results: list) -> str:
    header = (
        f"{'L':>4} {'lam':>6} {'xi/L*':>6} {'beta':>10} {'+-':>9} {'xi/L':>8} {'+-':>7} "
        f"{'at beta':>9} {'paper':>8} {'pts':>4} {'ok':>3} {'s':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        guess = r.table_row()["beta_paper"]
        lines.append(
            f"{r.L:>4} {r.lam:>6g} {r.xi_over_L_target:>6g} {r.beta:>10.5f} {r.beta_err:>9.5f} "
            f"{r.xi_over_L:>8.4f} {r.xi_over_L_err:>7.4f} {r.beta_checked:>9.5f} "
            f"{'' if guess is None else f'{guess:.3f}':>8} {len(r.points):>4} "
            f"{'yes' if r.converged else 'NO':>3} {r.wall_s:>6.1f}"
        )
    return "\n".join(lines)
