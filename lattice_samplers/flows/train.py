"""Reverse-KL training of flows, with honest metrics, stop rules, checkpoints and resume.

The loss is the reverse Kullback-Leibler divergence up to the constant log Z,

    loss = mean over a model batch of (log_q(phi) + S(phi)) = KL(q || p) - log Z,

minimized with Adam and a cosine-annealed learning rate by default.  Every step logs the loss
and, from float64 log weights log_w = -S - log_q of the same batch, the acceptance of one
independence-Metropolis pass over the batch, ess_kish = (sum w)^2 / (n sum w^2) and the
variance of log w.  Every ``eval_every`` steps the same quantities are measured on a held-out
batch of fixed size drawn from its own generator: the stop rule on ``target_acceptance`` uses
the held-out value only.

History rows: row ``step = k`` holds the loss and batch metrics of the batch used for update k
(parameters before that update), the learning rate used, and the cumulative training seconds
after it; the ``eval_*`` columns (NaN on other rows) describe the model after update k.

Time: ``train_s`` counts sampling, loss, backward, update and batch metrics; ``wall_s`` also
counts held-out evaluations and checkpoint writing.  Both are cumulative over resumes;
``time_budget_s`` and ``seconds_to_target`` use ``train_s``.

Several processes (torch DistributedDataParallel under torchrun, see
:mod:`lattice_samplers.flows.distributed`): each batch is drawn in ``prior_streams`` equal
parts from independent prior streams (default: one per process), each process drawing the parts
of its own streams; gradients are averaged, the batch metrics are computed over the combined
batch, rank 0 evaluates, keeps the clock and writes; the history and results have the same
format as in one process.  The samples depend on ``prior_streams``, not on how many processes
share the streams, so one process with ``prior_streams = N`` reproduces a run on N processes
(up to the order of floating-point sums), and a checkpoint resumes on any number of processes
that divides its number of streams.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lattice_samplers.flows.action import TorchAction
from lattice_samplers.flows.checkpoint import (
    CheckpointError,
    check_compatible,
    read_checkpoint,
    save_checkpoint,
)
from lattice_samplers.flows.distributed import (
    DistContext,
    all_gather_objects,
    all_gather_rows,
    broadcast_floats,
    on_main,
    wrap_model,
)
from lattice_samplers.flows.distributed import current as current_group
from lattice_samplers.flows.model import Flow, FlowConfig, check_device, flow_from_arch
from lattice_samplers.flows.path_gradient import path_gradient_loss
from lattice_samplers.theory import Phi4Theory

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.csv"
SUMMARY_NAME = "summary.json"

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
)


@dataclass(frozen=True)
class TrainConfig:
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
        Floor of the cosine schedule (default 0).
    scheduler : str
        ``cosine`` (anneal lr -> lr_min over n_steps; default) or ``constant``.
    optimizer : str
        ``adam`` (default) or ``adamw``.
    weight_decay : float
        Weight decay (default 0).
    grad_clip : float or None
        Clip the gradient norm at this value (default: no clipping).
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
    checkpoint_every : int
        Checkpoint period in steps (default 500; a checkpoint is also written at the end).
    seed : int
        One seed for weights, training noise, held-out noise and metric draws.
    device : str
        ``cpu`` (default) or ``cuda``.
    num_threads : int or None
        torch CPU threads (default: ``OMP_NUM_THREADS`` if set, else the physical cores
        available; under torchrun the physical cores shared among the processes of a node).
    prior_streams : int or None
        Draw each batch in this many equal parts from independent prior streams (default: one
        per process, i.e. 1 without torchrun; on resume, the checkpoint's number).  Must divide
        ``batch_size`` and be a multiple of the number of processes.
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
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    target_acceptance: float | None = None
    stop_at_target: bool = True
    time_budget_s: float | None = None
    eval_every: int = 50
    eval_batch_size: int = 4096
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = None
    prior_streams: int | None = None
    gradient: str = "standard"

    def __post_init__(self) -> None:
        if self.n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {self.n_steps}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.lr_min <= self.lr:
            raise ValueError(f"lr_min must be in [0, lr], got {self.lr_min}")
        if self.scheduler not in ("cosine", "constant"):
            raise ValueError(f"unknown scheduler {self.scheduler!r} (known: cosine, constant)")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r} (known: adam, adamw)")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.target_acceptance is not None and not 0 < self.target_acceptance <= 1:
            raise ValueError(f"target_acceptance must be in (0, 1], got {self.target_acceptance}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.eval_batch_size < 2:
            raise ValueError(f"eval_batch_size must be >= 2, got {self.eval_batch_size}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.prior_streams is not None and self.prior_streams < 1:
            raise ValueError(f"prior_streams must be >= 1, got {self.prior_streams}")
        if self.gradient not in ("standard", "path"):
            raise ValueError(f"unknown gradient {self.gradient!r} (known: standard, path)")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a string such as cpu or cuda, got {self.device!r}")


@dataclass
class TrainResult:
    """What a training run produced (also the ``--json`` summary, via :meth:`summary`).

    Attributes
    ----------
    history : dict of str to numpy.ndarray
        Per-step columns, see :data:`HISTORY_COLUMNS` and the module notes.
    n_steps : int
        Optimizer steps done in total (over resumes).
    train_seconds, wall_seconds : float
        Cumulative training and total seconds.
    steps_to_target, seconds_to_target : int or float or None
        First step (and training seconds) at which the held-out acceptance reached the
        target; None if it was not reached or no target was set.
    final_acceptance, final_ess_kish, final_var_log_weight : float
        Held-out metrics of the final model (NaN if never evaluated).
    n_parameters : int
        Trainable scalars of the flow.
    stop_reason : str
        ``n_steps``, ``target``, ``time_budget``, ``until_step`` or ``nonfinite_loss``.
    message : str
        Human-readable explanation of the stop (the error text for ``nonfinite_loss``).
    checkpoint : Path or None
        The checkpoint file, if an output folder was given.
    """

    history: dict[str, np.ndarray]
    n_steps: int
    train_seconds: float
    wall_seconds: float
    steps_to_target: int | None
    seconds_to_target: float | None
    final_acceptance: float
    final_ess_kish: float
    final_var_log_weight: float
    n_parameters: int
    stop_reason: str
    message: str = ""
    checkpoint: Path | None = None
    target_acceptance: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no per-step history)."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        losses = self.history["loss"]
        return {
            "final_acceptance": num(self.final_acceptance),
            "ess_kish": num(self.final_ess_kish),
            "var_log_weight": num(self.final_var_log_weight),
            "steps_to_target": self.steps_to_target,
            "seconds_to_target": num(self.seconds_to_target),
            "target_acceptance": self.target_acceptance,
            "n_parameters": self.n_parameters,
            "n_steps": self.n_steps,
            "train_seconds": self.train_seconds,
            "wall_seconds": self.wall_seconds,
            "final_loss": num(float(losses[-1])) if len(losses) else None,
            "stop_reason": self.stop_reason,
            "message": self.message,
            "checkpoint": str(self.checkpoint) if self.checkpoint is not None else None,
            **self.extra,
        }


# ---------------------------------------------------------------------- metrics
def imh_acceptance(log_w: np.ndarray, rng: np.random.Generator) -> float:
    """Acceptance rate of one independence-Metropolis pass over proposals with log weights.

    The chain starts at proposal 0 and visits proposals 1..n-1 in order; proposal i is
    accepted if ``log(u) < log_w[i] - log_w[current]`` (u uniform on (0, 1)), i.e. with
    probability min(1, w_i / w_current).  A non-finite log weight is a rejection.  Returns
    accepted / (n - 1).
    """
    log_w = np.asarray(log_w, dtype=np.float64)
    n = log_w.shape[0]
    if n < 2:
        return float("nan")
    log_u = np.log(rng.random(n - 1)).tolist()
    lw = log_w.tolist()
    finite = np.isfinite(log_w).tolist()
    cur = lw[0] if finite[0] else -math.inf
    accepted = 0
    for i in range(1, n):
        if finite[i] and log_u[i - 1] < lw[i] - cur:
            cur = lw[i]
            accepted += 1
    return accepted / (n - 1)


def ess_kish(log_w: np.ndarray) -> float:
    """Kish effective sample size per sample, (sum w)^2 / (n sum w^2), in [0, 1]."""
    log_w = np.asarray(log_w, dtype=np.float64)
    finite = np.isfinite(log_w)
    if not finite.any():
        return 0.0
    w = np.where(finite, np.exp(log_w - log_w[finite].max()), 0.0)
    return float(w.sum() ** 2 / (log_w.shape[0] * (w * w).sum()))


def weight_metrics(log_w: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """(acceptance, ess_kish, variance of the finite log weights) of one batch."""
    finite = log_w[np.isfinite(log_w)]
    var = float(finite.var()) if finite.size > 1 else float("nan")
    return imh_acceptance(log_w, rng), ess_kish(log_w), var


# ---------------------------------------------------------------------- threads
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


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set (by a scan worker, torchrun or the user), else the physical
    cores: a process that was told to stay single-threaded must not start a thread per core,
    since oversubscribed OpenMP threads spin against each other (measured here: 30x slower
    training with two 2-thread processes on 2 cores).
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else physical_cores()


def set_torch_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads (default :func:`default_threads`); return the count."""
    n = num_threads or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# ---------------------------------------------------------------------- the trainer
def _seeds(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds for the run's persistent random streams, from one seed."""
    names = ("init", "train_noise", "train_metrics")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, np.uint64)[0] >> 1) for n, c in zip(names, children)}


def _stream_seeds(seed: int, n_streams: int) -> list[int]:
    """Seeds of the prior-noise streams: the ``train_noise`` seed itself for one stream, else
    ``n_streams`` children spawned from its SeedSequence.
    """
    if n_streams == 1:
        return [_seeds(seed)["train_noise"]]
    parent = np.random.SeedSequence(seed).spawn(3)[1]  # the train_noise child of _seeds
    return [int(c.generate_state(1, np.uint64)[0] >> 1) for c in parent.spawn(n_streams)]


def _check_streams(cfg: TrainConfig, comm: DistContext | None) -> int:
    """The number of prior streams; a one-line ValueError if it cannot split the work."""
    world = comm.world_size if comm is not None else 1
    n = cfg.prior_streams or world
    if n % world:
        raise ValueError(f"prior_streams = {n} is not a multiple of the {world} processes")
    if cfg.batch_size % n:
        raise ValueError(
            f"batch_size {cfg.batch_size} is not divisible by the {n} prior streams "
            "(train.prior_streams, default: one per process)"
        )
    return n


def _saved_streams(train_state: dict[str, Any]) -> int:
    """Number of prior streams of a saved trainer state."""
    return len(train_state["rng"].get("train_noise_streams", [None]))


def _eval_seeds(seed: int, step: int) -> tuple[int, int]:
    """Seeds of the held-out batch at ``step``: (torch noise, NumPy accept/reject uniforms).

    Derived from (seed, step) rather than drawn from a running stream, so that an extra
    evaluation (at a pause, at a time-budget stop) never shifts later held-out batches: a
    paused and resumed run stays bit-identical to a straight one.
    """
    ss = np.random.SeedSequence([seed, 0xE7A1, step])
    a, b = ss.generate_state(2, np.uint64)
    return int(a >> 1), int(b >> 1)


def _cosine(lr: float, lr_min: float, n_steps: int):
    ratio = lr_min / lr

    def factor(step: int) -> float:
        frac = min(step, n_steps) / max(n_steps, 1)
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return factor


def _constant(step: int) -> float:
    return 1.0


class Trainer:
    """Reverse-KL training of one flow for one theory (see the module notes).

    Most users call :func:`train_flow`; the class exists for step-level control.

    Parameters
    ----------
    theory : Phi4Theory
        Target theory.
    flow_config : FlowConfig
        Architecture.
    train_config : TrainConfig
        Settings.
    comm : DistContext, optional
        The process group to train in (DistributedDataParallel; process r draws from the r-th
        run of ``prior_streams / world_size`` consecutive streams).  Then :meth:`train_step`
        and :meth:`state_dict` are collective: every process must call them together.

    Raises
    ------
    ValueError
        If the prior streams cannot split the batch or the processes evenly.
    """

    def __init__(
        self,
        theory: Phi4Theory,
        flow_config: FlowConfig,
        train_config: TrainConfig,
        comm: DistContext | None = None,
    ) -> None:
        self.theory = theory
        self.flow_config = flow_config
        self.cfg = train_config
        self.comm = comm
        self.n_streams = _check_streams(train_config, comm)
        self.stream_batch = train_config.batch_size // self.n_streams
        # the streams this process draws from; rank order is stream order in the gathers
        k = self.n_streams // (comm.world_size if comm is not None else 1)
        first = comm.rank * k if comm is not None else 0
        self.streams = list(range(first, first + k))
        self.device = comm.device if comm is not None else check_device(train_config.device)
        self.arch = flow_config.resolve(theory)
        seeds = _seeds(train_config.seed)
        self.flow: Flow = flow_from_arch(self.arch, device=str(self.device), seed=seeds["init"])
        # the module whose forward is differentiated: DDP's wrapper averages the gradients
        self.model: torch.nn.Module = wrap_model(self.flow, comm) if comm else self.flow
        self.action = TorchAction(theory)
        self.optimizer = self._make_optimizer()
        factor = (
            _cosine(train_config.lr, train_config.lr_min, train_config.n_steps)
            if train_config.scheduler == "cosine"
            else _constant
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        stream_seeds = _stream_seeds(train_config.seed, self.n_streams)
        self.train_gens = [
            torch.Generator(device=self.device).manual_seed(stream_seeds[r]) for r in self.streams
        ]
        self.train_rng = np.random.default_rng(seeds["train_metrics"])
        self.step = 0
        self.train_s = 0.0
        self.wall_s = 0.0
        self.history: dict[str, list[float]] = {c: [] for c in HISTORY_COLUMNS}

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cls = torch.optim.Adam if self.cfg.optimizer == "adam" else torch.optim.AdamW
        return cls(self.flow.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (except the model weights).

        With several prior streams, ``rng.train_noise_streams`` holds every stream's state
        (gathered from all processes: collective under a process group).
        """
        states = [g.get_state() for g in self.train_gens]
        if self.comm is not None:
            states = [s for part in all_gather_objects(states, self.comm) for s in part]
        noise = (
            {"train_noise": states[0]} if self.n_streams == 1 else {"train_noise_streams": states}
        )
        return {
            "step": self.step,
            "train_s": self.train_s,
            "wall_s": self.wall_s,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                **noise,
                "train_metrics": self.train_rng.bit_generator.state,
            },
            "history": {k: list(v) for k, v in self.history.items()},
            "train_config": asdict(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any], model: dict[str, torch.Tensor]) -> None:
        """Restore weights and trainer state written by :meth:`state_dict`.

        Raises
        ------
        CheckpointError
            If the state was written with another number of prior streams (processes).
        """
        rng = state["rng"]
        states = rng.get("train_noise_streams", [rng.get("train_noise")])
        if len(states) != self.n_streams:
            raise CheckpointError(
                f"the checkpoint was trained with prior_streams = {len(states)}, "
                f"not {self.n_streams}"
            )
        self.flow.load_state_dict(model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for r, gen in zip(self.streams, self.train_gens):
            gen.set_state(states[r])
        self.train_rng.bit_generator.state = state["rng"]["train_metrics"]
        self.step = int(state["step"])
        self.train_s = float(state["train_s"])
        self.wall_s = float(state["wall_s"])
        self.history = {c: list(state["history"].get(c, [])) for c in HISTORY_COLUMNS}

    # ------------------------------------------------------------------ one step
    def log_weights(self, phi: torch.Tensor, log_q: torch.Tensor) -> np.ndarray:
        """float64 log weights -S(phi) - log_q(phi) as a NumPy array."""
        s64 = self.action.float64(phi)
        return (-(s64 + log_q.detach().double())).cpu().numpy()

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns the row (without eval columns).

        Raises
        ------
        FloatingPointError
            If the loss is NaN or infinite (no update is made).
        """
        t0 = time.perf_counter()
        z = [self.flow.prior_noise(self.stream_batch, gen) for gen in self.train_gens]
        z = z[0] if len(z) == 1 else torch.cat(z)
        if self.cfg.gradient == "path":
            # backward() of the surrogate gives the path gradient; its value is not the KL
            loss, log_q, s, phi = path_gradient_loss(self.flow, self.action, z=z, model=self.model)
            kl = (log_q + s).mean().detach()
        else:
            phi, log_det = self.model(z)
            log_q = self.flow.log_prior(z) - log_det
            loss = (log_q + self.action(phi)).mean()
            kl = loss.detach()
        log_w = self.log_weights(phi, log_q)
        if self.comm is None:
            loss_value = float(kl)
        else:
            # one gather: every process sees the combined batch and the loss of every part
            local = torch.cat([torch.from_numpy(log_w), kl.double().cpu().view(1)])
            rows = all_gather_rows(local, self.comm).cpu()
            loss_value = float(rows[:, -1].mean())  # equal parts: the combined batch's mean
            log_w = rows[:, :-1].reshape(-1).numpy()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.flow.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        acc, ess, var = weight_metrics(log_w, self.train_rng)
        self.step += 1
        self.train_s += time.perf_counter() - t0
        return {
            "step": self.step,
            "loss": loss_value,
            "acceptance": acc,
            "ess_kish": ess,
            "var_log_weight": var,
            "lr": lr,
            "train_s": self.train_s,
        }

    def evaluate(self, n: int | None = None) -> tuple[float, float, float]:
        """(acceptance, ess_kish, var log w) on a held-out batch of the current model.

        The batch (``eval_batch_size`` samples) and its accept/reject uniforms come from
        generators seeded by (seed, step), independent of the training streams.
        """
        n = n or self.cfg.eval_batch_size
        noise_seed, metric_seed = _eval_seeds(self.cfg.seed, self.step)
        gen = torch.Generator(device=self.device).manual_seed(noise_seed)
        with torch.inference_mode():
            log_w_parts = []
            bs = self.flow.default_batch_size()
            for start in range(0, n, bs):
                phi, log_q = self.flow.sample_with_log_q(min(bs, n - start), gen)
                log_w_parts.append(self.log_weights(phi, log_q))
        return weight_metrics(np.concatenate(log_w_parts), np.random.default_rng(metric_seed))

    def evaluate_shared(self) -> tuple[float, float, float]:
        """:meth:`evaluate` on rank 0, its result on every process (collective)."""
        if self.comm is None:
            return self.evaluate()
        nan = float("nan")
        ev = self.evaluate() if self.comm.is_main else (nan, nan, nan)
        acc, ess, var = broadcast_floats(ev, self.comm)
        return acc, ess, var

    def sync_clock(self) -> None:
        """Adopt rank 0's training and wall seconds, so time rules agree (collective)."""
        if self.comm is not None:
            self.train_s, self.wall_s = broadcast_floats([self.train_s, self.wall_s], self.comm)

    # ------------------------------------------------------------------ derived results
    def steps_to_target(self) -> tuple[int | None, float | None]:
        """First evaluated step whose held-out acceptance reached the target, and its seconds."""
        target = self.cfg.target_acceptance
        if target is None:
            return None, None
        for step, acc, ts in zip(
            self.history["step"], self.history["eval_acceptance"], self.history["train_s"]
        ):
            if math.isfinite(acc) and acc >= target:
                return int(step), float(ts)
        return None, None

    def final_eval(self) -> tuple[float, float, float]:
        """The last held-out metrics in the history (NaN if none)."""
        for i in range(len(self.history["step"]) - 1, -1, -1):
            if math.isfinite(self.history["eval_acceptance"][i]):
                return (
                    self.history["eval_acceptance"][i],
                    self.history["eval_ess_kish"][i],
                    self.history["eval_var_log_weight"][i],
                )
        nan = float("nan")
        return nan, nan, nan

    def history_arrays(self) -> dict[str, np.ndarray]:
        """The history as NumPy arrays (``step`` as int64)."""
        out = {k: np.asarray(v, dtype=np.float64) for k, v in self.history.items()}
        out["step"] = out["step"].astype(np.int64)
        return out


def write_history_csv(history: dict[str, Any], path: str | Path) -> None:
    """Write the per-step history as CSV (one row per step, NaN for missing eval columns)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HISTORY_COLUMNS)
        for row in zip(*(history[c] for c in HISTORY_COLUMNS)):
            w.writerow([int(row[0]), *(repr(float(v)) for v in row[1:])])
    os.replace(tmp, path)


def read_history_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read a history CSV written by :func:`write_history_csv`."""
    with Path(path).open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols = {h: np.array([float(r[i]) for r in body]) for i, h in enumerate(header)}
    cols["step"] = cols["step"].astype(np.int64)
    return cols


def check_output_dir(
    out_dir: str | Path,
    theory: Phi4Theory,
    flow_config: FlowConfig,
    resume: bool,
) -> dict[str, Any] | None:
    """Validate an output folder before anything is written; return the checkpoint to resume.

    Raises
    ------
    CheckpointError
        If the folder holds a checkpoint and ``resume`` is False (nothing is overwritten), if
        ``resume`` is True and there is no checkpoint, or if the checkpoint belongs to another
        lattice size, theory or architecture.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"output path {out_dir} exists and is not a folder")
    ckpt = out_dir / CHECKPOINT_NAME
    if not ckpt.exists():
        if resume:
            raise CheckpointError(f"nothing to resume: no flow checkpoint at {ckpt}")
        return None
    data = read_checkpoint(ckpt)
    arch = flow_config.resolve(theory)
    if not resume:
        try:
            check_compatible(data, theory, arch, where=f"existing checkpoint {ckpt}")
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; refusing to overwrite it") from None
        raise CheckpointError(
            f"{ckpt} already exists; resume it (--resume) or choose another output folder"
        )
    check_compatible(data, theory, arch, where=f"checkpoint {ckpt}")
    if data.get("train") is None:
        raise CheckpointError(f"{ckpt} holds no trainer state to resume")
    return data


def train_flow(
    theory: Phi4Theory,
    flow_config: FlowConfig | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    until_step: int | None = None,
    distributed: bool | None = None,
) -> tuple[Flow, TrainResult]:
    """Train a flow for ``theory`` by reverse KL; return the model and a :class:`TrainResult`.

    Parameters
    ----------
    theory : Phi4Theory
        Target theory.
    flow_config : FlowConfig, optional
        Architecture (default: the paper's family sized for the lattice).
    train_config : TrainConfig, optional
        Settings (defaults of :class:`TrainConfig`).
    out_dir : str or Path, optional
        Folder for ``checkpoint.pt``, ``history.csv`` and ``summary.json``, written every
        ``checkpoint_every`` steps and at the end.  None: nothing is written.
    progress : bool
        Show a tqdm bar with loss and acceptance (on stderr).
    resume : bool
        Continue from the checkpoint in ``out_dir`` (required to exist and to match).
    until_step : int, optional
        Stop after this step without changing the schedule (for training in pieces; the
        cosine schedule still spans ``n_steps``).
    distributed : bool, optional
        Train in the initialized process group, with DistributedDataParallel (see
        :mod:`lattice_samplers.flows.distributed`).  None (default): if one of two or more
        processes is initialized (``distributed.session`` under torchrun).  Every process
        calls ``train_flow`` with the same arguments; rank 0 alone writes ``out_dir`` and
        shows progress, and every process returns the same model and history.

    Notes
    -----
    Sets torch's intra-op CPU threads to ``train_config.num_threads`` (default: the physical
    cores available, shared among the processes of a node), a process-wide setting.

    Under a process group, Ctrl-C does not write a checkpoint (that would need the other
    processes); the last periodic checkpoint is kept.

    Returns
    -------
    (Flow, TrainResult)
        After a NaN/inf loss the flow holds the weights of the last checkpoint, if any, and
        ``stop_reason`` is ``"nonfinite_loss"`` with the explanation in ``message``.

    Raises
    ------
    ValueError
        Bad settings, odd L with checkerboard layers, unavailable device, or an output folder
        that holds a checkpoint (without ``resume``) or a mismatched one (nothing is written);
        prior streams that do not split the batch or the processes evenly.
    """
    from tqdm.auto import tqdm

    flow_config = flow_config or FlowConfig()
    cfg = train_config or TrainConfig()
    flow_config.resolve(theory)  # fail early on odd L etc.
    comm = current_group(cfg.device) if distributed is not False else None
    if distributed and comm is None:
        raise ValueError("distributed training needs an initialized group of >= 2 processes")
    main = comm is None or comm.is_main
    resume_data = None
    if out_dir is not None:
        # rank 0 reads the folder (it need not be shared) and hands the result to all
        resume_data = on_main(lambda: check_output_dir(out_dir, theory, flow_config, resume), comm)
    elif resume:
        raise ValueError("resume needs an output folder holding a checkpoint")
    if resume_data is not None and cfg.prior_streams is None:
        saved = _saved_streams(resume_data["train"])
        if saved != (comm.world_size if comm is not None else 1):
            cfg = replace(cfg, prior_streams=saved)  # continue the run's own streams
    _check_streams(cfg, comm)
    n_threads = cfg.num_threads
    if n_threads is None and comm is not None:
        n_threads = max(1, physical_cores() // comm.local_world_size)
    set_torch_threads(n_threads)

    trainer = Trainer(theory, flow_config, cfg, comm=comm)
    if resume_data is not None:
        trainer.load_state_dict(resume_data["train"], resume_data["model"])
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    last_ckpt_step = trainer.step if resume_data is not None else None

    def save() -> None:
        nonlocal last_ckpt_step
        if ckpt_path is None:
            return
        t0 = time.perf_counter()
        state = trainer.state_dict()  # collective under a process group
        if main:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(ckpt_path, trainer.flow, theory, flow_config, state)
            write_history_csv(trainer.history, ckpt_path.parent / HISTORY_NAME)
        last_ckpt_step = trainer.step
        trainer.wall_s += time.perf_counter() - t0

    stop_reason = "n_steps"
    message = ""
    start = trainer.step
    end = cfg.n_steps if until_step is None else min(cfg.n_steps, until_step)
    bar = tqdm(
        total=cfg.n_steps,
        initial=start,
        desc=f"train L={theory.L}",
        disable=not (progress and main),
        dynamic_ncols=True,
        mininterval=0.5,
    )
    eval_acc = float("nan")
    try:
        if cfg.stop_at_target and trainer.steps_to_target()[0] is not None:
            stop_reason, end = "target", trainer.step
        while trainer.step < end:
            if cfg.time_budget_s is not None and trainer.train_s >= cfg.time_budget_s:
                stop_reason = "time_budget"
                break
            t_wall = time.perf_counter()
            try:
                row = trainer.train_step()
            except FloatingPointError as exc:
                stop_reason = "nonfinite_loss"
                where = (
                    f"the last good checkpoint (step {last_ckpt_step}) is kept in {ckpt_path}"
                    if last_ckpt_step is not None
                    else "no checkpoint was written"
                )
                message = (
                    f"training stopped at step {trainer.step + 1}: {exc} "
                    f"(try a smaller lr or grad_clip); {where}"
                )
                break
            k = trainer.step
            is_eval = k % cfg.eval_every == 0 or k == end
            ev = trainer.evaluate_shared() if is_eval else (math.nan, math.nan, math.nan)
            eval_acc = ev[0] if is_eval else eval_acc
            trainer.wall_s += time.perf_counter() - t_wall
            trainer.sync_clock()
            row.update(
                train_s=trainer.train_s,
                wall_s=trainer.wall_s,
                eval_acceptance=ev[0],
                eval_ess_kish=ev[1],
                eval_var_log_weight=ev[2],
            )
            for c in HISTORY_COLUMNS:
                trainer.history[c].append(float(row[c]))
            bar.update(1)
            if progress and (k % 10 == 0 or is_eval):
                bar.set_postfix(
                    loss=f"{row['loss']:.3f}",
                    acc=f"{row['acceptance']:.3f}",
                    eval_acc=f"{eval_acc:.3f}",
                )
            reached = (
                is_eval and cfg.target_acceptance is not None and ev[0] >= cfg.target_acceptance
            )
            if k % cfg.checkpoint_every == 0 and not (reached and cfg.stop_at_target):
                save()
            if reached and cfg.stop_at_target:
                stop_reason = "target"
                break
        else:
            if until_step is not None and trainer.step < cfg.n_steps:
                stop_reason = "until_step"
    except KeyboardInterrupt:
        # keep the finished steps: checkpoint them, then let the caller report the interrupt
        bar.close()
        if comm is None:
            save()
        raise
    finally:
        bar.close()

    if stop_reason != "nonfinite_loss":
        if trainer.history["step"] and not math.isfinite(trainer.history["eval_acceptance"][-1]):
            # the final model is always measured on a held-out batch
            ev = trainer.evaluate_shared()
            i = len(trainer.history["step"]) - 1
            trainer.history["eval_acceptance"][i] = ev[0]
            trainer.history["eval_ess_kish"][i] = ev[1]
            trainer.history["eval_var_log_weight"][i] = ev[2]
        if last_ckpt_step != trainer.step or resume_data is None:
            save()
    elif ckpt_path is not None and last_ckpt_step is not None:
        trainer.flow.load_state_dict(on_main(lambda: read_checkpoint(ckpt_path)["model"], comm))

    steps_t, secs_t = trainer.steps_to_target()
    acc, ess, var = trainer.final_eval()
    if not message:
        message = {
            "n_steps": f"finished {trainer.step} steps",
            "target": f"held-out acceptance reached {cfg.target_acceptance} at step {steps_t}",
            "time_budget": f"time budget of {cfg.time_budget_s} s used after {trainer.step} steps",
            "until_step": f"paused at step {trainer.step} of {cfg.n_steps}",
        }[stop_reason]
    result = TrainResult(
        history=trainer.history_arrays(),
        n_steps=trainer.step,
        train_seconds=trainer.train_s,
        wall_seconds=trainer.wall_s,
        steps_to_target=steps_t,
        seconds_to_target=secs_t,
        final_acceptance=acc,
        final_ess_kish=ess,
        final_var_log_weight=var,
        n_parameters=trainer.flow.n_parameters,
        stop_reason=stop_reason,
        message=message,
        checkpoint=ckpt_path if ckpt_path is not None and last_ckpt_step is not None else None,
        target_acceptance=cfg.target_acceptance,
        extra={
            "device": str(trainer.device),
            "dtype": flow_config.dtype,
            "torch_threads": torch.get_num_threads(),
            "world_size": comm.world_size if comm is not None else 1,
            "prior_streams": trainer.n_streams,
        },
    )
    if main and result.checkpoint is not None:
        summary = {
            **result.summary(),
            "theory": theory.to_dict(),
            "flow": trainer.arch,
            "train": asdict(cfg),
        }
        tmp = Path(out_dir) / (SUMMARY_NAME + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, Path(out_dir) / SUMMARY_NAME)
    trainer.flow.eval()
    return trainer.flow, result
