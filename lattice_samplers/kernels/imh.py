"""Numba kernel for the accept/reject pass of an independence Metropolis-Hastings chain.

Proposals phi' ~ q are independent of the current state, so the acceptance probability is
min(1, w(phi') / w(phi)) with importance weights log w = -S - log q (formed in float64).
The chain itself is a cheap sequential pass over pre-drawn log weights; the expensive part
(drawing proposals from a flow) happens in large batches outside.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "imh_pass",
]


@njit(cache=True, nogil=True)
def imh_pass(
    log_w: np.ndarray,
    log_u: np.ndarray,
    log_w_current: float,
    index_current: int,
    accepted: np.ndarray,
    index: np.ndarray,
) -> tuple[float, int, int]:
    """Run independence Metropolis over the proposals ``log_w`` in order.

    Sign convention: with delta_h = log_w_current - log_w[t] (the "energy" change), accept if
    ``log_u[t] < -delta_h``.  A proposal with non-finite log weight is rejected (and counted);
    a current state with log weight -inf (no state yet) accepts any finite proposal.

    Parameters
    ----------
    log_w : (n,) float64
        Log weights of the proposals, in the order they are offered to the chain.
    log_u : (n,) float64
        log of uniform random numbers, one per proposal.
    log_w_current : float
        Log weight of the chain's current state.
    index_current : int
        Index (into the caller's proposal store) of the current state, -1 if none.
    accepted : (n,) bool, output
        Whether proposal t was accepted.
    index : (n,) int64, output
        Index of the chain's state after step t (t itself when accepted).

    Returns
    -------
    (log_w_current, index_current, n_nonfinite)
        The state after the pass and the number of rejected non-finite proposals.
    """
    n_nonfinite = 0
    for t in range(log_w.shape[0]):
        lw = log_w[t]
        if not np.isfinite(lw):
            n_nonfinite += 1
            accepted[t] = False
        elif log_w_current == -np.inf:
            accepted[t] = True
        else:
            delta_h = log_w_current - lw
            accepted[t] = log_u[t] < -delta_h
        if accepted[t]:
            log_w_current = lw
            index_current = t
        index[t] = index_current
    return log_w_current, index_current, n_nonfinite
