"""What every spec shares: the sampler names, the default theory, [theory], classical samplers."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from lattice_samplers.beta_table import resolve_tuned
from lattice_samplers.config import ConfigError, section_to_dataclass
from lattice_samplers.samplers import SAMPLERS, Sampler
from lattice_samplers.samplers.flow_hmc import FlowHMCSampler, FlowHMCSettings, TorchFlowMap
from lattice_samplers.theory import PARAMETRIZATIONS, Phi4Theory

__all__ = [
    "ALL_SAMPLERS",
    "CLASSICAL",
    "COMPARE_DEFAULT_SAMPLERS",
    "DEFAULT_SAMPLER",
    "DEFAULT_THEORY",
    "FLOW_HMC",
    "FLOW_SAMPLER",
    "classical_sampler",
    "flow_hmc_sampler",
    "section_table",
    "is_int",
    "is_real",
    "theory_from_config",
]

#: The built-in default theory point: the paper's L = 8 ensemble (xi ~ L/4).
DEFAULT_THEORY: dict[str, Any] = {"L": 8, "parametrization": "ising", "beta": 0.576, "lam": 0.5}
#: The classical samplers, each configured by the section of its name.
CLASSICAL: tuple[str, ...] = ("metropolis", "hmc", "cluster", "fourier_hmc")
#: The flow sampler's name in configs, tables and JSON: independence Metropolis with a
#: trained flow as the proposal (its settings: ``[flow_sampler]``; the flow: ``[flow]``,
#: ``[train]``).
FLOW_SAMPLER = "flow"
#: HMC on the latent field of a trained flow (settings and ``flow = "DIR"``: ``[flow_hmc]``).
FLOW_HMC = "flow_hmc"
ALL_SAMPLERS: tuple[str, ...] = (*CLASSICAL, FLOW_SAMPLER, FLOW_HMC)
#: What ``compare`` runs when ``[compare] samplers`` is not given (the newer samplers,
#: fourier_hmc and flow_hmc, are asked for by name).
COMPARE_DEFAULT_SAMPLERS: tuple[str, ...] = ("metropolis", "hmc", "cluster", FLOW_SAMPLER)
#: The sampler of ``sample`` when ``[sampler] kind`` is not given.
DEFAULT_SAMPLER = "hmc"


def is_int(v: Any) -> bool:
    """An integer that is not a bool (TOML integers)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    """A finite real number that is not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def section_table(config: Mapping[str, Any], section: str) -> dict[str, Any]:
    """A copy of one config section (empty if absent); one-line error if it is no table."""
    value = config.get(section, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{section}] must be a table, got {value!r}")
    return dict(value)


def theory_from_config(
    config: Mapping[str, Any], complete_from_default: bool = False
) -> Phi4Theory:
    """Build the :class:`Phi4Theory` of a config's ``[theory]`` section.

    Parameters
    ----------
    config : mapping
        The whole config.
    complete_from_default : bool
        Fill keys left out from :data:`DEFAULT_THEORY` (all of them if the section is absent;
        the couplings only when the parametrization is the default's), as ``compare`` does.

    Raises
    ------
    ConfigError
        For missing, unknown or invalid entries, or no tabulated beta for ``"tuned"``.
    """
    if "theory" not in config and not complete_from_default:
        raise ConfigError("the config needs a [theory] section (L, parametrization, couplings)")
    data = section_table(config, "theory")
    if complete_from_default:
        if (
            data.get("parametrization", DEFAULT_THEORY["parametrization"])
            == (DEFAULT_THEORY["parametrization"])
        ):
            data = {**DEFAULT_THEORY, **data}
        data.setdefault("L", DEFAULT_THEORY["L"])
    if "L" not in data:
        raise ConfigError("[theory] needs L (the lattice extent)")
    data = resolve_tuned({"theory": data})["theory"]
    L = data.pop("L")
    parametrization = data.pop("parametrization", "ising")
    if not isinstance(parametrization, str) or parametrization not in PARAMETRIZATIONS:
        known = ", ".join(PARAMETRIZATIONS)
        raise ConfigError(f"[theory] unknown parametrization {parametrization!r} (known: {known})")
    try:
        return Phi4Theory.create(L, parametrization, **data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[theory] {exc}") from None


def classical_sampler(
    theory: Phi4Theory, kind: str, settings: Mapping[str, Any], section: str | None = None
) -> Sampler:
    """Build the classical sampler ``kind`` from its settings section (checked key by key)."""
    section = section or kind
    if kind not in SAMPLERS:
        raise ConfigError(f"[{section}] unknown kind {kind!r} (known: {', '.join(SAMPLERS)})")
    cls = SAMPLERS[kind]
    parsed = section_to_dataclass(cls.settings_class, settings, section)
    try:
        return cls(theory, parsed)
    except ValueError as exc:
        raise ConfigError(f"[{section}] {exc}") from None


def flow_hmc_sampler(
    theory: Phi4Theory, settings: Mapping[str, Any], section: str = "flow_hmc", flow: Any = None
) -> Sampler:
    """Build ``flow_hmc`` from its section; the flow is ``flow`` or loaded from ``flow = DIR``.

    Loads torch.  Raises :class:`ConfigError` for bad settings or an unusable flow.
    """
    parsed = section_to_dataclass(FlowHMCSettings, settings, section)
    if flow is None:
        from lattice_samplers.flows import CheckpointError, load_flow

        if parsed.flow is None:
            raise ConfigError(f'[{section}] flow_hmc needs flow = "DIR" (a trained flow)')
        try:
            flow = load_flow(parsed.flow, theory)
        except (CheckpointError, OSError) as exc:
            raise ConfigError(f"[{section}] flow: {exc}") from None
    try:
        latent_map = TorchFlowMap(flow, theory, ode_steps=parsed.ode_steps)
        return FlowHMCSampler(theory, parsed, latent_map=latent_map)
    except ValueError as exc:
        raise ConfigError(f"[{section}] {exc}") from None
