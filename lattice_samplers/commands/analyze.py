"""``lattice-samplers analyze FILE [FILE ...]``: tau_int, ESS, R-hat of chains from any program.

Reads this package's results files, ArviZ/xarray netCDF (InferenceData or DataTree), .npy,
.npz, CSV and whitespace text (:mod:`lattice_samplers.chains_io`), and reports per variable
mean +- error, tau_int by the Gamma method and by ArviZ (and emcee), bulk ESS, R-hat and
flags (:mod:`lattice_samplers.workflows.analyze`).  ``--json`` prints one JSON object; ``--out DIR``
writes ``analysis.json`` and figures (rho(t) with the window, running tau_int(W), traces); an
earlier analysis there is replaced only with ``--overwrite``.
Bad input is one line on stderr and exit status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lattice_samplers.chains_io import FORMATS, LAYOUTS
from lattice_samplers.commands.common import add_progress_arguments
from lattice_samplers.summary import AnalysisSettings
from lattice_samplers.workflows.analyze import (
    AnalyzeSpec,
    check_analysis_outputs,
    run_analysis,
    write_outputs,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``analyze``."""
    parser.add_argument("files", metavar="FILE", nargs="+", help="input files (several: chains)")
    parser.add_argument(
        "--var",
        dest="var_names",
        action="append",
        default=None,
        metavar="NAME",
        help="variable or column to analyze (repeatable; default: all)",
    )
    parser.add_argument(
        "--format", dest="fmt", default="auto", help=f"input format: {'|'.join(FORMATS)}"
    )
    parser.add_argument(
        "--layout",
        default=None,
        help=f"axis order of 2-D arrays: {'|'.join(LAYOUTS)} (default chains,draws)",
    )
    parser.add_argument("--burn", type=int, default=0, help="drop the first N draws per chain")
    parser.add_argument("--thin", type=int, default=1, help="keep every K-th draw")
    parser.add_argument(
        "--estimator",
        default="arviz",
        help="tau_int that drives err and ess: arviz|gamma (default arviz)",
    )
    parser.add_argument("--out", metavar="DIR", default=None, help="write JSON and figures here")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier analysis in --out DIR"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_progress_arguments(parser)  # accepted for uniformity: analyze is quick and draws none


def run(args: argparse.Namespace) -> int:
    """Run the ``analyze`` command; returns the exit status."""
    out = Path(args.out) if args.out else None
    if out is not None:  # before reading: an earlier analysis is not replaced unless asked
        check_analysis_outputs(out, args.overwrite)
    spec = AnalyzeSpec(
        paths=tuple(Path(f) for f in args.files),
        var_names=tuple(args.var_names) if args.var_names else None,
        fmt=args.fmt,
        layout=args.layout,
        burn=args.burn,
        thin=args.thin,
        analysis=AnalysisSettings(args.estimator),
    )
    result = run_analysis(spec)
    written = []
    if out is not None:  # every file it writes, checked again now and as each is written
        written = write_outputs(result, out, check_analysis_outputs(out, args.overwrite, result))
    if args.json:
        print(json.dumps(result.to_dict(), allow_nan=False))
    else:
        print(result.table())
        for path in written:
            print(f"wrote {path}")
    return 0
