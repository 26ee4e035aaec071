"""Never lose a user's work: overwrites, signals, damaged checkpoints, unwritable or odd
outputs, impossible sizes, and one-line errors instead of tracebacks (``sample``, ``tune``)."""

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
from lattice_samplers.driver.checkpoint import save_checkpoint
from lattice_samplers.driver.results_file import read_results
from lattice_samplers.records import OutputError, atomic_write, write_text

CONFIG = """
[theory]
L = 4
beta = 0.5
lam = 0.5

[sampler]
kind = "metropolis"

[run]
n_therm = 20
n_steps = 100
n_chains = 2
seed = 3
"""


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _config(tmp_path: Path, text: str = CONFIG) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


def test_sample_never_overwrites_results_or_restarts_over_a_checkpoint(tmp_path, capsys) -> None:
    cfg, out = _config(tmp_path), tmp_path / "r.nc"
    assert _cli(capsys, "sample", cfg, "--out", str(out), "--no-progress")[0] == 0
    before = out.read_bytes()
    code, _, err = _cli(capsys, "sample", cfg, "--out", str(out), "--no-progress")
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    # an earlier run's checkpoint is not started over without --resume or --overwrite
    ckpt = tmp_path / "other.nc.ckpt"
    save_checkpoint(ckpt, {"format": "lattice_samplers.checkpoint/1"}, {})
    saved = ckpt.read_bytes()
    code, _, err = _cli(capsys, "sample", cfg, "--out", str(tmp_path / "other.nc"))
    assert code == 2 and "--resume" in err and ckpt.read_bytes() == saved
    # a file that is not a checkpoint is not called one (issue 22 item 21)
    ckpt.write_bytes(b"someone's notes")
    code, _, err = _cli(capsys, "sample", cfg, "--out", str(tmp_path / "other.nc"))
    assert code == 2 and "not a checkpoint of this program" in err and "--resume" not in err
    assert ckpt.read_bytes() == b"someone's notes"
    code, _, err = _cli(capsys, "sample", cfg, "--out", str(out), "--overwrite", "--no-progress")
    assert code == 0, err


def test_damaged_checkpoint_is_a_one_line_error(tmp_path, capsys) -> None:
    cfg, out = _config(tmp_path), tmp_path / "r.nc"
    ckpt = tmp_path / "r.nc.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    code, _, err = _cli(capsys, "sample", cfg, "--out", str(out), "--resume", "--no-progress")
    assert code == 2 and "damaged or truncated" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("theory = 5\n", [], "[theory] must be a table"),
        (CONFIG, ["--set", "run=5"], "[run] must be a table"),
        (CONFIG, ["--set", "run.n_steps=100000000000"], "GiB"),
    ],
)
def test_bad_config_shapes_and_sizes_are_one_line_errors(
    tmp_path, capsys, text: str, overrides: list[str], message: str
) -> None:
    code, _, err = _cli(capsys, "sample", _config(tmp_path, text), *overrides)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_tune_refuses_impossible_sizes_and_ignored_options(tmp_path, capsys) -> None:
    code, _, err = _cli(capsys, "tune", "--L", "100000", "--lam", "0.5", "--n-steps", "100")
    assert code == 2 and "GiB" in err
    code, _, err = _cli(capsys, "tune", "--L", "6", "--lam", "0.5", "--backend", "dask")
    assert code == 2 and "need --out" in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = _cli(capsys, "tune", "--L", "6", "--lam", "0.5", "--out", str(afile))
    assert code == 2 and "not a folder" in err


def test_writes_go_through_symlinks_and_refuse_device_nodes(tmp_path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    with pytest.raises(OutputError, match="not a regular file"):
        atomic_write("/dev/null", lambda tmp: tmp.write_text("x"))
    assert Path("/dev/null").is_char_device()


def test_unwritable_output_is_refused_before_any_work(tmp_path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("this process can write anyway (root)")
        code, _, err = _cli(capsys, "sample", _config(tmp_path), "--out", str(ro / "r.nc"))
        assert code == 2 and "no permission" in err
    finally:
        ro.chmod(0o700)


LONG = """
[theory]
L = 8
beta = 0.576
lam = 0.5

[sampler]
kind = "hmc"

[run]
n_therm = 200
n_steps = 6000
n_chains = 2
seed = 11
block_size = 50
checkpoint_every = 50
"""


def _sample_process(cfg: str, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "lattice_samplers.cli", "sample", cfg, "--out", str(out)]
    return subprocess.Popen(
        [*cmd, "--no-progress", *extra], stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_and_resume_is_bit_identical(tmp_path, sig) -> None:
    """A real signal to a real process mid-run: exit 128 + signum, a checkpoint, and a resumed
    run equal to an uninterrupted one."""
    cfg = _config(tmp_path, LONG)
    straight = tmp_path / "straight.nc"
    assert _sample_process(cfg, straight).wait(timeout=300) == 0
    out = tmp_path / "cut.nc"
    ckpt = Path(str(out) + ".ckpt")
    proc = _sample_process(cfg, out)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the run finished before the signal could be sent")
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert code == 128 + sig, err
    assert "--resume" in err and ckpt.is_file() and not out.exists()
    assert _sample_process(cfg, out, "--resume").wait(timeout=300) == 0
    a, b = read_results(straight), read_results(out)
    for name in a.observables:
        np.testing.assert_array_equal(a.observables[name], b.observables[name])
    np.testing.assert_array_equal(a.final_phi, b.final_phi)


def test_a_line_per_phase_when_stderr_is_not_a_terminal(tmp_path, capsys) -> None:
    """No progress bar in a log file, but a sign of life per phase; --no-progress is quiet."""
    code, _, err = _cli(capsys, "sample", _config(tmp_path), "--json")
    assert code == 0
    phases = [line for line in err.splitlines() if line.startswith("metropolis L=4: ")]
    assert [p.split(": ")[1].split(",")[0].split(" (")[0] for p in phases] == [
        "thermalization",
        "production",
        "done",
    ]
    code, _, err = _cli(capsys, "sample", _config(tmp_path), "--json", "--no-progress")
    assert code == 0 and "metropolis L=4" not in err
