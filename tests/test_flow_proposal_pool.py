"""Flow proposals drawn on worker processes: bit-identical for any worker count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lattice_samplers.flows import FlowProposal, build_flow
from lattice_samplers.flows.proposal_pool import batch_seeds
from lattice_samplers.kernels.common import N_OBS
from lattice_samplers.samplers.flow import FlowSampler, FlowSamplerSettings
from lattice_samplers.theory import Phi4Theory

THEORY = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)


@pytest.fixture
def one_thread():
    """This process on one torch thread, as the thread policy leaves it beside other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _chain(proposal: FlowProposal, workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A few independence Metropolis steps: proposals (phi, log q) and accept flags."""
    settings = FlowSamplerSettings(batch_size=40, proposal_workers=workers)
    sampler = FlowSampler(THEORY, settings, proposal=proposal)
    assert proposal.workers == workers
    rng = np.random.default_rng(3)
    phi, log_q = proposal.sample(40, rng)
    state = sampler.init(rng=np.random.default_rng(4))
    obs = np.empty((40, N_OBS))
    stats = np.empty((40, 3))
    sampler.run_block(state, 40, 1, np.random.default_rng(5), obs, stats)
    return phi, log_q, stats


def test_batch_seeds_depend_on_the_batch_only() -> None:
    seeds = batch_seeds(12345, 5)
    assert seeds[0] == 12345
    assert batch_seeds(12345, 3) == seeds[:3]
    assert len(set(seeds)) == 5
    assert batch_seeds(12346, 5)[1:] != seeds[1:]


def test_two_workers_draw_the_proposals_of_one_bit_for_bit(one_thread: None) -> None:
    flow = build_flow(THEORY, seed=1)
    one = _chain(FlowProposal(flow, batch_size=7))
    with FlowProposal(flow, batch_size=7) as pooled:
        two = _chain(pooled, workers=2)  # [flow_sampler] proposal_workers = 2
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    # negative control: a different batch size cuts other batches, other streams
    other = _chain(FlowProposal(flow, batch_size=8))
    assert not np.array_equal(one[1], other[1])


def test_batches_are_independent_streams(one_thread: None) -> None:
    """Each batch has its own stream: no two batches of a call repeat each other's noise."""
    proposal = FlowProposal(build_flow(THEORY, seed=1), batch_size=5)
    phi, _ = proposal.sample(20, np.random.default_rng(0))
    batches = phi.reshape(4, 5, -1)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.allclose(batches[i], batches[j])


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        FlowProposal(build_flow(THEORY, seed=1), workers=0)
    with pytest.raises(ValueError, match="proposal_workers"):
        FlowSamplerSettings(proposal_workers=0)
