"""The equivariant continuous flow: exact log-density, RK4 order, symmetries, plumbing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from helpers import run_chains

torch = pytest.importorskip("torch")

from lattice_samplers.config import ConfigError  # noqa: E402
from lattice_samplers.flows import (  # noqa: E402
    CNFSettings,
    CouplingFlowSettings,
    FlowProposal,
    TrainSettings,
    build_flow,
    load_flow,
    save_checkpoint,
)
from lattice_samplers.flows.cnf import (  # noqa: E402
    EquivariantCNFLayer,
    displacement_orbits,
    orbit_stencils,
    transferable,
)
from lattice_samplers.samplers.flow import FlowSampler, FlowSamplerSettings  # noqa: E402
from lattice_samplers.specs import flow_specs  # noqa: E402
from lattice_samplers.theory import Phi4Theory  # noqa: E402
from lattice_samplers.workflows.train.session import train_flow  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


L = 4
DTYPE = torch.float64
ISING4 = Phi4Theory.create(L, "ising", beta=0.5, lam=0.5)
CNF64 = CNFSettings(cnf_frequencies=3, cnf_time_basis=3, kernel_radius=2, dtype="float64")


def _layer(seed: int = 0, scale: float = 0.5, ode_steps: int = 16, L: int = L, R: int = 2):
    """A float64 layer with generic (clearly non-identity) weights."""
    torch.manual_seed(seed)
    layer = EquivariantCNFLayer(
        L, frequencies=3, n_time_basis=3, kernel_radius=R, ode_steps=ode_steps
    )
    layer = layer.to(DTYPE)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        layer.weight.copy_(scale * torch.randn(layer.weight.shape, generator=gen, dtype=DTYPE) / 5)
        layer.omega.add_(0.3 * torch.randn(layer.omega.shape, generator=gen, dtype=DTYPE))
    return layer


def _fields(n: int, seed: int = 0, L: int = L) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.2 * torch.randn((n, L, L), generator=gen, dtype=DTYPE)


def _jacobian(f, x: torch.Tensor) -> torch.Tensor:
    """The V x V Jacobian of a batched map of fields at one field ``x`` (L, L), by autograd.

    V copies of ``x`` go through the map in one batch; the copies are independent, so one
    backward pass of sum_k y[k, k] gives row k of the Jacobian in copy k.
    """
    V = x.numel()
    xs = x.reshape(1, -1).repeat(V, 1).requires_grad_(True)
    y = f(xs.view(V, *x.shape))[0].reshape(V, V)
    (grad,) = torch.autograd.grad(y.diagonal().sum(), xs)
    return grad


def _d4(phi: torch.Tensor) -> list[torch.Tensor]:
    """The 8 images of fields under the point group D4 (about site 0, periodic lattice)."""

    # site x -> -x is a roll of the flipped array by one; every element fixes site (0, 0)
    def neg(a, dim):
        return torch.roll(torch.flip(a, dims=(dim,)), 1, dims=dim)

    def rot(a):  # (x, y) -> (-y, x)
        return neg(a.transpose(-2, -1), -2)

    out, a = [], phi
    for _ in range(4):
        out += [a, a.transpose(-2, -1)]
        a = rot(a)
    return out


# ---------------------------------------------------------------------- orbits and kernels
def test_orbits_and_stencils() -> None:
    assert displacement_orbits(2) == [(0, 0), (0, 1), (1, 1), (0, 2), (1, 2), (2, 2)]
    st = orbit_stencils(9, 2)
    # sizes of the orbits {(+-a, +-b), (+-b, +-a)} on a lattice large enough not to alias
    assert st.sum(dim=(1, 2)).tolist() == [1, 4, 4, 4, 8, 4]
    # every stencil is D4-invariant, and on a small lattice the images add up
    for s in orbit_stencils(4, 3):
        for g in _d4(s):
            assert torch.equal(g, s)
    assert orbit_stencils(4, 2)[3, 2, 0] == 2  # (2, 0) and (-2, 0) are one site at L = 4


# ---------------------------------------------------------------------- exact log-density
def test_log_q_equals_autograd_jacobian_of_the_full_flow() -> None:
    # base density minus log|det J| of the whole map (free-field base, CNF, rescaling): the
    # integrated exact divergence agrees with the brute-force 16 x 16 Jacobian to O(h^4)
    flow = build_flow(ISING4, CNF64, seed=2)
    with torch.no_grad():
        flow.layers[1].weight.copy_(_layer(3).weight)
        flow.layers[2].log_scale.fill_(0.1)
    gen = torch.Generator().manual_seed(0)
    z = flow.prior_noise(3, gen)
    errors = {}
    for steps in (12, 24):
        flow.layers[1].ode_steps = steps
        phi, log_q = flow.sample_with_log_q(3, torch.Generator().manual_seed(0))
        _, ld = flow(z)
        for i in range(3):
            sign, logabs = torch.linalg.slogdet(_jacobian(flow, z[i]))
            assert sign != 0
            err = abs(float(logabs) - float(ld[i].detach()))
            errors[steps] = max(errors.get(steps, 0.0), err)
        torch.testing.assert_close(log_q, flow.log_prior(z) - ld)
    assert errors[24] < 3e-4, errors
    assert errors[24] < errors[12] / 2**3.5, errors  # the difference is the O(h^4) RK4 error
    # the change of variables through the inverse gives the same density
    back = flow.log_q(phi.detach())
    torch.testing.assert_close(back, log_q.detach(), atol=1e-3, rtol=0)


def test_layer_log_det_is_the_integrated_trace_and_not_a_fluke() -> None:
    layer = _layer(4)
    x = _fields(2, seed=1)
    _, ld = layer(x)
    logabs = float(torch.linalg.slogdet(_jacobian(layer, x[0]))[1])
    assert abs(logabs - float(ld[0].detach())) < 1e-5
    assert abs(logabs) > 0.1  # a map that really changes volume
    # negative control: a log-det that ignores the divergence is detected
    center = layer.center
    layer.center = torch.zeros_like(center)
    _, ld_wrong = layer(x)
    layer.center = center
    assert abs(logabs - float(ld_wrong[0].detach())) > 1e-2


# ---------------------------------------------------------------------- RK4 order
def test_round_trip_error_shrinks_like_h4() -> None:
    x = _fields(8, seed=2)
    err = {}
    for steps in (6, 12):
        layer = _layer(5, ode_steps=steps)
        with torch.no_grad():
            y, ld = layer(x)
            x2, ld_inv = layer.inverse(y)
        assert (y - x).abs().max() > 0.1  # a nontrivial map
        err[steps] = float((x2 - x).abs().max())
    ratio = err[6] / err[12]
    assert 2**3.5 < ratio < 2**6.5, (err, ratio)
    assert err[12] < 1e-3
    # with more steps the round trip closes to a tight tolerance
    layer = _layer(5, ode_steps=40)
    with torch.no_grad():
        y, ld = layer(x)
        x2, ld_inv = layer.inverse(y)
    torch.testing.assert_close(x2, x, atol=2e-6, rtol=0)
    torch.testing.assert_close(ld_inv, -ld, atol=2e-7, rtol=0)


# ---------------------------------------------------------------------- symmetries
def _equivariance_error(layer: EquivariantCNFLayer, x: torch.Tensor) -> float:
    """Largest violation of T(g x) = g T(x), ld(g x) = ld(x) over translations, D4 and Z2."""
    with torch.no_grad():
        y, ld = layer(x)
        worst = 0.0

        def check(gx, gy):
            nonlocal worst
            yy, ll = layer(gx)
            worst = max(worst, float((yy - gy).abs().max()), float((ll - ld).abs().max()))

        for a in range(L):
            for b in range(L):
                check(torch.roll(x, (a, b), dims=(-2, -1)), torch.roll(y, (a, b), dims=(-2, -1)))
        for gx, gy in zip(_d4(x), _d4(y)):
            check(gx, gy)
        check(-x, -y)
    return worst


def test_equivariance_translations_d4_and_z2() -> None:
    layer = _layer(6)
    x = _fields(4, seed=3)
    assert _equivariance_error(layer, x) < 1e-12
    # q(-phi) = q(phi) for the whole flow
    flow = build_flow(ISING4, CNF64, seed=1)
    phi = _fields(4, seed=4)
    torch.testing.assert_close(flow.log_q(-phi), flow.log_q(phi), atol=1e-12, rtol=0)
    assert flow.equivariant


def test_equivariance_check_fails_for_a_kernel_that_breaks_d4() -> None:
    # negative control: put the nearest-neighbour orbit's weight on the x direction only
    layer = _layer(6)
    stencils = orbit_stencils(L, 2)
    stencils[1, 0, 1] = stencils[1, 0, L - 1] = 0.0  # drop (0, +-1), keep (+-1, 0)
    layer.spectra = torch.fft.rfft2(stencils).real.reshape(stencils.shape[0], -1)
    x = _fields(4, seed=3)
    assert _equivariance_error(layer, x) > 1e-3
    # and the check is not fooled by translations alone: those still hold
    with torch.no_grad():
        y, _ = layer(x)
        y2, _ = layer(torch.roll(x, (1, 2), dims=(-2, -1)))
    torch.testing.assert_close(y2, torch.roll(y, (1, 2), dims=(-2, -1)), atol=1e-12, rtol=0)


def test_zero_parameters_give_the_identity() -> None:
    layer = _layer(7)
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
    x = _fields(4)
    y, ld = layer(x)
    assert torch.equal(y, x) and torch.equal(ld, torch.zeros_like(ld))
    x2, ld2 = layer.inverse(x)
    assert torch.equal(x2, x) and torch.equal(ld2, torch.zeros_like(ld2))
    # zero kernel weights alone suffice (the frequencies then have no effect)
    layer = _layer(7)
    with torch.no_grad():
        layer.weight.zero_()
    assert torch.equal(layer(x)[0], x)


def test_every_parameter_gets_a_gradient() -> None:
    flow = build_flow(ISING4, CNF64, seed=3)
    names = {n for n, _ in flow.named_parameters()}
    assert names == {"layers.1.weight", "layers.1.omega", "layers.2.log_scale"}
    phi, log_q = flow.sample_with_log_q(16, torch.Generator().manual_seed(1))
    (log_q + phi.pow(4).sum(dim=(1, 2))).mean().backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().min() > 0, name  # every single weight, frequency and the scale


def test_float32_matches_float64() -> None:
    flow64 = build_flow(ISING4, CNF64, seed=5)
    flow32 = build_flow(ISING4, dataclasses.replace(CNF64, dtype="float32"), seed=5)
    z = flow64.prior_noise(8, torch.Generator().manual_seed(2))
    a, la = flow64(z)
    b, lb = flow32(z.float())
    assert b.dtype == torch.float32
    torch.testing.assert_close(b.double(), a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lb.double(), la, atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------------- config and plumbing
def test_config_resolves_and_validates() -> None:
    arch = CNFSettings().resolve(ISING4)
    assert arch["family"] == "cnf" and arch["layers"] == []
    assert (arch["cnf_frequencies"], arch["cnf_time_basis"]) == (4, 4)
    assert (arch["kernel_radius"], arch["ode_steps"]) == (3, 10)
    assert arch["free_field_base"] is True and arch["global_rescaling"] is True
    # coupling flows resolve exactly as before (old checkpoints stay compatible)
    assert "family" not in CouplingFlowSettings().resolve(ISING4)
    assert CouplingFlowSettings().resolve(ISING4)["free_field_base"] is False
    # odd L is fine: no checkerboard
    odd = Phi4Theory.create(5, "ising", beta=0.5, lam=0.5)
    assert build_flow(odd, CNFSettings(ode_steps=2)).L == 5
    cfg, _ = flow_specs({"flow": {"family": "cnf", "kernel_radius": 1}}, ISING4)
    assert isinstance(cfg, CNFSettings) and cfg.kernel_radius == 1
    for kw, match in [
        (dict(ode_steps=0), "ode_steps"),
        (dict(kernel_radius=-1), "kernel_radius"),
        (dict(cnf_time_basis=0), "cnf_time_basis"),
    ]:
        with pytest.raises(ValueError, match=match) as info:
            CNFSettings(**kw)
        assert "\n" not in str(info.value)
    for section, match in [
        ({"family": "node"}, "unknown flow family"),
        ({"family": "cnf", "layers": ["affine"]}, "flow.layers belongs to the coupling family"),
        ({"family": "cnf", "equivariant": False}, "flow.equivariant belongs to the coupling"),
    ]:
        with pytest.raises(ConfigError, match=match):
            flow_specs({"flow": section}, ISING4)


def test_parameters_do_not_depend_on_L() -> None:
    cfg = CNFSettings(ode_steps=4)
    th8 = Phi4Theory.create(8, "ising", beta=0.576, lam=0.5)
    a4, a8 = cfg.resolve(ISING4), cfg.resolve(th8)
    assert transferable(a4) == transferable(a8) is not None
    assert (
        transferable(CouplingFlowSettings().resolve(ISING4)) is None
    )  # dense couplings: L-dependent
    f4, f8 = build_flow(ISING4, cfg, seed=1), build_flow(th8, cfg, seed=2)
    f8.load_state_dict(f4.state_dict())  # strict: same keys and shapes
    assert f8.n_parameters == f4.n_parameters
    # a kernel beyond L/2 wraps around on the small lattice but is the same stencil
    assert all(torch.equal(p, q) for p, q in zip(f4.parameters(), f8.parameters()))


def test_checkpoint_round_trip(tmp_path) -> None:
    flow = build_flow(ISING4, CNF64, seed=1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05)
    path = save_checkpoint(tmp_path / "ck.pt", flow, ISING4, CNF64)
    loaded = load_flow(path, ISING4, flow_config=CNF64)
    assert loaded.arch == flow.arch
    z = flow.prior_noise(5, torch.Generator().manual_seed(3))
    a, la = flow(z)
    b, lb = loaded(z)
    assert torch.equal(a, b) and torch.equal(la, lb)
    with pytest.raises(ValueError, match="architecture"):
        load_flow(
            path,
            ISING4,
            flow_config=dataclasses.replace(CNF64, kernel_radius=1),
        )


def test_proposal_and_independence_metropolis() -> None:
    free = Phi4Theory.create(L, "ising", beta=0.3, lam=0.0)
    flow = build_flow(free, CNFSettings(ode_steps=4, kernel_radius=1), seed=0)
    sampler = FlowSampler(
        free, FlowSamplerSettings(batch_size=512), proposal=FlowProposal(flow, seed=1)
    )
    result = run_chains(sampler, 1000, n_therm=10, seed=2, progress=False)
    # the free-field base is exact for a free theory, the CNF starts near the identity
    assert 0.8 < result.acceptance <= 1.0
    assert np.isfinite(result.stats["log_weight"]).all()


def test_trainer_runs_unchanged() -> None:
    cfg = CNFSettings(ode_steps=4, kernel_radius=1, cnf_frequencies=2)
    tcfg = TrainSettings(n_steps=6, batch_size=32, eval_every=3, eval_batch_size=64, num_threads=1)
    flow, result = train_flow(ISING4, cfg, tcfg, progress=False)
    assert result.n_steps == 6 and math.isfinite(result.final_acceptance)
    assert np.isfinite(result.history["loss"]).all()


def test_warm_start_across_L_and_beta_keeps_every_weight() -> None:
    """The cnf family's parameters do not depend on L; the exact free-field base is rebuilt
    for the new theory (another beta changes its quadratic part), not copied."""
    from lattice_samplers.flows.train import init_from_flow

    small = build_flow(ISING4, CNF64, seed=3)
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.01 * torch.randn_like(p))
    big_theory = Phi4Theory.create(6, "ising", beta=0.55, lam=0.5)
    big = init_from_flow(build_flow(big_theory, CNF64, seed=4), small)
    for (name, a), b in zip(small.named_parameters(), big.parameters()):
        assert torch.equal(a, b), name
    assert big.arch["free_field_c2"] != small.arch["free_field_c2"] or big.L != small.L


def test_sampling_ode_steps_can_be_raised_after_training() -> None:
    flow = build_flow(ISING4, CNF64, seed=2).requires_grad_(False)
    with torch.no_grad():
        flow.layers[1].weight.copy_(_layer(3).weight)
    phi10, lq10 = flow.sample_with_log_q(4, torch.Generator().manual_seed(0))
    flow.set_ode_steps(40)
    assert flow.layers[1].ode_steps == 40 and flow.arch["ode_steps"] == 40
    phi40, lq40 = flow.sample_with_log_q(4, torch.Generator().manual_seed(0))
    flow.set_ode_steps(160)
    phi160, lq160 = flow.sample_with_log_q(4, torch.Generator().manual_seed(0))
    # the same map, integrated more accurately: the error against 160 steps falls ~ steps^-4
    err10, err40 = (float((p - phi160).abs().max()) for p in (phi10, phi40))
    assert 1e-4 < err10 < 0.1 and err40 < err10 / 100, (err10, err40)
    lq_err10, lq_err40 = (float((q - lq160).abs().max()) for q in (lq10, lq40))
    assert lq_err40 < lq_err10 / 100, (lq_err10, lq_err40)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            flow.set_ode_steps(bad)
    dense = build_flow(ISING4, CouplingFlowSettings(dtype="float64"), seed=0)
    with pytest.raises(ValueError, match="no ODE steps"):
        dense.set_ode_steps(20)
