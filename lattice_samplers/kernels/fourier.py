"""Kernels of Fourier-accelerated HMC: the free-field propagator, its FFT application, local passes.

Fourier acceleration is HMC in the variables z of the exact free-field map phi = A z with
A = F^-1 sqrt(G~(k)) F, i.e. H(z, p) = |p|^2 / 2 + S(A z).  Writing u = A p (the velocity of
phi), one leapfrog step is

    u <- u - eps/2 * G dS/dphi(phi),   phi <- phi + eps * u,   u <- u - eps/2 * G dS/dphi(phi)

with G = A^2 = F^-1 G~(k) F, and the kinetic energy is |p|^2 / 2 = u^T G^-1 u / 2.  So a step
costs one local force (numba) and one real 2D FFT round trip (rfft2, multiply by G~, irfft2);
fresh momenta are u = A xi with xi ~ N(0, 1), one more round trip per trajectory, and the
final kinetic energy one forward transform.

The propagator, for the hopping-form action S = sum[-h sum_mu phi phi_{+mu} + c2 phi^2 +
c4 phi^4]: since -sum_mu phi_x phi_{x+mu} = 1/2 sum_mu (phi_{x+mu} - phi_x)^2 - 2 phi_x^2, the
Gaussian part is 1/2 phi^T [h (-Laplacian) + 2 (c2 - 2 h)] phi, diagonal in momentum space:

    S_2 = 1/(2V) sum_k (h khat^2 + 2 (c2 - 2 h)) |phi~(k)|^2,

khat^2 = 4 sin^2(k1/2) + 4 sin^2(k2/2),

with k = 2 pi n / L.  The map uses G~(k) = 1 / (h (khat^2 + M^2)); the free field (c4 = 0) is
reproduced exactly by M^2 = 2 (c2 - 2 h) / h, and any M > 0 gives an exact algorithm.

All functions take batches of fields, shape (n, L0, L1), C-contiguous float64.  The local
passes are compiled with the project's fastmath subset (NaN/inf kept) and release the GIL.
The transforms call SciPy's pocketfft binding directly with ``out=`` arrays: the public
``scipy.fft`` functions allocate their results and cost ~25 us of dispatch per call, more than
the transform itself at L <= 32 (the public API is the fallback).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numba import njit

from lattice_samplers.kernels.common import FASTMATH

try:  # SciPy's pocketfft binding: real transforms into preallocated arrays, no dispatch layer
    from scipy.fft._pocketfft import pypocketfft as _pocket
except ImportError:  # pragma: no cover - other SciPy builds: the public API (allocates)
    _pocket = None

__all__ = [
    "apply_propagator",
    "default_mass2",
    "force_into",
    "free_mass2",
    "free_propagator",
    "kick",
    "kick_drift",
    "kinetic_energy",
    "kinetic_weights",
    "leapfrog_kicks",
    "sample_velocity",
]


def free_mass2(h: float, c2: float) -> float:
    """M^2 of the free field with the hopping couplings (h, c2): 2 (c2 - 2 h) / h."""
    return 2.0 * (c2 - 2.0 * h) / h


def free_propagator(L0: int, L1: int, h: float, mass2: float) -> np.ndarray:
    """G~(k) = 1 / (h (khat^2 + mass2)) on the rfft grid, shape (L0, L1 // 2 + 1)."""
    if not (h > 0 and mass2 > 0):
        raise ValueError(f"the propagator needs h > 0 and mass2 > 0, got h={h}, mass2={mass2}")
    k0 = 2.0 * np.pi * np.arange(L0) / L0
    k1 = 2.0 * np.pi * np.arange(L1 // 2 + 1) / L1
    khat2 = 4.0 * np.sin(k0 / 2)[:, None] ** 2 + 4.0 * np.sin(k1 / 2)[None, :] ** 2
    return 1.0 / (h * (khat2 + mass2))


def kinetic_weights(propagator: np.ndarray, L1: int) -> np.ndarray:
    """W with u^T G^-1 u / 2 = sum W |rfft2(u)|^2 on the rfft half-spectrum.

    Parseval over the full spectrum gives 1/(2V) sum_k |u~(k)|^2 / G~(k); the half-spectrum
    counts the columns 1 .. ceil(L1/2) - 1 twice (their mirror images are not stored) and the
    column 0 (and L1/2 for even L1) once.
    """
    L0 = propagator.shape[0]
    w = np.full(propagator.shape[1], 2.0)
    w[0] = 1.0
    if L1 % 2 == 0:
        w[-1] = 1.0
    return w[None, :] / (2.0 * L0 * L1 * propagator)


def _rfft2(f: np.ndarray, out: np.ndarray, workers: int) -> None:
    """Forward transform: out = rfft2(f) over the last two axes, written into ``out``."""
    if _pocket is None:
        out[...] = scipy.fft.rfft2(f, workers=workers)
    else:
        _pocket.r2c(f, axes=(-2, -1), forward=True, inorm=0, out=out, nthreads=workers)


def _irfft2(spectrum: np.ndarray, out: np.ndarray, workers: int) -> None:
    """Inverse transform: out = irfft2(spectrum, s=out.shape[-2:]) (spectrum overwritten)."""
    if _pocket is None:
        out[...] = scipy.fft.irfft2(spectrum, s=out.shape[-2:], workers=workers)
    else:
        _pocket.c2r(
            spectrum,
            axes=(-2, -1),
            lastsize=out.shape[-1],
            forward=False,
            inorm=2,
            out=out,
            nthreads=workers,
        )


def apply_propagator(
    f: np.ndarray, propagator: np.ndarray, work: np.ndarray, out: np.ndarray, workers: int = 1
) -> np.ndarray:
    """Apply G: out = irfft2(G~ rfft2(f)) over the last two axes of the batch ``f``.

    ``work`` (the batch's rfft shape, complex128) is scratch space; nothing is allocated.
    """
    _rfft2(f, work, workers)
    np.multiply(work, propagator, out=work)
    _irfft2(work, out, workers)
    return out


def sample_velocity(
    xi: np.ndarray, sqrt_propagator: np.ndarray, work: np.ndarray, out: np.ndarray, workers: int = 1
) -> np.ndarray:
    """The velocity u = A xi = irfft2(sqrt(G~) rfft2(xi)), kinetic energy |xi|^2 / 2."""
    return apply_propagator(xi, sqrt_propagator, work, out, workers)


def kinetic_energy(
    u: np.ndarray, weights: np.ndarray, work: np.ndarray, out: np.ndarray, workers: int = 1
) -> np.ndarray:
    """u^T G^-1 u / 2 for each field of the batch ``u`` into ``out`` (shape (n,))."""
    _rfft2(u, work, workers)
    _weighted_power(work, weights, out)
    return out


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _weighted_power(spectrum: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """out[n] = sum_k weights[k] |spectrum[n, k]|^2."""
    n, a, b = spectrum.shape
    for c in range(n):
        s = 0.0
        for i in range(a):
            for j in range(b):
                z = spectrum[c, i, j]
                s += weights[i, j] * (z.real * z.real + z.imag * z.imag)
        out[c] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def force_into(phi: np.ndarray, h: float, c2: float, c4: float, out: np.ndarray) -> None:
    """dS/dphi = -h sum_nn phi + 2 c2 phi + 4 c4 phi^3 for a batch (n, L0, L1), periodic.

    The inner loop over the interior columns has no wrap-around branch (it vectorizes); the
    first and last column are done apart.
    """
    n, L0, L1 = phi.shape
    a = 2.0 * c2
    b = 4.0 * c4
    for c in range(n):
        f = phi[c]
        o = out[c]
        for i in range(L0):
            up = f[i - 1 if i > 0 else L0 - 1]
            row = f[i]
            down = f[i + 1 if i + 1 < L0 else 0]
            orow = o[i]
            for j in range(1, L1 - 1):
                p = row[j]
                orow[j] = p * (a + b * p * p) - h * (row[j - 1] + row[j + 1] + up[j] + down[j])
            for j in (0, L1 - 1):
                jm = j - 1 if j > 0 else L1 - 1
                jp = j + 1 if j + 1 < L1 else 0
                p = row[j]
                orow[j] = p * (a + b * p * p) - h * (row[jm] + row[jp] + up[j] + down[j])


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def kick_drift(
    phi: np.ndarray, u: np.ndarray, gforce: np.ndarray, eps_kick: float, eps_drift: float
) -> None:
    """Kick and drift in one pass: u -= eps_kick * gforce, then phi += eps_drift * u."""
    p = phi.reshape(phi.size)
    v = u.reshape(u.size)
    g = gforce.reshape(gforce.size)
    for y in range(p.size):
        w = v[y] - eps_kick * g[y]
        v[y] = w
        p[y] += eps_drift * w


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def kick(u: np.ndarray, gforce: np.ndarray, eps_kick: float) -> None:
    """Kick: u -= eps_kick * gforce over a batch."""
    v = u.reshape(u.size)
    g = gforce.reshape(gforce.size)
    for y in range(v.size):
        v[y] -= eps_kick * g[y]


def leapfrog_kicks(
    step_size: float, n_leapfrog: int, omelyan: bool, lam: float
) -> tuple[list[float], float]:
    """The kick sizes (one more than the drifts) and the drift size of one trajectory.

    Leapfrog: kick(eps/2) [drift(eps) kick(eps)] ... drift(eps) kick(eps/2).  Omelyan's
    minimum-norm scheme: per step kick(lam eps) drift(eps/2) kick((1 - 2 lam) eps) drift(eps/2)
    kick(lam eps), adjacent kicks merged (2 n_leapfrog drifts and force evaluations).
    """
    eps = step_size
    if not omelyan:
        return [0.5 * eps] + [eps] * (n_leapfrog - 1) + [0.5 * eps], eps
    kicks = [lam * eps]
    for k in range(1, 2 * n_leapfrog):
        kicks.append((1.0 - 2.0 * lam) * eps if k % 2 == 1 else 2.0 * lam * eps)
    kicks.append(lam * eps)
    return kicks, 0.5 * eps


def default_mass2(L: int, h: float, c2: float) -> float:
    """The default M^2: the free-field value if it exceeds (4/L)^2, else (4/L)^2 (xi = L/4).

    For a free theory this is the exact trivializing map; for a negative or small quadratic
    coefficient (a broken or critical phase) a correlation length of a quarter of the
    lattice sets the scale.
    """
    floor = (4.0 / L) ** 2
    m2 = free_mass2(h, c2)
    return m2 if math.isfinite(m2) and m2 > floor else floor
