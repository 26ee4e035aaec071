"""Negative controls: deliberately wrong samplers, built from the production kernels.

A statistical check that cannot fail proves nothing, so every check of the tests is also run
on a broken variant that it must reject.  The variants live here, not in the kernels: each is
a subclass of a production sampler whose compiled kernel is swapped for a *broken twin*,
the same kernel source recompiled with one global name (the accept test, the bond test, the
integrator's step schedule, ...) bound to a wrong function (:func:`recompile`).  Production
kernels, samplers and checkpoints carry no test switch.

:data:`BROKEN` maps (sampler kind, variant name) to the broken class:

* ``("metropolis", "reversed_accept")``, ``("hmc", "reversed_accept")``,
  ``("cluster", "reversed_accept")``: accept if log(u) > -delta_h;
* ``("hmc", "no_refresh")``: momenta drawn once at init and never refreshed;
* ``("hmc", "nonreversible")``: symplectic Euler kick(eps) drift(eps), volume preserving but
  not time reversible;
* ``("cluster", "bond_always")``: every same-sign bond joins the cluster (p = 1);
* ``("flow", "ignore_log_q")``: log weights -S instead of -S - log q (an independence
  sampler that forgets its proposal density).

The twins compile on first use (not cached); the production kernels keep their cache.
"""

from __future__ import annotations

import itertools
import types
from typing import Any

import numpy as np
from numba import njit

from lattice_samplers.kernels import cluster as kcl
from lattice_samplers.kernels import metropolis as kmet
from lattice_samplers.kernels.hmc import block as khmc_block
from lattice_samplers.kernels.hmc import integrators as khmc_int
from lattice_samplers.samplers.base import Sampler, State
from lattice_samplers.samplers.cluster import ClusterSampler
from lattice_samplers.samplers.flow import FlowSampler
from lattice_samplers.samplers.hmc import HMCSampler
from lattice_samplers.samplers.metropolis import MetropolisSampler

__all__ = [
    "BROKEN",
    "BondAlwaysCluster",
    "IgnoreLogQFlowSampler",
    "NoRefreshHMC",
    "NonReversibleHMC",
    "ReversedAcceptCluster",
    "ReversedAcceptHMC",
    "ReversedAcceptMetropolis",
    "broken_sampler",
    "recompile",
]


_TWIN_IDS = itertools.count()


def recompile(kernel: Any, **replace: Any) -> Any:
    """A compiled twin of the numba function ``kernel`` with some global names rebound.

    The twin runs the very source of ``kernel``; only the names in ``replace`` (functions it
    calls) resolve to the given objects.  Compiled with the kernel's own options (fastmath,
    inline, nogil), without on-disk caching.  Each twin gets a name and module of its own:
    numba names compiled symbols after them, and a twin sharing the kernel's names could be
    linked in place of the kernel (seen: a cached cluster block running the reversed sweep).
    """
    py = kernel.py_func
    missing = [name for name in replace if name not in py.__code__.co_names]
    if missing:
        raise ValueError(f"{py.__name__} does not use {', '.join(missing)}")
    name = f"{py.__name__}_broken_twin_{next(_TWIN_IDS)}"
    scope = {**py.__globals__, **replace, "__name__": __name__}
    twin = types.FunctionType(py.__code__, scope, name, py.__defaults__, py.__closure__)
    twin.__qualname__ = name
    options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}  # njit implies it
    return njit(**options)(twin)


# ---------------------------------------------------------------------- broken parts
@njit(inline="always")
def reversed_accept_test(delta_h: float, e: float) -> bool:
    """The accept test with its sign reversed: accept if log(u) > -delta_h."""
    return (delta_h - e > 0.0) & (abs(delta_h) < np.inf)


@njit(inline="always")
def bond_always(e: float, two_h_abs_phi: float, v: float) -> bool:
    """Every same-sign bond joins the cluster, whatever |phi_x phi_y|."""
    return True


@njit(inline="always")
def euler_schedule(
    integrator: int, n_leapfrog: int, eps: float, lam: float
) -> tuple[int, float, float, float]:
    """Symplectic Euler, [kick(eps) drift(eps)] per step: not time reversible."""
    return n_leapfrog, eps, 0.0, eps


def _metropolis_reversed() -> dict[str, Any]:
    sweep_into = recompile(
        kmet.sweep_into,
        _update_site=recompile(kmet._update_site, accept_test=reversed_accept_test),
        _update_half=recompile(kmet._update_half, accept_test=reversed_accept_test),
    )
    return {
        "metropolis_block": recompile(kmet.metropolis_block, sweep_into=sweep_into),
        "cluster_block": recompile(kcl.cluster_block, sweep_into=sweep_into),
    }


_CACHE: dict[str, Any] = {}


def _twin(name: str) -> Any:
    """The broken twin kernel ``name``, compiled once per process."""
    if name not in _CACHE:
        if name in ("metropolis_reversed", "cluster_reversed"):
            twins = _metropolis_reversed()
            _CACHE["metropolis_reversed"] = twins["metropolis_block"]
            _CACHE["cluster_reversed"] = twins["cluster_block"]
        elif name == "cluster_bond_always":
            wolff = recompile(kcl.wolff_update, bond_active=bond_always)
            _CACHE[name] = recompile(kcl.cluster_block, wolff_update=wolff)
        elif name == "hmc_reversed":
            _CACHE[name] = recompile(khmc_block.hmc_block, accept_test=reversed_accept_test)
        elif name == "hmc_no_refresh":
            _CACHE[name] = recompile(khmc_block.hmc_block, trajectory=_trajectory_no_refresh)
        elif name in ("hmc_euler_block", "hmc_euler_integrate"):
            trajectory = recompile(khmc_int.trajectory, step_schedule=euler_schedule)
            _CACHE["hmc_euler_block"] = recompile(khmc_block.hmc_block, trajectory=trajectory)
            _CACHE["hmc_euler_integrate"] = recompile(khmc_int.integrate, trajectory=trajectory)
        else:
            raise KeyError(name)
    return _CACHE[name]


@njit
def _trajectory_no_refresh(
    src: np.ndarray,
    dst: np.ndarray,
    tmp: np.ndarray,
    mom: np.ndarray,
    force: np.ndarray,
    force_out: np.ndarray,
    sums: np.ndarray,
    refresh: bool,
    key: np.uint64,
    step_size: float,
    n_leapfrog: int,
    integrator: int,
    lam: float,
    h: float,
    c2: float,
    c4: float,
    L0: int,
    L1: int,
) -> tuple[float, float]:
    """A trajectory that keeps the momenta it is given (the refresh is skipped)."""
    return khmc_int.trajectory(
        src, dst, tmp, mom, force, force_out, sums, False, key, step_size, n_leapfrog,
        integrator, lam, h, c2, c4, L0, L1,
    )  # fmt: skip


class _Lazy:
    """A class attribute that compiles its broken twin when first called."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, cls: type | None = None) -> Any:
        return _twin(self.name)


# ---------------------------------------------------------------------- broken samplers
class ReversedAcceptMetropolis(MetropolisSampler):
    """Metropolis that accepts if log(u) > -delta_S (negative control)."""

    block_kernel = _Lazy("metropolis_reversed")


class ReversedAcceptCluster(ClusterSampler):
    """Cluster sampler whose Metropolis sweeps use the reversed accept test."""

    block_kernel = _Lazy("cluster_reversed")


class BondAlwaysCluster(ClusterSampler):
    """Cluster sampler that activates every same-sign bond (violates detailed balance)."""

    block_kernel = _Lazy("cluster_bond_always")


class ReversedAcceptHMC(HMCSampler):
    """HMC that accepts if log(u) > -delta_h."""

    block_kernel = _Lazy("hmc_reversed")


class NoRefreshHMC(HMCSampler):
    """HMC whose momenta are drawn once at init and never refreshed."""

    block_kernel = _Lazy("hmc_no_refresh")

    def init(self, phi0: np.ndarray | None = None, rng: np.random.Generator | None = None) -> State:
        """The usual state with one-time N(0, 1) momenta drawn from ``rng``."""
        if rng is None:
            raise ValueError("the no_refresh control needs an rng to draw its momenta")
        state = super().init(phi0, rng)
        state.aux["momentum"][...] = rng.standard_normal(state.phi.shape)
        return state


class NonReversibleHMC(HMCSampler):
    """HMC on the symplectic Euler integrator (volume preserving, not reversible)."""

    block_kernel = _Lazy("hmc_euler_block")
    integrate_kernel = _Lazy("hmc_euler_integrate")


class IgnoreLogQFlowSampler(FlowSampler):
    """Independence Metropolis with log weights -S: the proposal density is forgotten."""

    def log_weight(self, action: np.ndarray, log_q: np.ndarray) -> np.ndarray:
        """-S alone (wrong on purpose)."""
        return -action


#: (sampler kind, variant) -> broken sampler class.
BROKEN: dict[tuple[str, str], type[Sampler]] = {
    ("metropolis", "reversed_accept"): ReversedAcceptMetropolis,
    ("cluster", "reversed_accept"): ReversedAcceptCluster,
    ("cluster", "bond_always"): BondAlwaysCluster,
    ("hmc", "reversed_accept"): ReversedAcceptHMC,
    ("hmc", "no_refresh"): NoRefreshHMC,
    ("hmc", "nonreversible"): NonReversibleHMC,
    ("flow", "ignore_log_q"): IgnoreLogQFlowSampler,
}


def broken_sampler(kind: str, variant: str) -> type[Sampler]:
    """The broken class of ``variant`` for sampler ``kind`` (KeyError naming the known ones)."""
    try:
        return BROKEN[(kind, variant)]
    except KeyError:
        known = ", ".join(f"{k}/{v}" for k, v in BROKEN)
        raise KeyError(f"no broken variant {kind}/{variant} (known: {known})") from None
