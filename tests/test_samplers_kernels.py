"""The compiled kernels against slow Python/NumPy twins fed the same random stream."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_samplers.kernels import cluster as kcl
from lattice_samplers.kernels import common as kcommon
from lattice_samplers.kernels import hmc as khmc
from lattice_samplers.kernels import metropolis as kmet
from lattice_samplers.samplers import HMCSampler
from lattice_samplers.theory import Phi4Theory

SIZES = [2, 3, 4, 5, 8]


def _theory(L: int) -> Phi4Theory:
    return Phi4Theory.create(L, "ising", beta=0.55, lam=0.7)


def _field(L: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.8, (L, L))


def sweep_twin(theory, phi, width, n_hits, checkerboard, rng) -> int:
    """Python twin of kernels.metropolis.sweep: same site order, same random numbers."""
    L = theory.L
    if checkerboard:
        order = [
            (i, j) for parity in (0, 1) for i in range(L) for j in range((i + parity) % 2, L, 2)
        ]
    else:
        order = [(i, j) for i in range(L) for j in range(L)]
    n_acc = 0
    for i, j in order:
        for _ in range(n_hits):
            d = width * (2.0 * rng.random() - 1.0)
            e = rng.standard_exponential()
            ds = theory.local_delta_action(phi, i, j, d)
            if e > ds:  # log(u) < -ds with u = exp(-e)
                phi[i, j] += d
                n_acc += 1
    return n_acc


@pytest.mark.parametrize("L", SIZES)
@pytest.mark.parametrize(("checkerboard", "n_hits"), [(True, 1), (False, 2)])
def test_sweep_matches_twin(L: int, checkerboard: bool, n_hits: int) -> None:
    theory = _theory(L)
    phi_a, phi_b = _field(L), _field(L)
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    for _ in range(3):
        acc_a = kmet.sweep(phi_a, 0.9, n_hits, checkerboard, *theory.hopping, rng_a, 0)
        acc_b = sweep_twin(theory, phi_b, 0.9, n_hits, checkerboard, rng_b)
        assert acc_a == acc_b
        np.testing.assert_allclose(phi_a, phi_b, rtol=0, atol=1e-12)
    assert rng_a.bit_generator.state == rng_b.bit_generator.state


def test_accept_test_convention() -> None:
    """accept iff e > delta_h; non-finite delta_h is rejected; the control reverses it."""
    assert kcommon.accept_test(0.5, 0.6, 1.0)
    assert not kcommon.accept_test(0.7, 0.6, 1.0)
    assert kcommon.accept_test(-3.0, 0.0, 1.0)
    for bad in (np.nan, np.inf, -np.inf):
        assert not kcommon.accept_test(bad, 0.6, 1.0)
        assert not kcommon.accept_test(bad, 0.6, -1.0)
    assert kcommon.accept_test(0.7, 0.6, -1.0)
    assert not kcommon.accept_test(0.5, 0.6, -1.0)
    assert kcommon.accept_sign(kcommon.BROKEN_REVERSED_ACCEPT) == -1.0
    assert kcommon.accept_sign(0) == 1.0


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
@pytest.mark.parametrize("broken", [0, kcl.BROKEN_BOND_ALWAYS])
def test_wolff_matches_twin(L: int, broken: int) -> None:
    theory = _theory(L)
    phi_a, phi_b = _field(L, 1), _field(L, 1)
    rng_a, rng_b = np.random.default_rng(8), np.random.default_rng(8)
    stack = np.empty((2, L * L + 1), dtype=np.int64)
    sizes = []
    for _ in range(10):
        size = kcl.wolff_update(phi_a, theory.h, rng_a, stack, broken)
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
        kcl.wolff_update(phi, theory.h, rng, stack, 0)
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
