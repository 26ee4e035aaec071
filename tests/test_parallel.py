"""Parallel chains ([run] workers): bit-identical to one worker, resume, timings, validation."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_run, interrupt_after, run_chains

from lattice_samplers.config import ConfigError
from lattice_samplers.driver import RunInterrupted, RunSettings, read_results, write_results
from lattice_samplers.driver import settings as run_settings
from lattice_samplers.driver.results_file import results_to_datatree
from lattice_samplers.exact import FreeFieldSampler
from lattice_samplers.jobs import JOBS
from lattice_samplers.samplers import SAMPLERS, make_sampler
from lattice_samplers.samplers.flow import FlowSampler, FlowSamplerSettings
from lattice_samplers.scan import run_scan
from lattice_samplers.specs import sample_spec
from lattice_samplers.theory import Phi4Theory

THEORY = Phi4Theory.create(6, "ising", beta=0.576, lam=0.5)
FREE = Phi4Theory.create(4, "albergo", m2=1.0, lam=0.0)
#: three chains on two workers: one worker runs two chains per block
RUN_ARGS = {"n_therm": 60, "thin": 2, "n_chains": 3, "seed": 11, "block_size": 10}


def _imh() -> FlowSampler:
    return FlowSampler(FREE, FlowSamplerSettings(batch_size=7), proposal=FreeFieldSampler(FREE))


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
def test_two_workers_equal_one_bit_for_bit(kind: str) -> None:
    one = run_chains(make_sampler(kind, THEORY), 80, workers=1, **RUN_ARGS)
    two = run_chains(make_sampler(kind, THEORY), 80, workers=2, **RUN_ARGS)
    assert (one.workers, two.workers) == (1, 2)
    assert_same_run(one, two)


def test_imh_two_workers_equal_one_bit_for_bit() -> None:
    one = run_chains(_imh(), 90, workers=1, **RUN_ARGS)
    two = run_chains(_imh(), 90, workers=2, **RUN_ARGS)
    assert two.workers == 2
    assert_same_run(one, two)


def test_flow_imh_runs_its_chains_one_by_one() -> None:
    """Torch's float32 log q is not bit-reproducible across threads: flows keep workers = 1."""
    from lattice_samplers.flows import FlowProposal, build_flow

    theory = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)

    def sampler() -> FlowSampler:
        proposal = FlowProposal(build_flow(theory, seed=1))
        return FlowSampler(theory, FlowSamplerSettings(batch_size=16), proposal=proposal)

    one = run_chains(sampler(), 64, workers=1, **RUN_ARGS)
    two = run_chains(sampler(), 64, workers=2, **RUN_ARGS)
    assert two.workers == 1
    assert_same_run(one, two)


def test_a_proposal_that_is_not_thread_safe_runs_its_chains_one_by_one() -> None:
    proposal = FreeFieldSampler(FREE)
    proposal.thread_safe = False
    sampler = FlowSampler(FREE, FlowSamplerSettings(batch_size=7), proposal=proposal)
    assert run_chains(sampler, 20, workers=2, **RUN_ARGS).workers == 1


@pytest.mark.parametrize("n_blocks", [3, 50])  # during tuning (45 blocks), during production
def test_interrupted_parallel_run_resumes_to_the_serial_run(n_blocks: int, tmp_path: Path) -> None:
    straight = run_chains(make_sampler("hmc", THEORY), 80, workers=1, **RUN_ARGS)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(RunInterrupted) as info:
        run_chains(
            make_sampler("hmc", THEORY),
            80,
            workers=2,
            checkpoint_path=ckpt,
            callback=interrupt_after(n_blocks),
            **RUN_ARGS,
        )
    assert 0 < info.value.steps_done < 60 + 80
    assert (info.value.steps_done > 60) == (n_blocks == 50)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed = run_chains(
        make_sampler("hmc", THEORY), 80, workers=2, checkpoint_path=ckpt, resume=True, **RUN_ARGS
    )
    assert_same_run(straight, resumed)
    # timings accumulate across the interruption: core is the sum of the chains' seconds
    assert resumed.core_time_s == pytest.approx(sum(resumed.chain_wall_time_s))
    assert resumed.wall_time_s > 0


def test_core_time_is_the_sum_of_chain_times() -> None:
    result = run_chains(make_sampler("metropolis", THEORY), 200, workers=2, **RUN_ARGS)
    assert result.core_time_s == pytest.approx(sum(result.chain_wall_time_s))
    assert result.wall_time_s > 0 and result.therm_time_s > 0
    assert result.therm_core_time_s > 0
    serial = run_chains(make_sampler("metropolis", THEORY), 200, workers=1, **RUN_ARGS)
    assert serial.core_time_s == pytest.approx(sum(serial.chain_wall_time_s))


def test_results_files_carry_both_times_and_old_files_fall_back(tmp_path: Path) -> None:
    result = run_chains(make_sampler("hmc", THEORY), 20, workers=2, **RUN_ARGS)
    back = read_results(write_results(result, tmp_path / "new.nc"))
    assert back.core_time_s == result.core_time_s and back.wall_time_s == result.wall_time_s
    assert back.therm_core_time_s == result.therm_core_time_s and back.workers == 2
    tree = results_to_datatree(result)
    for key in ("core_time_s", "therm_core_time_s", "workers"):
        del tree.attrs[key]
    tree.to_netcdf(tmp_path / "old.nc", engine="h5netcdf", mode="w")
    old = read_results(tmp_path / "old.nc")
    assert old.core_time_s == old.wall_time_s == result.wall_time_s
    assert old.therm_core_time_s == result.therm_time_s and old.workers == 1


def test_workers_validation_and_the_automatic_choice(monkeypatch) -> None:
    with pytest.raises(ValueError, match="workers must be an integer >= 0, got -1") as info:
        RunSettings(workers=-1)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="workers"):
        sample_spec({"theory": {"L": 4, "beta": 0.5, "lam": 0.5}, "run": {"workers": -2}})
    with pytest.raises(ValueError, match="workers"):
        RunSettings(workers=1.5)
    monkeypatch.setattr(run_settings, "usable_cores", lambda: 8)
    for key in run_settings.SINGLE_THREAD_ENV:
        monkeypatch.delenv(key, raising=False)
    assert RunSettings(n_chains=3).resolved_workers() == 3  # 0: one per chain, up to the cores
    assert RunSettings(n_chains=16).resolved_workers() == 8
    assert RunSettings(n_chains=3, workers=5).resolved_workers() == 3
    assert RunSettings(n_chains=16, workers=2).resolved_workers() == 2
    # a scan task (single-threaded environment): the default runs the chains one by one
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert RunSettings(n_chains=16).resolved_workers() == 1
    assert RunSettings(n_chains=16, workers=2).resolved_workers() == 2  # explicit wins


def test_a_failing_chain_is_raised_after_the_block() -> None:
    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        def sample(self, n: int, rng: np.random.Generator):
            self.calls += 1
            if self.calls > 3:  # after init (3 chains): every block fails
                raise RuntimeError("proposal broke")
            return FreeFieldSampler(FREE).sample(n, rng)

    sampler = FlowSampler(FREE, FlowSamplerSettings(batch_size=7), proposal=Failing())
    with pytest.raises(RuntimeError, match="proposal broke"):
        run_chains(sampler, 20, workers=2, **RUN_ARGS)


def test_scan_tasks_run_their_chains_one_by_one_unless_told(tmp_path: Path, monkeypatch) -> None:
    """The scan is parallel across tasks: workers = 0 means 1 inside a task, as documented."""
    monkeypatch.setattr(run_settings, "usable_cores", lambda: 8)
    for key in run_settings.SINGLE_THREAD_ENV:
        monkeypatch.delenv(key, raising=False)
    cfg = {
        "scan": {"job": "sample", "seed": 3, "grid": {"run.workers": [0, 2]}},
        "theory": {"L": 4, "beta": 0.5, "lam": 0.5},
        "sampler": {"kind": "metropolis"},
        "run": {"n_therm": 20, "n_steps": 40, "n_chains": 2},
    }
    scan = run_scan(cfg, tmp_path, JOBS, progress=False)
    assert scan.ok
    by_setting = {r.config["run"]["workers"]: r.result for r in scan}
    assert by_setting[0]["workers"] == 1 and by_setting[2]["workers"] == 2
    assert RunSettings(n_chains=2).resolved_workers() == 2  # the environment is restored
