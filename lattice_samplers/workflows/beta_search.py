"""The root finder of ``tune``: where a measured, noisy, increasing xi/L(beta) crosses a target.

It brackets, narrows and fits locally by weighted least squares.

:func:`find_crossing` takes the measurement as a function and its search settings as one
small record, :class:`SearchSettings`; :func:`lattice_samplers.workflows.tune.tune_beta`
binds a sampler measurement to it.  The procedure:

1. Start at ``beta0`` and step by ``step`` (doubling) until two measured points bracket the
   target.
2. If that bracket is wider than 2 * step, measure at the interpolated crossing +- step / 2
   (repeat while needed), so that the fit below only sees nearby points.
3. Fit the tightest bracket plus every point within 1.5 * step of the crossing, solve, and
   measure at the solution.  Stop when that measurement agrees with the target within
   ``tolerance`` standard errors; else refit with the new point and repeat (``max_iter``
   rounds at most).  The final fit, around the last checked point, gives beta.

The error of beta is the fit's error at the crossing propagated through the slope,
err = sigma_fit(beta*) / |slope| (delta method, covariance scaled up by chi^2/dof when that
exceeds 1).  Each measurement has its own seed, ``SeedSequence(seed).spawn``-ed in order.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["Crossing", "PointMeasure", "SearchSettings", "XiPoint", "find_crossing"]

#: ``measure(beta, seed) -> (xi_over_L, err)`` at fixed L, lam and chain lengths.
PointMeasure = Callable[[float, int], tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class XiPoint:
    """One measurement of xi/L at one beta.

    Attributes
    ----------
    beta : float
        The ising-form beta.
    xi_over_L, xi_over_L_err : float
        Second-moment xi / L and its blocked-jackknife error.
    n_steps : int
        Measured sampler steps (after ``n_therm`` thermalization steps).
    seed : int
        Seed of this measurement's chain.
    wall_s : float
        Seconds the measurement took.
    """

    beta: float
    xi_over_L: float
    xi_over_L_err: float
    n_steps: int
    seed: int
    wall_s: float = dataclasses.field(default=0.0, compare=False)  # timing is not a result


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """How :func:`find_crossing` searches (the ``[tune]`` keys of the same names).

    Attributes
    ----------
    beta0 : float
        Starting beta.
    step : float
        Initial distance between measured betas; doubled while searching for a bracket.
    tolerance : float
        The check at the solution passes when |xi/L - target| <= tolerance * error.
    max_iter : int
        Fit-and-check rounds after the bracket is found.
    max_bracket : int
        Measurements allowed while searching for a bracket.
    n_steps : int
        Measured sampler steps per point (recorded with each point).
    """

    beta0: float
    step: float = 0.01
    tolerance: float = 2.0
    max_iter: int = 3
    max_bracket: int = 8
    n_steps: int = 0


@dataclasses.dataclass(frozen=True)
class Crossing:
    """What :func:`find_crossing` found: beta, its error, the fit and every point."""

    beta: float
    beta_err: float
    checked: XiPoint
    converged: bool
    slope: float
    slope_err: float
    chi2_dof: float
    fit_points: tuple[int, ...]
    points: tuple[XiPoint, ...]


def find_crossing(
    measure: PointMeasure,
    target: float,
    search: SearchSettings,
    seed: int = 0,
    *,
    label: str = "",
    progress: Callable[[str], None] | None = None,
) -> Crossing:
    """The beta at which ``measure`` crosses ``target`` (see the module docstring).

    Raises
    ------
    ValueError
        When no bracket is found within ``max_bracket`` measurements, beta leaves the
        positive range, or xi/L does not grow with beta around the crossing.
    """
    xi_over_L, step, n_steps = target, search.step, search.n_steps
    where = f" for {label}" if label else ""
    seeds = np.random.SeedSequence(seed)
    points: list[XiPoint] = []

    def at(beta: float) -> XiPoint:
        child = seeds.spawn(1)[0]  # k-th call: spawn_key (k,), fixed by the order of calls
        point_seed = int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
        t = time.perf_counter()
        value, err = measure(beta, point_seed)
        p = XiPoint(float(beta), float(value), float(err), n_steps, point_seed, 0.0)
        p = dataclasses.replace(p, wall_s=time.perf_counter() - t)
        points.append(p)
        if progress is not None:
            progress(f"{label} beta={beta:.5f}: xi/L = {value:.4f} +- {err:.4f} ({p.wall_s:.1f} s)")
        return p

    # 1. bracket the target, walking from beta0 in the direction the first point says
    p = at(search.beta0)
    direction = 1.0 if not p.xi_over_L >= xi_over_L else -1.0  # NaN: too disordered, go up
    delta = step
    beta = search.beta0
    while _bracket(points, xi_over_L) is None:
        if len(points) >= search.max_bracket:
            raise ValueError(
                f"tune: no bracket of xi/L = {xi_over_L} found{where} after "
                f"{len(points)} measurements (beta {min(q.beta for q in points):.4f} .. "
                f"{max(q.beta for q in points):.4f}); give a better --beta0 or a larger step"
            )
        beta = beta + direction * delta
        if beta <= 0:
            raise ValueError(f"tune: beta left the positive range searching{where}")
        at(beta)
        delta *= 2.0

    # 2. narrow a wide bracket (left by the doubling steps) to about 2 * step
    for _ in range(4):
        pair = _bracket(points, xi_over_L)
        assert pair is not None
        if points[pair[1]].beta - points[pair[0]].beta <= 2.0 * step * (1.0 + 1e-9):
            break
        estimate = _interpolate(points, pair, xi_over_L)
        at(estimate - 0.5 * step)
        at(estimate + 0.5 * step)

    # 3. local fit, solve, check at the solution; refit with the new point if it disagrees
    pair = _bracket(points, xi_over_L)
    assert pair is not None
    centre = _interpolate(points, pair, xi_over_L)
    window = 1.5 * step
    checked: XiPoint | None = None
    for _ in range(search.max_iter):
        idx = _fit_indices(points, xi_over_L, centre, window)
        coef, cov, _ = _linear_fit(*_arrays(points, idx))
        if coef[1] <= 0:
            raise ValueError(f"tune: xi/L does not grow with beta around beta = {centre:.4f}")
        centre, _ = _solve(coef, cov, xi_over_L)
        checked = at(centre)
        if abs(checked.xi_over_L - xi_over_L) <= search.tolerance * checked.xi_over_L_err:
            break

    assert checked is not None
    idx = _fit_indices(points, xi_over_L, checked.beta, window)
    coef, cov, chi2_dof = _linear_fit(*_arrays(points, idx))
    beta_star, beta_err = _solve(coef, cov, xi_over_L)
    converged = abs(checked.xi_over_L - xi_over_L) <= search.tolerance * checked.xi_over_L_err
    return Crossing(
        beta=beta_star,
        beta_err=beta_err,
        checked=checked,
        converged=bool(converged),
        slope=float(coef[1]),
        slope_err=float(math.sqrt(cov[1, 1])),
        chi2_dof=chi2_dof,
        fit_points=tuple(idx),
        points=tuple(points),
    )


def _linear_fit(
    x: np.ndarray, y: np.ndarray, err: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted least squares y = a + b x; returns (a, b), their covariance and chi^2/dof.

    With more than two points the covariance is scaled by chi^2/dof when that exceeds 1
    (the points scatter more than their errors say: a nonlinear range or underestimated
    errors), so the quoted error does not pretend otherwise.
    """
    w = 1.0 / err**2
    A = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    coef = cov @ (A.T @ (w * y))
    dof = len(x) - 2
    chi2_dof = float(np.sum(w * (y - A @ coef) ** 2) / dof) if dof > 0 else float("nan")
    if dof > 0 and chi2_dof > 1.0:
        cov = cov * chi2_dof
    return coef, cov, chi2_dof


def _solve(coef: np.ndarray, cov: np.ndarray, target: float) -> tuple[float, float]:
    """beta* with a + b beta* = target, and its delta-method error."""
    a, b = coef
    beta = (target - a) / b
    grad = np.array([1.0, beta])  # d(a + b beta)/d(a, b) at fixed beta
    sigma_line = math.sqrt(float(grad @ cov @ grad))
    return float(beta), sigma_line / abs(float(b))


def _usable(points: Sequence[XiPoint]) -> list[int]:
    return [i for i, p in enumerate(points) if math.isfinite(p.xi_over_L) and p.xi_over_L_err > 0]


def _bracket(points: Sequence[XiPoint], target: float) -> tuple[int, int] | None:
    """The tightest bracket: the largest beta below the target and the smallest beta above."""
    usable = _usable(points)
    below = [i for i in usable if points[i].xi_over_L < target]
    above = [i for i in usable if points[i].xi_over_L >= target]
    if not below or not above:
        return None
    return max(below, key=lambda i: points[i].beta), min(above, key=lambda i: points[i].beta)


def _interpolate(points: Sequence[XiPoint], pair: tuple[int, int], target: float) -> float:
    lo, hi = points[pair[0]], points[pair[1]]
    if hi.xi_over_L == lo.xi_over_L:
        return 0.5 * (lo.beta + hi.beta)
    return lo.beta + (target - lo.xi_over_L) * (hi.beta - lo.beta) / (hi.xi_over_L - lo.xi_over_L)


def _fit_indices(
    points: Sequence[XiPoint], target: float, centre: float, window: float
) -> list[int]:
    """Points for the local linear fit: the tightest bracket plus all within ``window`` of centre.

    Only nearby points enter, so the curvature of xi/L(beta) does not bias the solution.
    """
    pair = _bracket(points, target)
    chosen = set(pair or ())
    chosen |= {i for i in _usable(points) if abs(points[i].beta - centre) <= window}
    return sorted(chosen, key=lambda i: points[i].beta)


def _arrays(points: Sequence[XiPoint], idx: Sequence[int]) -> tuple[np.ndarray, ...]:
    x = np.array([points[i].beta for i in idx])
    y = np.array([points[i].xi_over_L for i in idx])
    e = np.array([points[i].xi_over_L_err for i in idx])
    return x, y, e
