"""Exact results for tests and analysis: the free field, one site, and the 2 x 2 lattice.

Free field (c4 = 0) in any parametrization.  In the hopping form the action is quadratic,
S = 1/2 phi K phi + V c0, and K is diagonal in momentum space,

    K(k) = 2 c2 - 2 h (cos k1 + cos k2),   k = 2 pi n / L,

so G~(k) = 1 / K(k) and G(x) = (1 / V) sum_k exp(i k x) G~(k).  In the ``standard`` form
K(k) = m2 + 4 sin^2(k1/2) + 4 sin^2(k2/2); the ``albergo`` form has twice that K, hence half of
every two-point quantity.  Arrays over k use NumPy FFT order (n = 0..L-1 on both axes).

Interacting systems: :func:`one_site_moments` integrates a single site by adaptive quadrature;
:func:`tiny_lattice_moments` solves the L = 2 periodic lattice (4 sites, a ring with doubled
bonds) with a Gauss-Legendre transfer matrix, plus a 2-D integral over pair sums for <|m|>.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from itertools import product

import numpy as np
from scipy import integrate, special

from lattice_samplers.theory import Phi4Theory

__all__ = [
    "FreeFieldSampler",
    "free_action_density",
    "free_correlation_length",
    "free_kernel_momentum",
    "free_phi2",
    "free_propagator_momentum",
    "free_susceptibility",
    "free_two_point",
    "free_zero_momentum_correlator",
    "one_site_moments",
    "tiny_lattice_moments",
]

# ----------------------------------------------------------------------------- free field


def _require_free(theory: Phi4Theory) -> None:
    if not theory.is_free:
        raise ValueError(f"exact free-field results need c4 == 0, got c4 = {theory.c4:g}")


def free_kernel_momentum(theory: Phi4Theory) -> np.ndarray:
    """K(k) = 2 c2 - 2 h (cos k1 + cos k2), the free action's eigenvalues, shape (L, L).

    Raises
    ------
    ValueError
        If the theory is not free.
    """
    _require_free(theory)
    h, c2, _ = theory.hopping
    cos_k = np.cos(2.0 * np.pi * np.arange(theory.L) / theory.L)
    return 2.0 * c2 - 2.0 * h * (cos_k[:, None] + cos_k[None, :])


def free_propagator_momentum(theory: Phi4Theory) -> np.ndarray:
    """Momentum-space propagator G~(k) = 1 / K(k), shape (L, L), FFT order.

    Raises
    ------
    ValueError
        If the theory is not free.
    """
    return 1.0 / free_kernel_momentum(theory)


def free_two_point(theory: Phi4Theory) -> np.ndarray:
    """Two-point function G(x) = <phi_0 phi_x>, shape (L, L), separations modulo L.

    Raises
    ------
    ValueError
        If the theory is not free.
    """
    return np.fft.ifft2(free_propagator_momentum(theory)).real


def free_phi2(theory: Phi4Theory) -> float:
    """<phi_x^2> = G(0).

    Raises
    ------
    ValueError
        If the theory is not free.
    """
    return float(free_propagator_momentum(theory).mean())


def free_susceptibility(theory: Phi4Theory) -> float:
    """chi_2 = sum_x G(x) = G~(0) = 1 / (2 c2 - 4 h); the mean of M^2 / V.

    Raises
    ------
    ValueError
        If the theory is not free.
    """
    return float(free_propagator_momentum(theory)[0, 0])


def free_action_density(theory: Phi4Theory) -> float:
    """<S> / V = 1/2 + c0 (equipartition: each of the V Gaussian modes carries 1/2).

    Raises
    ------
    ValueError
        If the theory is not free.
    """
    _require_free(theory)
    return 0.5 + theory.c0


def free_zero_momentum_correlator(theory: Phi4Theory) -> np.ndarray:
    """C(t) = sum_{x1} G((t, x1)), shape (L,); the mean of the per-configuration correlator.

    For h > 0 it is A cosh(E (t - L/2)) with cosh E = c2 / h - 1 exactly.

    Raises
    ------
    ValueError
        If the theory is not free.
    """
    return free_two_point(theory).sum(axis=1)


def free_correlation_length(theory: Phi4Theory) -> float:
    """Second-moment correlation length from the exact G~(0) and G~(p_min).

    In the standard form it is exactly 1 / sqrt(m2).

    Raises
    ------
    ValueError
        If the theory is not free.
    """
    gk = free_propagator_momentum(theory)
    xi2 = (gk[0, 0] / gk[1, 0] - 1.0) / (4.0 * math.sin(math.pi / theory.L) ** 2)
    return math.sqrt(xi2) if xi2 >= 0 else math.nan


class FreeFieldSampler:
    """Exact, independent samples of a free theory, with their normalized log density.

    Gaussian in momentum space: white noise is filtered by sqrt(G~(k)) with FFTs, so each sample
    costs O(V log V) and samples are independent.  ``log_q`` is the exact normalized density
    log q(phi) = -1/2 phi K phi + 1/2 sum_k log K(k) - V/2 log(2 pi), hence
    log q(phi) + S(phi) = -log Z for every phi: as a proposal for independence Metropolis it is
    accepted with probability 1.

    Parameters
    ----------
    theory : Phi4Theory
        A free theory (c4 == 0) in any parametrization; samples are in its field normalization.

    Raises
    ------
    ValueError
        If the theory is not free.
    """

    def __init__(self, theory: Phi4Theory) -> None:
        kernel = free_kernel_momentum(theory)
        self.theory = theory
        self._kernel = kernel
        self._sqrt_propagator = 1.0 / np.sqrt(kernel)
        self._log_norm = 0.5 * float(np.log(kernel).sum()) - 0.5 * theory.volume * math.log(
            2.0 * math.pi
        )

    @property
    def log_z(self) -> float:
        """Log Z of the theory, Z = integral of exp(-S) with S including V c0."""
        return -self._log_norm - self.theory.volume * self.theory.c0

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` independent configurations and their log densities.

        Parameters
        ----------
        n : int
            Number of configurations (>= 0).
        rng : numpy.random.Generator
            Source of the white noise (n * V standard normals).

        Returns
        -------
        phi : ndarray, shape (n, L, L), float64
        log_q : ndarray, shape (n,), float64
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        noise = rng.standard_normal((int(n),) + self.theory.shape)
        # sqrt(G~) is real and even in k, so the filtered field is real up to rounding.
        phi = np.fft.ifft2(np.fft.fft2(noise) * self._sqrt_propagator).real
        return phi, self.log_prob(phi)

    def log_prob(self, phi: np.ndarray) -> np.ndarray | float:
        """Normalized log density log q(phi) of one field (L, L) or a batch (n, L, L)."""
        phi = np.asarray(phi, dtype=np.float64)
        if phi.ndim < 2 or phi.shape[-2:] != self.theory.shape:
            raise ValueError(f"field shape {phi.shape} does not match {self.theory.shape}")
        ft = np.fft.fft2(phi)
        # Parseval: phi K phi = (1 / V) sum_k K(k) |phi~(k)|^2, independent of the real-space
        # action, so tests of log_q + S check K itself.
        quad = (self._kernel * (ft.real**2 + ft.imag**2)).sum(axis=(-2, -1)) / self.theory.volume
        log_q = -0.5 * quad + self._log_norm
        return float(log_q) if phi.ndim == 2 else log_q


# ----------------------------------------------------------------------------- one site


def one_site_moments(c2_eff: float, c4: float, powers: Iterable[int]) -> np.ndarray:
    """Moments <phi^p> for a single site with weight exp(-(c2_eff phi^2 + c4 phi^4)).

    Adaptive quadrature (scipy ``quad``) on [0, inf), relative accuracy ~1e-12.

    Parameters
    ----------
    c2_eff : float
        Quadratic coefficient (may be negative if c4 > 0: a double well).
    c4 : float
        Quartic coefficient, >= 0.
    powers : iterable of int
        Non-negative integer powers; odd moments are 0 by symmetry.

    Returns
    -------
    ndarray of float, one moment per power.
    """
    if c4 < 0 or (c4 == 0 and c2_eff <= 0):
        raise ValueError(f"weight not normalizable: c2_eff = {c2_eff:g}, c4 = {c4:g}")
    powers = [int(p) for p in powers]
    if any(p < 0 for p in powers):
        raise ValueError(f"powers must be non-negative integers, got {powers}")
    # Shift the exponent by its minimum so a deep double well does not overflow.
    x_min = math.sqrt(-c2_eff / (2 * c4)) if c2_eff < 0 else 0.0
    v_min = c2_eff * x_min**2 + c4 * x_min**4

    def moment(p: int) -> float:
        def f(x: float) -> float:
            return x**p * math.exp(-(c2_eff * x * x + c4 * x**4 - v_min))

        pts = [x_min] if x_min > 0 else None
        edge = 2.0 * x_min + 1.0
        head = integrate.quad(f, 0.0, edge, points=pts, epsabs=0.0, epsrel=1e-13, limit=200)[0]
        tail = integrate.quad(f, edge, np.inf, epsabs=0.0, epsrel=1e-13, limit=200)[0]
        return head + tail

    z = moment(0)
    return np.array([0.0 if p % 2 else moment(p) / z for p in powers])


# ----------------------------------------------------------------------------- 2 x 2 lattice

#: Sites of the 2 x 2 lattice as a ring a-b-d-c (a = (0,0), b = (0,1), d = (1,1), c = (1,0)).
_RING = ((0, 0), (0, 1), (1, 1), (1, 0))
#: Orthogonal momentum basis on 2 x 2, phi.ravel() = _MODES @ u; u[0] = M / 2.
_MODES = 0.5 * np.array([[1, 1, 1, 1], [1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]], float)
#: exp(-60) ~ 1e-26: the weight neglected beyond the integration radius, relative to its peak.
_TAIL_MARGIN = 60.0


def _tiny_radius(theory: Phi4Theory) -> float:
    """Radius r in field space outside which exp(-S) < exp(-_TAIL_MARGIN) * max exp(-S).

    Uses S >= k_min |phi|^2 / 2 + c4 |phi|^4 / 4 (|phi|^2 = sum_x phi_x^2, sum_x phi_x^4 >=
    |phi|^4 / 4 on four sites, k_min the smallest eigenvalue of K), which bounds every
    |phi_x| and every mode amplitude.
    """
    h, c2, c4 = theory.hopping
    k_min = 2.0 * c2 - 4.0 * abs(h)
    if c4 == 0.0:
        return math.sqrt(2.0 * _TAIL_MARGIN / k_min)
    # g(y) = k_min y / 2 + c4 y^2 / 4 with y = |phi|^2; solve g(y) = min g + margin.
    g_min = -(k_min**2) / (4.0 * c4) if k_min < 0 else 0.0
    a, b, c = c4 / 4.0, k_min / 2.0, -(g_min + _TAIL_MARGIN)
    y = (-b + math.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)
    return math.sqrt(y)


@functools.lru_cache(maxsize=16)
def _legendre_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    # scipy's rule is O(n) (numpy's leggauss diagonalizes a dense n x n matrix)
    x, w = special.roots_legendre(n)
    x.flags.writeable = w.flags.writeable = False
    return x, w


def _gauss_legendre(n: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    x, w = _legendre_rule(int(n))
    return 0.5 * (hi - lo) * x + 0.5 * (hi + lo), 0.5 * (hi - lo) * w


def _ring_moments(theory: Phi4Theory, n_nodes: int) -> dict[str, float]:
    """Transfer-matrix moments on the 2 x 2 lattice: phi^2, phi^4, bond, M^2, M^4 and log Z."""
    h, c2, c4 = theory.hopping
    r = _tiny_radius(theory)
    x, w = _gauss_legendre(n_nodes, -r, r)
    site = c2 * x * x + c4 * x**4
    # Each ring bond carries 2h: on L = 2 the +mu and -mu neighbours coincide.
    log_t = (
        0.5 * (np.log(w) - site)[:, None]
        + 0.5 * (np.log(w) - site)[None, :]
        + 2 * h * np.outer(x, x)
    )
    shift = float(log_t.max())
    t = np.exp(log_t - shift)
    powers = [x**p for p in range(5)]
    a = [p[:, None] * t for p in powers]  # A_p = D^p T
    pairs: dict[tuple[int, int], np.ndarray] = {}

    def pair(p: int, q: int) -> np.ndarray:
        if (p, q) not in pairs:
            pairs[(p, q)] = a[p] @ a[q]
        return pairs[(p, q)]

    def trace(n: tuple[int, int, int, int]) -> float:
        """Tr(D^n0 T D^n1 T D^n2 T D^n3 T): sites a, b, d, c around the ring."""
        return float(np.einsum("ij,ji->", pair(n[0], n[1]), pair(n[2], n[3])))

    z = trace((0, 0, 0, 0))
    out = {
        "phi2": trace((2, 0, 0, 0)) / z,
        "phi4": trace((4, 0, 0, 0)) / z,
        "bond": trace((1, 1, 0, 0)) / z,
        "log_z": 4.0 * shift + math.log(z) - theory.volume * theory.c0,
    }
    for p in (2, 4):
        total = 0.0
        for n in product(range(p + 1), repeat=4):
            if sum(n) == p:
                coef = math.factorial(p) / math.prod(math.factorial(k) for k in n)
                total += coef * trace(n)
        out[f"M{p}"] = total / z
    return out


def _tiny_pair_moments(theory: Phi4Theory, n_nodes: int) -> dict[str, float]:
    """<|m|>, <m^2> and log Z on the 2 x 2 lattice by a 2-D integral over pair sums.

    With the ring a-b-d-c the hopping term is -2h (ab + bd + dc + ca) = -2h s t for the
    diagonal pair sums s = a + d, t = b + c, so Z = integral ds dt f(s) f(t) exp(2h s t), with
    f(s) = integral dv exp(-V1(s/2 + v) - V1(s/2 - v)) and M = s + t.  The outer integral runs
    over sigma = s + t >= 0 (the flip phi -> -phi covers sigma < 0) and delta = s - t, so the
    kink of |M| sits on the boundary where Gauss-Legendre stays exponentially convergent.
    All three integrals use ``n_nodes`` Gauss-Legendre nodes.
    """
    h, c2, c4 = theory.hopping
    r = _tiny_radius(theory)
    sigma, w_sigma = _gauss_legendre(n_nodes, 0.0, 2.0 * r)  # |M| <= 2 |phi|
    delta, w_delta = _gauss_legendre(n_nodes, -2.0 * r, 2.0 * r)
    v, w_v = _gauss_legendre(n_nodes, 0.0, r)  # |a - d| / 2 <= |phi| / sqrt(2); f is even in v
    # With a, d = s/2 +- v: V1(a) + V1(d) = c2 (s^2/2 + 2 v^2) + c4 (s^4/8 + 3 s^2 v^2 + 2 v^4).
    v_part = np.log(2.0 * w_v) - (2.0 * c2 * v**2 + 2.0 * c4 * v**4)
    v_top = float(v_part.max())

    def log_f(s: np.ndarray) -> np.ndarray:
        s2 = s * s
        mixed = np.exp(v_part - v_top - 3.0 * c4 * s2[..., None] * v**2).sum(axis=-1)
        return v_top + np.log(mixed) - (c2 * s2 / 2.0 + c4 * s2 * s2 / 8.0)

    s = 0.5 * (sigma[:, None] + delta[None, :])
    t = 0.5 * (sigma[:, None] - delta[None, :])
    log_f_s = log_f(s)
    log_f_t = log_f_s[:, ::-1]  # t(sigma, delta) = s(sigma, -delta) on the symmetric delta grid
    log_w = np.log(w_sigma)[:, None] + np.log(w_delta)[None, :] + log_f_s + log_f_t + 2 * h * s * t
    shift = float(log_w.max())
    w = np.exp(log_w - shift)
    z = float(w.sum())
    abs_m = float((w * sigma[:, None]).sum()) / z / theory.volume
    m2 = float((w * sigma[:, None] ** 2).sum()) / z / theory.volume**2
    # 2 for sigma < 0, 1/2 the Jacobian of (s, t) -> (sigma, delta)
    log_z = shift + math.log(z) - theory.volume * theory.c0
    return {"abs_magnetization": abs_m, "m2": m2, "log_z": log_z}


def tiny_lattice_moments(
    theory: Phi4Theory, n_nodes: int = 400, n_nodes_abs: int | None = 200
) -> dict[str, float]:
    """Exact expectation values on the 2 x 2 periodic lattice (any couplings, free or not).

    On L = 2 every nearest-neighbour pair is linked in both directions, so the lattice is a
    ring of four sites a-b-d-c with coupling 2h per bond.  The ring is solved with a symmetric
    transfer matrix on ``n_nodes`` Gauss-Legendre nodes in [-r, r], where r is chosen so the
    weight neglected outside is below exp(-60) of its maximum; traces with diagonal insertions
    give all moments of products of sites.  <|m|> is not such a moment; it comes from a 2-D
    integral over the diagonal pair sums (the hopping term is -2h (a + d)(b + c)) with
    ``n_nodes_abs`` Gauss-Legendre nodes per axis.  Both rules converge exponentially; for
    couplings like ising(beta = 0.5 .. 1.5, lam = 0.1 .. 0.5) or albergo(-4, 2) the defaults
    agree with larger node counts, and with each other on <m^2> and log Z, to ~1e-12 relative
    (checked in the tests; ``connected_susceptibility`` loses a few digits to cancellation).
    Hopping couplings far stronger than that, or nearly massless free theories, need more
    nodes: compare two node counts.

    Parameters
    ----------
    theory : Phi4Theory
        A theory with L == 2.
    n_nodes : int
        Transfer-matrix nodes (cost ~ 15 n_nodes^3 flops).
    n_nodes_abs : int or None
        Nodes per axis for <|m|> (cost ~ n_nodes_abs^3 exponentials); None skips it and the
        quantities that need it (``abs_magnetization``, ``connected_susceptibility``).

    Returns
    -------
    dict of str to float
        ``magnetization`` (0), ``abs_magnetization``, ``phi2`` (<phi_x^2>), ``phi4``,
        ``two_point_susceptibility`` (<M^2> / V), ``action_density`` (<S> / V incl. c0),
        ``ising_energy``, ``m2`` (<m^2>), ``m4`` (<m^4>), ``binder_cumulant``,
        ``connected_susceptibility`` (V (<m^2> - <|m|>^2)), ``log_z`` (S incl. V c0);
        m = M / V as in :mod:`lattice_samplers.observables`.
    """
    if theory.L != 2:
        raise ValueError(f"tiny_lattice_moments needs L == 2, got L = {theory.L}")
    h, c2, c4 = theory.hopping
    volume = theory.volume
    ring = _ring_moments(theory, n_nodes)
    m2 = ring["M2"] / volume**2
    m4 = ring["M4"] / volume**4
    ising = 2.0 * ring["bond"]  # 2V bonds per V sites, each <phi_x phi_y> = bond
    out = {
        "magnetization": 0.0,
        "phi2": ring["phi2"],
        "phi4": ring["phi4"],
        "two_point_susceptibility": ring["M2"] / volume,
        "action_density": c2 * ring["phi2"] + c4 * ring["phi4"] - h * ising + theory.c0,
        "ising_energy": ising,
        "m2": m2,
        "m4": m4,
        "binder_cumulant": 1.0 - m4 / (3.0 * m2 * m2),
        "log_z": ring["log_z"],
    }
    if n_nodes_abs is not None:
        am = _tiny_pair_moments(theory, n_nodes_abs)["abs_magnetization"]
        out["abs_magnetization"] = am
        out["connected_susceptibility"] = volume * (m2 - am * am)
    return out
