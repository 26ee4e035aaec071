"""Summaries of a run: autocorrelation statistics per observable and sampler diagnostics.

:func:`summarize_series` is the one place where a (chain, draw) series becomes
``{mean, err, tau_int, tau_int_err, ess, estimator, tau_int_gamma, tau_int_gamma_err, window,
tau_int_arviz, ess_bulk, r_hat, flags}``, and :func:`summarize_observables` applies it to every
observable of a :class:`~lattice_samplers.driver.RunResult` (or anything with ``observables`` as
(chain, draw) arrays).  Both estimators of tau_int are always computed, across chains, in the
lattice convention tau_int = 1/2 + sum rho, ess = N / (2 tau_int), N = all draws of all chains,
in units of recorded draws: Wolff's Gamma method (:func:`lattice_samplers.autocorr.gamma_method`)
and ArviZ's autocorrelation ESS (``method="mean"``, :func:`lattice_samplers.autocorr.arviz_ess`).
``tau_estimator`` (:class:`AnalysisSettings`) chooses which one drives ``tau_int``, ``err``,
``ess`` and hence the costs; every sampler, the flow independence Metropolis included, is
summarized by the same code.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lattice_samplers.autocorr import (
    CONVENTION,
    FLAG_MESSAGES,
    R_HAT_MAX,
    AutocorrWarning,
    arviz_ess,
    arviz_ess_bulk,
    arviz_rhat,
    gamma_method,
)
from lattice_samplers.observables import SCALAR_OBSERVABLES
from lattice_samplers.records import json_safe

__all__ = [
    "TAU_ESTIMATORS",
    "AnalysisSettings",
    "diagnostics",
    "gamma_summary",
    "format_observable_table",
    "result_summary",
    "summarize_observables",
    "summarize_series",
]

#: Observables every summary reports, in order (others present in the result follow).
SUMMARY_OBSERVABLES: tuple[str, ...] = SCALAR_OBSERVABLES

#: Estimators that may drive tau_int, err, ess and costs.
TAU_ESTIMATORS: tuple[str, ...] = ("arviz", "gamma")

#: Two tau_int estimates further apart than this many errors are flagged.
DISAGREE_SIGMA = 3.0


@dataclass(frozen=True)
class AnalysisSettings:
    """How summaries estimate autocorrelation (the future ``[analysis]`` config section).

    Attributes
    ----------
    tau_estimator : str, default "arviz"
        ``"arviz"``: tau_int = N / (2 ESS) from ArviZ's autocorrelation ESS
        (``method="mean"``), its error from the Gamma method's relative error;
        ``"gamma"``: Wolff's Gamma method with its own error.
    """

    tau_estimator: str = "arviz"

    def __post_init__(self) -> None:
        if self.tau_estimator not in TAU_ESTIMATORS:
            raise ValueError(
                f"tau_estimator must be one of {', '.join(TAU_ESTIMATORS)}, "
                f"got {self.tau_estimator!r}"
            )


def _check_estimator(tau_estimator: str) -> str:
    return AnalysisSettings(tau_estimator).tau_estimator


def _nan_entry(series: np.ndarray, flag: str, tau_estimator: str) -> dict[str, Any]:
    finite = series[np.isfinite(series)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "err": math.nan,
        "tau_int": math.nan,
        "tau_int_err": math.nan,
        "ess": math.nan,
        "estimator": tau_estimator,
        "tau_int_gamma": math.nan,
        "tau_int_gamma_err": math.nan,
        "window": None,
        "tau_int_arviz": math.nan,
        "ess_bulk": math.nan,
        "r_hat": math.nan,
        "flags": [flag],
    }


def gamma_summary(series: np.ndarray) -> dict[str, Any]:
    """{mean, err, flags} from the Gamma method alone: the errors of statistical checks.

    Tolerances of checks come from the Gamma method (DESIGN.md), and only its flags fail a
    check; no ArviZ call is made.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[np.newaxis]
    if x.shape[-1] < 4:
        return _nan_entry(x, "too_short", "gamma")
    if not np.all(np.isfinite(x)):
        return _nan_entry(x, "non_finite", "gamma")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AutocorrWarning)
        g = gamma_method(x)
    return {"mean": g.mean, "err": g.err, "flags": list(g.flags)}


def _merge_flags(*lists: Iterable[str]) -> list[str]:
    out: list[str] = []
    for flags in lists:
        out += [f for f in flags if f not in out]
    return out


def summarize_series(
    series: np.ndarray, *, quiet: bool = True, tau_estimator: str = "arviz"
) -> dict[str, Any]:
    """Autocorrelation summary of one (n_chains, n_draws) or (n_draws,) series.

    Both tau_int estimators are computed over all chains together, and R-hat over the chains:

    - ``tau_int_gamma`` +- ``tau_int_gamma_err`` with summation ``window``: Wolff's Gamma
      method (:func:`~lattice_samplers.autocorr.gamma_method`);
    - ``tau_int_arviz``: N / (2 ESS) with ArviZ's autocorrelation ESS (``method="mean"``);
    - ``ess_bulk``: ArviZ's rank-normalized bulk ESS; ``r_hat``: ArviZ's rank-normalized split
      R-hat (NaN for one chain).

    ``tau_estimator`` picks which tau_int becomes ``tau_int``, ``ess = N / (2 tau_int)`` and
    ``err = sqrt(2 tau_int Var / N)`` (and so the costs computed from them); ``estimator``
    records the choice.  With ``"arviz"`` (the default) ``tau_int_err`` is
    ``tau_int_arviz * tau_int_gamma_err / tau_int_gamma``: ArviZ gives no error of its own, and
    the relative error of a tau_int estimate is a property of the series (its length against
    its autocorrelation), which the Gamma method measures on the same draws.

    Flags: the Gamma method's and ArviZ's (``stuck``, ``stuck_chain``, ``short``,
    ``window_not_found``, ``arviz_cap``, ``anticorrelated``, ...), ``estimators_disagree``
    when the two tau_int differ by more than 3 ``tau_int_gamma_err``, ``r_hat`` when
    R-hat > 1.01, or ``too_short`` / ``non_finite`` when no analysis is possible.  A series
    that never fluctuates is ``stuck`` with ess 0 and tau_int inf, whatever ArviZ says (it
    calls a constant chain perfectly efficient).  With ``quiet`` the AutocorrWarnings are
    captured into ``flags`` instead of being emitted.
    """
    tau_estimator = _check_estimator(tau_estimator)
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[np.newaxis]
    if x.shape[-1] < 4:
        return _nan_entry(x, "too_short", tau_estimator)
    if not np.all(np.isfinite(x)):
        return _nan_entry(x, "non_finite", tau_estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AutocorrWarning)  # emitted below, once, if not quiet
        g = gamma_method(x)
        a = arviz_ess(x)
        bulk = arviz_ess_bulk(x)
        r_hat = arviz_rhat(x)
    n = int(x.size)
    if "stuck" in g.flags:
        tau_int, tau_int_err, ess, err = math.inf, math.nan, 0.0, math.nan
    elif tau_estimator == "gamma":
        tau_int, tau_int_err, ess, err = g.tau_int, g.tau_int_err, g.ess, g.err
    else:
        tau_int = a.tau_int
        rel = g.tau_int_err / g.tau_int if g.tau_int > 0 else math.nan
        tau_int_err = abs(tau_int) * rel
        ess = n / (2.0 * tau_int) if tau_int > 0 else math.nan
        err = math.sqrt(2.0 * tau_int * a.variance / n) if tau_int > 0 else math.nan
    extra = []
    if (
        math.isfinite(g.tau_int_err)
        and math.isfinite(a.tau_int)
        and abs(g.tau_int - a.tau_int) > DISAGREE_SIGMA * g.tau_int_err
    ):
        extra.append("estimators_disagree")
    if r_hat > R_HAT_MAX:
        extra.append("r_hat")
    flags = _merge_flags(g.flags, a.flags, extra)
    if not quiet:
        for flag in flags:
            if flag in FLAG_MESSAGES:
                warnings.warn(f"summary: {FLAG_MESSAGES[flag]}", AutocorrWarning, stacklevel=2)
    return {
        "mean": g.mean,
        "err": err,
        "tau_int": tau_int,
        "tau_int_err": tau_int_err,
        "ess": ess,
        "estimator": tau_estimator,
        "tau_int_gamma": g.tau_int,
        "tau_int_gamma_err": g.tau_int_err,
        "window": g.window,
        "tau_int_arviz": a.tau_int,
        "ess_bulk": bulk.ess,
        "r_hat": r_hat,
        "flags": flags,
    }


def summarize_observables(
    result: Any,
    names: Iterable[str] | None = None,
    *,
    quiet: bool = True,
    tau_estimator: str = "arviz",
) -> dict[str, dict[str, Any]]:
    """Mean, error, tau_int (both estimators), ESS and R-hat of each observable over chains.

    Parameters
    ----------
    result : RunResult or object with ``observables``
        ``observables`` maps names to (n_chains, n_draws) arrays.
    names : iterable of str, optional
        Observables to summarize (default: all, standard ones first).
    quiet : bool
        Put the autocorrelation warnings into each entry's ``flags`` instead of warning.
    tau_estimator : {"arviz", "gamma"}, default "arviz"
        Which estimator drives ``tau_int``, ``err`` and ``ess`` (see :func:`summarize_series`).

    Returns
    -------
    dict
        ``{name: {"mean", "err", "tau_int", "tau_int_err", "ess", "estimator",
        "tau_int_gamma", "tau_int_gamma_err", "window", "tau_int_arviz", "ess_bulk", "r_hat",
        "flags"}}``; tau_int in recorded draws (multiply by ``thin`` for steps), lattice
        convention.
    """
    obs: Mapping[str, np.ndarray] = result.observables
    if names is None:
        names = [n for n in SUMMARY_OBSERVABLES if n in obs]
        names += [n for n in obs if n not in SUMMARY_OBSERVABLES]
    return {
        name: summarize_series(obs[name], quiet=quiet, tau_estimator=tau_estimator)
        for name in names
    }


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
        s = gamma_summary(stats["exp_minus_delta_h"])
        out["creutz"] = s["mean"]
        out["creutz_err"] = s["err"]
        dh = np.asarray(stats["delta_h"])
        finite = np.abs(dh[np.isfinite(dh)])
        out["mean_abs_delta_h"] = float(finite.mean()) if finite.size else math.nan
        # thin > 1 averages delta_h over windows, so a non-finite window counts once
        out["n_nonfinite_delta_h"] = int(np.sum(~np.isfinite(dh)))
    if "reverse_max_dz" in stats:  # reversibility checks (0 on unchecked trajectories)
        out["reverse_max_dz"] = float(np.max(stats["reverse_max_dz"]))
        out["reverse_max_abs_dh"] = float(np.max(stats["reverse_abs_dh"]))
    if "cluster_size" in stats:
        size = float(np.mean(stats["cluster_size"]))
        out["mean_cluster_size"] = size
        out["mean_cluster_fraction"] = size / result.theory.volume
    return out


def result_summary(result: Any, *, tau_estimator: str = "arviz") -> dict[str, Any]:
    """The JSON object of ``lattice-samplers sample --json`` for a run.

    Keys: ``sampler``, ``L``, ``n_steps``, ``acceptance``, ``wall_time_s`` (elapsed production
    seconds), ``core_time_s`` (production seconds summed over chains, the hardware-neutral
    one), ``settings``, ``work``, ``observables`` ({name: entry of :func:`summarize_series`}),
    plus ``theory``, ``n_chains``, ``workers``, ``n_therm``, ``thin``, ``seed``,
    ``therm_time_s``, ``therm_core_time_s``, ``compile_time_s``, ``work_therm``,
    ``diagnostics``, ``tau_estimator`` (what drove tau_int and ess) and
    ``tau_int_convention``.
    Non-finite numbers become ``None`` (see :func:`lattice_samplers.records.json_safe`).
    """
    summary = {
        "sampler": result.sampler,
        "L": result.theory.L,
        "n_steps": result.n_steps,
        "acceptance": result.acceptance,
        "wall_time_s": result.wall_time_s,
        "core_time_s": result.core_time_s,
        "settings": dict(result.settings),
        "work": dict(result.work),
        "observables": summarize_observables(result, tau_estimator=tau_estimator),
        "theory": result.theory.to_dict(),
        "n_chains": result.n_chains,
        "workers": result.workers,
        "n_therm": result.n_therm,
        "thin": result.thin,
        "seed": result.seed,
        "therm_time_s": result.therm_time_s,
        "therm_core_time_s": result.therm_core_time_s,
        "compile_time_s": result.compile_time_s,
        "work_therm": dict(result.work_therm),
        "diagnostics": diagnostics(result),
        "tau_estimator": tau_estimator,
        "tau_int_convention": CONVENTION + " (in recorded draws)",
    }
    return json_safe(summary)


def _fmt(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, spec)


def format_observable_table(
    observables: Mapping[str, Mapping[str, Any]], name_header: str = "observable"
) -> str:
    """A text table of summary entries (:func:`summarize_series`), one row per name.

    Columns: mean, err, tau_int +- error and ess (from the chosen estimator), both tau_int
    estimates (Gamma method with its window, ArviZ), ArviZ's bulk ESS and R-hat, and the
    problem flags (``anticorrelated`` is information and not shown).  The first line says
    which estimator drove tau_int, err and ess.
    """
    estimators = sorted({str(s.get("estimator", "gamma")) for s in observables.values()})
    width = max([len(name_header), *(len(n) for n in observables)]) + 2
    header = (
        f"{name_header:<{width}}{'mean':>13}{'err':>10}{'tau_int':>10}{'+-':>8}{'ess':>10}"
        f"{'tau_gamma':>11}{'W':>6}{'tau_arviz':>11}{'ess_bulk':>10}{'r_hat':>8}"
    )
    lines = [f"tau_int, err and ess by: {', '.join(estimators) or '-'}", header, "-" * len(header)]
    for name, s in observables.items():
        flags = [f for f in s.get("flags") or [] if f != "anticorrelated"]
        lines.append(
            f"{name:<{width}}{_fmt(s.get('mean'), '.6g'):>13}{_fmt(s.get('err'), '.2g'):>10}"
            f"{_fmt(s.get('tau_int'), '.4g'):>10}{_fmt(s.get('tau_int_err'), '.2g'):>8}"
            f"{_fmt(s.get('ess'), '.0f'):>10}{_fmt(s.get('tau_int_gamma'), '.4g'):>11}"
            f"{_fmt(s.get('window'), 'd'):>6}{_fmt(s.get('tau_int_arviz'), '.4g'):>11}"
            f"{_fmt(s.get('ess_bulk'), '.0f'):>10}{_fmt(s.get('r_hat'), '.4f'):>8}"
            + (f"  [{', '.join(flags)}]" if flags else "")
        )
    return "\n".join(lines)
