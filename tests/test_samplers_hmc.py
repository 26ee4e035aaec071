"""HMC: the AR(1) autocorrelation oracle, integrator reversibility, energy-error scaling, Creutz.

The non-reversible integrator (:class:`lattice_samplers.testing.broken.NonReversibleHMC`) must
fail the same reversibility and scaling checks that leapfrog and Omelyan pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import run_chains

from lattice_samplers.samplers import HMCSampler
from lattice_samplers.summary import summarize_series
from lattice_samplers.testing.broken import NonReversibleHMC
from lattice_samplers.testing.checks import check_mean
from lattice_samplers.theory import Phi4Theory

L8 = Phi4Theory.create(8, "ising", beta=0.576, lam=0.5)


def exact_ar1_tau(m2: float, step_size: float, n_leapfrog: int) -> float:
    """tau_int of the free-field magnetization under HMC without accept/reject (albergo form).

    The zero mode is a harmonic oscillator with omega0^2 = 2 m2; leapfrog rotates it by theta,
    cos(theta) = 1 - eps^2 omega0^2 / 2, so m_t is AR(1) with c = cos(n theta).
    """
    theta = math.acos(1.0 - step_size**2 * 2.0 * m2 / 2.0)
    c = math.cos(n_leapfrog * theta)
    return (1.0 + c) / (2.0 * (1.0 - c))


def test_ar1_oracle_value_from_physics_notes() -> None:
    assert exact_ar1_tau(1.0, 0.1, 4) == pytest.approx(5.909, abs=5e-4)


def test_free_field_hmc_without_accept_reject_is_exact_ar1() -> None:
    """tau_int of the magnetization equals the exact AR(1) value within its Gamma error."""
    theory = Phi4Theory.create(8, "albergo", m2=1.0, lam=0.0)
    sampler = HMCSampler(theory, step_size=0.1, n_leapfrog=4, metropolis=False, tune=False)
    result = run_chains(sampler, 60_000, n_therm=200, n_chains=4, seed=2024)
    assert np.all(result.stats["accepted"] == 1.0)
    s = summarize_series(result.observables["magnetization"])
    tau = exact_ar1_tau(1.0, 0.1, 4)
    assert abs(s["tau_int"] - tau) <= 2.0 * s["tau_int_err"], (s["tau_int"], s["tau_int_err"], tau)
    assert s["tau_int_err"] < 0.1 * tau  # the check has teeth: a 10% error would be caught


def _equilibrium_field(seed: int = 0) -> np.ndarray:
    result = run_chains(HMCSampler(L8), 50, n_therm=200, n_chains=1, seed=seed)
    return result.final_phi[0]


def is_reversible(sampler: HMCSampler, phi: np.ndarray, tol: float = 1e-12) -> bool:
    """Forward trajectory, momentum flip, forward again: back to the start within ``tol``?"""
    p0 = np.random.default_rng(5).standard_normal(phi.shape)
    phi1, p1 = sampler.integrate(phi, p0)
    phi2, p2 = sampler.integrate(phi1, -p1)
    moved = np.max(np.abs(phi1 - phi))
    assert moved > 1e-2  # the trajectory really went somewhere
    return bool(np.max(np.abs(phi2 - phi)) < tol and np.max(np.abs(p2 + p0)) < tol)


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_integrators_are_reversible(integrator: str) -> None:
    sampler = HMCSampler(L8, step_size=0.1, n_leapfrog=10, integrator=integrator)
    assert is_reversible(sampler, _equilibrium_field())


def test_nonreversible_integrator_fails_reversibility() -> None:
    sampler = NonReversibleHMC(L8, step_size=0.1, n_leapfrog=10)
    assert not is_reversible(sampler, _equilibrium_field())


def energy_error_slope(integrator: str, broken: str = "") -> float:
    """Slope of log <|delta_H|> against log step_size at fixed trajectory length 1."""
    phi0 = _equilibrium_field(1)
    sizes = np.array([0.2, 0.1, 0.05, 0.025])
    mean_abs = []
    for eps in sizes:
        sampler = (NonReversibleHMC if broken == "nonreversible" else HMCSampler)(
            L8,
            step_size=float(eps),
            trajectory_length=1.0,
            integrator=integrator,
            tune=False,
        )
        result = run_chains(sampler, 400, n_therm=50, n_chains=2, seed=3, phi0=phi0)
        mean_abs.append(np.mean(np.abs(result.stats["delta_h"])))
    return float(np.polyfit(np.log(sizes), np.log(mean_abs), 1)[0])


def scaling_ok(slope: float) -> bool:
    """A second-order integrator: <|delta_H|> ~ step_size^2."""
    return abs(slope - 2.0) < 0.3


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_energy_error_scales_as_step_size_squared(integrator: str) -> None:
    slope = energy_error_slope(integrator)
    assert scaling_ok(slope), slope


def test_nonreversible_integrator_fails_the_scaling_check() -> None:
    slope = energy_error_slope("leapfrog", broken="nonreversible")
    assert not scaling_ok(slope), slope


def test_omelyan_has_smaller_energy_error_than_leapfrog() -> None:
    phi0 = _equilibrium_field(2)
    errors = {}
    for integrator in ("leapfrog", "omelyan"):
        sampler = HMCSampler(L8, step_size=0.2, n_leapfrog=5, integrator=integrator, tune=False)
        result = run_chains(sampler, 400, n_chains=2, seed=4, phi0=phi0)
        errors[integrator] = np.mean(np.abs(result.stats["delta_h"]))
    assert errors["omelyan"] < 0.3 * errors["leapfrog"], errors


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_creutz_equality(integrator: str) -> None:
    """<exp(-delta_H)> = 1 within its error, at the tuned step size (acceptance ~ 0.8)."""
    sampler = HMCSampler(L8, integrator=integrator)
    result = run_chains(sampler, 10_000, n_therm=1000, n_chains=4, seed=6)
    assert result.acceptance == pytest.approx(0.8, abs=0.05)
    check = check_mean(result.stats["exp_minus_delta_h"], 1.0, k=4.0)
    assert check, check
    assert check.err < 0.02  # informative: exp(-delta_H) fluctuates at this step size


def test_nonfinite_delta_h_is_rejected_and_counted() -> None:
    """A step size far beyond stability blows the energy up; such trajectories are rejected."""
    theory = Phi4Theory.create(4, "ising", beta=0.5, lam=2.0)
    sampler = HMCSampler(theory, step_size=3.0, n_leapfrog=40, tune=False)
    phi0 = np.full(theory.shape, 0.8)
    with np.errstate(all="ignore"):
        result = run_chains(sampler, 20, n_chains=1, seed=0, phi0=phi0)
    dh = result.stats["delta_h"][0]
    assert np.any(~np.isfinite(dh))
    assert np.all(result.stats["accepted"][0][~np.isfinite(dh)] == 0.0)
    assert np.all(result.final_phi == phi0)  # nothing was accepted: the start is kept
    from lattice_samplers.summary import diagnostics

    assert diagnostics(result)["n_nonfinite_delta_h"] == int(np.sum(~np.isfinite(dh)))
