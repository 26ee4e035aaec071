"""The reverse-KL trainer of one flow: optimizer, schedule, random streams, guard, history.

:class:`Trainer` measures a batch (:meth:`Trainer.measure`), updates on it
(:meth:`Trainer.update`), evaluates held-out batches, restores and saves its state, and at
the end of a run hands back the best held-out flow (:meth:`Trainer.keep_best`).  The loop that
drives it is :func:`lattice_samplers.flows.train.loop.run_loop`.  Under a process group
:meth:`Trainer.measure`, :meth:`Trainer.evaluate_shared` and :meth:`Trainer.state_dict` are
collective.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

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
from lattice_samplers.flows.train.config import HISTORY_COLUMNS, TrainSettings
from lattice_samplers.flows.train.guard import BestKeeper, DivergenceGuard
from lattice_samplers.flows.train.metrics import (
    NonFiniteLossError,
    nonfinite_cause,
    reverse_kl_loss,
    weight_metrics,
)
from lattice_samplers.flows.train.schedule import lr_factor
from lattice_samplers.flows.train.streams import check_streams, eval_seeds, seeds, stream_seeds
from lattice_samplers.theory import Phi4Theory

__all__ = ["Batch", "Trainer"]


@dataclass
class Batch:
    """A measured batch waiting for its update: the loss to differentiate and its row."""

    loss: torch.Tensor
    row: dict[str, float]


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
        ``train_config.seed``, see :func:`~lattice_samplers.flows.train.streams.stream_seeds`).

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
        self.guard = DivergenceGuard(train_config)
        self.best = BestKeeper(train_config.keep_best)
        #: the training weights while ``flow`` holds the kept best ones (after a finished run)
        self.live_model: dict[str, torch.Tensor] | None = None
        #: (step, acceptance, ess_kish, var) of the flow returned by a finished run
        self.kept: tuple[int, float, float, float] | None = None
        factor = lr_factor(train_config)
        # the rollback scale multiplies the schedule (x 1.0 is exact: no change without one)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: factor(k) * self.guard.lr_scale
        )
        if generators is None:
            seeds_ = stream_seeds(train_config.seed, self.n_streams)
            generators = [
                torch.Generator(device=self.device).manual_seed(seeds_[r]) for r in self.streams
            ]
        if len(generators) != len(self.streams):
            raise ValueError(f"need {len(self.streams)} generators, got {len(generators)}")
        self.train_gens = list(generators)
        self.train_rng = np.random.default_rng(seeds(train_config.seed)["train_metrics"])
        self.step = 0
        self.train_s = 0.0
        self.wall_s = 0.0
        self.history: dict[str, list[float]] = {c: [] for c in HISTORY_COLUMNS}
        #: (step, sd of the RK4 log q error, new ode_steps) of each doubling by check_ode
        self.ode_events: list[tuple[int, float, int]] = []

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
        init = seeds(train_config.seed)["init"]
        flow = flow_from_arch(arch, device=str(device), seed=init)
        return cls(flow, TorchAction(theory), train_config, comm=comm)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (except the model weights).

        With several prior streams, ``rng.train_noise_streams`` holds every stream's state
        (gathered from all processes: collective under a process group).  ``guard`` and
        ``best`` hold the divergence guard and best-flow records; ``live_model``, after a
        finished run that returned an earlier flow, the weights training continues from.
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
            "guard": self.guard.state_dict(),
            "best": self.best.state_dict(),
            "live_model": self.live_model,
            "ode_steps": self.flow.arch.get("ode_steps"),
            "ode_events": [list(e) for e in self.ode_events],
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
        live = state.get("live_model")
        self.flow.load_state_dict(live if live is not None else model)
        self.live_model, self.kept = None, None
        if state.get("ode_steps") is not None:  # the steps training had reached
            self.flow.set_ode_steps(int(state["ode_steps"]))
        self.ode_events = [(int(a), float(b), int(c)) for a, b, c in state.get("ode_events", [])]
        if state.get("guard") is not None:
            self.guard.load_state_dict(state["guard"])
        if state.get("best") is not None:
            self.best.load_state_dict(state["best"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for r, gen in zip(self.streams, self.train_gens):
            gen.set_state(states[r])
        self.train_rng.bit_generator.state = rng["train_metrics"]
        self.step = int(state["step"])
        self.train_s = float(state["train_s"])
        self.wall_s = float(state["wall_s"])
        n = len(state["history"]["step"])
        # columns added since the checkpoint was written: NaN (0 rollbacks) on its rows
        fill = {"rollbacks": 0.0}
        self.history = {
            c: list(state["history"].get(c, [fill.get(c, math.nan)] * n)) for c in HISTORY_COLUMNS
        }

    # ------------------------------------------------------------------ one step
    def log_weights(self, phi: torch.Tensor, log_q: torch.Tensor) -> np.ndarray:
        """float64 log weights -S(phi) - log_q(phi) as a NumPy array."""
        s64 = self.action.float64(phi)
        return (-(s64 + log_q.detach().double())).cpu().numpy()

    def apply_lr(self) -> None:
        """Set the optimizer's rate from the schedule at the scheduler's step (after a restore)."""
        for group, base, lam in zip(
            self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas
        ):
            group["lr"] = base * lam(self.scheduler.last_epoch)

    def measure(self) -> Batch:
        """Draw the next batch and measure it with the current parameters (no update yet).

        Raises
        ------
        NonFiniteLossError
            If the loss is NaN or infinite (the prior streams drew the batch; nothing else
            changed).
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
            self.train_s += time.perf_counter() - t0
            cause = nonfinite_cause(loss_value, phi, log_q, self.action)
            raise NonFiniteLossError(self.step + 1, cause)
        acc, ess, var = weight_metrics(log_w, self.train_rng)
        self.train_s += time.perf_counter() - t0
        row = {"loss": loss_value, "acceptance": acc, "ess_kish": ess, "var_log_weight": var}
        return Batch(loss, row)

    def update(self, batch: Batch) -> dict[str, float]:
        """The optimizer step of a measured batch; returns its row (without eval columns)."""
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        batch.loss.backward()
        params = [p for p in self.flow.parameters() if p.grad is not None]
        if self.cfg.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params])
            )
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.train_s += time.perf_counter() - t0
        return {
            "step": self.step,
            **batch.row,
            "lr": lr,
            "grad_norm": float(norm),
            "rollbacks": self.guard.rollbacks,
            "train_s": self.train_s,
        }

    def train_step(self) -> dict[str, float]:
        """One optimizer step (:meth:`measure` then :meth:`update`); returns the row.

        Raises
        ------
        NonFiniteLossError
            If the loss is NaN or infinite (no update is made; the state is unchanged except
            for the prior streams, which drew the batch).
        """
        return self.update(self.measure())

    def evaluate(self, n: int | None = None) -> tuple[float, float, float]:
        """(acceptance, ess_kish, var log w) on a held-out batch of the current model.

        The batch (``eval_batch_size`` samples) and its accept/reject uniforms come from
        generators seeded by (seed, step), independent of the training streams.
        """
        n = n or self.cfg.eval_batch_size
        noise_seed, metric_seed = eval_seeds(self.cfg.seed, self.step)
        gen = torch.Generator(device=self.device).manual_seed(noise_seed)
        with torch.inference_mode():
            log_w_parts = []
            bs = self.flow.default_batch_size()
            for start in range(0, n, bs):
                phi, log_q = self.flow.sample_with_log_q(min(bs, n - start), gen)
                log_w_parts.append(self.log_weights(phi, log_q))
        return weight_metrics(np.concatenate(log_w_parts), np.random.default_rng(metric_seed))

    def ode_error_sd(self, n: int = 128) -> float:
        """Std over n fixed draws of log q at ode_steps minus log q at 2 ode_steps.

        Both integrations start from the same latent draws (one generator seeded by (seed,
        step) for the held-out stream, offset so it differs from :meth:`evaluate`'s), so the
        difference is the RK4 error of the sampled log q; no training stream is touched.
        """
        steps = int(self.flow.arch["ode_steps"])
        noise_seed = eval_seeds(self.cfg.seed, self.step)[0] + 1
        log_q = []
        try:
            for k in (steps, 2 * steps):
                self.flow.set_ode_steps(k)
                gen = torch.Generator(device=self.device).manual_seed(noise_seed)
                with torch.inference_mode():
                    log_q.append(self.flow.sample_with_log_q(n, gen)[1].double().cpu())
        finally:
            self.flow.set_ode_steps(steps)
        return float((log_q[0] - log_q[1]).std())

    def check_ode(self) -> str:
        """Double the flow's ode_steps if the RK4 log q error exceeds ode_tolerance.

        An IMH chain on the discretized flow is exact for its own (wrong) log q only if log q
        is computed consistently; with the reported log q off by e, its bias is about
        Cov(O, e) and its safe effective sample fraction about 1 / Var(e), so an sd(e) of
        0.1 on the whole lattice keeps both at the percent level.  Training can drive the
        error up (the loss exploits it), so the check runs at every held-out evaluation.
        Returns a message when the steps were doubled, else "".  Collective: rank 0 decides.
        """
        tol = self.cfg.ode_tolerance
        steps = self.flow.arch.get("ode_steps")
        if not tol or steps is None or int(steps) >= self.cfg.max_ode_steps:
            return ""
        sd = self.ode_error_sd() if self.comm is None or self.comm.is_main else 0.0
        if self.comm is not None:
            sd = broadcast_floats([sd], self.comm)[0]
        if not sd > tol:
            return ""
        new = min(2 * int(steps), self.cfg.max_ode_steps)
        self.flow.set_ode_steps(new)
        self.arch = dict(self.flow.arch)
        self.ode_events.append((self.step, sd, new))
        return f"step {self.step}: RK4 log q error sd {sd:.3g} > {tol}; ode_steps {steps} -> {new}"

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

    def evaluate_last(self) -> tuple[float, float, float] | None:
        """Fill the eval columns of the last history row, if empty; return what was filled."""
        if self.history["step"] and not math.isfinite(self.history["eval_acceptance"][-1]):
            ev = self.evaluate_shared()
            for col, v in zip(("eval_acceptance", "eval_ess_kish", "eval_var_log_weight"), ev):
                self.history[col][-1] = v
            return ev
        return None

    def keep_best(self) -> str:
        """Finish: measure the final model, return the best held-out flow; say what was kept.

        The flow's training weights move to :attr:`live_model` when an earlier flow is kept.
        """
        ev = self.evaluate_last()
        if ev is not None:
            self.best.note(self.step, ev, self.flow)
        last = self.final_eval()
        if self.best.values is None or self.best.model is None:
            return ""
        i = BestKeeper.INDEX[self.best.metric]
        if not self.best.values[i] > last[i]:  # ties, or a NaN final: keep the final model
            if math.isfinite(last[i]):
                return ""
        self.live_model = copy.deepcopy(self.flow.state_dict())
        self.flow.load_state_dict(self.best.model)
        acc, ess, var = self.best.values
        self.kept = (int(self.best.step), acc, ess, var)
        return (
            f"returned the best held-out flow, of step {self.best.step} (acceptance {acc:.3f}, "
            f"ess_kish {ess:.3f}; the final model had {last[0]:.3f}, {last[1]:.3f})"
        )

    def resume_live(self) -> None:
        """Put the training weights back into the flow if a kept best flow displaced them."""
        if self.live_model is not None:
            self.flow.load_state_dict(self.live_model)
            self.live_model, self.kept = None, None

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
        """Held-out metrics of the returned flow (the kept one's, else the last; NaN if none)."""
        if self.kept is not None:
            return self.kept[1], self.kept[2], self.kept[3]
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
