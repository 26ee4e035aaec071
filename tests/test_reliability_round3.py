"""Never lose a user's work, round 3 (issue 22), as real processes: two runs with one --out,
a SIGTERM after the results file is written; plus the one-line errors of items 6-19."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lattice_samplers.cli import main
from lattice_samplers.driver.results_file import read_results

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[theory]
L = 6
beta = 0.5
lam = 0.5

[sampler]
kind = "metropolis"

[run]
n_therm = 100
n_steps = {n_steps}
n_chains = 2
seed = 1
"""


def _config(tmp_path: Path, n_steps: int = 100) -> str:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(n_steps=n_steps))
    return str(path)


def _sample(cfg: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "lattice_samplers.cli", "sample", cfg, "--no-progress"]
    return subprocess.Popen(
        [*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------ item 2
@pytest.mark.parametrize("own_checkpoints", [True, False])
def test_item2_two_runs_with_one_out_cannot_both_succeed(tmp_path, own_checkpoints) -> None:
    """Both pass the check at start; at the moment of writing, the second finds the name
    taken: one line, exit 2, and its output kept under a name the line gives."""
    cfg = _config(tmp_path, n_steps=150_000)
    out = tmp_path / "r.nc"
    procs = []
    for seed in (1, 2):
        extra = ["--checkpoint", str(tmp_path / f"own{seed}.ckpt")] if own_checkpoints else []
        procs.append(_sample(cfg, "--out", str(out), "--set", f"run.seed={seed}", *extra))
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert _one_line(loser) and "created by another run" in loser, loser
    kept = Path(loser.split("kept in ")[1].split()[0])
    assert kept.is_file() and kept != out
    winner = read_results(out)
    if own_checkpoints:  # the results clashed: the loser's complete results are kept
        other = read_results(kept)
        assert {winner.seed, other.seed} == {1, 2}
    # no checkpoint of the winner is left behind, and the loser's is not removed by the winner
    assert not (tmp_path / f"own{winner.seed}.ckpt").exists()


# ------------------------------------------------------------------ item 22
def test_item22_sigterm_after_the_results_says_they_are_complete(tmp_path) -> None:
    cfg = _config(tmp_path, n_steps=400_000)
    out = tmp_path / "r.nc"
    proc = _sample(cfg, "--out", str(out))
    deadline = time.monotonic() + 300
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if proc.poll() is not None:
        pytest.skip("the run ended before the signal could be sent")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    if code == 0:
        pytest.skip("the run ended before the signal arrived")
    assert code == 143, err
    assert "after its results were written" in err and f"{out} complete" in err, err
    assert read_results(out).n_steps == 400_000  # complete indeed


# ------------------------------------------------------------------ items 6, 8, 14, 16-19
def test_item6_several_npy_files_are_chains_of_one_variable(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(tmp_path / f"c{i}.npy", rng.normal(size=1000))
    files = [str(tmp_path / f"c{i}.npy") for i in range(3)]
    assert main(["analyze", *files, "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert list(doc["variables"]) == ["c"]
    assert doc["variables"]["c"]["n_chains"] == 3 and doc["variables"]["c"]["r_hat"] is not None
    np.save(tmp_path / "c1.npy", rng.normal(size=800))
    code, err = _cli(capsys, "analyze", *files)
    assert code == 2 and _one_line(err)
    assert "c0.npy: 1000" in err and "c1.npy: 800" in err and "c2.npy: 1000" in err


def test_item16_ragged_chains_from_folders_name_each_file(tmp_path, capsys) -> None:
    for name, n in (("a", 500), ("b", 400)):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "x.npy", np.random.default_rng(1).normal(size=(2, n)))
    a, b = tmp_path / "a" / "x.npy", tmp_path / "b" / "x.npy"
    code, err = _cli(capsys, "analyze", str(a), str(b))
    assert code == 2 and _one_line(err) and f"{a}: 500" in err and f"{b}: 400" in err


def test_item8_complex_arrays_are_refused(tmp_path, capsys) -> None:
    path = tmp_path / "z.npy"
    np.save(path, np.exp(1j * np.arange(200.0)))
    code, err = _cli(capsys, "analyze", str(path))
    assert code == 2 and _one_line(err) and "complex" in err


def test_item14_a_scalar_in_an_npz_blocks_nothing(tmp_path, capsys) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, m=np.random.default_rng(2).normal(size=(2, 300)), beta=np.float64(0.5))
    assert main(["analyze", str(path), "--var", "m", "--json"]) == 0
    assert main(["analyze", str(path), "--json"]) == 0
    capsys.readouterr()
    code, err = _cli(capsys, "analyze", str(path), "--var", "beta")
    assert code == 2 and _one_line(err) and "'beta'" in err and "shape ()" in err


def test_item17_a_png_named_npy_is_not_a_pickle_question(tmp_path, capsys) -> None:
    path = tmp_path / "fig.npy"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    code, err = _cli(capsys, "analyze", str(path))
    assert code == 2 and _one_line(err) and "not a .npy file" in err and "pickle" not in err


def test_item18_19_folders_and_binary_configs_are_named(tmp_path, capsys) -> None:
    code, err = _cli(capsys, "analyze", str(tmp_path))
    assert code == 2 and "is a folder" in err
    code, err = _cli(capsys, "sample", str(tmp_path))
    assert code == 2 and "is a folder" in err and "not found" not in err
    binary = tmp_path / "c.toml"
    binary.write_bytes(b"\xff\xfe\x00binary")
    code, err = _cli(capsys, "sample", str(binary))
    assert code == 2 and _one_line(err) and str(binary) in err and "UTF-8" in err


# ------------------------------------------------------------------ items 9, 10, 13, 15
def test_item9_an_inline_table_merges_into_the_table(tmp_path, capsys) -> None:
    cfg = _config(tmp_path)
    assert main(["sample", cfg, "--set", "run={n_steps=200}", "--json", "--no-progress"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    # seed, chains and n_therm of the file are kept; only n_steps changed
    assert (doc["n_steps"], doc["seed"], doc["n_chains"], doc["n_therm"]) == (200, 1, 2, 100)


def test_item10_a_lattice_too_big_for_memory_is_refused_before_allocating(tmp_path, capsys):
    code, err = _cli(capsys, "sample", _config(tmp_path), "--set", "theory.L=100000")
    assert code == 2 and _one_line(err) and "lattice fields" in err and "GiB" in err


@pytest.mark.parametrize("timeout", ["nan", "-1", "0", "inf"])
def test_item13_15_scheduler_timeout_must_be_positive(tmp_path, capsys, timeout) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[scan]\njob = "selftest"\ngrid = { "selftest.x" = [1.0] }\n')
    code, err = _cli(
        capsys, "scan", str(cfg), "--out", str(tmp_path / "o"), "--backend", "dask",
        "--scheduler", "tcp://127.0.0.1:1", "--scheduler-timeout", timeout,
    )  # fmt: skip
    assert code == 2 and _one_line(err) and "--scheduler-timeout must be a positive" in err


def test_item13_a_bad_scheduler_address_is_one_line_without_a_hang(tmp_path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[scan]\njob = "selftest"\ngrid = { "selftest.x" = [1.0] }\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lattice_samplers.cli", "scan", str(cfg), "--out",
         str(tmp_path / "o"), "--backend", "dask", "--scheduler", "bogus-address",
         "--scheduler-timeout", "2"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2 and _one_line(proc.stderr), proc.stderr
    assert "bad Dask scheduler address" in proc.stderr
    assert time.monotonic() - t0 < 30


def test_item22_kill_9_mid_write_leaves_a_temporary_the_next_run_removes(tmp_path) -> None:
    """A real SIGKILL while a checkpoint is being written: its hidden temporary stays behind
    (nothing can finish it), and the next run in that folder removes it."""
    cfg = tmp_path / "big.toml"
    cfg.write_text(
        CONFIG.format(n_steps=3_000_000).replace("L = 6", "L = 32")
        + "checkpoint_every = 20000\nblock_size = 20000\n"
    )
    proc = _sample(str(cfg), "--out", str(tmp_path / "big.nc"))
    deadline = time.monotonic() + 240
    caught = []
    while proc.poll() is None and time.monotonic() < deadline and not caught:
        caught = list(tmp_path.glob(".big.nc.ckpt.lstmp-*.tmp"))
        if not caught:
            time.sleep(0.001)
    if not caught:
        proc.kill()
        proc.wait()
        pytest.skip("no checkpoint write was caught in progress")
    proc.kill()
    proc.wait(timeout=60)
    left = list(tmp_path.glob(".*.lstmp-*.tmp"))
    if not left:
        pytest.skip("the write finished before SIGKILL arrived")
    small = _sample(_config(tmp_path), "--out", str(tmp_path / "next.nc"))
    assert small.wait(timeout=300) == 0, small.stderr.read()
    assert not list(tmp_path.glob(".*.lstmp-*.tmp"))
    assert (tmp_path / "next.nc").is_file()


def test_scan_does_not_replace_a_comparisons_summary(tmp_path, capsys) -> None:
    """scan --out writes summary.json/csv: a folder holding a comparison's is refused; a
    scan folder is continued as before."""
    cfg = tmp_path / "s.toml"
    cfg.write_text('[scan]\njob = "selftest"\ngrid = { "selftest.x" = [1.0] }\n')
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "summary.json").write_text('{"samplers": {}}')
    code, err = _cli(capsys, "scan", str(cfg), "--out", str(out), "--no-progress")
    assert code == 2 and _one_line(err) and "holds a comparison" in err
    assert (out / "summary.json").read_text() == '{"samplers": {}}'
    scan_dir = tmp_path / "scan"
    assert main(["scan", str(cfg), "--out", str(scan_dir), "--no-progress"]) == 0
    assert main(["scan", str(cfg), "--out", str(scan_dir), "--no-progress"]) == 0


def test_sigterm_during_a_comparison_reports_sigterm_and_143(tmp_path) -> None:
    """The run inside compare stops on SIGTERM; the command says SIGTERM and exits 143 (it
    said SIGINT and 130)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable, "-m", "lattice_samplers.cli", "compare", "--set", "theory.L=4",
        "--set", 'compare.samplers=["metropolis"]', "--set", "run.n_steps=50000000",
        "--set", "run.n_therm=10", "--out", str(tmp_path / "c"),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "production" in line:
            break
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    err = "".join(lines) + proc.stderr.read()
    assert code == 143, err
    assert "interrupted by SIGTERM before its results were complete" in err, err
    assert not (tmp_path / "c" / "summary.json").exists()
