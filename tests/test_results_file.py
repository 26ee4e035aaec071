"""Results files: round trip, readable by xarray and ArviZ, atomic writes."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from helpers import run_chains

from lattice_samplers.driver import RunResult
from lattice_samplers.driver.results_file import read_results, results_to_datatree, write_results
from lattice_samplers.records import OutputError
from lattice_samplers.samplers import ClusterSampler, HMCSampler
from lattice_samplers.summary import summarize_observables
from lattice_samplers.theory import Phi4Theory

THEORY = Phi4Theory.create(4, "albergo", m2=-1.0, lam=1.5)


@pytest.fixture(scope="module")
def result() -> RunResult:
    return run_chains(
        HMCSampler(THEORY),
        200,
        n_therm=100,
        n_chains=3,
        seed=2,
        config={"theory": {"L": 4}, "run": {"seed": 2}},
    )


def test_round_trip(result: RunResult, tmp_path: Path) -> None:
    path = write_results(result, tmp_path / "run.nc")
    back = read_results(path)
    assert back.sampler == "hmc"
    assert back.theory == THEORY
    for name in result.observables:
        np.testing.assert_array_equal(back.observables[name], result.observables[name])
    for name in result.stats:
        np.testing.assert_array_equal(back.stats[name], result.stats[name])
    np.testing.assert_array_equal(back.final_phi, result.final_phi)
    for attr in ("settings", "initial_settings", "work", "work_therm", "chain_work", "config"):
        assert getattr(back, attr) == getattr(result, attr), attr
    for attr in ("n_steps", "n_therm", "thin", "n_chains", "seed", "wall_time_s"):
        assert getattr(back, attr) == getattr(result, attr), attr
    assert back.chain_wall_time_s == result.chain_wall_time_s
    assert back.versions == result.versions
    assert summarize_observables(back) == summarize_observables(result)


def test_layout_is_readable_by_xarray_and_arviz(result: RunResult, tmp_path: Path) -> None:
    path = write_results(result, tmp_path / "run.nc")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        assert {"observables", "sample_stats", "final_state"} <= set(tree.children)
        assert tree["observables"]["phi2"].dims == ("chain", "draw")
        assert tree["sample_stats"]["delta_h"].shape == (3, 200)
        assert json.loads(tree.attrs["settings"]) == result.settings
        assert json.loads(tree.attrs["config"])["run"]["seed"] == 2
        assert tree.attrs["sampler"] == "hmc"

        import arviz_stats

        ess = arviz_stats.ess(tree, group="observables", method="mean")
        ours = summarize_observables(result)
        for name in ("phi2", "abs_magnetization"):
            # ArviZ's autocorrelation ESS and the Gamma method agree roughly on one run
            assert float(ess[name]) == pytest.approx(ours[name]["ess"], rel=0.3)


def test_cluster_results_round_trip(tmp_path: Path) -> None:
    result = run_chains(ClusterSampler(THEORY), 30, thin=3, n_chains=2, seed=0)
    back = read_results(write_results(result, tmp_path / "c.nc"))
    np.testing.assert_array_equal(back.stats["cluster_size"], result.stats["cluster_size"])
    assert back.thin == 3 and back.observables["phi2"].shape == (2, 10)


def test_write_is_atomic(result: RunResult, tmp_path: Path, monkeypatch) -> None:
    """A write that fails half way leaves neither a partial file nor a temporary one."""
    path = tmp_path / "run.nc"
    write_results(result, path)
    before = path.read_bytes()

    real_to_netcdf = xr.DataTree.to_netcdf

    def failing_to_netcdf(self, filepath, *args, **kwargs):
        real_to_netcdf(self, filepath, *args, **kwargs)  # a complete file (or buffer) ...
        if isinstance(filepath, str | Path):
            Path(filepath).write_bytes(Path(filepath).read_bytes()[:100])  # ... then truncated
        raise OSError(errno.ENOSPC, "disk full (simulated)")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", failing_to_netcdf)
    # an OSError while writing is one line naming the file and the reason
    with pytest.raises(OutputError, match=r"run\.nc: disk full \(simulated\) \(ENOSPC\)"):
        write_results(result, path)
    with pytest.raises(OutputError, match="simulated"):
        write_results(result, tmp_path / "new.nc")
    assert path.read_bytes() == before  # the old file is untouched
    assert not (tmp_path / "new.nc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_results(tmp_path / "missing.nc")
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("a", np.arange(3))}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(ValueError, match="not a"):
        read_results(other)


def test_datatree_attributes_are_netcdf_friendly(result: RunResult) -> None:
    tree = results_to_datatree(result)
    for value in tree.attrs.values():
        assert isinstance(value, str | int | float | np.ndarray), type(value)
