"""Warm starts: initialize a new flow with the weights of a trained one (e.g. a smaller L).

A flow trained on one lattice can seed training on another only when every parameter has the
same shape on both: true for convolutional conditioners and the cnf family's local kernels
(they act locally) and a global rescaling, false for the dense conditioners of
arXiv:2112.15532, whose layers see all V/2 passive sites.  The cnf family's whole-torus kernels
(one weight per displacement orbit of the torus) are first extended to the larger lattice by
:func:`lattice_samplers.flows.cnf_global.extend_weights` (shared orbits keep their values, new
ones start at zero).  Anything else that changes the function class (activation, coupling kinds,
equivariance, dtype, ...) must match too; the lattice size and hidden widths need not, as long
as the shapes agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lattice_samplers.flows.checkpoint import (
    CheckpointError,
    check_compatible,
    checkpoint_theory,
    read_checkpoint,
)
from lattice_samplers.flows.cnf_global import GlobalCNFLayer, extend_weights
from lattice_samplers.flows.model import Flow, flow_from_arch
from lattice_samplers.flows.settings import architecture_key, flow_family
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "init_from_checkpoint",
    "init_from_flow",
    "load_matching_weights",
    "retarget_checkpoint",
]

#: Architecture entries that may differ between a warm start's source and target: their
#: effect, if any, shows up in the parameter shapes, which are checked one by one; the exact
#: free-field base (h, c2, m2) is no parameter but is rebuilt for the new target theory.
_MAY_DIFFER = ("L", "hidden", "free_field_m2", "free_field_h", "free_field_c2")


def load_matching_weights(
    flow: Flow, arch: dict[str, Any], state: dict[str, torch.Tensor], source: str
) -> Flow:
    """Copy ``state`` into ``flow`` if the architectures agree and every shape matches.

    Parameters
    ----------
    flow : Flow
        The new model (changed in place and returned).
    arch : dict
        The resolved architecture the weights were trained with.
    state : dict of str to torch.Tensor
        The trained state dict.
    source : str
        Where the weights come from, for messages.

    Raises
    ------
    CheckpointError
        One line naming the first architecture entry or parameter that does not fit.
    """
    have, want = architecture_key(arch), architecture_key(flow.arch)
    if flow_family(have) != flow_family(want):
        raise CheckpointError(
            f"cannot warm-start from {source}: it is a {flow_family(have)} flow, "
            f"this is a {flow_family(want)} flow"
        )
    for key in sorted(set(have) | set(want)):
        if key not in _MAY_DIFFER and have.get(key) != want.get(key):
            raise CheckpointError(
                f"cannot warm-start from {source}: flow setting {key} is "
                f"{have.get(key)!r} there, {want.get(key)!r} here"
            )
    state = _extend_global_kernels(flow, arch, state, source)
    target = flow.state_dict()
    for name, value in target.items():
        if name not in state:
            raise CheckpointError(f"cannot warm-start from {source}: it has no parameter {name}")
        if tuple(state[name].shape) != tuple(value.shape):
            raise CheckpointError(
                f"cannot warm-start from {source}: parameter {name} has shape "
                f"{tuple(state[name].shape)} there (L = {arch.get('L')}) but "
                f"{tuple(value.shape)} here (L = {flow.L}); the architecture's shapes "
                "depend on L (use a conv conditioner for warm starts across L)"
            )
    extra = [name for name in state if name not in target]
    if extra:
        raise CheckpointError(
            f"cannot warm-start from {source}: its parameter {extra[0]} has no counterpart here"
        )
    with torch.no_grad():
        flow.load_state_dict({k: v.to(device=target[k].device) for k, v in state.items()})
    return flow


def _extend_global_kernels(
    flow: Flow, arch: dict[str, Any], state: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """``state`` with the whole-torus kernel weights carried from the source's L to the flow's.

    Only the ``cnf`` family's global design has weights per torus orbit (their number grows
    with L); :func:`lattice_samplers.flows.cnf_global.extend_weights` states the rule.
    """
    state = dict(state)
    for prefix, module in flow.named_modules():
        if isinstance(module, GlobalCNFLayer):
            name = f"{prefix}.weight" if prefix else "weight"
            if name not in state:
                continue  # reported as a missing parameter below
            try:
                state[name] = extend_weights(state[name], int(arch["L"]), flow.L)
            except ValueError as exc:
                raise CheckpointError(f"cannot warm-start from {source}: {exc}") from None
    return state


def init_from_checkpoint(flow: Flow, path: str | Path) -> Flow:
    """Load a checkpoint's weights into ``flow`` (built for any L from the same ``[flow]``).

    Only the weights are taken: optimizer state, schedule and history start afresh.

    Raises
    ------
    CheckpointError
        A missing or foreign file, another architecture, or a parameter of another shape
        (one line naming the first).
    """
    data = read_checkpoint(path)
    return load_matching_weights(flow, data["arch"], data["model"], str(path))


def init_from_flow(flow: Flow, source: Flow) -> Flow:
    """Copy the weights of a trained ``source`` flow into ``flow`` (see init_from_checkpoint)."""
    state = {k: v.detach().cpu() for k, v in source.state_dict().items()}
    return load_matching_weights(flow, dict(source.arch), state, f"the L = {source.L} flow")


def retarget_checkpoint(data: dict[str, Any], theory: Phi4Theory, source: str) -> dict[str, Any]:
    """A checkpoint's contents made usable as a proposal for ``theory`` (another beta or L).

    An independence sampler (``flow``, ``flow_hmc``) stays exact for any proposal, so a flow
    trained at another point of its theory is a valid, if worse, proposal.  The same
    parametrization is required (the field's normalization).  Another L needs weights that
    transfer (:func:`load_matching_weights`: the cnf family, conv couplings); the flow keeps
    its trained architecture (free-field base included), rebuilt at the new L.

    Returns
    -------
    dict
        ``data`` itself when the theory is the stored one; else a copy whose ``arch``,
        ``model`` and ``n_parameters`` are for ``theory.L`` and whose ``trained_for`` is
        ``{"L": ..., <couplings>}`` of the stored theory.

    Raises
    ------
    CheckpointError
        One line: another parametrization, or weights that cannot go to the new L.
    """
    check_compatible(data, theory, where=source, any_couplings=True)
    stored = checkpoint_theory(data)
    if stored.L == theory.L and dict(stored.couplings) == dict(theory.couplings):
        return data
    out = dict(data)
    out["trained_for"] = {"L": stored.L, **{k: float(v) for k, v in stored.couplings.items()}}
    if stored.L != theory.L:
        arch = {**data["arch"], "L": theory.L}
        flow = flow_from_arch(arch)
        if flow_family(arch) != "cnf" and arch.get("conditioner") != "conv":
            raise CheckpointError(
                f"{source} is for L = {stored.L}, not {theory.L}, and its "
                f"{flow_family(arch)} flow's weights depend on L (only cnf and conv flows transfer)"
            )
        load_matching_weights(flow, data["arch"], data["model"], source)
        out["arch"] = dict(flow.arch)
        out["model"] = {k: v.detach().clone() for k, v in flow.state_dict().items()}
        out["n_parameters"] = flow.n_parameters
    return out
