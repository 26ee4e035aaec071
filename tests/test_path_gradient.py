"""Path-gradient reverse KL: same mean as the standard estimator, no variance at the optimum."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lattice_samplers.flows import (  # noqa: E402
    CNFSettings,
    CouplingFlowSettings,
    TorchAction,
    TrainSettings,
    build_flow,
    path_gradient_loss,
)
from lattice_samplers.theory import Phi4Theory  # noqa: E402
from lattice_samplers.workflows.train.session import train_flow  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: a Gaussian target; with the exact free-field base, zero coupling/kernel weights and unit
#: rescaling the flow *is* the target (q = p), so both families contain the optimum
FREE4 = Phi4Theory.create(4, "standard", m2=1.0, g=0.0)
FAMILIES = {
    "coupling": CouplingFlowSettings(
        n_layers=2, hidden=(6,), free_field_base=True, dtype="float64"
    ),
    "cnf": CNFSettings(
        cnf_frequencies=2,
        cnf_time_basis=2,
        kernel_radius=1,
        ode_steps=6,
        dtype="float64",
    ),
}


def _flow(family: str, optimal: bool):
    flow = build_flow(FREE4, FAMILIES[family], seed=1)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in flow.named_parameters():
            if name.endswith("omega"):
                continue  # frequencies are free at the optimum (their features have weight 0)
            p.copy_(0.0 if optimal else 0.15 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return flow


def _grad(flow, loss) -> np.ndarray:
    params = [p for p in flow.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return np.concatenate(
        [np.zeros(p.numel()) if g is None else g.reshape(-1).numpy() for p, g in zip(params, grads)]
    )


def _estimators(flow, z: torch.Tensor) -> dict[str, np.ndarray]:
    """Gradients of the standard, path and a broken (G dropped) estimator on one batch."""
    action = TorchAction(FREE4)
    phi, log_det = flow(z)
    standard = _grad(flow, (flow.log_prior(z) - log_det + action(phi)).mean())
    out = path_gradient_loss(flow, action, z=z)
    path = _grad(flow, out.loss)
    # the value returned for logging is the usual KL estimate of the same batch
    torch.testing.assert_close(
        out.kl_estimate(), (flow.log_prior(z) - log_det + action(phi)).mean()
    )
    phi, _ = flow(z)
    broken = _grad(flow, action(phi).mean())  # negative control: no grad log q term
    return {"standard": standard, "path": path, "broken": broken}


def _group_gradients(flow, n_groups: int, size: int, seed: int) -> dict[str, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    rows = [_estimators(flow, flow.prior_noise(size, gen)) for _ in range(n_groups)]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _max_t(diff: np.ndarray) -> float:
    """Largest |mean| / standard error over the components that vary."""
    mean = diff.mean(axis=0)
    se = diff.std(axis=0, ddof=1) / np.sqrt(diff.shape[0])
    ok = se > 1e-12 * (np.abs(diff).max() + 1e-300)
    return float(np.max(np.abs(mean[ok]) / se[ok]))


@pytest.mark.parametrize("family", FAMILIES)
def test_path_gradient_is_unbiased_away_from_the_optimum(family: str) -> None:
    flow = _flow(family, optimal=False)
    g = _group_gradients(flow, n_groups=24, size=32, seed=3)
    # paired difference standard - path = the score term, whose expectation is zero
    assert _max_t(g["standard"] - g["path"]) < 5.0  # max over ~100-200 components
    # a real signal: the gradient is far from zero here
    assert _max_t(g["path"]) > 10
    # negative control: an estimator without the grad log q term fails the same check
    assert _max_t(g["standard"] - g["broken"]) > 10


@pytest.mark.parametrize("family", FAMILIES)
def test_path_gradient_has_no_variance_at_the_optimum(family: str) -> None:
    flow = _flow(family, optimal=True)
    gen = torch.Generator().manual_seed(4)
    per_sample = [_estimators(flow, flow.prior_noise(1, gen)) for _ in range(12)]
    var = {k: np.stack([p[k] for p in per_sample]).var(axis=0).sum() for k in ("standard", "path")}
    # the standard estimator keeps the score term's noise (the negative control) ...
    assert var["standard"] > 1e-2
    # ... the path estimator has none: every sample's gradient vanishes when q = p
    assert var["path"] < 1e-10 * var["standard"], var


def test_trainer_path_option() -> None:
    theory = Phi4Theory.create(4, "ising", beta=0.5, lam=0.5)
    cfg = CouplingFlowSettings(n_layers=2, hidden=(8,))
    base = dict(n_steps=4, batch_size=32, eval_every=2, eval_batch_size=64, num_threads=1)
    _, std = train_flow(theory, cfg, TrainSettings(**base), progress=False)
    flow, path = train_flow(theory, cfg, TrainSettings(gradient="path", **base), progress=False)
    # the logged loss is the KL estimate: the same first batch and weights give the same value
    assert path.history["loss"][0] == pytest.approx(std.history["loss"][0], rel=1e-6)
    assert not np.array_equal(path.history["loss"], std.history["loss"])  # other updates
    assert np.isfinite(path.history["loss"]).all() and np.isfinite(path.final_acceptance)
    with pytest.raises(ValueError, match="unknown gradient") as info:
        TrainSettings(gradient="score")
    assert "\n" not in str(info.value)
