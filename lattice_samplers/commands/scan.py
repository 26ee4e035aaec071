"""``lattice-samplers scan``: run a grid of independent tasks, or report on a scan folder.

``scan CONFIG.toml --out DIR`` runs the scan (see :mod:`lattice_samplers.scan` for the
``[scan]`` section, seeds and the result files); ``scan --status DIR [--json]`` lists the done,
missing and corrupt tasks of the scan recorded in DIR without running anything.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lattice_samplers import scan
from lattice_samplers.commands.common import add_common_arguments, show_progress
from lattice_samplers.config import ConfigError, apply_overrides, load_config
from lattice_samplers.jobs import JOBS
from lattice_samplers.records import dumps
from lattice_samplers.scan import ScanResult, format_status, scan_axes, scan_status
from lattice_samplers.workflows.outputs import check_outputs

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scan command's arguments."""
    add_common_arguments(parser, config_required=False)
    parser.add_argument("--out", metavar="DIR", help="scan folder (task files, summaries)")
    parser.add_argument(
        "--status",
        metavar="DIR",
        default=None,
        help="list the done, missing and corrupt tasks of the scan in DIR; run nothing",
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
        "--force",
        action="store_true",
        help="record this config in a folder that holds a different scan (matching task "
        "files are kept)",
    )
    parser.add_argument(
        "--list", action="store_true", help="validate and list the tasks, run nothing"
    )


def _check_out(out: Path) -> None:
    """The one output check: a folder that holds no scan must not have a scan's file names.

    A scan folder (``scan.json``) is continued, as designed (its tasks are resumed); any other
    folder may hold files, but not a ``summary.json`` or ``summary.csv`` of something else (a
    comparison's), which the scan's summary would replace.
    """
    names = ("scan.json", "summary.json", "summary.csv")
    files = [out / name for name in names]
    check_outputs(files=files, folders=[out], adopt=files if (out / "scan.json").is_file() else [])


def _check_overrides(config: dict, overrides: list[str]) -> None:
    """Refuse ``--set KEY=VALUE`` for a KEY that is a scan axis (it would be overwritten)."""
    axes = scan_axes(config)
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in axes:
            raise ConfigError(
                f"--set {item}: {key} is a scan axis ([scan] {axes[key]}); change its values "
                f"with --set 'scan.{axes[key]}={{\"{key}\" = [...]}}' or in the config"
            )


def run(args: argparse.Namespace) -> int:
    """Run the scan (0: every task has a result, 1: some failed), or report its status."""
    if args.status is not None:
        return _status(args.status, args.json)
    if args.config is None:
        raise ConfigError("a scan needs CONFIG.toml (or --status DIR)")
    if not args.out:
        raise ConfigError("a scan needs --out DIR")
    config = load_config(args.config)
    _check_overrides(config, args.overrides)
    config = apply_overrides(config, args.overrides)
    if args.list:
        return _list(scan.collect_scan(config, args.out, JOBS), args.json)
    _check_out(Path(args.out))
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    backend = args.backend or ("dask" if args.scheduler else "serial")
    timeout = args.scheduler_timeout
    if timeout is None:
        timeout = scan.SCHEDULER_TIMEOUT_S
    elif not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(
            f"--scheduler-timeout must be a positive number of seconds, got {timeout}"
        )
    try:
        result = scan.run_scan(
            config,
            args.out,
            JOBS,
            backend=backend,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=show_progress(args) and not args.json,
            scheduler_timeout=timeout,
            force=args.force,
        )
    except scan.ScanInterrupted as exc:
        done = exc.result
        where = (
            f"{done.n_run + done.n_skipped} of {len(done)} tasks done, summary in "
            f"{done.out_dir / 'summary.csv'}; "
            if done is not None
            else ""
        )
        print(
            f"lattice-samplers scan: interrupted ({exc.signame}); {where}"
            "run the same command again to continue",
            file=sys.stderr,
        )
        return exc.exit_status
    if args.json:
        print(dumps(result.to_json()))
    else:
        print(result.table())
        print(
            f"\n{len(result)} tasks: {result.n_run} run, {result.n_skipped} already done, "
            f"{result.n_failed} failed"
            + (f", {result.n_missing} running elsewhere" if result.n_missing else "")
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
    if result.n_missing:
        print(
            f"lattice-samplers scan: {result.n_missing} task(s) were being run by another scan "
            f"on {result.out_dir}; run the same command again later to collect them",
            file=sys.stderr,
        )
        return 1
    return 0


def _status(out_dir: str, as_json: bool) -> int:
    status = scan_status(out_dir)
    print(dumps(status) if as_json else format_status(status, out_dir))
    return 0


def _list(result: object, as_json: bool) -> int:
    assert isinstance(result, ScanResult)
    if as_json:
        print(dumps(result.to_json()))
    else:
        print(result.table())
        done = sum(r.status != "missing" for r in result)
        print(f"\n{len(result)} tasks, {done} with results in {result.out_dir}")
    return 0
