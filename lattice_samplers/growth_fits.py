"""Growth fits of the scaling studies (arXiv:2112.15532): cost against L, first-reached targets.

* :func:`first_reached`: the step and seconds at which a target acceptance is first reached
  (the training job itself is :mod:`lattice_samplers.workflows.train`);
* :func:`fit_growth`: weighted least-squares fits of a cost against the lattice size, as an
  exponential in the volume (log n = a + b V) and as a power law (log n = a + p log L), with
  parameter errors, chi^2 and AIC, so the two growth laws can be compared honestly;
* :func:`lognormal_acceptance`: the acceptance erfc(sigma / 2) that independence Metropolis
  would have if the log weights were Gaussian with variance sigma^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import erfc

__all__ = [
    "DEFAULT_TARGETS",
    "first_reached",
    "fit_growth",
    "lognormal_acceptance",
]

#: Target acceptances of the scaling study.
DEFAULT_TARGETS: tuple[float, ...] = (0.3, 0.5, 0.7)


def first_reached(
    steps: np.ndarray, values: np.ndarray, seconds: np.ndarray, target: float
) -> tuple[int | None, float | None]:
    """First (step, seconds) at which ``values >= target``; (None, None) if never."""
    hit = np.flatnonzero(np.asarray(values) >= target)
    if hit.size == 0:
        return None, None
    i = int(hit[0])
    return int(steps[i]), float(seconds[i])


def lognormal_acceptance(var_log_weight: np.ndarray | float) -> np.ndarray | float:
    """Independence Metropolis acceptance erfc(sigma / 2) for Gaussian log weights."""
    return erfc(np.sqrt(np.asarray(var_log_weight, dtype=float)) / 2.0)


def fit_growth(
    L: Sequence[float], n: Sequence[float], n_err: Sequence[float] | None = None
) -> dict[str, dict[str, Any]]:
    """Fit a cost n(L) as exponential in the volume and as a power law in L.

    Both are straight lines in log n: ``log n = a + b L^2`` and ``log n = a + p log L``,
    fitted by weighted least squares with sigma(log n) = n_err / n (or equal weights when no
    errors are given).  Points with non-finite or non-positive n are left out.

    Returns
    -------
    dict
        ``{"exponential_volume": {...}, "power_law": {...}}``, each with ``params`` (a, b or
        a, p), ``errors``, ``chi2``, ``dof``, ``aic`` (chi^2 + 2 k) and ``n_points``; empty
        params when fewer than 3 points are usable.
    """
    L = np.asarray(L, dtype=float)
    n = np.asarray(n, dtype=float)
    err = np.full_like(n, np.nan) if n_err is None else np.asarray(n_err, dtype=float)
    ok = np.isfinite(n) & (n > 0) & np.isfinite(L)
    L, n, err = L[ok], n[ok], err[ok]
    sigma = np.where(np.isfinite(err) & (err > 0), err / np.maximum(n, 1e-300), np.nan)
    if np.all(np.isnan(sigma)):
        sigma = np.ones_like(n)
    else:
        # points without an error get the largest relative error seen (conservative)
        sigma = np.where(np.isnan(sigma), np.nanmax(sigma), sigma)
    y = np.log(n)
    out: dict[str, dict[str, Any]] = {}
    for name, x in (("exponential_volume", L**2), ("power_law", np.log(np.maximum(L, 1e-300)))):
        if n.size < 3:
            out[name] = {"params": [], "errors": [], "chi2": math.nan, "dof": 0,
                         "aic": math.nan, "n_points": int(n.size)}  # fmt: skip
            continue
        A = np.stack([np.ones_like(x), x], axis=1) / sigma[:, None]
        b = y / sigma
        coef, *_ = np.linalg.lstsq(A, b, rcond=None)
        cov = np.linalg.inv(A.T @ A)
        chi2 = float(np.sum((A @ coef - b) ** 2))
        dof = n.size - 2
        # scale errors by sqrt(chi2/dof) when the fit is poor (errors underestimated)
        scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
        out[name] = {
            "params": coef.tolist(),
            "errors": np.sqrt(np.diag(cov) * scale).tolist(),
            "chi2": chi2,
            "dof": dof,
            "aic": chi2 + 4.0,
            "n_points": int(n.size),
        }
    return out
