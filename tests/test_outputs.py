"""The one output check (workflows/outputs.py) and the atomic writer under it (records.py).

Issue 22: items 1-5 (outputs lost), 11/12 (OSError while writing), 21 (what a taken output is
called), 22 (stale temporaries), 24 (--version, help with defaults, columns never run together).
The concurrent and signal cases run as real processes in test_reliability_round3.py.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lattice_samplers.cli import main
from lattice_samplers.commands.compare import format_table
from lattice_samplers.records import (
    OutputClash,
    OutputError,
    WriteGuard,
    guarded_writes,
    remove_stale_temporaries,
    write_text,
)
from lattice_samplers.workflows.outputs import (
    TRAINING_FILES,
    OutputClaim,
    check_outputs,
    protected,
)

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


QUIET = ("--no-progress", "--json")


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _config(tmp_path: Path, text: str = CONFIG) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


def _one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------ the writer under a guard
def test_a_protected_file_is_published_only_if_its_name_is_free(tmp_path) -> None:
    """The write-time half of the check: a file that appeared after the check is kept, and
    this run's content survives under a name the error gives; its own files it replaces."""
    target = tmp_path / "r.txt"
    with guarded_writes(WriteGuard(files={str(target)})) as guard:
        write_text(target, "mine 1")
        write_text(target, "mine 2")  # made by this run: replaced freely
        assert target.read_text() == "mine 2" and guard.made_here(target)
    other = tmp_path / "o.txt"
    with guarded_writes(WriteGuard(files={str(other)})):
        other.write_text("another run's")  # appears between the check and the write
        with pytest.raises(OutputClash, match=r"kept in .*o\.\d+\.txt") as info:
            write_text(other, "this run's")
    assert other.read_text() == "another run's"
    assert info.value.kept is not None and info.value.kept.read_text() == "this run's"
    # negative control: without the guard the writer replaces (what let two runs both succeed)
    write_text(other, "replaced")
    assert other.read_text() == "replaced"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_overwrite_and_adopted_files_may_be_replaced(tmp_path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    with protected(OutputClaim(files=(a,), overwrite=True)):
        write_text(a, "new a")
    with protected(OutputClaim(files=(b,), adopt=(b,))):  # --resume continues its checkpoint
        write_text(b, "new b")
    assert a.read_text() == "new a" and b.read_text() == "new b"


def test_the_check_names_every_taken_file_of_the_set(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").write_text("step\n")
    (out / "summary.json").write_text(json.dumps({"samplers": {}}))
    files = [out / n for n in TRAINING_FILES]
    with pytest.raises(ValueError, match=r"holds a comparison \(history\.csv, summary\.json"):
        check_outputs(files=files, folders=[out])
    claim = check_outputs(files=files, folders=[out], overwrite=True)
    assert claim.overwrite


def test_training_file_names_match_the_session() -> None:
    from lattice_samplers.workflows.train import session

    names = (session.CHECKPOINT_NAME, session.HISTORY_NAME, session.SUMMARY_NAME)
    assert (*names, session.FIGURE_NAME) == TRAINING_FILES


# ------------------------------------------------------------------ items 1-5
def test_item1_checkpoint_equal_to_out_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "o" / "r.nc"
    code, _, err = _cli(
        capsys, "sample", _config(tmp_path), "--out", str(out), "--checkpoint", str(out)
    )
    assert code == 2 and _one_line(err) and "is the --out file" in err
    assert not out.exists()
    link = tmp_path / "link.ckpt"  # the same file under another name
    link.symlink_to(out)
    code, _, err = _cli(
        capsys, "sample", _config(tmp_path), "--out", str(out), "--checkpoint", str(link)
    )
    assert code == 2 and "is the --out file" in err


def test_item3_compare_does_not_replace_a_users_results_files(tmp_path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("hmc.nc", "flow.nc"):
        (out / name).write_bytes(b"the user's " + name.encode())
    code, _, err = _cli(capsys, "compare", "--set", "theory.L=4", "--out", str(out))
    assert code == 2 and _one_line(err) and "hmc.nc" in err and "flow.nc" in err
    assert (out / "hmc.nc").read_bytes() == b"the user's hmc.nc"
    assert sorted(p.name for p in out.iterdir()) == ["flow.nc", "hmc.nc"]


def test_item21_compare_on_a_training_folder_calls_it_a_training(tmp_path, capsys) -> None:
    out = tmp_path / "trained"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"stop_reason": "n_steps", "train": {}}))
    code, _, err = _cli(capsys, "compare", "--set", "theory.L=4", "--out", str(out))
    assert code == 2 and "a flow training" in err and "comparison" not in err


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("history.csv", "step,loss\n1,0.5\n"),  # a diverged run's kept history
        ("summary.json", '{"samplers": {}}'),  # a comparison's summary
        ("training.png", "png"),
    ],
)
def test_item4_train_does_not_overwrite_records(tmp_path, capsys, name: str, text: str) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        '[theory]\nL = 4\nparametrization = "ising"\nbeta = 0.5\nlam = 0.5\n'
        '[flow]\nfamily = "coupling"\nn_layers = 2\nhidden = [16]\n'
        "[train]\nn_steps = 5\nbatch_size = 16\n"
    )
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text(text)
    code, _, err = _cli(capsys, "train", str(cfg), "--out", str(out), "--no-progress")
    assert code == 2 and _one_line(err) and name in err, err
    assert (out / name).read_text() == text
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_item5_analyze_needs_overwrite_for_an_earlier_analysis(tmp_path, capsys) -> None:
    import numpy as np

    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(2, 200)))
    out = tmp_path / "an"
    assert _cli(capsys, "analyze", str(data), "--out", str(out))[0] == 0
    before = (out / "analysis.json").read_bytes()
    code, _, err = _cli(capsys, "analyze", str(data), "--out", str(out), "--burn", "10")
    assert code == 2 and _one_line(err) and "--overwrite" in err and "an analysis" in err
    assert (out / "analysis.json").read_bytes() == before
    code, _, _ = _cli(
        capsys, "analyze", str(data), "--out", str(out), "--burn", "10", "--overwrite"
    )
    assert code == 0 and json.loads((out / "analysis.json").read_text())["burn"] == 10


# ------------------------------------------------------------------ items 11/12
def test_item11_read_only_file_system_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """EROFS at the moment of writing (simulated: as root a read-only folder is writable)."""
    import numpy as np

    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(2, 200)))

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code, out, err = _cli(capsys, "analyze", str(data), "--out", str(tmp_path / "an"))
    assert code == 2 and _one_line(err), err
    assert "analysis.json" in err and "Read-only file system (EROFS)" in err


def test_item11_a_read_only_folder_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    """Before the analysis runs, a folder on a read-only file system is one line (as root,
    where permissions do not bind, simulated through os.access and os.statvfs)."""
    import numpy as np

    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(2, 200)))
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access, real_statvfs = os.access, os.statvfs

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == ro else real_access(p, m))
    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly() if Path(p) == ro else real_statvfs(p))
    code, out, err = _cli(capsys, "analyze", str(data), "--out", str(ro / "an"))
    assert code == 2 and _one_line(err) and "read-only file system" in err and out == ""
    assert list(ro.iterdir()) == []


def test_item12_file_size_limit_is_one_line_and_keeps_the_earlier_file(tmp_path) -> None:
    """EFBIG from a real RLIMIT_FSIZE in a subprocess (Python ignores SIGXFSZ)."""
    cfg = _config(tmp_path, CONFIG.replace("n_steps = 100", "n_steps = 3000"))
    out = tmp_path / "r.nc"
    out.write_bytes(b"an earlier file")
    code = (
        "import resource, sys; from lattice_samplers.cli import main; "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000)); sys.exit(main())"
    )
    # warm the numba cache first: its files are written under the same limit otherwise
    assert main(["sample", cfg, "--no-progress", "--json"]) == 0
    proc = subprocess.run(
        [sys.executable, "-c", code, "sample", cfg, "--out", str(out), "--overwrite", *QUIET],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert _one_line(proc.stderr) and "File too large (EFBIG)" in proc.stderr
    assert "r.nc" in proc.stderr  # the checkpoint or the results file, named
    assert out.read_bytes() == b"an earlier file"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ item 22: temporaries
def test_item22_stale_temporaries_of_dead_processes_are_removed(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "r.nc.ckpt"
    host = __import__("re").sub(r"[^\w-]", "_", __import__("socket").gethostname())
    stale = tmp_path / f".r.nc.ckpt.lstmp-{host}-{dead.pid}-abc123.tmp"
    alive = tmp_path / f".r.nc.ckpt.lstmp-{host}-{os.getppid()}-def456.tmp"
    foreign = tmp_path / ".r.nc.ckpt.someone-else.tmp"
    for p in (stale, alive, foreign):
        p.write_bytes(b"half a checkpoint")
    write_text(target, "a new checkpoint")  # the next write of the same file cleans up
    assert not stale.exists()
    assert alive.exists() and foreign.exists()  # a live writer's and another program's stay
    assert remove_stale_temporaries(target) == []
    # the check before a run removes a dead run's temporaries of any file in its folders
    other = tmp_path / f".old.nc.lstmp-{host}-{dead.pid}-ghi789.tmp"
    other.write_bytes(b"half a results file")
    check_outputs(files=[tmp_path / "new.nc"])
    assert not other.exists() and alive.exists()


# ------------------------------------------------------------------ item 24
def test_item24_version_and_help_with_defaults(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and "lattice-samplers 0." in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 20000)", "(default: 1000)", "(default: 0.01)", "(default: 3)"):
        assert default in text


def test_item24_table_columns_never_run_together() -> None:
    """tau_int 401 with error 180 once printed as ``4011.8e+02``."""
    obs = {"mean": 1.0, "err": 0.1, "tau_int": 401.0, "tau_int_err": 180.0, "ess": 10.0}
    sampler = {
        "acceptance": 0.5,
        "n_chains": 2,
        "n_steps": 100,
        "n_therm": 10,
        "wall_time_s": 1.0,
        "observables": dict.fromkeys(
            ("abs_magnetization", "two_point_susceptibility", "action_density"), obs
        ),
        "cost_per_ess_s": dict.fromkeys(
            ("abs_magnetization", "two_point_susceptibility", "action_density"), 1e-3
        ),
        "cost_per_ess_with_training_s": dict.fromkeys(
            ("abs_magnetization", "two_point_susceptibility", "action_density"), 1e-3
        ),
    }
    summary = {
        "theory": {"L": 4, "parametrization": "ising", "beta": 0.5, "lam": 0.5},
        "samplers": {"hmc": sampler},
        "consistency": {},
        "break_even": {},
        "tau_int_convention": "lattice",
    }
    table = format_table(summary)
    assert "401 1.8e+02" in table and "4011.8e+02" not in table


def test_write_errors_without_errno_still_name_the_path(tmp_path) -> None:
    target = tmp_path / "f.txt"

    def fail(tmp: Path) -> None:
        raise OSError("disk gone")

    from lattice_samplers.records import atomic_write

    with pytest.raises(OutputError, match=r"f\.txt: disk gone"):
        atomic_write(target, fail)
