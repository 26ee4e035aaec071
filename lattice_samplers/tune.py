"""Tuning the ising-form beta to a fixed correlation length, xi = (xi/L) * L, and the beta(L) table.

:func:`tune_beta` measures the second-moment correlation length (PHYSICS.md section 2)

    xi^2 = (G~(0) / G~(p_min) - 1) / (4 sin^2(pi / L))

with a classical sampler (Wolff cluster updates composed with Metropolis sweeps by default:
the cluster update decorrelates the long-distance modes that xi is made of) at a few beta,
fits xi/L linearly in beta by weighted least squares, solves for the target, and checks the
solution with a fresh measurement there.  The procedure:

1. Start at ``beta0`` (default: the PHYSICS.md table interpolated in L for lam = 0.5, else
   0.6) and step by ``step`` (doubling) until two measured points bracket the target.
2. If that bracket is wider than 2 * step, measure at the interpolated crossing +- step / 2
   (repeat while needed), so that the fit below only sees nearby points.
3. Fit the tightest bracket plus every point within 1.5 * step of the crossing, solve, and
   measure at the solution.  Stop when that measurement agrees with the target within
   ``tolerance`` standard errors; else refit with the new point and repeat (``max_iter``
   rounds at most).  The final fit, around the last checked point, gives beta.

The reported ``beta_err`` is the fit's error at the crossing propagated through the slope,
err = sigma_fit(beta*) / |slope| (delta method, covariance scaled up by chi^2/dof when that
exceeds 1).  Each measurement has its own seed, ``SeedSequence(seed).spawn``-ed in order.

The table.  ``lattice-samplers tune --L 6 8 ... 20 --lam 0.5 --out data/tuning`` runs one
``tune`` scan task per L (:mod:`lattice_samplers.scan`, so it resumes) and writes
``beta_tuned.csv`` and ``beta_tuned.json``.  Configs refer to it by name:
``theory.beta = "tuned"`` means "the tabulated beta for this L and lam at xi/L = 0.25", and
``"tuned:0.5"`` selects the xi/L = 0.5 rows (:func:`resolve_tuned`).  The table is read from
``data/tuning/beta_tuned.csv`` of the source tree or from the file named by the
``LATTICE_SAMPLERS_TUNING_TABLE`` environment variable.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers.config import ConfigError

#: The starting table of ../shared/PHYSICS.md section 2 (lam = 0.5, xi = L/4): L -> beta.
PHYSICS_MD_BETA: Mapping[int, float] = {
    6: 0.537,
    8: 0.576,
    10: 0.600,
    12: 0.616,
    14: 0.625,
    16: 0.633,
    18: 0.639,
    20: 0.645,
}

#: Default table path (relative to the source tree) and its override variable.
TABLE_PATH = Path(__file__).resolve().parents[1] / "data" / "tuning" / "beta_tuned.csv"
TABLE_ENV = "LATTICE_SAMPLERS_TUNING_TABLE"

#: Columns of the table CSV, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "L",
    "lam",
    "xi_over_L_target",
    "beta",
    "beta_err",
    "xi_over_L",
    "xi_over_L_err",
    "beta_checked",
    "beta_physics_md",
    "n_points",
    "n_steps",
    "converged",
    "seed",
    "wall_s",
)


# ============================================================================ results
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
class TuneResult:
    """The outcome of :func:`tune_beta`.

    Attributes
    ----------
    L : int
    lam : float
    xi_over_L_target : float
    beta, beta_err : float
        The solution of the final fit and its error.
    xi_over_L, xi_over_L_err : float
        xi/L measured at ``beta_checked`` (the last solution checked by a new measurement).
    beta_checked : float
    converged : bool
        Whether that measurement agrees with the target within ``tolerance`` errors.
    slope, slope_err : float
        d(xi/L)/d(beta) of the final fit.
    chi2_dof : float
        chi^2 per degree of freedom of the final fit (NaN with 2 points).
    fit_points : tuple of int
        Indices into ``points`` used in the final fit.
    points : tuple of XiPoint
        Every measurement, in the order made.
    settings : dict
        The arguments of the call (sampler, chain lengths, seed, ...).
    wall_s : float
    """

    L: int
    lam: float
    xi_over_L_target: float
    beta: float
    beta_err: float
    xi_over_L: float
    xi_over_L_err: float
    beta_checked: float
    converged: bool
    slope: float
    slope_err: float
    chi2_dof: float
    fit_points: tuple[int, ...]
    points: tuple[XiPoint, ...]
    settings: dict[str, Any]
    wall_s: float = dataclasses.field(default=0.0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (points as a list of dicts)."""
        d = dataclasses.asdict(self)
        d["points"] = [dataclasses.asdict(p) for p in self.points]
        d["fit_points"] = list(self.fit_points)
        return d

    def table_row(self) -> dict[str, Any]:
        """The row of the beta(L) table (:data:`TABLE_COLUMNS`)."""
        return {
            "L": self.L,
            "lam": self.lam,
            "xi_over_L_target": self.xi_over_L_target,
            "beta": self.beta,
            "beta_err": self.beta_err,
            "xi_over_L": self.xi_over_L,
            "xi_over_L_err": self.xi_over_L_err,
            "beta_checked": self.beta_checked,
            "beta_physics_md": PHYSICS_MD_BETA.get(self.L) if self.lam == 0.5 else None,
            "n_points": len(self.points),
            "n_steps": self.settings["n_steps"],
            "converged": self.converged,
            "seed": self.settings["seed"],
            "wall_s": round(self.wall_s, 2),
        }


# ============================================================================ measuring
#: ``measure(L, beta, lam, n_steps, n_therm, seed) -> (xi_over_L, err)``
Measure = Callable[[int, float, float, int, int, int], tuple[float, float]]


def measure_xi_over_L(
    L: int,
    beta: float,
    lam: float,
    n_steps: int,
    n_therm: int,
    seed: int,
    sampler: str = "cluster",
    n_bins: int = 40,
) -> tuple[float, float]:
    """Second-moment xi / L and its blocked-jackknife error from one chain.

    Parameters
    ----------
    L : int
        Lattice extent.
    beta, lam : float
        Ising-form couplings.
    n_steps, n_therm : int
        Measured and thermalization steps of the sampler.
    seed : int
        Seed of the chain.
    sampler : str
        Sampler kind of :mod:`lattice_samplers.samplers` (``cluster``, ``hmc``,
        ``metropolis``).
    n_bins : int
        Jackknife bins (each bin must be several tau_int long).

    Returns
    -------
    xi_over_L, err : float
        NaN if the estimate of xi^2 is negative (a far too disordered point).
    """
    from lattice_samplers import observables
    from lattice_samplers.theory import Phi4Theory

    theory = Phi4Theory.create(L, "ising", beta=beta, lam=lam)
    g0, g_pmin = _two_point_series(theory, n_steps, n_therm, seed, sampler)
    xi, err = observables.second_moment_correlation_length(g0, g_pmin, L, n_bins=n_bins)
    return xi / L, err / L


#: Configurations buffered between batched FFTs in :func:`_two_point_series`.
_CHUNK = 512
#: Thermalization block length between adaptations of the sampler's tuned setting.
_ADAPT_BLOCK = 50


def _two_point_series(
    theory: Any, n_steps: int, n_therm: int, seed: int, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Series of G~(0) and G~(p_min) after each of ``n_steps`` steps of one sampler chain.

    The samplers record only scalar observables in their compiled loops, and G~(p_min) needs
    the field, so the chain advances one step per compiled call and the fields are buffered
    and Fourier transformed in batches.  The tuned setting (e.g. the Metropolis width of the
    cluster sampler's sweeps) adapts during the first 3/4 of the thermalization, as in
    :func:`lattice_samplers.run.run_sampler`, then stays fixed.
    """
    from lattice_samplers import observables
    from lattice_samplers.samplers import make_sampler

    sampler = make_sampler(kind, theory)
    sampler.warmup()
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    state = sampler.init(None, rng)
    done, k = 0, 0
    while done < n_therm:
        block = min(_ADAPT_BLOCK, n_therm - done)
        chain = sampler.run(state, block, rng, thin=block)
        if done < 0.75 * n_therm:
            sampler.adapt(chain.acceptance, k)
            k += 1
        done += block

    obs = np.empty((1, len(sampler.observable_names)))
    stats = np.empty((1, len(sampler.stat_names)))
    buf = np.empty((min(_CHUNK, n_steps), *theory.shape))
    g0 = np.empty(n_steps)
    g_pmin = np.empty(n_steps)
    for start in range(0, n_steps, len(buf)):
        n = min(len(buf), n_steps - start)
        for i in range(n):
            sampler.run_block(state, 1, 1, rng, obs, stats)
            buf[i] = state.phi
        g0[start : start + n] = observables.two_point_susceptibility(buf[:n])
        g_pmin[start : start + n] = observables.two_point_pmin(buf[:n])
    return g0, g_pmin


# ============================================================================ fitting
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


def interpolate_physics_md(L: int) -> float:
    """beta for lam = 0.5 and xi = L/4 from the PHYSICS.md starting table (linear in L, clamped)."""
    Ls = np.array(sorted(PHYSICS_MD_BETA), dtype=float)
    betas = np.array([PHYSICS_MD_BETA[int(k)] for k in Ls])
    return float(np.interp(L, Ls, betas))


# ============================================================================ tuning
def tune_beta(
    L: int,
    lam: float,
    xi_over_L: float = 0.25,
    *,
    beta0: float | None = None,
    step: float = 0.01,
    n_steps: int = 20_000,
    n_therm: int = 1_000,
    seed: int = 0,
    sampler: str = "cluster",
    tolerance: float = 2.0,
    max_iter: int = 3,
    max_bracket: int = 8,
    measure: Measure | None = None,
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Find the ising-form beta at which the second-moment xi / L equals ``xi_over_L``.

    Parameters
    ----------
    L : int
        Lattice extent (>= 3: xi needs a nonzero momentum and a neighbour).
    lam : float
        Ising-form quartic coupling (> 0).
    xi_over_L : float
        Target xi / L (default 0.25, i.e. m L = 4).
    beta0 : float, optional
        Starting guess; default the PHYSICS.md table interpolated in L (lam = 0.5) or 0.6.
    step : float
        Initial distance between measured betas; doubled while searching for a bracket.
    n_steps, n_therm : int
        Measured and thermalization sampler steps per point.
    seed : int
        Root seed; the k-th measurement uses ``SeedSequence(seed).spawn``'s k-th child.
    sampler : str
        Sampler kind used to measure (see :func:`measure_xi_over_L`).
    tolerance : float
        The check at the solution passes when |xi/L - target| <= tolerance * error.
    max_iter : int
        Fit-and-check rounds after the bracket is found.
    max_bracket : int
        Measurements allowed while searching for a bracket.
    measure : callable, optional
        Replaces the sampler measurement: ``measure(L, beta, lam, n_steps, n_therm, seed)
        -> (xi_over_L, err)`` (tests, other estimators).
    progress : callable, optional
        Receives one line per measurement.

    Returns
    -------
    TuneResult

    Raises
    ------
    ValueError
        For invalid arguments, or when no bracket of the target is found.
    """
    _check_args(L, lam, xi_over_L, beta0, step, n_steps, n_therm, seed, tolerance, max_iter)
    if measure is None:
        _check_sampler(sampler)
    t0 = time.perf_counter()
    if beta0 is None:
        beta0 = interpolate_physics_md(L) if lam == 0.5 else 0.6
    custom = measure is not None
    if measure is None:

        def measure(L_, beta_, lam_, n_, nt_, seed_):  # noqa: ANN001, ANN202 - local adapter
            return measure_xi_over_L(L_, beta_, lam_, n_, nt_, seed_, sampler=sampler)

    seeds = np.random.SeedSequence(seed)
    points: list[XiPoint] = []

    def at(beta: float) -> XiPoint:
        child = seeds.spawn(1)[0]  # k-th call: spawn_key (k,), fixed by the order of calls
        point_seed = int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
        t = time.perf_counter()
        value, err = measure(L, beta, lam, n_steps, n_therm, point_seed)
        p = XiPoint(float(beta), float(value), float(err), n_steps, point_seed, 0.0)
        p = dataclasses.replace(p, wall_s=time.perf_counter() - t)
        points.append(p)
        if progress is not None:
            progress(f"L={L} beta={beta:.5f}: xi/L = {value:.4f} +- {err:.4f} ({p.wall_s:.1f} s)")
        return p

    # 1. bracket the target, walking from beta0 in the direction the first point says
    p = at(beta0)
    direction = 1.0 if not p.xi_over_L >= xi_over_L else -1.0  # NaN: too disordered, go up
    delta = step
    beta = beta0
    while _bracket(points, xi_over_L) is None:
        if len(points) >= max_bracket:
            raise ValueError(
                f"tune: no bracket of xi/L = {xi_over_L} found for L={L}, lam={lam} after "
                f"{len(points)} measurements (beta {min(q.beta for q in points):.4f} .. "
                f"{max(q.beta for q in points):.4f}); give a better --beta0 or a larger step"
            )
        beta = beta + direction * delta
        if beta <= 0:
            raise ValueError(f"tune: beta left the positive range searching for L={L}")
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
    for _ in range(max_iter):
        idx = _fit_indices(points, xi_over_L, centre, window)
        coef, cov, _ = _linear_fit(*_arrays(points, idx))
        if coef[1] <= 0:
            raise ValueError(f"tune: xi/L does not grow with beta around beta = {centre:.4f}")
        centre, _ = _solve(coef, cov, xi_over_L)
        checked = at(centre)
        if abs(checked.xi_over_L - xi_over_L) <= tolerance * checked.xi_over_L_err:
            break

    assert checked is not None
    idx = _fit_indices(points, xi_over_L, checked.beta, window)
    coef, cov, chi2_dof = _linear_fit(*_arrays(points, idx))
    beta_star, beta_err = _solve(coef, cov, xi_over_L)
    converged = abs(checked.xi_over_L - xi_over_L) <= tolerance * checked.xi_over_L_err
    settings = {
        "sampler": getattr(measure, "__name__", "custom") if custom else sampler,
        "n_steps": n_steps,
        "n_therm": n_therm,
        "seed": seed,
        "beta0": beta0,
        "step": step,
        "tolerance": tolerance,
        "max_iter": max_iter,
    }
    return TuneResult(
        L=L,
        lam=float(lam),
        xi_over_L_target=float(xi_over_L),
        beta=beta_star,
        beta_err=beta_err,
        xi_over_L=checked.xi_over_L,
        xi_over_L_err=checked.xi_over_L_err,
        beta_checked=checked.beta,
        converged=bool(converged),
        slope=float(coef[1]),
        slope_err=float(math.sqrt(cov[1, 1])),
        chi2_dof=chi2_dof,
        fit_points=tuple(idx),
        points=tuple(points),
        settings=settings,
        wall_s=time.perf_counter() - t0,
    )


def _arrays(points: Sequence[XiPoint], idx: Sequence[int]) -> tuple[np.ndarray, ...]:
    x = np.array([points[i].beta for i in idx])
    y = np.array([points[i].xi_over_L for i in idx])
    e = np.array([points[i].xi_over_L_err for i in idx])
    return x, y, e


def _check_args(
    L: Any,
    lam: Any,
    xi_over_L: Any,
    beta0: Any,
    step: Any,
    n_steps: Any,
    n_therm: Any,
    seed: Any,
    tolerance: Any,
    max_iter: Any,
) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    def is_real(v: Any) -> bool:
        return (
            isinstance(v, int | float | np.number) and not isinstance(v, bool) and math.isfinite(v)
        )

    if not is_int(L) or L < 3:
        raise ValueError(f"tune: L must be an integer >= 3, got {L!r}")
    if not is_real(lam) or lam <= 0:
        raise ValueError(
            f"tune: lam must be > 0 (the ising form needs a quartic term), got {lam!r}"
        )
    if not is_real(xi_over_L) or not 0 < xi_over_L < 5:
        raise ValueError(f"tune: xi/L must be in (0, 5), got {xi_over_L!r}")
    if beta0 is not None and (not is_real(beta0) or beta0 <= 0):
        raise ValueError(f"tune: beta0 must be > 0, got {beta0!r}")
    if not is_real(step) or step <= 0:
        raise ValueError(f"tune: step must be > 0, got {step!r}")
    if not is_int(n_steps) or n_steps < 100:
        raise ValueError(f"tune: n_steps must be an integer >= 100, got {n_steps!r}")
    if not is_int(n_therm) or n_therm < 0:
        raise ValueError(f"tune: n_therm must be an integer >= 0, got {n_therm!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"tune: seed must be an integer >= 0, got {seed!r}")
    if not is_real(tolerance) or tolerance <= 0:
        raise ValueError(f"tune: tolerance must be > 0, got {tolerance!r}")
    if not is_int(max_iter) or max_iter < 1:
        raise ValueError(f"tune: max_iter must be an integer >= 1, got {max_iter!r}")


def _check_sampler(kind: str) -> None:
    from lattice_samplers.samplers import SAMPLERS

    if kind not in SAMPLERS:
        raise ValueError(f"tune: unknown sampler {kind!r} (known: {', '.join(SAMPLERS)})")


# ============================================================================ the table
def table_path() -> Path:
    """The tuning table in use: ``$LATTICE_SAMPLERS_TUNING_TABLE`` or data/tuning/beta_tuned.csv."""
    env = os.environ.get(TABLE_ENV)
    return Path(env) if env else TABLE_PATH


def load_table(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows of a tuning table CSV (numbers parsed; see :data:`TABLE_COLUMNS`).

    Raises
    ------
    ConfigError
        If the file does not exist.
    """
    p = Path(path) if path is not None else table_path()
    if not p.is_file():
        raise ConfigError(
            f"tuning table not found: {p} (make it with lattice-samplers tune --out, or set "
            f"{TABLE_ENV})"
        )
    with p.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed: dict[str, Any] = {}
        for k, v in row.items():
            if k in ("L", "n_points", "n_steps", "seed"):
                parsed[k] = int(v)
            elif k == "converged":
                parsed[k] = v.strip().lower() == "true"
            elif v in ("", None):
                parsed[k] = None
            else:
                try:
                    parsed[k] = float(v)
                except ValueError:
                    parsed[k] = v
        out.append(parsed)
    return out


def tuned_beta(
    L: int, lam: float, xi_over_L: float = 0.25, path: str | Path | None = None
) -> float:
    """The tabulated beta for (L, lam, xi/L).

    Raises
    ------
    ConfigError
        If the table has no such row (the message lists what it has).
    """
    rows = load_table(path)
    for row in rows:
        if (
            row["L"] == L
            and math.isclose(row["lam"], lam, rel_tol=1e-9, abs_tol=1e-12)
            and math.isclose(row["xi_over_L_target"], xi_over_L, rel_tol=1e-9, abs_tol=1e-12)
        ):
            return float(row["beta"])
    have = ", ".join(
        f"(L={r['L']}, lam={r['lam']:g}, xi/L={r['xi_over_L_target']:g})" for r in rows
    )
    raise ConfigError(
        f"no tuned beta for L={L}, lam={lam:g}, xi/L={xi_over_L:g} in {path or table_path()} "
        f"(it has {have or 'no rows'}); run lattice-samplers tune --L {L} --lam {lam:g}"
    )


def resolve_tuned(config: Mapping[str, Any]) -> dict[str, Any]:
    """Replace ``theory.beta = "tuned"`` (or ``"tuned:XI_OVER_L"``) by the tabulated number.

    The rest of the config is returned unchanged (a shallow copy with a new ``theory``
    section).  Needs ``theory.L`` and ``theory.lam`` as numbers and the ising
    parametrization.

    Raises
    ------
    ConfigError
        For another string, a non-ising parametrization, or a missing table row.
    """
    out = dict(config)
    theory = dict(out.get("theory") or {})
    value = theory.get("beta")
    if not isinstance(value, str):
        return out
    name, _, arg = value.partition(":")
    if name.strip() != "tuned":
        raise ConfigError(
            f'[theory] beta must be a number, "tuned" or "tuned:XI_OVER_L", got {value!r}'
        )
    if theory.get("parametrization", "ising") != "ising":
        raise ConfigError('[theory] beta = "tuned" needs parametrization = "ising"')
    try:
        target = float(arg) if arg.strip() else 0.25
    except ValueError:
        raise ConfigError(f"[theory] beta = {value!r}: {arg!r} is not a number") from None
    L, lam = theory.get("L"), theory.get("lam")
    if isinstance(L, bool) or not isinstance(L, int) or isinstance(lam, bool):
        raise ConfigError('[theory] beta = "tuned" needs an integer L')
    if not isinstance(lam, int | float):
        raise ConfigError('[theory] beta = "tuned" needs a numeric lam')
    theory["beta"] = tuned_beta(L, float(lam), target)
    out["theory"] = theory
    return out


def write_table(results: Sequence[TuneResult], out_dir: str | Path, meta: Mapping) -> Path:
    """Write ``beta_tuned.csv`` (one row per result, sorted by lam, target, L) and ``.json``.

    The JSON holds ``meta`` (command, config, seeds, versions, timing) and every result with
    all its measurement points.  Returns the CSV path.
    """
    from lattice_samplers.records import write_json as write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(results, key=lambda r: (r.lam, r.xi_over_L_target, r.L))
    csv_path = out / "beta_tuned.csv"
    tmp = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in ordered:
            row = r.table_row()
            for k in ("beta", "beta_err", "xi_over_L", "xi_over_L_err", "beta_checked"):
                row[k] = f"{row[k]:.6g}"
            writer.writerow(row)
    os.replace(tmp, csv_path)
    write_json_atomic(
        out / "beta_tuned.json",
        {"meta": dict(meta), "results": [r.to_dict() for r in ordered]},
    )
    return csv_path


def result_from_dict(d: Mapping[str, Any]) -> TuneResult:
    """Rebuild a :class:`TuneResult` from :meth:`TuneResult.to_dict` output."""
    fields = _nan_for_none(TuneResult, d)
    fields["points"] = tuple(XiPoint(**_nan_for_none(XiPoint, p)) for p in d["points"])
    fields["fit_points"] = tuple(d["fit_points"])
    return TuneResult(**fields)


def _nan_for_none(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """Undo the scan's strict JSON (NaN stored as null) for the float fields of ``cls``."""
    floats = {f.name for f in dataclasses.fields(cls) if f.type in (float, "float")}
    return {k: (math.nan if v is None and k in floats else v) for k, v in d.items()}


# ============================================================================ scan job
@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """``[tune]`` section of the ``tune`` scan job: the arguments of :func:`tune_beta`."""

    L: int = 8
    lam: float = 0.5
    xi_over_L: float = 0.25
    beta0: float | None = None
    step: float = 0.01
    n_steps: int = 20_000
    n_therm: int = 1_000
    seed: int = 0
    sampler: str = "cluster"
    tolerance: float = 2.0
    max_iter: int = 3

    def __post_init__(self) -> None:
        _check_args(
            self.L,
            self.lam,
            self.xi_over_L,
            self.beta0,
            self.step,
            self.n_steps,
            self.n_therm,
            self.seed,
            self.tolerance,
            self.max_iter,
        )
        _check_sampler(self.sampler)


def validate_tune_config(config: Mapping[str, Any]) -> TuneConfig:
    """Check a ``tune`` job config (only a ``[tune]`` section) and return its settings."""
    from lattice_samplers.config import check_sections, section_to_dataclass

    check_sections(config, ["tune"])
    return section_to_dataclass(TuneConfig, config.get("tune"), "tune")


def tune_job(config: dict[str, Any], out_path: Path) -> dict[str, Any]:
    """Scan job ``tune``: :func:`tune_beta` with the ``[tune]`` settings; the result as a dict."""
    cfg = validate_tune_config(config)
    return tune_beta(**dataclasses.asdict(cfg)).to_dict()
