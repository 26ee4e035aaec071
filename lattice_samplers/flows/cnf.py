"""An equivariant continuous normalizing flow on the lattice (Gerdes et al., arXiv:2207.00283).

The field follows the ODE, for t from 0 to 1,

    d phi_x / dt = v_x(t, phi) = sum_y sum_f K_f(t, x - y) g_f(phi_y),

with odd features g_0(phi) = phi and g_f(phi) = sin(omega_f phi), f = 1..F (learnable
frequencies omega_f), so v(-phi) = -v(phi) and the map is Z2-equivariant exactly.  Each kernel
is invariant under translations (it depends on x - y only) and under the lattice's point group
D4 (rotations by 90 degrees and reflections): it has one weight per D4 orbit of displacements
(dx, dy) with max(|dx|, |dy|) <= R, ``kernel_radius``, the orbit of (dx, dy) being
{(+-a, +-b), (+-b, +-a)}, labelled by (a, b) = sorted(|dx|, |dy|), and zero beyond.  Its time
dependence is a cosine basis,

    K_f(t, d) = sum_j sum_o W[f, j, o] cos(pi j t) [d in orbit o],  j = 0..J-1.

On the periodic L x L lattice the kernel is the periodic sum of that stencil (for L <= 2R a
stencil entry and its image add up), so the weights do not depend on L: a flow trained at one
lattice size can be loaded at another (see :func:`transferable`).  The convolution is applied by
FFT: the stencil is symmetric under d -> -d, so its transform is real.

The divergence is exact and costs O(V), since dv_x/dphi_x = sum_f K_f(t, 0) g_f'(phi_x):

    d log q / dt = -sum_x sum_f K_f(t, 0) g_f'(phi_x),  g_0' = 1,  g_f' = omega_f cos(omega_f phi).

State and log-density are integrated together by the classical fixed-step Runge-Kutta scheme
(RK4) with ``ode_steps`` steps; the inverse integrates from t = 1 back to 0 with the same steps.

Accuracy: the reported log-det is the RK4 integral of the exact divergence, and the inverse is
the backward RK4 integration, so both differ from the exact log-det and inverse of the discrete
map by O(h^4), h = 1 / ode_steps (the tests measure it).  An independence-Metropolis chain with
this proposal therefore carries a bias of that order in its weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lattice_samplers.flows.layers import FlowLayer

__all__ = [
    "EquivariantCNFLayer",
    "TRANSFERABLE_KEYS",
    "displacement_orbits",
    "orbit_stencils",
    "time_basis",
    "transferable",
]

#: Architecture keys of the ``cnf`` family that fix the shape and meaning of its parameters.
#: None of them involves L, so the weights transfer across lattice sizes.
TRANSFERABLE_KEYS = ("family", "cnf_frequencies", "cnf_time_basis", "kernel_radius")


def displacement_orbits(radius: int) -> list[tuple[int, int]]:
    """The D4 orbits of displacements with max(|dx|, |dy|) <= radius, as keys (a, b), a <= b.

    The orbit of (dx, dy) under the 8 rotations and reflections of the square lattice is
    {(+-a, +-b), (+-b, +-a)} with (a, b) = sorted(|dx|, |dy|); there are (R+1)(R+2)/2 of them.
    """
    if radius < 0:
        raise ValueError(f"kernel_radius must be >= 0, got {radius}")
    return [(a, b) for b in range(radius + 1) for a in range(b + 1)]


def orbit_stencils(L: int, radius: int) -> torch.Tensor:
    """Indicator stencils of the displacement orbits on the periodic L x L lattice.

    Returns
    -------
    torch.Tensor
        float64, shape ``(n_orbits, L, L)``; entry ``[o, x, y]`` counts the displacements
        (dx, dy) of orbit o (|dx|, |dy| <= radius) with (dx mod L, dy mod L) = (x, y), so a
        kernel ``sum_o w_o stencil[o]`` is the periodic sum of the infinite-lattice stencil.
    """
    keys = displacement_orbits(radius)
    index = {k: i for i, k in enumerate(keys)}
    out = torch.zeros((len(keys), L, L), dtype=torch.float64)
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            a, b = sorted((abs(dx), abs(dy)))
            out[index[(a, b)], dx % L, dy % L] += 1.0
    return out


def time_basis(t: torch.Tensor, n_basis: int) -> torch.Tensor:
    """Cosine basis cos(pi j t), j = 0..n_basis-1, at times ``t`` (shape ``t.shape + (J,)``)."""
    j = torch.arange(n_basis, dtype=t.dtype, device=t.device)
    return torch.cos(math.pi * t.unsqueeze(-1) * j)


def transferable(arch: dict[str, Any]) -> dict[str, Any] | None:
    """The L-independent part of a resolved architecture that fixes the flow's parameters.

    Two architectures with equal, non-None results have state dicts of the same keys and
    shapes whose entries mean the same thing at both lattice sizes, so weights trained at one L
    can warm-start a flow at another (``ode_steps`` and the parameter-free free-field base may
    differ).  Returns None for families whose parameters depend on L (the dense couplings).
    """
    if arch.get("family", "coupling") != "cnf":
        return None
    out = {k: arch[k] for k in TRANSFERABLE_KEYS}
    # the global design's weights are per torus orbit: they transfer by extension (cnf_global)
    for key in ("cnf_kernel", "cnf_channels", "cnf_time_channels"):
        if key in arch:
            out[key] = arch[key]
    out["global_rescaling"] = arch["global_rescaling"]
    return out


class EquivariantCNFLayer(FlowLayer):
    """Translation-, D4- and Z2-equivariant neural ODE layer with an exact divergence.

    See the module docstring for the vector field, the kernels and the integration.

    Parameters
    ----------
    L : int
        Lattice extent (any L >= 1).
    frequencies : int
        Number F of sine features sin(omega_f phi) besides the linear feature phi.
    n_time_basis : int
        Number J of cosine time-basis functions of each kernel weight.
    kernel_radius : int
        Kernels vanish for displacements with max(|dx|, |dy|) > kernel_radius.
    ode_steps : int
        RK4 steps on [0, 1] (forward and inverse).
    init_scale : float
        Initial kernel weights are N(0, init_scale^2 / ((F + 1) (2R + 1)^2)), so the initial
        velocity is of order init_scale times a feature (0 gives the identity map).

    Attributes
    ----------
    weight : torch.nn.Parameter
        Kernel weights, shape ``(F + 1, J, n_orbits)``; feature 0 is the linear one.
    omega : torch.nn.Parameter
        Frequencies of the sine features, shape ``(F,)``, initialized to 0.5, 1.0, ..., F/2.
    """

    equivariant = True

    def __init__(
        self,
        L: int,
        frequencies: int = 4,
        n_time_basis: int = 4,
        kernel_radius: int = 3,
        ode_steps: int = 10,
        init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        if frequencies < 0:
            raise ValueError(f"cnf_frequencies must be >= 0, got {frequencies}")
        if n_time_basis < 1:
            raise ValueError(f"cnf_time_basis must be >= 1, got {n_time_basis}")
        if ode_steps < 1:
            raise ValueError(f"ode_steps must be >= 1, got {ode_steps}")
        self.L = int(L)
        self.ode_steps = int(ode_steps)
        self.n_time_basis = int(n_time_basis)
        self.kernel_radius = int(kernel_radius)
        stencils = orbit_stencils(self.L, self.kernel_radius)
        n_orbits = stencils.shape[0]
        # the stencils are symmetric under d -> -d: their transforms are real
        spectra = torch.fft.rfft2(stencils).real
        self.register_buffer("spectra", spectra.reshape(n_orbits, -1), persistent=False)
        self.register_buffer("center", stencils[:, 0, 0].clone(), persistent=False)
        # a kernel sums (2R + 1)^2 stencil entries of F + 1 features: scale the initial weights
        # so that the initial velocity is about init_scale times a feature, a near-identity map
        fan_in = (frequencies + 1) * (2 * self.kernel_radius + 1) ** 2
        std = init_scale / math.sqrt(fan_in)
        self.weight = nn.Parameter(std * torch.randn(frequencies + 1, n_time_basis, n_orbits))
        omega = 0.5 * torch.arange(1, frequencies + 1, dtype=torch.get_default_dtype())
        self.omega = nn.Parameter(omega)

    @property
    def n_features(self) -> int:
        """Number of features including the linear one."""
        return self.weight.shape[0]

    def kernels(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel spectra and central values at times ``t`` (shape ``(m,)``).

        Returns
        -------
        (spectra, center) : tuple of torch.Tensor
            ``(m, F + 1, L, L // 2 + 1)`` real transforms of K_f(t, .) and ``(m, F + 1)``
            values K_f(t, 0).
        """
        coef = torch.einsum("fjo,mj->mfo", self.weight, time_basis(t, self.n_time_basis))
        spectra = (coef @ self.spectra).reshape(t.shape[0], self.n_features, self.L, -1)
        return spectra, coef @ self.center

    def vector_field(
        self, phi: torch.Tensor, spectrum: torch.Tensor, center: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The velocity v(t, phi) ``(n, L, L)`` and its divergence ``(n,)`` at one time.

        ``spectrum`` ``(F + 1, L, L // 2 + 1)`` and ``center`` ``(F + 1,)`` are the kernels at
        that time (from :meth:`kernels`).
        """
        arg = self.omega.view(-1, 1, 1) * phi.unsqueeze(1)  # (n, F, L, L)
        # the linear feature apart: no concatenated copy of the features
        v_hat = torch.fft.rfft2(phi) * spectrum[0]
        if arg.shape[1]:
            v_hat = v_hat + (torch.fft.rfft2(torch.sin(arg)) * spectrum[1:]).sum(dim=1)
        v = torch.fft.irfft2(v_hat, s=phi.shape[-2:])
        # div = sum_x [K_0(t, 0) + sum_f K_f(t, 0) omega_f cos(omega_f phi_x)]
        cos_sum = torch.cos(arg).sum(dim=(-2, -1))  # (n, F)
        div = center[0] * (self.L * self.L) + cos_sum @ (center[1:] * self.omega)
        return v, div

    def integrate(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """RK4 from t = 0 to 1 (or 1 to 0); return the end state and the integral of div dt."""
        n_steps = self.ode_steps
        # all stage times k h / 2 at once: one small matmul for every kernel of the pass
        t = torch.linspace(0.0, 1.0, 2 * n_steps + 1, dtype=x.dtype, device=x.device)
        spectra, centers = self.kernels(t)
        # complex once per pass, rather than a real-to-complex promotion in every product
        spectra = spectra.to(torch.promote_types(x.dtype, torch.complex64))
        h = 1.0 / n_steps
        if inverse:
            spectra, centers, h = spectra.flip(0), centers.flip(0), -h
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(n_steps):
            a, m, b = 2 * i, 2 * i + 1, 2 * i + 2  # stage times t, t + h/2, t + h
            k1, d1 = self.vector_field(x, spectra[a], centers[a])
            k2, d2 = self.vector_field(x + (0.5 * h) * k1, spectra[m], centers[m])
            k3, d3 = self.vector_field(x + (0.5 * h) * k2, spectra[m], centers[m])
            k4, d4 = self.vector_field(x + h * k3, spectra[b], centers[b])
            x = x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
            log_det = log_det + (h / 6.0) * (d1 + 2.0 * (d2 + d3) + d4)
        return x, log_det

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate from t = 0 to 1: return ``(phi(1), integral of the divergence)``."""
        return self.integrate(x, inverse=False)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate from t = 1 back to 0: return ``(phi(0), minus the integrated divergence)``."""
        return self.integrate(y, inverse=True)
