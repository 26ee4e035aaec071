"""Integrated autocorrelation times, effective sample sizes and errors of Monte Carlo means.

Every result uses the lattice convention

    tau_int = 1/2 + sum_{t>=1} rho(t),   ess = N / (2 tau_int),   Var(mean) = 2 tau_int Var(a) / N,

with N the total number of draws over all chains, and every record says so in its
``convention`` field. (Statistics codes, ArviZ and emcee included, report
1 + 2 sum rho = 2 tau_int.)

Estimators:

- :func:`gamma_method`: U. Wolff, "Monte Carlo errors with less errors", hep-lat/0306017,
  with automatic windowing, bias correction and replica (multi-chain) combination. This is
  the project's default source of errors and of test tolerances.
- :func:`derived_gamma_method`: the same for a function of several primary means
  (linearized error propagation, Wolff section 3).
- :func:`arviz_ess`: ArviZ (``arviz_stats``) ESS, default ``method="mean"`` (the classic
  autocorrelation ESS); :func:`arviz_ess_bulk` the rank-normalized bulk ESS and
  :func:`arviz_rhat` the rank-normalized split R-hat. This is the only module of the package
  that imports ArviZ.
- :func:`emcee_tau`: ``emcee.autocorr.integrated_time`` as an independent cross-check.
- :func:`acceptance_tau`: the observable-independent estimate for independence Metropolis
  from the accept/reject history (Albergo, Kanwar, Shanahan, arXiv:1904.12072).
- :func:`analyze`: one front end over all of them.

Stuck or constant series are flagged (``"stuck"``, ess 0, tau_int inf) and warned about,
never reported as perfectly efficient; anticorrelated series (tau_int < 1/2, ess > N) are
reported as they are.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import fft as sp_fft

__all__ = [
    "CONVENTION",
    "FLAG_MESSAGES",
    "R_HAT_MAX",
    "AutocorrResult",
    "AutocorrWarning",
    "acceptance_tau",
    "analyze",
    "arviz_ess",
    "arviz_ess_bulk",
    "arviz_rhat",
    "derived_gamma_method",
    "emcee_tau",
    "ess_kish",
    "gamma_method",
    "running_tau_int",
]

CONVENTION = "lattice: tau_int = 1/2 + sum_t rho(t); ess = N / (2 tau_int)"

#: Flags a result may carry, and what they mean (also the text of the warnings).
FLAG_MESSAGES = {
    "stuck": "the series does not fluctuate (constant chain, or no accepted proposal): "
    "ess = 0 and tau_int = inf; it is not perfectly efficient, it is not sampling",
    "stuck_chain": "at least one chain does not fluctuate; the combined estimate is suspect",
    "short": "the chain is shorter than min_length_ratio * tau_int; tau_int and the error "
    "are unreliable, run longer",
    "window_not_found": "the automatic window condition was not met before W_max = n_draws/2; "
    "the chain is far too short for its autocorrelation",
    "nonpositive_cf": "the windowed sum of Gamma(t) is <= 0; no error can be given",
    "arviz_cap": "ArviZ capped the ESS at N log10 N; the true ESS may be larger "
    "(strongly anticorrelated series)",
    "emcee_lag1_window": "emcee stopped its window at lag 1 (it does so for anticorrelated "
    "series), so its tau_int drops the alternating tail of rho(t)",
    "estimators_disagree": "the Gamma method's and ArviZ's tau_int differ by more than 3 "
    "errors; at least one of them is unreliable for this series",
    "r_hat": "rank-normalized split R-hat > 1.01: the chains have not mixed (or one is stuck); "
    "means, errors and tau_int are not trustworthy",
}

#: R-hat above this flags a summary (Vehtari et al. 2021).
R_HAT_MAX = 1.01


class AutocorrWarning(UserWarning):
    """Warning about an unreliable autocorrelation estimate (see the result's ``flags``)."""


@dataclass(frozen=True, eq=False)
class AutocorrResult:
    """Mean, error, tau_int and ESS of one series, in the lattice convention.

    Attributes
    ----------
    method : str
        Estimator: ``"gamma"``, ``"gamma-derived"``, ``"arviz-<method>"``, ``"emcee"`` or
        ``"acceptance"``.
    mean : float
        Mean over all draws (the acceptance rate for ``"acceptance"``; f(means) for
        ``"gamma-derived"``).
    err : float
        Error of the mean, sqrt(2 tau_int Var / N); NaN where the method gives none.
    tau_int : float
        Integrated autocorrelation time, 1/2 + sum_{t>=1} rho(t). ``inf`` for a stuck chain;
        below 1/2 for an anticorrelated one.
    tau_int_err : float
        Statistical error of ``tau_int``; NaN where the method gives none.
    ess : float
        Effective sample size N / (2 tau_int); 0 for a stuck chain.
    n : int
        Total number of draws N over all chains.
    n_chains : int
        Number of chains (replica).
    window : int or None
        Summation window W (last lag summed); None where the method does not expose it.
    variance : float
        Variance of the observable, Gamma(0) (bias corrected for ``"gamma"``).
    rho : numpy.ndarray
        Normalized autocorrelation rho(0..max_lag) for plots; empty where not computed.
    flags : tuple of str
        Problems found, keys of :data:`FLAG_MESSAGES` plus the informational
        ``"anticorrelated"`` (tau_int < 1/2). Every flag except ``"anticorrelated"`` was
        also raised as an :class:`AutocorrWarning`.
    convention : str
        The autocorrelation convention, always :data:`CONVENTION`.
    """

    method: str
    mean: float
    err: float
    tau_int: float
    tau_int_err: float
    ess: float
    n: int
    n_chains: int
    window: int | None = None
    variance: float = float("nan")
    rho: np.ndarray = field(default_factory=lambda: np.empty(0))
    flags: tuple[str, ...] = ()
    convention: str = CONVENTION

    @property
    def ok(self) -> bool:
        """True when no warning flag is set (``"anticorrelated"`` is information, not a flaw)."""
        return all(flag == "anticorrelated" for flag in self.flags)

    def as_dict(self) -> dict:
        """Return the fields as a plain dict (``rho`` as a list), e.g. for file attributes."""
        out = asdict(self)
        out["rho"] = np.asarray(self.rho).tolist()
        out["flags"] = list(self.flags)
        return out


# --------------------------------------------------------------------------- helpers


def _as_chains(series: np.ndarray, dtype: type = float) -> np.ndarray:
    """Return ``series`` as a 2-D (n_chains, n_draws) array, validated."""
    x = np.asarray(series, dtype=dtype)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2:
        raise ValueError(f"expected shape (n_draws,) or (n_chains, n_draws), got {x.shape}")
    if x.shape[1] < 4:
        raise ValueError(f"need at least 4 draws per chain, got {x.shape[1]}")
    if dtype is float and not np.all(np.isfinite(x)):
        raise ValueError("series contains NaN or inf")
    return x


def _warn(flags: Sequence[str], method: str, result: AutocorrResult | None = None) -> None:
    """Raise one AutocorrWarning per problem flag, so no flawed estimate passes silently."""
    context = ""
    if result is not None:
        per_chain = result.n // max(result.n_chains, 1)
        context = f" [n_draws per chain = {per_chain}, tau_int = {result.tau_int:.4g}]"
    for flag in flags:
        if flag in FLAG_MESSAGES:
            message = f"{method}: {FLAG_MESSAGES[flag]}{context}"
            warnings.warn(message, AutocorrWarning, stacklevel=3)


def _stuck_chains(chains: np.ndarray) -> np.ndarray:
    """Return a boolean per chain: True where the chain never changes value."""
    return np.ptp(chains, axis=1) == 0


def _stuck_result(method: str, chains: np.ndarray) -> AutocorrResult:
    """Result for a series without fluctuations: ess 0, tau_int inf, flagged and warned."""
    _warn(("stuck",), method)
    return AutocorrResult(
        method=method,
        mean=float(chains.mean()),
        err=float("nan"),
        tau_int=float("inf"),
        tau_int_err=float("nan"),
        ess=0.0,
        n=int(chains.size),
        n_chains=int(chains.shape[0]),
        variance=0.0,
        flags=("stuck",),
    )


def _common_flags(
    tau_int: float, n_draws: int, min_length_ratio: float, stuck_any: bool
) -> list[str]:
    """Flags shared by all estimators: partially stuck, short, anticorrelated."""
    flags = []
    if stuck_any:
        flags.append("stuck_chain")
    if np.isfinite(tau_int) and n_draws < min_length_ratio * tau_int:
        flags.append("short")
    if tau_int < 0.5:
        flags.append("anticorrelated")
    return flags


def _ess(n: int, tau_int: float) -> float:
    """N / (2 tau_int), NaN where tau_int is not positive (no meaningful ESS)."""
    return n / (2.0 * tau_int) if tau_int > 0 else float("nan")


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


# --------------------------------------------------------------------------- ArviZ


def arviz_ess(
    series: np.ndarray,
    *,
    method: str = "mean",
    prob: float | tuple[float, float] | None = None,
    min_length_ratio: float = 50.0,
) -> AutocorrResult:
    """ESS from ArviZ (``arviz_stats.ess``), converted to the lattice tau_int.

    Parameters
    ----------
    series : array_like
        Shape ``(n_draws,)`` or ``(n_chains, n_draws)``.
    method : str, default "mean"
        ArviZ ESS method: "mean" is the classic autocorrelation ESS (Geyer's initial
        monotone sequence on split chains); "bulk", "tail", "sd", "quantile", ... are the
        rank-normalized variants, which measure other functionals than the mean.
    prob : float or (float, float), optional
        Needed by ArviZ for "quantile" and "local"; "tail" defaults to 0.05 (5% and 95%).
    min_length_ratio : float, default 50
        Flag ``"short"`` when n_draws per chain < min_length_ratio * tau_int.

    Returns
    -------
    AutocorrResult
        ``method="arviz-<method>"``, ``tau_int = N' / (2 ess)`` with N' the draws ArviZ used
        (split chains drop the middle draw of odd-length chains). ``err`` is
        ``sqrt(Var / ess)`` for "mean" and NaN otherwise; ``tau_int_err`` is NaN.

    Notes
    -----
    Two ArviZ behaviours are guarded: it returns ESS = N for a constant chain (here: flag
    ``"stuck"``, ess 0), and it caps ESS at N log10 N (here: flag ``"arviz_cap"``).
    """
    import arviz_stats  # the one place the project touches ArviZ; lazy, as it is slow to load

    chains = _as_chains(series)
    label = f"arviz-{method.lower()}"
    # ArviZ calls anything with max - min below float resolution constant and returns ess = N.
    if _stuck_chains(chains).all() or np.ptp(chains) < np.finfo(float).resolution:
        return _stuck_result(label, chains)
    if method.lower() == "tail" and prob is None:
        prob = 0.05
    ess = float(arviz_stats.ess(chains, method=method, prob=prob, chain_axis=0, draw_axis=1))
    n_chains, n_draws = chains.shape
    n_used = n_chains * 2 * (n_draws // 2)
    tau_int = n_used / (2.0 * ess) if ess > 0 else float("inf")
    flags = []
    # ArviZ clips its 1 + 2 sum rho at 1 / log10(N'), i.e. ess at N' log10 N'.
    if np.isfinite(ess) and ess >= n_used * np.log10(n_used) * (1.0 - 1e-9):
        flags.append("arviz_cap")
    flags += _common_flags(tau_int, n_draws, min_length_ratio, _stuck_chains(chains).any())
    variance = float(chains.var())
    err = float(np.sqrt(variance / ess)) if method.lower() == "mean" and ess > 0 else np.nan
    result = AutocorrResult(
        method=label,
        mean=float(chains.mean()),
        err=err,
        tau_int=tau_int,
        tau_int_err=float("nan"),
        ess=ess,
        n=int(chains.size),
        n_chains=int(n_chains),
        variance=variance,
        flags=tuple(flags),
    )
    _warn(flags, label, result)
    return result


def arviz_ess_bulk(series: np.ndarray, *, min_length_ratio: float = 50.0) -> AutocorrResult:
    """Rank-normalized bulk ESS from ArviZ, converted to the lattice tau_int.

    The bulk ESS measures how well the chains resolve the centre of the distribution
    (Vehtari et al. 2021); for a near-Gaussian observable it is close to the ``"mean"`` ESS.
    Same guards as :func:`arviz_ess` (a constant series is ``"stuck"``, ess 0).

    Returns
    -------
    AutocorrResult
        ``method="arviz-bulk"``; ``tau_int = N' / (2 ess_bulk)``; ``err`` and ``tau_int_err``
        NaN.
    """
    return arviz_ess(series, method="bulk", min_length_ratio=min_length_ratio)


def arviz_rhat(series: np.ndarray) -> float:
    """Rank-normalized split R-hat over the chains (``arviz_stats.rhat``, method "rank").

    Parameters
    ----------
    series : array_like
        Shape ``(n_draws,)`` or ``(n_chains, n_draws)``.

    Returns
    -------
    float
        max(bulk, folded) split R-hat; about 1 for well mixed chains, above
        :data:`R_HAT_MAX` when they disagree. NaN for a single chain (ArviZ needs two) and
        for a series that never fluctuates (ArviZ divides 0 by 0 there; such a series is
        ``"stuck"`` for the ESS estimators). One stuck chain among fluctuating ones gives
        a large R-hat, as it should.
    """
    import arviz_stats

    chains = _as_chains(series)
    if chains.shape[0] < 2 or np.ptp(chains) < np.finfo(float).resolution:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 inside ArviZ for stuck chains
        return float(arviz_stats.rhat(chains, method="rank", chain_axis=0, draw_axis=1))


# --------------------------------------------------------------------------- emcee


def emcee_tau(
    series: np.ndarray, *, c: float = 5.0, min_length_ratio: float = 50.0
) -> AutocorrResult:
    """tau_int from ``emcee.autocorr.integrated_time`` (Sokal's self-consistent window).

    Parameters
    ----------
    series : array_like
        Shape ``(n_draws,)`` or ``(n_chains, n_draws)``; emcee averages the normalized
        autocorrelation of the chains (its "walkers").
    c : float, default 5
        emcee's window constant: the window is the first M with M >= c * tau_stat(M).
    min_length_ratio : float, default 50
        Flag ``"short"`` when n_draws < min_length_ratio * tau_int. emcee's own check (its
        ``tol`` on 2 tau_int) would only log; it is replaced by this flag and a warning.

    Returns
    -------
    AutocorrResult
        ``method="emcee"``, ``tau_int = tau_emcee / 2``; ``err = sqrt(2 tau_int Var / N)``;
        ``tau_int_err`` NaN.

    Notes
    -----
    For an anticorrelated series emcee's window stops at lag 1 (c * tau_stat(1) <= 1), so
    it returns about 1/2 + rho(1) and loses the alternating tail: flag
    ``"emcee_lag1_window"``.
    """
    from emcee.autocorr import integrated_time

    chains = _as_chains(series)
    if _stuck_chains(chains).all():
        return _stuck_result("emcee", chains)
    n_chains, n_draws = chains.shape
    # tol=0 switches emcee's length check off: quiet=True would only log it, we flag it.
    tau_stat = float(integrated_time(chains.T, c=c, tol=0, quiet=True)[0])
    tau_int = tau_stat / 2.0
    flags = []
    if c * tau_stat <= 1.0:
        flags.append("emcee_lag1_window")
    flags += _common_flags(tau_int, n_draws, min_length_ratio, _stuck_chains(chains).any())
    variance = float(chains.var())
    err = float(np.sqrt(2.0 * tau_int * variance / chains.size)) if tau_int > 0 else np.nan
    result = AutocorrResult(
        method="emcee",
        mean=float(chains.mean()),
        err=err,
        tau_int=tau_int,
        tau_int_err=float("nan"),
        ess=_ess(chains.size, tau_int),
        n=int(chains.size),
        n_chains=int(n_chains),
        variance=variance,
        flags=tuple(flags),
    )
    _warn(flags, "emcee", result)
    return result


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


# --------------------------------------------------------------------------- front end


def analyze(series: np.ndarray, method: str = "gamma", **kwargs) -> AutocorrResult:
    """Analyze one series with the chosen estimator; all return an :class:`AutocorrResult`.

    Parameters
    ----------
    series : array_like
        Shape ``(n_draws,)`` or ``(n_chains, n_draws)``; for ``"acceptance"`` the boolean
        accept history of an independence Metropolis chain.
    method : str, default "gamma"
        ``"gamma"`` (Wolff; the project's errors and tolerances), ``"arviz"`` (ArviZ
        ``method="mean"``) or ``"arviz-<m>"`` for another ArviZ method (e.g.
        ``"arviz-bulk"``), ``"emcee"``, or ``"acceptance"``.
    **kwargs
        Passed to :func:`gamma_method`, :func:`arviz_ess`, :func:`emcee_tau` or
        :func:`acceptance_tau`.

    Returns
    -------
    AutocorrResult
        Fields mean, err, tau_int, tau_int_err (NaN where the method has no error), ess, n,
        method, flags and convention, among others.
    """
    name = method.lower()
    if name == "gamma":
        return gamma_method(series, **kwargs)
    if name == "arviz":
        return arviz_ess(series, **kwargs)
    if name.startswith("arviz-"):
        return arviz_ess(series, method=name.removeprefix("arviz-"), **kwargs)
    if name == "emcee":
        return emcee_tau(series, **kwargs)
    if name == "acceptance":
        return acceptance_tau(series, **kwargs)
    raise ValueError(
        f"unknown method {method!r}; use 'gamma', 'arviz', 'arviz-<method>', 'emcee' "
        "or 'acceptance'"
    )


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
