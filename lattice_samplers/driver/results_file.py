"""Results files: a run as an xarray DataTree in netCDF4/HDF5 (h5netcdf), written atomically.

Layout (groups of the DataTree)::

    /                 attributes: format, sampler, theory, settings, initial_settings, work,
                      work_therm, chain_work, config (JSON strings), n_steps, n_therm, thin,
                      n_chains, seed, chain_seeds, wall_time_s, core_time_s, therm_time_s,
                      therm_core_time_s, compile_time_s, workers, chain_wall_time_s, versions,
                      created, tau_int_convention (files written before parallel chains
                      have no core times: read back, they equal the wall times, which then
                      were sums over chains run one after the other)
    /observables      one variable per scalar observable, dims (chain, draw)
    /sample_stats     per-step sampler statistics (accepted, delta_h, ...), dims (chain, draw)
                      (averaged over each thinning window when thin > 1)
    /final_state      phi (chain, x0, x1): each chain's last field

``observables`` plays the role of ArviZ's ``posterior`` group, so ArviZ reads it directly, e.g.
``arviz_stats.ess(xr.open_datatree(path), group="observables", method="mean")``.  Files are
written to a temporary sibling and moved into place with ``os.replace``: a failed or
interrupted write never leaves a partial file under the final name.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from lattice_samplers.driver.result import RunResult
from lattice_samplers.records import atomic_write, now
from lattice_samplers.records import dumps as json_text
from lattice_samplers.theory import Phi4Theory

__all__ = ["RESULTS_FORMAT", "read_results", "results_to_datatree", "write_results"]

RESULTS_FORMAT = "lattice_samplers.results/1"

#: Results files up to this size are built in memory and written with one plain write.
_IN_MEMORY_BYTES = 512 * 2**20

_JSON_ATTRS = (
    "settings",
    "initial_settings",
    "work",
    "work_therm",
    "chain_work",
    "versions",
    "config",
)


def results_to_datatree(result: RunResult) -> xr.DataTree:
    """Build the DataTree of a run (see the module docstring for the layout)."""
    n_chains, n_draws = result.n_chains, result.n_draws
    coords = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
    observables = xr.Dataset(
        {name: (("chain", "draw"), np.asarray(v)) for name, v in result.observables.items()},
        coords=coords,
        attrs={"description": "scalar observables, definitions of lattice_samplers.observables"},
    )
    sample_stats = xr.Dataset(
        {name: (("chain", "draw"), np.asarray(v)) for name, v in result.stats.items()},
        coords=coords,
        attrs={"thin": result.thin, "description": "per-step statistics, mean over thin steps"},
    )
    final_state = xr.Dataset(
        {"phi": (("chain", "x0", "x1"), np.asarray(result.final_phi))},
        coords={"chain": np.arange(n_chains)},
    )
    attrs: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "sampler": result.sampler,
        "theory": json_text(result.theory.to_dict()),
        "n_steps": result.n_steps,
        "n_therm": result.n_therm,
        "thin": result.thin,
        "n_chains": result.n_chains,
        "seed": result.seed,
        "chain_seeds": json_text(result.chain_seeds),
        "wall_time_s": result.wall_time_s,
        "core_time_s": result.core_time_s,
        "therm_time_s": result.therm_time_s,
        "therm_core_time_s": result.therm_core_time_s,
        "compile_time_s": result.compile_time_s,
        "workers": result.workers,
        "chain_wall_time_s": np.asarray(result.chain_wall_time_s, dtype=np.float64),
        "created": now(),
        "tau_int_convention": "lattice: tau_int = 1/2 + sum_t rho(t)",
    }
    for key in _JSON_ATTRS:
        attrs[key] = json_text(getattr(result, key))
    return xr.DataTree.from_dict(
        {
            "/": xr.Dataset(attrs=attrs),
            "observables": observables,
            "sample_stats": sample_stats,
            "final_state": final_state,
        }
    )


def write_results(result: RunResult, path: str | Path) -> Path:
    """Write a run to ``path`` (netCDF via h5netcdf) atomically; returns the path.

    The file appears under its final name only once complete; on any error (or Ctrl-C) the
    temporary file is removed and an existing file at ``path`` is left as it was.
    """
    tree = results_to_datatree(result)
    n_bytes = sum(v.nbytes for node in tree.subtree for v in node.dataset.data_vars.values())

    def write(tmp: Path) -> None:
        if n_bytes > _IN_MEMORY_BYTES:
            tree.to_netcdf(tmp, engine="h5netcdf", mode="w")
            return
        # HDF5 turns a refused write (full disk, file-size limit) into a RuntimeError and
        # can crash later on the half-written file: build the file in memory, write it plainly
        buf = io.BytesIO()
        tree.to_netcdf(buf, engine="h5netcdf", mode="w")
        tmp.write_bytes(buf.getbuffer())

    return atomic_write(path, write)


def read_results(path: str | Path) -> RunResult:
    """Read a results file written by :func:`write_results` back into a :class:`RunResult`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a lattice_samplers results file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        attrs = dict(tree.attrs)
        if attrs.get("format") != RESULTS_FORMAT:
            raise ValueError(f"{path}: not a {RESULTS_FORMAT} file")
        obs = tree["observables"].to_dataset()
        stats = tree["sample_stats"].to_dataset()
        observables = {name: np.asarray(obs[name].values) for name in obs.data_vars}
        sample_stats = {name: np.asarray(stats[name].values) for name in stats.data_vars}
        final_phi = np.asarray(tree["final_state"]["phi"].values)
    loaded = {key: json.loads(attrs[key]) for key in _JSON_ATTRS}
    return RunResult(
        sampler=str(attrs["sampler"]),
        theory=Phi4Theory.from_dict(json.loads(attrs["theory"])),
        observables=observables,
        stats=sample_stats,
        settings=loaded["settings"],
        initial_settings=loaded["initial_settings"],
        work=loaded["work"],
        work_therm=loaded["work_therm"],
        wall_time_s=float(attrs["wall_time_s"]),
        core_time_s=float(attrs.get("core_time_s", attrs["wall_time_s"])),
        therm_time_s=float(attrs["therm_time_s"]),
        therm_core_time_s=float(attrs.get("therm_core_time_s", attrs["therm_time_s"])),
        compile_time_s=float(attrs["compile_time_s"]),
        n_steps=int(attrs["n_steps"]),
        n_therm=int(attrs["n_therm"]),
        thin=int(attrs["thin"]),
        n_chains=int(attrs["n_chains"]),
        seed=int(attrs["seed"]),
        chain_wall_time_s=[float(x) for x in np.atleast_1d(attrs["chain_wall_time_s"])],
        chain_work=loaded["chain_work"],
        final_phi=final_phi,
        versions=loaded["versions"],
        config=loaded["config"],
        workers=int(attrs.get("workers", 1)),
    )
