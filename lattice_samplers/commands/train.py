"""``lattice-samplers train``: train a normalizing flow for one theory by reverse KL.

Reads ``[theory]``, ``[flow]`` (architecture, optional) and ``[train]`` (settings, optional)
from CONFIG.toml, trains, and writes into the output folder:

* ``checkpoint.pt``: weights, optimizer, scheduler, RNG states, history (resumable);
* ``history.csv``: one row per step (loss, acceptance, ess_kish, ...; see
  :mod:`lattice_samplers.workflows.train.session`);
* ``training.png``: loss and acceptance against step;
* ``summary.json``: the ``--json`` summary plus the resolved configuration.

Input is validated before anything is written; an existing checkpoint is never overwritten
(continue it with ``--resume``), nor any file of the set above, whatever made it (an earlier
training, a comparison), checked before the work and again when each file is written
(:mod:`lattice_samplers.workflows.outputs`).

With a ``[curriculum]`` section (``L = [8, 12, 16, 20]``, ending with ``[theory] L``) the
command trains every stage in turn, each warm-started from the one before: the earlier stages
write into ``DIR/stages/stage{i}_L{L}``, the final one into ``DIR`` like a plain training.  The
final checkpoint and summary count the total training seconds (the sum over the stages), which
is what ``compare --flow DIR`` charges; the summary lists every stage under ``curriculum``.

Under ``torchrun`` (several processes, see ``docs/ddp.md``) the same command trains with
DistributedDataParallel: gloo on CPU, nccl with ``device = "cuda"``; rank 0 alone writes the
output folder and prints.  With ``[train] processes`` above 1 (or ``auto``) on the CPU the
command starts torchrun itself, on this node, with the same arguments.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lattice_samplers.commands.common import add_common_arguments, show_progress
from lattice_samplers.config import apply_overrides, load_config
from lattice_samplers.records import dumps
from lattice_samplers.specs import TrainSpec, train_spec
from lattice_samplers.workflows.outputs import TRAINING_FILES, OutputClaim, protected

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to its subparser."""
    add_common_arguments(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder (default: runs/flow_L{L}_{parametrization})",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the checkpoint in the output folder"
    )
    parser.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        default=None,
        help="warm start: begin with this checkpoint's weights (same [flow], any L, if the "
        "parameter shapes agree)",
    )


def run(args: argparse.Namespace) -> int:
    """Train as configured; print a summary (or one JSON object with --json)."""
    spec = train_spec(apply_overrides(load_config(args.config), args.overrides))
    theory = spec.theory
    out = Path(args.out or f"runs/flow_L{theory.L}_{theory.parametrization}")

    # torch, loaded only for this command
    from lattice_samplers.flows.train.config import resolve_processes
    from lattice_samplers.workflows.train.run import TrainingInterrupted, run_training

    processes = resolve_processes(spec.train)
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(args, out, processes)

    if spec.curriculum is not None:
        return _run_curriculum(args, spec, out)
    try:
        with protected(_claim(out, args.resume)):
            result, reports = run_training(
                spec,
                out,
                progress=show_progress(args),
                resume=args.resume,
                init_from=args.init_from,
            )
    except TrainingInterrupted as exc:
        print(f"lattice-samplers train: {exc}", file=sys.stderr)
        return exc.exit_status
    failed = result.stop_reason == "nonfinite_loss"
    if not reports:
        return 1 if failed else 0
    summary = {**result.summary(), "out": str(out)}
    if args.json:
        print(dumps(summary))
    else:
        _print_summary(summary)
    if failed:
        print(f"lattice-samplers train: error: {result.message}", file=sys.stderr)
        return 1
    return 0


def _run_curriculum(args: argparse.Namespace, spec: TrainSpec, out: Path) -> int:
    """Train the ``[curriculum]`` stages, the last into ``out``; print the summary."""
    from lattice_samplers.workflows.train.run import TrainingInterrupted, run_curriculum

    if args.resume or args.init_from is not None:
        print(
            "lattice-samplers train: error: --resume and --init-from are not supported with "
            "[curriculum] (its stages warm-start each other)",
            file=sys.stderr,
        )
        return 2
    try:
        with protected(_claim(out, False)):
            result, reports = run_curriculum(spec, out, progress=show_progress(args))
    except TrainingInterrupted as exc:
        print(f"lattice-samplers train: {exc}", file=sys.stderr)
        return exc.exit_status
    except FloatingPointError as exc:
        print(f"lattice-samplers train: error: {exc}", file=sys.stderr)
        return 1
    if not reports:
        return 0
    summary = {**result.summary(), "out": str(out)}
    if args.json:
        print(dumps(summary))
    else:
        for row in summary["curriculum"]:
            print(
                f"stage L = {row['L']}: {row['n_steps']} steps, {row['train_seconds']:.1f} s, "
                f"held-out acceptance {_fmt(row['final_acceptance'])}"
            )
        _print_summary(summary)
    return 0


def _launch(args: argparse.Namespace, out: Path, processes: int) -> int:
    """Run this command under torchrun with ``processes`` CPU processes; their exit status.

    The processes are DDP ranks on this node (``docs/ddp.md``); rank 0 prints.  Each gets
    ``OMP_NUM_THREADS`` from the thread policy, so threads x processes stay within the cores.
    """
    from lattice_samplers.flows.train.config import thread_policy

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={processes}", "-m", "lattice_samplers.cli", "train"]
    cmd += [args.config, "--out", str(out)]
    for item in args.overrides:
        cmd += ["--set", item]
    if args.json:
        cmd.append("--json")
    if args.resume:
        cmd.append("--resume")
    if args.init_from is not None:
        cmd += ["--init-from", str(args.init_from)]
    cmd.append("--progress" if show_progress(args) else "--no-progress")
    env = {**os.environ, "OMP_NUM_THREADS": str(thread_policy(processes))}
    sys.stdout.flush()
    return subprocess.run(cmd, env=env, check=False).returncode


def _claim(out: Path, resume: bool) -> OutputClaim:
    """Protect ``out`` while training writes it (its files were checked by the session)."""
    adopt = [out / name for name in TRAINING_FILES] if resume else []
    return OutputClaim(folders=(out,), adopt=tuple(adopt), results=(out / "summary.json",))


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def _print_summary(s: dict[str, Any]) -> None:
    print(f"{s['message']} ({s['stop_reason']})")
    print(
        f"held-out acceptance {_fmt(s['final_acceptance'])}, ess_kish {_fmt(s['ess_kish'])}, "
        f"var log w {_fmt(s['var_log_weight'], '.4g')}"
    )
    if s["target_acceptance"] is not None:
        print(
            f"target {s['target_acceptance']:g}: step {_fmt(s['steps_to_target'], 'd')}, "
            f"{_fmt(s['seconds_to_target'], '.1f')} s"
        )
    print(
        f"{s['n_parameters']} parameters, {s['n_steps']} steps, "
        f"{s['train_seconds']:.1f} s training ({s['wall_seconds']:.1f} s wall)"
    )
    print(f"written to {s['out']}")
