"""Exact results: free field, free-field sampler, one site, and the 2 x 2 lattice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import gamma

from lattice_samplers import exact
from lattice_samplers import observables as obs
from lattice_samplers.theory import Phi4Theory

FREE = [
    Phi4Theory.create(8, "standard", m2=0.25, g=0.0),
    Phi4Theory.create(6, "albergo", m2=0.7, lam=0.0),
    Phi4Theory.create(5, "ising", beta=0.4, lam=0.0),
    Phi4Theory.create(4, "kappa", kappa=-0.2, lam=0.0),  # negative hopping: staggered soft mode
]
INTERACTING_L2 = [
    Phi4Theory.create(2, "ising", beta=0.5, lam=0.5),
    Phi4Theory.create(2, "albergo", m2=-4.0, lam=2.0),
    Phi4Theory.create(2, "ising", beta=1.5, lam=0.1),
]


def ids(t: Phi4Theory) -> str:
    return f"{t.parametrization}-L{t.L}-" + "-".join(f"{v:g}" for v in t.values)


def dense_kernel(theory: Phi4Theory) -> np.ndarray:
    """K as a V x V matrix from the reference force: for c4 = 0, dS/dphi = K phi."""
    V, shape = theory.volume, theory.shape
    return np.stack([theory.force(e.reshape(shape)).ravel() for e in np.eye(V)], axis=1)


# ----------------------------------------------------------------------------- free field
@pytest.mark.parametrize(
    ("L", "phi2"), [(8, 0.385501), (12, 0.454090), (20, 0.538151)], ids=["L8", "L12", "L20"]
)
def test_free_values_from_physics_reference(L: int, phi2: float) -> None:
    m2 = (4 / L) ** 2
    standard = Phi4Theory.create(L, "standard", m2=m2, g=0.0)
    assert exact.free_phi2(standard) == pytest.approx(phi2, abs=6e-7)
    assert exact.free_susceptibility(standard) == pytest.approx(1 / m2, rel=1e-12)
    assert exact.free_action_density(standard) == 0.5
    assert exact.free_correlation_length(standard) == pytest.approx(L / 4, rel=1e-12)
    albergo = Phi4Theory.create(L, "albergo", m2=m2, lam=0.0)  # no 1/2: two-point halves
    np.testing.assert_allclose(
        exact.free_two_point(albergo), exact.free_two_point(standard) / 2, rtol=1e-12
    )
    assert exact.free_susceptibility(albergo) == pytest.approx(1 / (2 * m2), rel=1e-12)


@pytest.mark.parametrize("theory", FREE, ids=ids)
def test_free_two_point_is_inverse_of_the_reference_kernel(theory: Phi4Theory) -> None:
    g = exact.free_two_point(theory)
    g_dense = np.linalg.inv(dense_kernel(theory))[0].reshape(theory.shape)
    np.testing.assert_allclose(g, g_dense, rtol=1e-10, atol=1e-13)
    assert exact.free_phi2(theory) == pytest.approx(g[0, 0], rel=1e-12)
    assert exact.free_susceptibility(theory) == pytest.approx(g.sum(), rel=1e-10)
    assert exact.free_action_density(theory) == 0.5 + theory.c0
    np.testing.assert_allclose(exact.free_zero_momentum_correlator(theory), g.sum(axis=1))


def test_free_results_follow_field_rescaling() -> None:
    standard = FREE[0]
    ising = standard.to("ising")
    a = standard.field_scale_to(ising)  # phi_standard = a phi_ising
    np.testing.assert_allclose(
        exact.free_two_point(standard), a**2 * exact.free_two_point(ising), rtol=1e-12
    )
    assert exact.free_action_density(ising) == 0.5 + ising.c0


def test_free_effective_mass_is_the_lattice_pole() -> None:
    theory = Phi4Theory.create(16, "standard", m2=0.09, g=0.0)
    m_eff = obs.effective_mass(exact.free_zero_momentum_correlator(theory))
    pole = math.acosh(theory.c2 / theory.h - 1)  # = arccosh(1 + m2 / 2)
    np.testing.assert_allclose(m_eff[1:], pole, rtol=1e-9)


def test_free_functions_reject_interacting_theories() -> None:
    theory = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
    for func in (
        exact.free_propagator_momentum,
        exact.free_two_point,
        exact.free_phi2,
        exact.free_susceptibility,
        exact.free_action_density,
        exact.free_zero_momentum_correlator,
        exact.free_correlation_length,
        exact.FreeFieldSampler,
    ):
        with pytest.raises(ValueError, match="c4 == 0"):
            func(theory)


# ----------------------------------------------------------------------------- sampler
def log_density_defect(log_q: np.ndarray, action: np.ndarray, log_z: float) -> tuple[float, float]:
    """(spread, offset) of log_q + S: both vanish for an exact normalized density."""
    total = log_q + action
    return float(total.max() - total.min()), float(total.mean() + log_z)


@pytest.mark.parametrize("theory", FREE, ids=ids)
def test_sampler_log_q_is_exact_normalized_density(theory: Phi4Theory) -> None:
    sampler = exact.FreeFieldSampler(theory)
    phi, log_q = sampler.sample(200, np.random.default_rng(0))
    action = theory.action(phi)
    # log Z from the dense reference kernel: Z = (2 pi)^(V/2) det(K)^(-1/2) exp(-V c0)
    log_z = (
        0.5 * theory.volume * math.log(2 * math.pi)
        - 0.5 * np.linalg.slogdet(dense_kernel(theory))[1]
        - theory.volume * theory.c0
    )
    assert sampler.log_z == pytest.approx(log_z, rel=1e-10, abs=1e-10)
    spread, offset = log_density_defect(log_q, action, log_z)
    assert spread < 1e-9 and abs(offset) < 1e-9
    np.testing.assert_allclose(sampler.log_prob(phi), log_q, rtol=0, atol=1e-12)
    assert sampler.log_prob(phi[0]) == pytest.approx(log_q[0], abs=1e-12)

    # negative control 1: the density of another mass is not exp(-S) up to a constant
    other = exact.FreeFieldSampler(Phi4Theory.create(theory.L, "standard", m2=1.3, g=0.0))
    spread, _ = log_density_defect(other.log_prob(phi), action, log_z)
    assert spread > 1.0
    # negative control 2: dropping the log-det keeps the constant but loses the normalization
    no_logdet = log_q - 0.5 * np.log(exact.free_kernel_momentum(theory)).sum()
    spread, offset = log_density_defect(no_logdet, action, log_z)
    assert spread < 1e-9 and abs(offset) > 1e-3


def test_sampler_reproducible_shapes_and_validation() -> None:
    sampler = exact.FreeFieldSampler(FREE[1])
    a, la = sampler.sample(5, np.random.default_rng(42))
    b, lb = sampler.sample(5, np.random.default_rng(42))
    assert a.shape == (5, 6, 6) and la.shape == (5,)
    assert a.dtype == np.float64 and la.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert sampler.sample(0, np.random.default_rng(1))[0].shape == (0, 6, 6)
    with pytest.raises(ValueError):
        sampler.sample(-1, np.random.default_rng(1))
    with pytest.raises(ValueError):
        sampler.log_prob(np.zeros((2, 5, 5)))


def max_abs_z(samples: np.ndarray, expected: np.ndarray | float) -> float:
    """Largest |mean - expected| / (std / sqrt(n)) over the trailing axes; independent samples."""
    n = samples.shape[0]
    se = samples.std(axis=0, ddof=1) / math.sqrt(n)
    return float(np.max(np.abs((samples.mean(axis=0) - expected) / se)))


def free_sample_z(sampler: exact.FreeFieldSampler, target: Phi4Theory, n: int, seed: int) -> float:
    """Worst z-score of sampled G(x), <phi^2>, chi_2, <S>/V against the exact free values."""
    phi, _ = sampler.sample(n, np.random.default_rng(seed))
    series = obs.measure(target, phi)
    return max(
        max_abs_z(obs.two_point_function(phi), exact.free_two_point(target)),
        max_abs_z(series["phi2"], exact.free_phi2(target)),
        max_abs_z(series["two_point_susceptibility"], exact.free_susceptibility(target)),
        max_abs_z(series["action_density"], exact.free_action_density(target)),
    )


@pytest.mark.parametrize("theory", FREE[:3], ids=ids)
def test_sampler_reproduces_exact_free_moments(theory: Phi4Theory) -> None:
    k = 4.5  # ~70 correlated comparisons per theory, fixed seeds
    assert free_sample_z(exact.FreeFieldSampler(theory), theory, 4000, seed=1) < k
    # negative control: samples of a 25 % heavier mass must fail the same check
    h, c2, _ = theory.hopping
    k0 = 2 * c2 - 4 * h  # K(0), the squared mass in the normalization of the theory
    heavier = Phi4Theory.create(theory.L, "standard", m2=1.25 * k0 / h, g=0.0)
    wrong = _Scaled(exact.FreeFieldSampler(heavier), 1 / math.sqrt(h))  # to h = 1 and back
    assert free_sample_z(wrong, theory, 4000, seed=1) > k
    # the scaling itself is right: the same construction at the true mass passes
    same = Phi4Theory.create(theory.L, "standard", m2=k0 / h, g=0.0)
    assert (
        free_sample_z(_Scaled(exact.FreeFieldSampler(same), 1 / math.sqrt(h)), theory, 4000, 2) < k
    )


class _Scaled:
    """A sampler whose fields are multiplied by a (log_q is not needed here)."""

    def __init__(self, sampler: exact.FreeFieldSampler, a: float) -> None:
        self.sampler, self.a = sampler, a

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        phi, log_q = self.sampler.sample(n, rng)
        return self.a * phi, log_q


# ----------------------------------------------------------------------------- one site
def test_one_site_moments_closed_forms() -> None:
    c2 = 0.7
    np.testing.assert_allclose(
        exact.one_site_moments(c2, 0.0, [0, 1, 2, 3, 4]),
        [1.0, 0.0, 1 / (2 * c2), 0.0, 3 / (4 * c2**2)],
        rtol=1e-11,
    )
    np.testing.assert_allclose(
        exact.one_site_moments(0.0, 1.0, [2, 4]), [gamma(0.75) / gamma(0.25), 0.25], rtol=1e-11
    )
    # deep double well against a fine brute-force grid
    x = np.linspace(-6, 6, 200001)
    w = np.exp(-(-3.0 * x**2 + 0.5 * x**4) - 4.5)
    brute = [np.sum(w * x**p) / np.sum(w) for p in (2, 4, 6)]
    np.testing.assert_allclose(exact.one_site_moments(-3.0, 0.5, [2, 4, 6]), brute, rtol=1e-10)
    with pytest.raises(ValueError):
        exact.one_site_moments(-1.0, 0.0, [2])


# ----------------------------------------------------------------------------- 2 x 2 lattice
def test_tiny_lattice_free_case_matches_free_field() -> None:
    theory = Phi4Theory.create(2, "standard", m2=0.5, g=0.0)
    tiny = exact.tiny_lattice_moments(theory)
    assert tiny["phi2"] == pytest.approx(exact.free_phi2(theory), rel=1e-11)
    assert tiny["two_point_susceptibility"] == pytest.approx(
        exact.free_susceptibility(theory), rel=1e-11
    )
    assert tiny["action_density"] == pytest.approx(exact.free_action_density(theory), rel=1e-11)
    assert tiny["log_z"] == pytest.approx(exact.FreeFieldSampler(theory).log_z, rel=1e-11)
    # Gaussian magnetization: <|m|> = sqrt(2 <m^2> / pi), <m^4> = 3 <m^2>^2
    assert tiny["abs_magnetization"] == pytest.approx(
        math.sqrt(2 * tiny["m2"] / math.pi), rel=1e-11
    )
    assert tiny["binder_cumulant"] == pytest.approx(0.0, abs=1e-11)
    assert tiny["magnetization"] == 0.0


def test_tiny_lattice_without_hopping_is_one_site() -> None:
    theory = Phi4Theory.create(2, "ising", beta=0.0, lam=0.7)
    tiny = exact.tiny_lattice_moments(theory, n_nodes_abs=None)
    p2, p4 = exact.one_site_moments(theory.c2, theory.c4, [2, 4])
    assert tiny["phi2"] == pytest.approx(p2, rel=1e-11)
    assert tiny["two_point_susceptibility"] == pytest.approx(p2, rel=1e-11)  # no correlations
    assert tiny["m4"] == pytest.approx((4 * p4 + 36 * p2**2) / 4**4, rel=1e-11)
    assert "abs_magnetization" not in tiny


@pytest.mark.parametrize("theory", INTERACTING_L2[::2], ids=ids)
def test_tiny_lattice_quadrature_converges(theory: Phi4Theory) -> None:
    default = exact.tiny_lattice_moments(theory)
    fine = exact.tiny_lattice_moments(theory, n_nodes=600, n_nodes_abs=280)
    for key, value in fine.items():
        # connected_susceptibility cancels ~2 digits; the others agree to ~1e-13
        assert default[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    # two independent methods: ring transfer matrix vs pair-sum integral
    pair = exact._tiny_pair_moments(theory, 200)
    assert pair["m2"] == pytest.approx(fine["m2"], rel=1e-10)
    assert pair["log_z"] == pytest.approx(fine["log_z"], rel=1e-10)


def test_tiny_lattice_against_direct_4d_integral_of_reference_action() -> None:
    theory = INTERACTING_L2[0]
    tiny = exact.tiny_lattice_moments(theory)
    # trapezoid rule on a uniform 4-D grid: spectrally accurate for the smooth moments,
    # O(dx^2) for |m| (kink at M = 0)
    dx, x = 0.25, np.arange(-4.5, 4.5 + 1e-9, 0.25)
    phi = np.stack(np.meshgrid(x, x, x, x, indexing="ij"), axis=-1).reshape(-1, 2, 2)
    action = theory.action(phi)
    w = np.exp(-(action - action.min()))
    z = w.sum()
    series = obs.measure(theory, phi)
    for key in ("phi2", "two_point_susceptibility", "action_density", "ising_energy"):
        assert np.dot(w, series[key]) / z == pytest.approx(tiny[key], rel=1e-5), key
    assert math.log(z * dx**4) - action.min() == pytest.approx(tiny["log_z"], rel=1e-5)
    assert np.dot(w, series["abs_magnetization"]) / z == pytest.approx(
        tiny["abs_magnetization"], rel=2e-3
    )
    with pytest.raises(ValueError, match="L == 2"):
        exact.tiny_lattice_moments(theory.with_L(3))


def importance_z(
    target: Phi4Theory, expected: dict[str, float], n: int, seed: int, weighted: bool = True
) -> float:
    """Worst z-score of self-normalized importance-sampling estimates on L = 2.

    The proposal is an exact free field; weights w = exp(-S - log_q), errors by the delta
    method.  ``weighted=False`` drops the weights (a broken estimator).
    """
    proposal = exact.FreeFieldSampler(Phi4Theory.create(2, "ising", beta=0.4, lam=0.0))
    phi, log_q = proposal.sample(n, np.random.default_rng(seed))
    log_w = -target.action(phi) - log_q
    w = np.exp(log_w - log_w.max()) if weighted else np.ones(n)
    w /= w.sum()
    series = obs.measure(target, phi)
    worst = 0.0
    for key in ("phi2", "two_point_susceptibility", "action_density", "abs_magnetization"):
        est = np.dot(w, series[key])
        err = math.sqrt(np.dot(w * w, (series[key] - est) ** 2))
        worst = max(worst, abs(est - expected[key]) / err)
    return worst


def test_tiny_lattice_against_importance_sampling() -> None:
    target = INTERACTING_L2[0]
    expected = exact.tiny_lattice_moments(target)
    k = 4.0
    assert importance_z(target, expected, 20000, seed=3) < k
    # negative controls: ignoring the weights, or the exact values of another coupling
    assert importance_z(target, expected, 20000, seed=3, weighted=False) > k
    other = exact.tiny_lattice_moments(Phi4Theory.create(2, "ising", beta=0.6, lam=0.5))
    assert importance_z(target, other, 20000, seed=3) > k
