"""Theory: parametrizations, exact conversions, reference action/force and numba kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lattice_samplers.kernels import phi4
from lattice_samplers.theory import PARAMETRIZATIONS, Phi4Theory

THEORIES = [
    Phi4Theory.create(6, "ising", beta=0.537, lam=0.5),
    Phi4Theory.create(5, "kappa", kappa=0.27, lam=0.022),
    Phi4Theory.create(4, "albergo", m2=-4.0, lam=8.0),
    Phi4Theory.create(7, "standard", m2=0.3, g=1.7),
    Phi4Theory.create(4, "albergo", m2=1.0, lam=0.0),  # free
]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: t.parametrization)
def test_kernels_equal_reference(theory: Phi4Theory, rng: np.random.Generator) -> None:
    h, c2, c4 = theory.hopping
    for _ in range(3):
        phi = rng.normal(size=theory.shape) * 1.3
        assert phi4.action(phi, h, c2, c4) + theory.volume * theory.c0 == pytest.approx(
            theory.action(phi), rel=1e-12, abs=1e-12
        )
        out = np.empty_like(phi)
        phi4.force(phi, h, c2, c4, out)
        np.testing.assert_allclose(out, theory.force(phi), rtol=1e-12, atol=1e-12)
        i, j = rng.integers(theory.L, size=2)
        d = rng.normal()
        ref = theory.local_delta_action(phi, i, j, d)
        assert phi4.local_delta_action(phi, i, j, d, h, c2, c4) == pytest.approx(ref, abs=1e-12)
        moved = phi.copy()
        moved[i, j] += d
        assert ref == pytest.approx(theory.action(moved) - theory.action(phi), abs=1e-10)
    batch = rng.normal(size=(5, *theory.shape))
    out = np.empty(5)
    phi4.batch_action(batch, h, c2, c4, out)
    np.testing.assert_allclose(out + theory.volume * theory.c0, theory.action(batch), rtol=1e-12)


@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: t.parametrization)
def test_force_is_gradient(theory: Phi4Theory, rng: np.random.Generator) -> None:
    phi = rng.normal(size=theory.shape)
    force = theory.force(phi)
    eps = 1e-6
    for _ in range(6):
        i, j = rng.integers(theory.L, size=2)
        up, dn = phi.copy(), phi.copy()
        up[i, j] += eps
        dn[i, j] -= eps
        fd = (theory.action(up) - theory.action(dn)) / (2 * eps)
        assert force[i, j] == pytest.approx(fd, rel=1e-6, abs=1e-6)


def test_force_check_fails_for_wrong_force(rng: np.random.Generator) -> None:
    """Negative control: the finite-difference check detects a force with a wrong sign."""
    theory = THEORIES[0]
    phi = rng.normal(size=theory.shape)
    wrong = -theory.force(phi)
    up, dn = phi.copy(), phi.copy()
    up[0, 0] += 1e-6
    dn[0, 0] -= 1e-6
    fd = (theory.action(up) - theory.action(dn)) / 2e-6
    assert wrong[0, 0] != pytest.approx(fd, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: t.parametrization)
def test_symmetries(theory: Phi4Theory, rng: np.random.Generator) -> None:
    phi = rng.normal(size=theory.shape)
    s = theory.action(phi)
    assert theory.action(-phi) == pytest.approx(s, rel=1e-13)
    assert theory.action(np.roll(phi, (2, 1), axis=(0, 1))) == pytest.approx(s, rel=1e-13)
    assert theory.action(phi.T) == pytest.approx(s, rel=1e-13)


def test_paper_example_conversion() -> None:
    """PHYSICS.md: albergo(m2 = -4, lam = 8) is ising(beta = 0.5, lam = 0.5), phi_A = phi_I/2."""
    a = Phi4Theory.create(8, "albergo", m2=-4.0, lam=8.0)
    i = a.to("ising")
    assert i.couplings == pytest.approx({"beta": 0.5, "lam": 0.5})
    assert a.field_scale_to(i) == pytest.approx(0.5)
    # general lam_A: beta = sqrt(2 / lam_A), lam = 1/2
    a2 = Phi4Theory.create(8, "albergo", m2=-4.0, lam=6.008)
    assert a2.to("ising").couplings["beta"] == pytest.approx(math.sqrt(2 / 6.008))
    assert a2.to("ising").couplings["lam"] == pytest.approx(0.5)


@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: t.parametrization)
@pytest.mark.parametrize("target", list(PARAMETRIZATIONS))
def test_conversion_preserves_action(
    theory: Phi4Theory, target: str, rng: np.random.Generator
) -> None:
    other = theory.to(target)
    a = theory.field_scale_to(other)
    phi_other = rng.normal(size=theory.shape)
    lhs = theory.action(a * phi_other) - theory.volume * theory.c0
    rhs = other.action(phi_other) - other.volume * other.c0
    assert lhs == pytest.approx(rhs, rel=1e-11, abs=1e-11)
    # round trip back to the original couplings
    back = other.to(theory.parametrization)
    assert back.couplings == pytest.approx(theory.couplings, rel=1e-12, abs=1e-12)


def test_conversion_check_fails_with_wrong_scale(rng: np.random.Generator) -> None:
    """Negative control: the action check fails when the field scale is wrong."""
    theory = THEORIES[0]
    other = theory.to("albergo")
    a = theory.field_scale_to(other) * 1.01
    phi = rng.normal(size=theory.shape)
    lhs = theory.action(a * phi) - theory.volume * theory.c0
    assert lhs != pytest.approx(other.action(phi), rel=1e-6)


def test_theory_is_hashable_and_picklable() -> None:
    import pickle

    t = Phi4Theory.create(8, "ising", beta=0.576, lam=0.5)
    assert pickle.loads(pickle.dumps(t)) == t
    assert hash(t) == hash(Phi4Theory.create(8, "ising", lam=0.5, beta=0.576))
    assert t.to_dict()["beta"] == 0.576
    assert t.with_L(12).L == 12


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, "ising"), {"beta": 0.5, "lam": 0.5}, "L must be an integer >= 2"),
        ((4.5, "ising"), {"beta": 0.5, "lam": 0.5}, "L must be an integer >= 2"),
        (("8", "ising"), {"beta": 0.5, "lam": 0.5}, "L must be an integer >= 2"),
        ((8, "ising"), {"beta": float("nan"), "lam": 0.5}, "must be finite"),
        ((8, "ising"), {"beta": 0.5, "lam": float("inf")}, "must be finite"),
        ((8, "ising"), {"beta": 0.5, "lam": -0.1}, "unbounded"),
        ((8, "albergo"), {"m2": -1.0, "lam": 0.0}, "unbounded"),
        ((8, "potts"), {"beta": 0.5}, "unknown parametrization"),
        ((8, "ising"), {"beta": 0.5}, "missing lam"),
        ((8, "ising"), {"beta": 0.5, "lam": 0.5, "g": 1.0}, "unexpected g"),
        ((8, "ising"), {"beta": "x", "lam": 0.5}, "must be a real number"),
    ],
)
def test_bad_input(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Phi4Theory.create(*args, **kwargs)


def test_wrong_field_shape() -> None:
    t = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
    with pytest.raises(ValueError, match="does not match the lattice"):
        t.action(np.zeros((5, 5)))


def test_non_positive_hopping_cannot_go_to_albergo() -> None:
    t = Phi4Theory.create(4, "ising", beta=-0.2, lam=0.5)
    with pytest.raises(ValueError, match="positive hopping"):
        t.to("albergo")
