"""Flow proposals drawn in batches on several processes, the same numbers for any count.

A call of :meth:`~lattice_samplers.flows.FlowProposal.sample` for ``n`` proposals is cut into
batches of the sampling batch size; batch k is drawn from its own torch generator, seeded by
:func:`batch_seeds` from the call's seed and k alone.  So which process draws a batch does not
change its numbers, and every process runs torch on one thread, with the same float32
reductions as a one-thread draw in the calling process: the proposals (and so the chain, whose
accept/reject pass stays sequential in the caller) are bit-identical for any worker count
(``tests/test_flow_proposal_pool.py``).

Workers are separate processes (spawn start method: no forked torch or OpenMP state), each
holding a copy of the flow sent once when the pool starts.  Threads would share one process
and its GIL-free torch ops, but torch's intra-op pool is per process, and float32 log q came
out different in the last bits in worker threads (measured, see FlowProposal's notes).

Spawned workers import the main module again: a script that uses workers must keep its work
under ``if __name__ == "__main__":`` (the ``lattice-samplers`` command does).  The pool starts
on the first call that needs it, which pays the workers' start (importing torch: about 3 CPU
seconds each; 10 s of wall time under load 8 here).
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

__all__ = ["ProposalPool", "batch_seeds", "draw_batch"]

#: the flow of a worker process (set once by :func:`_init_worker`)
_FLOW: Any = None


def batch_seeds(call_seed: int, n_batches: int) -> list[int]:
    """Torch seeds of the batches of one call: batch 0 takes ``call_seed``, batch k > 0 a hash.

    Batch 0 keeps the call's own seed, so calls of one batch draw what they drew before
    batches were seeded apart; later batches take SeedSequence([call_seed, k]), independent
    streams that depend on k only.
    """
    seeds = [call_seed]
    for k in range(1, n_batches):
        state = np.random.SeedSequence([call_seed, k]).generate_state(1, np.uint64)[0]
        seeds.append(int(state >> 1))
    return seeds


def draw_batch(flow: Any, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` fields and log q with a torch generator seeded ``seed`` (float64 arrays)."""
    import torch

    gen = torch.Generator(device=flow.device)
    gen.manual_seed(seed)
    return flow.sample(n, generator=gen, batch_size=n)


def _init_worker(flow_bytes: bytes) -> None:
    import torch

    # one thread per worker: workers x 1 thread is what the thread policy hands out, and the
    # one-thread reductions match a one-thread draw in the calling process bit for bit
    torch.set_num_threads(1)
    global _FLOW
    _FLOW = pickle.loads(flow_bytes).eval()


def _draw_in_worker(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return draw_batch(_FLOW, seed, n)


class ProposalPool:
    """A pool of ``workers`` spawned processes drawing batches of one flow.

    Parameters
    ----------
    flow : Flow
        A CPU flow; each worker gets a pickled copy (later changes to ``flow`` are not seen).
    workers : int
        Processes, >= 2 (one worker is the calling process itself: no pool).
    """

    def __init__(self, flow: Any, workers: int) -> None:
        if workers < 2:
            raise ValueError(f"a proposal pool needs >= 2 workers, got {workers}")
        if flow.device.type != "cpu":
            raise ValueError("proposal workers draw on the CPU; a CUDA flow uses workers = 1")
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(pickle.dumps(flow),),
        )

    def draw(self, seeds: list[int], sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The batches ``(phi, log_q)`` for the given seeds and sizes, in order."""
        return list(self._executor.map(_draw_in_worker, seeds, sizes))

    def close(self) -> None:
        """Stop the worker processes."""
        self._executor.shutdown(wait=True, cancel_futures=True)
