"""Flow models: config validation, the torch action, sampling API, the free-field base layer."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lattice_samplers.config import ConfigError  # noqa: E402
from lattice_samplers.flows import (  # noqa: E402
    CNFSettings,
    CouplingFlowSettings,
    FlowProposal,
    TorchAction,
    build_flow,
)
from lattice_samplers.flows.layers import FreeFieldLayer  # noqa: E402
from lattice_samplers.specs import compare_spec, flow_specs, train_spec  # noqa: E402
from lattice_samplers.theory import Phi4Theory  # noqa: E402

ISING6 = Phi4Theory.create(6, "ising", beta=0.537, lam=0.5)


def _perturb(flow, seed: int = 0, scale: float = 0.2):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen).to(p.dtype))
    return flow


@pytest.mark.parametrize(
    "theory",
    [
        ISING6,
        Phi4Theory.create(4, "albergo", m2=-4.0, lam=6.975),
        Phi4Theory.create(5, "standard", m2=0.3, g=0.0),
        Phi4Theory.create(8, "kappa", kappa=0.27, lam=0.022),
    ],
    ids=lambda t: t.parametrization,
)
def test_torch_action_equals_reference(theory: Phi4Theory) -> None:
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(7, theory.L, theory.L)) * 1.3
    ref = theory.action(phi)
    act = TorchAction(theory)
    got = act(torch.from_numpy(phi))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-13, atol=1e-11)
    np.testing.assert_allclose(act.float64(torch.from_numpy(phi).float()).numpy(), ref, rtol=1e-6)
    assert math.isclose(float(act(torch.from_numpy(phi[0]))), theory.action(phi[0]), rel_tol=1e-13)


def test_coupling_defaults_are_the_papers_family() -> None:
    arch = CouplingFlowSettings().resolve(ISING6)
    assert arch["layers"] == ["affine"] * 8
    assert arch["conditioner"] == "dense" and arch["hidden"] == [72]
    assert arch["activation"] == "tanh" and arch["equivariant"] is True
    assert arch["global_rescaling"] is True and arch["free_field_base"] is False
    flow = build_flow(ISING6, CouplingFlowSettings())
    # 8 layers x (s net: 18*72 + 72 (|.| bias) + 72*18 + 18, t net: 18*72 + 72*18) + log_scale
    assert flow.n_parameters == 8 * (2 * 18 * 72 * 2 + 72 + 18) + 1
    assert flow.equivariant and flow.dtype == torch.float32
    assert CouplingFlowSettings(conditioner="conv").resolve(ISING6)["hidden"] == [8, 8]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(coupling="glow"), "unknown coupling layer kind 'glow'"),
        (dict(layers=("affine", "nice")), "unknown coupling layer kind 'nice'"),
        (dict(conditioner="transformer"), "unknown conditioner"),
        (dict(activation="gelu"), "unknown activation"),
        (dict(activation="relu"), "odd activation"),
        (dict(coupling="spline", equivariant=True), "no Z2-equivariant form"),
        (dict(dtype="float16"), "float32 or float64"),
        (dict(kernel_size=2), "odd positive"),
        (dict(hidden=(0,)), ">= 1"),
        (dict(free_field_m2=-1.0), "> 0"),
        (dict(n_layers=-1), ">= 0"),
    ],
)
def test_bad_flow_config_is_one_line_value_error(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match) as info:
        CouplingFlowSettings(**kwargs)
    assert "\n" not in str(info.value)


def test_flow_config_from_toml_section() -> None:
    section = {"family": "coupling", "coupling": "spline", "hidden": [10, 10], "spline_bins": 6}
    cfg, _ = flow_specs({"flow": section}, ISING6)
    assert isinstance(cfg, CouplingFlowSettings)
    assert cfg.hidden == (10, 10) and not cfg.is_equivariant()
    with pytest.raises(ConfigError, match="unknown key"):
        flow_specs({"flow": {"family": "coupling", "widths": [3]}}, ISING6)
    with pytest.raises(ConfigError, match=r"\[flow\] unknown coupling"):
        flow_specs({"flow": {"family": "coupling", "layers": ["affine", "real_nvp"]}}, ISING6)


def test_one_default_flow_and_one_settings_class_per_family() -> None:
    """No [flow] (or no family) is the cnf flow for every command; a key of the other family
    is refused in one line naming both families."""
    assert isinstance(flow_specs({}, ISING6)[0], CNFSettings)
    assert isinstance(flow_specs({"flow": {"ode_steps": 4}}, ISING6)[0], CNFSettings)
    theory = {"theory": {"L": 6, "parametrization": "ising", "beta": 0.537, "lam": 0.5}}
    assert isinstance(train_spec(theory).flow, CNFSettings)
    assert train_spec(theory).flow == compare_spec(theory).flow_config
    assert build_flow(ISING6).arch["family"] == "cnf"
    with pytest.raises(ConfigError, match="flow.n_layers belongs to the coupling family") as info:
        flow_specs({"flow": {"n_layers": 2}}, ISING6)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="flow.ode_steps belongs to the cnf family"):
        flow_specs({"flow": {"family": "coupling", "ode_steps": 2}}, ISING6)
    with pytest.raises(ConfigError, match="unknown flow family"):
        flow_specs({"flow": {"family": "node"}}, ISING6)


def test_odd_L_is_refused_for_checkerboards_only() -> None:
    odd = Phi4Theory.create(5, "ising", beta=0.5, lam=0.5)
    with pytest.raises(ValueError, match="even lattice extent") as info:
        build_flow(odd, CouplingFlowSettings())
    assert "\n" not in str(info.value)
    free_odd = Phi4Theory.create(5, "standard", m2=0.5, g=0.0)
    flow = build_flow(free_odd, CouplingFlowSettings(n_layers=0, free_field_base=True))
    assert flow.n_parameters == 1


def test_unavailable_device_is_refused() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        build_flow(ISING6, device="cuda")
    with pytest.raises(ValueError, match="device"):
        build_flow(ISING6, device="tpu")


@pytest.mark.parametrize(
    "cfg",
    [
        CouplingFlowSettings(free_field_base=True, n_layers=2, hidden=(16,), dtype="float64"),
        CouplingFlowSettings(
            layers=("spline", "affine"), conditioner="conv", hidden=(4,), dtype="float64"
        ),
    ],
    ids=["ff+affine", "spline+affine conv"],
)
def test_model_log_q_is_exact_density(cfg: CouplingFlowSettings) -> None:
    # log_q of samples equals the change of variables through the inverse, and the model
    # log-det equals the autograd Jacobian of the whole map
    theory = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
    flow = _perturb(build_flow(theory, cfg, seed=3))
    gen = torch.Generator().manual_seed(0)
    phi, log_q = flow.sample_with_log_q(5, gen)
    torch.testing.assert_close(flow.log_q(phi.detach()), log_q.detach(), atol=1e-9, rtol=1e-9)
    z = flow.prior_noise(2, gen)
    _, ld = flow(z)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda v: flow(v.view(1, 4, 4))[0].reshape(-1), z[i].reshape(-1), vectorize=True
        )
        assert math.isclose(
            float(torch.linalg.slogdet(jac)[1]), float(ld[i].detach()), abs_tol=1e-9
        )


def test_equivariant_model_density_is_even() -> None:
    theory = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
    flow = _perturb(build_flow(theory, seed=1), scale=0.05)
    flow = flow.double()
    phi = torch.randn(16, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(flow.log_q(-phi), flow.log_q(phi), atol=1e-10, rtol=1e-10)


def test_sample_api_and_proposal_reproducibility() -> None:
    flow = build_flow(ISING6, CouplingFlowSettings(n_layers=2, hidden=(8,)))
    phi, log_q = flow.sample(10, batch_size=3)
    assert phi.shape == (10, 6, 6) and phi.dtype == np.float64
    assert log_q.shape == (10,) and log_q.dtype == np.float64 and np.isfinite(log_q).all()
    a = FlowProposal(flow, seed=5)
    b = FlowProposal(flow, seed=5)
    pa, qa = a.sample(7)
    pb, qb = b.sample(7)
    assert np.array_equal(pa, pb) and np.array_equal(qa, qb)
    assert not np.array_equal(a.sample(7)[0], pa)  # the stream continues
    r1 = a.sample(4, rng=np.random.default_rng(2))
    r2 = b.sample(4, rng=np.random.default_rng(2))
    assert np.array_equal(r1[0], r2[0])
    # the returned log_q is the density of the returned float64 fields
    flow64 = flow.double()
    p64, q64 = flow64.sample(5, torch.Generator().manual_seed(1))
    back = flow64.log_q(torch.from_numpy(p64)).detach().numpy()
    np.testing.assert_allclose(back, q64, rtol=1e-10)


def _two_point(phi: np.ndarray) -> np.ndarray:
    """Per-configuration translation-averaged <phi_0 phi_x>, shape (n, L, L)."""
    V = phi.shape[-1] * phi.shape[-2]
    f = np.fft.fft2(phi)
    return np.fft.ifft2(np.abs(f) ** 2).real / V


def test_free_field_base_reproduces_exact_two_point_function() -> None:
    exact = pytest.importorskip("lattice_samplers.exact")
    theory = Phi4Theory.create(6, "standard", m2=0.5, g=0.0)
    flow = build_flow(
        theory,
        CouplingFlowSettings(
            n_layers=0, global_rescaling=False, free_field_base=True, dtype="float64"
        ),
    )
    gen = torch.Generator().manual_seed(11)
    phi, log_q = flow.sample(20000, gen)
    g = _two_point(phi)
    mean, err = g.mean(axis=0), g.std(axis=0, ddof=1) / math.sqrt(len(g))
    G = exact.free_two_point(theory)
    assert np.all(np.abs(mean - G) < 5 * err), np.max(np.abs(mean - G) / err)
    # the flow's density is the exact one: log weights are constant (= log Z)
    log_w = -theory.action(phi) - log_q
    assert np.ptp(log_w) < 1e-9
    # negative control: the same check fails against the propagator of a wrong mass
    G_wrong = exact.free_two_point(Phi4Theory.create(6, "standard", m2=0.7, g=0.0))
    assert np.any(np.abs(mean - G_wrong) > 5 * err)


def test_free_field_base_matches_exact_sampler_density() -> None:
    exact = pytest.importorskip("lattice_samplers.exact")
    theory = Phi4Theory.create(4, "albergo", m2=0.8, lam=0.0)
    layer = FreeFieldLayer(4, *theory.hopping[:2]).double()
    sampler = exact.FreeFieldSampler(theory)
    phi, log_q = sampler.sample(50, np.random.default_rng(0))
    # inverse-map the exact sampler's fields: the layer's density must equal the sampler's
    z, ld_inv = layer.inverse(torch.from_numpy(phi))
    log_q_layer = -0.5 * (z**2).sum(dim=(1, 2)) - 8 * math.log(2 * math.pi) + ld_inv
    np.testing.assert_allclose(log_q_layer.numpy(), log_q, rtol=1e-10, atol=1e-9)
