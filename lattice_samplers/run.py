"""Run driver: several chains of one sampler with thermalization, tuning, thinning, timing,
progress, checkpoints and resume.

:func:`run_sampler` advances all chains block by block (each block is one compiled call per
chain), so the sampler's settings are tuned jointly from all chains and stay identical across
them.  The schedule is deterministic:

1. thermalization: the first 3/4 of ``n_therm`` steps in short blocks, after each of which
   :meth:`Sampler.adapt` moves the tuned setting toward the target acceptance (if the sampler
   tunes); the rest with the settings frozen;
2. production: ``n_steps`` steps in blocks of ``block_size`` (a multiple of ``thin``),
   observables recorded every ``thin`` steps into (chain, draw) arrays.

Randomness: one seed gives independent chain streams ``SeedSequence(seed).spawn(n_chains)``
(PCG64).  Timing excludes JIT compilation (:meth:`Sampler.warmup` runs first and is timed
separately).  Work counters are hardware neutral (see :meth:`Sampler.work`).

Checkpoints (``checkpoint_path``) hold everything needed to continue bit-identically: the
(chain, draw) arrays so far, each chain's state (field, action, caches), each generator's
``bit_generator.state``, the current (tuned) settings and the tuning counter.  They are written
atomically (temporary file + ``os.replace``) every ``checkpoint_every`` steps, at the end of a
run, and when the run is interrupted by Ctrl-C (SIGINT): the first Ctrl-C lets the current
block finish, saves, and raises :class:`RunInterrupted`; a second one aborts at once.
``resume=True`` continues from the checkpoint, also to a larger ``n_steps`` than it was
started with.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lattice_samplers.kernels.common import N_OBS, OBSERVABLE_NAMES
from lattice_samplers.samplers.base import Chain, Sampler, State, add_work, thin_stats
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "CHECKPOINT_FORMAT",
    "RunInterrupted",
    "RunResult",
    "RunSettings",
    "load_checkpoint",
    "run_sampler",
    "run_with_settings",
    "versions",
]

CHECKPOINT_FORMAT = "lattice_samplers.checkpoint/1"

#: Fraction of the thermalization during which the tuned setting is adapted.
TUNE_FRACTION = 0.75


def _positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class RunSettings:
    """Chain lengths and run options (the ``[run]`` config section).

    Attributes
    ----------
    n_therm : int
        Thermalization steps per chain (settings are tuned during the first 3/4).
    n_steps : int
        Production steps per chain.
    thin : int
        Record observables every ``thin`` steps (n_steps must be a multiple).
    n_chains : int
        Independent chains.
    seed : int
        Master seed (>= 0); chain streams come from ``SeedSequence(seed).spawn``.
    checkpoint_every : int
        Steps per chain between checkpoints (0: only at the end and on Ctrl-C).
    block_size : int
        Steps per compiled block (0: automatic, about 2e6 site updates per block).
    """

    n_therm: int = 1000
    n_steps: int = 10000
    thin: int = 1
    n_chains: int = 4
    seed: int = 0
    checkpoint_every: int = 0
    block_size: int = 0

    def __post_init__(self) -> None:
        _positive_int("n_steps", self.n_steps)
        _positive_int("n_therm", self.n_therm, 0)
        _positive_int("thin", self.thin)
        _positive_int("n_chains", self.n_chains)
        _positive_int("seed", self.seed, 0)
        _positive_int("checkpoint_every", self.checkpoint_every, 0)
        _positive_int("block_size", self.block_size, 0)
        if self.n_steps % self.thin:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of thin ({self.thin})")


class RunInterrupted(KeyboardInterrupt):
    """Raised by :func:`run_sampler` after Ctrl-C, once the finished work is saved.

    Attributes
    ----------
    checkpoint_path : pathlib.Path or None
        Where the checkpoint was written (None if the run had no checkpoint path).
    steps_done : int
        Steps per chain completed (thermalization included).
    """

    def __init__(self, checkpoint_path: Path | None, steps_done: int) -> None:
        self.checkpoint_path = checkpoint_path
        self.steps_done = steps_done
        where = f"checkpoint saved to {checkpoint_path}" if checkpoint_path else "no checkpoint"
        super().__init__(f"interrupted after {steps_done} steps per chain; {where}")


def versions() -> dict[str, str]:
    """Versions of Python and the packages that determine results (for provenance)."""
    import numba

    from lattice_samplers import __version__

    return {
        "lattice_samplers": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
    }


@dataclass(eq=False)
class RunResult:
    """Several chains of one sampler: (chain, draw) series plus everything to interpret them.

    Attributes
    ----------
    sampler : str
        Sampler kind.
    theory : Phi4Theory
        The theory sampled.
    observables : dict of str to ndarray, shape (n_chains, n_draws)
        Scalar observables (:data:`OBSERVABLE_NAMES`, definitions of
        :mod:`lattice_samplers.observables`), in the theory's field normalization.
    stats : dict of str to ndarray, shape (n_chains, n_draws)
        Per-step sampler statistics (``accepted``, ``delta_h``, ...), averaged over each
        window of ``thin`` steps.
    settings : dict
        Sampler settings after tuning (JSON-ready).
    initial_settings : dict
        Settings before tuning.
    work, work_therm : dict of str to int
        Hardware-neutral counters of production and thermalization, summed over chains.
    wall_time_s, therm_time_s : float
        Seconds in compiled production / thermalization blocks, summed over chains (the
        chains run one after the other, so this is also the elapsed time), JIT excluded.
    compile_time_s : float
        Seconds of :meth:`Sampler.warmup` (JIT compilation or cache load).
    n_steps, n_therm, thin, n_chains, seed : int
        The run's lengths and master seed.
    chain_wall_time_s : list of float
        Production seconds per chain.
    chain_work : list of dict
        Production work counters per chain.
    final_phi : ndarray, shape (n_chains, L, L)
        Each chain's last field.
    versions : dict of str to str
        Package versions (:func:`versions`).
    config : dict or None
        The full configuration, if the run came from one.
    """

    sampler: str
    theory: Phi4Theory
    observables: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    settings: dict[str, Any]
    initial_settings: dict[str, Any]
    work: dict[str, int]
    work_therm: dict[str, int]
    wall_time_s: float
    therm_time_s: float
    compile_time_s: float
    n_steps: int
    n_therm: int
    thin: int
    n_chains: int
    seed: int
    chain_wall_time_s: list[float]
    chain_work: list[dict[str, int]]
    final_phi: np.ndarray
    versions: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] | None = None

    @property
    def n_draws(self) -> int:
        """Draws per chain, n_steps // thin."""
        return self.n_steps // self.thin

    @property
    def acceptance(self) -> float:
        """Mean of the ``accepted`` statistic over all chains and steps."""
        acc = self.stats.get("accepted")
        return float(np.mean(acc)) if acc is not None and acc.size else math.nan

    @property
    def chain_seeds(self) -> list[dict[str, Any]]:
        """The SeedSequence of each chain: ``{"entropy": seed, "spawn_key": [i]}``."""
        return [{"entropy": self.seed, "spawn_key": [i]} for i in range(self.n_chains)]

    def chain(self, i: int) -> Chain:
        """The record of chain ``i`` (its final state holds only the field)."""
        return Chain(
            observables={k: v[i] for k, v in self.observables.items()},
            stats={k: v[i] for k, v in self.stats.items()},
            n_steps=self.n_steps,
            thin=self.thin,
            work=dict(self.chain_work[i]),
            wall_time_s=self.chain_wall_time_s[i],
            settings=dict(self.settings),
            state=State(self.final_phi[i].copy(), np.full(1 + N_OBS, np.nan)),
        )


# --------------------------------------------------------------------------- checkpoints
def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp)`` into a temporary sibling, then ``os.replace``.

    A failure (exception, Ctrl-C) inside ``write`` removes the temporary file and leaves any
    previous ``path`` untouched, so readers never see a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _save_checkpoint(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    payload = dict(arrays)
    payload["meta"] = np.array(json.dumps(meta, default=_json_default))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a checkpoint written by :func:`run_sampler`: (metadata dict, arrays dict).

    Raises
    ------
    FileNotFoundError
        If there is no file.
    ValueError
        If the file is not a lattice_samplers checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    return meta, arrays


def _rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    name = state["bit_generator"]
    bit_generator = getattr(np.random, name)()
    bit_generator.state = dict(state)
    return np.random.Generator(bit_generator)


# --------------------------------------------------------------------------- Ctrl-C
class _InterruptFlag:
    """Turns the first SIGINT into a flag checked between blocks (main thread only).

    A block of compiled steps cannot be interrupted safely in the middle, so the first Ctrl-C
    only asks the driver to stop at the next block boundary and save; a second one restores
    the default behaviour and interrupts immediately.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nInterrupt: finishing the current block and saving (Ctrl-C again to abort)",
            file=sys.stderr,
        )

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


# --------------------------------------------------------------------------- the driver
def _next_therm_block(therm_done: int, n_therm: int, tune: bool, block: int) -> tuple[int, bool]:
    """Length and adapt flag of the thermalization block starting at ``therm_done``.

    The tuning blocks (the first :data:`TUNE_FRACTION` of ``n_therm``, in short intervals)
    depend only on ``n_therm``, so a resumed run adapts at exactly the same steps; after
    tuning the partition into blocks does not affect the chain.
    """
    n_tune = int(TUNE_FRACTION * n_therm) if tune else 0
    if therm_done < n_tune:
        interval = max(1, min(20, n_tune // 40))
        return min(interval, n_tune - therm_done), True
    return min(block, n_therm - therm_done), False


def _auto_block_size(sampler: Sampler, thin: int, requested: int) -> int:
    if requested > 0:
        size = requested
    else:
        size = int(min(10_000, max(1, 2_000_000 // max(1.0, sampler.step_cost()))))
    return max(thin, (size // thin) * thin)


def _initial_fields(phi0: np.ndarray | None, n_chains: int, shape: tuple[int, int]) -> list:
    if phi0 is None:
        return [None] * n_chains
    phi0 = np.asarray(phi0, dtype=np.float64)
    if phi0.shape == shape:
        return [phi0] * n_chains
    if phi0.shape == (n_chains, *shape):
        return list(phi0)
    raise ValueError(f"phi0 must have shape {shape} or {(n_chains, *shape)}, got {phi0.shape}")


def run_sampler(
    sampler: Sampler,
    n_steps: int,
    *,
    n_therm: int = 0,
    thin: int = 1,
    n_chains: int = 1,
    seed: int = 0,
    phi0: np.ndarray | None = None,
    block_size: int = 0,
    progress: bool | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    config: Mapping[str, Any] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run ``n_chains`` chains of ``sampler``: thermalize (and tune), then record ``n_steps``.

    Parameters
    ----------
    sampler : Sampler
        The sampler; its settings are tuned in place during thermalization.
    n_steps : int
        Production steps per chain (a multiple of ``thin``).
    n_therm : int
        Thermalization steps per chain.
    thin : int
        Record every ``thin``-th step.
    n_chains : int
        Independent chains (streams from ``SeedSequence(seed).spawn(n_chains)``).
    seed : int
        Master seed.
    phi0 : ndarray, optional
        Starting field, shape (L, L) for all chains or (n_chains, L, L); zeros if None.
    block_size : int
        Steps per compiled block (0: automatic).
    progress : bool, optional
        Show a tqdm bar on stderr; None: only if stderr is a terminal.
    checkpoint_path : str or Path, optional
        Checkpoint file (written at the end, every ``checkpoint_every`` steps, on Ctrl-C).
    checkpoint_every : int
        Steps per chain between checkpoints (0: only at the end and on Ctrl-C).
    resume : bool
        Continue from ``checkpoint_path`` (which must exist and match this run).
    config : mapping, optional
        The configuration to store with the result.
    callback : callable, optional
        Called after every block with a dict (``phase``, ``steps_done``, ``total_steps``,
        ``settings``); for monitoring and tests.

    Returns
    -------
    RunResult

    Raises
    ------
    RunInterrupted
        After Ctrl-C, once the checkpoint (if any) is saved.
    ValueError
        For invalid lengths or a checkpoint that does not match the run.
    """
    run = RunSettings(
        n_therm=n_therm,
        n_steps=n_steps,
        thin=thin,
        n_chains=n_chains,
        seed=seed,
        checkpoint_every=checkpoint_every,
        block_size=block_size,
    )
    theory = sampler.theory
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if resume and ckpt is None:
        raise ValueError("resume=True needs a checkpoint_path")

    t0 = time.perf_counter()
    sampler.warmup()
    compile_time = time.perf_counter() - t0

    block = _auto_block_size(sampler, run.thin, run.block_size)
    n_stats = len(sampler.stat_names)
    n_draws = run.n_steps // run.thin
    obs_all = np.full((run.n_chains, n_draws, N_OBS), np.nan)
    stats_all = np.full((run.n_chains, n_draws, n_stats), np.nan)

    initial_settings = sampler.settings_dict()
    tunes = sampler.tuned_setting is not None and bool(getattr(sampler.settings, "tune", False))
    work: dict[str, int] = {}
    work_therm: dict[str, int] = {}
    chain_work: list[dict[str, int]] = [{} for _ in range(run.n_chains)]
    chain_wall = [0.0] * run.n_chains
    chain_therm = [0.0] * run.n_chains
    adapt_k = 0
    therm_done = 0
    prod_done = 0

    if resume:
        assert ckpt is not None
        meta, arrays = load_checkpoint(ckpt)
        _check_compatible(meta, sampler, run)
        sampler.set_settings(meta["settings"])
        adapt_k = int(meta["adapt_k"])
        therm_done = int(meta["therm_done"])
        prod_done = int(meta["prod_done"])
        if prod_done > run.n_steps:
            raise ValueError(
                f"the checkpoint already has {prod_done} production steps, more than "
                f"n_steps = {run.n_steps}"
            )
        d = prod_done // run.thin
        obs_all[:, :d] = arrays["observables"]
        stats_all[:, :d] = arrays["stats"]
        work, work_therm, chain_work = meta["work"], meta["work_therm"], meta["chain_work"]
        chain_wall, chain_therm = list(meta["chain_wall_time_s"]), list(meta["chain_therm_s"])
        rngs = [_rng_from_state(s) for s in meta["rng_states"]]
        states = []
        for c in range(run.n_chains):
            aux = {
                k.removeprefix("aux_"): np.ascontiguousarray(v[c])
                for k, v in arrays.items()
                if k.startswith("aux_")
            }
            states.append(
                State(
                    np.ascontiguousarray(arrays["phi"][c]),
                    np.ascontiguousarray(arrays["scalars"][c]),
                    aux,
                )
            )
    else:
        seeds = np.random.SeedSequence(run.seed).spawn(run.n_chains)
        rngs = [np.random.Generator(np.random.PCG64(s)) for s in seeds]
        starts = _initial_fields(phi0, run.n_chains, theory.shape)
        states = [sampler.init(starts[c], rngs[c]) for c in range(run.n_chains)]

    saved_at = -1

    def save() -> None:
        nonlocal saved_at
        if ckpt is None or saved_at == done_steps:
            return
        meta = {
            "format": CHECKPOINT_FORMAT,
            "sampler": sampler.kind,
            "broken": sampler._broken,
            "theory": theory.to_dict(),
            "seed": run.seed,
            "n_chains": run.n_chains,
            "thin": run.thin,
            "n_therm": run.n_therm,
            "n_steps_requested": run.n_steps,
            "initial_settings": initial_settings,
            "settings": sampler.settings_dict(),
            "adapt_k": adapt_k,
            "therm_done": therm_done,
            "prod_done": prod_done,
            "rng_states": [r.bit_generator.state for r in rngs],
            "work": work,
            "work_therm": work_therm,
            "chain_work": chain_work,
            "chain_wall_time_s": chain_wall,
            "chain_therm_s": chain_therm,
            "compile_time_s": compile_time,
            "versions": versions(),
        }
        d = prod_done // run.thin
        arrays = {
            "observables": obs_all[:, :d],
            "stats": stats_all[:, :d],
            "phi": np.stack([s.phi for s in states]),
            "scalars": np.stack([s.scalars for s in states]),
        }
        for key in states[0].aux:
            arrays[f"aux_{key}"] = np.stack([s.aux[key] for s in states])
        _save_checkpoint(ckpt, meta, arrays)
        saved_at = done_steps

    total = run.n_chains * (run.n_therm + run.n_steps)
    done_steps = therm_done + prod_done
    last_ckpt = done_steps

    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = tqdm(
        total=total,
        initial=run.n_chains * done_steps,
        disable=not show,
        unit="step",
        desc=f"{sampler.kind} L={theory.L}",
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def after_block(phase: str) -> None:
        nonlocal last_ckpt
        if run.checkpoint_every and done_steps - last_ckpt >= run.checkpoint_every:
            save()
            last_ckpt = done_steps
        if callback is not None:
            callback(
                {
                    "phase": phase,
                    "steps_done": done_steps,
                    "total_steps": run.n_therm + run.n_steps,
                    "settings": sampler.settings_dict(),
                }
            )
        if flag.requested:
            save()
            raise RunInterrupted(ckpt, done_steps)

    tune_col = sampler.stat_names.index(sampler.tune_stat)
    empty_obs = np.empty((0, N_OBS))
    try:
        with _InterruptFlag() as flag:
            # ---------------------------------------------------------- thermalization
            while therm_done < run.n_therm:
                n, adapt = _next_therm_block(therm_done, run.n_therm, tunes, block)
                stats = np.empty((n, n_stats))
                acc = 0.0
                for c in range(run.n_chains):
                    t1 = time.perf_counter()
                    # thin > n: nothing is recorded during thermalization
                    sampler.run_block(states[c], n, n + 1, rngs[c], empty_obs, stats)
                    chain_therm[c] += time.perf_counter() - t1
                    add_work(work_therm, sampler.work(stats))
                    acc += float(np.mean(stats[:, tune_col]))
                    bar.update(n)
                if adapt:
                    sampler.adapt(acc / run.n_chains, adapt_k)
                    adapt_k += 1
                therm_done += n
                done_steps += n
                after_block("therm")
            # ---------------------------------------------------------- production
            while prod_done < run.n_steps:
                n = min(block, run.n_steps - prod_done)
                d0 = prod_done // run.thin
                d1 = (prod_done + n) // run.thin
                stats = np.empty((n, n_stats))
                for c in range(run.n_chains):
                    obs_view = obs_all[c, d0:d1]
                    t1 = time.perf_counter()
                    sampler.run_block(states[c], n, run.thin, rngs[c], obs_view, stats)
                    chain_wall[c] += time.perf_counter() - t1
                    stats_all[c, d0:d1] = thin_stats(stats, run.thin)
                    block_work = sampler.work(stats)
                    add_work(work, block_work)
                    add_work(chain_work[c], block_work)
                    bar.update(n)
                prod_done += n
                done_steps += n
                after_block("production")
            save()
    finally:
        bar.close()

    return RunResult(
        sampler=sampler.kind,
        theory=theory,
        observables={name: obs_all[:, :, k].copy() for k, name in enumerate(OBSERVABLE_NAMES)},
        stats={name: stats_all[:, :, k].copy() for k, name in enumerate(sampler.stat_names)},
        settings=sampler.settings_dict(),
        initial_settings=dict(initial_settings),
        work=dict(work),
        work_therm=dict(work_therm),
        wall_time_s=float(sum(chain_wall)),
        therm_time_s=float(sum(chain_therm)),
        compile_time_s=float(compile_time),
        n_steps=run.n_steps,
        n_therm=run.n_therm,
        thin=run.thin,
        n_chains=run.n_chains,
        seed=run.seed,
        chain_wall_time_s=[float(x) for x in chain_wall],
        chain_work=[dict(w) for w in chain_work],
        final_phi=np.stack([s.phi.copy() for s in states]),
        versions=versions(),
        config=dict(config) if config is not None else None,
    )


def run_with_settings(
    sampler: Sampler, run: RunSettings, *, seed: int | None = None, **options: Any
) -> RunResult:
    """:func:`run_sampler` with the lengths, seed and checkpoint interval of a ``[run]``
    section; ``seed`` replaces ``run.seed`` and ``options`` are passed on (``progress``,
    ``checkpoint_path``, ``resume``, ``config``, ...)."""
    return run_sampler(
        sampler,
        run.n_steps,
        n_therm=run.n_therm,
        thin=run.thin,
        n_chains=run.n_chains,
        seed=run.seed if seed is None else seed,
        block_size=run.block_size,
        checkpoint_every=run.checkpoint_every,
        **options,
    )


def _check_compatible(meta: Mapping[str, Any], sampler: Sampler, run: RunSettings) -> None:
    """Refuse to resume a checkpoint of a different run (one line naming the mismatch)."""
    expected = {
        "sampler": sampler.kind,
        "initial_settings": json.loads(json.dumps(sampler.settings_dict())),
        "broken": sampler._broken,
        "theory": json.loads(json.dumps(sampler.theory.to_dict())),
        "seed": run.seed,
        "n_chains": run.n_chains,
        "thin": run.thin,
        "n_therm": run.n_therm,
    }
    for key, value in expected.items():
        if meta.get(key) != value:
            raise ValueError(
                f"the checkpoint is for another run: {key} = {meta.get(key)!r}, "
                f"this run has {value!r}"
            )
