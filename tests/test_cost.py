"""Cost arithmetic against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from lattice_samplers.cost import break_even, cost_per_effective_sample


def test_cost_hand_computed() -> None:
    # 10000 draws, tau_int = 2.5 -> ess = 2000; 4 s -> 2 ms per effective sample
    c = cost_per_effective_sample(4.0, 10_000, 2.5, 0.25, training_s=6.0, work={"flips": 1e6})
    assert c.ess == pytest.approx(2000.0)
    assert c.ess_err == pytest.approx(200.0)  # 10% relative, like tau_int
    assert c.seconds_per_ess == pytest.approx(0.002)
    assert c.seconds_per_ess_err == pytest.approx(0.0002)
    assert c.with_training_s == pytest.approx(10.0 / 2000)
    assert c.work_per_ess == {"flips": pytest.approx(500.0)}


def test_cost_of_uncorrelated_chain_is_time_per_draw() -> None:
    c = cost_per_effective_sample(1.0, 1000, 0.5)
    assert c.ess == pytest.approx(1000.0)
    assert c.seconds_per_ess == pytest.approx(1e-3)
    assert c.with_training_s == c.seconds_per_ess


def test_wall_seconds_beside_core_seconds() -> None:
    # 4 core seconds on 2 workers in 2.2 elapsed seconds; ess = 2000
    c = cost_per_effective_sample(4.0, 10_000, 2.5, 0.25, wall_time_s=2.2)
    assert c.seconds_per_ess == pytest.approx(0.002)  # core seconds: the comparison figure
    assert c.wall_seconds_per_ess == pytest.approx(0.0011)
    assert c.wall_seconds_per_ess_err == pytest.approx(0.00011)
    same = cost_per_effective_sample(4.0, 10_000, 2.5)  # no wall time: chains one by one
    assert same.wall_seconds_per_ess == same.seconds_per_ess


def test_stuck_chain_is_infinitely_expensive() -> None:
    c = cost_per_effective_sample(1.0, 1000, math.nan, work={"x": 1.0})
    assert c.ess == 0.0 and math.isinf(c.seconds_per_ess) and math.isinf(c.work_per_ess["x"])


def test_break_even_hand_computed() -> None:
    # flow: 1 ms per eff. sample after 60 s training; HMC: 4 ms -> n* = 60 / 0.003 = 20000
    b = break_even(60.0, 1e-3, 1e-4, 4e-3, 2e-4, tau_int=1.5, tau_int_err=0.1)
    assert b.n_effective == pytest.approx(20_000.0)
    assert b.n_effective_err == pytest.approx(60.0 / 0.003**2 * math.hypot(2e-4, 1e-4))
    assert b.n_steps == pytest.approx(60_000.0)  # 20000 * 2 * 1.5
    assert b.n_steps_err == pytest.approx(2 * math.hypot(b.n_effective_err * 1.5, 20_000 * 0.1))
    # total costs are equal at the break-even point
    assert 60.0 + 1e-3 * b.n_effective == pytest.approx(4e-3 * b.n_effective)


def test_break_even_never_when_flow_is_dearer() -> None:
    assert math.isinf(break_even(60.0, 5e-3, 0.0, 4e-3, 0.0, tau_int=1.0).n_effective)


def test_break_even_zero_without_training() -> None:
    assert break_even(0.0, 1e-3, 0.0, 4e-3, 0.0, tau_int=1.0).n_effective == 0.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        cost_per_effective_sample(-1.0, 10, 1.0)
