"""Flow training on several processes or devices: the torch.distributed plumbing.

Training runs under ``torchrun`` (see ``docs/ddp.md``), which starts one process per device
and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``.  :func:`session` creates the process group from them: the ``gloo`` backend
for CPU training, ``nccl`` for CUDA, where process ``LOCAL_RANK`` of a node trains on
``cuda:LOCAL_RANK``.  Without torchrun (``WORLD_SIZE`` unset or 1) nothing is initialized and
training is the ordinary single-process training.

How :class:`~lattice_samplers.flows.train.Trainer` shares the work (data parallel):

* every process holds the same model, wrapped in ``DistributedDataParallel``, which averages
  the gradients over the processes;
* process r draws ``batch_size / world_size`` prior samples per step from its own prior
  stream r (streams come from ``SeedSequence.spawn``), so the combined batch of a step is
  ``batch_size`` samples and the averaged gradient is that of the loss over the combined batch;
* the per-sample log weights are gathered, so every process computes the same batch metrics
  (acceptance, ``ess_kish``) over the combined batch and holds the same history;
* decisions that could differ between processes are taken by rank 0 and broadcast: held-out
  evaluation (rank 0 evaluates), the training clock (for ``time_budget_s``), reading a
  checkpoint; a non-finite loss is seen by all processes, since the loss is gathered;
* rank 0 alone writes checkpoints, history, summary and figures.

A single process with ``prior_streams = world_size`` draws the same samples, so it reproduces
a distributed run up to the order of floating-point reductions.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lattice_samplers.flows.model import check_device

__all__ = [
    "DistContext",
    "all_gather_objects",
    "all_gather_rows",
    "backend_for",
    "broadcast_floats",
    "broadcast_object",
    "current",
    "env_world_size",
    "init_from_env",
    "on_main",
    "process_device",
    "session",
    "wrap_model",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in an initialized process group.

    Attributes
    ----------
    rank, world_size : int
        This process's rank and the number of processes.
    local_rank, local_world_size : int
        Rank among, and number of, the processes on this node.
    backend : str
        ``gloo`` or ``nccl``.
    device : torch.device
        The device this process trains on (``cuda:LOCAL_RANK`` with CUDA).
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that evaluates, decides and writes."""
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Device of the tensors passed to collectives (CUDA for nccl, else the CPU)."""
        return self.device if self.backend == "nccl" else torch.device("cpu")


def env_world_size() -> int:
    """Number of processes torchrun started (``WORLD_SIZE``; 1 when not under torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def backend_for(device: str | torch.device) -> str:
    """The collective backend for a training device: ``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def process_device(device: str, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank`` for a configured device.

    ``cuda`` means ``cuda:LOCAL_RANK`` (one device per process); an explicit CUDA index is
    refused, since several processes would share it.

    Raises
    ------
    ValueError
        For an unknown or unavailable device, an explicit CUDA index, or fewer CUDA devices
        than processes on this node.
    """
    dev = check_device(device)
    if dev.type != "cuda":
        return dev
    if dev.index is not None:
        raise ValueError(
            f"device {device!r}: under torchrun use device = 'cuda'; "
            "each process takes cuda:LOCAL_RANK"
        )
    n = torch.cuda.device_count()
    if local_rank >= n:
        raise ValueError(f"process with LOCAL_RANK {local_rank} has no CUDA device ({n} visible)")
    return torch.device("cuda", local_rank)


def current(device: str = "cpu") -> DistContext | None:
    """The context of an initialized process group of several processes, else None.

    Parameters
    ----------
    device : str
        The configured training device (``cpu`` or ``cuda``).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return DistContext(
        rank=rank,
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        backend=str(dist.get_backend()),
        device=process_device(device, local_rank),
    )


def init_from_env(device: str = "cpu", timeout_s: float | None = None) -> DistContext | None:
    """Create the process group from torchrun's environment; None when not under torchrun.

    Parameters
    ----------
    device : str
        The configured training device: ``cpu`` (gloo) or ``cuda`` (nccl, ``cuda:LOCAL_RANK``).
    timeout_s : float, optional
        How long a collective may wait for the other processes (torch's default if None).

    Returns
    -------
    DistContext or None
        None if ``WORLD_SIZE`` is unset or 1 and no group is initialized.
    """
    if dist.is_available() and dist.is_initialized():
        return current(device)
    if env_world_size() < 2:
        return None
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = process_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    kwargs: dict[str, Any] = {}
    if timeout_s is not None:
        kwargs["timeout"] = timedelta(seconds=timeout_s)
    dist.init_process_group(backend=backend_for(dev), **kwargs)
    return current(device)


@contextlib.contextmanager
def session(device: str = "cpu", timeout_s: float | None = None) -> Iterator[DistContext | None]:
    """Context manager: :func:`init_from_env` on entry, destroy the group it made on exit."""
    made = not (dist.is_available() and dist.is_initialized())
    ctx = init_from_env(device, timeout_s)
    owned = made and ctx is not None
    try:
        yield ctx
    except BaseException:
        if owned and dist.is_initialized():
            dist.destroy_process_group()
        raise
    if owned and dist.is_initialized():
        # rank 0 hosts the rendezvous store: tearing it down while another rank is still in
        # its own teardown aborted that rank now and then ("terminate called without an
        # active exception", SIGABRT); a barrier lets every rank finish first
        dist.barrier()
        dist.destroy_process_group()


# ---------------------------------------------------------------------- collectives
def wrap_model(module: torch.nn.Module, ctx: DistContext) -> DistributedDataParallel:
    """Wrap a model in ``DistributedDataParallel`` (gradients averaged over the processes).

    Buffers are not re-broadcast every step: a flow's buffers are constants.
    """
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # torch >= 2.13 renamed the option (and warns about the old name); torch >= 2.2 is allowed
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(module, device_ids=device_ids, **{no_sync: False})


def all_gather_rows(row: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Stack equal-length 1-d tensors from every process into ``(world_size, n)``, rank order."""
    row = row.to(ctx.comm_device).contiguous()
    parts = [torch.empty_like(row) for _ in range(ctx.world_size)]
    dist.all_gather(parts, row)
    return torch.stack(parts)


def broadcast_floats(values: Sequence[float], ctx: DistContext, src: int = 0) -> list[float]:
    """Rank ``src``'s values on every process (float64, exact)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.comm_device)
    dist.broadcast(t, src=src)
    return t.tolist()


def broadcast_object(obj: T, ctx: DistContext, src: int = 0) -> T:
    """Rank ``src``'s picklable object on every process."""
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=ctx.comm_device)
    return box[0]


def all_gather_objects(obj: T, ctx: DistContext) -> list[T]:
    """Every process's picklable object, in rank order, on every process."""
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], T], ctx: DistContext | None) -> T:
    """Run ``fn`` on rank 0 and give its result, or raise its exception, on every process.

    Without a process group ``fn`` just runs.  Sharing the exception keeps the processes
    together: none waits forever for a rank 0 that failed.
    """
    if ctx is None:
        return fn()
    payload: tuple[bool, Any] = (True, None)
    if ctx.is_main:
        try:
            payload = (True, fn())
        except Exception as exc:  # re-raised below on every process
            payload = (False, exc)
    ok, value = broadcast_object(payload, ctx)
    if not ok:
        raise value
    return value
