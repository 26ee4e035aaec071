"""Statistical checks of the tests: an estimate against an exact value, or two against each other.

Tolerances come from each chain's own Gamma-method error (k sigma), never from absolute
numbers; a series the Gamma method flags fails.  Every use in the tests has a negative
control that must fail the same check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lattice_samplers.summary import gamma_summary

__all__ = ["Check", "check_agreement", "check_mean"]


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
    """Check that the mean of ``series`` (n_chains, n_draws) is ``expected`` within k sigma.

    sigma is the series' own Gamma-method error.  A series the Gamma method flags (stuck,
    too short for its tau_int, non-finite, ...) fails: an estimate without a trustworthy error
    cannot confirm anything.
    """
    s = gamma_summary(series)
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
    """Check that two independent estimates agree within k sigma, sqrt(err_a^2 + err_b^2)."""
    a, b = gamma_summary(series_a), gamma_summary(series_b)
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
