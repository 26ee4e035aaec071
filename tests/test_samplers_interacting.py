"""Interacting theory: exact L = 2 moments, and agreement of the three samplers at L = 8.

Tolerances: 4 sigma from each run's own Gamma-method errors (combined in quadrature for a
difference), fixed seeds.  The negative controls fail the same checks.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from helpers import run_chains

from lattice_samplers import exact
from lattice_samplers.driver import RunResult
from lattice_samplers.samplers import SAMPLERS
from lattice_samplers.testing.broken import broken_sampler
from lattice_samplers.testing.checks import Check, check_agreement, check_mean
from lattice_samplers.theory import Phi4Theory

K_SIGMA = 4.0
NAMES = ("abs_magnetization", "two_point_susceptibility", "action_density", "phi2", "ising_energy")
TINY = Phi4Theory.create(2, "ising", beta=0.576, lam=0.5)
L8 = Phi4Theory.create(8, "ising", beta=0.576, lam=0.5)


@pytest.fixture(scope="module")
def tiny_exact() -> dict[str, float]:
    return exact.tiny_lattice_moments(TINY)


def _run(kind: str, theory: Phi4Theory, n_steps: int, seed: int, broken: str = "") -> RunResult:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # broken controls may overflow
        return run_chains(
            (broken_sampler(kind, broken) if broken else SAMPLERS[kind])(theory),
            n_steps,
            n_therm=1000,
            n_chains=4,
            seed=seed,
        )


def tiny_exact_check(result: RunResult, reference: dict[str, float]) -> dict[str, Check]:
    """Each observable of an L = 2 run against the exact transfer-matrix value."""
    return {n: check_mean(result.observables[n], reference[n], K_SIGMA) for n in NAMES}


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
def test_tiny_lattice_exact(kind: str, tiny_exact: dict[str, float]) -> None:
    checks = tiny_exact_check(_run(kind, TINY, 20000, seed=21), tiny_exact)
    failed = {k: c for k, c in checks.items() if not c}
    assert not failed, failed


@pytest.mark.parametrize(
    ("kind", "broken"),
    [
        ("metropolis", "reversed_accept"),
        ("hmc", "reversed_accept"),
        ("hmc", "no_refresh"),
        ("hmc", "nonreversible"),
        ("cluster", "bond_always"),
    ],
)
def test_negative_controls_fail_the_tiny_lattice_check(
    kind: str, broken: str, tiny_exact: dict[str, float]
) -> None:
    checks = tiny_exact_check(_run(kind, TINY, 20000, seed=21, broken=broken), tiny_exact)
    assert not all(checks.values())


@pytest.fixture(scope="module")
def l8_runs() -> dict[str, RunResult]:
    return {kind: _run(kind, L8, 20000, seed=8) for kind in sorted(SAMPLERS)}


def samplers_agree(runs: dict[str, RunResult]) -> dict[str, Check]:
    """Pairwise agreement of every observable between every pair of runs."""
    checks = {}
    for (a, ra), (b, rb) in itertools.combinations(runs.items(), 2):
        for n in NAMES:
            checks[f"{a}-{b}:{n}"] = check_agreement(ra.observables[n], rb.observables[n], K_SIGMA)
    return checks


def test_three_samplers_agree_at_L8(l8_runs: dict[str, RunResult]) -> None:
    checks = samplers_agree(l8_runs)
    failed = {k: c for k, c in checks.items() if not c}
    assert not failed, failed


def test_broken_cluster_disagrees_at_L8(l8_runs: dict[str, RunResult]) -> None:
    runs = dict(l8_runs)
    runs["cluster"] = _run("cluster", L8, 20000, seed=8, broken="bond_always")
    assert not all(samplers_agree(runs).values())


def test_cluster_reports_mean_cluster_size(l8_runs: dict[str, RunResult]) -> None:
    result = l8_runs["cluster"]
    size = result.stats["cluster_size"]
    assert size.shape == (4, 20000)
    # near xi ~ L/4 the Wolff clusters are a sizable fraction of the lattice, never all of it
    assert 1.0 < size.mean() < L8.volume
    assert result.work["cluster_sites_flipped"] == round(size.sum())
