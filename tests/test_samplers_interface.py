"""The Sampler interface: step/run equivalence, records, settings validation, work counters."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_samplers import observables
from lattice_samplers.samplers import (
    OBSERVABLE_NAMES,
    SAMPLERS,
    ClusterSampler,
    HMCSampler,
    HMCSettings,
    MetropolisSampler,
    MetropolisSettings,
    StepInfo,
    make_sampler,
)
from lattice_samplers.theory import Phi4Theory

THEORY = Phi4Theory.create(6, "ising", beta=0.576, lam=0.5)

# Settings that exercise every code path of the compiled blocks.
VARIANTS = [
    ("metropolis", {}),
    ("metropolis", {"order": "lexicographic", "n_hits": 3}),
    ("hmc", {}),
    ("hmc", {"integrator": "omelyan", "n_leapfrog": 3, "step_size": 0.3}),
    ("hmc", {"metropolis": False, "step_size": 0.05}),
    ("cluster", {}),
    ("cluster", {"n_clusters": 2, "n_sweeps": 2, "order": "lexicographic"}),
]


def _start(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.7, THEORY.shape)


@pytest.mark.parametrize(("kind", "settings"), VARIANTS)
def test_run_equals_step_loop_bit_for_bit(kind: str, settings: dict) -> None:
    """The compiled block path and a Python loop over step give identical chains."""
    sampler = make_sampler(kind, THEORY, settings)
    n = 60
    rng_a = np.random.default_rng(123)
    chain = sampler.run(sampler.init(_start(), rng_a), n, rng_a)

    rng_b = np.random.default_rng(123)
    state = sampler.init(_start(), rng_b)
    obs, stats = [], []
    for _ in range(n):
        state, info = sampler.step(state, rng_b)
        assert isinstance(info, StepInfo)
        obs.append(state.scalars[1:].copy())
        stats.append([info.stats[name] for name in sampler.stat_names])
    obs = np.array(obs)
    stats = np.array(stats)
    for k, name in enumerate(OBSERVABLE_NAMES):
        np.testing.assert_array_equal(chain.observables[name], obs[:, k], err_msg=name)
    for k, name in enumerate(sampler.stat_names):
        np.testing.assert_array_equal(chain.stats[name], stats[:, k], err_msg=name)
    np.testing.assert_array_equal(chain.state.phi, state.phi)
    assert rng_a.bit_generator.state == rng_b.bit_generator.state


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
def test_thinned_run_records_every_thin_th_step(kind: str) -> None:
    sampler = make_sampler(kind, THEORY)
    rng = np.random.default_rng(9)
    full = sampler.run(sampler.init(_start(), rng), 30, rng)
    rng = np.random.default_rng(9)
    thinned = sampler.run(sampler.init(_start(), rng), 30, rng, thin=3)
    assert thinned.n_draws == 10
    for name in OBSERVABLE_NAMES:
        np.testing.assert_array_equal(thinned.observables[name], full.observables[name][2::3])
    for name in sampler.stat_names:
        expected = full.stats[name].reshape(10, 3).mean(axis=1)
        np.testing.assert_allclose(thinned.stats[name], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
def test_recorded_observables_follow_the_observables_module(kind: str) -> None:
    """In-loop measurements use exactly the definitions of lattice_samplers.observables."""
    sampler = make_sampler(kind, THEORY)
    rng = np.random.default_rng(1)
    state = sampler.init(_start(), rng)
    for _ in range(5):
        state, _ = sampler.step(state, rng)
        reference = observables.measure(THEORY, state.phi)
        for name in OBSERVABLE_NAMES:
            np.testing.assert_allclose(
                state.observables[name], reference[name], rtol=1e-12, atol=1e-12, err_msg=name
            )
        assert state.action == pytest.approx(THEORY.action(state.phi), rel=1e-12)


def test_state_caches_hmc_force() -> None:
    sampler = HMCSampler(THEORY)
    rng = np.random.default_rng(2)
    state = sampler.init(_start(), rng)
    for _ in range(3):
        state, info = sampler.step(state, rng)
        np.testing.assert_allclose(state.aux["force"], THEORY.force(state.phi), atol=1e-12)
        assert info.accepted in (0.0, 1.0)
        assert np.isfinite(info.delta_h)
        assert info.acceptance_prob == pytest.approx(min(1.0, np.exp(-info.delta_h)))


def test_init_defaults_to_zero_field_and_copies_phi0() -> None:
    sampler = MetropolisSampler(THEORY)
    assert np.all(sampler.init().phi == 0.0)
    phi0 = _start()
    state = sampler.init(phi0)
    state.phi[0, 0] = 99.0
    assert phi0[0, 0] != 99.0


def test_init_rejects_bad_fields() -> None:
    sampler = MetropolisSampler(THEORY)
    with pytest.raises(ValueError, match="shape"):
        sampler.init(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="NaN"):
        sampler.init(np.full(THEORY.shape, np.nan))


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (HMCSettings, {"step_size": 0.0}, "step_size"),
        (HMCSettings, {"step_size": -0.1}, "step_size"),
        (HMCSettings, {"n_leapfrog": 0}, "n_leapfrog"),
        (HMCSettings, {"integrator": "euler"}, "integrator"),
        (HMCSettings, {"target_acceptance": 1.0}, "target_acceptance"),
        (MetropolisSettings, {"width": 0.0}, "width"),
        (MetropolisSettings, {"n_hits": 0}, "n_hits"),
        (MetropolisSettings, {"order": "random"}, "order"),
    ],
)
def test_settings_validation(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_trajectory_length_sets_n_leapfrog() -> None:
    s = HMCSettings(step_size=0.1, trajectory_length=1.0, n_leapfrog=3)
    assert s.n_leapfrog == 10
    sampler = HMCSampler(THEORY, s)
    sampler.adapt(1.0, 0)  # acceptance above target: larger step, fewer steps
    assert sampler.settings.step_size > 0.1
    assert sampler.settings.n_leapfrog == round(1.0 / sampler.settings.step_size)


def test_make_sampler_errors() -> None:
    with pytest.raises(ValueError, match="unknown sampler kind"):
        make_sampler("gibbs", THEORY)
    with pytest.raises(ValueError, match="hmc settings"):
        make_sampler("hmc", THEORY, {"nonsense": 1})
    with pytest.raises(TypeError):  # no test switch in production samplers
        HMCSampler(THEORY, _broken="bond_always")


def test_cluster_needs_ferromagnetic_hopping() -> None:
    with pytest.raises(ValueError, match="h >= 0"):
        ClusterSampler(Phi4Theory.create(4, "ising", beta=-0.2, lam=0.5))


def test_work_counters() -> None:
    rng = np.random.default_rng(0)
    met = MetropolisSampler(THEORY, n_hits=2)
    chain = met.run(met.init(), 7, rng)
    assert chain.work == {"steps": 7, "site_updates": 7 * 36 * 2}

    hmc = HMCSampler(THEORY, integrator="omelyan", n_leapfrog=4)
    chain = hmc.run(hmc.init(), 5, rng)
    assert chain.work == {"steps": 5, "leapfrog_steps": 20, "force_evaluations": 40}

    cl = ClusterSampler(THEORY, n_clusters=3)
    chain = cl.run(cl.init(_start()), 6, rng)
    assert chain.work["cluster_updates"] == 18
    assert chain.work["site_updates"] == 6 * 36
    assert chain.work["cluster_sites_flipped"] == round(3 * chain.stats["cluster_size"].sum())
    assert np.all(chain.stats["cluster_size"] >= 1)


def test_run_rejects_bad_lengths() -> None:
    sampler = MetropolisSampler(THEORY)
    rng = np.random.default_rng(0)
    for n_steps, thin in [(0, 1), (-5, 1), (10, 0), (10, 3)]:
        with pytest.raises(ValueError):
            sampler.run(sampler.init(), n_steps, rng, thin=thin)
