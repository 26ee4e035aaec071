"""The chain driver: several chains of one sampler, block by block, with an observer hook.

:func:`run_sampler` advances all chains block by block (each block is one compiled call per
chain), so the sampler's settings are tuned jointly from all chains and stay identical across
them.  The schedule is deterministic:

1. thermalization: the first 3/4 of ``n_therm`` steps in short blocks, after each of which
   :meth:`Sampler.adapt` moves the tuned setting toward the target acceptance (if the sampler
   tunes); the rest with the settings frozen;
2. production: ``n_steps`` steps in blocks of ``block_size`` (a multiple of ``thin``),
   observables recorded every ``thin`` steps into (chain, draw) arrays.

After every block an optional observer receives a :class:`BlockReport` (phase, steps done,
the chains' current states); the tuning job uses it to measure field observables the compiled
loops do not record, progress and tests use it too.

Randomness: one seed gives independent chain streams ``SeedSequence(seed).spawn(n_chains)``
(PCG64).

Parallel chains: with ``run.workers`` > 1 (see :meth:`RunSettings.resolved_workers`) the chains
of a block run concurrently in one persistent thread pool, one task per chain, joined before
the driver goes on.  A sampler that declares ``batched_chains`` (fourier_hmc, flow_hmc) instead
advances all chains of a block in one call, ``run_block_batched(states, n, thin, rngs, obs,
stats)``, each chain with its own generator, so the result equals the per-chain path
(``run_block``, the reference) bit for bit; its block seconds are split equally among the
chains (one thread did the work).  The compiled kernels release the GIL (``nogil=True``);
each chain has its own generator, state and slices of the record arrays, and everything shared
(work counters, the tuning acceptance, timings) is combined in the main thread in chain order
after the join, so a run is bit-identical for any number of workers.  Signals stay with the
main thread: a SIGINT or SIGTERM lets the running block finish on every chain, then saves and stops.

Timing excludes JIT compilation (:meth:`Sampler.warmup` runs first and is timed separately).
Each chain's seconds inside its blocks are summed into *core* seconds (``core_time_s``, the
hardware-neutral figure for cost comparisons); ``wall_time_s`` is the elapsed production time
(blocks dispatched to joined), which is smaller when chains run in parallel.  Work counters
are hardware neutral (see :meth:`Sampler.work`).  Checkpoints and signals:
:mod:`lattice_samplers.driver.checkpoint`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lattice_samplers.driver.checkpoint import (
    CHECKPOINT_FORMAT,
    RunInterrupted,
    check_compatible,
    load_checkpoint,
    rng_from_state,
    save_checkpoint,
)
from lattice_samplers.driver.result import RunResult
from lattice_samplers.driver.settings import RunSettings
from lattice_samplers.kernels.common import N_OBS, OBSERVABLE_NAMES
from lattice_samplers.records import versions
from lattice_samplers.samplers.base import Sampler, State, add_work, thin_stats
from lattice_samplers.signals import StopRequest

__all__ = ["TUNE_FRACTION", "BlockReport", "run_sampler"]

#: Fraction of the thermalization during which the tuned setting is adapted.
TUNE_FRACTION = 0.75


@dataclass(frozen=True)
class BlockReport:
    """What an observer sees after each block.

    Attributes
    ----------
    phase : str
        ``therm`` or ``production``.
    steps_done : int
        Steps per chain done so far (thermalization included).
    total_steps : int
        ``n_therm + n_steps``.
    block_steps : int
        Steps per chain in the block just finished.
    settings : dict
        The sampler's current settings.
    states : list of State
        Each chain's current state (read only: do not modify).
    """

    phase: str
    steps_done: int
    total_steps: int
    block_steps: int
    settings: dict[str, Any]
    states: list[State]

    def __getitem__(self, key: str) -> Any:
        """Dict-style access to the fields (``report["phase"]``)."""
        return getattr(self, key)


Observer = Callable[[BlockReport], None]


class _PhaseLog:
    """One line per phase on stderr with the seconds the previous phase took."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name, self.enabled, self.t0 = name, enabled, time.perf_counter()

    def start(self, phase: str) -> None:
        if self.enabled:
            now = time.perf_counter()
            print(f"{self.name}: {phase} ({now - self.t0:.1f} s so far)", file=sys.stderr)


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


class _Chains:
    """The mutable bookkeeping of one run: arrays, states, generators, counters, timings."""

    def __init__(self, sampler: Sampler, run: RunSettings) -> None:
        self.sampler = sampler
        self.run = run
        n_draws = run.n_steps // run.thin
        self.obs = np.full((run.n_chains, n_draws, N_OBS), np.nan)
        self.stats = np.full((run.n_chains, n_draws, len(sampler.stat_names)), np.nan)
        self.initial_settings = sampler.settings_dict()
        self.work: dict[str, int] = {}
        self.work_therm: dict[str, int] = {}
        self.chain_work: list[dict[str, int]] = [{} for _ in range(run.n_chains)]
        self.chain_wall = [0.0] * run.n_chains
        self.chain_therm = [0.0] * run.n_chains
        self.wall_time = 0.0
        self.therm_wall_time = 0.0
        self.pool: ThreadPoolExecutor | None = None
        self.adapt_k = 0
        self.therm_done = 0
        self.prod_done = 0
        self.compile_time = 0.0
        self.rngs: list[np.random.Generator] = []
        self.states: list[State] = []

    @property
    def steps_done(self) -> int:
        return self.therm_done + self.prod_done

    def start(self, phi0: np.ndarray | None) -> None:
        seeds = np.random.SeedSequence(self.run.seed).spawn(self.run.n_chains)
        self.rngs = [np.random.Generator(np.random.PCG64(s)) for s in seeds]
        starts = _initial_fields(phi0, self.run.n_chains, self.sampler.theory.shape)
        self.states = [self.sampler.init(starts[c], self.rngs[c]) for c in range(len(starts))]

    def restore(self, path: Path) -> None:
        meta, arrays = load_checkpoint(path)
        check_compatible(meta, self.sampler, self.run)
        self.sampler.set_settings(meta["settings"])
        self.adapt_k = int(meta["adapt_k"])
        self.therm_done = int(meta["therm_done"])
        self.prod_done = int(meta["prod_done"])
        if self.prod_done > self.run.n_steps:
            raise ValueError(
                f"the checkpoint already has {self.prod_done} production steps, more than "
                f"n_steps = {self.run.n_steps}"
            )
        d = self.prod_done // self.run.thin
        self.obs[:, :d] = arrays["observables"]
        self.stats[:, :d] = arrays["stats"]
        self.work, self.work_therm = meta["work"], meta["work_therm"]
        self.chain_work = meta["chain_work"]
        self.chain_wall = list(meta["chain_wall_time_s"])
        self.chain_therm = list(meta["chain_therm_s"])
        # checkpoints from before parallel chains ran the chains one by one: elapsed == summed
        self.wall_time = float(meta.get("wall_time_s", sum(self.chain_wall)))
        self.therm_wall_time = float(meta.get("therm_wall_time_s", sum(self.chain_therm)))
        self.rngs = [rng_from_state(s) for s in meta["rng_states"]]
        self.states = []
        for c in range(self.run.n_chains):
            aux = {
                k.removeprefix("aux_"): np.ascontiguousarray(v[c])
                for k, v in arrays.items()
                if k.startswith("aux_")
            }
            phi = np.ascontiguousarray(arrays["phi"][c])
            self.states.append(State(phi, np.ascontiguousarray(arrays["scalars"][c]), aux))

    def save(self, path: Path) -> None:
        sampler, run = self.sampler, self.run
        meta = {
            "format": CHECKPOINT_FORMAT,
            "sampler": sampler.kind,
            "theory": sampler.theory.to_dict(),
            "seed": run.seed,
            "n_chains": run.n_chains,
            "thin": run.thin,
            "n_therm": run.n_therm,
            "n_steps_requested": run.n_steps,
            "initial_settings": self.initial_settings,
            "settings": sampler.settings_dict(),
            "adapt_k": self.adapt_k,
            "therm_done": self.therm_done,
            "prod_done": self.prod_done,
            "rng_states": [r.bit_generator.state for r in self.rngs],
            "work": self.work,
            "work_therm": self.work_therm,
            "chain_work": self.chain_work,
            "chain_wall_time_s": self.chain_wall,
            "chain_therm_s": self.chain_therm,
            "wall_time_s": self.wall_time,
            "therm_wall_time_s": self.therm_wall_time,
            "compile_time_s": self.compile_time,
            "versions": versions(),
        }
        d = self.prod_done // run.thin
        arrays = {
            "observables": self.obs[:, :d],
            "stats": self.stats[:, :d],
            "phi": np.stack([s.phi for s in self.states]),
            "scalars": np.stack([s.scalars for s in self.states]),
        }
        for key in self.states[0].aux:
            arrays[f"aux_{key}"] = np.stack([s.aux[key] for s in self.states])
        save_checkpoint(path, meta, arrays)

    def each_chain(self, task: Callable[[int], Any], n: int, bar: Any) -> list[Any]:
        """``[task(c) for c in chains]``, in the thread pool if there is one; all finish first.

        An exception of a task is raised (for the first failing chain in chain order) only once
        every chain's task has ended, so no thread still writes into the arrays.
        """
        if self.pool is None:
            out = []
            for c in range(self.run.n_chains):
                out.append(task(c))
                bar.update(n)
            return out
        futures: list[Future] = [self.pool.submit(task, c) for c in range(self.run.n_chains)]
        for _ in as_completed(futures):
            bar.update(n)
        return [f.result() for f in futures]

    def advance(self, n: int, thin: int, obs: np.ndarray, bar: Any) -> tuple[list[float], Any]:
        """Advance every chain by ``n`` steps: (seconds per chain, stats (chains, n, stats)).

        ``obs`` (chains, draws, N_OBS) receives the recorded draws.  A sampler with
        ``batched_chains`` advances all chains in one :meth:`run_block_batched` call (its
        seconds are shared equally among the chains); otherwise one ``run_block`` per chain.
        """
        sampler = self.sampler
        stats = np.empty((self.run.n_chains, n, len(sampler.stat_names)))
        if getattr(sampler, "batched_chains", False):
            t1 = time.perf_counter()
            sampler.run_block_batched(self.states, n, thin, self.rngs, obs, stats)
            bar.update(n * self.run.n_chains)
            return [(time.perf_counter() - t1) / self.run.n_chains] * self.run.n_chains, stats

        def task(c: int) -> float:
            t1 = time.perf_counter()
            sampler.run_block(self.states[c], n, thin, self.rngs[c], obs[c], stats[c])
            return time.perf_counter() - t1

        return self.each_chain(task, n, bar), stats

    def therm_block(self, n: int, adapt: bool, bar: Any) -> None:
        sampler = self.sampler
        tune_col = sampler.stat_names.index(sampler.tune_stat)
        t0 = time.perf_counter()
        # thin > n: nothing is recorded during thermalization
        seconds, stats = self.advance(n, n + 1, np.empty((self.run.n_chains, 0, N_OBS)), bar)
        self.therm_wall_time += time.perf_counter() - t0
        acc = 0.0
        for c in range(self.run.n_chains):
            self.chain_therm[c] += seconds[c]
            add_work(self.work_therm, sampler.work(stats[c]))
            acc += float(np.mean(stats[c, :, tune_col]))
        if adapt:
            sampler.adapt(acc / self.run.n_chains, self.adapt_k)
            self.adapt_k += 1
        self.therm_done += n

    def production_block(self, n: int, bar: Any) -> None:
        sampler, thin = self.sampler, self.run.thin
        d0, d1 = self.prod_done // thin, (self.prod_done + n) // thin
        t0 = time.perf_counter()
        seconds, stats = self.advance(n, thin, self.obs[:, d0:d1], bar)
        self.wall_time += time.perf_counter() - t0
        for c in range(self.run.n_chains):
            self.stats[c, d0:d1] = thin_stats(stats[c], thin)
            block_work = sampler.work(stats[c])
            self.chain_wall[c] += seconds[c]
            add_work(self.work, block_work)
            add_work(self.chain_work[c], block_work)
        self.prod_done += n

    def result(self, config: Mapping[str, Any] | None, workers: int) -> RunResult:
        sampler, run = self.sampler, self.run
        return RunResult(
            sampler=sampler.kind,
            theory=sampler.theory,
            observables={n: self.obs[:, :, k].copy() for k, n in enumerate(OBSERVABLE_NAMES)},
            stats={n: self.stats[:, :, k].copy() for k, n in enumerate(sampler.stat_names)},
            settings=sampler.settings_dict(),
            initial_settings=dict(self.initial_settings),
            work=dict(self.work),
            work_therm=dict(self.work_therm),
            wall_time_s=float(self.wall_time),
            core_time_s=float(sum(self.chain_wall)),
            therm_time_s=float(self.therm_wall_time),
            therm_core_time_s=float(sum(self.chain_therm)),
            compile_time_s=float(self.compile_time),
            n_steps=run.n_steps,
            n_therm=run.n_therm,
            thin=run.thin,
            n_chains=run.n_chains,
            seed=run.seed,
            chain_wall_time_s=[float(x) for x in self.chain_wall],
            chain_work=[dict(w) for w in self.chain_work],
            final_phi=np.stack([s.phi.copy() for s in self.states]),
            versions=versions(),
            config=dict(config) if config is not None else None,
            workers=workers,
        )


def run_sampler(
    sampler: Sampler,
    run: RunSettings,
    *,
    phi0: np.ndarray | None = None,
    progress: bool | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    config: Mapping[str, Any] | None = None,
    observer: Observer | None = None,
) -> RunResult:
    """Run ``run.n_chains`` chains of ``sampler``: thermalize (and tune), then record.

    Parameters
    ----------
    sampler : Sampler
        The sampler; its settings are tuned in place during thermalization.
    run : RunSettings
        Lengths, thinning, chains, master seed, checkpoint interval and block size.
    phi0 : ndarray, optional
        Starting field, shape (L, L) for all chains or (n_chains, L, L); zeros if None.
    progress : bool, optional
        Show a tqdm bar on stderr; None: only if stderr is a terminal.
    checkpoint_path : str or Path, optional
        Checkpoint file (written at the end, every ``run.checkpoint_every`` steps or
        ``run.checkpoint_interval_s`` seconds, and on SIGINT/SIGTERM).
    resume : bool
        Continue from ``checkpoint_path`` (which must exist and match this run).
    config : mapping, optional
        The configuration to store with the result.
    observer : callable, optional
        Called after every block with a :class:`BlockReport`.

    Returns
    -------
    RunResult

    Raises
    ------
    RunInterrupted
        After SIGINT or SIGTERM, once the checkpoint (if any) is saved.
    ValueError
        For a checkpoint that does not match the run.
    """
    if not isinstance(run, RunSettings):
        raise TypeError(f"run must be RunSettings, got {type(run).__name__}")
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if resume and ckpt is None:
        raise ValueError("resume=True needs a checkpoint_path")
    chains = _Chains(sampler, run)
    t0 = time.perf_counter()
    sampler.warmup()
    chains.compile_time = time.perf_counter() - t0
    if resume:
        assert ckpt is not None
        chains.restore(ckpt)
    else:
        chains.start(phi0)

    block = _auto_block_size(sampler, run.thin, run.block_size)
    tunes = sampler.tuned_setting is not None and bool(getattr(sampler.settings, "tune", False))
    total = run.n_therm + run.n_steps
    saved_at = -1
    last_ckpt = chains.steps_done
    last_save_time = time.monotonic()

    def save() -> None:
        nonlocal saved_at, last_save_time
        if ckpt is not None and saved_at != chains.steps_done:
            chains.save(ckpt)
            saved_at = chains.steps_done
            last_save_time = time.monotonic()

    def after_block(phase: str, n: int, stop: StopRequest) -> None:
        nonlocal last_ckpt
        if run.checkpoint_every and chains.steps_done - last_ckpt >= run.checkpoint_every:
            save()
            last_ckpt = chains.steps_done
        elapsed = time.monotonic() - last_save_time
        if run.checkpoint_interval_s and elapsed >= run.checkpoint_interval_s:
            save()
        if observer is not None:
            settings = sampler.settings_dict()
            observer(BlockReport(phase, chains.steps_done, total, n, settings, chains.states))
        if stop.requested:
            save()
            raise RunInterrupted(ckpt, chains.steps_done, stop.signal_name)

    bars = sys.stderr.isatty() if progress is None else bool(progress)
    # without bars, and unless told to be quiet (progress=False), one line per phase on
    # stderr, so that a run whose stderr goes to a log file still shows it is alive
    log = _PhaseLog(f"{sampler.kind} L={sampler.theory.L}", progress is None and not bars)
    bar = tqdm(
        total=run.n_chains * total,
        initial=run.n_chains * chains.steps_done,
        disable=not bars,
        unit="step",
        desc=f"{sampler.kind} L={sampler.theory.L}",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    workers = run.resolved_workers() if sampler.parallel_chains else 1
    if workers > 1:
        chains.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chain")
    try:
        with StopRequest("finishing the current block and saving (send it again to abort)") as stop:
            if chains.therm_done < run.n_therm:
                log.start(f"thermalization, {run.n_therm} steps x {run.n_chains} chains")
            while chains.therm_done < run.n_therm:
                n, adapt = _next_therm_block(chains.therm_done, run.n_therm, tunes, block)
                chains.therm_block(n, adapt, bar)
                after_block("therm", n, stop)
            if chains.prod_done < run.n_steps:
                log.start(f"production, {run.n_steps} steps x {run.n_chains} chains")
            while chains.prod_done < run.n_steps:
                n = min(block, run.n_steps - chains.prod_done)
                chains.production_block(n, bar)
                after_block("production", n, stop)
            log.start("done")
            save()
    finally:
        if chains.pool is not None:
            # after a second Ctrl-C (or an error) chains not yet started in this block are
            # dropped; the running ones cannot be stopped inside compiled code, so wait for
            # them rather than leave threads writing (nothing is saved after an abort)
            chains.pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return chains.result(config, workers)
