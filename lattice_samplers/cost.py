"""Cost per effective sample, training amortization and break-even chain lengths.

Definitions (lattice convention, tau_int = 1/2 + sum_t rho(t)):

* effective sample size of an observable: ``ess = n_draws / (2 tau_int)``;
* sampling cost: ``c = core_time_s / ess`` core seconds per effective sample (production
  only; thermalization and JIT compilation are excluded).  Core seconds are the chains'
  seconds summed, so they do not depend on how many chains ran at once (``[run] workers``):
  they are the hardware-neutral figure used for comparisons.  The elapsed (wall) seconds per
  effective sample are reported beside them (``wall_seconds_per_ess``);
* with training amortized over this chain: ``(core_time_s + training_s) / ess``;
* break-even against a sampler costing ``c_ref`` per effective sample: the flow's total cost
  ``training_s + c_flow * n`` equals ``c_ref * n`` at ``n* = training_s / (c_ref - c_flow)``
  effective samples (infinite when the flow is not cheaper per sample); as a flow chain
  length that is ``n* * 2 tau_int_flow`` steps.

Errors come from the tau_int errors only (wall times are taken as exact): the relative error
of a cost equals the relative error of its tau_int, and break-even errors follow by linear
propagation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

__all__ = [
    "BreakEven",
    "CostEstimate",
    "break_even",
    "cost_per_effective_sample",
]


@dataclass(frozen=True)
class CostEstimate:
    """Cost per effective sample of one observable from one sampler run.

    Attributes
    ----------
    ess, ess_err : float
        Effective sample size of the run and its error.
    seconds_per_ess, seconds_per_ess_err : float
        Production core seconds (summed over chains) per effective sample: the figure for
        comparisons.
    with_training_s, with_training_s_err : float
        The same with ``training_s`` added to the core time (equal when there is no training).
    work_per_ess : dict
        Each hardware-neutral work counter divided by the ESS.
    wall_seconds_per_ess, wall_seconds_per_ess_err : float
        Elapsed production seconds per effective sample (smaller than the core seconds when
        chains ran in parallel).
    """

    ess: float
    ess_err: float
    seconds_per_ess: float
    seconds_per_ess_err: float
    with_training_s: float
    with_training_s_err: float
    work_per_ess: dict[str, float] = field(default_factory=dict)
    wall_seconds_per_ess: float = math.nan
    wall_seconds_per_ess_err: float = math.nan

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict of the fields."""
        return asdict(self)


def cost_per_effective_sample(
    core_time_s: float,
    n_draws: int,
    tau_int: float,
    tau_int_err: float = 0.0,
    training_s: float = 0.0,
    work: Mapping[str, float] | None = None,
    wall_time_s: float | None = None,
) -> CostEstimate:
    """Core seconds, wall seconds and work units per effective sample of one observable.

    Parameters
    ----------
    core_time_s : float
        Production seconds of the run summed over chains (``RunResult.core_time_s``).
    n_draws : int
        Number of measurements over all chains (the N of ``ess = N / (2 tau_int)``).
    tau_int, tau_int_err : float
        Integrated autocorrelation time in the lattice convention and its error.
    training_s : float
        Training seconds to amortize over this run (0 for classical samplers).
    work : mapping, optional
        Hardware-neutral counters of the run (e.g. ``force_evaluations``).
    wall_time_s : float, optional
        Elapsed production seconds (``RunResult.wall_time_s``); None: equal to ``core_time_s``
        (chains run one after the other).

    Returns
    -------
    CostEstimate
        With infinite costs (and ess 0) for a non-positive or non-finite tau_int, so that a
        stuck chain is never reported as cheap.
    """
    wall = core_time_s if wall_time_s is None else wall_time_s
    if core_time_s < 0 or wall < 0 or training_s < 0 or n_draws < 0:
        raise ValueError("core_time_s, wall_time_s, training_s and n_draws must be non-negative")
    if not (math.isfinite(tau_int) and tau_int > 0) or n_draws == 0:
        inf = math.inf
        return CostEstimate(0.0, math.nan, inf, math.nan, inf, math.nan,
                            {k: inf for k in (work or {})}, inf, math.nan)  # fmt: skip
    rel = abs(tau_int_err) / tau_int if math.isfinite(tau_int_err) else math.nan
    ess = n_draws / (2.0 * tau_int)
    c = core_time_s / ess
    ct = (core_time_s + training_s) / ess
    return CostEstimate(
        ess=ess,
        ess_err=ess * rel,
        seconds_per_ess=c,
        seconds_per_ess_err=c * rel,
        with_training_s=ct,
        with_training_s_err=ct * rel,
        work_per_ess={k: float(v) / ess for k, v in (work or {}).items()},
        wall_seconds_per_ess=wall / ess,
        wall_seconds_per_ess_err=wall / ess * rel,
    )


@dataclass(frozen=True)
class BreakEven:
    """Where a trained sampler starts to pay off against a reference sampler.

    Attributes
    ----------
    n_effective, n_effective_err : float
        Effective samples at which total costs are equal (``inf`` if it never pays off,
        0 if there is no training cost and the flow is cheaper).
    n_steps, n_steps_err : float
        The same as a chain length of the trained sampler, ``n_effective * 2 tau_int``.
    """

    n_effective: float
    n_effective_err: float
    n_steps: float
    n_steps_err: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict of the fields."""
        return asdict(self)


def break_even(
    training_s: float,
    seconds_per_ess: float,
    seconds_per_ess_err: float,
    reference_seconds_per_ess: float,
    reference_seconds_per_ess_err: float,
    tau_int: float,
    tau_int_err: float = 0.0,
) -> BreakEven:
    """Break-even length of a trained sampler (cost c, training T) against a reference.

    ``n* = T / (c_ref - c)`` effective samples; ``n* 2 tau_int`` chain steps.  Errors by
    linear propagation: ``dn* = T / (c_ref - c)^2 * sqrt(dc_ref^2 + dc^2)``.
    """
    delta = reference_seconds_per_ess - seconds_per_ess
    if not (math.isfinite(delta) and delta > 0):
        return BreakEven(math.inf, math.nan, math.inf, math.nan)
    n = training_s / delta
    n_err = training_s / delta**2 * math.hypot(reference_seconds_per_ess_err, seconds_per_ess_err)
    steps = n * 2.0 * tau_int
    steps_err = 2.0 * math.hypot(n_err * tau_int, n * tau_int_err)
    return BreakEven(n, n_err, steps, steps_err)
