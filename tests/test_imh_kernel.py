"""Independence Metropolis accept/reject pass against a plain Python loop."""

from __future__ import annotations

import math

import numpy as np

from lattice_samplers.kernels.imh import imh_pass


def _reference(log_w: np.ndarray, log_u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cur, idx = -math.inf, -1
    acc, index = [], []
    for t, (lw, lu) in enumerate(zip(log_w, log_u)):
        ok = math.isfinite(lw) and (cur == -math.inf or lu < lw - cur)
        if ok:
            cur, idx = lw, t
        acc.append(ok)
        index.append(idx)
    return np.array(acc), np.array(index)


def test_matches_reference_loop() -> None:
    rng = np.random.default_rng(0)
    log_w = rng.normal(scale=2.0, size=500)
    log_w[[3, 50, 51]] = [np.nan, -np.inf, np.inf]
    log_u = np.log(rng.random(500))
    acc = np.empty(500, dtype=np.bool_)
    index = np.empty(500, dtype=np.int64)
    _, _, n_bad = imh_pass(log_w, log_u, -np.inf, -1, acc, index)
    ref_acc, ref_index = _reference(log_w, log_u)
    np.testing.assert_array_equal(acc, ref_acc)
    np.testing.assert_array_equal(index, ref_index)
    assert n_bad == 3


def test_constant_weights_always_accept() -> None:
    log_w = np.full(100, 1.5)
    log_u = np.log(np.random.default_rng(1).random(100))
    acc = np.empty(100, dtype=np.bool_)
    index = np.empty(100, dtype=np.int64)
    imh_pass(log_w, log_u, -np.inf, -1, acc, index)
    assert acc.all() and (index == np.arange(100)).all()
