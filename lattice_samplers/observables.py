"""Per-configuration observables of a lattice field and derived quantities with jackknife errors.

Every per-configuration function takes ``phi`` of shape ``(..., L, L)`` (one field ``(L, L)``,
a batch ``(n, L, L)``, or chains ``(n_chains, n_draws, L, L)``) and reduces only the last two
(lattice) axes, so the result has the leading shape of the input (a NumPy scalar for a single
field).  Definitions, with V = L^2, M = sum_x phi_x and m = M / V:

========================  ====================================================================
name                      per-configuration value
========================  ====================================================================
magnetization             m = M / V
abs_magnetization         abs(m) = abs(M) / V
two_point_susceptibility  M^2 / V = V m^2 (its mean estimates chi_2 = sum_x <phi_0 phi_x>)
action_density            S / V, the full action of the theory including V c0
phi2                      (1 / V) sum_x phi_x^2
ising_energy              (1 / V) sum_x sum_{mu=1,2} phi_x phi_{x+mu}
========================  ====================================================================

so that ``action_density = -h * ising_energy + c2 * phi2 + c4 * <phi^4>_sites + c0`` in the
hopping form of :class:`lattice_samplers.theory.Phi4Theory`.  Numba samplers that measure these
inside compiled loops must follow exactly these definitions.

Two-point functions are *full* (not connected) and translation averaged per configuration,

    G(x) = (1 / V) sum_y phi_y phi_{y+x},      G~(k) = |phi~(k)|^2 / V,

so that ensemble means of them estimate <phi_0 phi_x> and its Fourier transform.  On a finite
periodic lattice <m> = 0 by the Z2 symmetry, so the mean of G(x) is also the connected function
there.  Where a disconnected part must be removed (a broken-phase analysis subtracts <|m|>^2),
form it from means: ``jackknife(lambda g, am: g - am**2, G, abs_magnetization_series)``.

Derived quantities are nonlinear functions of ensemble means; their errors come from a blocked
jackknife (:func:`jackknife`), which handles autocorrelation when bins are much longer than
tau_int, and several independent chains (bins never straddle two chains).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lattice_samplers.theory import Phi4Theory

__all__ = [
    "SCALAR_OBSERVABLES",
    "abs_magnetization",
    "action_density",
    "binder_cumulant",
    "connected_susceptibility",
    "effective_mass",
    "ising_energy",
    "jackknife",
    "magnetization",
    "measure",
    "phi2",
    "second_moment_correlation_length",
    "second_moment_xi",
    "two_point_function",
    "two_point_momentum",
    "two_point_pmin",
    "two_point_susceptibility",
    "zero_momentum_correlator",
]

#: Keys of :func:`measure`, the standard scalar series stored by every sampler.
SCALAR_OBSERVABLES: tuple[str, ...] = (
    "magnetization",
    "abs_magnetization",
    "two_point_susceptibility",
    "action_density",
    "phi2",
    "ising_energy",
)

_LATTICE_AXES = (-2, -1)


def _as_field(phi: np.ndarray) -> np.ndarray:
    """Return phi as float64 with shape (..., L, L), or raise ValueError."""
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim < 2 or phi.shape[-1] != phi.shape[-2]:
        raise ValueError(f"expected a field of shape (..., L, L), got {phi.shape}")
    return phi


def _hop(phi: np.ndarray) -> np.ndarray:
    """Per-site sum_mu phi_x phi_{x+mu}, each bond counted once (forward neighbours)."""
    return phi * (np.roll(phi, -1, axis=-1) + np.roll(phi, -1, axis=-2))


# ---------------------------------------------------------------------------- scalar series
def magnetization(phi: np.ndarray) -> np.ndarray:
    """Magnetization per site, m = (1 / V) sum_x phi_x.

    Parameters
    ----------
    phi : ndarray, shape (..., L, L)
        Field configuration(s).

    Returns
    -------
    ndarray, shape (...)
        One value per configuration.
    """
    return _as_field(phi).mean(axis=_LATTICE_AXES)


def abs_magnetization(phi: np.ndarray) -> np.ndarray:
    """Absolute magnetization per site, |m| = |sum_x phi_x| / V (not the mean of |phi_x|)."""
    return np.abs(magnetization(phi))


def two_point_susceptibility(phi: np.ndarray) -> np.ndarray:
    """M^2 / V with M = sum_x phi_x; its ensemble mean is chi_2 = sum_x <phi_0 phi_x> = G~(0)."""
    phi = _as_field(phi)
    volume = phi.shape[-1] * phi.shape[-2]
    total = phi.sum(axis=_LATTICE_AXES)
    return total * total / volume


def phi2(phi: np.ndarray) -> np.ndarray:
    """Site average of phi_x^2 (equals G(0) of the same configuration)."""
    phi = _as_field(phi)
    return (phi * phi).mean(axis=_LATTICE_AXES)


def ising_energy(phi: np.ndarray) -> np.ndarray:
    """Nearest-neighbour product per site, (1 / V) sum_x sum_{mu=1,2} phi_x phi_{x+mu}.

    Each of the 2V bonds is counted once, so for a constant field phi = v this is 2 v^2.  On
    L = 2 the forward neighbours in +mu and -mu coincide and each distinct pair appears twice,
    exactly as in the action.
    """
    return _hop(_as_field(phi)).mean(axis=_LATTICE_AXES)


def action_density(theory: Phi4Theory, phi: np.ndarray) -> np.ndarray:
    """Action per site S / V, including the additive constant V c0 of the parametrization."""
    return measure(theory, phi)["action_density"]


def measure(theory: Phi4Theory, phi: np.ndarray) -> dict[str, np.ndarray]:
    """Standard scalar series of a batch of configurations.

    Parameters
    ----------
    theory : Phi4Theory
        Supplies the lattice size and the couplings of ``action_density``.
    phi : ndarray, shape (..., L, L)
        Field configuration(s) in the field normalization of ``theory``.

    Returns
    -------
    dict of str to ndarray
        Keys :data:`SCALAR_OBSERVABLES` (``magnetization``, ``abs_magnetization``,
        ``two_point_susceptibility``, ``action_density``, ``phi2``, ``ising_energy``), each of
        the leading shape of ``phi``; definitions in the module docstring.
    """
    phi = _as_field(phi)
    if phi.shape[-2:] != theory.shape:
        raise ValueError(
            f"field shape {phi.shape} does not match the lattice {theory.shape} "
            "(expected (..., L, L))"
        )
    volume = theory.volume
    h, c2, c4 = theory.hopping
    sq = phi * phi
    m = phi.mean(axis=_LATTICE_AXES)
    p2 = sq.mean(axis=_LATTICE_AXES)
    p4 = (sq * sq).mean(axis=_LATTICE_AXES)
    e = _hop(phi).mean(axis=_LATTICE_AXES)
    return {
        "magnetization": m,
        "abs_magnetization": np.abs(m),
        "two_point_susceptibility": volume * m * m,
        "action_density": -h * e + c2 * p2 + c4 * p4 + theory.c0,
        "phi2": p2,
        "ising_energy": e,
    }


# ---------------------------------------------------------------------------- correlators
def two_point_momentum(phi: np.ndarray) -> np.ndarray:
    """Per-configuration momentum-space two-point function G~(k) = |phi~(k)|^2 / V.

    ``phi~(k) = sum_x exp(-i k x) phi_x`` with k = 2 pi n / L in NumPy FFT order (n = 0..L-1 on
    both axes).  G~(0) is :func:`two_point_susceptibility`.

    Returns
    -------
    ndarray, shape (..., L, L)
        Real and non-negative.
    """
    phi = _as_field(phi)
    volume = phi.shape[-1] * phi.shape[-2]
    ft = np.fft.fft2(phi)
    return (ft.real**2 + ft.imag**2) / volume


def two_point_pmin(phi: np.ndarray) -> np.ndarray:
    """Per-configuration G~(p_min), averaged over p_min = (2 pi / L, 0) and (0, 2 pi / L).

    The input of the second-moment correlation length, together with G~(0) =
    :func:`two_point_susceptibility`.
    """
    gk = two_point_momentum(phi)
    return 0.5 * (gk[..., 1, 0] + gk[..., 0, 1])


def two_point_function(phi: np.ndarray) -> np.ndarray:
    """Per-configuration full two-point function G(x) = (1 / V) sum_y phi_y phi_{y+x}.

    Averaged over translations within each configuration, so the ensemble mean estimates
    <phi_0 phi_x> (connected where <m> = 0, see the module docstring).  Sums:
    G(0) = :func:`phi2`, sum_x G(x) = M^2 / V, G((1, 0)) + G((0, 1)) = :func:`ising_energy`.

    Returns
    -------
    ndarray, shape (..., L, L)
        G[..., x0, x1] with separations in lattice units modulo L.
    """
    return np.fft.ifft2(two_point_momentum(phi)).real


def zero_momentum_correlator(phi: np.ndarray, average_directions: bool = True) -> np.ndarray:
    """Per-configuration zero-momentum correlator C(t) = sum_{x1} G((t, x1)).

    Equivalently C(t) = (1 / V) sum_{t0} S(t0) S(t0 + t) with S(t) the sum of phi over the
    time slice t, so sum_t C(t) = M^2 / V and C(t) = C(L - t).

    Parameters
    ----------
    phi : ndarray, shape (..., L, L)
        Field configuration(s).
    average_directions : bool
        If True (default) average the correlators with time along either lattice axis (the
        lattice is symmetric, so this halves the noise for free); otherwise time is axis -2.

    Returns
    -------
    ndarray, shape (..., L)
    """
    phi = _as_field(phi)
    volume = phi.shape[-1] * phi.shape[-2]

    def corr(slices: np.ndarray) -> np.ndarray:
        ft = np.fft.fft(slices, axis=-1)
        return np.fft.ifft(ft.real**2 + ft.imag**2, axis=-1).real / volume

    c = corr(phi.sum(axis=-1))
    if average_directions:
        c = 0.5 * (c + corr(phi.sum(axis=-2)))
    return c


def effective_mass(correlator: np.ndarray) -> np.ndarray:
    """Cosh effective mass m_eff(t) = arccosh((C(t-1) + C(t+1)) / (2 C(t))), t = 1 .. L-1.

    For C(t) = A cosh(m (t - L/2)), 0 <= t <= L, this is m at every t in 1 .. L-1 (C(L) =
    C(0) closes the last one).  t = 0 sits on the cusp of the periodic correlator, where the
    formula does not apply: it is NaN.  Apply it to an ensemble mean of C, e.g. with errors
    ``jackknife(effective_mass, C_series)``.

    Parameters
    ----------
    correlator : ndarray, shape (..., L)
        C(t) along the last axis, t = 0 .. L-1.

    Returns
    -------
    ndarray, shape (..., L)
        NaN at t = 0 and where the estimate is undefined (C(t) <= 0, ratio < 1, non-finite
        input); no warnings are emitted for those.
    """
    c = np.asarray(correlator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = (np.roll(c, 1, axis=-1) + np.roll(c, -1, axis=-1)) / (2.0 * c)
        ok = (c > 0) & np.isfinite(ratio) & (ratio >= 1.0)
        ok[..., 0] = False
        return np.where(ok, np.arccosh(np.where(ok, ratio, 1.0)), np.nan)


# ---------------------------------------------------------------------------- jackknife
def _bin_sums(
    x: np.ndarray, n_chains: int, n_draws: int, bins_per_chain: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts over contiguous bins within each chain, shapes (B, ...) and (B,)."""
    edges = np.array([len(a) for a in np.array_split(np.arange(n_draws), bins_per_chain)])
    starts = np.concatenate([[0], np.cumsum(edges)[:-1]])
    sums = np.add.reduceat(x, starts, axis=1)  # (n_chains, bins_per_chain, ...)
    sums = sums.reshape((n_chains * bins_per_chain,) + x.shape[2:])
    counts = np.tile(edges, n_chains).astype(np.float64)
    return sums, counts


def jackknife(
    func: Callable[..., Any],
    *series: np.ndarray,
    n_bins: int = 20,
    bin_size: int | None = None,
    chains: bool = False,
) -> tuple[Any, Any]:
    """Blocked jackknife estimate and error of ``func`` of the means of one or more series.

    ``func`` receives the sample means of ``series`` (one positional argument each, of the
    trailing shape of that series) and returns a scalar or an array.  The estimate is ``func``
    of the full-sample means; the error comes from the leave-one-bin-out means,
    err^2 = (B - 1) / B * sum_b (theta_b - mean_b theta_b)^2 over the B bins.  Bins are
    contiguous, of (near) equal length, and lie within one chain; they must be several
    tau_int long for the error to account for autocorrelation.

    Parameters
    ----------
    func : callable
        Maps the means to the derived quantity, e.g. ``lambda m2, m4: 1 - m4 / (3 * m2**2)``.
    *series : ndarray
        Shape (n, ...) or, with ``chains=True``, (n_chains, n_draws, ...); the sample axes
        must agree between series, trailing shapes may differ.
    n_bins : int
        Total number of bins (default 20), split evenly over the chains (at least one bin per
        chain).  Ignored if ``bin_size`` is given.
    bin_size : int, optional
        Minimum bin length in draws; each chain gets ``n_draws // bin_size`` bins.
    chains : bool
        Whether the first two axes are (chain, draw).

    Returns
    -------
    value, err
        Floats if ``func`` returns a scalar, else arrays of its shape.  NaN propagates (no
        warnings) where ``func`` is undefined.
    """
    if not series:
        raise ValueError("jackknife needs at least one series")
    xs = [np.asarray(s, dtype=np.float64) for s in series]
    if not chains:
        xs = [x[np.newaxis] for x in xs]
    if any(x.ndim < 2 for x in xs):
        raise ValueError("chains=True needs series of shape (n_chains, n_draws, ...)")
    n_chains, n_draws = xs[0].shape[:2]
    if any(x.shape[:2] != (n_chains, n_draws) for x in xs):
        shapes = ", ".join(str(x.shape) for x in xs)
        raise ValueError(f"series disagree in their sample axes: {shapes}")
    if bin_size is not None:
        if bin_size < 1:
            raise ValueError(f"bin_size must be >= 1, got {bin_size}")
        bins_per_chain = max(1, n_draws // bin_size)
    else:
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        bins_per_chain = min(n_draws, max(1, n_bins // n_chains))
    n_total = n_chains * bins_per_chain
    if n_total < 2:
        raise ValueError(
            f"the jackknife needs >= 2 bins, got {n_total} "
            f"({n_chains} chain(s) of {n_draws} draws, n_bins={n_bins}, bin_size={bin_size})"
        )

    binned = [_bin_sums(x, n_chains, n_draws, bins_per_chain) for x in xs]
    counts = binned[0][1]
    n_samples = counts.sum()
    totals = [sums.sum(axis=0) for sums, _ in binned]

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        value = np.asarray(func(*[t / n_samples for t in totals]), dtype=np.float64)
        thetas = np.empty((n_total,) + value.shape)
        for b in range(n_total):
            rest = n_samples - counts[b]
            means = [(t - sums[b]) / rest for t, (sums, _) in zip(totals, binned)]
            thetas[b] = func(*means)
        spread = thetas - thetas.mean(axis=0)
        err = np.sqrt((n_total - 1) / n_total * (spread * spread).sum(axis=0))
    if value.ndim == 0:
        return float(value), float(err)
    return value, err


# ---------------------------------------------------------------------------- derived
def connected_susceptibility(
    magnetization: np.ndarray, volume: int, **jackknife_options: Any
) -> tuple[float, float]:
    """Connected susceptibility V (<m^2> - <|m|>^2) with its jackknife error.

    The |m| form is the usual finite-volume definition (<m> = 0 on a periodic lattice).

    Parameters
    ----------
    magnetization : ndarray
        Series of m = M / V, shape (n,) or (n_chains, n_draws) with ``chains=True``.
    volume : int
        Number of sites V = L^2.
    **jackknife_options
        ``n_bins``, ``bin_size``, ``chains`` of :func:`jackknife`.

    Returns
    -------
    value, err : float
    """
    m = np.asarray(magnetization, dtype=np.float64)
    return jackknife(lambda m2, am: volume * (m2 - am * am), m * m, np.abs(m), **jackknife_options)


def binder_cumulant(magnetization: np.ndarray, **jackknife_options: Any) -> tuple[float, float]:
    """Binder cumulant U = 1 - <m^4> / (3 <m^2>^2) with its jackknife error.

    U -> 0 for a Gaussian magnetization (disordered phase) and 2/3 deep in the ordered phase.
    Arguments as in :func:`connected_susceptibility` (without the volume).
    """
    m2 = np.asarray(magnetization, dtype=np.float64) ** 2
    return jackknife(lambda a, b: 1.0 - b / (3.0 * a * a), m2, m2 * m2, **jackknife_options)


def second_moment_xi(g0: float | np.ndarray, g_pmin: float | np.ndarray, L: int) -> Any:
    """Second-moment correlation length from means of G~(0) and G~(p_min).

    xi^2 = (G~(0) / G~(p_min) - 1) / (4 sin^2(pi / L)); returns xi, NaN where xi^2 < 0.  For the
    free field this is exactly 1 / m in the standard normalization.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        xi2 = (np.asarray(g0) / np.asarray(g_pmin) - 1.0) / (4.0 * np.sin(np.pi / L) ** 2)
        return np.sqrt(np.where(xi2 >= 0, xi2, np.nan))


def second_moment_correlation_length(
    two_point_susceptibility: np.ndarray,
    g_pmin: np.ndarray,
    L: int,
    **jackknife_options: Any,
) -> tuple[float, float]:
    """Second-moment correlation length xi with its jackknife error.

    Parameters
    ----------
    two_point_susceptibility : ndarray
        Series of G~(0) = M^2 / V (:func:`two_point_susceptibility`).
    g_pmin : ndarray
        Series of G~(p_min) averaged over both directions (:func:`two_point_pmin`), same shape.
    L : int
        Lattice extent.
    **jackknife_options
        ``n_bins``, ``bin_size``, ``chains`` of :func:`jackknife`.

    Returns
    -------
    value, err : float
        NaN if the estimate of xi^2 is negative.
    """
    return jackknife(
        lambda a, b: second_moment_xi(a, b, L),
        two_point_susceptibility,
        g_pmin,
        **jackknife_options,
    )
