"""Analyze Markov chains written by any program: mean +- error, tau_int, ESS, R-hat, flags.

``analyze`` is a workflow: :class:`AnalyzeSpec` (files and options) -> :func:`run_analysis`
-> :class:`AnalyzeResult` (text table, JSON, figures).  Per variable it reports, over all
chains together and in the lattice convention tau_int = 1/2 + sum rho, ess = N / (2 tau_int):

- ``tau_int_gamma`` +- ``tau_int_gamma_err`` and ``window``: Wolff's Gamma method;
- ``tau_int_arviz``: N / (2 ESS) from ArviZ's autocorrelation ESS (``method="mean"``), and
  ``ess_bulk``, ArviZ's rank-normalized bulk ESS;
- ``tau_int_emcee``: ``emcee.autocorr.integrated_time`` / 2, an independent cross-check;
- ``r_hat``: ArviZ's rank-normalized split R-hat over the chains;
- ``tau_int``, ``tau_int_err``, ``ess``, ``err`` from the estimator named in ``estimator``
  (:func:`lattice_samplers.summary.summarize_series`, the same code as every summary);
- ``flags``: stuck, stuck_chain, short, estimators_disagree, r_hat, ... (see
  :data:`lattice_samplers.autocorr.FLAG_MESSAGES`).

Reading is :mod:`lattice_samplers.chains_io`; every input problem is a one-line
:class:`~lattice_samplers.chains_io.ChainsError` raised before anything is written.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers.autocorr import (
    CONVENTION,
    FLAG_MESSAGES,
    AutocorrWarning,
    emcee_tau,
    gamma_method,
)
from lattice_samplers.chains_io import ChainsError, check_finite, read_chains
from lattice_samplers.records import json_safe, write_json
from lattice_samplers.summary import (
    AnalysisSettings,
    format_observable_table,
    summarize_series,
)
from lattice_samplers.workflows.outputs import OutputClaim, check_outputs, protected

__all__ = [
    "MIN_DRAWS",
    "AnalyzeResult",
    "AnalyzeSpec",
    "analyze_chains",
    "check_analysis_outputs",
    "load_chains",
    "output_files",
    "run_analysis",
    "write_outputs",
]

#: Fewest draws per chain (after burn and thin) that are analyzed at all.
MIN_DRAWS = 20

#: Keys of each variable's JSON entry, in order.
JSON_KEYS: tuple[str, ...] = (
    "mean",
    "err",
    "tau_int",
    "tau_int_err",
    "ess",
    "ess_bulk",
    "r_hat",
    "tau_int_gamma",
    "tau_int_gamma_err",
    "window",
    "tau_int_arviz",
    "tau_int_emcee",
    "estimator",
    "n_chains",
    "n_draws",
    "flags",
)


@dataclass(frozen=True)
class AnalyzeSpec:
    """What to analyze and how (the arguments of ``lattice-samplers analyze``).

    Attributes
    ----------
    paths : tuple of Path
        Input files (several files are several chains).
    var_names : tuple of str or None
        Variables (columns) to analyze; None: all.
    fmt : str
        ``auto``, ``nc``, ``npy``, ``npz``, ``csv`` or ``txt``.
    layout : str or None
        ``chains,draws`` or ``draws,chains`` for 2-D arrays; None: chains x draws, and a
        shape with more chains than draws is refused.
    burn, thin : int
        Drop the first ``burn`` draws of every chain, then keep every ``thin``-th.
    analysis : AnalysisSettings
        Which tau_int estimator drives tau_int, err and ess.
    """

    paths: tuple[Path, ...]
    var_names: tuple[str, ...] | None = None
    fmt: str = "auto"
    layout: str | None = None
    burn: int = 0
    thin: int = 1
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)

    def __post_init__(self) -> None:
        if not self.paths:
            raise ChainsError("no input files")
        if self.burn < 0:
            raise ChainsError(f"--burn must be >= 0, got {self.burn}")
        if self.thin < 1:
            raise ChainsError(f"--thin must be >= 1, got {self.thin}")


@dataclass
class AnalyzeResult:
    """Per-variable statistics of an analysis, plus what the figures need."""

    variables: dict[str, dict[str, Any]]
    chains: dict[str, np.ndarray] = field(repr=False)
    rho: dict[str, np.ndarray] = field(repr=False)
    files: tuple[str, ...] = ()
    burn: int = 0
    thin: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"variables": {NAME: {...}}, "files", "burn", "thin", ...}``."""
        return json_safe(
            {
                "variables": self.variables,
                "files": list(self.files),
                "burn": self.burn,
                "thin": self.thin,
                "tau_int_convention": CONVENTION + " (in draws after burn and thin)",
            }
        )

    def table(self) -> str:
        """The printed report: one row per variable, then the meaning of each flag shown."""
        first = next(iter(self.variables.values()))
        lines = [
            f"{len(self.files)} file(s): {', '.join(self.files)}; {first['n_chains']} chains x "
            f"{first['n_draws']} draws per variable (burn {self.burn}, thin {self.thin})",
            "",
            format_observable_table(self.variables, name_header="variable"),
        ]
        emcee = ", ".join(f"{n}: {_g(v['tau_int_emcee'])}" for n, v in self.variables.items())
        lines.append(f"tau_int by emcee (cross-check): {emcee}")
        lines.append("tau_int: " + CONVENTION)
        shown = sorted({f for v in self.variables.values() for f in v["flags"]})
        for flag in shown:
            if flag in FLAG_MESSAGES:
                lines.append(f"[{flag}]: {FLAG_MESSAGES[flag]}")
        return "\n".join(lines)


def _g(x: float) -> str:
    return format(x, ".4g") if x is not None and np.isfinite(x) else "-"


def load_chains(spec: AnalyzeSpec) -> dict[str, np.ndarray]:
    """Read, burn, thin and validate the chains of ``spec``; raise ChainsError on bad input."""
    raw = read_chains(spec.paths, fmt=spec.fmt, layout=spec.layout, var_names=spec.var_names)
    out = {}
    for name, x in raw.items():
        kept = x[:, spec.burn :: spec.thin]
        if kept.shape[1] < MIN_DRAWS:
            raise ChainsError(
                f"variable {name!r}: {kept.shape[1]} draws per chain after burn {spec.burn} "
                f"and thin {spec.thin} (of {x.shape[1]}); at least {MIN_DRAWS} are needed"
            )
        check_finite(name, kept, spec.burn, spec.thin)
        out[name] = np.ascontiguousarray(kept)
    return out


def analyze_chains(
    chains: Mapping[str, np.ndarray],
    *,
    analysis: AnalysisSettings | None = None,
    files: Sequence[str] = (),
    burn: int = 0,
    thin: int = 1,
) -> AnalyzeResult:
    """Statistics of each (n_chains, n_draws) series (see the module docstring)."""
    analysis = analysis or AnalysisSettings()
    variables: dict[str, dict[str, Any]] = {}
    rho: dict[str, np.ndarray] = {}
    for name, x in chains.items():
        s = summarize_series(x, tau_estimator=analysis.tau_estimator)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AutocorrWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # emcee: 0/0 for a constant chain
            emcee = emcee_tau(x)
            g = gamma_method(x, max_lag=min(x.shape[1] // 2, max(4 * (s["window"] or 0), 50)))
        flags = list(s["flags"])
        flags += [f for f in emcee.flags if f == "emcee_lag1_window" and f not in flags]
        entry = {**s, "tau_int_emcee": emcee.tau_int, "flags": flags}
        entry["n_chains"], entry["n_draws"] = int(x.shape[0]), int(x.shape[1])
        variables[name] = {k: entry[k] for k in JSON_KEYS}
        rho[name] = np.asarray(g.rho)
    return AnalyzeResult(variables, dict(chains), rho, tuple(files), burn, thin)


def run_analysis(spec: AnalyzeSpec) -> AnalyzeResult:
    """Read and analyze the chains of ``spec`` (nothing is written)."""
    chains = load_chains(spec)
    return analyze_chains(
        chains,
        analysis=spec.analysis,
        files=tuple(p.name for p in spec.paths),
        burn=spec.burn,
        thin=spec.thin,
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def output_files(result: AnalyzeResult, out: str | Path) -> list[Path]:
    """Every file :func:`write_outputs` writes for ``result`` into ``out``."""
    out = Path(out)
    files = [out / "analysis.json"]
    for name, v in result.variables.items():
        if "stuck" not in v["flags"] and v["window"] is not None:
            files.append(out / f"{_safe(name)}_gamma.png")
        files.append(out / f"{_safe(name)}_trace.png")
    return files


def check_analysis_outputs(
    out: str | Path, overwrite: bool = False, result: AnalyzeResult | None = None
) -> OutputClaim:
    """The one output check for ``analyze --out``: an earlier analysis needs ``overwrite``.

    Without ``result`` (before the chains are read) it checks the folder and
    ``analysis.json``; with it, every file the analysis writes.
    """
    files = output_files(result, out) if result is not None else [Path(out) / "analysis.json"]
    return check_outputs(
        files=files,
        folders=[out],
        overwrite=overwrite,
        results=[Path(out) / "analysis.json"],
        flag="--out",
        hint="choose another folder, or pass --overwrite to replace it",
    )


def write_outputs(
    result: AnalyzeResult, out: str | Path, claim: OutputClaim | None = None
) -> list[Path]:
    """Write ``analysis.json`` and, per variable, ``NAME_gamma.png`` and ``NAME_trace.png``.

    With ``claim`` (from :func:`check_analysis_outputs`) nothing that appeared meanwhile from
    another run is replaced.
    """
    from lattice_samplers import plots  # matplotlib only when figures are asked for

    out = Path(out)
    guard = protected(claim) if claim is not None else contextlib.nullcontext()
    with guard:
        out.mkdir(parents=True, exist_ok=True)
        written = [write_json(out / "analysis.json", result.to_dict())]
        for name, v in result.variables.items():
            if "stuck" not in v["flags"] and v["window"] is not None:
                written.append(
                    plots.gamma_window_figure(
                        result.rho[name],
                        v["n_chains"] * v["n_draws"],
                        v["window"],
                        v["tau_int_gamma"],
                        v["tau_int_gamma_err"],
                        name,
                        out / f"{_safe(name)}_gamma.png",
                        tau_int_arviz=v["tau_int_arviz"],
                    )
                )
            written.append(
                plots.trace_figure(result.chains[name], name, out / f"{_safe(name)}_trace.png")
            )
    return written
