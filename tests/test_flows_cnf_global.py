"""The continuous flow's whole-torus kernels: symmetries, exact log-det, transfer across L."""

from __future__ import annotations

import dataclasses

import pytest
import test_flows_cnf as local_cnf

torch = pytest.importorskip("torch")

from lattice_samplers.config import ConfigError  # noqa: E402
from lattice_samplers.flows import (  # noqa: E402
    CheckpointError,
    CNFSettings,
    CouplingFlowSettings,
    build_flow,
    load_flow,
    read_checkpoint,
    save_checkpoint,
)
from lattice_samplers.flows.cnf_global import (  # noqa: E402
    GlobalCNFLayer,
    extend_weights,
    n_parameters,
    torus_orbits,
)
from lattice_samplers.flows.train.warmstart import (  # noqa: E402
    init_from_flow,
    retarget_checkpoint,
)
from lattice_samplers.theory import Phi4Theory  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DTYPE = torch.float64
ISING4 = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
GLOBAL64 = CNFSettings(
    cnf_kernel="global",
    cnf_frequencies=3,
    cnf_time_basis=3,
    cnf_channels=4,
    cnf_time_channels=2,
    dtype="float64",
)


def _layer(L: int, seed: int = 0, ode_steps: int = 16, scale: float = 0.05) -> GlobalCNFLayer:
    """A float64 layer with generic, clearly non-identity weights."""
    torch.manual_seed(seed)
    layer = GlobalCNFLayer(
        L, frequencies=3, n_time_basis=3, channels=4, time_channels=2, ode_steps=ode_steps
    ).to(DTYPE)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        layer.weight.copy_(scale * torch.randn(layer.weight.shape, generator=gen, dtype=DTYPE))
        layer.omega.add_(0.3 * torch.randn(layer.omega.shape, generator=gen, dtype=DTYPE))
    return layer


def _fields(n: int, L: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.2 * torch.randn((n, L, L), generator=gen, dtype=DTYPE)


def _equivariance_error(layer: GlobalCNFLayer, x: torch.Tensor) -> float:
    """Largest violation of T(g x) = g T(x), ld(g x) = ld(x) over translations, D4 and Z2."""
    L = x.shape[-1]
    with torch.no_grad():
        y, ld = layer(x)
        pairs = [
            (torch.roll(x, (a, b), dims=(-2, -1)), torch.roll(y, (a, b), dims=(-2, -1)))
            for a in range(L)
            for b in range(L)
        ]
        pairs += list(zip(local_cnf._d4(x), local_cnf._d4(y))) + [(-x, -y)]
        worst = 0.0
        for gx, gy in pairs:
            yy, ll = layer(gx)
            worst = max(worst, float((yy - gy).abs().max()), float((ll - ld).abs().max()))
    return worst


# ---------------------------------------------------------------------- orbits, parameters
@pytest.mark.parametrize("L", [1, 4, 5, 8, 9])
def test_torus_orbits_cover_the_torus_and_are_d4_invariant(L) -> None:
    keys, index = torus_orbits(L)
    h = L // 2
    assert len(keys) == (h + 1) * (h + 2) // 2
    assert sorted(set(index.flatten().tolist())) == list(range(len(keys)))
    for g in local_cnf._d4(index):
        assert torch.equal(g, index)
    assert index[0, 0] == 0 and keys[0] == (0, 0)


def test_parameter_count_formula() -> None:
    for L in (4, 7, 12):
        layer = GlobalCNFLayer(L, frequencies=5, n_time_basis=3, channels=4, time_channels=2)
        assert sum(p.numel() for p in layer.parameters()) == n_parameters(L, 5, 3, 4, 2)
    # the default widths reproduce the published counts (12.7k at L = 12, 62.7k at L = 32)
    assert n_parameters(12, 49, 21, 20, 20) == 12_669
    assert n_parameters(32, 49, 21, 20, 20) == 62_669
    th = Phi4Theory.create(12, "ising", beta=0.6, lam=0.5)
    assert build_flow(th, CNFSettings(cnf_kernel="global")).n_parameters == 12_669 + 1


# ---------------------------------------------------------------------- symmetries
@pytest.mark.parametrize("L", [4, 5])
def test_equivariance_translations_d4_and_z2(L) -> None:
    layer = _layer(L, seed=L)
    assert _equivariance_error(layer, _fields(3, L, seed=1)) < 1e-12
    flow = build_flow(ISING4, GLOBAL64, seed=1)
    phi = _fields(4, 4, seed=4)
    torch.testing.assert_close(flow.log_q(-phi), flow.log_q(phi), atol=1e-12, rtol=0)


def test_equivariance_check_fails_for_a_kernel_that_breaks_d4() -> None:
    # negative control: displacement (0, 1) gets another orbit's weight than (1, 0)
    layer = _layer(4, seed=4)
    layer.orbit_index[0, 1] = layer.orbit_index[0, 3] = 2
    assert _equivariance_error(layer, _fields(3, 4, seed=1)) > 1e-3


# ---------------------------------------------------------------------- exact log-det, inverse
class _NoDivergence(GlobalCNFLayer):
    """Negative control: a layer whose log-det ignores the kernels' central values."""

    def kernels(self, t):
        spectra, center = super().kernels(t)
        return spectra, torch.zeros_like(center)


def test_log_det_equals_autograd_jacobian() -> None:
    x = _fields(2, 4, seed=2)
    errors = {}
    for steps in (8, 16):
        layer = _layer(4, seed=3, ode_steps=steps)
        _, ld = layer(x)
        logabs = float(torch.linalg.slogdet(local_cnf._jacobian(layer, x[0]))[1])
        errors[steps] = abs(logabs - float(ld[0].detach()))
    assert abs(logabs) > 0.1  # a map that really changes volume
    assert errors[16] < 1e-4 and errors[16] < errors[8] / 8, errors  # O(h^4)
    wrong = _NoDivergence(4, frequencies=3, n_time_basis=3, channels=4, time_channels=2)
    wrong = wrong.to(DTYPE)
    wrong.load_state_dict(layer.state_dict())
    assert abs(logabs - float(wrong(x)[1][0].detach())) > 1e-2


def test_inverse_round_trip() -> None:
    layer = _layer(5, seed=5, ode_steps=40)
    x = _fields(4, 5, seed=6)
    with torch.no_grad():
        y, ld = layer(x)
        x2, ld_inv = layer.inverse(y)
    assert (y - x).abs().max() > 0.1
    torch.testing.assert_close(x2, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-6, rtol=0)


def test_every_parameter_gets_a_gradient() -> None:
    flow = build_flow(ISING4, GLOBAL64, seed=3)
    names = {n for n, _ in flow.named_parameters()}
    layer = {"weight", "omega", "feature_proj", "time_proj"}
    assert names == {f"layers.1.{n}" for n in layer} | {"layers.2.log_scale"}
    phi, log_q = flow.sample_with_log_q(16, torch.Generator().manual_seed(1))
    (log_q + phi.pow(4).sum(dim=(1, 2))).mean().backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().min() > 0, name


# ---------------------------------------------------------------------- settings, checkpoints
def test_settings_validate_in_one_line() -> None:
    arch = CNFSettings(cnf_kernel="global").resolve(ISING4)
    assert arch["cnf_kernel"] == "global" and arch["kernel_radius"] is None
    assert (arch["cnf_frequencies"], arch["cnf_time_basis"]) == (49, 21)
    assert (arch["cnf_channels"], arch["cnf_time_channels"]) == (20, 20)
    # the local record is unchanged (checkpoints written before still match their config)
    assert "cnf_kernel" not in CNFSettings().resolve(ISING4)
    for kw, match in [
        (dict(cnf_kernel="wide"), "cnf_kernel must be"),
        (dict(cnf_channels=8), "cnf_channels does not apply"),
        (dict(cnf_kernel="global", kernel_radius=2), "kernel_radius does not apply"),
        (dict(cnf_kernel="global", cnf_channels=0), "cnf_channels must be"),
        (dict(cnf_kernel="global", cnf_time_channels=1.5), "cnf_time_channels must be"),
    ]:
        with pytest.raises(ValueError, match=match) as info:
            CNFSettings(**kw)
        assert "\n" not in str(info.value)


def test_checkpoint_round_trip(tmp_path) -> None:
    flow = build_flow(ISING4, GLOBAL64, seed=1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05)
    path = save_checkpoint(tmp_path / "ck.pt", flow, ISING4, GLOBAL64)
    loaded = load_flow(path, ISING4, flow_config=GLOBAL64)
    z = flow.prior_noise(5, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(flow(z), loaded(z)))
    with pytest.raises(ValueError, match="architecture"):
        load_flow(path, ISING4, flow_config=dataclasses.replace(GLOBAL64, cnf_channels=5))
    with pytest.raises(ValueError, match="architecture"):
        load_flow(path, ISING4, flow_config=CNFSettings(dtype="float64"))


# ---------------------------------------------------------------------- transfer across L
@pytest.mark.parametrize("L", [4, 5])
def test_transfer_to_2L_reproduces_the_flow_on_replicated_fields(L) -> None:
    small = _layer(L, seed=7)
    big = GlobalCNFLayer(
        2 * L, frequencies=3, n_time_basis=3, channels=4, time_channels=2, ode_steps=16
    ).to(DTYPE)
    state = small.state_dict()
    state["weight"] = extend_weights(state["weight"], L, 2 * L)
    big.load_state_dict(state)
    x = _fields(3, L, seed=8)
    with torch.no_grad():
        y, ld = small(x)
        y2, ld2 = big(x.repeat(1, 2, 2))
    assert (y - x).abs().max() > 0.1
    torch.testing.assert_close(y2, y.repeat(1, 2, 2), atol=1e-12, rtol=0)
    torch.testing.assert_close(ld2, 4 * ld, atol=1e-10, rtol=0)  # 4 copies of every site
    # shared orbits inside the small torus keep their values exactly; new orbits are zero
    keys_s, _ = torus_orbits(L)
    keys_b, _ = torus_orbits(2 * L)
    for i, (a, b) in enumerate(keys_s):
        j = keys_b.index((a, b))
        if b < L / 2:
            assert torch.equal(big.weight[..., j], small.weight[..., i])
    new = [j for j, (a, b) in enumerate(keys_b) if b > L // 2]
    assert torch.equal(big.weight[..., new], torch.zeros_like(big.weight[..., new]))
    if L % 2 == 0:
        # negative control: copying the edge orbit (L/2) without splitting it breaks the check
        naive = big.weight.detach().clone()
        for i, (a, b) in enumerate(keys_s):
            naive[..., keys_b.index((a, b))] = small.weight[..., i]
        with torch.no_grad():
            big.weight.copy_(naive)
            y3, _ = big(x.repeat(1, 2, 2))
        assert (y3 - y.repeat(1, 2, 2)).abs().max() > 1e-4


def test_warm_start_across_L_and_its_refusals() -> None:
    th8 = Phi4Theory.create(8, "ising", beta=0.576, lam=0.5)
    source = build_flow(ISING4, GLOBAL64, seed=1)
    target = init_from_flow(build_flow(th8, GLOBAL64, seed=2), source)
    want = extend_weights(source.layers[1].weight.detach(), 4, 8)
    assert torch.equal(target.layers[1].weight, want)
    assert torch.equal(target.layers[1].feature_proj, source.layers[1].feature_proj)
    for other, match in [
        (CouplingFlowSettings(n_layers=2, hidden=(8,)), "it is a cnf flow, this is a coupling"),
        (CNFSettings(dtype="float64"), "flow setting"),
    ]:
        with pytest.raises(CheckpointError, match=match) as info:
            init_from_flow(build_flow(th8, other), source)
        assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="larger lattice only") as info:
        init_from_flow(build_flow(ISING4, GLOBAL64), target)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- compare --flow
def test_retarget_accepts_another_beta_or_L_and_refuses_the_rest(tmp_path) -> None:
    flow = build_flow(ISING4, GLOBAL64, seed=1)
    data = read_checkpoint(save_checkpoint(tmp_path / "ck.pt", flow, ISING4, GLOBAL64))
    assert retarget_checkpoint(data, ISING4, "ck") is data  # same theory: untouched
    beta = Phi4Theory.create(4, "ising", beta=0.51, lam=0.5)
    same_l = retarget_checkpoint(data, beta, "ck")
    assert same_l["trained_for"] == {"L": 4, "beta": 0.5, "lam": 0.5}
    z = flow.prior_noise(3, torch.Generator().manual_seed(1))
    assert torch.equal(load_flow(same_l)(z)[0], flow(z)[0])  # the trained flow itself
    th8 = Phi4Theory.create(8, "ising", beta=0.576, lam=0.5)
    big = retarget_checkpoint(data, th8, "ck")
    loaded = load_flow(big)
    assert loaded.L == 8 and big["arch"]["L"] == 8 and big["trained_for"]["L"] == 4
    assert big["n_parameters"] == loaded.n_parameters > flow.n_parameters
    with pytest.raises(CheckpointError, match="parametrization") as info:
        retarget_checkpoint(data, Phi4Theory.create(4, "albergo", m2=-4.0, lam=8.0), "ck")
    assert "\n" not in str(info.value)
    dense = CouplingFlowSettings(n_layers=2, hidden=(8,))
    path = save_checkpoint(tmp_path / "d.pt", build_flow(ISING4, dense), ISING4, dense)
    with pytest.raises(CheckpointError, match="depend on L") as info:
        retarget_checkpoint(read_checkpoint(path), th8, "d.pt")
    assert "\n" not in str(info.value)
    # another beta is fine for the dense flow too (same L)
    assert retarget_checkpoint(read_checkpoint(path), beta, "d.pt")["trained_for"]["beta"] == 0.5


def test_compare_spec_accepts_a_flow_of_another_beta_with_a_note(tmp_path, capsys) -> None:
    from lattice_samplers.specs import compare_spec

    flow = build_flow(ISING4, GLOBAL64, seed=1)
    path = save_checkpoint(tmp_path / "ck.pt", flow, ISING4, GLOBAL64)
    config = {
        "theory": {"L": 8, "parametrization": "ising", "beta": 0.55, "lam": 0.5},
        "compare": {"samplers": ["flow"]},
    }
    spec = compare_spec(config, flow_checkpoint=path)
    assert spec.flow_record["trained_for"] == {"L": 4, "beta": 0.5, "lam": 0.5}
    assert "was trained for L = 4, beta = 0.5" in capsys.readouterr().err
    config["theory"]["parametrization"] = "albergo"
    config["theory"].update(m2=-4.0, lam=8.0)
    del config["theory"]["beta"]
    with pytest.raises(ConfigError, match="parametrization"):
        compare_spec(config, flow_checkpoint=path)
