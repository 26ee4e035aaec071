"""Autocorrelation records: the result type, flags, the convention and shared helpers."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["CONVENTION", "FLAG_MESSAGES", "R_HAT_MAX", "AutocorrResult", "AutocorrWarning"]


CONVENTION = "lattice: tau_int = 1/2 + sum_t rho(t); ess = N / (2 tau_int)"

#: Flags a result may carry, and what they mean (also the text of the warnings).
FLAG_MESSAGES = {
    "stuck": "the series does not fluctuate (constant chain, or no accepted proposal): "
    "ess = 0 and tau_int = inf; it is not perfectly efficient, it is not sampling",
    "stuck_chain": "at least one chain does not fluctuate; the combined estimate is suspect",
    "short": "the chain is shorter than min_length_ratio * tau_int; tau_int and the error "
    "are unreliable, run longer",
    "window_not_found": "the automatic window condition was not met before W_max = n_draws/2; "
    "the chain is far too short for its autocorrelation",
    "nonpositive_cf": "the windowed sum of Gamma(t) is <= 0; no error can be given",
    "arviz_cap": "ArviZ capped the ESS at N log10 N; the true ESS may be larger "
    "(strongly anticorrelated series)",
    "emcee_lag1_window": "emcee stopped its window at lag 1 (it does so for anticorrelated "
    "series), so its tau_int drops the alternating tail of rho(t)",
    "estimators_disagree": "the Gamma method's and ArviZ's tau_int differ by more than 3 "
    "errors; at least one of them is unreliable for this series",
    "r_hat": "rank-normalized split R-hat > 1.01: the chains have not mixed (or one is stuck); "
    "means, errors and tau_int are not trustworthy",
}

#: R-hat above this flags a summary (Vehtari et al. 2021).
R_HAT_MAX = 1.01


class AutocorrWarning(UserWarning):
    """Warning about an unreliable autocorrelation estimate (see the result's ``flags``)."""


@dataclass(frozen=True, eq=False)
class AutocorrResult:
    """Mean, error, tau_int and ESS of one series, in the lattice convention.

    Attributes
    ----------
    method : str
        Estimator: ``"gamma"``, ``"gamma-derived"``, ``"arviz-<method>"``, ``"emcee"`` or
        ``"acceptance"``.
    mean : float
        Mean over all draws (the acceptance rate for ``"acceptance"``; f(means) for
        ``"gamma-derived"``).
    err : float
        Error of the mean, sqrt(2 tau_int Var / N); NaN where the method gives none.
    tau_int : float
        Integrated autocorrelation time, 1/2 + sum_{t>=1} rho(t). ``inf`` for a stuck chain;
        below 1/2 for an anticorrelated one.
    tau_int_err : float
        Statistical error of ``tau_int``; NaN where the method gives none.
    ess : float
        Effective sample size N / (2 tau_int); 0 for a stuck chain.
    n : int
        Total number of draws N over all chains.
    n_chains : int
        Number of chains (replica).
    window : int or None
        Summation window W (last lag summed); None where the method does not expose it.
    variance : float
        Variance of the observable, Gamma(0) (bias corrected for ``"gamma"``).
    rho : numpy.ndarray
        Normalized autocorrelation rho(0..max_lag) for plots; empty where not computed.
    flags : tuple of str
        Problems found, keys of :data:`FLAG_MESSAGES` plus the informational
        ``"anticorrelated"`` (tau_int < 1/2). Every flag except ``"anticorrelated"`` was
        also raised as an :class:`AutocorrWarning`.
    convention : str
        The autocorrelation convention, always :data:`CONVENTION`.
    """

    method: str
    mean: float
    err: float
    tau_int: float
    tau_int_err: float
    ess: float
    n: int
    n_chains: int
    window: int | None = None
    variance: float = float("nan")
    rho: np.ndarray = field(default_factory=lambda: np.empty(0))
    flags: tuple[str, ...] = ()
    convention: str = CONVENTION

    @property
    def ok(self) -> bool:
        """True when no warning flag is set (``"anticorrelated"`` is information, not a flaw)."""
        return all(flag == "anticorrelated" for flag in self.flags)

    def as_dict(self) -> dict:
        """Return the fields as a plain dict (``rho`` as a list), e.g. for file attributes."""
        out = asdict(self)
        out["rho"] = np.asarray(self.rho).tolist()
        out["flags"] = list(self.flags)
        return out


# --------------------------------------------------------------------------- helpers


def _as_chains(series: np.ndarray, dtype: type = float) -> np.ndarray:
    """Return ``series`` as a 2-D (n_chains, n_draws) array, validated."""
    x = np.asarray(series, dtype=dtype)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2:
        raise ValueError(f"expected shape (n_draws,) or (n_chains, n_draws), got {x.shape}")
    if x.shape[1] < 4:
        raise ValueError(f"need at least 4 draws per chain, got {x.shape[1]}")
    if dtype is float and not np.all(np.isfinite(x)):
        raise ValueError("series contains NaN or inf")
    return x


def _warn(flags: Sequence[str], method: str, result: AutocorrResult | None = None) -> None:
    """Raise one AutocorrWarning per problem flag, so no flawed estimate passes silently."""
    context = ""
    if result is not None:
        per_chain = result.n // max(result.n_chains, 1)
        context = f" [n_draws per chain = {per_chain}, tau_int = {result.tau_int:.4g}]"
    for flag in flags:
        if flag in FLAG_MESSAGES:
            message = f"{method}: {FLAG_MESSAGES[flag]}{context}"
            warnings.warn(message, AutocorrWarning, stacklevel=3)


def _stuck_chains(chains: np.ndarray) -> np.ndarray:
    """Return a boolean per chain: True where the chain never changes value."""
    return np.ptp(chains, axis=1) == 0


def _stuck_result(method: str, chains: np.ndarray) -> AutocorrResult:
    """Result for a series without fluctuations: ess 0, tau_int inf, flagged and warned."""
    _warn(("stuck",), method)
    return AutocorrResult(
        method=method,
        mean=float(chains.mean()),
        err=float("nan"),
        tau_int=float("inf"),
        tau_int_err=float("nan"),
        ess=0.0,
        n=int(chains.size),
        n_chains=int(chains.shape[0]),
        variance=0.0,
        flags=("stuck",),
    )


def _common_flags(
    tau_int: float, n_draws: int, min_length_ratio: float, stuck_any: bool
) -> list[str]:
    """Flags shared by all estimators: partially stuck, short, anticorrelated."""
    flags = []
    if stuck_any:
        flags.append("stuck_chain")
    if np.isfinite(tau_int) and n_draws < min_length_ratio * tau_int:
        flags.append("short")
    if tau_int < 0.5:
        flags.append("anticorrelated")
    return flags


def _ess(n: int, tau_int: float) -> float:
    """N / (2 tau_int), NaN where tau_int is not positive (no meaningful ESS)."""
    return n / (2.0 * tau_int) if tau_int > 0 else float("nan")
