"""The packaged beta(L) table at fixed xi/L, and ``beta = "tuned"`` in configs.

The table ships with the package (``lattice_samplers/data/beta_tuned.csv``, read through
:mod:`importlib.resources`), so ``theory.beta = "tuned"`` works from any folder and from a
non-editable install; ``$LATTICE_SAMPLERS_TUNING_TABLE`` names another table (e.g. one made
with ``lattice-samplers tune --out``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from lattice_samplers.config import ConfigError

__all__ = [
    "TABLE_COLUMNS",
    "TABLE_ENV",
    "TABLE_NAME",
    "load_table",
    "resolve_tuned",
    "table_path",
    "tuned_beta",
]

#: File name of the packaged table (package data of ``lattice_samplers.data``).
TABLE_NAME = "beta_tuned.csv"
#: Environment variable naming another table to use instead.
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
    "beta_paper",
    "n_points",
    "n_steps",
    "converged",
    "seed",
    "wall_s",
)


def table_path() -> Traversable | Path:
    """The tuning table in use: ``$LATTICE_SAMPLERS_TUNING_TABLE`` or the packaged table."""
    env = os.environ.get(TABLE_ENV)
    return Path(env) if env else resources.files("lattice_samplers.data") / TABLE_NAME


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
