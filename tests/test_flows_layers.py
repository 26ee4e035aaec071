"""Flow layers: bijectivity, exact log-dets, gradients, state round trips, Z2 equivariance."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")

from lattice_samplers.flows.layers import (  # noqa: E402
    AdditiveCoupling,
    AffineCoupling,
    FlowLayer,
    FreeFieldLayer,
    GlobalRescaling,
    SplineCoupling,
    checkerboard_indices,
    rq_spline,
)

L = 4
DTYPE = torch.float64


def _perturb(layer: FlowLayer, seed: int, scale: float = 0.3) -> FlowLayer:
    """Move every parameter away from its near-identity init (a generic, nontrivial map)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer


def _make(cls, **kw) -> Callable[[int], FlowLayer]:
    def factory(seed: int) -> FlowLayer:
        torch.manual_seed(seed)
        layer = cls(**kw).to(DTYPE)
        return _perturb(layer, seed + 1000)

    return factory


DENSE = dict(L=L, conditioner="dense", hidden=(16,))
CONV = dict(L=L, conditioner="conv", hidden=(4, 4))

#: every layer kind the flows offer, as factories of float64 layers with generic parameters
REGISTRY: dict[str, Callable[[int], FlowLayer]] = {
    "affine_dense": _make(AffineCoupling, parity=0, **DENSE),
    "affine_conv": _make(AffineCoupling, parity=1, **CONV),
    "affine_dense_z2": _make(AffineCoupling, parity=1, equivariant=True, **DENSE),
    "affine_conv_z2": _make(AffineCoupling, parity=0, equivariant=True, **CONV),
    "affine_dense_relu": _make(AffineCoupling, parity=0, activation="relu", **DENSE),
    "additive_dense": _make(AdditiveCoupling, parity=0, **DENSE),
    "additive_conv_z2": _make(AdditiveCoupling, parity=1, equivariant=True, **CONV),
    "spline_dense": _make(SplineCoupling, parity=0, bins=5, bound=2.0, **DENSE),
    "spline_conv": _make(SplineCoupling, parity=1, bins=4, bound=1.5, **CONV),
    "rescaling": _make(GlobalRescaling, L=L, init_scale=1.3),
    "free_field": _make(FreeFieldLayer, L=L, h=0.5, c2=1.3),
}
EQUIVARIANT = [k for k in REGISTRY if REGISTRY[k](0).equivariant]


def _fields(n: int, seed: int = 0, scale: float = 1.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn((n, L, L), generator=gen, dtype=DTYPE)


def test_registry_claims() -> None:
    # the claims are part of the contract: equivariant where constructed so, not elsewhere
    assert set(EQUIVARIANT) == {
        "affine_dense_z2",
        "affine_conv_z2",
        "additive_conv_z2",
        "rescaling",
        "free_field",
    }


@pytest.mark.parametrize("name", REGISTRY)
def test_inverse_round_trip(name: str) -> None:
    layer = REGISTRY[name](1)
    x = _fields(64)
    y, ld = layer(x)
    x2, ld_inv = layer.inverse(y)
    assert y.shape == x.shape and ld.shape == (64,)
    assert not torch.allclose(y, x)  # a nontrivial map
    torch.testing.assert_close(x2, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", REGISTRY)
def test_log_det_equals_autograd_jacobian(name: str) -> None:
    layer = REGISTRY[name](2)
    x = _fields(3, seed=5)
    _, ld = layer(x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(
            lambda v: layer(v.view(1, L, L))[0].reshape(-1), x[i].reshape(-1), vectorize=True
        )
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        assert math.isclose(float(logabs), float(ld[i].detach()), rel_tol=1e-9, abs_tol=1e-9)
        # and the inverse's log-det is that of the inverse Jacobian
        y = layer(x[i : i + 1])[0]
        jac_inv = torch.autograd.functional.jacobian(
            lambda v: layer.inverse(v.view(1, L, L))[0].reshape(-1), y.reshape(-1), vectorize=True
        )
        ld_inv = layer.inverse(y)[1]
        assert math.isclose(
            float(torch.linalg.slogdet(jac_inv)[1]), float(ld_inv[0].detach()), abs_tol=1e-9
        )


@pytest.mark.parametrize("name", REGISTRY)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    layer = REGISTRY[name](3)
    params = dict(layer.named_parameters())
    if name == "free_field":
        assert not params  # exact and parameter-free by design
        return
    y, ld = layer(_fields(32, seed=7))
    (y.pow(2).sum() + ld.sum()).backward()
    for pname, p in params.items():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", REGISTRY)
def test_state_dict_round_trip(name: str, tmp_path) -> None:
    a = REGISTRY[name](4)
    b = REGISTRY[name](99)  # other weights
    path = tmp_path / "layer.pt"
    torch.save(a.state_dict(), path)
    b.load_state_dict(torch.load(path, weights_only=True))
    x = _fields(16, seed=3)
    ya, lda = a(x)
    yb, ldb = b(x)
    assert torch.equal(ya, yb) and torch.equal(lda, ldb)


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_equivariance_where_claimed(name: str) -> None:
    layer = REGISTRY[name](6)
    x = _fields(32, seed=8)
    y, ld = layer(x)
    y_neg, ld_neg = layer(-x)
    torch.testing.assert_close(y_neg, -y, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld_neg, ld, atol=1e-12, rtol=0)
    y0, _ = layer(torch.zeros_like(x))
    assert torch.equal(y0, torch.zeros_like(y0)) or y0.abs().max() < 1e-14


@pytest.mark.parametrize("name", ["affine_dense", "affine_conv", "spline_dense", "additive_dense"])
def test_equivariance_check_fails_on_non_equivariant_layers(name: str) -> None:
    # negative control: the same check must catch a layer with biases / generic s
    layer = REGISTRY[name](6)
    x = _fields(32, seed=8)
    y, _ = layer(x)
    y_neg, _ = layer(-x)
    assert (y_neg + y).abs().max() > 1e-3


@pytest.mark.parametrize("name", [k for k in REGISTRY if k not in ("rescaling", "free_field")])
def test_no_batch_statistics(name: str) -> None:
    # each sample's map depends on that sample alone
    layer = REGISTRY[name](7)
    x = _fields(8, seed=9)
    y, ld = layer(x)
    for i in (0, 5):
        yi, ldi = layer(x[i : i + 1])
        torch.testing.assert_close(yi[0], y[i], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(ldi[0], ld[i], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", [k for k in REGISTRY if "dense" in k or "conv" in k])
def test_coupling_leaves_passive_sites_unchanged(name: str) -> None:
    layer = REGISTRY[name](8)
    active, passive = checkerboard_indices(L, layer.parity)
    x = _fields(8)
    y, _ = layer(x)
    assert torch.equal(y.reshape(8, -1)[:, passive], x.reshape(8, -1)[:, passive])
    assert not torch.equal(y.reshape(8, -1)[:, active], x.reshape(8, -1)[:, active])


@pytest.mark.parametrize(
    "cls", [AffineCoupling, AdditiveCoupling, SplineCoupling], ids=lambda c: c.__name__
)
@pytest.mark.parametrize("bad_L", [3, 5])
def test_odd_L_with_checkerboard_is_refused(cls, bad_L: int) -> None:
    with pytest.raises(ValueError, match="even lattice extent") as info:
        cls(L=bad_L, parity=0, hidden=(4,))
    assert "\n" not in str(info.value)


def test_free_field_layer_accepts_odd_L_and_rejects_unbounded_action() -> None:
    layer = FreeFieldLayer(5, h=0.4, c2=1.0)
    x = torch.randn(4, 5, 5, dtype=DTYPE)
    y, _ = layer.double()(x)
    torch.testing.assert_close(layer.inverse(y)[0], x)
    with pytest.raises(ValueError, match="positive-definite"):
        FreeFieldLayer(4, h=0.5, c2=1.0)


def test_spline_cannot_be_equivariant() -> None:
    with pytest.raises(ValueError, match="no Z2-equivariant form"):
        SplineCoupling(L=4, parity=0, hidden=(4,), equivariant=True)


def test_rq_spline_shape_properties() -> None:
    gen = torch.Generator().manual_seed(0)
    K, B = 6, 2.0
    n = 2000
    raw_w, raw_h = (torch.randn(n, K, generator=gen, dtype=DTYPE) for _ in range(2))
    raw_d = torch.randn(n, K - 1, generator=gen, dtype=DTYPE)
    x = torch.linspace(-3, 3, n, dtype=DTYPE)
    y, ld = rq_spline(x, raw_w, raw_h, raw_d, B)
    outside = x.abs() >= B
    assert torch.equal(y[outside], x[outside]) and torch.all(ld[outside] == 0)
    # one fixed spline on a fine grid: monotone, continuous, maps [-B, B] onto itself,
    # unit slope at both ends (so the identity continues it C^1)
    same = [t[:1].expand(n, -1) for t in (raw_w, raw_h, raw_d)]
    ys, lds = rq_spline(x, *same, B)
    assert torch.all(torch.diff(ys) > 0)
    ends = torch.tensor([-B + 1e-9, B - 1e-9], dtype=DTYPE)
    ye, lde = rq_spline(ends, *[t[:2] for t in same], B)
    torch.testing.assert_close(ye, ends, atol=1e-8, rtol=0)
    torch.testing.assert_close(lde, torch.zeros(2, dtype=DTYPE), atol=1e-6, rtol=0)
    # zero raw parameters give the identity
    zeros = [torch.zeros_like(t) for t in (raw_w, raw_h, raw_d)]
    y0, ld0 = rq_spline(x, *zeros, B)
    torch.testing.assert_close(y0, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld0, torch.zeros_like(x), atol=1e-12, rtol=0)
    # inverse
    xr, ldr = rq_spline(y, raw_w, raw_h, raw_d, B, inverse=True)
    torch.testing.assert_close(xr, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ldr, -ld, atol=1e-9, rtol=0)
