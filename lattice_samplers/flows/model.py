"""Flow models: the Flow module and one layer builder per family.

A :class:`Flow` pushes N(0, 1) noise on every site through its layers:

    z ~ N(0, 1)^V  ->  [free-field base]  ->  coupling layers (alternating parity)
                   ->  [global rescaling]  ->  phi,

    log_q(phi) = log N(z) - sum_layers log|det J_layer|.

The architecture comes from the ``[flow]`` section, one settings class per family
(:mod:`lattice_samplers.flows.settings`): the default, :class:`CNFSettings`, is the
equivariant continuous flow of arXiv:2207.00283 (free-field base -> one neural-ODE layer ->
rescaling); :class:`CouplingFlowSettings` gives the checkerboard coupling flows of
arXiv:2112.15532.  Each family has one layer builder, :func:`coupling_layers` and
:func:`cnf_layers`, which :func:`flow_from_arch` picks by the record's family.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from lattice_samplers.flows.cnf import EquivariantCNFLayer
from lattice_samplers.flows.cnf_global import GlobalCNFLayer
from lattice_samplers.flows.layers import (
    AdditiveCoupling,
    AffineCoupling,
    FlowLayer,
    FreeFieldLayer,
    GlobalRescaling,
    SplineCoupling,
)
from lattice_samplers.flows.settings import (
    FAMILIES,
    CNFSettings,
    CouplingFlowSettings,
    FlowSettings,
    flow_family,
)
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "COUPLINGS",
    "DTYPES",
    "LAYER_BUILDERS",
    "CNFSettings",
    "CouplingFlowSettings",
    "Flow",
    "FlowSettings",
    "build_flow",
    "build_layers",
    "check_device",
    "cnf_layers",
    "coupling_layers",
    "flow_from_arch",
]

#: Coupling kind -> layer class.
COUPLINGS: dict[str, type[FlowLayer]] = {
    "affine": AffineCoupling,
    "additive": AdditiveCoupling,
    "spline": SplineCoupling,
}
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def check_device(device: str) -> torch.device:
    """Validate a device string ("cpu", "cuda", "cuda:1"); one-line ValueError otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r} (use cpu or cuda)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r} (use cpu or cuda)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    return dev


class Flow(nn.Module):
    """A normalizing flow on L x L fields with a N(0, 1) prior on every site.

    Build it with :func:`build_flow`.  ``flow(z)`` maps noise to fields, ``flow.inverse(phi)``
    maps back; :meth:`sample_with_log_q` draws differentiably (training), :meth:`sample`
    draws float64 NumPy arrays (the ``Proposal`` protocol), :meth:`log_q` evaluates the
    density of given fields.

    Parameters
    ----------
    L : int
        Lattice extent.
    layers : sequence of FlowLayer
        Applied in order to the prior noise.
    arch : dict
        The resolved architecture (stored in checkpoints).
    """

    def __init__(self, L: int, layers: list[FlowLayer], arch: dict[str, Any]) -> None:
        super().__init__()
        self.L = int(L)
        self.layers = nn.ModuleList(layers)
        self.arch = dict(arch)
        # follows .to(dtype/device) so that a flow without parameters knows its dtype too
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    # ------------------------------------------------------------------ properties
    @property
    def volume(self) -> int:
        """Number of sites V = L^2."""
        return self.L * self.L

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the network."""
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        """Device of the network."""
        return self._anchor.device

    @property
    def n_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def equivariant(self) -> bool:
        """Whether every layer is Z2-equivariant (then q(-phi) = q(phi))."""
        return all(layer.equivariant for layer in self.layers)

    # ------------------------------------------------------------------ maps
    def _run(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # Runs of coupling layers stay in the checkerboard (split) layout: converting once
        # per run instead of once per layer removes the gathers/scatters between layers.
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        split_by = None  # the coupling whose to_split produced the current layout
        layers = reversed(self.layers) if inverse else self.layers
        for layer in layers:
            if layer.split_native:
                if split_by is None:
                    x, split_by = layer.to_split(x), layer
                x, ld = layer.forward_split(x, inverse)
            else:
                if split_by is not None:
                    x, split_by = split_by.from_split(x), None
                x, ld = layer.inverse(x) if inverse else layer(x)
            log_det = log_det + ld
        if split_by is not None:
            x = split_by.from_split(x)
        return x, log_det

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map noise ``(n, L, L)`` to fields; return ``(phi, sum of log|det J|)``."""
        return self._run(z, inverse=False)

    def inverse(self, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map fields back to noise; return ``(z, log|det dz/dphi|)``."""
        return self._run(phi, inverse=True)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Log N(z; 0, 1) summed over sites, shape ``(n,)``."""
        return -0.5 * (z * z).sum(dim=(-2, -1)) - 0.5 * self.volume * math.log(2.0 * math.pi)

    def prior_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw N(0, 1) noise ``(n, L, L)`` in the flow's dtype, on its device."""
        return torch.randn(
            (n, self.L, self.L), generator=generator, dtype=self.dtype, device=self.device
        )

    def sample_with_log_q(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` fields with their log-density (differentiable; the flow's dtype)."""
        z = self.prior_noise(n, generator)
        phi, log_det = self(z)
        return phi, self.log_prior(z) - log_det

    def log_q(self, phi: torch.Tensor) -> torch.Tensor:
        """The flow's log-density of given fields ``(n, L, L)`` (via the inverse)."""
        phi = phi.to(dtype=self.dtype, device=self.device)
        z, log_det_inv = self.inverse(phi)
        return self.log_prior(z) + log_det_inv

    def set_ode_steps(self, n_steps: int) -> None:
        """Integrate the flow's ODE layers with ``n_steps`` RK4 steps from now on.

        The weights do not depend on the step count, so a flow trained with one count can be
        sampled with another: more steps bring the reported log-density closer to the exact
        density of the map (the difference falls like ``n_steps**-4``) at proportional cost.

        Raises
        ------
        ValueError
            If ``n_steps`` is not a positive integer or the flow has no ODE layer (only the
            ``cnf`` family has one).
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"ode_steps must be a positive integer, got {n_steps!r}")
        odes = [layer for layer in self.layers if isinstance(layer, EquivariantCNFLayer)]
        if not odes:
            family = flow_family(self.arch)
            raise ValueError(f"a {family} flow has no ODE steps to set (only the cnf family)")
        for layer in odes:
            layer.ode_steps = n_steps
        self.arch["ode_steps"] = n_steps

    def default_batch_size(self) -> int:
        """Samples per forward pass when drawing many: about 4 M site values per batch."""
        return max(256, (1 << 22) // self.volume)

    def sampling_batch_size(self) -> int:
        """Samples per forward pass when drawing proposals: sized for the L2 cache on CPUs.

        On the CPU a batch holds at most 2**16 site values (256 KiB per float32 field, half
        an L2 cache of this machine's cores), between 64 and 256 samples: measured per
        proposal on one thread (cnf, medians of 3, load average 7 from other work),
        L = 8: 336 us at 256 against 400 us at 65536 (the 4 M-site default) and 417 at 1024;
        L = 16: 838 us at 256 against 1613 at 16384; L = 32: 3013 us at 64 against 3497 at
        512.  Smaller batches pay torch's per-op overhead (L = 8: 484 us at 64).  On a GPU,
        :meth:`default_batch_size`.
        """
        if self.device.type != "cpu":
            return self.default_batch_size()
        return min(256, max(64, (1 << 16) // self.volume))

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` fields as float64 NumPy arrays ``(phi (n, L, L), log_q (n,))``.

        Runs under ``torch.inference_mode`` in batches of ``batch_size`` (default
        :meth:`sampling_batch_size`).  ``generator`` is a torch generator on the flow's device
        (None: torch's global RNG).
        """
        if n < 0:
            raise ValueError(f"number of samples must be >= 0, got {n}")
        bs = batch_size or self.sampling_batch_size()
        phis, log_qs = [], []
        with torch.inference_mode():
            for start in range(0, n, bs):
                phi, log_q = self.sample_with_log_q(min(bs, n - start), generator)
                phis.append(phi.double().cpu().numpy())
                log_qs.append(log_q.double().cpu().numpy())
        if len(phis) == 1:  # the common case: no extra copy (it shows on GPUs)
            return phis[0], log_qs[0]
        if not phis:
            return np.empty((0, self.L, self.L)), np.empty(0)
        return np.concatenate(phis), np.concatenate(log_qs)


def cnf_layers(arch: dict[str, Any]) -> list[FlowLayer]:
    """The layers of a resolved cnf architecture (:meth:`CNFSettings.resolve`)."""
    L = int(arch["L"])
    layers: list[FlowLayer] = []
    if arch["free_field_base"]:
        layers.append(FreeFieldLayer(L, arch["free_field_h"], arch["free_field_c2"]))
    if arch.get("cnf_kernel", "local") == "global":  # records before it have local kernels
        ode: FlowLayer = GlobalCNFLayer(
            L,
            frequencies=int(arch["cnf_frequencies"]),
            n_time_basis=int(arch["cnf_time_basis"]),
            channels=int(arch["cnf_channels"]),
            time_channels=int(arch["cnf_time_channels"]),
            ode_steps=int(arch["ode_steps"]),
            init_scale=float(arch["init_scale"]),
        )
    else:
        ode = EquivariantCNFLayer(
            L,
            frequencies=int(arch["cnf_frequencies"]),
            n_time_basis=int(arch["cnf_time_basis"]),
            kernel_radius=int(arch["kernel_radius"]),
            ode_steps=int(arch["ode_steps"]),
            init_scale=float(arch["init_scale"]),
        )
    layers.append(ode)
    if arch["global_rescaling"]:
        layers.append(GlobalRescaling(L))
    return layers


def coupling_layers(arch: dict[str, Any]) -> list[FlowLayer]:
    """The layers of a resolved coupling architecture (:meth:`CouplingFlowSettings.resolve`)."""
    L = int(arch["L"])
    layers: list[FlowLayer] = []
    if arch["free_field_base"]:
        layers.append(FreeFieldLayer(L, arch["free_field_h"], arch["free_field_c2"]))
    common = dict(
        conditioner=arch["conditioner"],
        hidden=tuple(arch["hidden"]),
        activation=arch["activation"],
        equivariant=arch["equivariant"],
        kernel_size=arch["kernel_size"] or 3,
        init_scale=arch["init_scale"],
    )
    for i, kind in enumerate(arch["layers"]):
        if kind not in COUPLINGS:
            known = ", ".join(COUPLINGS)
            raise ValueError(f"unknown coupling layer kind {kind!r} (known: {known})")
        kw = dict(common)
        if kind == "spline":
            kw.update(bins=arch["spline_bins"], bound=arch["spline_bound"])
        layers.append(COUPLINGS[kind](L, i % 2, **kw))
    if arch["global_rescaling"]:
        layers.append(GlobalRescaling(L))
    return layers


#: Family -> the builder of its layers from a resolved architecture.
LAYER_BUILDERS = {"coupling": coupling_layers, "cnf": cnf_layers}


def build_layers(arch: dict[str, Any]) -> list[FlowLayer]:
    """Instantiate the layers of a resolved architecture with its family's builder."""
    family = flow_family(arch)
    if family not in LAYER_BUILDERS:
        raise ValueError(f"unknown flow family {family!r} (known: {', '.join(FAMILIES)})")
    return LAYER_BUILDERS[family](arch)


def flow_from_arch(arch: dict[str, Any], device: str = "cpu", seed: int = 0) -> Flow:
    """Build a :class:`Flow` from a resolved architecture with seeded initial weights.

    The weights are drawn on the CPU in float64 from a private RNG seeded with ``seed``
    (torch's global RNG is left untouched), then cast, so one seed gives the same initial
    function on every device and dtype (up to rounding).
    """
    dev = check_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with _default_dtype(torch.float64):
            flow = Flow(int(arch["L"]), build_layers(arch), arch)
    return flow.to(device=dev, dtype=DTYPES[arch["dtype"]])


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_flow(
    theory: Phi4Theory,
    config: FlowSettings | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> Flow:
    """Build the flow for a theory from its family's settings (default: :class:`CNFSettings`).

    Parameters
    ----------
    theory : Phi4Theory
        Fixes L (and the free-field base layer's quadratic part, if used).
    config : CouplingFlowSettings or CNFSettings, optional
        Architecture; None gives the default flow, :class:`CNFSettings`.
    device : str
        ``cpu`` or ``cuda`` (``cuda:N``).
    seed : int
        Seed of the initial weights.

    Raises
    ------
    ValueError
        For odd L with coupling layers, an unavailable device, or an impossible base layer.
    """
    config = config or CNFSettings()
    return flow_from_arch(config.resolve(theory), device=device, seed=seed)
