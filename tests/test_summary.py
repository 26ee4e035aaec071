"""Tests of the per-observable summaries shared by sample, compare and scan.

Both tau_int estimators are always reported; ``tau_estimator`` chooses which one drives
tau_int, err, ess (and so the costs). AR(1) chains have the exact tau_int (1 + a) / (2 (1 - a)).
"""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.signal import lfilter

from lattice_samplers.records import json_safe
from lattice_samplers.summary import (
    AnalysisSettings,
    format_observable_table,
    summarize_observables,
    summarize_series,
)
from lattice_samplers.testing.checks import check_mean

KEYS = {
    "mean", "err", "tau_int", "tau_int_err", "ess", "estimator", "tau_int_gamma",
    "tau_int_gamma_err", "window", "tau_int_arviz", "ess_bulk", "r_hat", "flags",
}  # fmt: skip


def ar1(a: float, n_chains: int, n_draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    zi = a * rng.standard_normal((n_chains, 1))
    eps = rng.standard_normal((n_chains, n_draws))
    return lfilter([np.sqrt(1 - a * a)], [1.0, -a], eps, axis=1, zi=zi)[0]


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return ar1(0.8, 4, 25_000, seed=11)  # tau_int = 4.5


def test_default_is_arviz_with_the_gamma_relative_error(x):
    s = summarize_series(x)
    assert set(s) == KEYS and s["estimator"] == "arviz"
    assert s["tau_int"] == s["tau_int_arviz"]
    assert s["tau_int_err"] == pytest.approx(
        s["tau_int"] * s["tau_int_gamma_err"] / s["tau_int_gamma"]
    )
    assert s["ess"] == pytest.approx(x.size / (2 * s["tau_int"]))
    assert s["err"] == pytest.approx(np.sqrt(2 * s["tau_int"] * x.var() / x.size))
    assert abs(s["tau_int"] - 4.5) <= 3 * s["tau_int_err"]
    assert abs(s["tau_int_gamma"] - 4.5) <= 3 * s["tau_int_gamma_err"]
    assert abs(s["r_hat"] - 1) < 0.01 and s["window"] > 0 and s["flags"] == []


def test_gamma_estimator_drives_tau_int_err_and_ess(x):
    a, g = summarize_series(x), summarize_series(x, tau_estimator="gamma")
    assert g["estimator"] == "gamma" and g["tau_int"] == g["tau_int_gamma"]
    assert g["tau_int_err"] == g["tau_int_gamma_err"]
    assert g["ess"] == pytest.approx(x.size / (2 * g["tau_int"]))
    # the same two estimates whichever drives
    for key in ("tau_int_gamma", "tau_int_arviz", "ess_bulk", "r_hat", "window"):
        assert a[key] == g[key]


def test_analysis_settings_validate_and_are_frozen():
    assert AnalysisSettings().tau_estimator == "arviz"
    with pytest.raises(ValueError, match="tau_estimator must be one of arviz, gamma"):
        AnalysisSettings("emcee")
    with pytest.raises(ValueError):
        summarize_series(np.zeros(10), tau_estimator="bogus")
    with pytest.raises(dataclasses.FrozenInstanceError):
        AnalysisSettings().tau_estimator = "gamma"


def test_stuck_series_is_never_efficient_whatever_arviz_says():
    s = summarize_series(np.full((2, 500), 1.5))
    assert s["flags"] == ["stuck"] and s["ess"] == 0.0 and s["tau_int"] == np.inf
    assert s["tau_int_arviz"] == np.inf and s["ess_bulk"] == 0.0
    assert json_safe(s)["tau_int"] is None


def test_one_stuck_chain_and_unmixed_chains_are_flagged(x):
    y = x.copy()
    y[1] = y[1, 0]
    assert {"stuck_chain", "r_hat"} <= set(summarize_series(y)["flags"])
    z = x.copy()
    z[0] += 2.0
    s = summarize_series(z)
    assert s["r_hat"] > 1.01 and "r_hat" in s["flags"]


def test_estimators_disagree_is_flagged_for_the_arviz_cap():
    # a = -0.9: tau_int = 1/38, but ArviZ caps ESS at N log10 N (tau_int 0.1 for N = 1e5)
    s = summarize_series(ar1(-0.9, 1, 100_000, seed=12))
    assert {"arviz_cap", "estimators_disagree"} <= set(s["flags"])


def test_observables_and_table(x):
    result = SimpleNamespace(observables={"phi2": x, "other": x[:, ::2]})
    out = summarize_observables(result, tau_estimator="gamma")
    assert list(out) == ["phi2", "other"] and all(v["estimator"] == "gamma" for v in out.values())
    table = format_observable_table(out)
    assert table.splitlines()[0] == "tau_int, err and ess by: gamma"
    assert "tau_arviz" in table and "r_hat" in table


def test_checks_keep_the_gamma_method_tolerance(x):
    # statistical checks take sigma from the Gamma method (DESIGN.md), whatever the default
    c = check_mean(x, 0.0)
    assert c and c.err == pytest.approx(summarize_series(x, tau_estimator="gamma")["err"])
