"""Flow architectures: one settings class per family, the ``[flow]`` config section.

* :class:`CNFSettings` (``family = "cnf"``, the default of every command): the equivariant
  continuous flow of arXiv:2207.00283, free-field base -> one neural-ODE layer -> global
  rescaling (:mod:`lattice_samplers.flows.cnf`);
* :class:`CouplingFlowSettings` (``family = "coupling"``): the checkerboard coupling flows of
  arXiv:2112.15532, dense (the paper's: 8 affine layers, one hidden layer of width 2 L^2,
  tanh, Z2-equivariant) or convolutional conditioners, affine/additive/spline layers.

:func:`flow_settings` reads a ``[flow]`` section into the class its ``family`` names; a key of
the other family is a one-line error.  Each class's ``resolve(theory)`` gives the complete
architecture record for one lattice (every default filled in): what a checkpoint stores and
what :func:`lattice_samplers.flows.model.flow_from_arch` builds.  The record's format is that
of the one flat settings class these replace, so every checkpoint written before still loads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lattice_samplers.flows.nets import ACTIVATIONS
from lattice_samplers.theory import Phi4Theory

__all__ = [
    "CNF_KERNELS",
    "COUPLING_KINDS",
    "DEFAULT_FAMILY",
    "DTYPE_NAMES",
    "EQUIVARIANT_COUPLINGS",
    "FAMILIES",
    "CNFSettings",
    "CouplingFlowSettings",
    "FlowSettings",
    "architecture_key",
    "flow_family",
    "flow_settings",
    "settings_class",
]

#: Coupling layer kinds of the coupling family.
COUPLING_KINDS = ("affine", "additive", "spline")
#: Coupling kinds that have a Z2-equivariant form.
EQUIVARIANT_COUPLINGS = ("affine", "additive")
DTYPE_NAMES = ("float32", "float64")
#: The flow every command trains when ``[flow]`` names no family.
DEFAULT_FAMILY = "cnf"
#: Fields of the resolved architecture that do not change the function class (ignored when a
#: checkpoint's architecture is compared with a config).
_NOT_ARCHITECTURE = ("init_scale",)
#: Kernel designs of the cnf family and their defaults.
CNF_KERNELS = ("local", "global")
CNF_KERNEL_DEFAULTS: dict[str, dict[str, int]] = {
    "local": {"cnf_frequencies": 4, "cnf_time_basis": 4, "kernel_radius": 3},
    "global": {
        "cnf_frequencies": 49,
        "cnf_time_basis": 21,
        "cnf_channels": 20,
        "cnf_time_channels": 20,
    },
}


@dataclass(frozen=True)
class _BaseSettings:
    """Keys both families share."""

    global_rescaling: bool = True
    free_field_base: bool | None = None
    free_field_m2: float | None = None
    dtype: str = "float32"
    init_scale: float = 0.01

    family: ClassVar[str]

    def _check_common(self) -> None:
        if self.free_field_m2 is not None and not self.free_field_m2 > 0:
            raise ValueError(f"free_field_m2 must be > 0, got {self.free_field_m2}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not (math.isfinite(self.init_scale) and self.init_scale >= 0):
            raise ValueError(f"init_scale must be finite and >= 0, got {self.init_scale}")

    def uses_free_field_base(self) -> bool:
        """Whether the flow starts with the free-field layer (resolving the None default)."""
        if self.free_field_base is not None:
            return self.free_field_base
        return self.family == "cnf"

    def _base_record(self, theory: Phi4Theory) -> dict[str, Any]:
        """The shared part of the architecture record, the free-field base resolved."""
        out: dict[str, Any] = {
            "global_rescaling": self.global_rescaling,
            "free_field_base": self.uses_free_field_base(),
            "free_field_h": None,
            "free_field_c2": None,
            "dtype": self.dtype,
            "init_scale": self.init_scale,
        }
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
                m2 = self.free_field_m2 if self.free_field_m2 is not None else (4.0 / theory.L) ** 2
                out["free_field_h"], out["free_field_c2"] = float(h), float(h * (m2 + 4.0) / 2)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The config as given (None for unset defaults) with its family, JSON-friendly."""
        d = {"family": self.family, **dataclasses.asdict(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class CouplingFlowSettings(_BaseSettings):
    """Checkerboard coupling flows, ``[flow] family = "coupling"`` (all keys optional).

    Attributes
    ----------
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
        First map the noise to a free field by an exact FFT layer (default False).
    free_field_m2 : float or None
        Mass^2 of that free field in lattice units, G~(k) = 1/(h (m2 + p^2)) with the theory's
        hopping h.  Default: the theory's own quadratic part if it is free, else (4/L)^2.
    dtype : str
        ``float32`` (default) or ``float64`` for the network; log weights are float64 anyway.
    init_scale : float
        Scale of each conditioner's last-layer initial weights (near-identity start), 0.01.
    """

    family: ClassVar[str] = "coupling"

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

    def __post_init__(self) -> None:
        known = ", ".join(COUPLING_KINDS)
        if self.coupling not in COUPLING_KINDS:
            raise ValueError(f"unknown coupling layer kind {self.coupling!r} (known: {known})")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))
            for kind in self.layers:
                if kind not in COUPLING_KINDS:
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
        if self.equivariant:
            bad = sorted({k for k in self.coupling_kinds() if k not in EQUIVARIANT_COUPLINGS})
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
        self._check_common()

    def coupling_kinds(self) -> tuple[str, ...]:
        """The coupling layer kinds in order."""
        if self.layers is not None:
            return self.layers
        return (self.coupling,) * self.n_layers

    def is_equivariant(self) -> bool:
        """Whether the couplings are built Z2-equivariant (resolving the None default)."""
        if self.equivariant is not None:
            return self.equivariant
        return all(k in EQUIVARIANT_COUPLINGS for k in self.coupling_kinds())

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
        base = self._base_record(theory)
        # the record keeps the key order of the flat settings class it replaces
        return {
            "L": L,
            "layers": list(kinds),
            "conditioner": self.conditioner,
            "hidden": list(hidden),
            "activation": self.activation,
            "equivariant": self.is_equivariant(),
            "kernel_size": self.kernel_size if self.conditioner == "conv" else None,
            "spline_bins": self.spline_bins if "spline" in kinds else None,
            "spline_bound": self.spline_bound if "spline" in kinds else None,
            **base,
        }


@dataclass(frozen=True)
class CNFSettings(_BaseSettings):
    """The equivariant continuous flow, ``[flow] family = "cnf"`` (all keys optional).

    Attributes
    ----------
    cnf_kernel : str
        ``"local"`` (default): radius-limited stencils, F + 1 unprojected features, J time
        functions (:mod:`lattice_samplers.flows.cnf`); ``"global"``: kernels over the whole
        torus (every D4 orbit), features and time functions projected to a width
        (:mod:`lattice_samplers.flows.cnf_global`).
    cnf_frequencies : int or None
        Number F of features sin(omega_f phi) besides phi (default 4 local, 49 global).
    cnf_time_basis : int or None
        Cosine time-basis functions J (default 4 local, 21 global).
    kernel_radius : int or None
        Local kernels vanish beyond max(|dx|, |dy|) = kernel_radius (default 3; local only).
    cnf_channels : int or None
        Feature width C of the global design (default 20; global only).
    cnf_time_channels : int or None
        Time-feature width T of the global design (default 20; global only).
    ode_steps : int
        Fixed RK4 steps on [0, 1] (default 10).  The log-density carries an O(h^4)
        integration error (measured at L = 8 after training: up to ~1e-2 with 10 steps, ~6e-4
        with 20), a small bias of independence Metropolis; raise it for production runs.
    global_rescaling : bool
        Final learnable phi -> a phi (default True).
    free_field_base : bool or None
        First map the noise to a free field by an exact FFT layer (default True).
    free_field_m2 : float or None
        Mass^2 of that free field (see :class:`CouplingFlowSettings`).
    dtype : str
        ``float32`` (default) or ``float64`` for the network.
    init_scale : float
        About the size of the initial velocity relative to the field (default 0.01).
    """

    family: ClassVar[str] = "cnf"

    cnf_kernel: str = "local"
    cnf_frequencies: int | None = None
    cnf_time_basis: int | None = None
    kernel_radius: int | None = None
    cnf_channels: int | None = None
    cnf_time_channels: int | None = None
    ode_steps: int = 10

    def __post_init__(self) -> None:
        if self.cnf_kernel not in CNF_KERNELS:
            raise ValueError(f"cnf_kernel must be 'local' or 'global', got {self.cnf_kernel!r}")
        # keys of the other design would be silently ignored: refuse them
        other = ("cnf_channels", "cnf_time_channels") if self.cnf_kernel == "local" else ()
        other += ("kernel_radius",) if self.cnf_kernel == "global" else ()
        for key in other:
            if getattr(self, key) is not None:
                raise ValueError(f"{key} does not apply to cnf_kernel = {self.cnf_kernel!r}")
        for key, low in (
            ("cnf_frequencies", 0),
            ("cnf_time_basis", 1),
            ("kernel_radius", 0),
            ("cnf_channels", 1),
            ("cnf_time_channels", 1),
        ):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, int) and value >= low):
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        if self.ode_steps < 1:
            raise ValueError(f"ode_steps must be >= 1, got {self.ode_steps}")
        self._check_common()

    def resolve(self, theory: Phi4Theory) -> dict[str, Any]:
        """The complete architecture for one theory, every default filled in (JSON-friendly).

        Raises
        ------
        ValueError
            For a free-field base the theory cannot define.
        """
        base = self._base_record(theory)
        # the coupling keys stay in the record, empty, as the flat settings class wrote them
        return {
            "L": theory.L,
            "layers": [],
            "conditioner": None,
            "hidden": None,
            "activation": None,
            "equivariant": True,
            "kernel_size": None,
            "spline_bins": None,
            "spline_bound": None,
            **base,
            "family": "cnf",
            **self._kernel_record(),
            "ode_steps": self.ode_steps,
        }

    def _kernel_record(self) -> dict[str, Any]:
        """The design's keys with defaults filled in (the local record keeps its old keys)."""
        default = CNF_KERNEL_DEFAULTS[self.cnf_kernel]
        keys = {k: getattr(self, k) for k in default}
        out = {k: default[k] if v is None else v for k, v in keys.items()}
        if self.cnf_kernel == "global":
            # kernel_radius stays in the record (None) so readers of old records still work
            return {"cnf_kernel": "global", "kernel_radius": None, **out}
        return out


#: Either family's settings (what a ``[flow]`` section becomes).
FlowSettings = CouplingFlowSettings | CNFSettings
_CLASSES: dict[str, type[CouplingFlowSettings] | type[CNFSettings]] = {
    "coupling": CouplingFlowSettings,
    "cnf": CNFSettings,
}
FAMILIES = tuple(_CLASSES)


def settings_class(
    section: Mapping[str, Any] | None,
) -> tuple[type[CouplingFlowSettings] | type[CNFSettings], dict[str, Any]]:
    """The settings class a ``[flow]`` section's ``family`` names, and its other keys.

    Raises
    ------
    ValueError
        One line for an unknown family or a key that belongs to the other family (unknown
        keys and values are left to the class and the config reader).
    """
    keys = dict(section or {})
    family = keys.pop("family", DEFAULT_FAMILY)
    if family not in _CLASSES:
        raise ValueError(f"unknown flow family {family!r} (known: {', '.join(FAMILIES)})")
    cls = _CLASSES[family]
    own = {f.name for f in dataclasses.fields(cls)}
    for key in keys:
        for other, other_cls in _CLASSES.items():
            if key not in own and key in {f.name for f in dataclasses.fields(other_cls)}:
                raise ValueError(
                    f"flow.{key} belongs to the {other} family, not to family = {family!r}"
                )
    return cls, keys


def flow_settings(section: Mapping[str, Any] | None = None) -> FlowSettings:
    """Read a ``[flow]`` section (a mapping) into its family's settings; default family cnf.

    Raises
    ------
    ValueError
        One line for an unknown family, a key of the other family, or a bad value.
    TypeError
        For an unknown key.
    """
    cls, keys = settings_class(section)
    return cls(**keys)


def flow_family(arch: Mapping[str, Any]) -> str:
    """The family of a resolved architecture (records of coupling flows do not name it)."""
    return str(arch.get("family", "coupling"))


def architecture_key(arch: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved architecture that must match for weights to be reusable."""
    return {k: v for k, v in arch.items() if k not in _NOT_ARCHITECTURE}
