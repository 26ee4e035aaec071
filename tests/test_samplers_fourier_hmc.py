"""Fourier-accelerated HMC: the free-field map, exact oracles, and negative controls.

Oracles: with the matching mass the free field becomes a unit Gaussian in z, so (i) G dS/dphi
is the identity, (ii) without accept/reject the magnetization is exactly AR(1) with
c = cos(n theta), cos(theta) = 1 - eps^2 / 2 (every mode has omega = 1), (iii) the acceptance
is that of leapfrog on V independent unit oscillators, computed here from the 2 x 2 leapfrog
matrix.  Exact results (free <phi^2>, the interacting 2 x 2 lattice by quadrature) within
4 sigma of each run's own Gamma error.  The negative controls are test-only subclasses: a
non-reversible integrator (symplectic Euler) and no momentum refresh; each must fail.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from helpers import assert_same_run, run_chains

from lattice_samplers import exact
from lattice_samplers.kernels import fourier as kf
from lattice_samplers.samplers.fourier_hmc import FourierHMCSampler
from lattice_samplers.summary import summarize_series
from lattice_samplers.testing import check_mean
from lattice_samplers.theory import Phi4Theory

K_SIGMA = 4.0
FREE = Phi4Theory.create(8, "albergo", m2=1.0, lam=0.0)  # free M^2 = m2 = 1
TINY = Phi4Theory.create(2, "ising", beta=0.576, lam=0.5)
NAMES = ("abs_magnetization", "two_point_susceptibility", "action_density", "phi2", "ising_energy")


class NonReversible(FourierHMCSampler):
    """Test-only: symplectic Euler, kick(eps) drift(eps) per step (not time reversible)."""

    def _integrate(self, phi, u, gforce, step_size, buf):  # noqa: ANN001, ANN202
        for _ in range(int(self.settings.n_leapfrog)):
            kf.kick_drift(phi, u, gforce, step_size, step_size)
            gforce = self.gforce(phi, buf)
        return gforce


class NoRefresh(FourierHMCSampler):
    """Test-only: the momenta are drawn once and then carried, never refreshed (batched runs)."""

    carried = None

    def _fresh_velocity(self, states, rngs, buf):  # noqa: ANN001, ANN202
        if self.carried is None or self.carried.shape[0] != len(states):
            u, _ = super()._fresh_velocity(states, rngs, buf)
            self.carried = u.copy()
        return self.carried, self.kinetic(self.carried).copy()  # updated in place


class PerChain(FourierHMCSampler):
    """Test-only: the driver's per-chain path (the reference for the batched one)."""

    batched_chains = False


def _run(sampler: FourierHMCSampler, n_steps: int, seed: int, n_chains: int = 4):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # broken controls may overflow
        return run_chains(sampler, n_steps, n_therm=500, n_chains=n_chains, seed=seed)


# ----------------------------------------------------------------------- the map
def test_propagator_inverts_the_free_kernel() -> None:
    """With M^2 = 2 (c2 - 2h) / h, G~ is 1 / K of exact.py (half-spectrum columns)."""
    h, c2, _ = FREE.hopping
    g = kf.free_propagator(8, 8, h, kf.free_mass2(h, c2))
    kernel = exact.free_kernel_momentum(FREE)[:, :5]
    np.testing.assert_allclose(g * kernel, 1.0, rtol=1e-13)
    g_wrong = kf.free_propagator(8, 8, h, 0.5)
    assert np.max(np.abs(g_wrong * kernel - 1.0)) > 0.1


def test_gforce_is_the_identity_for_the_matching_free_field() -> None:
    """S(A z) = |z|^2 / 2 + const: the kick G dS/dphi equals phi (and not for another mass)."""
    phi = np.random.default_rng(1).standard_normal((3, 8, 8))
    np.testing.assert_allclose(FourierHMCSampler(FREE).gforce(phi), phi, atol=1e-12)
    other = FourierHMCSampler(FREE, mass=0.5).gforce(phi)
    assert np.max(np.abs(other - phi)) > 0.1


def test_kinetic_energy_of_fresh_momenta_is_half_xi_squared() -> None:
    sampler = FourierHMCSampler(Phi4Theory.create(6, "ising", beta=0.6, lam=0.5))
    sampler._ops()
    xi = np.random.default_rng(2).standard_normal((2, 6, 6))
    work = np.empty((2, 6, 4), dtype=complex)
    u = kf.sample_velocity(xi, sampler.sqrt_propagator, work, np.empty_like(xi))
    np.testing.assert_allclose(sampler.kinetic(u), 0.5 * np.sum(xi**2, axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(sampler.to_latent(u), xi, atol=1e-12)


def test_default_mass_is_valid_for_negative_quadratic_coefficients() -> None:
    theory = Phi4Theory.create(16, "albergo", m2=-4.0, lam=8.0)  # c2 = 0 < 2h
    sampler = FourierHMCSampler(theory)
    assert sampler.mass2 == pytest.approx((4.0 / 16) ** 2)
    assert FourierHMCSampler(FREE).mass2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mass"):
        FourierHMCSampler(FREE, mass=-1.0)


# ----------------------------------------------------------------------- free-field oracles
def exact_ar1_tau(step_size: float, n_leapfrog: int) -> float:
    """tau_int of the magnetization, every z mode a unit oscillator, no accept/reject."""
    c = math.cos(n_leapfrog * math.acos(1.0 - step_size**2 / 2.0))
    return (1.0 + c) / (2.0 * (1.0 - c))


def test_free_field_without_accept_reject_is_exact_ar1() -> None:
    sampler = FourierHMCSampler(FREE, step_size=0.25, n_leapfrog=4, trajectory_length=None)
    sampler = FourierHMCSampler(FREE, sampler.settings, metropolis=False, tune=False)
    result = _run(sampler, 5000, seed=7)
    assert np.all(result.stats["accepted"] == 1.0)
    s = summarize_series(result.observables["magnetization"])
    tau = exact_ar1_tau(0.25, 4)
    assert abs(s["tau_int"] - tau) <= 3.0 * s["tau_int_err"], (s["tau_int"], s["tau_int_err"], tau)
    assert s["tau_int_err"] < 0.1 * tau  # the check has teeth


def test_no_refresh_fails_the_ar1_oracle() -> None:
    sampler = NoRefresh(FREE, step_size=0.25, n_leapfrog=4, trajectory_length=None)
    sampler = NoRefresh(FREE, sampler.settings, metropolis=False, tune=False)
    s = summarize_series(_run(sampler, 5000, seed=7).observables["magnetization"])
    tau = exact_ar1_tau(0.25, 4)
    assert not abs(s["tau_int"] - tau) <= 3.0 * s["tau_int_err"]


def leapfrog_acceptance(volume: int, step_size: float, n_leapfrog: int, n: int = 400_000):
    """E min(1, exp(-dH)) for leapfrog on ``volume`` unit oscillators, from the 2 x 2 matrix."""
    half_kick = np.array([[1.0, 0.0], [-step_size / 2, 1.0]])
    drift = np.array([[1.0, step_size], [0.0, 1.0]])
    m = np.linalg.matrix_power(half_kick @ drift @ half_kick, n_leapfrog)
    rng = np.random.default_rng(3)
    p = np.empty(n)
    for start in range(0, n, 50_000):
        x = rng.standard_normal((50_000, volume, 2))
        dh = 0.5 * (np.sum((x @ m.T) ** 2, axis=(1, 2)) - np.sum(x**2, axis=(1, 2)))
        p[start : start + 50_000] = np.minimum(1.0, np.exp(-dh))
    return float(p.mean()), float(p.std() / math.sqrt(n))


def test_free_field_acceptance_is_that_of_unit_oscillators() -> None:
    eps, n_lf = 0.6, 3
    expected, err = leapfrog_acceptance(FREE.volume, eps, n_lf)
    assert 0.5 < expected < 0.95
    sampler = FourierHMCSampler(FREE, step_size=eps, n_leapfrog=n_lf, trajectory_length=None)
    sampler = FourierHMCSampler(FREE, sampler.settings, tune=False)
    result = _run(sampler, 3000, seed=5)
    check = check_mean(result.stats["acceptance_prob"], expected, K_SIGMA)
    assert check, check
    assert err < 0.3 * check.err  # the oracle's own error is negligible


# ----------------------------------------------------------------------- exact results
def test_free_field_phi2_with_a_mismatched_mass() -> None:
    """Any M > 0 is exact: <phi^2> with M^2 = 0.25 (the field's is 1)."""
    result = _run(FourierHMCSampler(FREE, mass=0.5), 2000, seed=3)
    check = check_mean(result.observables["phi2"], exact.free_phi2(FREE), K_SIGMA)
    assert check, check


@pytest.fixture(scope="module")
def tiny_exact() -> dict[str, float]:
    return exact.tiny_lattice_moments(TINY)


def tiny_checks(result, reference: dict[str, float]) -> dict:  # noqa: ANN001
    return {n: check_mean(result.observables[n], reference[n], K_SIGMA) for n in NAMES}


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_tiny_lattice_exact(integrator: str, tiny_exact: dict[str, float]) -> None:
    checks = tiny_checks(_run(FourierHMCSampler(TINY, integrator=integrator), 8000, 21), tiny_exact)
    failed = {k: c for k, c in checks.items() if not c}
    assert not failed, failed


@pytest.mark.parametrize("cls", [NonReversible, NoRefresh])
def test_negative_controls_fail_the_tiny_lattice_check(cls, tiny_exact) -> None:  # noqa: ANN001
    checks = tiny_checks(_run(cls(TINY, tune=False, step_size=0.5), 8000, 21), tiny_exact)
    assert not all(checks.values())


# ----------------------------------------------------------------------- reversibility, interface
L6 = Phi4Theory.create(6, "ising", beta=0.6, lam=0.5)


def test_reversibility_is_recorded_and_small() -> None:
    result = run_chains(FourierHMCSampler(L6, reversibility_every=5), 100, n_therm=50, seed=1)
    dz, dh = result.stats["reverse_max_dz"], result.stats["reverse_abs_dh"]
    assert np.count_nonzero(dz) == 20
    assert 0 < dz.max() < 1e-10 and dh.max() < 1e-9
    assert result.work["force_evaluations"] == 120 * result.settings["n_leapfrog"]


def test_nonreversible_integrator_is_caught_by_the_reversibility_check() -> None:
    result = run_chains(NonReversible(L6, reversibility_every=5), 100, n_therm=50, seed=1)
    assert result.stats["reverse_max_dz"].max() > 1e-3


def test_step_equals_run_bit_for_bit() -> None:
    sampler = FourierHMCSampler(L6, integrator="omelyan", reversibility_every=3)
    a = sampler.init(None, np.random.default_rng(0))
    b = a.copy()
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    infos = [sampler.step(a, rng_a)[1] for _ in range(12)]
    chain = sampler.run(b, 12, rng_b)
    np.testing.assert_array_equal(a.phi, b.phi)
    np.testing.assert_array_equal(a.aux["gforce"], b.aux["gforce"])
    for name in sampler.stat_names:
        np.testing.assert_array_equal([i.stats[name] for i in infos], chain.stats[name])
    assert rng_a.standard_normal() == rng_b.standard_normal()


def test_resume_and_workers_are_bit_identical(tmp_path) -> None:  # noqa: ANN001
    args = {"n_therm": 40, "thin": 2, "n_chains": 2, "seed": 11, "block_size": 10}
    straight = run_chains(FourierHMCSampler(L6), 60, **args)
    ckpt = tmp_path / "run.ckpt"
    run_chains(FourierHMCSampler(L6), 30, checkpoint_path=ckpt, **args)
    resumed = run_chains(FourierHMCSampler(L6), 60, checkpoint_path=ckpt, resume=True, **args)
    assert_same_run(straight, resumed)
    assert_same_run(straight, run_chains(FourierHMCSampler(L6), 60, workers=2, **args))


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_batched_chains_equal_the_per_chain_path_bit_for_bit(integrator: str) -> None:
    args = {"n_therm": 40, "thin": 2, "n_chains": 3, "seed": 4, "block_size": 10}
    settings = {"integrator": integrator, "reversibility_every": 7}
    batched = run_chains(FourierHMCSampler(L6, **settings), 60, **args)
    per_chain = run_chains(PerChain(L6, **settings), 60, **args)
    assert_same_run(batched, per_chain)
    assert np.count_nonzero(batched.stats["reverse_max_dz"]) > 0
    assert_same_run(per_chain, run_chains(PerChain(L6, **settings), 60, workers=2, **args))
