"""Seeds of a training run's random streams, and the split of a batch into prior streams.

One ``seed`` gives independent 63-bit seeds for the weights, the prior-noise streams and the
batch-metric draws (:func:`seeds`); held-out batches are seeded by (seed, step)
(:func:`eval_seeds`), so an extra evaluation never shifts anything else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lattice_samplers.flows.distributed import DistContext
from lattice_samplers.flows.train.config import TrainSettings

__all__ = ["check_streams", "eval_seeds", "saved_streams", "seeds", "stream_seeds"]


def seeds(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds for the run's persistent random streams, from one seed."""
    names = ("init", "train_noise", "train_metrics")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, np.uint64)[0] >> 1) for n, c in zip(names, children)}


def stream_seeds(seed: int, n_streams: int) -> list[int]:
    """Seeds of the prior-noise streams.

    The ``train_noise`` seed itself for one stream, else ``n_streams`` children spawned from
    its SeedSequence.
    """
    if n_streams == 1:
        return [seeds(seed)["train_noise"]]
    parent = np.random.SeedSequence(seed).spawn(3)[1]  # the train_noise child of seeds
    return [int(c.generate_state(1, np.uint64)[0] >> 1) for c in parent.spawn(n_streams)]


def check_streams(cfg: TrainSettings, comm: DistContext | None) -> int:
    """The number of prior streams; a one-line ValueError if it cannot split the work."""
    world = comm.world_size if comm is not None else 1
    n = cfg.prior_streams or world
    if n % world:
        raise ValueError(f"prior_streams = {n} is not a multiple of the {world} processes")
    if cfg.batch_size % n:
        raise ValueError(
            f"batch_size {cfg.batch_size} is not divisible by the {n} prior streams "
            "(train.prior_streams, default: one per process)"
        )
    return n


def saved_streams(train_state: dict[str, Any]) -> int:
    """Number of prior streams of a saved trainer state."""
    return len(train_state["rng"].get("train_noise_streams", [None]))


def eval_seeds(seed: int, step: int) -> tuple[int, int]:
    """Seeds of the held-out batch at ``step``: (torch noise, NumPy accept/reject uniforms).

    Derived from (seed, step) rather than drawn from a running stream, so that an extra
    evaluation (at a pause, at a time-budget stop) never shifts later held-out batches: a
    paused and resumed run stays bit-identical to a straight one.
    """
    ss = np.random.SeedSequence([seed, 0xE7A1, step])
    a, b = ss.generate_state(2, np.uint64)
    return int(a >> 1), int(b >> 1)
