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

import numpy as np

from lattice_samplers.autocorr.acceptance import acceptance_tau, ess_kish
from lattice_samplers.autocorr.arviz import arviz_ess, arviz_ess_bulk, arviz_rhat
from lattice_samplers.autocorr.base import (
    CONVENTION,
    FLAG_MESSAGES,
    R_HAT_MAX,
    AutocorrResult,
    AutocorrWarning,
)
from lattice_samplers.autocorr.emcee_check import emcee_tau
from lattice_samplers.autocorr.gamma import derived_gamma_method, gamma_method, running_tau_int

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
