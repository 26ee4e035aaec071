"""Flow checkpoints: round trip, refusal of foreign, missing or mismatched files."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lattice_samplers.flows import (  # noqa: E402
    CheckpointError,
    CouplingFlowSettings,
    build_flow,
    load_flow,
    read_checkpoint,
    save_checkpoint,
)
from lattice_samplers.theory import Phi4Theory  # noqa: E402

TH4 = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
SMALL = CouplingFlowSettings(n_layers=2, hidden=(8,))


def _saved(tmp_path, theory=TH4, cfg=SMALL):
    flow = build_flow(theory, cfg, seed=1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1)
    path = save_checkpoint(tmp_path / "ck.pt", flow, theory, cfg)
    return flow, path


def test_round_trip_gives_identical_outputs(tmp_path) -> None:
    flow, path = _saved(tmp_path)
    loaded = load_flow(path, TH4, flow_config=SMALL)
    z = torch.randn(5, 4, 4)
    a, la = flow(z)
    b, lb = loaded(z)
    assert torch.equal(a, b) and torch.equal(la, lb)
    data = read_checkpoint(path)
    assert Phi4Theory.from_dict(data["theory"]).couplings == {"beta": 0.5, "lam": 0.5}
    assert {"lattice_samplers", "torch", "numpy", "python"} <= set(data["versions"])
    assert data["n_parameters"] == flow.n_parameters
    # a folder holding checkpoint.pt is accepted too
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", flow, TH4, SMALL)
    assert torch.equal(load_flow(tmp_path / "run")(z)[0], a)


@pytest.mark.parametrize(
    "theory, cfg, match",
    [
        (Phi4Theory.create(6, "ising", beta=0.5, lam=0.5), None, "lattice size L = 4, not L = 6"),
        (Phi4Theory.create(4, "ising", beta=0.6, lam=0.5), None, "trained for ising"),
        (Phi4Theory.create(4, "albergo", m2=-4.0, lam=8.0), None, "trained for ising"),
        (TH4, CouplingFlowSettings(n_layers=3, hidden=(8,)), "different flow architecture"),
        (TH4, CouplingFlowSettings(n_layers=2, hidden=(8,), conditioner="conv"), "different flow"),
        (TH4, CouplingFlowSettings(n_layers=2, hidden=(8,), dtype="float64"), "dtype"),
    ],
)
def test_mismatch_is_refused_in_one_line(tmp_path, theory, cfg, match) -> None:
    _, path = _saved(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        load_flow(path, theory, flow_config=cfg)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, CheckpointError)


def test_missing_and_foreign_files_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="no flow checkpoint") as info:
        load_flow(tmp_path / "nope.pt")
    assert "\n" not in str(info.value)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable flow checkpoint") as info:
        load_flow(junk)
    assert "\n" not in str(info.value)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a lattice_samplers flow checkpoint"):
        load_flow(other)


def test_save_is_atomic_and_keeps_previous_on_failure(tmp_path, monkeypatch) -> None:
    flow, path = _saved(tmp_path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, flow, TH4, SMALL)
    assert path.read_bytes() == before


def test_check_compatible_with_any_couplings_only_checks_the_parametrization(tmp_path) -> None:
    from lattice_samplers.flows.checkpoint import check_compatible

    _, path = _saved(tmp_path)
    data = read_checkpoint(path)
    other_beta = Phi4Theory.create(4, "ising", beta=0.6, lam=0.5)
    other_l = Phi4Theory.create(6, "ising", beta=0.5, lam=0.5)
    for theory in (other_beta, other_l):
        check_compatible(data, theory, any_couplings=True)  # accepted: the caller adapts
        with pytest.raises(CheckpointError):
            check_compatible(data, theory)  # the strict default still refuses
    albergo = Phi4Theory.create(4, "albergo", m2=-4.0, lam=8.0)
    with pytest.raises(CheckpointError, match="ising parametrization, not albergo") as info:
        check_compatible(data, albergo, any_couplings=True)
    assert "\n" not in str(info.value)
