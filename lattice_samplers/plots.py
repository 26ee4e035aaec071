"""Matplotlib figures (Agg backend; written to files, never shown)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lattice_samplers.autocorr import gamma_method  # noqa: E402

#: Readable labels of the scalar observables.
LABELS = {
    "magnetization": "M/V",
    "abs_magnetization": "|M|/V",
    "two_point_susceptibility": "M²/V",
    "action_density": "S/V",
    "phi2": "⟨φ²⟩",
    "ising_energy": "nn product",
}
COLORS = {"metropolis": "C0", "hmc": "C1", "cluster": "C2", "flow": "C3"}


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def autocorrelation_figure(series: dict[str, np.ndarray], observable: str, path: Path) -> Path:
    """Normalized autocorrelation rho(t) of one observable for several samplers."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, x in series.items():
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = gamma_method(x)
        rho = np.asarray(res.rho)
        if rho.size == 0:
            continue
        n = min(rho.size, max(10, int(6 * (res.window or 10))))
        label = f"{name} (τ_int = {res.tau_int:.3g})"
        ax.plot(np.arange(n), rho[:n], label=label, color=COLORS.get(name))
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("lag t (steps)")
    ax.set_ylabel(f"ρ(t) of {LABELS.get(observable, observable)}")
    ax.set_title("Autocorrelation functions (Gamma method)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def history_figure(
    series: dict[str, dict[str, np.ndarray]],
    observables: tuple[str, ...],
    path: Path,
    n: int = 500,
) -> Path:
    """The first ``n`` draws of chain 0: one row per sampler, one column per observable."""
    names = list(series)
    fig, axes = plt.subplots(
        len(names), len(observables), figsize=(5 * len(observables), 1.6 * len(names) + 0.6),
        sharex=True, sharey="col", squeeze=False,
    )  # fmt: skip
    for i, name in enumerate(names):
        for j, obs in enumerate(observables):
            x = np.atleast_2d(series[name][obs])[0, :n]
            axes[i, j].plot(x, lw=0.7, color=COLORS.get(name))
            if i == 0:
                axes[i, j].set_title(LABELS.get(obs, obs))
        axes[i, 0].set_ylabel(name)
    for ax in axes[-1]:
        ax.set_xlabel("draw (chain 0)")
    return _save(fig, path)


def cost_figure(costs: dict[str, dict[str, dict[str, float]]], observables: tuple[str, ...],
                path: Path) -> Path:  # fmt: skip
    """Seconds per effective sample per sampler, without and with training (log scale)."""
    fig, axes = plt.subplots(1, len(observables), figsize=(4 * len(observables), 3.6))
    axes = np.atleast_1d(axes)
    names = list(costs)
    x = np.arange(len(names))
    for ax, obs in zip(axes, observables):
        c = np.array([costs[n][obs]["seconds_per_ess"] for n in names], dtype=float)
        ce = np.array([costs[n][obs]["seconds_per_ess_err"] for n in names], dtype=float)
        ct = np.array([costs[n][obs]["with_training_s"] for n in names], dtype=float)
        c[~np.isfinite(c)] = np.nan
        ax.bar(x - 0.2, c, 0.4, yerr=np.nan_to_num(ce), label="sampling", color="C0")
        ax.bar(x + 0.2, ct, 0.4, label="with training", color="C3", alpha=0.7)
        ax.set_xticks(x, names)
        ax.set_yscale("log")
        ax.set_title(LABELS.get(obs, obs))
        ax.set_ylabel("seconds per effective sample")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def comparison_figures(comparison: Any, out: Path) -> list[Path]:
    """The figures of ``compare``: autocorrelation, histories and cost per effective sample."""
    runs = comparison.runs
    obs = ("abs_magnetization", "two_point_susceptibility", "action_density")
    paths = [
        autocorrelation_figure(
            {n: r.result.observables["abs_magnetization"] for n, r in runs.items()},
            "abs_magnetization",
            out / "autocorrelation.png",
        ),
        history_figure(
            {n: r.result.observables for n, r in runs.items()},
            ("abs_magnetization", "action_density"),
            out / "histories.png",
        ),
        cost_figure({n: r.costs for n, r in runs.items()}, obs, out / "cost_per_ess.png"),
    ]
    return paths


def finite_or_nan(x: Any) -> float:
    """A float, NaN for None or non-numbers (for plotting JSON-loaded values)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v
