"""The ``tune`` spec: the ``[tune]`` section, the arguments of ``workflows.tune.tune_beta``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lattice_samplers.config import check_sections, section_to_dataclass
from lattice_samplers.samplers import SAMPLERS
from lattice_samplers.specs.common import is_int, is_real

__all__ = ["TuneSettings", "tune_settings"]


@dataclass(frozen=True)
class TuneSettings:
    """The ``[tune]`` section: the arguments of ``workflows.tune.tune_beta``.

    Attributes
    ----------
    L : int
        Lattice extent (>= 3).
    lam : float
        Quartic coupling of the ising form (> 0).
    xi_over_L : float
        Target xi / L (default 0.25).
    beta0 : float or None
        Starting beta (None: the paper's beta(L) for lam = 0.5, else 0.6).
    step : float
        Initial distance between measured betas.
    n_steps, n_therm : int
        Chain lengths per measured point.
    seed : int
        Master seed.
    sampler : str
        Sampler kind that measures xi.
    tolerance : float
        Accept the solution when the check is within ``tolerance`` errors.
    max_iter : int
        Refinement rounds.
    """

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
        checks = (
            (is_int(self.L) and self.L >= 3, "L must be an integer >= 3"),
            (
                is_real(self.lam) and self.lam > 0,
                "lam must be > 0 (the ising form needs a quartic term)",
            ),
            (is_real(self.xi_over_L) and 0 < self.xi_over_L < 5, "xi/L must be in (0, 5)"),
            (
                self.beta0 is None or (is_real(self.beta0) and self.beta0 > 0),
                "beta0 must be > 0",
            ),
            (is_real(self.step) and self.step > 0, "step must be > 0"),
            (is_int(self.n_steps) and self.n_steps >= 100, "n_steps must be an integer >= 100"),
            (is_int(self.n_therm) and self.n_therm >= 0, "n_therm must be an integer >= 0"),
            (is_int(self.seed) and self.seed >= 0, "seed must be an integer >= 0"),
            (is_real(self.tolerance) and self.tolerance > 0, "tolerance must be > 0"),
            (is_int(self.max_iter) and self.max_iter >= 1, "max_iter must be an integer >= 1"),
        )
        for ok, message in checks:
            if not ok:
                name = message.split(" must")[0].replace("xi/L", "xi_over_L")
                value = getattr(self, name)
                raise ValueError(f"tune: {message}, got {value!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"tune: unknown sampler {self.sampler!r} (known: {', '.join(SAMPLERS)})"
            )


def tune_settings(config: Mapping[str, Any]) -> TuneSettings:
    """Check a ``tune`` job config (only a ``[tune]`` section) and return its settings."""
    check_sections(config, ["tune"])
    return section_to_dataclass(TuneSettings, config.get("tune"), "tune")
