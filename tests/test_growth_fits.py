"""Scaling-study helpers: growth fits, the log-normal acceptance, target detection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lattice_samplers.config import ConfigError
from lattice_samplers.growth_fits import (
    first_reached,
    fit_growth,
    lognormal_acceptance,
)
from lattice_samplers.workflows.train import validate_train as validate_train_job


def test_fit_recovers_an_exponential_in_the_volume() -> None:
    L = np.array([6, 8, 10, 12, 14])
    n = 50.0 * np.exp(0.02 * L**2)
    fit = fit_growth(L, n, 0.05 * n)
    a, b = fit["exponential_volume"]["params"]
    assert a == pytest.approx(math.log(50.0)) and b == pytest.approx(0.02)
    assert fit["exponential_volume"]["chi2"] == pytest.approx(0.0, abs=1e-12)
    # the wrong law fits worse: negative control of the model comparison
    assert fit["power_law"]["aic"] > fit["exponential_volume"]["aic"] + 10


def test_fit_recovers_a_power_law() -> None:
    L = np.array([6, 8, 10, 12, 14, 16])
    n = 3.0 * L**2.5
    fit = fit_growth(L, n, 0.05 * n)
    a, p = fit["power_law"]["params"]
    assert p == pytest.approx(2.5) and math.exp(a) == pytest.approx(3.0)
    assert fit["exponential_volume"]["aic"] > fit["power_law"]["aic"] + 10


def test_fit_errors_cover_the_truth_on_noisy_data() -> None:
    rng = np.random.default_rng(5)
    L = np.arange(6, 22, 2)
    pulls = []
    for _ in range(200):
        n = 10.0 * L**3.0 * np.exp(rng.normal(0.0, 0.1, L.size))
        f = fit_growth(L, n, 0.1 * n)["power_law"]
        pulls.append((f["params"][1] - 3.0) / f["errors"][1])
    pulls = np.array(pulls)
    assert 0.8 < pulls.std() < 1.25 and abs(pulls.mean()) < 0.2


def test_fit_needs_three_points_and_skips_missing() -> None:
    fit = fit_growth([6, 8, 10], [10.0, None, 30.0])  # type: ignore[list-item]
    assert fit["power_law"]["params"] == [] and fit["power_law"]["n_points"] == 2


def _imh_acceptance(log_w: np.ndarray, rng: np.random.Generator) -> float:
    from lattice_samplers.kernels.imh import imh_pass

    acc = np.empty(log_w.size, dtype=np.bool_)
    idx = np.empty(log_w.size, dtype=np.int64)
    imh_pass(log_w, np.log(rng.random(log_w.size)), -np.inf, -1, acc, idx)
    return float(acc[1:].mean())


@pytest.mark.parametrize("s", [0.5, 1.3, 2.5])
def test_lognormal_acceptance_matches_an_imh_chain(s: float) -> None:
    """Independence Metropolis on Gaussian log weights accepts erfc(s/2) of the proposals."""
    assert lognormal_acceptance(0.0) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    acc = _imh_acceptance(rng.normal(0.0, s, 400_000), rng)
    assert acc == pytest.approx(lognormal_acceptance(s**2), abs=0.01)
    # negative control: a heavier-tailed log weight (same variance) breaks the prediction
    t = rng.standard_t(3, 400_000) * s / math.sqrt(3.0)
    assert abs(_imh_acceptance(t, rng) - lognormal_acceptance(s**2)) > 0.01


def test_first_reached() -> None:
    steps = np.array([50, 100, 150, 200])
    acc = np.array([0.1, 0.35, 0.29, 0.6])
    sec = np.array([1.0, 2.0, 3.0, 4.0])
    assert first_reached(steps, acc, sec, 0.3) == (100, 2.0)
    assert first_reached(steps, acc, sec, 0.5) == (200, 4.0)
    assert first_reached(steps, acc, sec, 0.7) == (None, None)


def test_train_job_config_is_validated() -> None:
    base = {"theory": {"L": 6, "beta": 0.537, "lam": 0.5}}
    validate_train_job(base)
    with pytest.raises(ConfigError, match="targets"):
        validate_train_job({**base, "study": {"targets": [1.5]}})
    with pytest.raises(ConfigError, match="unknown"):
        validate_train_job({**base, "study": {"target": [0.5]}})
    with pytest.raises(ConfigError, match="flow"):
        validate_train_job({**base, "flow": {"family": "coupling", "coupling": "magic"}})
