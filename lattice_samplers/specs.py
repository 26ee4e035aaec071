"""Typed specs from TOML configs: one schema per command, every default defined once.

A config (a nested dict from :func:`lattice_samplers.config.load_config` plus ``--set``
overrides) becomes a frozen, validated spec here and nowhere else; the workflows take specs,
never raw sections.  Section schemas, shared by every command that has the section:

* ``[theory]``: ``L``, ``parametrization`` (default ``ising``) and its couplings; the ising
  ``beta`` may be ``"tuned"`` (the packaged beta(L) table, :mod:`lattice_samplers.tuned`).
  ``compare`` completes a partial ``[theory]`` from :data:`DEFAULT_THEORY`.
* ``[run]``: :class:`lattice_samplers.driver.RunSettings` (its defaults are the defaults).
* ``[metropolis]``, ``[hmc]``, ``[cluster]``: each classical sampler's settings, read the same
  way by ``sample`` and ``compare``; ``sample`` picks one with ``[sampler] kind`` (settings
  may also sit in ``[sampler]`` itself, as in earlier versions).
* ``[flow]``, ``[train]``: the flow's architecture and training (torch is loaded only when a
  config has them); ``[imh]``: the flow sampler's independence Metropolis settings.
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
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lattice_samplers.config import ConfigError, check_sections, section_to_dataclass
from lattice_samplers.driver import RunSettings
from lattice_samplers.samplers import SAMPLERS, Sampler
from lattice_samplers.samplers.flow_hmc import FlowHMCSampler, FlowHMCSettings, TorchFlowMap
from lattice_samplers.samplers.imh import IMHSettings
from lattice_samplers.scaling import DEFAULT_TARGETS
from lattice_samplers.summary import AnalysisSettings
from lattice_samplers.theory import PARAMETRIZATIONS, Phi4Theory
from lattice_samplers.tuned import resolve_tuned

__all__ = [
    "ALL_SAMPLERS",
    "COMPARE_DEFAULT_SAMPLERS",
    "CLASSICAL",
    "COMPARE_DEFAULT_FLOW",
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

#: The built-in default theory point: the paper's L = 8 ensemble (xi ~ L/4).
DEFAULT_THEORY: dict[str, Any] = {"L": 8, "parametrization": "ising", "beta": 0.576, "lam": 0.5}
#: The classical samplers, each configured by the section of its name.
CLASSICAL: tuple[str, ...] = ("metropolis", "hmc", "cluster", "fourier_hmc")
#: The flow sampler's name in configs, tables and JSON: independence Metropolis with a
#: trained flow as the proposal (its settings: ``[imh]``; the flow: ``[flow]``, ``[train]``).
FLOW_SAMPLER = "flow"
#: HMC on the latent field of a trained flow (settings and ``flow = "DIR"``: ``[flow_hmc]``).
FLOW_HMC = "flow_hmc"
ALL_SAMPLERS: tuple[str, ...] = (*CLASSICAL, FLOW_SAMPLER, FLOW_HMC)
#: What ``compare`` runs when ``[compare] samplers`` is not given (the newer samplers,
#: fourier_hmc and flow_hmc, are asked for by name).
COMPARE_DEFAULT_SAMPLERS: tuple[str, ...] = ("metropolis", "hmc", "cluster", FLOW_SAMPLER)
#: The sampler of ``sample`` when ``[sampler] kind`` is not given.
DEFAULT_SAMPLER = "hmc"


def _table(config: Mapping[str, Any], section: str) -> dict[str, Any]:
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
    data = _table(config, "theory")
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
        return FlowHMCSampler(theory, parsed, latent_map=TorchFlowMap(flow, theory))
    except ValueError as exc:
        raise ConfigError(f"[{section}] {exc}") from None


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
    inline = _table(config, "sampler")
    kind = inline.pop("kind", DEFAULT_SAMPLER)
    if kind not in (*CLASSICAL, FLOW_HMC):
        known = ", ".join((*CLASSICAL, FLOW_HMC))
        raise ConfigError(f"[sampler] unknown kind {kind!r} (known: {known})")
    own = _table(config, kind)
    both = sorted(set(inline) & set(own))
    if both:
        raise ConfigError(f"{', '.join(both)} given in both [sampler] and [{kind}]: keep one")
    build = flow_hmc_sampler if kind == FLOW_HMC else partial(classical_sampler, kind=kind)
    sampler = build(theory, settings={**own, **inline}, section="sampler" if inline else kind)
    run = section_to_dataclass(RunSettings, config.get("run"), "run")
    analysis = section_to_dataclass(AnalysisSettings, config.get("analysis"), "analysis")
    return SampleSpec(theory, sampler, run, dict(config), analysis)


# ----------------------------------------------------------------------------- flows
def flow_specs(
    config: Mapping[str, Any], theory: Phi4Theory, default_seed: int | None = None
) -> tuple[Any, Any]:
    """The ``[flow]`` and ``[train]`` sections as (FlowSettings, TrainSettings) for a theory.

    Loads torch.  ``default_seed`` is the training seed when ``[train]`` has none
    (``compare`` uses its ``[run]`` seed).
    """
    from lattice_samplers.flows import FlowSettings, TrainSettings
    from lattice_samplers.flows.model import check_device

    flow = section_to_dataclass(FlowSettings, config.get("flow"), "flow")
    train_section = _table(config, "train")
    if default_seed is not None:
        train_section.setdefault("seed", default_seed)
    train = section_to_dataclass(TrainSettings, train_section, "train")
    try:
        flow.resolve(theory)
    except ValueError as exc:
        raise ConfigError(f"[flow] {exc}") from None
    try:
        check_device(train.device)
    except ValueError as exc:
        raise ConfigError(f"[train] {exc}") from None
    return flow, train


@dataclass(frozen=True)
class CurriculumSpec:
    """The ``[curriculum]`` section of ``train``: stages over lattice sizes, warm-started.

    Every stage trains the same ``[flow]`` on ``[theory]`` at the stage's L (a ``"tuned"``
    beta is looked up for each stage's L), starting from the previous stage's weights; the
    last stage is ``[theory]`` itself.

    Attributes
    ----------
    L : tuple of int
        The stages' lattice extents, increasing; the last one is ``[theory] L``.
    theories : tuple of Phi4Theory
        The stages' targets (the last is the spec's theory).
    train : tuple of TrainSettings
        Each stage's training settings: ``[train]`` with the per-stage lists of
        ``[curriculum]`` (any ``[train]`` key, e.g. ``n_steps``, ``time_budget_s``, ``lr``,
        ``target_acceptance``: one value per stage), when given, put in.
    """

    L: tuple[int, ...]
    theories: tuple[Phi4Theory, ...]
    train: tuple[Any, ...]


def _curriculum_spec(
    config: Mapping[str, Any], theory: Phi4Theory, flow: Any, train: Any
) -> CurriculumSpec | None:
    """Validate ``[curriculum]`` (None when the config has none)."""
    if "curriculum" not in config:
        return None
    section = _table(config, "curriculum")
    Ls = section.pop("L", None)
    train_keys = {f.name for f in dataclasses.fields(train)}
    unknown = sorted(k for k in section if k not in train_keys)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [curriculum]: {', '.join(unknown)} (besides L, its keys are "
            "[train] keys with one value per stage)"
        )
    per_stage = section
    if not (
        isinstance(Ls, list | tuple)
        and Ls
        and all(_is_int(v) and v >= 2 for v in Ls)
        and all(a < b for a, b in zip(Ls, Ls[1:]))
    ):
        raise ConfigError("[curriculum] L must be a non-empty increasing list of integers >= 2")
    if Ls[-1] != theory.L:
        raise ConfigError(
            f"[curriculum] L must end with the final stage, [theory] L = {theory.L}, got {list(Ls)}"
        )
    for key, values in per_stage.items():
        if not (isinstance(values, list | tuple) and len(values) == len(Ls)):
            raise ConfigError(f"[curriculum] {key} must be a list with one value per stage")
    base = _table(config, "theory")
    theories = []
    for L in Ls[:-1]:
        stage_theory = theory_from_config({"theory": {**base, "L": L}})
        try:
            flow.resolve(stage_theory)
        except ValueError as exc:
            raise ConfigError(f"[curriculum] stage L = {L}: {exc}") from None
        theories.append(stage_theory)
    theories.append(theory)
    trains = []
    for i in range(len(Ls)):
        changes = {k: v[i] for k, v in per_stage.items()}
        try:
            trains.append(dataclasses.replace(train, **changes))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"[curriculum] stage {i} (L = {Ls[i]}): {exc}") from None
    return CurriculumSpec(tuple(int(v) for v in Ls), tuple(theories), tuple(trains))


@dataclass(frozen=True)
class TrainSpec:
    """A validated training: theory, architecture, training settings, study targets.

    ``curriculum`` (None without a ``[curriculum]`` section) holds the warm-start stages that
    end with ``theory``.
    """

    theory: Phi4Theory
    flow: Any
    train: Any
    targets: tuple[float, ...] = DEFAULT_TARGETS
    config: dict[str, Any] = field(default_factory=dict)
    curriculum: CurriculumSpec | None = None


def train_spec(config: Mapping[str, Any], study: bool = False) -> TrainSpec:
    """Validate a ``train`` config (theory, flow, train; ``study`` adds ``[study] targets``).

    The optional ``[curriculum]`` section (``L``: the stages' lattice extents, ending with
    ``[theory] L``; optional per-stage lists of ``[train]`` keys, such as ``n_steps`` or
    ``time_budget_s``) is validated into :attr:`TrainSpec.curriculum`.
    """
    check_sections(
        config, ("theory", "flow", "train", "curriculum", *(("study",) if study else ()))
    )
    theory = theory_from_config(config)
    flow, train = flow_specs(config, theory)
    curriculum = _curriculum_spec(config, theory, flow, train)
    section = _table(config, "study")
    targets = section.pop("targets", DEFAULT_TARGETS)
    if section:
        raise ConfigError(f"unknown key(s) in [study]: {', '.join(sorted(section))}")
    if not (
        isinstance(targets, list | tuple)
        and targets
        and all(isinstance(t, int | float) and not isinstance(t, bool) for t in targets)
        and all(0 < t < 1 for t in targets)
    ):
        raise ConfigError("[study] targets must be a non-empty list of numbers in (0, 1)")
    return TrainSpec(
        theory, flow, train, tuple(float(t) for t in targets), dict(config), curriculum
    )


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
    imh: IMHSettings = field(default_factory=IMHSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    flow_checkpoint: Path | None = None
    flow_record: dict[str, Any] | None = None  # the checkpoint's contents, read once
    flow_hmc: dict[str, Any] = field(default_factory=dict)  # the [flow_hmc] section


#: The flow ``compare`` trains when the config has no ``[flow]`` section: the equivariant
#: continuous flow, which at L = 8 reached held-out acceptance 0.85 after 45 s of training
#: against 0.40 after 118 s for the paper's dense family with its defaults (measured side by
#: side; data/scaling/flows_v2 and README).  Its training defaults fill keys ``[train]``
#: leaves out; a fixed step count (no time budget) keeps one seed reproducing the run.
COMPARE_DEFAULT_FLOW: dict[str, Any] = {"family": "cnf"}
COMPARE_DEFAULT_TRAIN: dict[str, Any] = {
    "n_steps": 200,
    "batch_size": 256,
    "lr": 5e-3,
    "eval_every": 25,
    "eval_batch_size": 1024,
}

#: Sections a ``compare`` config may have.
COMPARE_SECTIONS = (
    *("theory", "run", "compare", "analysis", *CLASSICAL, "flow", "train", "imh", FLOW_HMC),
)


def compare_spec(
    config: Mapping[str, Any], flow_checkpoint: str | Path | None = None
) -> CompareSpec:
    """Validate a ``compare`` config without running anything.

    A partial ``[theory]`` is completed from the default point; ``flow_checkpoint`` overrides
    ``[compare]``'s and is read here, once.
    """
    check_sections(config, COMPARE_SECTIONS)
    theory = theory_from_config(config, complete_from_default=True)
    run = section_to_dataclass(RunSettings, config.get("run"), "run")
    compare = section_to_dataclass(CompareSettings, config.get("compare"), "compare")
    samplers = {}
    for name in CLASSICAL:
        settings = _table(config, name)
        if name in compare.samplers:
            samplers[name] = classical_sampler(theory, name, settings)
        else:  # still checked: a typo in a section that is not run is still a typo
            section_to_dataclass(SAMPLERS[name].settings_class, settings, name)
    # what ran, recorded with the results: the completed theory and the run's every setting
    effective = {**dict(config), "theory": theory.to_dict(), "run": dataclasses.asdict(run)}
    effective["theory"].pop("hopping_form", None)
    spec = CompareSpec(effective, theory, run, compare, samplers)
    spec.imh = section_to_dataclass(IMHSettings, config.get("imh"), "imh")
    spec.analysis = section_to_dataclass(AnalysisSettings, config.get("analysis"), "analysis")
    spec.flow_hmc = _table(config, FLOW_HMC)
    if spec.flow_hmc.get("flow") is not None:
        raise ConfigError("[flow_hmc] flow: compare gives flow_hmc the flow sampler's flow")
    section_to_dataclass(FlowHMCSettings, spec.flow_hmc, FLOW_HMC)  # checked before any run
    uses_flow = FLOW_SAMPLER in compare.samplers or FLOW_HMC in compare.samplers
    if uses_flow or "flow" in config or "train" in config:
        flow_config = dict(config)
        if "flow" not in config:
            flow_config["flow"] = dict(COMPARE_DEFAULT_FLOW)
            flow_config["train"] = {**COMPARE_DEFAULT_TRAIN, **_table(config, "train")}
        spec.flow_config, spec.train_config = flow_specs(flow_config, theory, default_seed=run.seed)
    checkpoint = flow_checkpoint if flow_checkpoint is not None else compare.flow_checkpoint
    if checkpoint is not None:
        if not uses_flow:
            raise ConfigError("--flow given but [compare] samplers has neither flow nor flow_hmc")
        from lattice_samplers.flows import read_checkpoint
        from lattice_samplers.flows.checkpoint import check_compatible

        path = Path(checkpoint)
        try:  # read once: refuse a flow for another theory before anything runs
            spec.flow_record = read_checkpoint(path)
            check_compatible(spec.flow_record, theory, where=str(path))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        spec.flow_checkpoint = path
    return spec


# ----------------------------------------------------------------------------- tune
def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TuneSettings:
    """The ``[tune]`` section: the arguments of ``workflows.tune.tune_beta``.

    Attributes
    ----------
    L : int
        Lattice extent (>= 3).
    lam : float
        Quartic coupling of the ising form (> 0).
    xi_over_L : float
        Target xi / L (default 0.25).
    beta0 : float or None
        Starting beta (None: the paper's beta(L) for lam = 0.5, else 0.6).
    step : float
        Initial distance between measured betas.
    n_steps, n_therm : int
        Chain lengths per measured point.
    seed : int
        Master seed.
    sampler : str
        Sampler kind that measures xi.
    tolerance : float
        Accept the solution when the check is within ``tolerance`` errors.
    max_iter : int
        Refinement rounds.
    """

    L: int = 8
    lam: float = 0.5
    xi_over_L: float = 0.25
    beta0: float | None = None
    step: float = 0.01
    n_steps: int = 20_000
    n_therm: int = 1_000
    seed: int = 0
    sampler: str = "cluster"
    tolerance: float = 2.0
    max_iter: int = 3

    def __post_init__(self) -> None:
        checks = (
            (_is_int(self.L) and self.L >= 3, "L must be an integer >= 3"),
            (
                _is_real(self.lam) and self.lam > 0,
                "lam must be > 0 (the ising form needs a quartic term)",
            ),
            (_is_real(self.xi_over_L) and 0 < self.xi_over_L < 5, "xi/L must be in (0, 5)"),
            (
                self.beta0 is None or (_is_real(self.beta0) and self.beta0 > 0),
                "beta0 must be > 0",
            ),
            (_is_real(self.step) and self.step > 0, "step must be > 0"),
            (_is_int(self.n_steps) and self.n_steps >= 100, "n_steps must be an integer >= 100"),
            (_is_int(self.n_therm) and self.n_therm >= 0, "n_therm must be an integer >= 0"),
            (_is_int(self.seed) and self.seed >= 0, "seed must be an integer >= 0"),
            (_is_real(self.tolerance) and self.tolerance > 0, "tolerance must be > 0"),
            (_is_int(self.max_iter) and self.max_iter >= 1, "max_iter must be an integer >= 1"),
        )
        for ok, message in checks:
            if not ok:
                name = message.split(" must")[0].replace("xi/L", "xi_over_L")
                value = getattr(self, name)
                raise ValueError(f"tune: {message}, got {value!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"tune: unknown sampler {self.sampler!r} (known: {', '.join(SAMPLERS)})"
            )


def tune_settings(config: Mapping[str, Any]) -> TuneSettings:
    """Check a ``tune`` job config (only a ``[tune]`` section) and return its settings."""
    check_sections(config, ["tune"])
    return section_to_dataclass(TuneSettings, config.get("tune"), "tune")
