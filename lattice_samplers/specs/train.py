"""The ``train`` spec: ``[flow]`` (one settings class per family), ``[train]``, ``[curriculum]``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lattice_samplers.config import ConfigError, check_sections, section_to_dataclass
from lattice_samplers.growth_fits import DEFAULT_TARGETS
from lattice_samplers.specs.common import is_int, section_table, theory_from_config
from lattice_samplers.theory import Phi4Theory

__all__ = ["CurriculumSpec", "TrainSpec", "flow_specs", "train_spec"]


def flow_specs(
    config: Mapping[str, Any], theory: Phi4Theory, default_seed: int | None = None
) -> tuple[Any, Any]:
    """The ``[flow]`` and ``[train]`` sections as (flow settings, TrainSettings) for a theory.

    The flow settings are of the class ``[flow] family`` names (default: the cnf family).

    Loads torch.  ``default_seed`` is the training seed when ``[train]`` has none
    (``compare`` uses its ``[run]`` seed).
    """
    from lattice_samplers.flows import TrainSettings
    from lattice_samplers.flows.model import check_device
    from lattice_samplers.flows.settings import settings_class

    section = config.get("flow")
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(f"[flow] must be a table, got {section!r}")
    try:
        flow_class, keys = settings_class(section)
    except ValueError as exc:
        raise ConfigError(f"[flow] {exc}") from None
    flow = section_to_dataclass(flow_class, keys, "flow")
    train_section = section_table(config, "train")
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
    section = section_table(config, "curriculum")
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
        and all(is_int(v) and v >= 2 for v in Ls)
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
    base = section_table(config, "theory")
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
    section = section_table(config, "study")
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
