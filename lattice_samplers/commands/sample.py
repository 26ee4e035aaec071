"""``lattice-samplers sample CONFIG.toml``: run one classical sampler and summarize it.

Config sections (:mod:`lattice_samplers.specs`; unknown sections and keys are errors):

* ``[theory]``: ``L``, ``parametrization`` (ising, kappa, albergo, standard) and its couplings;
* ``[sampler]``: ``kind`` (metropolis, hmc, cluster, fourier_hmc, flow_hmc; default hmc); the
  sampler's settings go in the section of its name (``[hmc]``, as in ``compare``) or in
  ``[sampler]`` itself; flow_hmc's flow is ``[flow_hmc] flow = "DIR"`` or ``--flow DIR``;
* ``[run]``: ``n_therm``, ``n_steps``, ``thin``, ``n_chains``, ``seed``, ``checkpoint_every``,
  ``checkpoint_interval_s``, ``block_size`` (:class:`lattice_samplers.driver.RunSettings`).

With ``--out FILE`` the run is written as a netCDF results file
(:mod:`lattice_samplers.driver.results_file`) and checkpointed to ``FILE.ckpt`` while it runs
(SIGINT or SIGTERM saves it; ``--resume`` continues).  An existing results file or checkpoint
is never replaced without ``--overwrite``, checked at the start and again when the file is
written (of two runs with one ``--out``, the second gets one line and its results are kept
beside, :mod:`lattice_samplers.workflows.outputs`); ``--checkpoint`` cannot be the ``--out``
file.  With ``--json`` one JSON object goes to stdout;
otherwise a table.  All input is validated before anything runs or is written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lattice_samplers.commands.common import add_common_arguments
from lattice_samplers.config import ConfigError, apply_overrides, load_config
from lattice_samplers.driver import RunInterrupted
from lattice_samplers.records import dumps
from lattice_samplers.samplers.flow_hmc import exactness_diagnostics
from lattice_samplers.specs import FLOW_HMC, sample_spec
from lattice_samplers.summary import format_observable_table, result_summary
from lattice_samplers.workflows.sample import plan_outputs, run_sample

__all__ = ["add_arguments", "format_table", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sample``: CONFIG, --set, --json, --out, --checkpoint, --resume, ...

    Also --overwrite and the progress switch.
    """
    add_common_arguments(parser)
    parser.add_argument(
        "--out", metavar="FILE", default=None, help="write the results file (netCDF) here"
    )
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=None,
        help="checkpoint file (default: FILE.ckpt next to --out; none without --out); written "
        "every [run] checkpoint_every steps or checkpoint_interval_s seconds, and on "
        "Ctrl-C/SIGTERM",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint of an earlier run"
    )
    parser.add_argument(
        "--flow",
        metavar="DIR",
        default=None,
        help='the trained flow of [sampler] kind = "flow_hmc" (checkpoint file or training '
        'folder), instead of [flow_hmc] flow = "DIR"',
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing results file or start over an earlier run's checkpoint",
    )


def _fmt(x: Any, spec: str = ".6g") -> str:
    return "nan" if x is None else format(x, spec)


def format_table(summary: dict[str, Any]) -> str:
    """A readable multi-line report of :func:`~lattice_samplers.summary.result_summary`."""
    th = summary["theory"]
    couplings = ", ".join(
        f"{k}={v:g}" for k, v in th.items() if k not in ("L", "parametrization", "hopping_form")
    )
    lines = [
        f"{summary['sampler']} on L={summary['L']} {th['parametrization']}({couplings}): "
        f"{summary['n_chains']} chains x {summary['n_steps']} steps "
        f"(thin {summary['thin']}, n_therm {summary['n_therm']}, seed {summary['seed']})",
        f"acceptance {_fmt(summary['acceptance'], '.4f')}   wall {summary['wall_time_s']:.3f} s,"
        f" core {summary.get('core_time_s', summary['wall_time_s']):.3f} s (summed over chains;"
        f" thermalization {summary['therm_time_s']:.3f} s, JIT {summary['compile_time_s']:.2f} s)",
        "settings: " + ", ".join(f"{k}={v}" for k, v in summary["settings"].items()),
        "work: " + ", ".join(f"{k}={v}" for k, v in summary["work"].items()),
    ]
    diag = {k: v for k, v in summary["diagnostics"].items() if k != "acceptance"}
    if diag:
        lines.append("diagnostics: " + ", ".join(f"{k}={_fmt(v, '.5g')}" for k, v in diag.items()))

    lines += ["", format_observable_table(summary["observables"])]
    lines.append("tau_int: " + summary["tau_int_convention"])
    return "\n".join(lines)


def _with_flow(config: dict[str, Any], flow: str) -> dict[str, Any]:
    """The config with ``--flow`` as flow_hmc's flow; ConfigError if not flow_hmc or given twice."""
    sampler = dict(config.get("sampler") or {})
    if sampler.get("kind") != FLOW_HMC:
        raise ConfigError(f'--flow needs [sampler] kind = "{FLOW_HMC}"')
    section = dict(config.get(FLOW_HMC) or {})
    if "flow" in sampler or "flow" in section:
        raise ConfigError("the flow is given both by --flow and in the config: keep one")
    return {**config, FLOW_HMC: {**section, "flow": flow}}


def run(args: argparse.Namespace) -> int:
    """Run the ``sample`` command; returns the exit status."""
    config = apply_overrides(load_config(args.config), args.overrides)
    if args.flow is not None:
        config = _with_flow(config, args.flow)
    spec = sample_spec(config)
    outputs = plan_outputs(args.out, args.checkpoint, args.resume, args.overwrite)
    try:
        result = run_sample(spec, outputs, progress=args.progress)  # None: auto
    except RunInterrupted as exc:
        if exc.checkpoint_path is not None:
            hint = f"; continue with the same command and --resume ({exc.checkpoint_path})"
        else:
            hint = "; nothing saved (give --out or --checkpoint to keep partial runs)"
        print(
            f"lattice-samplers sample: interrupted by {exc.signal_name} after {exc.steps_done} "
            f"steps per chain{hint}",
            file=sys.stderr,
        )
        return exc.exit_status

    summary = result_summary(result, tau_estimator=spec.analysis.tau_estimator)
    exactness = getattr(getattr(spec.sampler, "latent_map", None), "exactness", None)
    if exactness is not None:  # flow_hmc with a cnf flow: RK4 log-det bias against the ESS
        ess = {o: s.get("ess") for o, s in summary["observables"].items()}
        summary["diagnostics"].update(exactness_diagnostics(exactness, ess, spec.sampler.kind))
    if outputs.results is not None:
        summary["out"] = str(outputs.results)
    if args.json:
        print(dumps(summary))
    else:
        print(format_table(summary))
        if outputs.results is not None:
            print(f"results written to {outputs.results}")
    return 0
