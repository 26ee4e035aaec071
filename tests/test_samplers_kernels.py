"""The compiled kernels against slow Python/NumPy twins fed the same random stream."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_samplers.kernels import cluster as kcl
from lattice_samplers.kernels import common as kcommon
from lattice_samplers.kernels import counter_rng as krng
from lattice_samplers.kernels import hmc as khmc
from lattice_samplers.kernels import metropolis as kmet
from lattice_samplers.samplers import HMCSampler
from lattice_samplers.testing.broken import bond_always, recompile, reversed_accept_test
from lattice_samplers.theory import Phi4Theory

SIZES = [2, 3, 4, 5, 8]


def _theory(L: int) -> Phi4Theory:
    return Phi4Theory.create(L, "ising", beta=0.55, lam=0.7)


def _field(L: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.8, (L, L))


def splitmix64_twin(key: int, index: np.ndarray) -> np.ndarray:
    """NumPy twin of counter_rng.splitmix64 (uint64 arithmetic wraps modulo 2^64)."""
    u = np.uint64
    z = u(key) + (index.astype(u) + u(1)) * u(0x9E3779B97F4A7C15)
    z = (z ^ (z >> u(30))) * u(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> u(27))) * u(0x94D049BB133111EB)
    return z ^ (z >> u(31))


def _top52(words: np.ndarray) -> np.ndarray:
    return (words >> np.uint64(12)).astype(np.float64) * 2.0**-52


def uniform_twin(key: int, offset: int, n: int) -> np.ndarray:
    """u in [0, 1) from words offset .. offset + n - 1."""
    return _top52(splitmix64_twin(key, np.arange(offset, offset + n)))


def exponential_twin(key: int, offset: int, n: int) -> np.ndarray:
    """-log(u), u in (0, 1], from words offset .. offset + n - 1."""
    return -np.log(1.0 - uniform_twin(key, offset, n))


def normal_twin(key: int, n: int) -> np.ndarray:
    """NumPy twin of counter_rng.normal_fill: Box-Muller with np.log, np.cos, np.sin."""
    pairs = np.arange((n + 1) // 2)
    w1 = splitmix64_twin(key, 2 * pairs)
    w2 = splitmix64_twin(key, 2 * pairs + 1)
    radius = np.sqrt(-2.0 * np.log(1.0 - _top52(w1)))
    quadrant = (w2 >> np.uint64(62)).astype(np.float64)
    r = _top52(w2 << np.uint64(2)) - 0.5
    angle = 0.5 * np.pi * (quadrant + r)
    z_cos, z_sin = radius * np.cos(angle), radius * np.sin(angle)
    half = n // 2
    out = np.empty(n)
    out[:half] = z_cos[:half]
    out[half : 2 * half] = z_sin[:half]
    if n % 2:
        out[-1] = z_cos[half]
    return out


def _key_twin(rng: np.random.Generator) -> int:
    """The key counter_rng.draw_key takes from ``rng``, as a Python int."""
    return int(rng.integers(0, 2**63 - 1, dtype=np.int64))


def sweep_twin(theory, phi, width, n_hits, checkerboard, rng) -> int:
    """Python twin of kernels.metropolis.sweep: same site order, same random numbers."""
    L = theory.L
    if checkerboard:
        order = [
            (i, j) for parity in (0, 1) for i in range(L) for j in range((i + parity) % 2, L, 2)
        ]
    else:
        order = [(i, j) for i in range(L) for j in range(L)]
    n = L * L * n_hits
    key = _key_twin(rng)
    d = width * (2.0 * uniform_twin(key, 0, n) - 1.0)
    e = exponential_twin(key, n, n)
    n_acc = 0
    k = 0
    for i, j in order:
        for _ in range(n_hits):
            ds = theory.local_delta_action(phi, i, j, d[k])
            if e[k] > ds:  # log(u) < -ds with u = exp(-e)
                phi[i, j] += d[k]
                n_acc += 1
            k += 1
    return n_acc


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1001])
def test_counter_rng_fills_match_numpy_twins(n: int) -> None:
    key = _key_twin(np.random.default_rng(n))
    out = np.empty(n)
    krng.normal_fill(out, np.uint64(key))
    np.testing.assert_allclose(out, normal_twin(key, n), rtol=1e-14, atol=1e-14)
    krng.uniform_fill(out, np.uint64(key), 5, 2.0, -1.0)
    np.testing.assert_allclose(out, 2.0 * uniform_twin(key, 5, n) - 1.0, rtol=0, atol=1e-15)
    krng.exponential_fill(out, np.uint64(key), 3)
    np.testing.assert_allclose(out, exponential_twin(key, 3, n), rtol=1e-14, atol=1e-15)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert int(krng.draw_key(rng_a)) == _key_twin(rng_b)


def test_counter_rng_transcendentals_are_libm_accurate() -> None:
    """The vectorizable log and sin/cos agree with numpy's to about 1 ulp."""
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.random(20_000), 2.0 ** -rng.uniform(0, 52, 5000), [1.0, 2.0**-52]])
    logs = np.array([krng.log_unit(x) for x in u[:2000]] + [krng.log_unit(x) for x in u[-5:]])
    ref = np.log(np.concatenate([u[:2000], u[-5:]]))
    assert np.all(np.abs(logs - ref) <= 2.3e-16 * np.maximum(np.abs(ref), 1.0))
    r = rng.uniform(-0.5, 0.5, 2000)
    sc = np.array([krng.sincos_quarter_turn(x) for x in r])
    np.testing.assert_allclose(sc[:, 0], np.sin(0.5 * np.pi * r), rtol=3e-16, atol=3e-17)
    np.testing.assert_allclose(sc[:, 1], np.cos(0.5 * np.pi * r), rtol=3e-16, atol=0)


def test_counter_rng_distributions() -> None:
    """Moments and KS tests of 2^20 variates (fixed key; a wrong law fails by many sigma)."""
    from scipy import stats

    n = 1 << 20
    key = np.uint64(0x1234_5678_9ABC_DEF0)
    z = np.empty(n)
    krng.normal_fill(z, key)
    assert abs(z.mean()) < 5.0 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 5.0 * np.sqrt(2.0 / n)
    assert abs(np.mean(z**4) - 3.0) < 5.0 * np.sqrt(96.0 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # independence of the two halves (the cos and sin of one pair)
    assert abs(np.mean(z[: n // 2] * z[n // 2 :])) < 5.0 / np.sqrt(n // 2)
    e = np.empty(n)
    krng.exponential_fill(e, key, 0)
    assert abs(e.mean() - 1.0) < 5.0 / np.sqrt(n)
    assert stats.kstest(e, "expon").pvalue > 1e-3
    u = np.empty(n)
    krng.uniform_fill(u, key, 0, 1.0, 0.0)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("L", SIZES)
@pytest.mark.parametrize(("checkerboard", "n_hits"), [(True, 1), (True, 3), (False, 2)])
def test_sweep_matches_twin(L: int, checkerboard: bool, n_hits: int) -> None:
    theory = _theory(L)
    phi_a, phi_b = _field(L), _field(L)
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    for _ in range(3):
        acc_a = kmet.sweep(phi_a, 0.9, n_hits, checkerboard, *theory.hopping, rng_a)
        acc_b = sweep_twin(theory, phi_b, 0.9, n_hits, checkerboard, rng_b)
        assert acc_a == acc_b
        np.testing.assert_allclose(phi_a, phi_b, rtol=0, atol=1e-12)
    assert rng_a.bit_generator.state == rng_b.bit_generator.state


def test_accept_test_convention() -> None:
    """accept iff e > delta_h; non-finite delta_h is rejected; the control reverses it."""
    assert kcommon.accept_test(0.5, 0.6)
    assert not kcommon.accept_test(0.7, 0.6)
    assert kcommon.accept_test(-3.0, 0.0)
    for bad in (np.nan, np.inf, -np.inf):
        assert not kcommon.accept_test(bad, 0.6)
        assert not reversed_accept_test(bad, 0.6)
    assert reversed_accept_test(0.7, 0.6)
    assert not reversed_accept_test(0.5, 0.6)


def test_a_broken_twin_runs_the_kernel_source_with_one_name_rebound() -> None:
    """recompile: the twin differs only where a name is rebound; unknown names are refused."""
    same = recompile(kmet._update_site, accept_test=kcommon.accept_test)
    assert same.py_func.__code__ is kmet._update_site.py_func.__code__
    # a name and module of its own, so numba never links the twin in place of the kernel
    assert same.py_func.__qualname__ != kmet._update_site.py_func.__qualname__
    assert same.py_func.__module__ == "lattice_samplers.testing.broken"
    with pytest.raises(ValueError, match="does not use"):
        recompile(kmet.sweep_into, accept_tset=reversed_accept_test)


def wolff_twin(theory, phi, rng, always: bool = False) -> int:
    """Python twin of kernels.cluster.wolff_update (same growth order and random numbers)."""
    L = theory.L
    seed = rng.integers(0, L * L)
    i0, j0 = divmod(int(seed), L)
    s = 1.0 if phi[i0, j0] >= 0 else -1.0
    phi[i0, j0] = -phi[i0, j0]
    stack = [(i0, j0)]
    size = 1
    while stack:
        i, j = stack.pop()
        for ni, nj in [((i + 1) % L, j), ((i - 1) % L, j), (i, (j + 1) % L), (i, (j - 1) % L)]:
            v = phi[ni, nj]
            e = rng.standard_exponential()
            if v * s > 0 and (always or e < 2.0 * theory.h * abs(phi[i, j]) * abs(v)):
                phi[ni, nj] = -v
                stack.append((ni, nj))
                size += 1
    return size


@pytest.mark.parametrize("L", SIZES)
@pytest.mark.parametrize("broken", [False, True])
def test_wolff_matches_twin(L: int, broken: bool) -> None:
    """The Wolff kernel, and its bond-always negative control, against the Python twin."""
    wolff = recompile(kcl.wolff_update, bond_active=bond_always) if broken else kcl.wolff_update
    theory = _theory(L)
    phi_a, phi_b = _field(L, 1), _field(L, 1)
    rng_a, rng_b = np.random.default_rng(8), np.random.default_rng(8)
    stack = np.empty((2, L * L + 1), dtype=np.int64)
    sizes = []
    for _ in range(10):
        size = wolff(phi_a, theory.h, rng_a, stack)
        assert size == wolff_twin(theory, phi_b, rng_b, always=bool(broken))
        np.testing.assert_array_equal(phi_a, phi_b)
        sizes.append(size)
    assert rng_a.bit_generator.state == rng_b.bit_generator.state
    assert max(sizes) > 1  # clusters do grow


def test_wolff_keeps_abs_phi() -> None:
    theory = _theory(8)
    phi = _field(8, 2)
    before = np.abs(phi).copy()
    stack = np.empty((2, 65), dtype=np.int64)
    rng = np.random.default_rng(0)
    for _ in range(20):
        kcl.wolff_update(phi, theory.h, rng, stack)
    np.testing.assert_array_equal(np.abs(phi), before)


def integrate_twin(theory, phi, mom, eps, n, integrator, lam=khmc.OMELYAN_LAMBDA):
    """NumPy twin of kernels.hmc.integrate (np.roll force of the theory)."""
    phi, mom = phi.copy(), mom.copy()
    if integrator == "leapfrog":
        for _ in range(n):
            mom -= 0.5 * eps * theory.force(phi)
            phi += eps * mom
            mom -= 0.5 * eps * theory.force(phi)
    else:
        for _ in range(n):
            mom -= lam * eps * theory.force(phi)
            phi += 0.5 * eps * mom
            mom -= (1.0 - 2.0 * lam) * eps * theory.force(phi)
            phi += 0.5 * eps * mom
            mom -= lam * eps * theory.force(phi)
    return phi, mom


@pytest.mark.parametrize("L", SIZES)
@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_integrator_matches_numpy_twin(L: int, integrator: str, n: int) -> None:
    theory = _theory(L)
    phi = _field(L, 3)
    mom = np.random.default_rng(6).standard_normal((L, L))
    sampler = HMCSampler(theory, step_size=0.07, n_leapfrog=n, integrator=integrator)
    phi_a, mom_a = sampler.integrate(phi, mom)
    phi_b, mom_b = integrate_twin(theory, phi, mom, 0.07, n, integrator)
    np.testing.assert_allclose(phi_a, phi_b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mom_a, mom_b, rtol=0, atol=1e-12)


def hmc_twin(theory, phi, step_size, n_leapfrog, n_traj, rng):
    """NumPy twin of kernels.hmc.hmc_block (leapfrog): same random stream, np.roll force."""
    L = theory.L
    phi = phi.copy()
    accepted, delta_h = [], []
    for _ in range(n_traj):
        mom = normal_twin(_key_twin(rng), L * L).reshape(L, L)
        h_old = theory.action(phi) + 0.5 * np.sum(mom * mom)
        phi_new, mom_new = integrate_twin(theory, phi, mom, step_size, n_leapfrog, "leapfrog")
        dh = theory.action(phi_new) + 0.5 * np.sum(mom_new * mom_new) - h_old
        acc = rng.standard_exponential() > dh  # accept if log(u) < -delta_h
        phi = phi_new if acc else phi
        accepted.append(float(acc))
        delta_h.append(dh)
    return phi, np.array(accepted), np.array(delta_h)


@pytest.mark.parametrize(("L", "step_size"), [(2, 0.45), (3, 0.45), (4, 0.4), (8, 0.3)])
def test_hmc_block_matches_numpy_twin(L: int, step_size: float) -> None:
    """Refresh (counter stream keyed from rng), trajectory, accept: the kernel is its twin."""
    theory = _theory(L)
    phi0 = _field(L, 7)
    sampler = HMCSampler(theory, step_size=step_size, n_leapfrog=6, tune=False)
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    chain = sampler.run(sampler.init(phi0, rng_a), 12, rng_a)
    phi_b, acc_b, dh_b = hmc_twin(theory, phi0, step_size, 6, 12, rng_b)
    np.testing.assert_array_equal(chain.stats["accepted"], acc_b)
    np.testing.assert_allclose(chain.stats["delta_h"], dh_b, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(chain.state.phi, phi_b, rtol=0, atol=1e-12)
    assert 0 < acc_b.sum() < 12  # both outcomes were exercised
    assert rng_a.bit_generator.state == rng_b.bit_generator.state
    # the observables recorded from the fused last pass are measure_into's
    out = np.empty(kcommon.N_OBS)
    action = kcommon.measure_into(chain.state.phi, *theory.hopping, theory.c0, out)
    assert chain.state.scalars[0] == pytest.approx(action, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(chain.state.scalars[1:], out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(
        chain.state.aux["force"], theory.force(chain.state.phi), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("L", SIZES)
def test_force_and_measurement_kernels(L: int) -> None:
    theory = _theory(L)
    phi = _field(L, 5)
    force = np.empty_like(phi)
    khmc.compute_force(phi, *theory.hopping, force)
    np.testing.assert_allclose(force, theory.force(phi), rtol=0, atol=1e-12)
    out = np.empty(kcommon.N_OBS)
    action = kcommon.measure_into(phi, *theory.hopping, theory.c0, out)
    assert action == pytest.approx(theory.action(phi), rel=1e-13)


def test_compiled_observables_are_the_observables_module_ones() -> None:
    """The names recorded in compiled loops are those of observables.py, in the same order."""
    from lattice_samplers.kernels.common import OBSERVABLE_NAMES
    from lattice_samplers.observables import SCALAR_OBSERVABLES

    assert OBSERVABLE_NAMES == SCALAR_OBSERVABLES
