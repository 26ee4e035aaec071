"""Training that cannot silently diverge: the guard, the kept best flow, schedules, clipping.

Explosions are injected from here (a test-only action whose value is blown up from a chosen
call on), never by a switch in production code; each guard test has its negative control with
the guard off (``max_rollbacks = 0``) or ``keep_best = "last"``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lattice_samplers.config import ConfigError, section_to_dataclass  # noqa: E402
from lattice_samplers.flows import (  # noqa: E402
    CNFSettings,
    CouplingFlowSettings,
    TrainSettings,
    build_flow,
)
from lattice_samplers.flows.action import TorchAction  # noqa: E402
from lattice_samplers.flows.train import (  # noqa: E402
    Trainer,
    TrainingDiverged,
    fit,
    run_loop,
)
from lattice_samplers.flows.train.schedule import lr_factor  # noqa: E402
from lattice_samplers.theory import Phi4Theory  # noqa: E402

ISING4 = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
TINY = CouplingFlowSettings(n_layers=2, hidden=(16,))


def _cfg(**kw) -> TrainSettings:
    base = dict(n_steps=60, batch_size=64, eval_every=10, eval_batch_size=256, lr=5e-3)
    base.update(kw)
    return TrainSettings(**base)


class ExplodingAction(TorchAction):
    """S(phi) times ``factor`` on calls ``start .. start + length - 1`` (test-only).

    A huge factor makes Var(log w) spike by orders of magnitude and drives the parameters
    far away if those batches are used for updates; ``nan`` makes the loss non-finite.
    """

    def __init__(self, theory, start: int, length: int, factor: float) -> None:
        super().__init__(theory)
        self.calls, self.start, self.length, self.factor = 0, start, length, factor
        self.active = False

    def __call__(self, phi):
        self.calls += 1
        self.active = self.start <= self.calls < self.start + self.length
        s = super().__call__(phi)
        return s * self.factor if self.active else s

    def float64(self, phi):
        # the batch metrics (log w) of a training batch see the same blow-up as its loss
        s = super().float64(phi)
        return s * self.factor if self.active and not torch.is_inference_mode_enabled() else s


def _trainer(action: TorchAction, cfg: TrainSettings) -> Trainer:
    return Trainer(build_flow(ISING4, TINY, seed=1), action, cfg)


def _flat(flow) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in flow.parameters()])


# ---------------------------------------------------------------------- the guard
def test_explosion_is_rolled_back_with_a_lower_rate_and_the_run_recovers() -> None:
    # batches 31-37 have their action x1e4: Var(log w) spikes (2 rollbacks, 1 skip)
    cfg = _cfg(n_steps=45)
    tr = _trainer(ExplodingAction(ISING4, 31, 7, 1e4), cfg)
    out = run_loop(tr)
    assert out.stop_reason == "n_steps" and tr.step == 45
    assert tr.guard.rollbacks >= 1 and tr.guard.lr_scale == 0.5**tr.guard.rollbacks
    assert "rolled back to step" in out.message and "\n" not in out.message
    h = tr.history
    assert h["step"] == list(range(1, 46))  # discarded steps are gone from the history
    assert max(h["var_log_weight"]) < 1e5  # no exploded batch (~1e8) was used for an update
    assert h["rollbacks"][-1] == tr.guard.rollbacks
    # after the rollback the rate is the schedule's times the guard's scale
    k = next(i for i, r in enumerate(h["rollbacks"]) if r >= 1)
    assert h["lr"][k] == pytest.approx(cfg.lr * lr_factor(cfg)(k) * 0.5 ** h["rollbacks"][k])
    assert math.isfinite(tr.final_eval()[0]) and tr.final_eval()[0] > 0.1

    # negative control: the guard off, the same explosion is trained on and ruins the flow
    off = _trainer(
        ExplodingAction(ISING4, 31, 7, 1e4), _cfg(n_steps=45, max_rollbacks=0, keep_best="last")
    )
    out_off = run_loop(off)
    assert out_off.stop_reason == "n_steps"
    assert max(off.history["var_log_weight"]) > 1e5
    assert off.final_eval()[0] < tr.final_eval()[0]


def test_nan_batch_is_skipped_and_persistent_nan_uses_up_the_rollbacks() -> None:
    # one NaN batch: skipped, no rollback, the run goes on
    tr = _trainer(ExplodingAction(ISING4, 8, 1, math.nan), _cfg(n_steps=20))
    out = run_loop(tr)
    assert out.stop_reason == "n_steps" and tr.guard.skipped == 1 and tr.guard.rollbacks == 0
    # NaN from call 25 on, for ever: bounded rollbacks, then a clear stop, never a hang
    tr = _trainer(ExplodingAction(ISING4, 25, 10**9, math.nan), _cfg(max_rollbacks=2))
    out = run_loop(tr)
    assert out.stop_reason == "diverged" and tr.guard.rollbacks == 2
    assert out.message.startswith("diverged: 2 rollbacks") and "\n" not in out.message
    assert all(math.isfinite(v) for v in tr.history["loss"])
    assert math.isfinite(tr.final_eval()[0])  # the returned flow is a measured, sane one
    # fit raises instead of returning quietly
    with pytest.raises(TrainingDiverged, match="diverged"):
        fit(build_flow(ISING4, TINY, seed=1), ExplodingAction(ISING4, 25, 10**9, math.nan), _cfg())


def test_rollback_restores_model_and_optimizer_exactly() -> None:
    tr = _trainer(ExplodingAction(ISING4, 10**9, 0, 1.0), _cfg(n_steps=25))
    run_loop(tr, end=21)  # snapshots at steps 10, 20 (0 dropped)
    snap = tr.guard.ring[0]
    assert [s.step for s in tr.guard.ring] == [10, 20]
    for _ in range(3):
        tr.guard.anomalous(tr, "injected")
    assert tr.step == snap.step == 10 and tr.guard.rollbacks == 1
    for k, v in tr.flow.state_dict().items():
        assert torch.equal(v, snap.model[k]), k
    assert len(tr.history["step"]) == 10 and tr.guard.recent == snap.recent
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3 * lr_factor(tr.cfg)(10) * 0.5)


# ---------------------------------------------------------------------- the best flow
def test_returned_flow_is_the_best_held_out_one() -> None:
    # train well, then poison the last 15 steps without the guard: the final model is worse
    cfg = _cfg(n_steps=60, max_rollbacks=0, lr=2e-2)
    tr = _trainer(ExplodingAction(ISING4, 46, 10**9, 30.0), cfg)
    out = run_loop(tr)
    ev = np.asarray(tr.history["eval_acceptance"])
    best = int(np.nanargmax(ev))
    assert out.kept_step == tr.history["step"][best] < 60
    assert tr.final_eval()[0] == ev[best] > ev[-1]
    assert f"of step {out.kept_step}" in out.message
    # the flow returned really is the best one: re-evaluating it reproduces its value
    tr.step = out.kept_step
    assert tr.evaluate()[0] == ev[best]
    assert tr.live_model is not None  # the training weights are kept for a continuation

    # negative control: keep_best = "last" returns the final, worse model
    last = _trainer(
        ExplodingAction(ISING4, 46, 10**9, 30.0), _cfg(**{**cfg.__dict__, "keep_best": "last"})
    )
    out_last = run_loop(last)
    assert out_last.kept_step is None and last.final_eval()[0] == ev[-1] < ev[best]


# ---------------------------------------------------------------------- schedules, clipping
def test_schedules_give_the_documented_rates() -> None:
    f = lr_factor(TrainSettings(n_steps=100, scheduler="step", lr=1e-2, lr_decay_every=30))
    assert [f(k) for k in (0, 29, 30, 59, 60, 89, 90)] == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]
    f = lr_factor(TrainSettings(scheduler="step", lr=1e-2, lr_min=3e-3, lr_decay_every=1))
    assert f(5) == pytest.approx(0.3)  # floored at lr_min / lr
    f = lr_factor(TrainSettings(n_steps=100, scheduler="constant", warmup_steps=4))
    assert [f(k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    f = lr_factor(TrainSettings(n_steps=100, lr=1e-2, lr_min=1e-3))
    assert f(0) == 1.0 and f(50) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)
    # the trainer uses them: the history's lr column is lr * f(k)
    cfg = _cfg(n_steps=8, scheduler="step", lr_decay_every=3, warmup_steps=2)
    _, hist = fit(build_flow(ISING4, TINY, seed=1), TorchAction(ISING4), cfg)
    assert hist["lr"] == pytest.approx([cfg.lr * lr_factor(cfg)(k) for k in range(8)])
    assert hist["lr"][:4] == pytest.approx([2.5e-3, 5e-3, 5e-3, 2.5e-3])


def test_grad_clip_bounds_the_norm_of_every_update(monkeypatch) -> None:
    seen: list[float] = []
    original = torch.optim.Adam.step

    def spy(self, *a, **kw):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return original(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    _, hist = fit(
        build_flow(ISING4, TINY, seed=1), TorchAction(ISING4), _cfg(n_steps=10, grad_clip=0.1)
    )
    assert max(seen) <= 0.1 * (1 + 1e-5)
    assert max(hist["grad_norm"]) > 0.1  # the recorded norm is before clipping
    # negative control: without clipping the applied norms are the recorded ones
    seen.clear()
    _, hist = fit(build_flow(ISING4, TINY, seed=1), TorchAction(ISING4), _cfg(n_steps=10))
    assert max(seen) > 0.1
    assert seen == pytest.approx(hist["grad_norm"], rel=1e-5)


@pytest.mark.parametrize(
    "data, match",
    [
        ({"scheduler": "cyclic"}, "unknown scheduler 'cyclic'"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
        ({"lr_decay_every": 0}, "lr_decay_every must be >= 1"),
        ({"lr_decay_factor": 1.5}, "lr_decay_factor must be in (0, 1]"),
        ({"max_rollbacks": -1}, "max_rollbacks must be >= 0"),
        ({"rollback_lr_factor": 1.0}, "rollback_lr_factor must be in (0, 1)"),
        ({"spike_factor": 1.0}, "spike_factor must be a number > 1"),
        ({"keep_best": "loss"}, "unknown keep_best 'loss'"),
        ({"grad_clip": 0.0}, "grad_clip must be > 0"),
    ],
)
def test_bad_guard_and_schedule_settings_are_one_line_errors(data, match) -> None:
    with pytest.raises(ConfigError) as info:
        section_to_dataclass(TrainSettings, data, "train")
    assert match in str(info.value) and "\n" not in str(info.value)


def test_nan_from_the_first_batch_stops_with_the_ode_note_for_a_cnf() -> None:
    # no healthy batch ever: no snapshot, no update; the guard stops instead of crashing, and
    # for a flow with an ODE the message compares Var(log w) at the trained and twice the steps
    cnf = CNFSettings(cnf_frequencies=2, cnf_time_basis=2, kernel_radius=1)
    flow = build_flow(ISING4, cnf, seed=1)
    before = _flat(flow).clone()
    cfg = _cfg(n_steps=5, eval_batch_size=64)
    tr = Trainer(flow, ExplodingAction(ISING4, 1, 10**9, math.nan), cfg)
    out = run_loop(tr)
    assert out.stop_reason == "diverged" and tr.step == 0 and tr.guard.skipped == 3
    assert torch.equal(_flat(flow), before)
    assert "RK4 steps" in out.message and "\n" not in out.message
    assert flow.arch["ode_steps"] == build_flow(ISING4, cnf, seed=1).arch["ode_steps"]


def test_state_round_trip_and_a_checkpoint_from_before_the_guard() -> None:
    tr = _trainer(TorchAction(ISING4), _cfg(n_steps=30))
    run_loop(tr, end=25)
    state = tr.state_dict()
    again = _trainer(TorchAction(ISING4), _cfg(n_steps=30))
    again.load_state_dict(state, tr.flow.state_dict())
    assert [s.step for s in again.guard.ring] == [s.step for s in tr.guard.ring]
    assert again.guard.recent == tr.guard.recent and again.best.step == tr.best.step
    # a trainer state written before the guard existed: no guard/best records, fewer columns
    old = {k: v for k, v in state.items() if k not in ("guard", "best", "live_model")}
    old["history"] = {
        k: v for k, v in state["history"].items() if k not in ("grad_norm", "rollbacks")
    }
    legacy = _trainer(TorchAction(ISING4), _cfg(n_steps=30))
    legacy.load_state_dict(old, tr.flow.state_dict())
    assert legacy.history["rollbacks"] == [0.0] * 25
    assert all(math.isnan(v) for v in legacy.history["grad_norm"])
    assert run_loop(legacy).stop_reason == "n_steps" and legacy.step == 30


# ---------------------------------------------------------------- RK4 error check (cnf)
def _stiff_cnf(ode_steps: int = 2):
    """A tiny cnf whose kernel weights are made large, so RK4 with few steps is inaccurate."""
    flow = build_flow(
        ISING4,
        CNFSettings(cnf_frequencies=2, cnf_time_basis=2, kernel_radius=1, ode_steps=ode_steps),
    )
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(3.0 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return flow


def test_ode_check_doubles_steps_of_a_stiff_cnf_and_off_does_not() -> None:
    cfg = _cfg(n_steps=2, eval_every=1, eval_batch_size=64, lr=1e-5, max_rollbacks=0)
    trainer = Trainer(_stiff_cnf(), TorchAction(ISING4), cfg)
    assert trainer.ode_error_sd() > 0.1  # the premise: the stiff ODE is badly integrated
    run_loop(trainer)
    steps = [e[2] for e in trainer.ode_events]
    assert steps and steps[0] == 4 and trainer.flow.arch["ode_steps"] == steps[-1]
    state = trainer.state_dict()
    assert state["ode_steps"] == steps[-1] and len(state["ode_events"]) == len(steps)
    # resuming restores the doubled steps into a fresh flow at the configured ones
    fresh = Trainer(_stiff_cnf(), TorchAction(ISING4), cfg)
    fresh.load_state_dict(state, trainer.flow.state_dict())
    assert fresh.flow.arch["ode_steps"] == steps[-1] and fresh.ode_events == trainer.ode_events
    # negative control: the check off keeps the configured steps
    off = Trainer(_stiff_cnf(), TorchAction(ISING4), _cfg(**{**cfg.__dict__, "ode_tolerance": 0}))
    run_loop(off)
    assert off.flow.arch["ode_steps"] == 2 and off.ode_events == []


def test_ode_check_cap_and_bad_values() -> None:
    cfg = _cfg(n_steps=1, eval_every=1, eval_batch_size=64, lr=1e-5, max_ode_steps=3)
    trainer = Trainer(_stiff_cnf(), TorchAction(ISING4), cfg)
    run_loop(trainer)
    assert trainer.flow.arch["ode_steps"] == 3  # capped
    for kw, msg in ((dict(ode_tolerance=-1.0), "ode_tolerance"), (dict(max_ode_steps=0), "max")):
        with pytest.raises(ConfigError, match=msg):
            section_to_dataclass(TrainSettings, {"n_steps": 5, **kw}, "train")
