"""Tuning the ising-form beta to a fixed correlation length, xi = (xi/L) * L, and the beta(L) table.

:func:`tune_beta` measures the second-moment correlation length
(:func:`lattice_samplers.observables.second_moment_correlation_length`)

    xi^2 = (G~(0) / G~(p_min) - 1) / (4 sin^2(pi / L))

with a classical sampler (Wolff cluster updates composed with Metropolis sweeps by default:
the cluster update decorrelates the long-distance modes that xi is made of) at a few beta,
fits xi/L linearly in beta by weighted least squares, solves for the target, and checks the
solution with a fresh measurement there (the search itself, with its settings record, is
:mod:`lattice_samplers.workflows.beta_search`).  The procedure:

1. Start at ``beta0`` (default: the paper's beta(L), arXiv:2112.15532, interpolated in L
   for lam = 0.5, else 0.6) and step by ``step`` (doubling) until two measured points
   bracket the target.
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
``"tuned:0.5"`` selects the xi/L = 0.5 rows (:func:`lattice_samplers.beta_table.resolve_tuned`).
The table ships with the package; ``LATTICE_SAMPLERS_TUNING_TABLE`` names another one
(:mod:`lattice_samplers.beta_table`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers import observables
from lattice_samplers.beta_table import TABLE_COLUMNS
from lattice_samplers.config import require_memory
from lattice_samplers.driver import BlockReport, RunSettings, run_sampler
from lattice_samplers.records import write_csv, write_json
from lattice_samplers.samplers import make_sampler
from lattice_samplers.specs import TuneSettings, tune_settings
from lattice_samplers.theory import Phi4Theory
from lattice_samplers.workflows.beta_search import SearchSettings, XiPoint, find_crossing

__all__ = [
    "PAPER_BETA",
    "TuneResult",
    "XiPoint",
    "interpolate_paper_beta",
    "measure_xi_over_L",
    "result_from_dict",
    "summarize_tune",
    "tune_beta",
    "tune_task",
    "validate_tune",
    "write_table",
]

#: The paper's beta(L) at lam = 0.5, xi = L/4 (arXiv:2112.15532), the starting guesses.
PAPER_BETA: Mapping[int, float] = {
    6: 0.537,
    8: 0.576,
    10: 0.600,
    12: 0.616,
    14: 0.625,
    16: 0.633,
    18: 0.639,
    20: 0.645,
}


# ============================================================================ results
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
            "beta_paper": PAPER_BETA.get(self.L) if self.lam == 0.5 else None,
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
    theory = Phi4Theory.create(L, "ising", beta=beta, lam=lam)
    g0, g_pmin = _two_point_series(theory, n_steps, n_therm, seed, sampler)
    xi, err = observables.second_moment_correlation_length(g0, g_pmin, L, n_bins=n_bins)
    return xi / L, err / L


#: Configurations buffered between batched FFTs in :func:`_two_point_series`.
_CHUNK = 512


def _two_point_series(
    theory: Any, n_steps: int, n_therm: int, seed: int, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Series of G~(0) and G~(p_min) after each of ``n_steps`` steps of one sampler chain.

    The samplers record only scalar observables in their compiled loops, and G~(p_min) needs
    the field, so the chain runs through the run driver in blocks of one step and an observer
    buffers the fields, which are Fourier transformed in batches.  Thermalization and tuning
    are the driver's own (the first 3/4 of ``n_therm``); the chain's stream is
    ``SeedSequence(seed).spawn(1)[0]``.
    """
    require_memory(
        (min(_CHUNK, n_steps) + 4) * theory.volume * 8 + 2 * n_steps * 8,
        f"tune at L = {theory.L} (buffered fields and series)",
        "lower L or n_steps",
    )
    sampler = make_sampler(kind, theory)
    run = RunSettings(n_steps=n_steps, n_therm=n_therm, n_chains=1, seed=seed, block_size=1)
    buf = np.empty((min(_CHUNK, n_steps), *theory.shape))
    g0 = np.empty(n_steps)
    g_pmin = np.empty(n_steps)
    filled = {"buf": 0, "done": 0}

    def flush() -> None:
        n, start = filled["buf"], filled["done"]
        g0[start : start + n] = observables.two_point_susceptibility(buf[:n])
        g_pmin[start : start + n] = observables.two_point_pmin(buf[:n])
        filled["buf"], filled["done"] = 0, start + n

    def collect(report: BlockReport) -> None:
        if report.phase != "production":
            return
        buf[filled["buf"]] = report.states[0].phi
        filled["buf"] += 1
        if filled["buf"] == len(buf):
            flush()

    run_sampler(sampler, run, progress=False, observer=collect)
    flush()
    return g0, g_pmin


def interpolate_paper_beta(L: int) -> float:
    """Beta for lam = 0.5 and xi = L/4 from the paper's table (linear in L, clamped)."""
    Ls = np.array(sorted(PAPER_BETA), dtype=float)
    betas = np.array([PAPER_BETA[int(k)] for k in Ls])
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
        Starting guess; default the paper's beta(L) (arXiv:2112.15532) interpolated in L
        (lam = 0.5), else 0.6.
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
    TuneSettings(  # the one validation of these arguments (a custom measure has no sampler)
        L,
        lam,
        xi_over_L,
        beta0,
        step,
        n_steps,
        n_therm,
        seed,
        sampler if measure is None else TuneSettings.sampler,
        tolerance,
        max_iter,
    )
    t0 = time.perf_counter()
    if beta0 is None:
        beta0 = interpolate_paper_beta(L) if lam == 0.5 else 0.6
    custom = measure is not None
    if measure is None:

        def measure(L_, beta_, lam_, n_, nt_, seed_):  # noqa: ANN001, ANN202 - local adapter
            return measure_xi_over_L(L_, beta_, lam_, n_, nt_, seed_, sampler=sampler)

    search = SearchSettings(beta0, step, tolerance, max_iter, max_bracket, n_steps)
    found = find_crossing(
        lambda beta, point_seed: measure(L, beta, lam, n_steps, n_therm, point_seed),
        xi_over_L,
        search,
        seed,
        label=f"L={L}",
        progress=progress,
    )
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
        beta=found.beta,
        beta_err=found.beta_err,
        xi_over_L=found.checked.xi_over_L,
        xi_over_L_err=found.checked.xi_over_L_err,
        beta_checked=found.checked.beta,
        converged=found.converged,
        slope=found.slope,
        slope_err=found.slope_err,
        chi2_dof=found.chi2_dof,
        fit_points=found.fit_points,
        points=found.points,
        settings=settings,
        wall_s=time.perf_counter() - t0,
    )


def write_table(results: Sequence[TuneResult], out_dir: str | Path, meta: Mapping) -> Path:
    """Write ``beta_tuned.csv`` (one row per result, sorted by lam, target, L) and ``.json``.

    The JSON holds ``meta`` (command, config, seeds, versions, timing) and every result with
    all its measurement points.  Returns the CSV path.
    """
    out = Path(out_dir)
    ordered = sorted(results, key=lambda r: (r.lam, r.xi_over_L_target, r.L))
    rows = []
    for r in ordered:
        row = r.table_row()
        for k in ("beta", "beta_err", "xi_over_L", "xi_over_L_err", "beta_checked"):
            row[k] = f"{row[k]:.6g}"
        rows.append(row)
    csv_path = write_csv(out / "beta_tuned.csv", rows, list(TABLE_COLUMNS))
    write_json(
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
def validate_tune(config: Mapping[str, Any]) -> None:
    """Scan job hook: raise :class:`~lattice_samplers.config.ConfigError` for a bad task."""
    tune_settings(config)


def tune_task(config: Mapping[str, Any], out_path: Path) -> dict[str, Any]:
    """Scan job hook: :func:`tune_beta` with the ``[tune]`` settings; the result as a dict."""
    return tune_beta(**dataclasses.asdict(tune_settings(config))).to_dict()


def summarize_tune(result: Mapping[str, Any]) -> dict[str, Any]:
    """Scan job hook: beta, xi/L and convergence of one tuned L."""
    return {k: result[k] for k in ("beta", "beta_err", "xi_over_L", "xi_over_L_err", "converged")}
