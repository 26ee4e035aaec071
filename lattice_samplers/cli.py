"""The ``lattice-samplers`` command: a dispatcher over subcommands in ``commands/``.

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``
and is imported only when chosen, so ``sample`` never pays for importing torch.  User errors
(:class:`~lattice_samplers.config.ConfigError`, ``ValueError``, missing files) print one line
on stderr and exit with status 2; Ctrl-C exits with 130 after the command saved its state, and
SIGTERM with 143; stopped after its results were written, a command says they are complete.
Every command runs inside one write guard (:mod:`lattice_samplers.workflows.outputs`).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from lattice_samplers.records import guarded_writes
from lattice_samplers.workflows.outputs import completed_results

__all__ = [
    "COMMANDS",
    "DefaultsHelpFormatter",
    "Terminated",
    "build_parser",
    "main",
]

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": (
        "lattice_samplers.commands.analyze",
        "tau_int, ESS and R-hat of chains from any program",
    ),
    "compare": (
        "lattice_samplers.commands.compare",
        "run every sampler on one theory point and compare cost per effective sample",
    ),
    "sample": ("lattice_samplers.commands.sample", "run one classical sampler"),
    "train": ("lattice_samplers.commands.train", "train a normalizing flow by reverse KL"),
    "tune": (
        "lattice_samplers.commands.tune",
        "find the ising beta at which the correlation length is a given fraction of L",
    ),
    "scan": (
        "lattice_samplers.commands.scan",
        "run a grid of independent tasks (serial, process pool or Dask)",
    ),
}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that states each option's default, unless it says it already or has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or not action.option_strings
            or action.nargs == 0  # a switch: its help says what it does
        ):
            return text
        return f"{text} (default: {default})"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per available command."""
    from lattice_samplers import __version__

    parser = argparse.ArgumentParser(
        prog="lattice-samplers",
        description="Compare MCMC samplers (Metropolis, HMC, cluster, normalizing flows) "
        "for 2D lattice phi^4 theory.",
    )
    parser.add_argument("--version", action="version", version=f"lattice-samplers {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # command not built yet
            raise
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=DefaultsHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the parts of a run that save a checkpoint on it."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _stopped(command: str, signal_name: str) -> str:
    """The line printed when a command is stopped outside a run's own checkpointing."""
    done = completed_results()
    if done:
        files = ", ".join(map(str, done))
        return (
            f"lattice-samplers {command}: interrupted by {signal_name} after its results were "
            f"written; {files} complete"
        )
    return (
        f"lattice-samplers {command}: interrupted by {signal_name} before its results were complete"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lattice-samplers`` console script."""
    from lattice_samplers.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None
    if in_main and previous is signal.SIG_DFL:
        # a run installs its own handler (checkpoint, then stop); around it, SIGTERM still
        # ends the command with a line that says what is complete
        signal.signal(signal.SIGTERM, _terminate)
    try:
        with guarded_writes():
            try:
                return int(args._module.run(args) or 0)
            except (ConfigError, ValueError, FileNotFoundError, NotADirectoryError) as exc:
                return _error(args.command, str(exc))
            except IsADirectoryError as exc:
                return _error(args.command, f"{exc.filename} is a folder, not a file")
            except OSError as exc:
                where = f"{exc.filename}: " if exc.filename else ""
                return _error(args.command, f"{where}{exc.strerror or exc}")
            except MemoryError:
                return _error(args.command, "out of memory (use a smaller lattice or run)")
            except Terminated:
                print(_stopped(args.command, "SIGTERM"), file=sys.stderr)
                return 128 + signal.SIGTERM
            except KeyboardInterrupt as exc:
                # a run's own interrupt (RunInterrupted, ScanInterrupted) knows its signal
                name = getattr(exc, "signal_name", None) or getattr(exc, "signame", "SIGINT")
                print(_stopped(args.command, name), file=sys.stderr)
                return int(getattr(exc, "exit_status", 130))
    finally:
        if in_main and previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)


def _error(command: str, message: str) -> int:
    first = message.splitlines()[0] if message else "failed"
    print(f"lattice-samplers {command}: error: {first}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
