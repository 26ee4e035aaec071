"""Flow HMC: exactness in the flowed variables, with negative controls that must fail.

Most checks use a cheap NumPy bijection (a test-only :class:`LatentMap`): phi = B g(z) with
g(z) = c z + d tanh(z) site by site and a fixed random invertible mixing matrix B, so the map
is non-trivial (non-linear, non-local) and its log-det is exact:
log|det| = log|det B| + sum log(c + d sech^2 z).  Dropping that term (the first negative
control) samples the wrong distribution; so do a non-reversible integrator and no momentum
refresh.  One short run goes through a real (randomly initialised, float64) coupling flow
with autograd forces.  Oracle: the interacting 2 x 2 lattice by quadrature, 4 sigma of each
run's own Gamma error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import assert_same_run, run_chains

from lattice_samplers import exact
from lattice_samplers.samplers.flow_hmc import FlowHMCSampler, TorchFlowMap
from lattice_samplers.testing import check_mean
from lattice_samplers.theory import Phi4Theory

K_SIGMA = 4.0
TINY = Phi4Theory.create(2, "ising", beta=0.576, lam=0.5)
NAMES = ("abs_magnetization", "two_point_susceptibility", "action_density", "phi2", "ising_energy")


class MixMap:
    """Test-only bijection phi = B g(z), g = c z + d tanh z, with its exact log-det."""

    def __init__(self, theory: Phi4Theory, seed: int = 0, log_det: bool = True) -> None:
        v = theory.volume
        rng = np.random.default_rng(seed)
        self.B = np.eye(v) * 0.8 + 0.3 * rng.standard_normal((v, v)) / np.sqrt(v)
        self.c, self.d = 0.5, 0.6
        self.theory = theory
        self.log_det = log_det
        self.log_det_b = float(np.log(np.abs(np.linalg.det(self.B))))

    def pullback(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, L0, L1 = z.shape
        flat = z.reshape(n, -1)
        sech2 = 1.0 / np.cosh(flat) ** 2
        gp = self.c + self.d * sech2  # g'(z) > 0
        phi = ((self.c * flat + self.d * np.tanh(flat)) @ self.B.T).reshape(n, L0, L1)
        h, c2, c4 = self.theory.hopping
        action = np.atleast_1d(self.theory.action(phi))
        nn = sum(np.roll(phi, s, axis=a) for s in (1, -1) for a in (-2, -1))
        dsdphi = -h * nn + 2 * c2 * phi + 4 * c4 * phi**3
        force = gp * (dsdphi.reshape(n, -1) @ self.B)
        tilde = action.copy()
        if self.log_det:
            tilde -= self.log_det_b + np.log(gp).sum(axis=1)
            # d/dz log g'(z) = d * (-2 sech^2 z tanh z) / g'(z)
            force -= self.d * (-2.0 * sech2 * np.tanh(flat)) / gp
        return phi, tilde, force.reshape(n, L0, L1)


class RowMap(MixMap):
    """Test-only: :class:`MixMap` one field at a time, so a batch equals single passes exactly.

    (A matrix product over a batch may round differently from the same product on one row.)
    """

    def pullback(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = [super(RowMap, self).pullback(z[c : c + 1]) for c in range(z.shape[0])]
        return tuple(np.concatenate(parts) for parts in zip(*rows, strict=True))


class NonReversible(FlowHMCSampler):
    """Test-only: symplectic Euler (kick(eps) drift(eps)), volume preserving, not reversible."""

    def _integrate(self, z, p, force, step_size):  # noqa: ANN001, ANN202
        for _ in range(int(self.settings.n_leapfrog)):
            p -= step_size * force
            z += step_size * p
            phi, tilde, force = self.latent_map.pullback(z)
        return phi, tilde, force


class NoRefresh(FlowHMCSampler):
    """Test-only: momenta drawn once and carried from trajectory to trajectory (batched runs)."""

    carried = None

    def _fresh_momenta(self, states, rngs):  # noqa: ANN001, ANN202
        if self.carried is None or self.carried.shape[0] != len(states):
            self.carried = super()._fresh_momenta(states, rngs)
        return self.carried  # the trajectory updates it in place


class PerChain(FlowHMCSampler):
    """Test-only: the driver's per-chain path (the reference for the batched one)."""

    batched_chains = False


def _run(sampler: FlowHMCSampler, n_steps: int, seed: int, n_chains: int = 4):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return run_chains(sampler, n_steps, n_therm=300, n_chains=n_chains, seed=seed)


@pytest.fixture(scope="module")
def tiny_exact() -> dict[str, float]:
    return exact.tiny_lattice_moments(TINY)


def tiny_checks(result, reference: dict[str, float]) -> dict:  # noqa: ANN001
    return {n: check_mean(result.observables[n], reference[n], K_SIGMA) for n in NAMES}


def test_mix_map_force_matches_finite_differences() -> None:
    m = MixMap(TINY)
    z = np.random.default_rng(1).standard_normal((1, 2, 2))
    _, _, force = m.pullback(z)
    for idx in np.ndindex(2, 2):
        dz = np.zeros_like(z)
        dz[(0, *idx)] = 1e-6
        fd = (m.pullback(z + dz)[1] - m.pullback(z - dz)[1]) / 2e-6
        assert fd[0] == pytest.approx(force[(0, *idx)], abs=1e-6)


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_tiny_lattice_exact(integrator: str, tiny_exact: dict[str, float]) -> None:
    sampler = FlowHMCSampler(TINY, latent_map=MixMap(TINY), integrator=integrator)
    checks = tiny_checks(_run(sampler, 3000, seed=21), tiny_exact)
    failed = {k: c for k, c in checks.items() if not c}
    assert not failed, failed


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlowHMCSampler(TINY, latent_map=MixMap(TINY, log_det=False)),
        lambda: NonReversible(TINY, latent_map=MixMap(TINY), tune=False, step_size=0.5),
        lambda: NoRefresh(TINY, latent_map=MixMap(TINY), tune=False, step_size=0.5),
    ],
    ids=["no_log_det", "nonreversible", "no_refresh"],
)
def test_negative_controls_fail_the_tiny_lattice_check(make, tiny_exact) -> None:  # noqa: ANN001
    checks = tiny_checks(_run(make(), 3000, seed=21), tiny_exact)
    assert not all(checks.values())


def test_reversibility_is_recorded_and_caught() -> None:
    good = run_chains(FlowHMCSampler(TINY, latent_map=MixMap(TINY), reversibility_every=4), 40)
    assert np.count_nonzero(good.stats["reverse_max_dz"]) == 10
    assert good.stats["reverse_max_dz"].max() < 1e-10
    assert good.stats["reverse_abs_dh"].max() < 1e-10
    n_lf = good.settings["n_leapfrog"]
    assert good.work["flow_passes"] == (40 + 10) * n_lf
    bad = run_chains(NonReversible(TINY, latent_map=MixMap(TINY), reversibility_every=4), 40)
    assert bad.stats["reverse_max_dz"].max() > 1e-3


def test_step_equals_run_and_resume_is_bit_identical(tmp_path) -> None:  # noqa: ANN001
    sampler = FlowHMCSampler(TINY, latent_map=MixMap(TINY), integrator="omelyan")
    a = sampler.init(None, np.random.default_rng(0))
    b = a.copy()
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    infos = [sampler.step(a, rng_a)[1] for _ in range(10)]
    chain = sampler.run(b, 10, rng_b)
    np.testing.assert_array_equal(a.phi, b.phi)
    np.testing.assert_array_equal(a.aux["z"], b.aux["z"])
    for name in sampler.stat_names:
        np.testing.assert_array_equal([i.stats[name] for i in infos], chain.stats[name])
    args = {"n_therm": 40, "thin": 2, "n_chains": 2, "seed": 11, "block_size": 10}

    def make() -> FlowHMCSampler:
        return FlowHMCSampler(TINY, latent_map=MixMap(TINY))

    straight = run_chains(make(), 60, **args)
    ckpt = tmp_path / "run.ckpt"
    run_chains(make(), 30, checkpoint_path=ckpt, **args)
    assert_same_run(straight, run_chains(make(), 60, checkpoint_path=ckpt, resume=True, **args))


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_batched_chains_equal_the_per_chain_path_bit_for_bit(integrator: str) -> None:
    args = {"n_therm": 40, "thin": 2, "n_chains": 3, "seed": 4, "block_size": 10}
    settings = {"integrator": integrator, "reversibility_every": 7}
    batched = run_chains(FlowHMCSampler(TINY, latent_map=RowMap(TINY), **settings), 60, **args)
    per_chain = run_chains(PerChain(TINY, latent_map=RowMap(TINY), **settings), 60, **args)
    assert_same_run(batched, per_chain)
    assert np.count_nonzero(batched.stats["reverse_max_dz"]) > 0


def test_torch_flow_batched_pass_matches_single_passes_to_rounding(random_flow) -> None:  # noqa: ANN001
    # torch's matrix products round differently for different batch sizes, so with a real
    # flow the batched path equals the per-chain one only to the last bits (the dynamics are
    # the same; chains then drift apart like any two float orderings)
    m = TorchFlowMap(random_flow, TINY)
    z = np.random.default_rng(2).standard_normal((4, 2, 2))
    batch = m.pullback(z)
    for c in range(4):
        single = m.pullback(z[c : c + 1])
        for a, b in zip(batch, single, strict=True):
            np.testing.assert_allclose(a[c], b[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(batch[2], m.pullback(z)[2])  # same batch: deterministic


# ----------------------------------------------------------------------- a real flow
@pytest.fixture(scope="module")
def random_flow():  # noqa: ANN201
    from lattice_samplers.flows import CouplingFlowSettings, build_flow

    settings = CouplingFlowSettings(n_layers=2, hidden=(8,), dtype="float64", init_scale=0.5)
    return build_flow(TINY, settings, seed=3)


def test_torch_flow_force_matches_finite_differences(random_flow) -> None:  # noqa: ANN001
    m = TorchFlowMap(random_flow, TINY)
    z = np.random.default_rng(0).standard_normal((2, 2, 2))
    phi, tilde, force = m.pullback(z)
    with torch.no_grad():
        ref_phi, log_det = random_flow(torch.tensor(z))
    np.testing.assert_allclose(phi, ref_phi.numpy(), atol=1e-14)
    np.testing.assert_allclose(tilde, TINY.action(phi) - log_det.numpy(), atol=1e-12)
    assert np.std(log_det.numpy()) > 1e-3  # a non-trivial Jacobian
    dz = np.zeros_like(z)
    dz[1, 0, 1] = 1e-6
    fd = (m.pullback(z + dz)[1] - m.pullback(z - dz)[1]) / 2e-6
    assert fd[1] == pytest.approx(force[1, 0, 1], abs=1e-6)


def test_torch_flow_tiny_lattice_exact(random_flow, tiny_exact) -> None:  # noqa: ANN001
    sampler = FlowHMCSampler(TINY, latent_map=TorchFlowMap(random_flow, TINY), step_size=0.5)
    result = _run(sampler, 500, seed=5, n_chains=2)
    assert result.stats["reverse_max_dz"].max() < 1e-10
    checks = tiny_checks(result, tiny_exact)
    failed = {k: c for k, c in checks.items() if not c}
    assert not failed, failed


# ----------------------------------------------------------------------- configs
def test_sample_and_compare_specs_build_flow_hmc(random_flow, tmp_path) -> None:  # noqa: ANN001
    from lattice_samplers.config import ConfigError
    from lattice_samplers.flows import save_checkpoint
    from lattice_samplers.specs import compare_spec, sample_spec

    path = save_checkpoint(tmp_path / "flow.pt", random_flow, TINY)
    theory = {"L": 2, "parametrization": "ising", "beta": 0.576, "lam": 0.5}
    config = {"theory": theory, "sampler": {"kind": "flow_hmc"}}
    spec = sample_spec({**config, "flow_hmc": {"flow": str(path), "step_size": 0.3}})
    assert isinstance(spec.sampler, FlowHMCSampler)
    assert spec.sampler.settings.step_size == 0.3
    with pytest.raises(ConfigError, match="needs flow"):
        sample_spec(config)
    with pytest.raises(ConfigError, match="no flow checkpoint"):
        sample_spec({**config, "flow_hmc": {"flow": str(tmp_path / "none.pt")}})
    with pytest.raises(ConfigError, match="L = 2, not L = 4"):
        sample_spec({**config, "theory": {**theory, "L": 4}, "flow_hmc": {"flow": str(path)}})
    compare = {"theory": theory, "compare": {"samplers": ["hmc", "flow_hmc"]}}
    assert compare_spec(compare, flow_checkpoint=path).flow_record is not None
    with pytest.raises(ConfigError, match="flow sampler's flow"):
        compare_spec({**compare, "flow_hmc": {"flow": str(path)}})
    with pytest.raises(ConfigError, match="neither flow nor flow_hmc"):
        compare_spec({**compare, "compare": {"samplers": ["hmc"]}}, flow_checkpoint=path)


# ----------------------------------------------------------------------- cnf exactness
@pytest.fixture(scope="module")
def cnf_flow():  # noqa: ANN201
    from lattice_samplers.flows import CNFSettings, build_flow

    settings = CNFSettings(
        cnf_frequencies=2,
        cnf_time_basis=2,
        kernel_radius=1,
        ode_steps=2,
        dtype="float64",
        init_scale=1.0,
    )
    return build_flow(Phi4Theory.create(4, "ising", beta=0.576, lam=0.5), settings, seed=1)


def test_cnf_exactness_falls_like_rk4_and_is_none_for_exact_flows(cnf_flow, random_flow) -> None:  # noqa: ANN001
    from lattice_samplers.samplers.flow_hmc import cnf_exactness

    coarse = cnf_exactness(cnf_flow)
    assert coarse["ode_steps"] == 2 and cnf_flow.arch["ode_steps"] == 2  # restored
    assert coarse["sd_e"] > 0 and coarse["safe_ess"] == pytest.approx(coarse["sd_e"] ** -2)
    cnf_flow.set_ode_steps(4)
    try:
        fine = cnf_exactness(cnf_flow)
    finally:
        cnf_flow.set_ode_steps(2)
    assert 8.0 < coarse["sd_e"] / fine["sd_e"] < 32.0  # h^4: 16x per doubling
    assert cnf_exactness(random_flow) is None  # coupling flows are exact


def test_run_beyond_the_safe_count_is_flagged(capsys) -> None:  # noqa: ANN001
    from lattice_samplers.samplers.flow_hmc import exactness_diagnostics

    ex = {"ode_steps": 10, "sd_e": 0.01, "safe_ess": 1e4}
    below = exactness_diagnostics(ex, {"phi2": 9e3, "abs_magnetization": 2e3}, "flow_hmc")
    assert below["exceeds_safe_ess"] is False and "warning" not in capsys.readouterr().err
    above = exactness_diagnostics(ex, {"phi2": 2e4, "abs_magnetization": None}, "flow_hmc")
    assert above["exceeds_safe_ess"] is True and above["max_ess"] == 2e4
    assert "exceeds the cnf flow's safe count" in capsys.readouterr().err
    assert exactness_diagnostics(None, {"phi2": 1e9}, "flow_hmc") == {}


def test_ode_steps_setting_changes_a_copy_of_the_flow(cnf_flow, random_flow) -> None:  # noqa: ANN001
    from lattice_samplers.config import ConfigError
    from lattice_samplers.specs import flow_hmc_sampler

    theory = Phi4Theory.create(4, "ising", beta=0.576, lam=0.5)
    sampler = flow_hmc_sampler(theory, {"ode_steps": 6}, flow=cnf_flow)
    assert sampler.latent_map.flow.arch["ode_steps"] == 6 and cnf_flow.arch["ode_steps"] == 2
    assert sampler.latent_map.exactness["ode_steps"] == 6
    with pytest.raises(ConfigError, match="no ODE steps"):
        flow_hmc_sampler(TINY, {"ode_steps": 6}, flow=random_flow)
    with pytest.raises(ConfigError, match="positive integer"):
        flow_hmc_sampler(theory, {"ode_steps": 0}, flow=cnf_flow)


def test_sample_flow_option(cnf_flow, tmp_path, capsys) -> None:  # noqa: ANN001
    import json

    from lattice_samplers.cli import main
    from lattice_samplers.flows import save_checkpoint

    theory = Phi4Theory.create(4, "ising", beta=0.576, lam=0.5)
    path = save_checkpoint(tmp_path / "cnf.pt", cnf_flow, theory)
    text = (
        '[theory]\nL = 4\nparametrization = "ising"\nbeta = 0.576\nlam = 0.5\n'
        '[sampler]\nkind = "{kind}"\n[run]\nn_steps = 6\nn_therm = 4\nn_chains = 2\n{extra}'
    )
    config = tmp_path / "c.toml"
    config.write_text(text.format(kind="flow_hmc", extra="[flow_hmc]\nstep_size = 0.8\n"))
    code = main(["sample", str(config), "--flow", str(path), "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    diag = json.loads(out)["diagnostics"]
    assert diag["cnf_ode_steps"] == 2 and diag["cnf_safe_ess"] > 0
    config.write_text(text.format(kind="flow_hmc", extra=f'[flow_hmc]\nflow = "{path}"\n'))
    assert main(["sample", str(config), "--flow", str(path)]) == 2
    assert "both by --flow and in the config" in capsys.readouterr().err
    config.write_text(text.format(kind="hmc", extra=""))
    assert main(["sample", str(config), "--flow", str(path)]) == 2
    assert '--flow needs [sampler] kind = "flow_hmc"' in capsys.readouterr().err
