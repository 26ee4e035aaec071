"""Observables against explicit loops, their identities, and the jackknife's error estimates."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lattice_samplers import observables as obs
from lattice_samplers.exact import FreeFieldSampler, free_correlation_length
from lattice_samplers.theory import Phi4Theory

THEORIES = [
    Phi4Theory.create(4, "ising", beta=0.6, lam=0.5),
    Phi4Theory.create(5, "albergo", m2=-4.0, lam=6.0),
    Phi4Theory.create(5, "standard", m2=0.3, g=1.2),
    Phi4Theory.create(2, "kappa", kappa=0.3, lam=0.02),
]


def random_fields(L: int, n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.3, 1.0, size=(n, L, L))


# ----------------------------------------------------------------------------- slow twins
def loop_scalars(theory: Phi4Theory, phi: np.ndarray) -> dict[str, float]:
    L, V = phi.shape[0], phi.size
    h, c2, c4 = theory.hopping
    M = s2 = hop = action = 0.0
    for i in range(L):
        for j in range(L):
            p = phi[i, j]
            nb = phi[(i + 1) % L, j] + phi[i, (j + 1) % L]
            M += p
            s2 += p * p
            hop += p * nb
            action += -h * p * nb + c2 * p * p + c4 * p**4
    return {
        "magnetization": M / V,
        "abs_magnetization": abs(M) / V,
        "two_point_susceptibility": M * M / V,
        "action_density": action / V + theory.c0,
        "phi2": s2 / V,
        "ising_energy": hop / V,
    }


def loop_two_point(phi: np.ndarray) -> np.ndarray:
    L, V = phi.shape[0], phi.size
    g = np.zeros((L, L))
    for x0 in range(L):
        for x1 in range(L):
            for y0 in range(L):
                for y1 in range(L):
                    g[x0, x1] += phi[y0, y1] * phi[(y0 + x0) % L, (y1 + x1) % L]
    return g / V


def loop_two_point_momentum(phi: np.ndarray) -> np.ndarray:
    L, V = phi.shape[0], phi.size
    out = np.zeros((L, L))
    for n0 in range(L):
        for n1 in range(L):
            ft = sum(
                phi[y0, y1] * np.exp(-2j * np.pi * (n0 * y0 + n1 * y1) / L)
                for y0 in range(L)
                for y1 in range(L)
            )
            out[n0, n1] = abs(ft) ** 2 / V
    return out


def loop_zero_momentum(phi: np.ndarray) -> np.ndarray:
    """Time along axis 0."""
    L, V = phi.shape[0], phi.size
    slices = [phi[t].sum() for t in range(L)]
    return np.array(
        [sum(slices[t0] * slices[(t0 + t) % L] for t0 in range(L)) / V for t in range(L)]
    )


@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: f"{t.parametrization}-L{t.L}")
def test_scalar_series_match_loops_and_reference_action(theory: Phi4Theory) -> None:
    phi = random_fields(theory.L)
    got = obs.measure(theory, phi)
    assert tuple(got) == obs.SCALAR_OBSERVABLES
    for k, conf in enumerate(phi):
        ref = loop_scalars(theory, conf)
        for name in obs.SCALAR_OBSERVABLES:
            assert got[name][k] == pytest.approx(ref[name], rel=1e-12, abs=1e-12), name
    np.testing.assert_allclose(
        got["action_density"], theory.action(phi) / theory.volume, rtol=1e-12
    )
    # the standalone functions are the same definitions
    np.testing.assert_allclose(obs.magnetization(phi), got["magnetization"], rtol=1e-14)
    np.testing.assert_allclose(obs.abs_magnetization(phi), got["abs_magnetization"], rtol=1e-14)
    np.testing.assert_allclose(
        obs.two_point_susceptibility(phi), got["two_point_susceptibility"], rtol=1e-12
    )
    np.testing.assert_allclose(obs.phi2(phi), got["phi2"], rtol=1e-14)
    np.testing.assert_allclose(obs.ising_energy(phi), got["ising_energy"], rtol=1e-14)
    np.testing.assert_allclose(obs.action_density(theory, phi), got["action_density"], rtol=1e-14)


def test_single_configuration_and_extra_leading_axes() -> None:
    theory = THEORIES[0]
    phi = random_fields(theory.L, n=6).reshape(2, 3, theory.L, theory.L)
    batch = obs.measure(theory, phi)
    single = obs.measure(theory, phi[1, 2])
    for name in obs.SCALAR_OBSERVABLES:
        assert batch[name].shape == (2, 3)
        assert np.shape(single[name]) == ()
        assert single[name] == pytest.approx(batch[name][1, 2], rel=1e-14)
    assert obs.two_point_function(phi).shape == (2, 3, theory.L, theory.L)
    assert obs.zero_momentum_correlator(phi).shape == (2, 3, theory.L)
    with pytest.raises(ValueError):
        obs.measure(theory, np.zeros((3, theory.L + 1, theory.L + 1)))
    with pytest.raises(ValueError):
        obs.magnetization(np.zeros(4))


@pytest.mark.parametrize("L", [2, 4, 5])
def test_correlators_match_loops(L: int) -> None:
    phi = random_fields(L, n=2, seed=L)
    g = obs.two_point_function(phi)
    gk = obs.two_point_momentum(phi)
    c_time0 = obs.zero_momentum_correlator(phi, average_directions=False)
    c_avg = obs.zero_momentum_correlator(phi)
    for k, conf in enumerate(phi):
        np.testing.assert_allclose(g[k], loop_two_point(conf), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(gk[k], loop_two_point_momentum(conf), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c_time0[k], loop_zero_momentum(conf), rtol=1e-12, atol=1e-13)
        both = 0.5 * (loop_zero_momentum(conf) + loop_zero_momentum(conf.T))
        np.testing.assert_allclose(c_avg[k], both, rtol=1e-12, atol=1e-13)
    pmin = 0.5 * (gk[:, 1 % L, 0] + gk[:, 0, 1 % L])
    np.testing.assert_allclose(obs.two_point_pmin(phi), pmin, rtol=1e-14)


def test_two_point_identities_and_translation_invariance() -> None:
    L = 6
    phi = random_fields(L, n=4, seed=1)
    g = obs.two_point_function(phi)
    np.testing.assert_allclose(g.sum(axis=(1, 2)), obs.two_point_susceptibility(phi), rtol=1e-12)
    np.testing.assert_allclose(g[:, 0, 0], obs.phi2(phi), rtol=1e-12)
    np.testing.assert_allclose(g[:, 1, 0] + g[:, 0, 1], obs.ising_energy(phi), rtol=1e-12)
    np.testing.assert_allclose(obs.two_point_momentum(phi)[:, 0, 0], g.sum(axis=(1, 2)))
    c = obs.zero_momentum_correlator(phi)
    np.testing.assert_allclose(c.sum(axis=1), obs.two_point_susceptibility(phi), rtol=1e-12)
    np.testing.assert_allclose(c[:, 1:], c[:, :0:-1], rtol=1e-12)  # C(t) = C(L - t)
    shifted = np.roll(phi, (2, -1), axis=(1, 2))
    np.testing.assert_allclose(obs.two_point_function(shifted), g, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(obs.zero_momentum_correlator(shifted), c, rtol=1e-12)
    for name, value in obs.measure(THEORIES[0].with_L(L), shifted).items():
        np.testing.assert_allclose(value, obs.measure(THEORIES[0].with_L(L), phi)[name])


def test_effective_mass_exact_on_cosh_and_quiet_nan() -> None:
    L, m = 12, 0.37
    t = np.arange(L)
    c = 2.5 * np.cosh(m * (t - L / 2))
    m_eff = obs.effective_mass(np.stack([c, 3 * c]))
    assert np.isnan(m_eff[:, 0]).all()  # the cusp of the periodic correlator
    np.testing.assert_allclose(m_eff[:, 1:], m, rtol=1e-10)
    bad = c.copy()
    bad[3] = -1.0  # C <= 0 there; ratio < 1 at its neighbours' neighbours is also undefined
    bad[7] = 0.0
    bad[9] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m_eff = obs.effective_mass(bad)
    assert np.isnan(m_eff[[0, 2, 3, 4, 6, 7, 8, 9, 10]]).all()
    np.testing.assert_allclose(m_eff[[1, 5, 11]], m, rtol=1e-10)
    # a correlator that rises: arccosh argument < 1
    rising = obs.effective_mass(np.array([1.0, 2.0, 3.0, 2.0]))
    assert np.isnan(rising[2]) and rising[1] == 0.0 and rising[3] == 0.0


# ----------------------------------------------------------------------------- jackknife
def test_jackknife_matches_manual_leave_one_bin_out() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 1.0, 100), rng.normal(2.0, 1.0, 100)

    # linear func, equal bins: the error is the standard error of the bin means
    value, err = obs.jackknife(lambda x: x, a, n_bins=10)
    bm = a.reshape(10, 10).mean(axis=1)
    assert value == pytest.approx(a.mean(), rel=1e-14)
    assert err == pytest.approx(bm.std(ddof=1) / np.sqrt(10), rel=1e-12)

    # nonlinear func of two series, uneven bins (100 draws into 7 bins)
    def ratio(x, y):
        return x / y

    value, err = obs.jackknife(ratio, a, b, n_bins=7)
    parts = np.array_split(np.arange(100), 7)
    thetas = [np.delete(a, p).mean() / np.delete(b, p).mean() for p in parts]
    assert value == pytest.approx(a.mean() / b.mean(), rel=1e-14)
    assert err == pytest.approx(np.sqrt(6 / 7 * np.sum((thetas - np.mean(thetas)) ** 2)), rel=1e-12)

    # bin_size: 100 // 25 = 4 bins
    _, err4 = obs.jackknife(lambda x: x, a, bin_size=25)
    assert err4 == pytest.approx(obs.jackknife(lambda x: x, a, n_bins=4)[1], rel=1e-14)


def test_jackknife_bins_stay_within_chains_and_vector_output() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 40)) + np.array([[0.0], [5.0], [-2.0]])  # chains differ a lot
    value, err = obs.jackknife(lambda m: m, x, n_bins=6, chains=True)  # 2 bins per chain
    blocks = x.reshape(3, 2, 20).reshape(6, 20)  # bins are halves of each chain
    thetas = [np.delete(blocks, b, axis=0).mean() for b in range(6)]
    assert value == pytest.approx(x.mean(), rel=1e-14)
    assert err == pytest.approx(np.sqrt(5 / 6 * np.sum((thetas - np.mean(thetas)) ** 2)), rel=1e-12)
    # a bin straddling chains would have mixed the offsets: compare with flattened binning
    flat_err = obs.jackknife(lambda m: m, x.T.reshape(-1), n_bins=6)[1]
    assert abs(flat_err - err) > 0.1 * err

    # vector-valued func over a series with a trailing axis
    g = rng.normal(size=(50, 4))
    value, err = obs.jackknife(lambda m: m**2, g, n_bins=5)
    assert value.shape == err.shape == (4,)
    for i in range(4):
        vi, ei = obs.jackknife(lambda m: m**2, g[:, i], n_bins=5)
        assert value[i] == pytest.approx(vi) and err[i] == pytest.approx(ei)

    short = rng.normal(size=10)
    with pytest.raises(ValueError):
        obs.jackknife(lambda u, v: u, short, short[:5])
    with pytest.raises(ValueError):
        obs.jackknife(lambda u: u, rng.normal(size=10), n_bins=1)
    with pytest.raises(ValueError):
        obs.jackknife(lambda u: u, rng.normal(size=(1, 10)), bin_size=20, chains=True)


def ar1_replicas(a: float, n_rep: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eps = rng.normal(size=(n_rep, n))
    x = np.empty_like(eps)
    x[:, 0] = eps[:, 0]  # stationary start: unit variance
    s = np.sqrt(1 - a * a)
    for t in range(1, n):
        x[:, t] = a * x[:, t - 1] + s * eps[:, t]
    return x


def mean_error_ratio(series: np.ndarray, true_err: float, **jk) -> float:
    """Average jackknife error of the mean over replicas, relative to the exact error."""
    errs = [obs.jackknife(lambda m: m, x, **jk)[1] for x in series]
    return float(np.mean(errs)) / true_err


def test_jackknife_error_accounts_for_autocorrelation() -> None:
    a, n = 0.8, 4000
    tau_int = (1 + a) / (2 * (1 - a))  # 4.5
    true_err = np.sqrt(2 * tau_int / n)  # unit variance, lattice convention
    x = ar1_replicas(a, 200, n, seed=5)
    # 20 bins of 200 >> tau_int: biased low by ~2 % (finite bins, E[sqrt]); scatter ~1 %
    assert abs(mean_error_ratio(x, true_err, n_bins=20) - 1) < 0.1
    # negative control: bins of one draw ignore autocorrelation, ratio ~ 1 / sqrt(2 tau_int)
    assert abs(mean_error_ratio(x[:10], true_err, bin_size=1) - 1) > 0.5


# ----------------------------------------------------------------------------- derived
def within_k_sigma(value: float, err: float, expected: float, k: float = 4.0) -> bool:
    return bool(np.isfinite(value) and abs(value - expected) < k * err)


def test_binder_and_connected_susceptibility_on_known_distributions() -> None:
    rng = np.random.default_rng(6)
    V, sigma = 64, 0.2
    gauss = rng.normal(0.0, sigma, size=(4, 5000))  # four chains of m
    u, u_err = obs.binder_cumulant(gauss, chains=True)
    chi, chi_err = obs.connected_susceptibility(gauss, V, chains=True)
    assert within_k_sigma(u, u_err, 0.0)
    assert within_k_sigma(chi, chi_err, V * sigma**2 * (1 - 2 / np.pi))
    # negative control: a two-peaked (ordered) magnetization has U ~ 2/3 and a small chi
    ordered = rng.choice([-1.0, 1.0], size=(4, 5000)) * 0.5 + rng.normal(0, 0.02, (4, 5000))
    u_o, u_o_err = obs.binder_cumulant(ordered, chains=True)
    chi_o, chi_o_err = obs.connected_susceptibility(ordered, V, chains=True)
    assert not within_k_sigma(u_o, u_o_err, 0.0)
    assert not within_k_sigma(chi_o, chi_o_err, V * sigma**2 * (1 - 2 / np.pi))
    assert u_o == pytest.approx(2 / 3, abs=0.01)


def free_xi_check(sampler: FreeFieldSampler, expected: float, seed: int) -> bool:
    phi, _ = sampler.sample(3000, np.random.default_rng(seed))
    xi, err = obs.second_moment_correlation_length(
        obs.two_point_susceptibility(phi), obs.two_point_pmin(phi), phi.shape[-1]
    )
    return within_k_sigma(xi, err, expected)


def test_second_moment_xi_on_exact_free_samples() -> None:
    L = 8
    theory = Phi4Theory.create(L, "standard", m2=(4 / L) ** 2, g=0.0)
    assert free_correlation_length(theory) == pytest.approx(L / 4, rel=1e-12)
    assert free_xi_check(FreeFieldSampler(theory), L / 4, seed=7)
    # negative control: samples with xi = L / 2.5 must not pass as xi = L / 4
    wrong = Phi4Theory.create(L, "standard", m2=(2.5 / L) ** 2, g=0.0)
    assert not free_xi_check(FreeFieldSampler(wrong), L / 4, seed=7)
    assert np.isnan(obs.second_moment_xi(1.0, 2.0, L))
