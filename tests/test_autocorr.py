"""Tests of lattice_samplers.autocorr against AR(1) processes and i.i.d. rejection histories.

Exact values: AR(1) x_t = a x_{t-1} + sqrt(1 - a^2) eps_t has rho(t) = a^t and
tau_int = (1 + a) / (2 (1 - a)); i.i.d. rejections with probability r give
rho(t) = r^t and tau_int = 1/2 + r / (1 - r). Every statistical check is k sigma with sigma
from the Gamma method, and each has a negative control that must fail.
"""

import warnings

import numpy as np
import pytest
from scipy.signal import lfilter

from lattice_samplers.autocorr import (
    CONVENTION,
    R_HAT_MAX,
    AutocorrResult,
    AutocorrWarning,
    acceptance_tau,
    analyze,
    arviz_ess,
    arviz_ess_bulk,
    arviz_rhat,
    derived_gamma_method,
    emcee_tau,
    gamma_method,
    running_tau_int,
)

K_SIGMA = 4.0
N_DRAWS = 100_000


def within_sigma(value: float, exact: float, sigma: float, k: float = K_SIGMA) -> bool:
    """True when |value - exact| <= k sigma (False for a missing or zero error)."""
    return bool(np.isfinite(sigma) and sigma > 0 and abs(value - exact) <= k * sigma)


def ar1(a: float, n_draws: int, seed: int, n_chains: int | None = None) -> np.ndarray:
    """Stationary unit-variance AR(1) chains, shape (n_draws,) or (n_chains, n_draws)."""
    rng = np.random.default_rng(seed)
    shape = (1 if n_chains is None else n_chains, n_draws)
    eps = rng.standard_normal(shape)
    # The initial state is drawn from the stationary N(0, 1): no burn-in needed.
    zi = a * rng.standard_normal((shape[0], 1))
    x = lfilter([np.sqrt(1.0 - a * a)], [1.0, -a], eps, axis=1, zi=zi)[0]
    return x[0] if n_chains is None else x


def tau_ar1(a: float) -> float:
    return (1.0 + a) / (2.0 * (1.0 - a))


def quiet(func, *args, **kwargs):
    """Call an estimator with its AutocorrWarnings silenced (where a test expects flags)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AutocorrWarning)
        return func(*args, **kwargs)


A_VALUES = [0.0, 0.5, 0.9, -0.5]


# --------------------------------------------------------------------------- AR(1) exactness


@pytest.mark.parametrize("a", A_VALUES)
def test_gamma_reproduces_ar1_tau_int(a):
    x = ar1(a, N_DRAWS, seed=10)
    res = gamma_method(x)
    assert within_sigma(res.tau_int, tau_ar1(a), res.tau_int_err)
    # Error of the mean and ESS follow from tau_int and the variance (unit here).
    assert res.err == pytest.approx(np.sqrt(2 * res.tau_int * res.variance / res.n))
    assert res.ess == pytest.approx(res.n / (2 * res.tau_int))
    assert res.err == pytest.approx(np.sqrt(2 * tau_ar1(a) / N_DRAWS), rel=0.1)
    assert res.convention == CONVENTION
    assert res.n == N_DRAWS and res.n_chains == 1
    assert res.rho[0] == pytest.approx(1.0)
    assert res.rho[1] == pytest.approx(a, abs=0.02)


@pytest.mark.parametrize("a", A_VALUES)
def test_arviz_mean_reproduces_ar1_tau_int(a):
    x = ar1(a, N_DRAWS, seed=11)
    res = arviz_ess(x)
    assert res.method == "arviz-mean"
    assert np.isnan(res.tau_int_err)
    assert within_sigma(res.tau_int, tau_ar1(a), gamma_method(x).tau_int_err)


@pytest.mark.parametrize("a", [0.0, 0.5, 0.9])
def test_emcee_reproduces_ar1_tau_int(a):
    x = ar1(a, N_DRAWS, seed=12)
    res = emcee_tau(x)
    assert res.method == "emcee"
    assert within_sigma(res.tau_int, tau_ar1(a), gamma_method(x).tau_int_err)


def test_emcee_anticorrelated_is_flagged_not_trusted():
    # emcee's window stops at lag 1 when 5 * (1 + 2 rho(1)) <= 1: for a = -0.5 it returns
    # 1/2 + rho(1) = 0 instead of 1/6. The wrapper must say so.
    x = ar1(-0.5, N_DRAWS, seed=13)
    with pytest.warns(AutocorrWarning, match="lag 1"):
        res = emcee_tau(x)
    assert "emcee_lag1_window" in res.flags and "anticorrelated" in res.flags
    assert not within_sigma(res.tau_int, tau_ar1(-0.5), gamma_method(x).tau_int_err)


def test_estimators_agree_on_the_same_series():
    x = ar1(0.8, N_DRAWS, seed=14)
    results = [analyze(x, m) for m in ("gamma", "arviz", "emcee")]
    sigma = results[0].tau_int_err
    for res in results[1:]:
        assert within_sigma(res.tau_int, results[0].tau_int, sigma)
        assert within_sigma(res.ess, results[0].ess, results[0].ess * sigma / results[0].tau_int)
    assert {r.convention for r in results} == {CONVENTION}


@pytest.mark.parametrize("method", ["gamma", "arviz", "emcee"])
def test_multichain_input(method):
    a = 0.9
    x = ar1(a, N_DRAWS // 4, seed=15, n_chains=4)
    res = analyze(x, method)
    assert res.n == N_DRAWS and res.n_chains == 4
    assert within_sigma(res.tau_int, tau_ar1(a), gamma_method(x).tau_int_err)


def test_multichain_gamma_matches_long_chain_error():
    # Four replica of length N/4 carry the same information as one chain of length N.
    a = 0.5
    multi = gamma_method(ar1(a, N_DRAWS // 4, seed=16, n_chains=4))
    assert multi.err == pytest.approx(np.sqrt(2 * tau_ar1(a) / N_DRAWS), rel=0.1)
    assert within_sigma(multi.mean, 0.0, multi.err)


# --------------------------------------------------------------------------- guards


@pytest.mark.parametrize("method", ["gamma", "arviz", "emcee"])
def test_constant_chain_is_flagged_stuck(method):
    x = np.full(1000, 0.25)
    with pytest.warns(AutocorrWarning, match="does not fluctuate"):
        res = analyze(x, method)
    assert res.ess == 0.0 and res.tau_int == np.inf
    assert "stuck" in res.flags and not res.ok
    assert res.mean == 0.25 and np.isnan(res.err)


def test_arviz_alone_would_call_a_constant_chain_perfect():
    # The reason for the guard: ArviZ itself returns ess = N for a constant chain.
    import arviz_stats

    assert arviz_stats.ess(np.full((1, 1000), 0.25), method="mean") == pytest.approx(1000)


def test_chains_each_constant_at_different_values_are_stuck():
    x = np.repeat([[0.0], [1.0]], 500, axis=1)
    with pytest.warns(AutocorrWarning, match="does not fluctuate"):
        res = gamma_method(x)
    assert res.ess == 0.0


def test_one_stuck_chain_among_several_is_flagged():
    x = ar1(0.5, 5000, seed=17, n_chains=3)
    x[1] = x[1, 0]
    with pytest.warns(AutocorrWarning, match="at least one chain"):
        res = gamma_method(x)
    assert "stuck_chain" in res.flags


@pytest.mark.parametrize("method", ["gamma", "arviz", "emcee"])
def test_short_series_warns(method):
    x = ar1(0.98, 1000, seed=18)  # tau_int = 49.5: needs ~2500 draws at 50 tau_int
    with pytest.warns(AutocorrWarning, match="shorter"):
        res = analyze(x, method)
    assert "short" in res.flags and not res.ok


def test_long_series_does_not_warn():
    x = ar1(0.5, N_DRAWS, seed=19)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutocorrWarning)
        for method in ("gamma", "arviz", "emcee"):
            assert analyze(x, method).ok


def test_anticorrelated_series_reported_honestly():
    x = ar1(-0.5, N_DRAWS, seed=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutocorrWarning)
        res = gamma_method(x)
    assert res.tau_int < 0.5 and res.ess > res.n
    assert res.flags == ("anticorrelated",) and res.ok


def test_arviz_cap_is_flagged():
    # tau_int = 1/38 for a = -0.9: ArviZ clips its ESS at N log10 N = 5 N (tau_int 0.1).
    x = ar1(-0.9, N_DRAWS, seed=21)
    with pytest.warns(AutocorrWarning, match="capped"):
        res = arviz_ess(x)
    assert "arviz_cap" in res.flags
    assert res.tau_int == pytest.approx(0.1, rel=1e-3)
    gamma = gamma_method(x)
    assert within_sigma(gamma.tau_int, tau_ar1(-0.9), gamma.tau_int_err)
    assert not within_sigma(res.tau_int, tau_ar1(-0.9), gamma.tau_int_err)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        gamma_method(np.zeros((2, 3, 100)))
    with pytest.raises(ValueError, match="NaN"):
        gamma_method(np.array([0.0, 1.0, np.nan, 2.0, 3.0]))
    with pytest.raises(ValueError, match="unknown method"):
        analyze(np.arange(10.0), "binning")


# --------------------------------------------------------------------------- accept/reject


@pytest.mark.parametrize("r", [0.2, 0.5, 0.9])
def test_acceptance_estimator_iid_rejections(r):
    accepted = np.random.default_rng(30).random(N_DRAWS) >= r
    res = acceptance_tau(accepted)
    exact = 0.5 + r / (1.0 - r)
    assert within_sigma(res.tau_int, exact, res.tau_int_err)
    assert res.rho[1] == pytest.approx(r, abs=0.01)
    assert res.mean == pytest.approx(1 - r, abs=0.01)


def test_acceptance_estimator_matches_definition():
    # rho(t) = fraction of states i whose next t steps were all rejected, by brute force.
    accepted = np.random.default_rng(31).random(300) >= 0.6
    n = accepted.size
    rho = [
        np.mean([not accepted[i + 1 : i + t + 1].any() for i in range(n - t)]) for t in range(1, 40)
    ]
    res = quiet(acceptance_tau, accepted)
    assert res.tau_int == pytest.approx(0.5 + sum(rho), rel=1e-12)
    np.testing.assert_allclose(res.rho[1:], rho[: res.window])


def test_acceptance_always_accepted_is_exactly_half():
    res = acceptance_tau(np.ones((2, 1000), dtype=bool))
    assert res.tau_int == 0.5 and res.ess == res.n == 2000 and res.flags == ()


def test_acceptance_never_accepted_is_stuck():
    accepted = np.zeros(1000, dtype=bool)
    accepted[0] = True  # the initial state does not count as an acceptance
    with pytest.warns(AutocorrWarning, match="does not fluctuate"):
        res = analyze(accepted, "acceptance")
    assert res.ess == 0.0 and "stuck" in res.flags


def test_acceptance_multichain():
    accepted = np.random.default_rng(32).random((4, N_DRAWS // 4)) >= 0.5
    res = acceptance_tau(accepted)
    assert res.n_chains == 4 and within_sigma(res.tau_int, 1.5, res.tau_int_err)


# --------------------------------------------------------------------------- negative controls


def test_control_wrong_exact_value_fails():
    res = gamma_method(ar1(0.9, N_DRAWS, seed=40))
    assert within_sigma(res.tau_int, tau_ar1(0.9), res.tau_int_err)
    assert not within_sigma(res.tau_int, tau_ar1(0.8), res.tau_int_err)


@pytest.mark.parametrize("window", [0, 1, N_DRAWS // 2])
def test_control_broken_window_fails(window):
    # W = 0, W = 1 truncate rho(t); W = N/2 sums noise. The yardstick is the error of the
    # working estimator (a broken one may honestly report a huge error of its own: W = N/2
    # does, 2 sigma_W ~ 40, which is why its own error is not used).
    x = ar1(0.9, N_DRAWS, seed=41)
    broken = quiet(gamma_method, x, window=window)
    assert not within_sigma(broken.tau_int, tau_ar1(0.9), gamma_method(x).tau_int_err)


def test_control_paper_window_on_anticorrelated_series_fails():
    # Wolff's rule as printed (tiny tau_W once tau_int(W) <= 1/2) stops at W = 1 for a < 0;
    # the envelope extension is what makes the a = -0.5 case above pass.
    x = ar1(-0.5, N_DRAWS, seed=42)
    paper = gamma_method(x, envelope=False)
    assert paper.window == 1
    assert not within_sigma(paper.tau_int, tau_ar1(-0.5), gamma_method(x).tau_int_err)


def test_control_acceptance_wrong_rate_fails():
    accepted = np.random.default_rng(43).random(N_DRAWS) >= 0.9
    res = acceptance_tau(accepted)
    assert not within_sigma(res.tau_int, 0.5 + 0.85 / 0.15, res.tau_int_err)


def test_control_error_of_mean_detects_wrong_mean():
    x = ar1(0.9, N_DRAWS, seed=44) + 1.0
    res = gamma_method(x)
    assert within_sigma(res.mean, 1.0, res.err)
    assert not within_sigma(res.mean, 1.0 + 10 * res.err, res.err)
    # Ignoring autocorrelation (naive sigma/sqrt(N)) understates the error by sqrt(2 tau_int).
    assert res.err / (x.std() / np.sqrt(x.size)) == pytest.approx(np.sqrt(19.0), rel=0.15)


# --------------------------------------------------------------------------- derived, records


def test_derived_identity_and_linear_combination():
    x = ar1(0.5, N_DRAWS, seed=50) + 2.0
    primary = gamma_method(x)
    ident = derived_gamma_method(lambda m: m, [x])
    assert ident.method == "gamma-derived"
    assert ident.mean == pytest.approx(primary.mean)
    assert ident.err == pytest.approx(primary.err, rel=1e-6)
    assert ident.tau_int == pytest.approx(primary.tau_int, rel=1e-6)
    combo = derived_gamma_method(lambda p, q: 2 * p + 3 * q, [x, x])
    assert combo.err == pytest.approx(5 * primary.err, rel=1e-6)


def test_derived_nonlinear_uses_the_gradient():
    x = ar1(0.5, N_DRAWS, seed=51) + 2.0
    primary = gamma_method(x)
    square = derived_gamma_method(lambda m: m**2, [x])
    assert square.mean == pytest.approx(primary.mean**2)
    assert square.err == pytest.approx(2 * primary.mean * primary.err, rel=1e-4)


def test_result_record_is_frozen_and_serializable():
    res = gamma_method(ar1(0.5, 10_000, seed=52))
    assert isinstance(res, AutocorrResult)
    with pytest.raises(AttributeError):
        res.tau_int = 1.0
    with pytest.raises(ValueError):
        res.rho[0] = 2.0
    record = res.as_dict()
    assert record["convention"] == CONVENTION and isinstance(record["rho"], list)


@pytest.mark.parametrize("method", ["arviz-bulk", "arviz-tail"])
def test_other_arviz_methods_are_selectable(method):
    res = analyze(ar1(0.5, 20_000, seed=53), method)
    assert res.method == method and np.isnan(res.err)
    assert 0.5 < res.tau_int < 3.0


# --------------------------------------------------------------------------- R-hat, bulk ESS


def test_arviz_rhat_of_mixed_chains_is_one():
    x = ar1(0.9, 20_000, seed=40, n_chains=4)
    assert abs(arviz_rhat(x) - 1.0) < 0.01


def test_control_arviz_rhat_detects_shifted_chain():
    x = ar1(0.9, 20_000, seed=40, n_chains=4)
    x[3] += 1.0  # one chain in another "mode": R-hat must see it
    assert arviz_rhat(x) > R_HAT_MAX


def test_arviz_rhat_sees_one_stuck_chain_and_has_no_value_without_two_chains():
    x = ar1(0.5, 5000, seed=41, n_chains=4)
    x[2] = 0.0
    assert arviz_rhat(x) > R_HAT_MAX
    assert np.isnan(arviz_rhat(x[0])) and np.isnan(arviz_rhat(np.ones((4, 100))))


def test_arviz_ess_bulk_reproduces_ar1_tau_int():
    x = ar1(0.9, 50_000, seed=42, n_chains=2)
    res = arviz_ess_bulk(x)
    assert res.method == "arviz-bulk"
    assert within_sigma(res.tau_int, tau_ar1(0.9), gamma_method(x).tau_int_err)
    with pytest.warns(AutocorrWarning, match="does not fluctuate"):
        assert arviz_ess_bulk(np.ones((2, 100))).ess == 0.0


def test_running_tau_int_ends_at_the_gamma_estimate_without_bias_correction():
    x = ar1(0.5, 20_000, seed=43)
    res = gamma_method(x, bias_correction=False)
    windows, tau, err = running_tau_int(res.rho, res.n)
    assert windows[0] == 0 and tau[0] == 0.5 and err[0] == 0.0
    assert tau[res.window] == pytest.approx(res.tau_int, rel=1e-12)
    assert np.all(np.diff(err[: res.window + 1]) >= 0)
