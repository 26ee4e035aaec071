"""Independence Metropolis: exact proposals, unbiasedness with a poor proposal, controls."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_chains

from lattice_samplers.autocorr import gamma_method
from lattice_samplers.exact import FreeFieldSampler, free_phi2, free_susceptibility
from lattice_samplers.samplers.flow import (
    FlowSampler,
    FlowSamplerSettings,
    flow_diagnostics,
)
from lattice_samplers.testing.broken import broken_sampler
from lattice_samplers.testing.checks import check_mean
from lattice_samplers.theory import Phi4Theory

FREE = Phi4Theory.create(4, "albergo", m2=1.0, lam=0.0)
#: a free theory whose site variance (~0.56) an untrained flow's N(0, 1) proposals roughly cover
FREE_ISING = Phi4Theory.create(4, "ising", beta=0.3, lam=0.0)


class WrongMassProposal:
    """The exact free-field sampler of a heavier theory: a valid but imperfect proposal."""

    def __init__(self, theory: Phi4Theory, m2: float) -> None:
        self.inner = FreeFieldSampler(Phi4Theory.create(theory.L, "albergo", m2=m2, lam=0.0))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.sample(n, rng)


def _run(proposal, broken: str = "", n_steps: int = 20_000, seed: int = 3, theory=FREE):
    cls = broken_sampler("flow", broken) if broken else FlowSampler
    sampler = cls(theory, FlowSamplerSettings(batch_size=2048), proposal=proposal)
    return run_chains(sampler, n_steps, n_therm=100, n_chains=2, seed=seed, progress=False)


def test_exact_proposal_accepts_everything_and_is_uncorrelated() -> None:
    result = _run(FreeFieldSampler(FREE))
    assert result.acceptance == pytest.approx(1.0, abs=1e-6)
    tau = gamma_method(result.observables["magnetization"])
    assert abs(tau.tau_int - 0.5) < 4 * tau.tau_int_err
    diag = flow_diagnostics(result.stats["accepted"], result.stats["log_weight"])
    assert diag["ess_kish"] == pytest.approx(1.0, abs=1e-9)
    assert diag["tau_int_accept"] == pytest.approx(0.5)
    assert diag["longest_rejection_run"] == 0
    assert result.work["flow_passes"] == 2 * 20_000


def test_imperfect_proposal_is_unbiased() -> None:
    result = _run(WrongMassProposal(FREE, m2=2.5))
    assert 0.2 < result.acceptance < 0.95
    assert check_mean(result.observables["phi2"], free_phi2(FREE))
    assert check_mean(result.observables["two_point_susceptibility"], free_susceptibility(FREE))


def test_ignoring_log_q_fails_the_same_check() -> None:
    """Negative control: without the log q correction the chain samples the wrong density."""
    result = _run(WrongMassProposal(FREE, m2=2.5), broken="ignore_log_q")
    assert not check_mean(result.observables["phi2"], free_phi2(FREE))


def test_run_is_reproducible_from_the_seed() -> None:
    a = _run(WrongMassProposal(FREE, m2=2.5), n_steps=3000)
    b = _run(WrongMassProposal(FREE, m2=2.5), n_steps=3000)
    np.testing.assert_array_equal(a.observables["phi2"], b.observables["phi2"])
    np.testing.assert_array_equal(a.stats["accepted"], b.stats["accepted"])


def test_thinning_records_every_thin_steps() -> None:
    sampler = FlowSampler(FREE, FlowSamplerSettings(batch_size=7), proposal=FreeFieldSampler(FREE))
    rng = np.random.default_rng(0)
    state = sampler.init(None, rng)
    chain = sampler.run(state, 30, rng, thin=3)
    assert chain.observables["phi2"].shape == (10,)
    # exact proposal: every step accepted, so the recorded draw is the field held after it
    np.testing.assert_allclose(state.scalars[5], chain.observables["phi2"][-1])


def test_diagnostics_of_a_hand_made_history() -> None:
    accepted = np.array([[1, 0, 0, 0, 1, 1, 0, 1]], dtype=bool)
    log_w = np.array([[0.0, np.nan, 1.0, 1.0, 0.0, 0.0, 2.0, 0.0]])
    d = flow_diagnostics(accepted, log_w)
    assert d["acceptance"] == pytest.approx(0.5)
    assert d["longest_rejection_run"] == 3
    assert d["nonfinite_fraction"] == pytest.approx(1 / 8)
    assert "short" in d["tau_int_accept_flags"]  # 8 steps: flagged, not a stderr warning


def test_bad_proposal_shape_is_reported() -> None:
    class Bad:
        def sample(self, n, rng):
            return np.zeros((n, 3, 3)), np.zeros(n)

    with pytest.raises(ValueError, match="proposal returned"):
        FlowSampler(FREE, proposal=Bad()).init(None, np.random.default_rng())
    with pytest.raises(TypeError, match="sample"):
        FlowSampler(FREE, proposal=object())
    with pytest.raises(ValueError, match="batch_size"):
        FlowSamplerSettings(batch_size=0)


@pytest.fixture(scope="module")
def untrained_flow_proposal():
    """An untrained flow of the paper's family at L = 4 (random init): acceptance ~0.15."""
    from lattice_samplers.flows import CouplingFlowSettings, FlowProposal, build_flow

    flow = build_flow(FREE_ISING, CouplingFlowSettings(), seed=11)
    return FlowProposal(flow)


def test_untrained_flow_is_unbiased(untrained_flow_proposal) -> None:
    """The Metropolis correction, not the training, makes the flow sampler exact."""
    result = _run(untrained_flow_proposal, n_steps=20_000, theory=FREE_ISING)
    assert 0.05 < result.acceptance < 0.5
    assert check_mean(result.observables["phi2"], free_phi2(FREE_ISING))
    chi = free_susceptibility(FREE_ISING)
    assert check_mean(result.observables["two_point_susceptibility"], chi)


def test_untrained_flow_ignoring_log_q_fails(untrained_flow_proposal) -> None:
    """Negative control: the same flow without the log q correction is biased."""
    result = _run(untrained_flow_proposal, broken="ignore_log_q", n_steps=20_000, theory=FREE_ISING)
    assert not check_mean(result.observables["phi2"], free_phi2(FREE_ISING))


def test_progress_lines_name_the_flow_sampler(capsys: pytest.CaptureFixture) -> None:
    """The flow sampler is "flow" in progress lines and results, as in configs (not "imh")."""
    sampler = FlowSampler(FREE, FlowSamplerSettings(batch_size=64), proposal=FreeFieldSampler(FREE))
    result = run_chains(sampler, 64, n_therm=8, n_chains=1, seed=1, progress=None)
    err = capsys.readouterr().err
    assert "flow L=" in err and "imh" not in err
    assert FlowSampler.kind == "flow" and result.sampler == "flow"
