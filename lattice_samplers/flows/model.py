"""Flow models: configuration, builder, sampling with log-densities, the Proposal wrapper.

A :class:`Flow` pushes N(0, 1) noise on every site through its layers:

    z ~ N(0, 1)^V  ->  [free-field base]  ->  coupling layers (alternating parity)
                   ->  [global rescaling]  ->  phi,

    log_q(phi) = log N(z) - sum_layers log|det J_layer|.

The default architecture (no ``[flow]`` section) is the family of arXiv:2112.15532 sized for
the lattice: 8 affine checkerboard couplings with fully connected conditioners of one hidden
layer of width 2 L^2 and tanh, Z2-equivariant, followed by a learnable global rescaling.

``family = "cnf"`` selects instead the equivariant continuous flow of arXiv:2207.00283
(:mod:`lattice_samplers.flows.cnf`): free-field base -> one neural-ODE layer -> [rescaling].
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lattice_samplers.flows.cnf import EquivariantCNFLayer
from lattice_samplers.flows.layers import (
    AdditiveCoupling,
    AffineCoupling,
    FlowLayer,
    FreeFieldLayer,
    GlobalRescaling,
    SplineCoupling,
)
from lattice_samplers.flows.nets import ACTIVATIONS
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "COUPLINGS",
    "DTYPES",
    "EQUIVARIANT_COUPLINGS",
    "Flow",
    "FlowSettings",
    "FlowProposal",
    "architecture_key",
    "build_flow",
    "build_layers",
    "check_device",
    "flow_family",
    "flow_from_arch",
]

#: Coupling kind -> layer class.
COUPLINGS: dict[str, type[FlowLayer]] = {
    "affine": AffineCoupling,
    "additive": AdditiveCoupling,
    "spline": SplineCoupling,
}
#: Flow families: checkerboard couplings, or the equivariant continuous flow.
FAMILIES = ("coupling", "cnf")
#: Coupling kinds that have a Z2-equivariant form.
EQUIVARIANT_COUPLINGS = ("affine", "additive")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
#: Fields of the resolved architecture that do not change the function class (ignored when a
#: checkpoint's architecture is compared with a config).
_NOT_ARCHITECTURE = ("init_scale",)


@dataclass(frozen=True)
class FlowSettings:
    """Architecture of a flow, the ``[flow]`` config section (all keys optional).

    Attributes
    ----------
    family : str
        ``coupling`` (checkerboard coupling layers; default) or ``cnf`` (the equivariant
        continuous flow of arXiv:2207.00283: free-field base, one neural-ODE layer, global
        rescaling; the coupling keys below do not apply to it).
    coupling : str
        Kind of every coupling layer: ``affine`` (default), ``additive`` or ``spline``.
    n_layers : int
        Number of coupling layers (alternating checkerboard parity), default 8.
    layers : tuple of str or None
        Explicit list of coupling kinds, e.g. ``["affine", "affine", "spline", "spline"]``;
        overrides ``coupling`` and ``n_layers``.
    conditioner : str
        ``dense`` (fully connected on the V/2 passive sites; default) or ``conv`` (periodic
        convolutions with circular padding).
    hidden : tuple of int or None
        Hidden widths (dense) or channels (conv).  Default: ``[2 L^2]`` dense, ``[8, 8]`` conv.
    activation : str
        ``tanh`` (default), ``softsign``, ``relu``, ``leaky_relu`` or ``silu``.
    equivariant : bool or None
        Z2-equivariant couplings (odd t, even s; needs an odd activation).  Default: True
        unless a spline layer is present (splines have no equivariant form here).
    kernel_size : int
        Convolution kernel size (conv), default 3.
    spline_bins, spline_bound : int, float
        Bins K and half-interval B of spline layers (defaults 8 and 4.0).
    global_rescaling : bool
        Final learnable phi -> a phi (default True).
    free_field_base : bool or None
        First map the noise to a free field by an exact FFT layer (default: True for the
        ``cnf`` family, False for couplings).
    free_field_m2 : float or None
        Mass^2 of that free field in lattice units, G~(k) = 1/(h (m2 + p^2)) with the theory's
        hopping h.  Default: the theory's own quadratic part if it is free, else (4/L)^2.
    dtype : str
        ``float32`` (default) or ``float64`` for the network; log weights are float64 anyway.
    init_scale : float
        Scale of each conditioner's last-layer initial weights (near-identity start), 0.01;
        for ``cnf``, about the size of the initial velocity relative to the field.
    cnf_frequencies : int
        ``cnf``: number of features sin(omega_f phi) besides phi (default 4).
    cnf_time_basis : int
        ``cnf``: cosine time-basis functions per kernel weight (default 4).
    kernel_radius : int
        ``cnf``: kernels vanish beyond max(|dx|, |dy|) = kernel_radius (default 3).
    ode_steps : int
        ``cnf``: fixed RK4 steps on [0, 1] (default 10).  The log-density carries an O(h^4)
        integration error (measured at L = 8 after training: up to ~1e-2 with 10 steps, ~6e-4
        with 20), a small bias of independence Metropolis; raise it for production runs.
    """

    family: str = "coupling"
    coupling: str = "affine"
    n_layers: int = 8
    layers: tuple[str, ...] | None = None
    conditioner: str = "dense"
    hidden: tuple[int, ...] | None = None
    activation: str = "tanh"
    equivariant: bool | None = None
    kernel_size: int = 3
    spline_bins: int = 8
    spline_bound: float = 4.0
    global_rescaling: bool = True
    free_field_base: bool | None = None
    free_field_m2: float | None = None
    dtype: str = "float32"
    init_scale: float = 0.01
    cnf_frequencies: int = 4
    cnf_time_basis: int = 4
    kernel_radius: int = 3
    ode_steps: int = 10

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown flow family {self.family!r} (known: {', '.join(FAMILIES)})")
        if self.family == "cnf":
            if self.layers is not None:
                raise ValueError("flow.layers lists coupling layers; family = 'cnf' has none")
            if self.equivariant is False:
                raise ValueError("the cnf family is always Z2-equivariant; drop flow.equivariant")
        if self.cnf_frequencies < 0:
            raise ValueError(f"cnf_frequencies must be >= 0, got {self.cnf_frequencies}")
        if self.cnf_time_basis < 1:
            raise ValueError(f"cnf_time_basis must be >= 1, got {self.cnf_time_basis}")
        if self.kernel_radius < 0:
            raise ValueError(f"kernel_radius must be >= 0, got {self.kernel_radius}")
        if self.ode_steps < 1:
            raise ValueError(f"ode_steps must be >= 1, got {self.ode_steps}")
        known = ", ".join(COUPLINGS)
        if self.coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling layer kind {self.coupling!r} (known: {known})")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))
            for kind in self.layers:
                if kind not in COUPLINGS:
                    raise ValueError(f"unknown coupling layer kind {kind!r} (known: {known})")
        if self.n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {self.n_layers}")
        if self.conditioner not in ("dense", "conv"):
            raise ValueError(f"unknown conditioner {self.conditioner!r} (known: dense, conv)")
        if self.hidden is not None:
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
            if any(h < 1 for h in self.hidden):
                raise ValueError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r} (known: {', '.join(ACTIVATIONS)})"
            )
        kinds = self.coupling_kinds()
        if self.equivariant:
            bad = sorted({k for k in kinds if k not in EQUIVARIANT_COUPLINGS})
            if bad:
                raise ValueError(
                    f"{', '.join(bad)} coupling layers have no Z2-equivariant form; "
                    "set flow.equivariant = false"
                )
        if self.is_equivariant() and not ACTIVATIONS[self.activation][1]:
            odd = ", ".join(k for k, (_, is_odd) in ACTIVATIONS.items() if is_odd)
            raise ValueError(
                f"a Z2-equivariant flow needs an odd activation ({odd}), got "
                f"{self.activation!r}; set flow.equivariant = false or change the activation"
            )
        if self.is_equivariant() and self.hidden == ():
            raise ValueError("a Z2-equivariant flow needs at least one hidden layer")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer, got {self.kernel_size}")
        if self.spline_bins < 2:
            raise ValueError(f"spline_bins must be >= 2, got {self.spline_bins}")
        if not self.spline_bound > 0:
            raise ValueError(f"spline_bound must be > 0, got {self.spline_bound}")
        if self.free_field_m2 is not None and not self.free_field_m2 > 0:
            raise ValueError(f"free_field_m2 must be > 0, got {self.free_field_m2}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not (math.isfinite(self.init_scale) and self.init_scale >= 0):
            raise ValueError(f"init_scale must be finite and >= 0, got {self.init_scale}")

    def coupling_kinds(self) -> tuple[str, ...]:
        """The coupling layer kinds in order (none for the ``cnf`` family)."""
        if self.family == "cnf":
            return ()
        if self.layers is not None:
            return self.layers
        return (self.coupling,) * self.n_layers

    def is_equivariant(self) -> bool:
        """Whether the couplings are built Z2-equivariant (resolving the None default)."""
        if self.equivariant is not None:
            return self.equivariant
        return all(k in EQUIVARIANT_COUPLINGS for k in self.coupling_kinds())

    def uses_free_field_base(self) -> bool:
        """Whether the flow starts with the free-field layer (resolving the None default)."""
        if self.free_field_base is not None:
            return self.free_field_base
        return self.family == "cnf"

    def resolve(self, theory: Phi4Theory) -> dict[str, Any]:
        """The complete architecture for one theory, every default filled in (JSON-friendly).

        Raises
        ------
        ValueError
            For a checkerboard coupling on odd L, or a free-field base the theory cannot
            define (non-positive hopping in an interacting theory).
        """
        L = theory.L
        kinds = self.coupling_kinds()
        if kinds and L % 2:
            raise ValueError(
                f"checkerboard coupling layers need an even lattice extent L, got L = {L}"
            )
        hidden = self.hidden
        if hidden is None:
            hidden = (2 * L * L,) if self.conditioner == "dense" else (8, 8)
        out: dict[str, Any] = {
            "L": L,
            "layers": list(kinds),
            "conditioner": self.conditioner,
            "hidden": list(hidden),
            "activation": self.activation,
            "equivariant": self.is_equivariant(),
            "kernel_size": self.kernel_size if self.conditioner == "conv" else None,
            "spline_bins": self.spline_bins if "spline" in kinds else None,
            "spline_bound": self.spline_bound if "spline" in kinds else None,
            "global_rescaling": self.global_rescaling,
            "free_field_base": self.uses_free_field_base(),
            "free_field_h": None,
            "free_field_c2": None,
            "dtype": self.dtype,
            "init_scale": self.init_scale,
        }
        if self.family == "cnf":
            # coupling keys do not apply; the cnf keys appear only here, so the resolved
            # architecture (and checkpoints) of coupling flows is unchanged
            out.update(conditioner=None, hidden=None, activation=None, equivariant=True)
            out.update(
                family="cnf",
                cnf_frequencies=self.cnf_frequencies,
                cnf_time_basis=self.cnf_time_basis,
                kernel_radius=self.kernel_radius,
                ode_steps=self.ode_steps,
            )
        if out["free_field_base"]:
            h, c2, _ = theory.hopping
            if theory.is_free and self.free_field_m2 is None:
                out["free_field_h"], out["free_field_c2"] = float(h), float(c2)
            else:
                if not h > 0:
                    raise ValueError(
                        "flow.free_field_base with an interacting theory needs a positive "
                        f"hopping coefficient h, got {h:g}"
                    )
                m2 = self.free_field_m2 if self.free_field_m2 is not None else (4.0 / L) ** 2
                out["free_field_h"], out["free_field_c2"] = float(h), float(h * (m2 + 4.0) / 2)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The config as given (None for unset defaults), JSON-friendly."""
        d = dataclasses.asdict(self)
        for k in ("layers", "hidden"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


def flow_family(arch: dict[str, Any]) -> str:
    """The family of a resolved architecture (records of coupling flows do not name it)."""
    return str(arch.get("family", "coupling"))


def architecture_key(arch: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved architecture that must match for weights to be reusable."""
    return {k: v for k, v in arch.items() if k not in _NOT_ARCHITECTURE}


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
            family = self.arch.get("family", "coupling")
            raise ValueError(f"a {family} flow has no ODE steps to set (only the cnf family)")
        for layer in odes:
            layer.ode_steps = n_steps
        self.arch["ode_steps"] = n_steps

    def default_batch_size(self) -> int:
        """Samples per forward pass when drawing many: about 4 M site values per batch."""
        return max(256, (1 << 22) // self.volume)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` fields as float64 NumPy arrays ``(phi (n, L, L), log_q (n,))``.

        Runs under ``torch.inference_mode`` in batches of ``batch_size`` (default
        :meth:`default_batch_size`).  ``generator`` is a torch generator on the flow's device
        (None: torch's global RNG).
        """
        if n < 0:
            raise ValueError(f"number of samples must be >= 0, got {n}")
        bs = batch_size or self.default_batch_size()
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


def _seed_from(seed: int | np.random.Generator) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0] >> 1)


class FlowProposal:
    """A trained flow as an independence-Metropolis proposal: ``sample(n) -> (phi, log_q)``.

    Parameters
    ----------
    flow : Flow
        The flow (put in eval mode; its parameters are not changed).
    seed : int or numpy.random.Generator, optional
        Seeds the proposal's own torch generator (so successive ``sample`` calls continue
        one reproducible stream).  None: a fresh OS-entropy seed.
    batch_size : int, optional
        Samples per forward pass (default: the flow's :meth:`Flow.default_batch_size`).

    Notes
    -----
    ``thread_safe = False``: the independence Metropolis chains of a flow run one after the
    other even with ``[run] workers`` > 1.  Concurrent calls are safe, but not bit-reproducible:
    torch's float32 reductions (log q) came out different in the last bits in worker threads
    (13 of 96 log weights, relative 2e-7, after a flow training in the same process), so a run
    would depend on ``workers``; and the flow's ops already use torch's own threads.
    """

    #: read by the independence Metropolis sampler: run its chains one after the other
    thread_safe = False

    def __init__(
        self,
        flow: Flow,
        seed: int | np.random.Generator | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.flow = flow.eval()
        self.batch_size = batch_size
        self.generator = torch.Generator(device=flow.device)
        self.generator.manual_seed(
            _seed_from(seed if seed is not None else np.random.default_rng())
        )

    @property
    def L(self) -> int:
        """Lattice extent."""
        return self.flow.L

    def sample(
        self, n: int, rng: np.random.Generator | torch.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` proposals: ``phi`` float64 ``(n, L, L)`` and ``log_q`` float64 ``(n,)``.

        ``rng`` (a NumPy generator, a torch generator or an int seed) overrides the
        proposal's own stream for this call; the same ``rng`` state gives the same draws.
        """
        if rng is None:
            gen = self.generator
        elif isinstance(rng, torch.Generator):
            gen = rng
        else:
            gen = torch.Generator(device=self.flow.device)
            gen.manual_seed(_seed_from(rng))
        return self.flow.sample(n, generator=gen, batch_size=self.batch_size)


def build_layers(arch: dict[str, Any]) -> list[FlowLayer]:
    """Instantiate the layers of a resolved architecture (see :meth:`FlowSettings.resolve`)."""
    L = int(arch["L"])
    layers: list[FlowLayer] = []
    if arch["free_field_base"]:
        layers.append(FreeFieldLayer(L, arch["free_field_h"], arch["free_field_c2"]))
    family = arch.get("family", "coupling")
    if family == "cnf":
        layers.append(
            EquivariantCNFLayer(
                L,
                frequencies=int(arch["cnf_frequencies"]),
                n_time_basis=int(arch["cnf_time_basis"]),
                kernel_radius=int(arch["kernel_radius"]),
                ode_steps=int(arch["ode_steps"]),
                init_scale=float(arch["init_scale"]),
            )
        )
        if arch["global_rescaling"]:
            layers.append(GlobalRescaling(L))
        return layers
    if family != "coupling":
        raise ValueError(f"unknown flow family {family!r} (known: {', '.join(FAMILIES)})")
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
    """Build the flow for a theory from a :class:`FlowSettings` (default: the paper's family).

    Parameters
    ----------
    theory : Phi4Theory
        Fixes L (and the free-field base layer's quadratic part, if used).
    config : FlowSettings, optional
        Architecture; None gives :class:`FlowSettings` defaults.
    device : str
        ``cpu`` or ``cuda`` (``cuda:N``).
    seed : int
        Seed of the initial weights.

    Raises
    ------
    ValueError
        For odd L with coupling layers, an unavailable device, or an impossible base layer.
    """
    config = config or FlowSettings()
    return flow_from_arch(config.resolve(theory), device=device, seed=seed)
