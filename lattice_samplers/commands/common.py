"""Arguments every subcommand shares: CONFIG, ``--set``, ``--json`` and the progress switch."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_common_arguments", "add_progress_arguments", "show_progress"]


def add_common_arguments(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    """Add CONFIG, --set and --json (each subcommand adds its own --out)."""
    if config_required:
        parser.add_argument("config", metavar="CONFIG.toml", help="TOML configuration file")
    else:
        parser.add_argument(
            "config",
            metavar="CONFIG.toml",
            nargs="?",
            default=None,
            help="TOML configuration file (default: the built-in default)",
        )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config entry, e.g. --set theory.L=12 (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_progress_arguments(parser)


def add_progress_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --progress / --no-progress (default: bars on a terminal, one line per phase else)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show progress bars (default: only on a terminal)",
    )
    group.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide progress bars"
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: as asked, else only when stderr is a terminal."""
    progress = getattr(args, "progress", None)
    return sys.stderr.isatty() if progress is None else bool(progress)
