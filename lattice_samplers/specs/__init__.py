"""Typed specs from TOML configs: one schema per command, every default defined once.

A config (a nested dict from :func:`lattice_samplers.config.load_config` plus ``--set``
overrides) becomes a frozen, validated spec here and nowhere else; the workflows take specs,
never raw sections.  Section schemas, shared by every command that has the section:

* ``[theory]``: ``L``, ``parametrization`` (default ``ising``) and its couplings; the ising
  ``beta`` may be ``"tuned"`` (the packaged beta(L) table, :mod:`lattice_samplers.beta_table`).
  ``compare`` completes a partial ``[theory]`` from :data:`DEFAULT_THEORY`.
* ``[run]``: :class:`lattice_samplers.driver.RunSettings` (its defaults are the defaults).
* ``[metropolis]``, ``[hmc]``, ``[cluster]``: each classical sampler's settings, read the same
  way by ``sample`` and ``compare``; ``sample`` picks one with ``[sampler] kind`` (settings
  may also sit in ``[sampler]`` itself, as in earlier versions).
* ``[flow]``, ``[train]``: the flow's architecture and training (torch is loaded only when a
  config has them); ``[flow_sampler]``: the flow sampler's independence Metropolis settings
  (the section was called ``[imh]`` before; that name is refused with a pointer to the new one).
* ``[curriculum]`` (``train`` only, optional): warm-start stages over lattice sizes,
  :class:`CurriculumSpec`.
* ``[compare]``: :class:`CompareSettings`; ``[tune]``: :class:`TuneSettings`;
* ``[analysis]``: ``tau_estimator`` (``arviz``, the default, or ``gamma``): which estimate
  of tau_int drives ``tau_int``, ``err``, ``ess`` and the costs in summaries
  (:class:`lattice_samplers.summary.AnalysisSettings`).

Errors are :class:`~lattice_samplers.config.ConfigError`: one line naming the section, key and
problem.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lattice_samplers.config import ConfigError, check_sections, section_to_dataclass
from lattice_samplers.driver import RunSettings
from lattice_samplers.samplers import SAMPLERS, Sampler
from lattice_samplers.samplers.flow import FlowSamplerSettings
from lattice_samplers.samplers.flow_hmc import FlowHMCSettings
from lattice_samplers.specs.common import (
    ALL_SAMPLERS,
    CLASSICAL,
    COMPARE_DEFAULT_SAMPLERS,
    DEFAULT_SAMPLER,
    DEFAULT_THEORY,
    FLOW_HMC,
    FLOW_SAMPLER,
    classical_sampler,
    flow_hmc_sampler,
    section_table,
    theory_from_config,
)
from lattice_samplers.specs.train import CurriculumSpec, TrainSpec, flow_specs, train_spec
from lattice_samplers.specs.tune import TuneSettings, tune_settings
from lattice_samplers.summary import AnalysisSettings
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "ALL_SAMPLERS",
    "CLASSICAL",
    "COMPARE_DEFAULT_SAMPLERS",
    "COMPARE_DEFAULT_TRAIN",
    "DEFAULT_SAMPLER",
    "DEFAULT_THEORY",
    "FLOW_HMC",
    "FLOW_SAMPLER",
    "CompareSettings",
    "CompareSpec",
    "CurriculumSpec",
    "SampleSpec",
    "TrainSpec",
    "TuneSettings",
    "classical_sampler",
    "compare_spec",
    "flow_hmc_sampler",
    "flow_specs",
    "sample_spec",
    "theory_from_config",
    "train_spec",
    "tune_settings",
]


# ----------------------------------------------------------------------------- sample
@dataclass(frozen=True)
class SampleSpec:
    """A validated ``sample`` run: the theory, the sampler (with its settings), the run."""

    theory: Phi4Theory
    sampler: Sampler
    run: RunSettings
    config: dict[str, Any]
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)


def sample_spec(config: Mapping[str, Any]) -> SampleSpec:
    """Validate a ``sample`` config (``theory``, ``sampler``, ``run``, samplers' sections).

    ``[sampler] kind`` picks the sampler (default :data:`DEFAULT_SAMPLER`); its settings come
    from the section named after it (``[hmc]``, as in ``compare``) and may also be given in
    ``[sampler]`` itself; a key given in both is an error.
    """
    check_sections(config, ("theory", "sampler", "run", "analysis", *CLASSICAL, FLOW_HMC))
    theory = theory_from_config(config)
    inline = section_table(config, "sampler")
    kind = inline.pop("kind", DEFAULT_SAMPLER)
    if kind not in (*CLASSICAL, FLOW_HMC):
        known = ", ".join((*CLASSICAL, FLOW_HMC))
        raise ConfigError(f"[sampler] unknown kind {kind!r} (known: {known})")
    own = section_table(config, kind)
    both = sorted(set(inline) & set(own))
    if both:
        raise ConfigError(f"{', '.join(both)} given in both [sampler] and [{kind}]: keep one")
    build = flow_hmc_sampler if kind == FLOW_HMC else partial(classical_sampler, kind=kind)
    sampler = build(theory, settings={**own, **inline}, section="sampler" if inline else kind)
    run = section_to_dataclass(RunSettings, config.get("run"), "run")
    analysis = section_to_dataclass(AnalysisSettings, config.get("analysis"), "analysis")
    return SampleSpec(theory, sampler, run, dict(config), analysis)


# ----------------------------------------------------------------------------- compare
@dataclass(frozen=True)
class CompareSettings:
    """The ``[compare]`` section.

    Attributes
    ----------
    samplers : tuple of str
        Which samplers to run (``flow`` = independence Metropolis with a trained flow;
        ``flow_hmc`` = HMC on its latent field, with the same flow and training seconds).
    k_sigma : float
        Consistency threshold in combined standard errors.
    flow_checkpoint : str, optional
        A trained flow (checkpoint file or training folder) to use instead of training one;
        ``--flow`` on the command line overrides it.  Its training seconds are still counted.
    flow_ode_steps : int, optional
        RK4 steps with which a ``cnf`` flow is sampled (default: as trained).  More steps make
        its reported log-density closer to the exact one (error ~ steps^-4) at proportional
        sampling cost; refused for a flow without an ODE.
    """

    samplers: tuple[str, ...] = COMPARE_DEFAULT_SAMPLERS
    k_sigma: float = 4.0
    flow_checkpoint: str | None = None
    flow_ode_steps: int | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.samplers if s not in ALL_SAMPLERS]
        if unknown or not self.samplers:
            raise ValueError(
                f"samplers must be a non-empty subset of {', '.join(ALL_SAMPLERS)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        if len(set(self.samplers)) != len(self.samplers):
            raise ValueError("samplers lists a sampler twice")
        if not self.k_sigma > 0:
            raise ValueError(f"k_sigma must be positive, got {self.k_sigma}")
        n = self.flow_ode_steps
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"flow_ode_steps must be a positive integer, got {n!r}")


@dataclass
class CompareSpec:
    """A validated comparison: everything needed to run it, nothing run yet."""

    config: dict[str, Any]
    theory: Phi4Theory
    run: RunSettings
    compare: CompareSettings
    samplers: dict[str, Sampler]  # the classical ones; the flow sampler is built later
    flow_config: Any = None
    train_config: Any = None
    flow_sampler: FlowSamplerSettings = field(default_factory=FlowSamplerSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    flow_checkpoint: Path | None = None
    flow_record: dict[str, Any] | None = None  # the checkpoint's contents, read and checked once
    flow_device: str = "cpu"  # where the flow is trained or loaded
    flow_hmc: dict[str, Any] = field(default_factory=dict)  # the [flow_hmc] section


#: Training settings of the flow ``compare`` trains when the config has no ``[flow]``
#: section (the default flow of every command, the cnf family, which at L = 8 reached
#: held-out acceptance 0.85 after 45 s of training against 0.40 after 118 s for the paper's
#: dense coupling family with its defaults, measured side by side in data/scaling/flows_v2).
#: They fill keys ``[train]`` leaves out; a fixed step count (no time budget) keeps one seed
#: reproducing the run.
COMPARE_DEFAULT_TRAIN: dict[str, Any] = {
    "n_steps": 200,
    "batch_size": 256,
    "lr": 5e-3,
    "eval_every": 25,
    "eval_batch_size": 1024,
}

#: Sections a ``compare`` config may have.
COMPARE_SECTIONS = (
    "theory",
    "run",
    "compare",
    "analysis",
    *CLASSICAL,
    "flow",
    "train",
    "flow_sampler",
    FLOW_HMC,
)


def compare_spec(
    config: Mapping[str, Any], flow_checkpoint: str | Path | None = None
) -> CompareSpec:
    """Validate a ``compare`` config without running anything.

    A partial ``[theory]`` is completed from the default point; ``flow_checkpoint`` overrides
    ``[compare]``'s and is read here, once.
    """
    if "imh" in config:
        raise ConfigError(
            "[imh] is now [flow_sampler] (the flow sampler's settings); rename the section"
        )
    check_sections(config, COMPARE_SECTIONS)
    theory = theory_from_config(config, complete_from_default=True)
    run = section_to_dataclass(RunSettings, config.get("run"), "run")
    compare = section_to_dataclass(CompareSettings, config.get("compare"), "compare")
    samplers = {}
    for name in CLASSICAL:
        settings = section_table(config, name)
        if name in compare.samplers:
            samplers[name] = classical_sampler(theory, name, settings)
        else:  # still checked: a typo in a section that is not run is still a typo
            section_to_dataclass(SAMPLERS[name].settings_class, settings, name)
    # what ran, recorded with the results: the completed theory and the run's every setting
    effective = {**dict(config), "theory": theory.to_dict(), "run": dataclasses.asdict(run)}
    effective["theory"].pop("hopping_form", None)
    spec = CompareSpec(effective, theory, run, compare, samplers)
    spec.flow_sampler = section_to_dataclass(
        FlowSamplerSettings, config.get("flow_sampler"), "flow_sampler"
    )
    spec.analysis = section_to_dataclass(AnalysisSettings, config.get("analysis"), "analysis")
    spec.flow_hmc = section_table(config, FLOW_HMC)
    if spec.flow_hmc.get("flow") is not None:
        raise ConfigError("[flow_hmc] flow: compare gives flow_hmc the flow sampler's flow")
    section_to_dataclass(FlowHMCSettings, spec.flow_hmc, FLOW_HMC)  # checked before any run
    uses_flow = FLOW_SAMPLER in compare.samplers or FLOW_HMC in compare.samplers
    checkpoint = flow_checkpoint if flow_checkpoint is not None else compare.flow_checkpoint
    if checkpoint is not None:
        if not uses_flow:
            raise ConfigError("--flow given but [compare] samplers has neither flow nor flow_hmc")
        spec.flow_checkpoint = Path(checkpoint)
        spec.flow_record, spec.flow_device = _checkpoint_flow(config, theory, Path(checkpoint))
    elif uses_flow or "flow" in config or "train" in config:
        flow_config = dict(config)
        if "flow" not in config:
            flow_config["train"] = {**COMPARE_DEFAULT_TRAIN, **section_table(config, "train")}
        spec.flow_config, spec.train_config = flow_specs(flow_config, theory, default_seed=run.seed)
        spec.flow_device = spec.train_config.device
    return spec


def _checkpoint_flow(
    config: Mapping[str, Any], theory: Phi4Theory, path: Path
) -> tuple[dict[str, Any], str]:
    """Read the checkpoint ``compare --flow`` uses, once; return its contents and the device.

    The checkpoint must be for ``theory``'s parametrization; a flow trained at another beta or
    L of it is accepted (the flow samplers stay exact for any proposal), carried to this L if
    its weights transfer, with a note on stderr and ``trained_for`` in the returned record
    (see :func:`lattice_samplers.flows.train.warmstart.retarget_checkpoint`).  A ``[flow]``
    section describes a flow to train: with a checkpoint it must describe the checkpoint's own
    flow (same family and architecture), else the comparison would record a flow that did not
    run.  ``[train]`` then only gives the device.
    """
    from lattice_samplers.flows.checkpoint import check_compatible, read_checkpoint
    from lattice_samplers.flows.train.warmstart import retarget_checkpoint

    device = "cpu"
    flow = None
    if "flow" in config or "train" in config:
        flow, train = flow_specs(config, theory)
        device = train.device
    try:
        record = retarget_checkpoint(read_checkpoint(path), theory, str(path))
        if "flow" in config:
            check_compatible(record, None, flow.resolve(theory), where=str(path))
    except ValueError as exc:
        hint = "; drop [flow] (it configures a flow to train)" if "flow" in config else ""
        raise ConfigError(f"{exc}{hint}") from None
    if "trained_for" in record:
        made = ", ".join(f"{k} = {v:g}" for k, v in record["trained_for"].items())
        here = ", ".join(f"{k} = {v:g}" for k, v in {"L": theory.L, **theory.couplings}.items())
        print(
            f"note: {path} was trained for {made}; used as the proposal at {here} "
            "(the flow samplers stay exact, the acceptance may be lower)",
            file=sys.stderr,
        )
    return record, device
