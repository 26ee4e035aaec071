"""Training settings, the per-step history columns, and torch's CPU thread count.

This module holds what both the training loop (:mod:`.loop`) and the session
(:mod:`.session`) need to agree on, and nothing that trains or writes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "FREE_ON_RESUME",
    "HISTORY_COLUMNS",
    "TrainSettings",
    "available_cores",
    "busy_cpus",
    "busy_from_times",
    "default_threads",
    "physical_cores",
    "resolve_processes",
    "set_torch_threads",
    "thread_policy",
    "trajectory_changes",
]

#: Columns of the per-step history (see :mod:`lattice_samplers.flows.train`).
HISTORY_COLUMNS = (
    "step",
    "loss",
    "acceptance",
    "ess_kish",
    "var_log_weight",
    "lr",
    "train_s",
    "wall_s",
    "eval_acceptance",
    "eval_ess_kish",
    "eval_var_log_weight",
    "grad_norm",
    "rollbacks",
)

#: Settings that may change on resume: they decide when to stop, what is measured or where it
#: runs, not the sequence of optimizer updates.  Every other setting (lr, scheduler, seed,
#: batch size, ..., and any setting added later) must match the checkpoint.
FREE_ON_RESUME = frozenset(
    {
        "target_acceptance",
        "stop_at_target",
        "time_budget_s",
        "eval_every",
        "eval_batch_size",
        "checkpoint_every",
        "device",
        "num_threads",
        "prior_streams",
        "keep_best",
        "processes",
    }
)


@dataclass(frozen=True)
class TrainSettings:
    """Training settings, the ``[train]`` config section (all keys optional).

    Attributes
    ----------
    n_steps : int
        Optimizer steps in total (default 2000).
    batch_size : int
        Model samples per step (default 1000).
    lr : float
        Initial learning rate (default 5e-3, the top of the range 1e-3..5e-3 in use).
    lr_min : float
        Floor of the cosine and step schedules (default 0).
    scheduler : str
        ``cosine`` (anneal lr -> lr_min over n_steps; default), ``constant``, or ``step``
        (multiply by ``lr_decay_factor`` every ``lr_decay_every`` steps, down to lr_min); see
        :mod:`lattice_samplers.flows.train.schedule`.
    warmup_steps : int
        Linear warm-up: update k (from 0) uses min(1, (k + 1) / warmup_steps) times the
        scheduled rate (default 0: no warm-up).
    lr_decay_every : int
        Period in steps of the ``step`` schedule (default 500).
    lr_decay_factor : float
        Factor per period of the ``step`` schedule, in (0, 1] (default 0.5).
    optimizer : str
        ``adam`` (default) or ``adamw``.
    weight_decay : float
        Weight decay (default 0).
    grad_clip : float or None
        Clip the total gradient norm at this value before each update (default: no
        clipping).  The history's ``grad_norm`` is the norm before clipping.
    max_rollbacks : int
        Divergence guard (:mod:`lattice_samplers.flows.train.guard`): a batch with a NaN/inf
        loss, or with Var(log w) above ``spike_factor`` times the median of the last 20 steps
        (and above 1), makes no update; three such batches in a row roll the model, optimizer
        and schedule back to a snapshot 10-20 steps old and multiply the learning rate by
        ``rollback_lr_factor``.  After ``max_rollbacks`` rollbacks (default 3) the next one
        stops the run with ``stop_reason = "diverged"``.  0 turns the guard off: every batch
        updates and a NaN/inf loss stops the run (``nonfinite_loss``), as before the guard.
    rollback_lr_factor : float
        Learning-rate factor per rollback, in (0, 1) (default 0.5).
    spike_factor : float
        Var(log w) jump that marks a batch as exploding, > 1 (default 10).  Var(log w) per site
        compared with its own running median is the same ratio.
    keep_best : str
        Which flow a finished run returns: ``acceptance`` (default) or ``ess_kish``, the flow
        of the held-out evaluation with the highest value (the final model included; on ties
        the later one), or ``last`` (the final model).  Pauses (``until_step``, signals) keep
        the current model, so that resuming continues bit for bit.
    target_acceptance : float or None
        Held-out acceptance to reach; the first step and second are recorded.
    stop_at_target : bool
        Stop when the target is reached (default True).
    time_budget_s : float or None
        Stop once the cumulative training seconds exceed this.
    eval_every : int
        Held-out evaluation period in steps (default 50); steps_to_target is a multiple.
    eval_batch_size : int
        Size of each held-out batch (default 4096).
    ode_tolerance : float or None
        For a flow with an ODE (cnf): at each held-out evaluation, if the std over 128 fixed
        draws of log q at ode_steps minus log q at 2 ode_steps exceeds this, ode_steps is
        doubled for the rest of training (default 0.1 for the whole lattice: an IMH bias of
        about Cov(O, e) and a safe ESS fraction of about 1 / Var(e)); 0 or None: off.
    max_ode_steps : int
        Cap of those doublings (default 80).
    checkpoint_every : int
        Checkpoint period in steps (default 500; a checkpoint is also written at the end).
    seed : int
        One seed for weights, training noise, held-out noise and metric draws.
    device : str
        ``cpu`` (default) or ``cuda``.
    num_threads : int or None
        torch intra-op CPU threads (default 1).  None: ``OMP_NUM_THREADS`` if set, else the
        physical cores available (under torchrun, shared among the processes of a node).
        One thread is the default because torch's OpenMP threads spin against any other load
        on their cores: measured on a shared 2-core machine (L = 6, the paper's family,
        batch 1000, 25 steps, medians of 3, load average 5-9 from other work), training took
        3.4 s with 1 thread and 43 s with 2; with one more busy-loop process, 5.2 s and 93 s.
        Set it higher only on cores that are yours alone.
    prior_streams : int or None
        Draw each batch in this many equal parts from independent prior streams (default: one
        per process, i.e. 1 without torchrun; on resume, the checkpoint's number).  Must divide
        ``batch_size`` and be a multiple of the number of processes.
    processes : int or str
        CPU processes the ``train`` command starts for data-parallel training (DDP over gloo,
        as under torchrun, see ``docs/ddp.md``): an integer, or ``auto`` for the physical cores
        of the affinity mask.  Default 1 (one process, as before): a run's trajectory depends
        on its process count (the batch is drawn in one prior stream per process), so the
        default keeps existing seeds reproducing existing runs, and on a machine shared with
        other work two processes measured slower than one (docs/performance.md).  Ignored
        under torchrun (which decides) and with ``device = "cuda"``.  Each process runs torch
        on :func:`thread_policy` threads unless ``num_threads`` is set.
    gradient : str
        Gradient estimator of the reverse KL: ``standard`` (differentiate mean(log_q + S);
        default) or ``path`` (the path gradient of arXiv:2207.08219, see
        :mod:`lattice_samplers.flows.path_gradient`; it adds an inverse pass, measured at
        1.25x the cost per step for the dense family and 2.6x for cnf at L = 8; no gradient
        noise left at the optimum).  The logged loss is mean(log_q + S) either way.
    """

    n_steps: int = 2000
    batch_size: int = 1000
    lr: float = 5e-3
    lr_min: float = 0.0
    scheduler: str = "cosine"
    warmup_steps: int = 0
    lr_decay_every: int = 500
    lr_decay_factor: float = 0.5
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    spike_factor: float = 10.0
    keep_best: str = "acceptance"
    target_acceptance: float | None = None
    stop_at_target: bool = True
    time_budget_s: float | None = None
    eval_every: int = 50
    eval_batch_size: int = 4096
    ode_tolerance: float | None = 0.1
    max_ode_steps: int = 80
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = 1
    prior_streams: int | None = None
    gradient: str = "standard"
    processes: int | str = 1

    def __post_init__(self) -> None:
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.lr_min <= self.lr:
            raise ValueError(f"lr_min must be in [0, lr], got {self.lr_min}")
        if self.scheduler not in ("cosine", "constant", "step"):
            raise ValueError(
                f"unknown scheduler {self.scheduler!r} (known: cosine, constant, step)"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr_decay_every < 1:
            raise ValueError(f"lr_decay_every must be >= 1, got {self.lr_decay_every}")
        if not 0 < self.lr_decay_factor <= 1:
            raise ValueError(f"lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        if self.max_rollbacks < 0:
            raise ValueError(f"max_rollbacks must be >= 0, got {self.max_rollbacks}")
        if not 0 < self.rollback_lr_factor < 1:
            raise ValueError(f"rollback_lr_factor must be in (0, 1), got {self.rollback_lr_factor}")
        if not (self.spike_factor > 1 and math.isfinite(self.spike_factor)):
            raise ValueError(f"spike_factor must be a number > 1, got {self.spike_factor}")
        if self.keep_best not in ("acceptance", "ess_kish", "last"):
            raise ValueError(
                f"unknown keep_best {self.keep_best!r} (known: acceptance, ess_kish, last)"
            )
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r} (known: adam, adamw)")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not (
            self.grad_clip > 0 and math.isfinite(self.grad_clip)
        ):
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.target_acceptance is not None and not 0 < self.target_acceptance <= 1:
            raise ValueError(f"target_acceptance must be in (0, 1], got {self.target_acceptance}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.eval_batch_size < 2:
            raise ValueError(f"eval_batch_size must be >= 2, got {self.eval_batch_size}")
        if self.ode_tolerance is not None and not (
            self.ode_tolerance >= 0 and math.isfinite(self.ode_tolerance)
        ):
            raise ValueError(f"ode_tolerance must be >= 0 (0 = off), got {self.ode_tolerance}")
        if self.max_ode_steps < 1:
            raise ValueError(f"max_ode_steps must be >= 1, got {self.max_ode_steps}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.prior_streams is not None and self.prior_streams < 1:
            raise ValueError(f"prior_streams must be >= 1, got {self.prior_streams}")
        if self.processes != "auto" and (
            isinstance(self.processes, bool)
            or not isinstance(self.processes, int)
            or self.processes < 1
        ):
            raise ValueError(f"processes must be 'auto' or an integer >= 1, got {self.processes!r}")
        if self.gradient not in ("standard", "path"):
            raise ValueError(f"unknown gradient {self.gradient!r} (known: standard, path)")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a string such as cpu or cuda, got {self.device!r}")


def physical_cores() -> int:
    """Physical CPU cores available to this process (falls back to logical CPUs).

    Counts distinct core ids among the CPUs in the affinity mask, from sysfs; hyperthread
    siblings would only contend for the same FPUs in dense linear algebra.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for c in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        try:
            cores.add(
                (
                    (base / "physical_package_id").read_text().strip(),
                    (base / "core_id").read_text().strip(),
                )
            )
        except OSError:
            return len(cpus) or 1
    return max(1, len(cores))


def resolve_processes(settings: TrainSettings) -> int:
    """How many training processes ``settings.processes`` asks for (1 on CUDA)."""
    if settings.device != "cpu":
        return 1
    return physical_cores() if settings.processes == "auto" else int(settings.processes)


def busy_cpus(interval_s: float = 0.05) -> float:
    """CPUs of this process's affinity mask kept busy by other work, averaged over ``interval_s``.

    Reads the per-CPU counters of ``/proc/stat`` twice (Linux; elsewhere 0).  This process
    sleeps in between, so what is busy is other processes' work, niced or not: a niced
    process still takes its core whenever ours yields it, and torch's OpenMP threads wait at
    every barrier for the slowest thread.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
        before = _cpu_times(cpus)
        time.sleep(interval_s)
        after = _cpu_times(cpus)
    except (AttributeError, OSError, ValueError):
        return 0.0
    return busy_from_times(before, after)


def _cpu_times(cpus: list[int]) -> dict[int, tuple[int, int]]:
    """(total, idle) jiffies per CPU in ``cpus`` from ``/proc/stat`` (idle counts iowait)."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            c = int(name[3:])
            if c in cpus:
                ticks = [int(f) for f in fields[:8]]
                out[c] = (sum(ticks), ticks[3] + ticks[4])
    return out


def busy_from_times(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> float:
    """Busy CPUs (a sum of busy fractions) between two ``{cpu: (total, idle)}`` readings."""
    busy = 0.0
    for c, (total0, idle0) in before.items():
        total1, idle1 = after.get(c, (total0, idle0))
        dt = total1 - total0
        if dt > 0:
            busy += 1.0 - (idle1 - idle0) / dt
    return busy


def available_cores(busy: float | None = None) -> int:
    """Physical cores of the affinity mask not taken by other work (at least 1).

    Parameters
    ----------
    busy : float, optional
        Busy CPUs (default: measured by :func:`busy_cpus`).  A CPU counts as taken from
        0.5 busy on: half a core of competing work is enough to stall an OpenMP barrier.
    """
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:
        logical = os.cpu_count() or 1
    busy = busy_cpus() if busy is None else busy
    physical = physical_cores()
    # busy logical CPUs, in physical cores (hyperthread siblings share one)
    taken = busy * physical / max(1, logical)
    return max(1, physical - math.floor(taken + 0.5))


def thread_policy(processes: int = 1, busy: float | None = None) -> int:
    """Threads per process for torch such that threads x processes <= available cores (min 1).

    Parameters
    ----------
    processes : int
        Processes that will each run torch on this node (training processes or proposal
        workers).
    busy : float, optional
        Busy CPUs from other work (default: measured now, see :func:`available_cores`).

    Notes
    -----
    Measured on this 2-core machine: an L = 8 flow proposal took 98 us with one thread and
    931-12,300 us with two threads beside one other busy process; one thread too few costs
    at most a factor 2, one too many a factor 10-100.  So the policy rounds down.  With more
    processes than cores each still gets one thread (the caller chose to oversubscribe).
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    return max(1, available_cores(busy) // processes)


def default_threads(processes: int = 1) -> int:
    """``OMP_NUM_THREADS`` when set (by a scan worker, torchrun or the user), else the policy.

    A process that was told to stay single-threaded must not start a thread per core,
    since oversubscribed OpenMP threads spin against each other (measured here: 30x slower
    training with two 2-thread processes on 2 cores).  Otherwise :func:`thread_policy` for
    ``processes`` processes on this node.
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else thread_policy(processes)


def set_torch_threads(num_threads: int | None = None, processes: int = 1) -> int:
    """Set torch's intra-op CPU threads (default :func:`default_threads`); return the count."""
    n = num_threads or default_threads(processes)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def trajectory_changes(stored: dict[str, Any], config: TrainSettings) -> list[str]:
    """Settings of ``config`` that differ from a checkpoint's and would change the trajectory.

    Parameters
    ----------
    stored : dict
        The checkpoint's ``train_config`` record (``asdict`` of the config it was trained with).
    config : TrainSettings
        The settings asked for on resume.

    Returns
    -------
    list of str
        ``"name: old -> new"`` for each changed setting, in field order.  ``n_steps`` counts
        only under the cosine schedule (which spans ``n_steps``); under the constant and step
        schedules a run may be extended.  Keys missing from an older record are not compared.
    """
    out = []
    for key, new in asdict(config).items():
        if key in FREE_ON_RESUME or key not in stored:
            continue
        if key == "n_steps" and config.scheduler != "cosine":
            continue
        old = stored[key]
        if isinstance(old, list):
            old = tuple(old)
        if isinstance(new, list):
            new = tuple(new)
        if old != new:
            out.append(f"{key}: {old!r} -> {new!r}")
    return out
