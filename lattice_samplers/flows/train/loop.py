"""The reverse-KL training loop: takes a flow and an action, returns the flow and its history.

The loss is the reverse Kullback-Leibler divergence up to the constant log Z,

    loss = mean over a model batch of (log_q(phi) + S(phi)) = KL(q || p) - log Z,

formed in one place, :func:`reverse_kl_loss`, and minimized with Adam and a cosine-annealed
learning rate by default.  Every step logs the loss and, from float64 log weights
log_w = -S - log_q of the same batch, the acceptance of one independence-Metropolis pass over
the batch (the numba kernel :func:`lattice_samplers.kernels.imh.imh_pass`), ``ess_kish`` and
the variance of log w.  Every ``eval_every`` steps the same quantities are measured on a
held-out batch of fixed size drawn from generators seeded by (seed, step): the stop rule on
``target_acceptance`` uses the held-out value only.

History rows: row ``step = k`` holds the loss and batch metrics of the batch used for update k
(parameters before that update), the learning rate used, and the cumulative training seconds
after it; the ``eval_*`` columns (NaN on other rows) describe the model after update k.

Nothing here writes files, installs signal handlers or prints: checkpoints, CSV, figures,
signals and process groups belong to :mod:`lattice_samplers.flows.train.session`, which drives
:func:`run_loop` through its per-step callback.  Under a process group (DistributedDataParallel,
see :mod:`lattice_samplers.flows.distributed`) :meth:`Trainer.train_step`,
:meth:`Trainer.evaluate_shared` and :meth:`Trainer.state_dict` are collective.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from lattice_samplers.autocorr import ess_kish
from lattice_samplers.flows.action import TorchAction
from lattice_samplers.flows.checkpoint import CheckpointError
from lattice_samplers.flows.distributed import (
    DistContext,
    all_gather_objects,
    all_gather_rows,
    broadcast_floats,
    wrap_model,
)
from lattice_samplers.flows.model import Flow, FlowSettings, check_device, flow_from_arch
from lattice_samplers.flows.path_gradient import path_gradient_loss
from lattice_samplers.flows.train.config import HISTORY_COLUMNS, TrainSettings
from lattice_samplers.kernels.imh import imh_pass
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "LoopOutcome",
    "NonFiniteLossError",
    "StepCallback",
    "Trainer",
    "fit",
    "imh_acceptance",
    "reverse_kl_loss",
    "run_loop",
    "weight_metrics",
]


# ---------------------------------------------------------------------- metrics
def imh_acceptance(log_w: np.ndarray, rng: np.random.Generator) -> float:
    """Acceptance rate of one independence-Metropolis pass over proposals with log weights.

    The chain starts at proposal 0 and is offered proposals 1..n-1 in order, accepting
    proposal i if ``log(u) < log_w[i] - log_w[current]`` (the one accept/reject
    implementation, :func:`~lattice_samplers.kernels.imh.imh_pass`).  A non-finite log weight
    is a rejection.  Draws n - 1 uniforms from ``rng``; returns accepted / (n - 1).
    """
    log_w = np.ascontiguousarray(log_w, dtype=np.float64)
    n = log_w.shape[0]
    if n < 2:
        return float("nan")
    log_u = np.log(rng.random(n - 1))
    start = float(log_w[0]) if math.isfinite(log_w[0]) else -math.inf
    accepted = np.empty(n - 1, dtype=np.bool_)
    index = np.empty(n - 1, dtype=np.int64)
    imh_pass(log_w[1:], log_u, start, 0, accepted, index)
    return int(accepted.sum()) / (n - 1)


def weight_metrics(log_w: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """(acceptance, ess_kish, variance of the finite log weights) of one batch."""
    finite = log_w[np.isfinite(log_w)]
    var = float(finite.var()) if finite.size > 1 else float("nan")
    return imh_acceptance(log_w, rng), ess_kish(log_w), var


# ---------------------------------------------------------------------- the loss
def reverse_kl_loss(
    model: torch.nn.Module,
    flow: Flow,
    action: TorchAction,
    z: torch.Tensor,
    gradient: str = "standard",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reverse-KL loss of one batch of prior noise; the one place the loss is formed.

    Parameters
    ----------
    model : torch.nn.Module
        The module whose forward is differentiated (the flow, or its DDP wrapper).
    flow : Flow
        The flow itself (for the prior density).
    action : TorchAction
        The target's action S.
    z : torch.Tensor
        Prior noise, shape ``(n, L, L)``.
    gradient : str
        ``standard``: differentiate mean(log_q + S); ``path``: the path-gradient surrogate of
        :func:`lattice_samplers.flows.path_gradient.path_gradient_loss`, whose gradient is the
        path gradient and whose value is not the KL.

    Returns
    -------
    (loss, kl, phi, log_q)
        The tensor to differentiate, the detached estimate mean(log_q + S) to log, the samples
        and their log_q.
    """
    if gradient == "path":
        loss, log_q, s, phi = path_gradient_loss(flow, action, z=z, model=model)
        return loss, (log_q + s).mean().detach(), phi, log_q
    phi, log_det = model(z)
    log_q = flow.log_prior(z) - log_det
    loss = (log_q + action(phi)).mean()
    return loss, loss.detach(), phi, log_q


class NonFiniteLossError(FloatingPointError):
    """A NaN or infinite loss; the message names the step and what went non-finite."""

    def __init__(self, step: int, cause: str) -> None:
        super().__init__(f"non-finite loss at step {step}: {cause}")
        self.step = step
        self.cause = cause


def _nonfinite_cause(
    loss: float, phi: torch.Tensor, log_q: torch.Tensor, action: TorchAction
) -> str:
    """One phrase saying which part of the loss went non-finite first, and how often."""
    n = phi.shape[0]
    phi, log_q = phi.detach(), log_q.detach()
    finite_phi = torch.isfinite(phi).flatten(1).all(dim=1)
    bad_phi = int((~finite_phi).sum())
    if bad_phi:
        return f"loss is {loss}; the flow produced non-finite fields in {bad_phi} of {n} samples"
    big = f"{float(phi.abs().max()):.3g}"
    bad_q = int((~torch.isfinite(log_q)).sum())
    if bad_q:
        return f"loss is {loss}; log_q is non-finite for {bad_q} of {n} samples (max |phi| {big})"
    with torch.no_grad():
        s = action(phi)
    bad_s = int((~torch.isfinite(s)).sum())
    if bad_s:
        return (
            f"loss is {loss}; the action S(phi) in {str(s.dtype).removeprefix('torch.')} is "
            f"non-finite for {bad_s} of {n} samples (max |phi| {big})"
        )
    return f"loss is {loss}; the sum of log_q + S overflowed (max |phi| {big})"


# ---------------------------------------------------------------------- seeds and schedules
def _seeds(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds for the run's persistent random streams, from one seed."""
    names = ("init", "train_noise", "train_metrics")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, np.uint64)[0] >> 1) for n, c in zip(names, children)}


def _stream_seeds(seed: int, n_streams: int) -> list[int]:
    """Seeds of the prior-noise streams.

    The ``train_noise`` seed itself for one stream, else ``n_streams`` children spawned from
    its SeedSequence.
    """
    if n_streams == 1:
        return [_seeds(seed)["train_noise"]]
    parent = np.random.SeedSequence(seed).spawn(3)[1]  # the train_noise child of _seeds
    return [int(c.generate_state(1, np.uint64)[0] >> 1) for c in parent.spawn(n_streams)]


def check_streams(cfg: TrainSettings, comm: DistContext | None) -> int:
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


def saved_streams(train_state: dict[str, Any]) -> int:
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


def _cosine(lr: float, lr_min: float, n_steps: int) -> Callable[[int], float]:
    ratio = lr_min / lr

    def factor(step: int) -> float:
        frac = min(step, n_steps) / max(n_steps, 1)
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return factor


def _constant(step: int) -> float:
    return 1.0


# ---------------------------------------------------------------------- the trainer
class Trainer:
    """Reverse-KL training state of one flow: optimizer, schedule, random streams, history.

    Parameters
    ----------
    flow : Flow
        The model to train (moved to the training device).
    action : TorchAction
        The target's action.
    train_config : TrainSettings
        Settings.
    comm : DistContext, optional
        The process group to train in (DistributedDataParallel; process r draws from the r-th
        run of ``prior_streams / world_size`` consecutive streams).  Then :meth:`train_step`
        and :meth:`state_dict` are collective: every process must call them together.
    generators : sequence of torch.Generator, optional
        This process's prior-noise generators, one per stream it draws (default: seeded from
        ``train_config.seed``, see :func:`_stream_seeds`).

    Raises
    ------
    ValueError
        If the prior streams cannot split the batch or the processes evenly.
    """

    def __init__(
        self,
        flow: Flow,
        action: TorchAction,
        train_config: TrainSettings,
        comm: DistContext | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> None:
        self.cfg = train_config
        self.comm = comm
        self.n_streams = check_streams(train_config, comm)
        self.stream_batch = train_config.batch_size // self.n_streams
        # the streams this process draws from; rank order is stream order in the gathers
        k = self.n_streams // (comm.world_size if comm is not None else 1)
        first = comm.rank * k if comm is not None else 0
        self.streams = list(range(first, first + k))
        self.device = comm.device if comm is not None else check_device(train_config.device)
        self.flow: Flow = flow.to(self.device)
        self.arch = dict(flow.arch)
        # the module whose forward is differentiated: DDP's wrapper averages the gradients
        self.model: torch.nn.Module = wrap_model(self.flow, comm) if comm else self.flow
        self.action = action
        cls = torch.optim.Adam if train_config.optimizer == "adam" else torch.optim.AdamW
        self.optimizer = cls(
            self.flow.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
        )
        factor = (
            _cosine(train_config.lr, train_config.lr_min, train_config.n_steps)
            if train_config.scheduler == "cosine"
            else _constant
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        if generators is None:
            stream_seeds = _stream_seeds(train_config.seed, self.n_streams)
            generators = [
                torch.Generator(device=self.device).manual_seed(stream_seeds[r])
                for r in self.streams
            ]
        if len(generators) != len(self.streams):
            raise ValueError(f"need {len(self.streams)} generators, got {len(generators)}")
        self.train_gens = list(generators)
        self.train_rng = np.random.default_rng(_seeds(train_config.seed)["train_metrics"])
        self.step = 0
        self.train_s = 0.0
        self.wall_s = 0.0
        self.history: dict[str, list[float]] = {c: [] for c in HISTORY_COLUMNS}

    @classmethod
    def for_theory(
        cls,
        theory: Phi4Theory,
        flow_config: FlowSettings,
        train_config: TrainSettings,
        comm: DistContext | None = None,
    ) -> Trainer:
        """A trainer of a fresh flow (weights seeded by ``train_config.seed``) for ``theory``."""
        device = comm.device if comm is not None else check_device(train_config.device)
        arch = flow_config.resolve(theory)
        init = _seeds(train_config.seed)["init"]
        flow = flow_from_arch(arch, device=str(device), seed=init)
        return cls(flow, TorchAction(theory), train_config, comm=comm)

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
            "rng": {**noise, "train_metrics": self.train_rng.bit_generator.state},
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
        self.train_rng.bit_generator.state = rng["train_metrics"]
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
        NonFiniteLossError
            If the loss is NaN or infinite (no update is made; the state is unchanged except
            for the prior streams, which drew the batch).
        """
        t0 = time.perf_counter()
        z = [self.flow.prior_noise(self.stream_batch, gen) for gen in self.train_gens]
        z = z[0] if len(z) == 1 else torch.cat(z)
        loss, kl, phi, log_q = reverse_kl_loss(
            self.model, self.flow, self.action, z, self.cfg.gradient
        )
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
            cause = _nonfinite_cause(loss_value, phi, log_q, self.action)
            raise NonFiniteLossError(self.step + 1, cause)
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

    def evaluate_last(self) -> None:
        """Fill the eval columns of the last history row, if empty (the final model)."""
        if self.history["step"] and not math.isfinite(self.history["eval_acceptance"][-1]):
            ev = self.evaluate_shared()
            for col, v in zip(("eval_acceptance", "eval_ess_kish", "eval_var_log_weight"), ev):
                self.history[col][-1] = v

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


# ---------------------------------------------------------------------- the loop
#: Called after every completed step (history row appended) with the trainer and the row;
#: returns a stop reason (e.g. ``"interrupted"``) to end the loop at this step boundary, or
#: None to go on.  The session's checkpoints and signal checks are such a callback.
StepCallback = Callable[[Trainer, dict[str, float]], str | None]


@dataclass
class LoopOutcome:
    """What :func:`run_loop` ended with.

    Attributes
    ----------
    flow : Flow
        The trained flow (the trainer's, in training mode).
    history : dict of str to list of float
        Per-step rows in columns (:data:`HISTORY_COLUMNS`), over all segments of the run.
    stop_reason : str
        ``n_steps``, ``target``, ``time_budget``, ``until_step``, ``nonfinite_loss``, or the
        reason a callback returned.
    message : str
        For ``nonfinite_loss`` the one-line cause (step and what went non-finite), else "".
    error : NonFiniteLossError or None
        The error behind ``nonfinite_loss``.
    """

    flow: Flow
    history: dict[str, list[float]]
    stop_reason: str
    message: str = ""
    error: NonFiniteLossError | None = None


def run_loop(
    trainer: Trainer, end: int | None = None, callback: StepCallback | None = None
) -> LoopOutcome:
    """Train from ``trainer.step`` up to step ``end`` (default ``n_steps``) or a stop rule.

    Stop rules, checked at step boundaries: the held-out acceptance reached the target (with
    ``stop_at_target``), the training seconds exceeded ``time_budget_s``, a NaN/inf loss
    (the failed step makes no update and adds no row), or a stop reason from ``callback``.
    Writes nothing; the flow is left in training mode and the final model is not evaluated
    unless its step is an eval step (see :meth:`Trainer.evaluate_last`).
    """
    cfg = trainer.cfg
    end = cfg.n_steps if end is None else min(cfg.n_steps, end)
    if cfg.stop_at_target and trainer.steps_to_target()[0] is not None:
        return LoopOutcome(trainer.flow, trainer.history, "target")
    stop_reason, error = "n_steps", None
    while trainer.step < end:
        if cfg.time_budget_s is not None and trainer.train_s >= cfg.time_budget_s:
            stop_reason = "time_budget"
            break
        t_wall = time.perf_counter()
        try:
            row = trainer.train_step()
        except NonFiniteLossError as exc:
            stop_reason, error = "nonfinite_loss", exc
            break
        k = trainer.step
        is_eval = k % cfg.eval_every == 0 or k == end
        ev = trainer.evaluate_shared() if is_eval else (math.nan, math.nan, math.nan)
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
        reason = callback(trainer, row) if callback is not None else None
        if is_eval and cfg.stop_at_target and cfg.target_acceptance is not None:
            if ev[0] >= cfg.target_acceptance:
                stop_reason = "target"
                break
        if reason:
            stop_reason = reason
            break
    else:
        if trainer.step < cfg.n_steps:
            stop_reason = "until_step"
    message = str(error) if error is not None else ""
    return LoopOutcome(trainer.flow, trainer.history, stop_reason, message, error)


def fit(
    flow: Flow,
    action: TorchAction,
    train_config: TrainSettings,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> tuple[Flow, dict[str, list[float]]]:
    """Train ``flow`` on ``action`` by reverse KL in one process; return it and its history.

    The functional form of :class:`Trainer` + :func:`run_loop` (cf. FlowJAX's
    ``fit_to_key``): no files, no printing, no signal handling.

    Parameters
    ----------
    flow : Flow
        The model (trained in place and returned).
    action : TorchAction
        The target's action.
    train_config : TrainSettings
        Settings (one prior stream).
    generator : torch.Generator, optional
        The prior-noise generator (default: seeded from ``train_config.seed``).
    callback : StepCallback, optional
        Called after every step; may stop the loop by returning a reason.

    Raises
    ------
    NonFiniteLossError
        If the loss went non-finite (the flow holds the weights of the step before).
    """
    gens = None if generator is None else [generator]
    trainer = Trainer(flow, action, train_config, generators=gens)
    outcome = run_loop(trainer, callback=callback)
    if outcome.error is not None:
        raise outcome.error
    return outcome.flow, outcome.history
