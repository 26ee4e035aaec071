"""The 2D real scalar phi^4 theory on an L x L periodic lattice, in every parametrization.

Every parametrization in use is a special case of the *hopping form*

    S(phi) = sum_x [ -h * sum_{mu=1,2} phi_x phi_{x+mu} + c2 * phi_x^2 + c4 * phi_x^4 ] + V * c0

with V = L^2 sites.  The supported parametrizations and their hopping couplings:

* ``ising`` (beta, lam):  sum[-beta sum_mu phi phi_{+mu} + phi^2 + lam (phi^2 - 1)^2]
  -> h = beta, c2 = 1 - 2 lam, c4 = lam, c0 = lam
* ``kappa`` (kappa, lam): the ising form with beta = 2 kappa
  -> h = 2 kappa, c2 = 1 - 2 lam, c4 = lam, c0 = lam
* ``albergo`` (m2, lam):  sum[sum_mu (phi_{+mu} - phi)^2 + m2 phi^2 + lam phi^4]
  -> h = 2, c2 = 4 + m2, c4 = lam, c0 = 0
* ``standard`` (m2, g):   sum[1/2 sum_mu (phi_{+mu} - phi)^2 + 1/2 m2 phi^2 + g/4! phi^4]
  -> h = 1, c2 = (4 + m2) / 2, c4 = g / 24, c0 = 0

``albergo`` is the form of Albergo, Kanwar, Shanahan (arXiv:1904.12072); ``standard`` is the
continuum-like normalization with 1/2 on the kinetic and mass terms and g/4! on the quartic.

Conversions are exact field rescalings.  Substituting phi = a * phi' into the hopping form
gives the hopping form again with h' = a^2 h, c2' = a^2 c2, c4' = a^4 c4 (the constant c0 is
unchanged, and the Jacobian a^V is a constant).  Each target parametrization fixes a = sqrt(u):

* ising/kappa need c2' = 1 - 2 c4', i.e. 2 c4 u^2 + c2 u - 1 = 0 (one positive root);
* albergo needs h' = 2, i.e. u = 2 / h; standard needs h' = 1, i.e. u = 1 / h.

Example: albergo(m2 = -4, lam = 8) is ising(beta = 0.5, lam = 0.5) with phi_A = phi_I / 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "PARAMETRIZATIONS",
    "Phi4Theory",
]

#: Coupling names required by each parametrization, in canonical order.
PARAMETRIZATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ising": ("beta", "lam"),
        "kappa": ("kappa", "lam"),
        "albergo": ("m2", "lam"),
        "standard": ("m2", "g"),
    }
)


def _hopping_from_couplings(
    parametrization: str, c: Mapping[str, float]
) -> tuple[float, float, float, float]:
    """Return (h, c2, c4, c0) of the hopping form for a parametrization's couplings."""
    if parametrization == "ising":
        return c["beta"], 1.0 - 2.0 * c["lam"], c["lam"], c["lam"]
    if parametrization == "kappa":
        return 2.0 * c["kappa"], 1.0 - 2.0 * c["lam"], c["lam"], c["lam"]
    if parametrization == "albergo":
        return 2.0, 4.0 + c["m2"], c["lam"], 0.0
    if parametrization == "standard":
        return 1.0, (4.0 + c["m2"]) / 2.0, c["g"] / 24.0, 0.0
    raise AssertionError(parametrization)  # validated before


def _validate_L(L: Any) -> int:
    if isinstance(L, bool) or not isinstance(L, int | np.integer):
        if isinstance(L, float) and L.is_integer():
            L = int(L)
        else:
            raise ValueError(f"lattice size L must be an integer >= 2, got {L!r}")
    if L < 2:
        raise ValueError(f"lattice size L must be an integer >= 2, got {L}")
    return int(L)


def _validate_couplings(parametrization: str, couplings: Mapping[str, Any]) -> dict[str, float]:
    if parametrization not in PARAMETRIZATIONS:
        known = ", ".join(PARAMETRIZATIONS)
        raise ValueError(f"unknown parametrization {parametrization!r}; choose one of: {known}")
    needed = PARAMETRIZATIONS[parametrization]
    missing = [k for k in needed if k not in couplings]
    extra = sorted(k for k in couplings if k not in needed)
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("unexpected " + ", ".join(extra))
        raise ValueError(
            f"parametrization {parametrization!r} takes couplings {', '.join(needed)}: "
            + "; ".join(parts)
        )
    out: dict[str, float] = {}
    for k in needed:
        v = couplings[k]
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise ValueError(f"coupling {k} must be a real number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"coupling {k} must be finite, got {v}")
        out[k] = v
    return out


@dataclass(frozen=True)
class Phi4Theory:
    """An immutable phi^4 theory on an L x L periodic lattice in one parametrization.

    Build it with :meth:`create`.  The action is evaluated in the field normalization of the
    chosen parametrization (see the module docstring for the formulas).  Instances are
    hashable, comparable and picklable (process pools ship them to workers).

    Attributes
    ----------
    L : int
        Lattice extent; the lattice has ``volume = L * L`` sites, periodic in both directions.
    parametrization : str
        One of ``ising``, ``kappa``, ``albergo``, ``standard``.
    values : tuple of float
        The couplings in the order of ``PARAMETRIZATIONS[parametrization]``; use
        :attr:`couplings` for a name -> value dict.
    """

    L: int
    parametrization: str
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "L", _validate_L(self.L))
        names = PARAMETRIZATIONS.get(self.parametrization)
        if names is None:
            _validate_couplings(self.parametrization, {})  # raises "unknown parametrization"
        if len(names) != len(self.values):
            raise ValueError(
                f"parametrization {self.parametrization!r} takes {len(names)} couplings "
                f"({', '.join(names)}), got {len(self.values)} values"
            )
        c = _validate_couplings(self.parametrization, dict(zip(names, self.values)))
        object.__setattr__(self, "values", tuple(c[k] for k in names))
        h, c2, c4, _ = _hopping_from_couplings(self.parametrization, c)
        if c4 < 0:
            raise ValueError(
                f"quartic coefficient {c4:g} < 0 makes the action unbounded below "
                f"({self.parametrization} couplings {c})"
            )
        if c4 == 0 and c2 - 2.0 * abs(h) <= 0:
            # Free theory: the quadratic form's smallest eigenvalue is c2 - 2|h| (k = 0 or pi).
            raise ValueError(
                "quartic coefficient is 0 and the mass term is not positive "
                f"(c2 - 2|h| = {c2 - 2 * abs(h):g} <= 0): the free action is unbounded below"
            )

    @classmethod
    def create(cls, L: int, parametrization: str, **couplings: float) -> Phi4Theory:
        """Validate and build a theory, e.g. ``Phi4Theory.create(8, "ising", beta=0.576, lam=0.5)``.

        Raises
        ------
        ValueError
            For L < 2 or non-integer, an unknown parametrization, missing or extra couplings,
            non-finite couplings, or an action unbounded below (quartic coefficient < 0, or a
            zero quartic coefficient without a positive mass term).
        """
        c = _validate_couplings(parametrization, couplings)
        return cls(L, parametrization, tuple(c[k] for k in PARAMETRIZATIONS[parametrization]))

    @property
    def couplings(self) -> dict[str, float]:
        """The couplings of this parametrization as a new dict, e.g. {"beta": .., "lam": ..}."""
        return dict(zip(PARAMETRIZATIONS[self.parametrization], self.values))

    @property
    def hopping(self) -> tuple[float, float, float]:
        """(h, c2, c4): the hopping-form coefficients, the arguments every numba kernel takes."""
        return _hopping_from_couplings(self.parametrization, self.couplings)[:3]

    @property
    def h(self) -> float:
        """Hopping coefficient h."""
        return self.hopping[0]

    @property
    def c2(self) -> float:
        """Quadratic coefficient c2."""
        return self.hopping[1]

    @property
    def c4(self) -> float:
        """Quartic coefficient c4."""
        return self.hopping[2]

    @property
    def c0(self) -> float:
        """Additive constant per site (lam for ising/kappa, 0 otherwise)."""
        return _hopping_from_couplings(self.parametrization, self.couplings)[3]

    # ------------------------------------------------------------------ basic properties
    @property
    def volume(self) -> int:
        """Number of lattice sites, L^2."""
        return self.L * self.L

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one field configuration, (L, L)."""
        return (self.L, self.L)

    @property
    def is_free(self) -> bool:
        """True when the quartic coupling vanishes (Gaussian theory)."""
        return self.c4 == 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description: L, parametrization, couplings and hopping form."""
        return {
            "L": self.L,
            "parametrization": self.parametrization,
            **dict(self.couplings),
            "hopping_form": {"h": self.h, "c2": self.c2, "c4": self.c4, "c0": self.c0},
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Phi4Theory:
        """Inverse of :meth:`to_dict`.

        Also reads records whose couplings sit in a ``couplings`` sub-dict (flow checkpoints);
        ``hopping_form`` is ignored.
        """
        parametrization = record["parametrization"]
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"unknown parametrization {parametrization!r}")
        source = record.get("couplings", record)
        couplings = {k: source[k] for k in PARAMETRIZATIONS[parametrization]}
        return cls.create(int(record["L"]), parametrization, **couplings)

    def with_L(self, L: int) -> Phi4Theory:
        """The same couplings on another lattice size."""
        return Phi4Theory.create(L, self.parametrization, **self.couplings)

    # ------------------------------------------------------------------ conversions
    def rescale_squared_to(self, parametrization: str) -> float:
        """Return u = a^2 such that phi_self = a * phi_target maps self onto ``parametrization``.

        Raises
        ------
        ValueError
            If the target form cannot represent this theory (e.g. albergo/standard need h > 0).
        """
        if parametrization not in PARAMETRIZATIONS:
            known = ", ".join(PARAMETRIZATIONS)
            raise ValueError(f"unknown parametrization {parametrization!r}; choose one of: {known}")
        h, c2, c4 = self.h, self.c2, self.c4
        if parametrization in ("ising", "kappa"):
            if c4 == 0.0:
                u = 1.0 / c2  # c2 > 2|h| >= 0 for a valid free theory
            else:
                # positive root of 2 c4 u^2 + c2 u - 1 = 0, written to avoid cancellation
                u = 2.0 / (c2 + math.sqrt(c2 * c2 + 8.0 * c4))
            return u
        if h <= 0:
            raise ValueError(
                f"the {parametrization} form needs a positive hopping coefficient, got h = {h:g}"
            )
        return (2.0 if parametrization == "albergo" else 1.0) / h

    def to(self, parametrization: str) -> Phi4Theory:
        """The same theory in another parametrization (fields related by :meth:`field_scale_to`).

        With u from :meth:`rescale_squared_to` the target couplings are

        * ising:    beta = u h,        lam = u^2 c4
        * kappa:    kappa = u h / 2,   lam = u^2 c4
        * albergo:  m2 = u c2 - 4,     lam = u^2 c4
        * standard: m2 = 2 u c2 - 4,   g = 24 u^2 c4
        """
        u = self.rescale_squared_to(parametrization)
        h, c2, c4 = u * self.h, u * self.c2, u * u * self.c4
        if parametrization == "ising":
            c = {"beta": h, "lam": c4}
        elif parametrization == "kappa":
            c = {"kappa": h / 2.0, "lam": c4}
        elif parametrization == "albergo":
            c = {"m2": c2 - 4.0, "lam": c4}
        else:
            c = {"m2": 2.0 * c2 - 4.0, "g": 24.0 * c4}
        return Phi4Theory.create(self.L, parametrization, **c)

    def field_scale_to(self, other: Phi4Theory) -> float:
        """Return a with phi_self = a * phi_other, for ``other`` the same theory in another form.

        Then ``self.action(a * phi) - V c0_self == other.action(phi) - V c0_other``.
        """
        u_self = self.rescale_squared_to("ising")
        u_other = other.rescale_squared_to("ising")
        # phi_self = sqrt(u_self) phi_ising and phi_other = sqrt(u_other) phi_ising
        return math.sqrt(u_self / u_other)

    # ------------------------------------------------------------------ reference (NumPy) twins
    def action(self, phi: np.ndarray) -> np.ndarray | float:
        """Reference NumPy action S(phi), for one field (L, L) or a batch (n, L, L).

        Slow and obviously correct (np.roll); the numba kernels are tested against it.
        """
        phi = np.asarray(phi, dtype=np.float64)
        self._check_shape(phi)
        axes = (-2, -1)
        hop = phi * (np.roll(phi, -1, axis=-1) + np.roll(phi, -1, axis=-2))
        phi2 = phi * phi
        density = -self.h * hop + self.c2 * phi2 + self.c4 * phi2 * phi2
        s = density.sum(axis=axes) + self.volume * self.c0
        return float(s) if phi.ndim == 2 else s

    def force(self, phi: np.ndarray) -> np.ndarray:
        """Reference NumPy gradient dS/dphi_x = -h sum_nn phi_y + 2 c2 phi_x + 4 c4 phi_x^3."""
        phi = np.asarray(phi, dtype=np.float64)
        self._check_shape(phi)
        nn = (
            np.roll(phi, 1, axis=-1)
            + np.roll(phi, -1, axis=-1)
            + np.roll(phi, 1, axis=-2)
            + np.roll(phi, -1, axis=-2)
        )
        return -self.h * nn + 2.0 * self.c2 * phi + 4.0 * self.c4 * phi**3

    def local_delta_action(self, phi: np.ndarray, x: int, y: int, d: float) -> float:
        """Reference change of S when phi[x, y] -> phi[x, y] + d."""
        self._check_shape(phi)
        L = self.L
        p = phi[x, y]
        nn = phi[(x + 1) % L, y] + phi[(x - 1) % L, y] + phi[x, (y + 1) % L] + phi[x, (y - 1) % L]
        q = p + d
        return float(-self.h * d * nn + self.c2 * (q * q - p * p) + self.c4 * (q**4 - p**4))

    def _check_shape(self, phi: np.ndarray) -> None:
        if phi.ndim < 2 or phi.shape[-2:] != self.shape:
            raise ValueError(
                f"field shape {phi.shape} does not match the lattice {self.shape} "
                "(expected (L, L) or (n, L, L))"
            )
