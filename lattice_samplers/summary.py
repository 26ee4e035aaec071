"""Summaries of a run: Gamma-method statistics per observable and sampler diagnostics.

:func:`summarize_observables` is the one place where a :class:`~lattice_samplers.driver.RunResult`
(or anything with ``observables`` as (chain, draw) arrays) is turned into
``{name: {mean, err, tau_int, tau_int_err, ess}}`` with Wolff's Gamma method across chains
(:func:`lattice_samplers.autocorr.gamma_method`, lattice convention tau_int = 1/2 + sum rho,
ess = N / (2 tau_int), N = all draws of all chains, in units of recorded draws).  Every sampler,
the flow independence Metropolis included, is summarized by the same code.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lattice_samplers.autocorr import CONVENTION, AutocorrWarning, gamma_method
from lattice_samplers.observables import SCALAR_OBSERVABLES
from lattice_samplers.records import json_safe

__all__ = [
    "Check",
    "check_agreement",
    "check_mean",
    "diagnostics",
    "result_summary",
    "summarize_observables",
    "summarize_series",
]

#: Observables every summary reports, in order (others present in the result follow).
SUMMARY_OBSERVABLES: tuple[str, ...] = SCALAR_OBSERVABLES


def _nan_entry(series: np.ndarray, flag: str) -> dict[str, Any]:
    finite = series[np.isfinite(series)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "err": math.nan,
        "tau_int": math.nan,
        "tau_int_err": math.nan,
        "ess": math.nan,
        "flags": [flag],
    }


def summarize_series(series: np.ndarray, *, quiet: bool = True) -> dict[str, Any]:
    """Gamma-method summary of one (n_chains, n_draws) or (n_draws,) series.

    Returns ``{mean, err, tau_int, tau_int_err, ess, flags}``; ``flags`` lists the Gamma
    method's warnings (``stuck``, ``short``, ...), or ``too_short`` / ``non_finite`` when no
    analysis is possible.  With ``quiet`` the AutocorrWarnings are captured into ``flags``
    instead of being emitted.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[np.newaxis]
    if x.shape[-1] < 4:
        return _nan_entry(x, "too_short")
    if not np.all(np.isfinite(x)):
        return _nan_entry(x, "non_finite")
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", AutocorrWarning)
        r = gamma_method(x)
    return {
        "mean": r.mean,
        "err": r.err,
        "tau_int": r.tau_int,
        "tau_int_err": r.tau_int_err,
        "ess": r.ess,
        "flags": list(r.flags),
    }


def summarize_observables(
    result: Any, names: Iterable[str] | None = None, *, quiet: bool = True
) -> dict[str, dict[str, Any]]:
    """Mean, error, tau_int (with error) and ESS of each observable, Gamma method over chains.

    Parameters
    ----------
    result : RunResult or object with ``observables``
        ``observables`` maps names to (n_chains, n_draws) arrays.
    names : iterable of str, optional
        Observables to summarize (default: all, standard ones first).
    quiet : bool
        Put the autocorrelation warnings into each entry's ``flags`` instead of warning.

    Returns
    -------
    dict
        ``{name: {"mean", "err", "tau_int", "tau_int_err", "ess", "flags"}}``; tau_int in
        recorded draws (multiply by ``thin`` for steps), lattice convention.
    """
    obs: Mapping[str, np.ndarray] = result.observables
    if names is None:
        names = [n for n in SUMMARY_OBSERVABLES if n in obs]
        names += [n for n in obs if n not in SUMMARY_OBSERVABLES]
    return {name: summarize_series(obs[name], quiet=quiet) for name in names}


def diagnostics(result: Any) -> dict[str, Any]:
    """Sampler diagnostics from the sample statistics of a run.

    Always ``acceptance``; with ``delta_h``: ``creutz`` (mean of exp(-delta_h), which is 1 in
    equilibrium for exact HMC) and its error, ``mean_abs_delta_h`` and
    ``n_nonfinite_delta_h`` (trajectories rejected for a NaN/inf energy); with
    ``cluster_size``: ``mean_cluster_size`` and its fraction of the volume.
    """
    stats = result.stats
    out: dict[str, Any] = {"acceptance": result.acceptance}
    if "exp_minus_delta_h" in stats and "delta_h" in stats:
        s = summarize_series(stats["exp_minus_delta_h"])
        out["creutz"] = s["mean"]
        out["creutz_err"] = s["err"]
        dh = np.asarray(stats["delta_h"])
        finite = np.abs(dh[np.isfinite(dh)])
        out["mean_abs_delta_h"] = float(finite.mean()) if finite.size else math.nan
        # thin > 1 averages delta_h over windows, so a non-finite window counts once
        out["n_nonfinite_delta_h"] = int(np.sum(~np.isfinite(dh)))
    if "cluster_size" in stats:
        size = float(np.mean(stats["cluster_size"]))
        out["mean_cluster_size"] = size
        out["mean_cluster_fraction"] = size / result.theory.volume
    return out


def result_summary(result: Any) -> dict[str, Any]:
    """The JSON object of ``lattice-samplers sample --json`` for a run.

    Keys: ``sampler``, ``L``, ``n_steps``, ``acceptance``, ``wall_time_s``, ``settings``,
    ``work``, ``observables`` ({name: {mean, err, tau_int, tau_int_err, ess}}), plus
    ``theory``, ``n_chains``, ``n_therm``, ``thin``, ``seed``, ``therm_time_s``,
    ``compile_time_s``, ``work_therm``, ``diagnostics`` and ``tau_int_convention``.
    Non-finite numbers become ``None`` (see :func:`lattice_samplers.records.json_safe`).
    """
    summary = {
        "sampler": result.sampler,
        "L": result.theory.L,
        "n_steps": result.n_steps,
        "acceptance": result.acceptance,
        "wall_time_s": result.wall_time_s,
        "settings": dict(result.settings),
        "work": dict(result.work),
        "observables": summarize_observables(result),
        "theory": result.theory.to_dict(),
        "n_chains": result.n_chains,
        "n_therm": result.n_therm,
        "thin": result.thin,
        "seed": result.seed,
        "therm_time_s": result.therm_time_s,
        "compile_time_s": result.compile_time_s,
        "work_therm": dict(result.work_therm),
        "diagnostics": diagnostics(result),
        "tau_int_convention": CONVENTION + " (in recorded draws)",
    }
    return json_safe(summary)


@dataclass(frozen=True)
class Check:
    """Outcome of a statistical check; truthy when it passed.

    Attributes
    ----------
    passed : bool
        The estimate is trustworthy (no warning flag from the Gamma method) and within
        ``k`` standard errors of the reference.
    value, err : float
        The estimate and its Gamma-method error (combined for two estimates: the difference).
    expected : float
        The reference value (0 for a difference).
    pull : float
        (value - expected) / err.
    flags : tuple of str
        The Gamma method's problem flags (a flagged estimate never passes).
    """

    passed: bool
    value: float
    err: float
    expected: float
    pull: float
    flags: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.passed


def _problems(flags: Iterable[str]) -> tuple[str, ...]:
    return tuple(f for f in flags if f != "anticorrelated")


def check_mean(series: np.ndarray, expected: float, k: float = 4.0) -> Check:
    """Does the mean of ``series`` (n_chains, n_draws) agree with ``expected`` within k sigma?

    sigma is the series' own Gamma-method error.  A series the Gamma method flags (stuck,
    too short for its tau_int, non-finite, ...) fails: an estimate without a trustworthy error
    cannot confirm anything.
    """
    s = summarize_series(series)
    flags = _problems(s["flags"])
    pull = (
        float((s["mean"] - expected) / s["err"]) if s["err"] and s["err"] == s["err"] else math.nan
    )
    return Check(
        passed=bool(not flags and math.isfinite(pull) and abs(pull) <= k),
        value=s["mean"],
        err=s["err"],
        expected=float(expected),
        pull=pull,
        flags=flags,
    )


def check_agreement(series_a: np.ndarray, series_b: np.ndarray, k: float = 4.0) -> Check:
    """Do two independent estimates agree within k combined sigma (sqrt(err_a^2 + err_b^2))?"""
    a, b = summarize_series(series_a), summarize_series(series_b)
    flags = _problems(a["flags"]) + _problems(b["flags"])
    err = math.hypot(a["err"], b["err"])
    diff = a["mean"] - b["mean"]
    pull = float(diff / err) if err and err == err else math.nan
    return Check(
        passed=bool(not flags and math.isfinite(pull) and abs(pull) <= k),
        value=diff,
        err=err,
        expected=0.0,
        pull=pull,
        flags=flags,
    )
