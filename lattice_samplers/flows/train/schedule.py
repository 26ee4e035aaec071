"""Learning-rate schedules: the factor multiplying ``lr`` at each optimizer step.

The factor at step k (k = 0 for the first update) is

    warm-up(k) * main(k),   warm-up(k) = min(1, (k + 1) / warmup_steps)   (1 without warm-up),

with ``main`` one of (``scheduler`` in :class:`~lattice_samplers.flows.train.TrainSettings`)

* ``cosine``: r + (1 - r) (1 + cos(pi min(k, n_steps) / n_steps)) / 2, r = lr_min / lr
  (anneals lr -> lr_min over n_steps; the default);
* ``constant``: 1;
* ``step``: max(r, lr_decay_factor ** floor(k / lr_decay_every)) (step decay, floored at
  lr_min).

The trainer multiplies the factor by its divergence guard's scale (1 until a rollback, see
:mod:`.guard`); the result times ``lr`` is the rate used for update k.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lattice_samplers.flows.train.config import TrainSettings

__all__ = ["lr_factor"]


def _cosine(lr: float, lr_min: float, n_steps: int) -> Callable[[int], float]:
    ratio = lr_min / lr

    def factor(step: int) -> float:
        frac = min(step, n_steps) / max(n_steps, 1)
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return factor


def _step_decay(lr: float, lr_min: float, every: int, decay: float) -> Callable[[int], float]:
    ratio = lr_min / lr

    def factor(step: int) -> float:
        return max(ratio, decay ** (step // every))

    return factor


def _constant(step: int) -> float:
    return 1.0


def lr_factor(cfg: TrainSettings) -> Callable[[int], float]:
    """The schedule of ``cfg`` as a function of the step: lr used for update k = lr * f(k)."""
    if cfg.scheduler == "cosine":
        main = _cosine(cfg.lr, cfg.lr_min, cfg.n_steps)
    elif cfg.scheduler == "step":
        main = _step_decay(cfg.lr, cfg.lr_min, cfg.lr_decay_every, cfg.lr_decay_factor)
    else:
        main = _constant
    warmup = cfg.warmup_steps
    if warmup <= 0:
        return main  # exactly the factors of runs made before warm-up existed

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * main(step)

    return factor
