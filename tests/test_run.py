"""Run driver: chains and seeds, tuning, thinning, timing/work, checkpoint/resume, Ctrl-C."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_run, interrupt_after, run_chains

from lattice_samplers.driver import (
    RunInterrupted,
    RunSettings,
    load_checkpoint,
)
from lattice_samplers.samplers import SAMPLERS, HMCSampler, MetropolisSampler, make_sampler
from lattice_samplers.summary import result_summary, summarize_observables
from lattice_samplers.theory import Phi4Theory

THEORY = Phi4Theory.create(6, "ising", beta=0.576, lam=0.5)


def test_result_shapes_and_records() -> None:
    result = run_chains(HMCSampler(THEORY), 60, n_therm=40, thin=3, n_chains=3, seed=1)
    assert result.n_draws == 20
    for series in [*result.observables.values(), *result.stats.values()]:
        assert series.shape == (3, 20)
    assert result.final_phi.shape == (3, 6, 6)
    assert result.chain_seeds == [{"entropy": 1, "spawn_key": [i]} for i in range(3)]
    assert result.work["steps"] == 3 * 60
    assert result.work_therm["steps"] == 3 * 40
    assert result.work["force_evaluations"] == 3 * 60 * result.settings["n_leapfrog"]
    assert result.wall_time_s > 0 and result.compile_time_s >= 0
    assert len(result.chain_wall_time_s) == 3
    assert result.versions["numba"]
    chain = result.chain(1)
    np.testing.assert_array_equal(chain.observables["phi2"], result.observables["phi2"][1])
    assert chain.work["steps"] == 60


def test_chains_are_independent_and_reproducible() -> None:
    a = run_chains(MetropolisSampler(THEORY), 50, n_therm=20, n_chains=2, seed=7)
    b = run_chains(MetropolisSampler(THEORY), 50, n_therm=20, n_chains=2, seed=7)
    c = run_chains(MetropolisSampler(THEORY), 50, n_therm=20, n_chains=2, seed=8)
    assert_same_run(a, b)
    assert not np.array_equal(a.observables["phi2"][0], a.observables["phi2"][1])
    assert not np.array_equal(a.observables["phi2"], c.observables["phi2"])


def test_block_size_does_not_change_the_chain() -> None:
    runs = [
        run_chains(HMCSampler(THEORY), 90, n_therm=40, thin=3, n_chains=2, seed=3, block_size=b)
        for b in (3, 30, 0)
    ]
    assert_same_run(runs[0], runs[1])
    assert_same_run(runs[0], runs[2])


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
def test_tuning_reaches_the_target_acceptance_then_freezes(kind: str) -> None:
    sampler = make_sampler(kind, THEORY)
    initial = sampler.settings_dict()
    result = run_chains(sampler, 2000, n_therm=1000, n_chains=2, seed=4)
    target = initial["target_acceptance"]
    assert result.acceptance == pytest.approx(target, abs=0.05)
    assert result.initial_settings == initial
    assert result.settings[sampler.tuned_setting] != initial[sampler.tuned_setting]
    assert result.settings == sampler.settings_dict()  # frozen after thermalization


def test_no_tuning_keeps_settings() -> None:
    sampler = HMCSampler(THEORY, step_size=0.05, tune=False)
    result = run_chains(sampler, 50, n_therm=100, seed=0)
    assert result.settings["step_size"] == 0.05


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_steps": 0},
        {"n_steps": -3},
        {"n_steps": 10, "thin": 3},
        {"n_steps": 10, "n_chains": 0},
        {"n_steps": 10, "n_therm": -1},
        {"n_steps": 10, "seed": -1},
    ],
)
def test_bad_lengths_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        run_chains(MetropolisSampler(THEORY), **kwargs)
    with pytest.raises(ValueError):
        RunSettings(**kwargs)


def test_phi0_per_chain_and_shape_check() -> None:
    phi0 = np.stack([np.full(THEORY.shape, 0.5), np.full(THEORY.shape, -0.5)])
    sampler = MetropolisSampler(THEORY, tune=False)
    result = run_chains(sampler, 1, n_chains=2, seed=0, phi0=phi0)
    assert result.observables["magnetization"][0, 0] > 0 > result.observables["magnetization"][1, 0]
    with pytest.raises(ValueError, match="phi0"):
        run_chains(sampler, 1, n_chains=2, phi0=np.zeros((3, 6, 6)))


# ----------------------------------------------------------------------- checkpoint / resume
RUN_ARGS = {"n_therm": 60, "thin": 2, "n_chains": 2, "seed": 11, "block_size": 10}


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
def test_resume_continues_bit_identically(kind: str, tmp_path: Path) -> None:
    """2N steps straight == N steps, checkpoint, resume to 2N."""
    straight = run_chains(make_sampler(kind, THEORY), 80, **RUN_ARGS)
    ckpt = tmp_path / "run.ckpt"
    first = run_chains(make_sampler(kind, THEORY), 40, checkpoint_path=ckpt, **RUN_ARGS)
    assert ckpt.is_file()
    meta, arrays = load_checkpoint(ckpt)
    assert meta["prod_done"] == 40
    assert arrays["observables"].shape == (2, 20, 6)
    resumed = run_chains(
        make_sampler(kind, THEORY), 80, checkpoint_path=ckpt, resume=True, **RUN_ARGS
    )
    assert_same_run(straight, resumed)
    for name in first.observables:
        np.testing.assert_array_equal(first.observables[name], resumed.observables[name][:, :20])


@pytest.mark.parametrize("n_blocks", [3, 50])  # during tuning, during production
def test_ctrl_c_saves_and_resume_is_bit_identical(n_blocks: int, tmp_path: Path) -> None:
    straight = run_chains(HMCSampler(THEORY), 80, **RUN_ARGS)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(RunInterrupted) as info:
        run_chains(
            HMCSampler(THEORY),
            80,
            checkpoint_path=ckpt,
            callback=interrupt_after(n_blocks),
            **RUN_ARGS,
        )
    assert info.value.checkpoint_path == ckpt
    assert 0 < info.value.steps_done < 60 + 80
    assert (info.value.steps_done > 60) == (n_blocks == 50)
    assert ckpt.is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = run_chains(HMCSampler(THEORY), 80, checkpoint_path=ckpt, resume=True, **RUN_ARGS)
    assert_same_run(straight, resumed)


def test_an_ignored_sigint_stays_ignored(tmp_path: Path) -> None:
    # a background job of a script starts with SIGINT ignored: the run must not take it over
    # (then Ctrl-C at the terminal would stop it), but SIGTERM still stops it with a checkpoint
    from lattice_samplers.signals import StopRequest

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the autouse fixture restores it
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == stop._handler
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ckpt = tmp_path / "run.ckpt"

    calls = []

    def sigint_then_sigterm(info: dict) -> None:
        calls.append(info)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # ignored: the run goes on
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(RunInterrupted) as info:
        run_chains(HMCSampler(THEORY), 80, checkpoint_path=ckpt,
                   callback=sigint_then_sigterm, **RUN_ARGS)  # fmt: skip
    assert len(calls) == 5  # stopped at the first block boundary after SIGTERM, not SIGINT
    assert ckpt.is_file() and info.value.signal_name == "SIGTERM"
    # negative control: with Python's handler in place, SIGINT is taken over
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGINT) == stop._handler


def test_periodic_checkpoints(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    seen = []

    def callback(info: dict) -> None:
        if ckpt.is_file():
            seen.append(load_checkpoint(ckpt)[0]["prod_done"])

    run_chains(
        MetropolisSampler(THEORY),
        100,
        checkpoint_path=ckpt,
        checkpoint_every=40,
        callback=callback,
        **RUN_ARGS,
    )
    assert {20, 60}.issubset(seen)  # 60 therm + 20 = 80, 60 + 60 = 120 steps done
    assert load_checkpoint(ckpt)[0]["prod_done"] == 100
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_resume_refuses_another_run(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    run_chains(MetropolisSampler(THEORY), 20, checkpoint_path=ckpt, **RUN_ARGS)
    with pytest.raises(ValueError, match="another run"):
        run_chains(HMCSampler(THEORY), 40, checkpoint_path=ckpt, resume=True, **RUN_ARGS)
    with pytest.raises(ValueError, match="seed"):
        args = {**RUN_ARGS, "seed": 12}
        run_chains(MetropolisSampler(THEORY), 40, checkpoint_path=ckpt, resume=True, **args)
    with pytest.raises(ValueError, match="initial_settings"):
        run_chains(
            MetropolisSampler(THEORY, width=0.3), 40, checkpoint_path=ckpt, resume=True, **RUN_ARGS
        )
    with pytest.raises(FileNotFoundError):
        run_chains(MetropolisSampler(THEORY), 40, checkpoint_path=tmp_path / "none", resume=True)
    with pytest.raises(ValueError, match="more than"):
        run_chains(MetropolisSampler(THEORY), 10, checkpoint_path=ckpt, resume=True, **RUN_ARGS)


def test_summaries_use_the_gamma_method_across_chains() -> None:
    result = run_chains(MetropolisSampler(THEORY), 2000, n_therm=200, n_chains=2, seed=5)
    summary = summarize_observables(result)
    assert list(summary)[:5] == [
        "magnetization",
        "abs_magnetization",
        "two_point_susceptibility",
        "action_density",
        "phi2",
    ]
    for entry in summary.values():
        assert {"mean", "err", "tau_int", "tau_int_err", "ess"} <= entry.keys()
        assert entry["err"] > 0 and entry["tau_int"] > 0
        assert entry["ess"] == pytest.approx(4000 / (2 * entry["tau_int"]))
    full = result_summary(result)
    assert full["acceptance"] == pytest.approx(result.acceptance)
    assert full["L"] == 6 and full["sampler"] == "metropolis"
