"""Matplotlib figures (Agg backend; written to files, never shown)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lattice_samplers.autocorr import gamma_method, running_tau_int  # noqa: E402
from lattice_samplers.records import atomic_write  # noqa: E402

__all__ = [
    "COLORS",
    "LABELS",
    "autocorrelation_figure",
    "comparison_figures",
    "cost_figure",
    "finite_or_nan",
    "gamma_window_figure",
    "history_figure",
    "trace_figure",
]

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
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return Path(path)


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
        # lags from 1 on a log axis: one smooth scale from the flow's 1 to Metropolis' 100
        ax.plot(np.arange(1, n), rho[1:n], label=label, color=COLORS.get(name))
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("lag t (steps, log scale)")
    ax.set_ylabel(f"ρ(t) of {LABELS.get(observable, observable)}")
    ax.set_title("Autocorrelation functions (Gamma method)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def history_figure(
    series: dict[str, dict[str, np.ndarray]],
    observables: tuple[str, ...],
    path: Path,
    n: int = 2000,
) -> Path:
    """Chain 0 of every sampler, thinned to at most ``n`` points.

    One row per sampler, one column per observable.
    """
    names = list(series)
    fig, axes = plt.subplots(
        len(names), len(observables), figsize=(5 * len(observables), 1.6 * len(names) + 0.6),
        sharex=True, sharey="col", squeeze=False,
    )  # fmt: skip
    for i, name in enumerate(names):
        for j, obs in enumerate(observables):
            x = np.atleast_2d(series[name][obs])[0]
            every = max(1, -(-x.size // n))
            axes[i, j].plot(np.arange(0, x.size, every), x[::every], lw=0.5, color=COLORS.get(name))
            if i == 0:
                axes[i, j].set_title(LABELS.get(obs, obs))
        axes[i, 0].set_ylabel(name)
    for ax in axes[-1]:
        ax.set_xlabel("draw (chain 0, all draws, thinned for drawing)")
    return _save(fig, path)


def cost_figure(costs: dict[str, dict[str, dict[str, float]]], observables: tuple[str, ...],
                path: Path) -> Path:  # fmt: skip
    """Core seconds per effective sample per sampler, without and with training (log scale)."""
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
        ax.set_ylabel("core seconds per effective sample")
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


def gamma_window_figure(
    rho: np.ndarray,
    n_total: int,
    window: int,
    tau_int: float,
    tau_int_err: float,
    name: str,
    path: Path,
    tau_int_arviz: float | None = None,
) -> Path:
    """The Gamma-method plot of one series: rho(t) and the running tau_int(W) with its error.

    Left: rho(t) with the automatic window W marked. Right: tau_int(W) = 1/2 + sum_{t<=W}
    rho(t) with Wolff's error band, the chosen estimate at W (and ArviZ's tau_int, if given).
    """
    rho = np.asarray(rho, dtype=float)
    windows, tau, err = running_tau_int(rho, n_total)
    fig, (ax_rho, ax_tau) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_rho.plot(windows, rho, color="C0", lw=1)
    ax_rho.axhline(0.0, color="k", lw=0.5)
    ax_rho.axvline(window, color="C3", ls="--", lw=1, label=f"window W = {window}")
    ax_rho.set_xlabel("lag t (draws)")
    ax_rho.set_ylabel(f"ρ(t) of {name}")
    ax_rho.legend(fontsize=8)
    ax_tau.plot(windows, tau, color="C0", lw=1, label="τ_int(W) (Gamma method)")
    ax_tau.fill_between(windows, tau - err, tau + err, color="C0", alpha=0.25, lw=0)
    ax_tau.axvline(window, color="C3", ls="--", lw=1)
    ax_tau.errorbar(
        [window], [tau_int], yerr=[tau_int_err if np.isfinite(tau_int_err) else 0.0],
        fmt="o", color="C3", capsize=3, label=f"τ_int = {tau_int:.4g} ± {tau_int_err:.2g}",
    )  # fmt: skip
    if tau_int_arviz is not None and np.isfinite(tau_int_arviz):
        ax_tau.axhline(tau_int_arviz, color="C2", ls=":", label=f"ArviZ: {tau_int_arviz:.4g}")
    ax_tau.set_xlabel("summation window W (draws)")
    ax_tau.set_ylabel("τ_int(W) = 1/2 + Σ ρ(t)")
    ax_tau.legend(fontsize=8)
    fig.suptitle(f"{name}: Gamma method (lattice convention)", fontsize=10)
    return _save(fig, path)


def trace_figure(chains: np.ndarray, name: str, path: Path, max_draws: int = 5000) -> Path:
    """Trace of every chain (the first ``max_draws`` draws) and each chain's histogram."""
    chains = np.atleast_2d(np.asarray(chains, dtype=float))
    n_draws = chains.shape[1]
    fig, (ax_tr, ax_h) = plt.subplots(
        1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [3, 1]}, sharey=True
    )
    bins = np.histogram_bin_edges(chains, bins=50)
    for i, x in enumerate(chains):
        color = f"C{i % 10}"
        ax_tr.plot(np.arange(min(n_draws, max_draws)), x[:max_draws], lw=0.5, color=color,
                   alpha=0.8, label=f"chain {i}")  # fmt: skip
        ax_h.hist(x, bins=bins, orientation="horizontal", histtype="step", color=color)
    shown = "all" if n_draws <= max_draws else f"first {max_draws} of {n_draws}"
    ax_tr.set_xlabel(f"draw ({shown})")
    ax_tr.set_ylabel(name)
    if chains.shape[0] <= 8:
        ax_tr.legend(fontsize=7, ncol=min(chains.shape[0], 4), loc="upper right")
    ax_h.set_xlabel("count")
    return _save(fig, path)


def finite_or_nan(x: Any) -> float:
    """A float, NaN for None or non-numbers (for plotting JSON-loaded values)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v
