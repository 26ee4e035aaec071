"""Samplers behind one interface (:class:`Sampler`): Metropolis, HMC, cluster, Fourier HMC.

``SAMPLERS`` maps a config ``kind`` to its class; :func:`make_sampler` builds one from a kind
and a settings mapping (the ``[sampler]`` section without ``kind``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lattice_samplers.samplers.base import (
    OBSERVABLE_NAMES,
    Chain,
    Sampler,
    State,
    StepInfo,
    add_work,
)
from lattice_samplers.samplers.cluster import ClusterSampler, ClusterSettings
from lattice_samplers.samplers.flow_hmc import FlowHMCSampler, FlowHMCSettings
from lattice_samplers.samplers.fourier_hmc import FourierHMCSampler, FourierHMCSettings
from lattice_samplers.samplers.hmc import HMCSampler, HMCSettings
from lattice_samplers.samplers.metropolis import MetropolisSampler, MetropolisSettings
from lattice_samplers.theory import Phi4Theory

#: kind -> sampler class.  Samplers that need more than settings (a flow: independence
#: Metropolis, flow_hmc) are built by the workflows instead.
SAMPLERS: dict[str, type[Sampler]] = {
    "metropolis": MetropolisSampler,
    "hmc": HMCSampler,
    "cluster": ClusterSampler,
    "fourier_hmc": FourierHMCSampler,
}


def make_sampler(
    kind: str, theory: Phi4Theory, settings: Mapping[str, Any] | None = None
) -> Sampler:
    """Build the sampler ``kind`` for ``theory`` with settings from a plain mapping.

    Raises
    ------
    ValueError
        For an unknown kind or invalid settings (unknown keys raise TypeError-derived
        ValueError too).
    """
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler kind {kind!r} (known: {', '.join(SAMPLERS)})")
    cls = SAMPLERS[kind]
    try:
        return cls(theory, cls.settings_class(**dict(settings or {})))
    except TypeError as exc:
        raise ValueError(f"{kind} settings: {exc}") from None


__all__ = [
    "OBSERVABLE_NAMES",
    "SAMPLERS",
    "Chain",
    "ClusterSampler",
    "ClusterSettings",
    "FlowHMCSampler",
    "FlowHMCSettings",
    "FourierHMCSampler",
    "FourierHMCSettings",
    "HMCSampler",
    "HMCSettings",
    "MetropolisSampler",
    "MetropolisSettings",
    "Sampler",
    "State",
    "StepInfo",
    "add_work",
    "make_sampler",
]
