"""Tests of ``lattice-samplers analyze``: readers, statistics, and one-line errors.

The reference series is a 4 x 100,000 AR(1) process with a = 0.9, whose exact lattice
tau_int is (1 + a) / (2 (1 - a)) = 9.5; it is written as .npy, as one CSV per chain and as
an ArviZ-written netCDF, and every reader must give the same numbers.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

from lattice_samplers.chains_io import ChainsError, read_chains
from lattice_samplers.cli import main
from lattice_samplers.summary import AnalysisSettings
from lattice_samplers.workflows.analyze import (
    AnalyzeSpec,
    analyze_chains,
    run_analysis,
    write_outputs,
)

A = 0.9
TAU_EXACT = (1 + A) / (2 * (1 - A))  # 9.5
N_CHAINS, N_DRAWS = 4, 100_000


def ar1(a: float, n_chains: int, n_draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n_chains, n_draws))
    zi = a * rng.standard_normal((n_chains, 1))  # start in the stationary N(0, 1)
    return lfilter([np.sqrt(1 - a * a)], [1.0, -a], eps, axis=1, zi=zi)[0]


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return ar1(A, N_CHAINS, N_DRAWS, seed=2024)


@pytest.fixture(scope="module")
def files(series: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The AR(1) series as .npy, one CSV per chain, ArviZ netCDF, and transposed copies."""
    import arviz_base

    d = tmp_path_factory.mktemp("chains")
    np.save(d / "x.npy", series)
    np.save(d / "x_draws_chains.npy", series.T)
    csvs = []
    for i, chain in enumerate(series):
        path = d / f"chain{i}.csv"
        # repr() of a float round-trips exactly; np.savetxt would be slow for 100,000 rows
        rows = (f"{v!r},{-v!r}" for v in chain.tolist())
        path.write_text("x,minus_x\n" + "\n".join(rows) + "\n")
        csvs.append(path)
    np.savetxt(d / "x_matrix.csv", series[:, :200].T, delimiter=",")  # no header: draws x chains
    nc = d / "x_arviz.nc"
    arviz_base.from_dict({"posterior": {"x": series, "v": np.zeros((N_CHAINS, 50, 2))}}).to_netcdf(
        nc
    )
    return {"dir": d, "npy": d / "x.npy", "npy_t": d / "x_draws_chains.npy", "csv": csvs,
            "csv_t": d / "x_matrix.csv", "nc": nc}  # fmt: skip


@pytest.fixture(scope="module")
def npy_result(files: dict) -> dict:
    return run_analysis(AnalyzeSpec(paths=(files["npy"],))).variables["x"]


def test_ar1_tau_int_both_estimators_and_r_hat(npy_result: dict) -> None:
    v = npy_result
    assert v["estimator"] == "arviz" and v["n_chains"] == 4 and v["n_draws"] == N_DRAWS
    for key, err in (
        ("tau_int_gamma", v["tau_int_gamma_err"]),
        ("tau_int_arviz", v["tau_int_err"]),
    ):
        assert abs(v[key] - TAU_EXACT) <= 3 * err, (key, v[key], err)
        assert v[key] == pytest.approx(TAU_EXACT, rel=0.05), key
    assert v["tau_int"] == v["tau_int_arviz"]
    assert abs(v["r_hat"] - 1.0) <= 0.01
    assert v["tau_int_emcee"] == pytest.approx(TAU_EXACT, rel=0.05)
    assert v["ess"] == pytest.approx(N_CHAINS * N_DRAWS / (2 * v["tau_int"]))
    assert v["ess_bulk"] == pytest.approx(v["ess"], rel=0.1)
    assert v["flags"] == []
    # the error of the mean is that of the chosen tau_int (unit variance)
    assert v["err"] == pytest.approx(np.sqrt(2 * TAU_EXACT / (N_CHAINS * N_DRAWS)), rel=0.05)


def test_control_ar1_with_wrong_exact_value_fails(npy_result: dict) -> None:
    wrong = (1 + 0.88) / (2 * (1 - 0.88))  # a = 0.88: tau_int 7.83, must be rejected
    assert abs(npy_result["tau_int_gamma"] - wrong) > 3 * npy_result["tau_int_gamma_err"]


def test_gamma_estimator_drives_tau_int() -> None:
    x = ar1(A, 4, 20_000, seed=9)
    gamma = analyze_chains({"x": x}, analysis=AnalysisSettings("gamma")).variables["x"]
    arviz = analyze_chains({"x": x}).variables["x"]
    assert gamma["estimator"] == "gamma" and arviz["estimator"] == "arviz"
    assert gamma["tau_int"] == gamma["tau_int_gamma"] == arviz["tau_int_gamma"]
    assert gamma["tau_int_err"] == gamma["tau_int_gamma_err"]
    assert arviz["tau_int"] == arviz["tau_int_arviz"] == gamma["tau_int_arviz"]
    # ArviZ's error is the Gamma method's relative error applied to ArviZ's tau_int
    rel = gamma["tau_int_gamma_err"] / gamma["tau_int_gamma"]
    assert arviz["tau_int_err"] == pytest.approx(arviz["tau_int"] * rel)


def test_csv_per_chain_and_arviz_netcdf_give_the_same_numbers(files: dict, npy_result: dict):
    csv = run_analysis(AnalyzeSpec(paths=tuple(files["csv"]), var_names=("x",))).variables["x"]
    nc = run_analysis(AnalyzeSpec(paths=(files["nc"],))).variables
    assert list(nc) == ["x"]  # the (chain, draw, v_dim_0) variable is skipped
    for other in (csv, nc["x"]):
        for key, value in npy_result.items():
            if isinstance(value, float):
                assert other[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
            else:
                assert other[key] == value, key


def test_several_columns_are_several_variables(files: dict) -> None:
    chains = read_chains(files["csv"][:2])
    assert list(chains) == ["x", "minus_x"] and chains["x"].shape == (2, N_DRAWS)
    np.testing.assert_array_equal(chains["minus_x"], -chains["x"])


def test_one_constant_chain_is_flagged_never_efficient() -> None:
    x = ar1(A, 4, 20_000, seed=3)
    x[2] = 0.0
    v = analyze_chains({"x": x}).variables["x"]
    assert "stuck_chain" in v["flags"] and "r_hat" in v["flags"] and v["r_hat"] > 1.01
    assert v["ess"] < x.size / 10 and v["tau_int"] > 1
    stuck = analyze_chains({"c": np.full((4, 100), 3.0)}).to_dict()["variables"]["c"]
    assert stuck["flags"] == ["stuck"] and stuck["ess"] == 0.0
    assert stuck["tau_int"] is None and stuck["tau_int_arviz"] is None  # inf -> null


def test_wrong_layout_is_caught(files: dict, npy_result: dict) -> None:
    for path in (files["npy_t"], files["csv_t"]):
        with pytest.raises(ChainsError, match="--layout draws,chains"):
            read_chains([path])
    right = run_analysis(AnalyzeSpec(paths=(files["npy_t"],), layout="draws,chains"))
    assert right.variables["x_draws_chains"]["tau_int"] == pytest.approx(npy_result["tau_int"])
    assert read_chains([files["csv_t"]], layout="draws,chains")["x_matrix"].shape == (4, 200)


def test_planted_nan_is_refused_with_its_position(tmp_path: Path) -> None:
    x = ar1(0.5, 3, 1000, seed=4)
    x[1, 345] = np.nan
    np.save(tmp_path / "y.npy", x)
    with pytest.raises(ChainsError, match=r"'y'.*\(chain 1, draw 345\)"):
        run_analysis(AnalyzeSpec(paths=(tmp_path / "y.npy",)))
    # the position is that of the input file, after --burn and --thin
    with pytest.raises(ChainsError, match=r"\(chain 1, draw 345\)"):
        run_analysis(AnalyzeSpec(paths=(tmp_path / "y.npy",), burn=5, thin=2))


def test_outputs_json_and_figures(files: dict, tmp_path: Path) -> None:
    x = ar1(A, 2, 5000, seed=5)
    result = analyze_chains({"x": x, "c": np.ones((2, 5000))}, files=("mem",))
    written = write_outputs(result, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["analysis.json", "c_trace.png", "x_gamma.png", "x_trace.png"]
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert set(data["variables"]["x"]) >= {
        "mean", "err", "tau_int", "tau_int_err", "ess", "ess_bulk", "r_hat", "tau_int_gamma",
        "tau_int_arviz", "tau_int_emcee", "estimator", "n_chains", "n_draws", "flags",
    }  # fmt: skip
    assert "stuck" in result.table()


# --------------------------------------------------------------------------- CLI errors


def _bad_inputs(d: Path) -> dict[str, list[str]]:
    """argv of each kind of bad input, with the files it needs."""
    ok = ar1(0.5, 2, 200, seed=6)
    np.save(d / "ok.npy", ok)
    np.save(d / "long.npy", ok.T)
    np.save(d / "short.npy", ok[:, :10])
    bad = ok.copy()
    bad[0, 7] = np.inf
    np.save(d / "bad.npy", bad)
    (d / "a.csv").write_text("x,y\n" + "\n".join(f"{v},{v}" for v in ok[0]) + "\n")
    (d / "b.csv").write_text("x,y\n" + "\n".join(f"{v},{v}" for v in ok[1, :150]) + "\n")
    (d / "ok.xyz").write_text("1\n2\n")
    return {
        "unknown format": [str(d / "ok.npy"), "--format", "parquet"],
        "unknown suffix": [str(d / "ok.xyz")],
        "missing variable": [str(d / "ok.npy"), "--var", "nope"],
        "missing column": [str(d / "a.csv"), "--var", "z"],
        "ragged chains": [str(d / "a.csv"), str(d / "b.csv")],
        "non-finite": [str(d / "bad.npy")],
        "too short": [str(d / "short.npy")],
        "layout": [str(d / "long.npy")],
        "missing file": [str(d / "none.npy")],
    }


EXPECTED = {
    "unknown format": "unknown format 'parquet'",
    "unknown suffix": "--format",
    "missing variable": "'nope' not found",
    "missing column": "column 'z' not found",
    "ragged chains": "ragged chains",
    "non-finite": r"(chain 0, draw 7)",
    "too short": "at least 20",
    "layout": "--layout draws,chains",
    "missing file": "no such file",
}


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for case, argv in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out_{case.replace(' ', '_')}"
        status = main(["analyze", *argv, "--out", str(out)])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert status == 2, case
        assert len(lines) == 1 and lines[0].startswith("lattice-samplers analyze: error:"), case
        assert EXPECTED[case] in lines[0], (case, lines[0])
        assert captured.out == "" and not out.exists(), case


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "z.npy", ar1(A, 2, 20_000, seed=8))
    status = main(["analyze", str(tmp_path / "z.npy"), "--burn", "100", "--thin", "2", "--json"])
    captured = capsys.readouterr()
    assert status == 0 and captured.err == ""
    data = json.loads(captured.out)
    v = data["variables"]["z"]
    assert v["n_chains"] == 2 and v["n_draws"] == (20_000 - 100) // 2
    assert data["burn"] == 100 and data["thin"] == 2
    assert 0 < v["tau_int"] < TAU_EXACT  # thinning by 2 roughly halves tau_int


def test_reads_the_observables_of_a_results_file(tmp_path: Path) -> None:
    """A file laid out like a results file (observables + sample_stats groups)."""
    import xarray as xr

    from lattice_samplers.driver.results_file import RESULTS_FORMAT

    x = ar1(0.5, 2, 1000, seed=10)
    coords = {"chain": [0, 1], "draw": np.arange(1000)}
    tree = xr.DataTree.from_dict(
        {
            "/": xr.Dataset(attrs={"format": RESULTS_FORMAT}),
            "observables": xr.Dataset({"phi2": (("chain", "draw"), x)}, coords=coords),
            "sample_stats": xr.Dataset({"delta_h": (("chain", "draw"), -x)}, coords=coords),
        }
    )
    tree.to_netcdf(tmp_path / "run.nc", engine="h5netcdf")
    chains = read_chains([tmp_path / "run.nc"])
    assert list(chains) == ["phi2"]
    np.testing.assert_array_equal(chains["phi2"], x)
