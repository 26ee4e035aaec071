"""Flow checkpoints: model weights plus the metadata that decides whether they can be reused.

A checkpoint is one ``torch.save`` file holding plain data (loaded with ``weights_only=True``):

* ``theory``: :meth:`Phi4Theory.to_dict` (L, parametrization, couplings, hopping form); format
  version 1 kept the couplings in a ``couplings`` sub-dict, which :meth:`Phi4Theory.from_dict`
  also reads;
* ``arch``: the resolved architecture (``resolve`` of the family's settings class, see
  :mod:`lattice_samplers.flows.settings`), ``flow_config`` as given;
* ``model``: the state dict; ``n_parameters``; ``versions`` (from
  :func:`lattice_samplers.records.versions`, plus torch);
* ``train``: optional trainer state (step, optimizer, scheduler, RNG states, history).

Loading refuses, with a one-line :class:`CheckpointError` (a ``ValueError``), a missing or
foreign file, a different lattice size, theory or architecture.  Files are written with
:func:`lattice_samplers.records.atomic_write`, so an interrupted save never destroys the
previous checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import lattice_samplers
from lattice_samplers import records
from lattice_samplers.flows.model import Flow, flow_from_arch
from lattice_samplers.flows.settings import FlowSettings, architecture_key, flow_family
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "check_compatible",
    "checkpoint_theory",
    "load_flow",
    "read_checkpoint",
    "save_checkpoint",
    "versions",
]

FORMAT = "lattice_samplers.flow_checkpoint"
#: Written now; 1 (couplings in a ``theory.couplings`` sub-dict) is still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or incompatible (reported as one line)."""


def versions() -> dict[str, str]:
    """Versions recorded in checkpoints.

    :func:`lattice_samplers.records.versions` plus torch and this package (also when it is not
    installed as a distribution).
    """
    return {
        **records.versions(),
        "lattice_samplers": lattice_samplers.__version__,
        "torch": str(torch.__version__),
    }


def checkpoint_theory(data: dict[str, Any]) -> Phi4Theory:
    """The theory a checkpoint was trained for (either record format)."""
    return Phi4Theory.from_dict(data["theory"])


def save_checkpoint(
    path: str | Path,
    flow: Flow,
    theory: Phi4Theory,
    flow_config: FlowSettings | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; return its path.

    Parameters
    ----------
    path : str or Path
        Target file (its folder must exist).
    flow : Flow
        The model (weights are stored on the CPU in the model's dtype).
    theory : Phi4Theory
        The theory the flow was trained for.
    flow_config : CouplingFlowSettings or CNFSettings, optional
        The config as given (stored for reference; ``flow.arch`` is what is checked).
    train_state : dict, optional
        Trainer state (see :meth:`lattice_samplers.flows.train.Trainer.state_dict`).
    """
    path = Path(path)
    if flow.L != theory.L:
        raise CheckpointError(f"flow is for L = {flow.L} but the theory has L = {theory.L}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "theory": theory.to_dict(),
        "L": flow.L,
        "arch": dict(flow.arch),
        "flow_config": flow_config.to_dict() if flow_config is not None else None,
        "n_parameters": flow.n_parameters,
        "model": {k: v.detach().cpu().clone() for k, v in flow.state_dict().items()},
        "train": train_state,
    }
    records.atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's contents (CPU tensors) after checking that it is one.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, or not a flow checkpoint of a known version.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no flow checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises several types for foreign or damaged files
        raise CheckpointError(
            f"{path} is not a readable flow checkpoint ({_describe_file(path)})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lattice_samplers flow checkpoint")
    if data.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has checkpoint format version {data.get('format_version')}, "
            f"this version reads {', '.join(map(str, READABLE_VERSIONS))}"
        )
    return data


def _describe_file(path: Path) -> str:
    """What a file that torch cannot load looks like, in a few words (for error messages)."""
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "a zip archive torch cannot read: damaged, or not written by torch.save"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "an unrecognized or damaged binary file"
    return "it is a text file; a checkpoint is the checkpoint.pt that train writes"


def check_compatible(
    data: dict[str, Any],
    theory: Phi4Theory | None = None,
    arch: dict[str, Any] | None = None,
    where: str = "checkpoint",
    any_couplings: bool = False,
) -> None:
    """Raise :class:`CheckpointError` if a checkpoint does not match a theory or architecture.

    The lattice size is checked first (the commonest mistake), then the theory (same
    parametrization and couplings: the flow's output is in that field normalization), then
    the flow family, then every architecture entry that changes the function class.  With
    ``any_couplings`` only the parametrization must match (a proposal for an exact sampler may
    come from another point of the same theory; the caller handles another L).
    """
    if theory is not None and any_couplings:
        stored = checkpoint_theory(data)
        if stored.parametrization != theory.parametrization:
            raise CheckpointError(
                f"{where} was trained in the {stored.parametrization} parametrization, "
                f"not {theory.parametrization}"
            )
    elif theory is not None:
        stored = checkpoint_theory(data)
        if stored.L != theory.L:
            raise CheckpointError(f"{where} is for lattice size L = {stored.L}, not L = {theory.L}")
        if stored.parametrization != theory.parametrization or dict(stored.couplings) != dict(
            theory.couplings
        ):
            raise CheckpointError(
                f"{where} was trained for {stored.parametrization} "
                f"{_fmt(stored.couplings)}, not {theory.parametrization} "
                f"{_fmt(theory.couplings)}"
            )
    if arch is not None:
        want, have = architecture_key(arch), architecture_key(data["arch"])
        if int(have["L"]) != int(want["L"]):
            raise CheckpointError(f"{where} is for lattice size L = {have['L']}, not {want['L']}")
        if flow_family(have) != flow_family(want):
            raise CheckpointError(
                f"{where} holds a {flow_family(have)} flow, not the {flow_family(want)} "
                "flow configured"
            )
        diff = [k for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
        if diff:
            parts = ", ".join(f"{k}: {have.get(k)!r} vs {want.get(k)!r}" for k in diff[:4])
            raise CheckpointError(f"{where} has a different flow architecture ({parts})")


def _fmt(c: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k}={v:g}" for k, v in c.items()) + ")"


def load_flow(
    path: str | Path | dict[str, Any],
    theory: Phi4Theory | None = None,
    device: str = "cpu",
    flow_config: FlowSettings | None = None,
) -> Flow:
    """Load a trained flow, refusing one made for another theory or architecture.

    Parameters
    ----------
    path : str or Path or dict
        A checkpoint file or a training output folder (holding ``checkpoint.pt``), or the
        contents of one already read with :func:`read_checkpoint` (read once, used twice).
    theory : Phi4Theory, optional
        If given, the checkpoint must be for this theory (same L, parametrization, couplings).
    device : str
        Where to put the model.
    flow_config : CouplingFlowSettings or CNFSettings, optional
        If given, the stored architecture must equal its resolution for the stored theory.

    Raises
    ------
    CheckpointError
        Missing or foreign file, or a mismatch (one-line message).
    """
    data = path if isinstance(path, dict) else read_checkpoint(path)
    path = "checkpoint" if isinstance(path, dict) else path
    arch = None
    if flow_config is not None:
        arch = flow_config.resolve(theory or checkpoint_theory(data))
    check_compatible(data, theory, arch, where=str(path))
    flow = flow_from_arch(data["arch"], device=device)
    try:
        flow.load_state_dict(data["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: weights do not fit the stored architecture ({first})"
        ) from None
    return flow.eval()
