"""``emcee.autocorr.integrated_time`` as an independent cross-check of tau_int."""

from __future__ import annotations

import numpy as np

from lattice_samplers.autocorr.base import (
    AutocorrResult,
    _as_chains,
    _common_flags,
    _ess,
    _stuck_chains,
    _stuck_result,
    _warn,
)

__all__ = ["emcee_tau"]


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
