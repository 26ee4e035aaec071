"""A trained flow as the proposal of the flow samplers: ``sample(n) -> (phi, log_q)``.

Batches of one call can be drawn on worker processes
(:mod:`lattice_samplers.flows.proposal_pool`) without changing the draws.
"""

from __future__ import annotations

import numpy as np
import torch

from lattice_samplers.flows.model import Flow
from lattice_samplers.flows.proposal_pool import ProposalPool, batch_seeds, draw_batch

__all__ = ["FlowProposal"]


def _seed_from(seed: int | np.random.Generator) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0] >> 1)


class FlowProposal:
    """A trained flow as an independence-Metropolis proposal: ``sample(n) -> (phi, log_q)``.

    Parameters
    ----------
    flow : Flow
        The flow (put in eval mode; its parameters are not changed).
    seed : int or numpy.random.Generator, optional
        Seeds the proposal's own torch generator (so successive ``sample`` calls continue
        one reproducible stream).  None: a fresh OS-entropy seed.
    batch_size : int, optional
        Samples per forward pass (default: the flow's :meth:`Flow.sampling_batch_size`).
    workers : int
        Processes drawing the batches of a call (default 1: this process).  With a NumPy
        generator or int seed as ``rng`` (the sampler's case) batch k of a call is drawn from
        its own torch seed (:func:`~lattice_samplers.flows.proposal_pool.batch_seeds`), so
        the proposals are bit-identical for any ``workers`` when this process runs torch on
        one thread (the thread policy's choice on a shared 2-core machine).  Call
        :meth:`close` (or use ``with``) to stop the workers.

    Notes
    -----
    ``thread_safe = False``: the independence Metropolis chains of a flow run one after the
    other even with ``[run] workers`` > 1.  Concurrent calls are safe, but not bit-reproducible:
    torch's float32 reductions (log q) came out different in the last bits in worker threads
    (13 of 96 log weights, relative 2e-7, after a flow training in the same process), so a run
    would depend on ``workers``; parallel draws use processes instead (``workers`` here).
    """

    #: read by the independence Metropolis sampler: run its chains one after the other
    thread_safe = False

    def __init__(
        self,
        flow: Flow,
        seed: int | np.random.Generator | None = None,
        batch_size: int | None = None,
        workers: int = 1,
    ) -> None:
        self.flow = flow.eval()
        self.batch_size = batch_size
        self.generator = torch.Generator(device=flow.device)
        self.generator.manual_seed(
            _seed_from(seed if seed is not None else np.random.default_rng())
        )
        self._pool: ProposalPool | None = None
        self.use_workers(workers)

    def use_workers(self, workers: int) -> None:
        """Draw the batches of later calls on ``workers`` processes (1: in this process).

        The proposals do not change (see the class notes); a CUDA flow stays at 1.
        """
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if workers == self.workers:
            return
        self.close()
        if workers > 1:
            self._pool = ProposalPool(self.flow, workers)

    @property
    def L(self) -> int:
        """Lattice extent."""
        return self.flow.L

    @property
    def workers(self) -> int:
        """Processes drawing the batches (1: this process)."""
        return 1 if self._pool is None else self._pool.workers

    def sample(
        self, n: int, rng: np.random.Generator | torch.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` proposals: ``phi`` float64 ``(n, L, L)`` and ``log_q`` float64 ``(n,)``.

        ``rng`` (a NumPy generator, a torch generator or an int seed) overrides the
        proposal's own stream for this call; the same ``rng`` state gives the same draws.
        A NumPy generator or int gives one seed per call and one stream per batch (drawn on
        the workers); None or a torch generator, one stream in this process.
        """
        if rng is None or isinstance(rng, torch.Generator):
            gen = self.generator if rng is None else rng
            return self.flow.sample(n, generator=gen, batch_size=self.batch_size)
        if n < 0:
            raise ValueError(f"number of samples must be >= 0, got {n}")
        bs = self.batch_size or self.flow.sampling_batch_size()
        sizes = [min(bs, n - start) for start in range(0, n, bs)]
        seeds = batch_seeds(_seed_from(rng), len(sizes))
        if self._pool is not None and len(sizes) > 1:
            parts = self._pool.draw(seeds, sizes)
        else:
            parts = [draw_batch(self.flow, s, m) for s, m in zip(seeds, sizes, strict=True)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return np.empty((0, self.L, self.L)), np.empty(0)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def close(self) -> None:
        """Stop the worker processes (if any); the proposal then draws in this process."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> FlowProposal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
