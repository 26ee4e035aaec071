"""The sampler interface: State, StepInfo and Chain records and the :class:`Sampler` base class.

A sampler binds a :class:`~lattice_samplers.theory.Phi4Theory` and a frozen settings dataclass
to its kernels.  One *step* is one Markov transition (a sweep, an HMC trajectory, a cluster
update plus sweeps, one independence-Metropolis proposal).  The interface:

* ``init(phi0, rng) -> State``: the starting state (field, action, observables, caches);
* ``step(state, rng) -> (State, StepInfo)``: one transition;
* ``run(state, n_steps, rng, thin=1) -> Chain``: many transitions, observables recorded every
  ``thin`` steps.

Subclasses implement :meth:`Sampler.run_block` (and :meth:`Sampler.init` when they cache more
than the field and its observables), which advances a state
in place by ``n_steps`` steps and writes observables and per-step statistics into preallocated
arrays.  :meth:`Sampler.step` and :meth:`Sampler.run` are both built on ``run_block``, so for the
numba samplers a Python loop over ``step`` equals ``run`` bit for bit (with the same
``numpy.random.Generator``); the tests assert it.  A sampler that is not compiled (for example a
flow independence Metropolis) implements the same two methods in whatever way suits it.

Tuning: a sampler may name one setting (``tuned_setting``) that the run driver adapts during
thermalization toward ``settings.target_acceptance`` via :meth:`Sampler.adapt`; afterwards the
settings are frozen and reported.

Negative controls (deliberately wrong variants that the tests' statistical checks must fail)
are subclasses in :mod:`lattice_samplers.testing.broken` that swap a sampler's kernel for a
compiled broken twin; the samplers and kernels here carry no test switch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lattice_samplers.kernels.common import N_OBS, OBSERVABLE_NAMES, measure_into
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "OBSERVABLE_NAMES",
    "BatchedChainsSampler",
    "Chain",
    "Sampler",
    "State",
    "StepInfo",
    "add_work",
]


@dataclass(eq=False)
class State:
    """What the next step needs: the field, its action and observables, and sampler caches.

    Samplers update a state's arrays in place; :meth:`copy` before keeping one.

    Attributes
    ----------
    phi : ndarray, shape (L, L)
        The current field (float64, C-contiguous).
    scalars : ndarray, shape (1 + n_observables,)
        ``[action, *observables]`` of ``phi``: the full action (with the constant V c0) and
        the scalar observables in the order of :data:`OBSERVABLE_NAMES`.
    aux : dict of str to ndarray
        Sampler caches, e.g. ``force`` (HMC) or ``momentum``; part of a checkpoint.
    """

    phi: np.ndarray
    scalars: np.ndarray
    aux: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def action(self) -> float:
        """Full action S(phi) including the additive constant."""
        return float(self.scalars[0])

    @property
    def observables(self) -> dict[str, float]:
        """The scalar observables of ``phi`` by name."""
        return {name: float(v) for name, v in zip(OBSERVABLE_NAMES, self.scalars[1:])}

    def copy(self) -> State:
        """A deep copy (all arrays copied)."""
        return State(
            self.phi.copy(), self.scalars.copy(), {k: v.copy() for k, v in self.aux.items()}
        )


@dataclass(frozen=True)
class StepInfo:
    """What one step reports but the next does not need.

    Attributes
    ----------
    accepted : float
        1.0 or 0.0 for a single proposal (HMC trajectory, independence Metropolis); the
        fraction of accepted proposals for a sweep (Metropolis, the sweeps of a cluster step).
    stats : mapping of str to float
        Every per-step statistic of the sampler by name (``Sampler.stat_names``), including
        ``accepted``.
    """

    accepted: float
    stats: Mapping[str, float]

    @property
    def acceptance_prob(self) -> float:
        """min(1, exp(-delta_h)) where the sampler has one, else NaN."""
        return float(self.stats.get("acceptance_prob", math.nan))

    @property
    def delta_h(self) -> float:
        """H_new - H_old of the proposal where the sampler has one, else NaN."""
        return float(self.stats.get("delta_h", math.nan))


@dataclass(eq=False)
class Chain:
    """The record of one chain: observable series, sample statistics, work, time, settings.

    Attributes
    ----------
    observables : dict of str to ndarray, shape (n_draws,)
        Scalar observables after steps thin, 2 thin, ..., n_steps.
    stats : dict of str to ndarray, shape (n_draws,)
        Per-step statistics averaged over each window of ``thin`` steps (the steps
        themselves when thin == 1).
    n_steps, thin : int
        Steps run and the recording interval.
    work : dict of str to int
        Hardware-neutral work counters (see :meth:`Sampler.work`).
    wall_time_s : float
        Seconds spent in ``run_block`` (compilation excluded when the sampler was warmed up).
    settings : dict
        The sampler settings used (JSON-ready).
    state : State
        The final state (continue the chain from it).
    """

    observables: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    n_steps: int
    thin: int
    work: dict[str, int]
    wall_time_s: float
    settings: dict[str, Any]
    state: State

    @property
    def n_draws(self) -> int:
        """Number of recorded draws, n_steps // thin."""
        return self.n_steps // self.thin

    @property
    def acceptance(self) -> float:
        """Mean of the ``accepted`` statistic."""
        return float(np.mean(self.stats["accepted"])) if self.n_draws else math.nan


def add_work(total: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Add the counters of ``more`` into ``total`` (in place) and return it."""
    for key, value in more.items():
        total[key] = int(total.get(key, 0)) + int(value)
    return total


def thin_stats(stats: np.ndarray, thin: int) -> np.ndarray:
    """Average per-step statistics (n_steps, n_stats) over windows of ``thin`` steps."""
    n = stats.shape[0] // thin
    if thin == 1:
        return stats[:n]
    return stats[: n * thin].reshape(n, thin, stats.shape[1]).mean(axis=1)


class Sampler(ABC):
    """Base class of all samplers: a theory and settings bound to kernels.

    Parameters
    ----------
    theory : Phi4Theory
        The theory to sample.
    settings : dataclass instance, optional
        An instance of ``settings_class``; defaults to ``settings_class()``.
    **overrides
        Individual settings replacing those of ``settings`` (e.g. ``step_size=0.05``).

    Class attributes
    ----------------
    kind : str
        Registry name (``"metropolis"``, ``"hmc"``, ``"cluster"``, ...).
    settings_class : type
        Frozen dataclass of the settings (also the ``[sampler]`` config schema).
    stat_names : tuple of str
        Per-step statistics written by :meth:`run_block`; the first is ``accepted``.
    tuned_setting : str or None
        The setting :meth:`adapt` tunes (``None``: nothing to tune).
    tune_stat : str
        The statistic whose mean is steered to ``settings.target_acceptance``.
    """

    kind: ClassVar[str] = ""
    settings_class: ClassVar[type] = type(None)
    stat_names: ClassVar[tuple[str, ...]] = ("accepted",)
    observable_names: ClassVar[tuple[str, ...]] = OBSERVABLE_NAMES
    tuned_setting: ClassVar[str | None] = None
    tune_stat: ClassVar[str] = "accepted"

    def __init__(
        self,
        theory: Phi4Theory,
        settings: Any = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(theory, Phi4Theory):
            raise TypeError(f"theory must be a Phi4Theory, got {type(theory).__name__}")
        if settings is None:
            settings = self.settings_class()
        elif not isinstance(settings, self.settings_class):
            raise TypeError(
                f"settings must be {self.settings_class.__name__}, got {type(settings).__name__}"
            )
        if overrides:
            settings = dataclasses.replace(settings, **overrides)
        self.theory = theory
        self.settings = settings
        self._check_theory()

    # ------------------------------------------------------------------ to implement
    def _check_theory(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Raise ValueError if the sampler cannot sample ``self.theory`` (default: any)."""

    def init(self, phi0: np.ndarray | None = None, rng: np.random.Generator | None = None) -> State:
        """The starting state: ``phi0`` (copied; the zero field if None) with its observables.

        Samplers that cache more (forces, momenta, log weights) override it.
        """
        phi = self._initial_field(phi0)
        scalars = self._new_scalars()
        h, c2, c4 = self.theory.hopping
        scalars[0] = measure_into(phi, h, c2, c4, self.theory.c0, scalars[1:])
        return State(phi, scalars)

    @abstractmethod
    def run_block(
        self,
        state: State,
        n_steps: int,
        thin: int,
        rng: np.random.Generator,
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """Advance ``state`` in place by ``n_steps`` steps.

        Parameters
        ----------
        state : State
            Updated in place (field, scalars, caches).
        n_steps, thin : int
            Steps to run; observables are written after every ``thin``-th step.
        rng : numpy.random.Generator
            The chain's random stream (advanced in place).
        obs_out : ndarray, shape (n_steps // thin, n_observables), C-contiguous float64
            Receives the observables (order :data:`OBSERVABLE_NAMES`).
        stats_out : ndarray, shape (n_steps, len(stat_names)), C-contiguous float64
            Receives the per-step statistics.
        """

    def work(self, stats: np.ndarray) -> dict[str, int]:
        """Hardware-neutral work of the steps whose per-step ``stats`` are given.

        Every sampler reports ``steps``; others add e.g. ``site_updates``,
        ``force_evaluations``, ``cluster_sites_flipped``.
        """
        return {"steps": int(stats.shape[0])}

    def step_cost(self) -> float:
        """Rough cost of one step in site updates, used to size blocks (not a measurement)."""
        return float(self.theory.volume)

    @property
    def parallel_chains(self) -> bool:
        """Whether :meth:`run_block` may run for different chains in threads at once.

        True when a block touches nothing shared but the sampler's read-only settings (each
        chain brings its own state, generator and output arrays), as for the compiled samplers.
        """
        return True

    # ------------------------------------------------------------------ generic
    def _new_scalars(self) -> np.ndarray:
        return np.zeros(1 + N_OBS)

    def _initial_field(self, phi0: np.ndarray | None) -> np.ndarray:
        """A fresh C-contiguous float64 copy of ``phi0`` (zeros if None), shape-checked."""
        if phi0 is None:
            return np.zeros(self.theory.shape)
        phi = np.array(phi0, dtype=np.float64, order="C", copy=True)
        if phi.shape != self.theory.shape:
            raise ValueError(f"phi0 has shape {phi.shape}, expected {self.theory.shape}")
        if not np.all(np.isfinite(phi)):
            raise ValueError("phi0 contains NaN or inf")
        return phi

    def settings_dict(self) -> dict[str, Any]:
        """The current settings as a JSON-ready dict (after tuning, once tuned)."""
        return dataclasses.asdict(self.settings)

    def set_settings(self, values: Mapping[str, Any]) -> None:
        """Replace the settings by ``values`` (e.g. restored from a checkpoint)."""
        self.settings = self.settings_class(**dict(values))

    def step(self, state: State, rng: np.random.Generator) -> tuple[State, StepInfo]:
        """One Markov transition; ``state`` is updated in place and returned."""
        obs = np.empty((1, N_OBS))
        stats = np.empty((1, len(self.stat_names)))
        self.run_block(state, 1, 1, rng, obs, stats)
        values = {name: float(v) for name, v in zip(self.stat_names, stats[0])}
        return state, StepInfo(accepted=values["accepted"], stats=values)

    def run(self, state: State, n_steps: int, rng: np.random.Generator, thin: int = 1) -> Chain:
        """Run ``n_steps`` steps from ``state`` (updated in place) with frozen settings.

        One call of :meth:`run_block`; for several chains, thermalization, tuning, progress
        and checkpoints use :func:`lattice_samplers.driver.run_sampler`.
        """
        n_steps, thin = _check_lengths(n_steps, thin)
        obs = np.empty((n_steps // thin, N_OBS))
        stats = np.empty((n_steps, len(self.stat_names)))
        t0 = time.perf_counter()
        self.run_block(state, n_steps, thin, rng, obs, stats)
        wall = time.perf_counter() - t0
        thinned = thin_stats(stats, thin)
        return Chain(
            observables={name: obs[:, k].copy() for k, name in enumerate(OBSERVABLE_NAMES)},
            stats={name: thinned[:, k].copy() for k, name in enumerate(self.stat_names)},
            n_steps=n_steps,
            thin=thin,
            work=self.work(stats),
            wall_time_s=wall,
            settings=self.settings_dict(),
            state=state,
        )

    def warmup(self) -> None:
        """Compile (or load from cache) the kernels on a 2 x 2 copy, so timings exclude JIT.

        The copy has the same argument types as the real problem, so numba reuses the
        specializations; its random numbers come from a throwaway generator.  Subclasses whose
        constructor needs more than (theory, settings), or that compile nothing, override this
        (a no-op is fine).
        """
        tiny = type(self)(self.theory.with_L(2), self.settings)
        rng = np.random.default_rng(0)
        state = tiny.init(None, rng)
        tiny.step(state, rng)
        tiny.run(state, 2, rng, thin=2)
        # a block that does not end on a recorded draw (thermalization blocks do that)
        tiny.run_block(state, 3, 4, rng, np.empty((0, N_OBS)), np.empty((3, len(tiny.stat_names))))

    # ------------------------------------------------------------------ tuning
    def adapt(self, acceptance: float, k: int) -> None:
        """Move the tuned setting toward the target acceptance (one Robbins-Monro step).

        log x <- log x + g_k (acceptance - target), g_k = 2 / (k + 1)^0.6: a larger setting
        (proposal width, step size) lowers the acceptance, so the update has the sign of the
        excess acceptance.  Non-finite acceptance counts as 0.
        """
        name = self.tuned_setting
        if name is None or not getattr(self.settings, "tune", False):
            return
        target = self.settings.target_acceptance
        if not math.isfinite(acceptance):
            acceptance = 0.0
        gain = 2.0 / (k + 1) ** 0.6
        value = getattr(self.settings, name) * math.exp(gain * (acceptance - target))
        self.settings = dataclasses.replace(self.settings, **{name: self._clip_tuned(value)})

    def _clip_tuned(self, value: float) -> float:
        """Keep a tuned setting in a sane range (subclasses may override)."""
        return float(min(max(value, 1e-6), 1e3))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.theory!r}, {self.settings!r})"


def _check_lengths(n_steps: int, thin: int) -> tuple[int, int]:
    """Validate a chain length and a thinning interval (ValueError naming the problem)."""
    for name, value in (("n_steps", n_steps), ("thin", thin)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_steps % thin:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of thin ({thin})")
    return int(n_steps), int(thin)


def check_fraction(name: str, value: float) -> None:
    """Refuse a setting outside the open interval (0, 1) with a one-line ValueError."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def check_positive(name: str, value: float) -> None:
    """Refuse a setting that is not a positive finite number with a one-line ValueError."""
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a positive finite number, got {value}")


class BatchedChainsSampler(Sampler):
    """A sampler that advances all chains of a block in one call (one FFT batch, one pass).

    The driver calls :meth:`run_block_batched` with every chain's state and generator;
    :meth:`run_block` is that call on a batch of one, so ``step`` equals ``run`` as for every
    sampler.  A chain's result must not depend on the others (each has its own generator).
    """

    #: read by the driver: advance all chains of a block together
    batched_chains: ClassVar[bool] = True

    def run_block(
        self,
        state: State,
        n_steps: int,
        thin: int,
        rng: np.random.Generator,
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """``n_steps`` steps of one chain: :meth:`run_block_batched` on a batch of one."""
        self.run_block_batched([state], n_steps, thin, [rng], obs_out[None], stats_out[None])

    @abstractmethod
    def run_block_batched(
        self,
        states: list[State],
        n_steps: int,
        thin: int,
        rngs: list[np.random.Generator],
        obs_out: np.ndarray,
        stats_out: np.ndarray,
    ) -> None:
        """Run ``n_steps`` steps of every chain; outputs shaped (n_chains, ...) per chain."""
