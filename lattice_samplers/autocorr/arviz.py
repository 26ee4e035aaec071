"""ArviZ (``arviz_stats``) ESS, bulk ESS and R-hat, converted to the lattice convention.

The only module of the package that imports ArviZ (lazily: it is slow to load).
"""

from __future__ import annotations

import warnings

import numpy as np

from lattice_samplers.autocorr.base import (
    AutocorrResult,
    _as_chains,
    _common_flags,
    _stuck_chains,
    _stuck_result,
    _warn,
)

__all__ = ["arviz_ess", "arviz_ess_bulk", "arviz_rhat"]


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
