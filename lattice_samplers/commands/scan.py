"""``lattice-samplers scan CONFIG.toml --out DIR``: run a grid of independent tasks.

See :mod:`lattice_samplers.scan` for the ``[scan]`` section, seeds and the result files.
"""

from __future__ import annotations

import argparse
import json
import sys

from lattice_samplers.commands.common import add_common_arguments, show_progress
from lattice_samplers.config import ConfigError, apply_overrides, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scan command's arguments."""
    add_common_arguments(parser)
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="scan directory (task files, summaries)"
    )
    parser.add_argument(
        "--backend",
        choices=("serial", "process", "dask"),
        default=None,
        help="where tasks run (default: serial, or dask when a scheduler is given)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for process/dask (default: usable cores)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS, else a LocalCluster)",
    )
    parser.add_argument(
        "--scheduler-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up connecting to the scheduler after this long (default: 10)",
    )
    parser.add_argument(
        "--list", action="store_true", help="validate and list the tasks, run nothing"
    )


def run(args: argparse.Namespace) -> int:
    """Run the scan; exit status 0 when every task has a result, 1 when some failed."""
    from lattice_samplers import scan

    config = apply_overrides(load_config(args.config), args.overrides)
    if args.list:
        return _list(scan.collect_scan(config, args.out), args.json)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    backend = args.backend or ("dask" if args.scheduler else "serial")
    timeout = args.scheduler_timeout or scan.SCHEDULER_TIMEOUT_S
    result = scan.run_scan(
        config,
        args.out,
        backend=backend,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=show_progress(args) and not args.json,
        scheduler_timeout=timeout,
    )
    if args.json:
        print(json.dumps(result.to_json(), default=scan._json_default))
    else:
        print(result.table())
        print(
            f"\n{len(result)} tasks: {result.n_run} run, {result.n_skipped} already done, "
            f"{result.n_failed} failed"
            + (f", {result.n_redone} corrupt file(s) redone" if result.n_redone else "")
            + f"; {result.wall_s:.1f} s.  Results: {result.out_dir / 'summary.csv'}"
        )
    if result.n_failed:
        print(
            f"lattice-samplers scan: {result.n_failed} task(s) failed (see "
            f"{result.out_dir / 'tasks'}/*.error.txt); run the same command again to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def _list(result: object, as_json: bool) -> int:
    from lattice_samplers.scan import ScanResult

    assert isinstance(result, ScanResult)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        print(result.table())
        done = sum(r.status != "missing" for r in result)
        print(f"\n{len(result)} tasks, {done} with results in {result.out_dir}")
    return 0
