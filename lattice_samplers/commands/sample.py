"""``lattice-samplers sample CONFIG.toml``: run one classical sampler and summarize it.

Config sections (unknown sections and keys are errors):

* ``[theory]``: ``L``, ``parametrization`` (ising, kappa, albergo, standard) and its couplings;
* ``[sampler]``: ``kind`` (metropolis, hmc, cluster; default hmc) and that sampler's
  settings (see :mod:`lattice_samplers.samplers`), all with defaults;
* ``[run]``: ``n_therm``, ``n_steps``, ``thin``, ``n_chains``, ``seed``, ``checkpoint_every``,
  ``block_size`` (:class:`lattice_samplers.run.RunSettings`).

With ``--out FILE`` the run is written as a netCDF results file (:mod:`lattice_samplers.io`),
checkpointed to ``FILE.ckpt`` while it runs (Ctrl-C saves it; ``--resume`` continues).
With ``--json`` one JSON object goes to stdout (:func:`lattice_samplers.summary.result_summary`);
otherwise a table.  All input is validated before anything runs or is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lattice_samplers.cli import add_common_arguments
from lattice_samplers.config import (
    ConfigError,
    apply_overrides,
    check_sections,
    load_config,
    section_to_dataclass,
    theory_from_config,
)

SECTIONS = ("theory", "sampler", "run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sample``: CONFIG, --set, --json, --out, --checkpoint, --resume, progress."""
    add_common_arguments(parser)
    parser.add_argument(
        "--out", metavar="FILE", default=None, help="write the results file (netCDF) here"
    )
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=None,
        help="checkpoint file (default: FILE.ckpt next to --out; none without --out)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint of an earlier run"
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="show progress"
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )


def build(config: dict[str, Any]) -> tuple[Any, Any]:
    """Validate a config: return (sampler, RunSettings) or raise a one-line ConfigError."""
    from lattice_samplers.run import RunSettings
    from lattice_samplers.samplers import SAMPLERS

    check_sections(config, SECTIONS)
    theory = theory_from_config(config.get("theory"))
    section = config.get("sampler", {})
    if not isinstance(section, dict):
        raise ConfigError("[sampler] must be a table")
    settings = dict(section)
    kind = settings.pop("kind", "hmc")
    if kind not in SAMPLERS:
        raise ConfigError(f"[sampler] unknown kind {kind!r} (known: {', '.join(SAMPLERS)})")
    cls = SAMPLERS[kind]
    sampler_settings = section_to_dataclass(cls.settings_class, settings, "sampler")
    run_settings = section_to_dataclass(RunSettings, config.get("run"), "run")
    try:
        sampler = cls(theory, sampler_settings)
    except ValueError as exc:
        raise ConfigError(f"[sampler] {exc}") from None
    return sampler, run_settings


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
        f"acceptance {_fmt(summary['acceptance'], '.4f')}   wall {summary['wall_time_s']:.3f} s"
        f" (thermalization {summary['therm_time_s']:.3f} s, JIT {summary['compile_time_s']:.2f} s)",
        "settings: " + ", ".join(f"{k}={v}" for k, v in summary["settings"].items()),
        "work: " + ", ".join(f"{k}={v}" for k, v in summary["work"].items()),
    ]
    diag = {k: v for k, v in summary["diagnostics"].items() if k != "acceptance"}
    if diag:
        lines.append("diagnostics: " + ", ".join(f"{k}={_fmt(v, '.5g')}" for k, v in diag.items()))
    from lattice_samplers.summary import format_observable_table

    lines += ["", format_observable_table(summary["observables"])]
    lines.append("tau_int: " + summary["tau_int_convention"])
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the ``sample`` command; returns the exit status."""
    config = apply_overrides(load_config(args.config), args.overrides)
    sampler, run_settings = build(config)

    out = Path(args.out) if args.out else None
    if out is not None:
        if out.is_dir():
            raise ConfigError(f"--out {out} is a directory")
        try:  # the config is valid by now: make the folder the user asked for
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {out}: cannot create {out.parent} ({exc.strerror})") from None
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    elif out is not None:
        checkpoint = out.with_name(out.name + ".ckpt")
    else:
        checkpoint = None
    if args.resume and (checkpoint is None or not checkpoint.is_file()):
        raise ConfigError(
            f"--resume: no checkpoint at {checkpoint or '(give --out or --checkpoint)'}"
        )

    from lattice_samplers.run import RunInterrupted, run_with_settings
    from lattice_samplers.summary import result_summary

    try:
        result = run_with_settings(
            sampler,
            run_settings,
            checkpoint_path=checkpoint,
            resume=args.resume,
            progress=args.progress,
            config=config,
        )
    except RunInterrupted as exc:
        if exc.checkpoint_path is not None:
            hint = f"; continue with the same command and --resume ({exc.checkpoint_path})"
        else:
            hint = "; nothing saved (give --out or --checkpoint to keep partial runs)"
        print(
            f"lattice-samplers sample: interrupted after {exc.steps_done} steps per chain{hint}",
            file=sys.stderr,
        )
        return 130

    if out is not None:
        from lattice_samplers.io import write_results

        write_results(result, out)
    if checkpoint is not None and out is not None:
        # the results file now holds everything; the checkpoint only served this run
        checkpoint.unlink(missing_ok=True)

    summary = result_summary(result)
    if out is not None:
        summary["out"] = str(out)
    if args.json:
        print(json.dumps(summary, allow_nan=False))
    else:
        print(format_table(summary))
        if out is not None:
            print(f"results written to {out}")
    return 0
