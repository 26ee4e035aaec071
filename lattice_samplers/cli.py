"""The ``lattice-samplers`` command: a dispatcher over subcommands in ``commands/``.

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``
and is imported only when chosen, so ``sample`` never pays for importing torch.  User errors
(:class:`~lattice_samplers.config.ConfigError`, ``ValueError``, missing files) print one line
on stderr and exit with status 2; Ctrl-C exits with 130 after the command saved its state.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = [
    "COMMANDS",
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


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per available command."""
    parser = argparse.ArgumentParser(
        prog="lattice-samplers",
        description="Compare MCMC samplers (Metropolis, HMC, cluster, normalizing flows) "
        "for 2D lattice phi^4 theory.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # command not built yet
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lattice-samplers`` console script."""
    from lattice_samplers.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"lattice-samplers {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lattice-samplers {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
