"""Wolff's Gamma method (hep-lat/0306017) for one or several chains, and for derived means."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from scipy import fft as sp_fft

from lattice_samplers.autocorr.base import (
    AutocorrResult,
    _as_chains,
    _common_flags,
    _ess,
    _stuck_chains,
    _stuck_result,
    _warn,
)

__all__ = ["derived_gamma_method", "gamma_method", "running_tau_int"]


# --------------------------------------------------------------------------- Gamma method


def _gamma_function(chains: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocovariance Gamma(0..max_lag) combined over replica (Wolff eq. 31).

    Deviations are taken from the mean over all chains, and the lag-t products of all chains
    are summed and divided by the number of such products, N - R t.
    """
    n_chains, n_draws = chains.shape
    dev = chains - chains.mean()
    # Zero padding to >= 2 n makes the FFT correlation acyclic.
    n_fft = sp_fft.next_fast_len(2 * n_draws, real=True)
    spec = sp_fft.rfft(dev, n=n_fft, axis=1)
    acov = sp_fft.irfft(spec * spec.conj(), n=n_fft, axis=1)[:, : max_lag + 1].sum(axis=0)
    lags = np.arange(max_lag + 1)
    return acov / (n_chains * (n_draws - lags))


def _auto_window(rho: np.ndarray, n_total: int, s_tau: float, envelope: bool) -> tuple[int, bool]:
    """First W >= 1 with g(W) < 0 (Wolff eq. 52); returns (W, found).

    tau_W = S / ln((2 tau + 1) / (2 tau - 1)) is the exponential decay time implied by the
    running tau_int(W) (exact for rho(t) = exp(-t/tau_exp): tau_W = S tau_exp). The paper
    uses a tiny tau_W once tau_int(W) <= 1/2, which ends the sum at W = 1; for an
    anticorrelated series (rho(1) < 0) that drops the whole alternating tail. With
    ``envelope`` the decay time is then taken from the envelope 1/2 + sum |rho(t)|, which is
    exact for rho(t) = (-q)^t and balances the same bias against the same noise.
    """
    w_max = len(rho) - 1
    terms = np.abs(rho[1:]) if (envelope and rho[1] < 0) else rho[1:]
    tau_run = 0.5 + np.cumsum(terms)
    windows = np.arange(1, w_max + 1)
    tiny = 1e-300
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = (2.0 * tau_run + 1.0) / (2.0 * tau_run - 1.0)
        tau_w = np.where(tau_run > 0.5, s_tau / np.log(ratio), tiny)
        tau_w = np.where(np.isfinite(tau_w) & (tau_w > 0), tau_w, tiny)
        g = np.exp(-windows / tau_w) - tau_w / np.sqrt(windows * n_total)
    below = np.flatnonzero(g < 0)
    if below.size == 0:
        return w_max, False
    return int(windows[below[0]]), True


def _bartlett_tau_err(rho: np.ndarray, window: int, n_total: int) -> float:
    """Error of sum_{t=1}^W rho(t) from Bartlett's formula for the covariance of rho(t).

    N Var = sum_{k>=1} G(k)^2, G(k) = sum_{t=1}^W [rho(k+t) + rho(k-t) - 2 rho(k) rho(t)]
    (the sum over t of Luescher's form, hep-lat/0409106 eq. E.11), with rho taken as zero
    beyond W. Unlike eq. (42) it assumes neither W >> tau_int nor a positive rho(t).
    """
    if window == 0:
        return 0.0
    w = window
    # rho on lags -W..3W+1 (zero beyond |t| = W), as a prefix sum for O(W) window sums.
    sym = np.zeros(4 * w + 2)
    sym[: 2 * w + 1] = np.concatenate([rho[w:0:-1], rho[: w + 1]])
    prefix = np.concatenate([[0.0], np.cumsum(sym)])
    k = np.arange(1, 2 * w + 1)
    ahead = prefix[k + 2 * w + 1] - prefix[k + w + 1]  # lags k+1 .. k+W
    behind = prefix[k + w] - prefix[k]  # lags k-W .. k-1
    rho_k = np.where(k <= w, rho[np.minimum(k, w)], 0.0)
    g = ahead + behind - 2.0 * rho_k * rho[1 : w + 1].sum()
    return float(np.sqrt(np.sum(g**2) / n_total))


def _gamma_core(
    chains: np.ndarray,
    s_tau: float,
    window: int | None,
    bias_correction: bool,
    envelope: bool,
    min_length_ratio: float,
    max_lag: int | None,
    method: str,
) -> AutocorrResult:
    """Gamma-method analysis of a non-constant (n_chains, n_draws) array; warns nothing."""
    n_chains, n_draws = chains.shape
    n_total = chains.size
    w_max = n_draws // 2
    gamma = _gamma_function(chains, w_max)
    flags = []
    if window is None:
        w_opt, found = _auto_window(gamma / gamma[0], n_total, s_tau, envelope)
        if not found:
            flags.append("window_not_found")
    else:
        w_opt = int(min(max(window, 0), w_max))
    c_f = gamma[0] + 2.0 * gamma[1 : w_opt + 1].sum()
    if bias_correction:
        # Wolff eq. (49): the mean subtracted in Gamma(t) biases each Gamma(t) by about -C_F/N.
        gamma = gamma + c_f / n_total
        c_f = gamma[0] + 2.0 * gamma[1 : w_opt + 1].sum()
    variance = float(gamma[0])
    tau_int = float(c_f / (2.0 * variance))
    if c_f > 0:
        err = float(np.sqrt(c_f / n_total))
        # Wolff eq. (42) (as in his UWerr); Madras-Sokal 2 (2W+1)/N tau^2 for W >> tau_int.
        # It scales with tau_int^2 and so badly understates the noise of an anticorrelated
        # sum (tau_int -> 0 while each rho(t) stays noisy); the Bartlett sum does not.
        eq42 = 2.0 * abs(tau_int) * np.sqrt(max(w_opt + 0.5 - tau_int, 0.0) / n_total)
        tau_int_err = float(max(eq42, _bartlett_tau_err(gamma / gamma[0], w_opt, n_total)))
    else:
        flags.append("nonpositive_cf")
        err = tau_int_err = float("nan")
    flags += _common_flags(tau_int, n_draws, min_length_ratio, _stuck_chains(chains).any())
    n_rho = min(w_max, max(2 * w_opt, 20) if max_lag is None else max_lag)
    rho = gamma[: n_rho + 1] / gamma[0]
    rho.setflags(write=False)
    return AutocorrResult(
        method=method,
        mean=float(chains.mean()),
        err=err,
        tau_int=tau_int,
        tau_int_err=tau_int_err,
        ess=_ess(n_total, tau_int),
        n=int(n_total),
        n_chains=int(n_chains),
        window=w_opt,
        variance=variance,
        rho=rho,
        flags=tuple(flags),
    )


def gamma_method(
    series: np.ndarray,
    *,
    s_tau: float = 1.5,
    window: int | None = None,
    bias_correction: bool = True,
    envelope: bool = True,
    min_length_ratio: float = 50.0,
    max_lag: int | None = None,
) -> AutocorrResult:
    """Estimate mean, error and tau_int with Wolff's Gamma method (hep-lat/0306017).

    Parameters
    ----------
    series : array_like
        Shape ``(n_draws,)`` or ``(n_chains, n_draws)``; chains are independent replica of
        equal length, combined as in Wolff's paper (one mean, Gamma(t) summed over replica).
    s_tau : float, default 1.5
        Wolff's S: the assumed ratio tau_exp / tau_int in the automatic window (1 to 2).
    window : int, optional
        Fixed summation window W instead of the automatic one (for studies and controls).
    bias_correction : bool, default True
        Add C_F(W)/N to Gamma(t) (Wolff eq. 49), the leading bias of the mean subtraction.
    envelope : bool, default True
        For rho(1) < 0 take the window's decay time from |rho(t)| (see ``_auto_window``);
        False follows the paper literally, which stops anticorrelated series at W = 1.
    min_length_ratio : float, default 50
        Flag ``"short"`` when n_draws per chain < min_length_ratio * tau_int.
    max_lag : int, optional
        Last lag of the returned ``rho``; default max(2 W, 20), capped at n_draws / 2.

    Returns
    -------
    AutocorrResult
        ``method="gamma"``; ``err = sqrt(C_F / N) = sqrt(2 tau_int Gamma(0) / N)``,
        ``tau_int_err`` = the larger of Wolff's eq. (42), 2 tau_int sqrt((W + 1/2 - tau_int) / N),
        and the Bartlett-formula error of the windowed sum (needed for anticorrelated series).

    Warns
    -----
    AutocorrWarning
        For a stuck series (ess 0, tau_int inf), a short one, a failed window search.
    """
    chains = _as_chains(series)
    if _stuck_chains(chains).all():
        return _stuck_result("gamma", chains)
    result = _gamma_core(
        chains, s_tau, window, bias_correction, envelope, min_length_ratio, max_lag, "gamma"
    )
    _warn(result.flags, "gamma", result)
    return result


def running_tau_int(rho: np.ndarray, n_total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tau_int(W) = 1/2 + sum_{t=1}^W rho(t) against the window W, with its error band.

    The classic Gamma-method plot (Wolff, fig. 2): the error is Wolff's eq. (42),
    2 tau_int(W) sqrt((W + 1/2 - tau_int(W)) / N), which grows with W while the bias
    falls; the automatic window balances the two.

    Parameters
    ----------
    rho : array_like
        rho(0..W_max), e.g. ``gamma_method(x, max_lag=...).rho``.
    n_total : int
        Number of draws N over all chains.

    Returns
    -------
    (windows, tau, err) : three arrays of length W_max + 1 (W = 0..W_max).
    """
    rho = np.asarray(rho, dtype=float)
    windows = np.arange(rho.size)
    tau = 0.5 + np.concatenate([[0.0], np.cumsum(rho[1:])])
    err = 2.0 * np.abs(tau) * np.sqrt(np.maximum(windows + 0.5 - tau, 0.0) / n_total)
    return windows, tau, err


def derived_gamma_method(
    func: Callable[..., float],
    series: Sequence[np.ndarray],
    *,
    s_tau: float = 1.5,
    min_length_ratio: float = 50.0,
) -> AutocorrResult:
    """Apply the Gamma method to f(<a_1>, <a_2>, ...), a function of primary means.

    Wolff's section 3: the error of f(means) is that of the projected series
    f(means) + sum_alpha df/dA_alpha (a_alpha - mean_alpha), with the derivatives taken by
    central differences of step sqrt(Var(a_alpha)/N)/2, small against the statistical error.

    Parameters
    ----------
    func : callable
        ``func(A_1, A_2, ...) -> float`` on the primary means (e.g. a susceptibility
        V (<M^2> - <|M|>^2) as ``lambda m2, am: volume * (m2 - am**2)``).
    series : sequence of array_like
        One series per primary observable, all of the same shape (n_draws,) or
        (n_chains, n_draws), measured on the same draws.
    s_tau, min_length_ratio : float
        As in :func:`gamma_method`.

    Returns
    -------
    AutocorrResult
        ``method="gamma-derived"``, ``mean = func(means)``; tau_int is that of the projected
        series. The replica bias correction of nonlinear f (Wolff eq. 37) is not applied.
    """
    primaries = [_as_chains(s) for s in series]
    if len({p.shape for p in primaries}) != 1:
        raise ValueError("all primary series must have the same shape")
    means = np.array([p.mean() for p in primaries])
    n_total = primaries[0].size
    value = float(func(*means))
    projected = np.full(primaries[0].shape, value)
    for alpha, prim in enumerate(primaries):
        step = prim.std() / np.sqrt(n_total) / 2.0
        if step == 0:
            continue  # a constant primary does not fluctuate, so it adds no error
        up, down = means.copy(), means.copy()
        up[alpha] += step
        down[alpha] -= step
        slope = (func(*up) - func(*down)) / (2.0 * step)
        projected += slope * (prim - means[alpha])
    result = gamma_method(projected, s_tau=s_tau, min_length_ratio=min_length_ratio)
    # The projected series has mean f(means) up to rounding; report f(means) itself.
    return replace(result, method="gamma-derived", mean=value)
