"""The root finder of ``tune`` on measurements with a known crossing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lattice_samplers.workflows.beta_search import SearchSettings, find_crossing


def _line(beta_true: float, noise: float = 0.0):
    def measure(beta: float, seed: int) -> tuple[float, float]:
        value = 0.25 + 2.0 * (beta - beta_true)
        return value + noise * np.random.default_rng(seed).standard_normal(), max(noise, 1e-4)

    return measure


def test_finds_the_crossing_of_a_line_from_either_side() -> None:
    for beta0 in (0.50, 0.70):
        found = find_crossing(_line(0.6123), 0.25, SearchSettings(beta0=beta0), seed=1)
        assert found.converged and found.beta == pytest.approx(0.6123, abs=1e-9)
        assert found.slope == pytest.approx(2.0) and found.points[0].beta == beta0


def test_the_error_covers_the_truth_with_noise() -> None:
    misses = []
    for seed in range(20):
        found = find_crossing(_line(0.6, noise=0.003), 0.25, SearchSettings(beta0=0.58), seed)
        misses.append(abs(found.beta - 0.6) / found.beta_err)
    assert np.median(misses) < 1.5 and all(math.isfinite(m) for m in misses)


def test_a_decreasing_measurement_is_refused() -> None:
    """Negative control: xi/L falling with beta has no crossing the search may trust."""

    def falling(beta: float, seed: int) -> tuple[float, float]:
        return 0.25 - 2.0 * (beta - 0.6), 1e-4

    with pytest.raises(ValueError, match="no bracket|does not grow|positive range"):
        find_crossing(falling, 0.25, SearchSettings(beta0=0.5, max_bracket=4), label="L=8")
