"""Accept-history tau_int for independence Metropolis, and the Kish ESS of log weights."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from lattice_samplers.autocorr.base import (
    AutocorrResult,
    AutocorrWarning,
    _as_chains,
    _common_flags,
    _ess,
    _stuck_result,
    _warn,
)
from lattice_samplers.autocorr.gamma import gamma_method

__all__ = ["acceptance_tau", "ess_kish"]


# --------------------------------------------------------------------------- accept/reject


def _rejection_runs(accepted: np.ndarray) -> np.ndarray:
    """Length of the run of consecutive rejections starting at each step, per chain."""
    rejected_rev = ~accepted[:, ::-1]
    count = np.cumsum(rejected_rev, axis=1)
    # Subtract the count at the most recent acceptance (seen backwards) to restart the run.
    reset = np.maximum.accumulate(np.where(rejected_rev, 0, count), axis=1)
    return (count - reset)[:, ::-1]


def acceptance_tau(accepted: np.ndarray, *, min_length_ratio: float = 50.0) -> AutocorrResult:
    """Observable-independent tau_int of an independence Metropolis chain.

    Albergo, Kanwar, Shanahan (arXiv:1904.12072): states i and i + t of an independence
    Metropolis chain coincide iff steps i+1..i+t were all rejected, and otherwise are
    (nearly) independent, so rho(t) = fraction of steps followed by t consecutive
    rejections. rho(t) is non-negative and non-increasing and is summed to its last
    non-zero lag (the longest rejection run), which leaves no truncation bias.

    Parameters
    ----------
    accepted : array_like of bool
        Shape ``(n_steps,)`` or ``(n_chains, n_steps)``; ``accepted[i]`` says whether the
        transition into state i accepted its proposal (``accepted[0]`` is not used).
    min_length_ratio : float, default 50
        Flag ``"short"`` when n_steps per chain < min_length_ratio * tau_int.

    Returns
    -------
    AutocorrResult
        ``method="acceptance"``, ``mean`` = acceptance rate, ``err`` NaN,
        ``tau_int = 1/2 + sum_t rho(t)`` (exactly 1/2 if nothing was rejected),
        ``tau_int_err`` from the Gamma method applied to the run-length series (whose mean
        is sum_t rho(t) up to O(W^2/N)), ``window`` = longest run, ``rho`` = rho(0..W).
    """
    acc = _as_chains(accepted, dtype=bool)
    n_chains, n_steps = acc.shape
    n_total = acc.size
    rate = float(acc[:, 1:].mean())
    if not acc[:, 1:].any():
        stuck = _stuck_result("acceptance", acc[:, 1:].astype(float))
        return replace(stuck, mean=rate, n=int(n_total))
    runs = _rejection_runs(acc[:, 1:])
    w_max = int(runs.max())
    # count[t] = number of (chain, i) with t rejections right after state i.
    hist = np.bincount(runs.ravel(), minlength=w_max + 1)
    count = np.cumsum(hist[::-1])[::-1]
    lags = np.arange(w_max + 1)
    rho = count / (n_chains * (n_steps - lags)).astype(float)
    rho[0] = 1.0
    tau_int = float(0.5 + rho[1:].sum())
    if w_max == 0:
        tau_int_err = 0.0  # nothing rejected: the estimate has no fluctuation to propagate
    else:
        with warnings.catch_warnings():
            # Warnings of this auxiliary analysis would talk about the wrong series.
            warnings.simplefilter("ignore", AutocorrWarning)
            tau_int_err = gamma_method(runs.astype(float), min_length_ratio=0).err
    flags = _common_flags(tau_int, n_steps, min_length_ratio, (~acc[:, 1:].any(axis=1)).any())
    rho.setflags(write=False)
    result = AutocorrResult(
        method="acceptance",
        mean=rate,
        err=float("nan"),
        tau_int=tau_int,
        tau_int_err=float(tau_int_err),
        ess=_ess(n_total, tau_int),
        n=int(n_total),
        n_chains=int(n_chains),
        window=w_max,
        rho=rho,
        flags=tuple(flags),
    )
    _warn(flags, "acceptance", result)
    return result


def ess_kish(log_weight: np.ndarray) -> float:
    """Kish importance-sampling effective sample size per sample, in [0, 1].

    ``(sum w)^2 / (n sum w^2)`` over all ``n`` log weights, where a non-finite log weight
    counts as a sample of weight zero (it is in ``n``, not in the sums); 0 if none is finite.
    This is the one implementation in the package (flow training and the IMH sampler use it).
    """
    lw = np.asarray(log_weight, dtype=np.float64).ravel()
    finite = np.isfinite(lw)
    if not finite.any():
        return 0.0
    w = np.exp(lw[finite] - lw[finite].max())
    return float(w.sum() ** 2 / (lw.size * (w * w).sum()))
