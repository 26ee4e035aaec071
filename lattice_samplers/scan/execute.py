"""Running tasks: one task in a worker, and the serial, process-pool and Dask backends.

Every backend runs :func:`execute_task` on a payload (a task, its job function and the scan
folder).  The task claims itself first (a claim file created exclusively), so two scans on one
folder never run a task twice; it writes its record last, with the digests of its outputs.
An interrupt (SIGINT, SIGTERM) cancels queued tasks and terminates running workers at once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from lattice_samplers.config import ConfigError
from lattice_samplers.records import environment, json_default, json_safe, now, write_json
from lattice_samplers.scan.plan import ScanPlan, Task, one_line, resolve_paths
from lattice_samplers.scan.taskfiles import (
    TASK_FORMAT,
    check_task_file,
    checksum,
    claim_task,
    output_digests,
    release_claim,
    task_paths,
)

__all__ = [
    "BACKENDS",
    "SCHEDULER_TIMEOUT_S",
    "THREAD_ENV",
    "ScanInterrupted",
    "default_workers",
    "execute_task",
    "interrupts",
    "make_payload",
    "relative_to_scan",
    "run_dask",
    "run_process",
    "run_serial",
    "dask_client",
    "worker_environment",
]

#: Environment that makes numba, OpenMP and BLAS single-threaded in a fresh process.
THREAD_ENV: Mapping[str, str] = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}

#: Default seconds to wait for an external Dask scheduler before giving up.
SCHEDULER_TIMEOUT_S = 10.0

BACKENDS: tuple[str, ...] = ("serial", "process", "dask")

OnDone = Callable[[dict[str, Any]], None]


class ScanInterrupted(KeyboardInterrupt):
    """A scan stopped by SIGINT or SIGTERM; ``result`` holds the tasks done so far.

    Attributes
    ----------
    signame : str
        ``"SIGINT"`` or ``"SIGTERM"``.
    result : ScanResult or None
        Set by :func:`~lattice_samplers.scan.engine.run_scan` once the summary is written.
    """

    def __init__(self, signame: str = "SIGINT") -> None:
        super().__init__(signame)
        self.signame = signame
        self.result: Any = None

    @property
    def exit_status(self) -> int:
        """The conventional exit status, 128 + the signal number."""
        return 128 + int(getattr(signal, self.signame, signal.SIGINT))


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """While the scan runs, SIGINT and SIGTERM raise :class:`ScanInterrupted`.

    The first signal raises in the main thread, so the scan can cancel its tasks and write
    its summary; a second one during that cleanup terminates this process's worker processes
    and exits at once (status 128 + signal), so nothing ever waits on a hung worker.  After a
    signal the handlers are set to ignore further ones when the block ends (the process is
    about to report and exit).  Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            for child in multiprocessing.active_children():
                with contextlib.suppress(OSError):
                    child.kill()
            name = signal.Signals(signum).name
            os.write(2, f"lattice-samplers scan: {name} again, stopped at once\n".encode())
            os._exit(128 + signum)
        fired.append(signum)
        raise ScanInterrupted(signal.Signals(signum).name)

    saved = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, signal.SIG_IGN if fired else h)


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Run the enclosed code single-threaded; restore thread counts of this process after.

    Environment variables only act on libraries imported later (always the case in a fresh
    worker, which gets them before it starts); numba and torch, if already loaded, are set
    directly (numba's setting is per thread, hence per task).  ``NUMBA_NUM_THREADS`` is left
    alone once numba is loaded: numba re-reads it at every compilation and refuses a value
    other than the one its thread pool was launched with.
    """
    keys = [k for k in THREAD_ENV if not (k == "NUMBA_NUM_THREADS" and "numba" in sys.modules)]
    saved_env = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: THREAD_ENV[k] for k in keys})
    restore: list[Callable[[], None]] = []
    numba = sys.modules.get("numba")
    if numba is not None:
        n = numba.get_num_threads()
        numba.set_num_threads(1)
        restore.append(lambda: numba.set_num_threads(n))
    torch = sys.modules.get("torch")
    if torch is not None:
        t = torch.get_num_threads()
        torch.set_num_threads(1)
        restore.append(lambda: torch.set_num_threads(t))
    try:
        yield
    finally:
        for fn in restore:
            fn()
        if "numba" in sys.modules:  # loaded by the task: its thread pool keeps this value
            saved_env.pop("NUMBA_NUM_THREADS", None)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker() -> None:
    """Process-pool initializer: single-threaded, and Ctrl-C is the parent's to handle.

    A terminal sends SIGINT to the whole process group; the parent then terminates the
    workers itself, so a worker must not die half-way on its own.
    """
    os.environ.update(THREAD_ENV)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_payload(plan: ScanPlan, task: Task, out_dir: Path) -> dict[str, Any]:
    """What a worker needs to run ``task``: the task, the job function and the scan folder."""
    return {
        "task": dataclasses.asdict(task),
        "fn": plan.job.fn,
        "job": plan.job.name,
        "path_keys": list(plan.job.path_keys),
        "root_seed": plan.settings.seed,
        "out_dir": os.path.abspath(out_dir),
    }


def execute_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one task in this process, write its record, and return it with a ``status``.

    The task is claimed first; if another live process holds the claim the status is
    ``running`` and nothing runs, and if a valid record appeared meanwhile it is ``skipped``.
    A job exception is caught: the status is then ``failed`` with the traceback, no record is
    written, and ``<task_id>.error.txt`` is left for diagnosis.  Runs on any backend's worker.
    """
    task = payload["task"]
    task_id = task["task_id"]
    out_dir = Path(payload["out_dir"])
    paths = task_paths(out_dir, task_id)
    claim = claim_task(paths["claim"])
    if claim is None:
        return {"task_id": task_id, "status": "running"}
    try:
        record, _ = check_task_file(paths["record"], task_id, task["seed"])
        if record is not None:  # another scan on this folder finished it meanwhile
            return {**record, "status": "skipped"}
        return _run_claimed(payload, paths)
    finally:
        release_claim(claim)


def _run_claimed(payload: dict[str, Any], paths: dict[str, Path]) -> dict[str, Any]:
    task = payload["task"]
    started = now()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    config = resolve_paths(task["config"], payload.get("path_keys", ()), payload["out_dir"])
    try:
        with _single_threaded():
            result = payload["fn"](copy.deepcopy(config), paths["folder"])
        if not isinstance(result, dict):
            raise TypeError(f"job {payload['job']!r} returned {type(result).__name__}, not dict")
        # round trip through JSON now, so a non-serializable result fails here, as a task error
        result = json_safe(json.loads(json.dumps(result, default=json_default)))
        result = relative_to_scan(result, payload["out_dir"])
    except Exception as exc:  # noqa: BLE001 - any job failure is recorded, the scan goes on
        tb = traceback.format_exc()
        with contextlib.suppress(OSError):
            paths["error"].parent.mkdir(parents=True, exist_ok=True)
            paths["error"].write_text(tb, encoding="utf-8")
        return {
            "task_id": task["task_id"],
            "status": "failed",
            "error": f"{type(exc).__name__}: {one_line(exc)}",
            "traceback": tb,
            "wall_s": time.perf_counter() - t0,
        }
    record: dict[str, Any] = {
        "format": TASK_FORMAT,
        "task_id": task["task_id"],
        "index": task["index"],
        "job": payload["job"],
        "point": task["point"],
        "replica": task["replica"],
        "root_seed": payload["root_seed"],
        "spawn_key": list(task["spawn_key"]),
        "seed": task["seed"],
        "config": task["config"],
        "result": result,
        "outputs": output_digests(paths["folder"]),
        "timing": {
            "started": started,
            "finished": now(),
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0,
        },
        **environment(),
        "pid": os.getpid(),
        "complete": True,
    }
    record = json_safe(json.loads(json.dumps(record, default=json_default)))
    record["checksum"] = checksum(record)
    write_json(paths["record"], record)
    with contextlib.suppress(OSError):
        paths["error"].unlink(missing_ok=True)
    record["status"] = "done"
    return record


def relative_to_scan(obj: Any, out_dir: str | Path) -> Any:
    """``obj`` with every string path inside the scan folder made relative to it.

    Jobs receive absolute paths (their artifact folder, resolved path keys); a record keeps
    none: ``/abs/scan/tasks/x/flow.pt`` becomes ``tasks/x/flow.pt``.
    """
    prefix = os.path.abspath(out_dir).rstrip(os.sep) + os.sep
    if isinstance(obj, str):
        return obj[len(prefix) :] if obj.startswith(prefix) else obj
    if isinstance(obj, dict):
        return {k: relative_to_scan(v, out_dir) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relative_to_scan(v, out_dir) for v in obj]
    return obj


def default_workers(n_pending: int) -> int:
    """Worker processes by default: the usable cores, at most the pending tasks."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_pending))


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """Put THREAD_ENV into this process's environment while workers are being spawned.

    Spawned processes copy the parent's environment at start, so they see the variables
    before importing numpy, numba or torch.
    """
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(THREAD_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_serial(payloads: list[dict[str, Any]], on_done: OnDone) -> None:
    """Run the tasks one after the other in this process."""
    for p in payloads:
        on_done(execute_task(p))


def run_process(payloads: list[dict[str, Any]], on_done: OnDone, workers: int) -> None:
    """Run the tasks on a spawn-context process pool of ``workers`` processes.

    On any exception in this process (an interrupt), queued tasks are cancelled and the
    running workers terminated (killed if they do not stop within 2 s) before it propagates.
    """
    # spawn, not fork: the parent may have started numba/OpenMP threads, and forking a
    # multithreaded process can deadlock
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
    try:
        # the workers start at the first submit and copy the environment then
        with worker_environment():
            futures = {pool.submit(execute_task, p): p for p in payloads}
        for fut in as_completed(futures):
            on_done(_future_record(fut, futures[fut]))
    except BaseException:
        _terminate_pool(pool)
        raise
    pool.shutdown(wait=True)


def _terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel a pool's queued work and stop its worker processes now."""
    # the executor has no public way to stop running calls: terminate its processes
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(OSError, ValueError):
            p.terminate()
    deadline = time.monotonic() + 2.0
    for p in procs:
        with contextlib.suppress(OSError, ValueError):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1.0)


def _future_record(fut: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """The record of a finished future; a crashed worker becomes a failed task."""
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool, a killed Dask worker
        return {
            "task_id": payload["task"]["task_id"],
            "status": "failed",
            "error": f"{type(exc).__name__}: {one_line(exc)}",
            "traceback": "".join(traceback.format_exception(exc)),
            "wall_s": float("nan"),
        }


def _probe_scheduler(scheduler: str, timeout: float) -> None:
    """Check a scheduler address, and for TCP that something listens there, without a Client.

    A ``Client`` that fails to connect is left half built, and its finalizer later prints a
    traceback and waits seconds to close; checking first keeps the error to one line.

    Raises
    ------
    ConfigError
        A malformed address, or a TCP address where nothing answers within ``timeout``.
    """
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(scheduler)
        host, port = parse_host_port(location) if scheme in ("tcp", "tls") else (None, None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad Dask scheduler address {scheduler!r}: {exc}") from None
    if host is None:
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
            f"({exc.strerror or type(exc).__name__})"
        ) from None


def dask_client(workers: int, scheduler: str | None, timeout: float) -> tuple[Any, Any]:
    """Connect to ``scheduler`` or start a LocalCluster; return (client, cluster or None).

    Raises
    ------
    ConfigError
        If the scheduler cannot be reached within ``timeout`` or its address is malformed.
    """
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        _probe_scheduler(scheduler, timeout)  # a bad or dead address fails here, cleanly
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                f"({type(exc).__name__})"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"bad Dask scheduler address {scheduler!r}: {exc}") from None
        except Exception as exc:  # e.g. something that is not a Dask scheduler answered
            raise ConfigError(
                f"cannot connect to a Dask scheduler at {scheduler!r} ({type(exc).__name__}); "
                "is it a Dask scheduler?"
            ) from None
        return client, None
    with worker_environment():
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env=dict(THREAD_ENV),
        )
    try:
        client = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def run_dask(payloads: list[dict[str, Any]], on_done: OnDone, client: Any) -> None:
    """Run the tasks on a Dask cluster; an interrupt cancels every unfinished future."""
    from distributed import as_completed as dask_as_completed

    token = uuid.uuid4().hex[:8]  # keys unique per call: a reused scheduler keeps old keys
    futures = {}
    for p in payloads:
        fut = client.submit(execute_task, p, key=f"scan-{p['task']['task_id']}-{token}", pure=False)
        futures[fut.key] = (fut, p)
    try:
        for fut in dask_as_completed([f for f, _ in futures.values()], loop=client.loop):
            on_done(_future_record(fut, futures[fut.key][1]))
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel([f for f, _ in futures.values()], force=True)
        raise
