"""Whole-torus kernels for the continuous flow, with projected features (arXiv:2207.00283).

The vector field is that of :mod:`lattice_samplers.flows.cnf`,

    d phi_x / dt = sum_y sum_c K_c(t, x - y) g_c(phi_y),

but every ingredient is wider, following the design Gerdes et al. describe:

* features: the linear one and F learnable sines, projected to C channels,
  g_c(phi) = P[c, 0] phi + sum_k P[c, k] sin(omega_k phi) (odd, so the map stays Z2-equivariant);
* time: J cosine functions cos(pi j t), projected to T time features
  tau_i(t) = sum_j Q[i, j] cos(pi j t);
* kernels over the whole L x L torus: K_c(t, d) = sum_i tau_i(t) W[c, i, o(d)], one weight per
  D4 orbit o(d) of the torus displacement d per feature channel per time feature.  On the torus
  the displacement (dx, dy) is labelled by its minimal images a = min(dx, L - dx) (and b for dy),
  and its orbit by (min(a, b), max(a, b)), 0 <= a <= b <= L // 2: (h + 1)(h + 2) / 2 orbits,
  h = L // 2.

Parameter count: C T (h + 1)(h + 2) / 2 + F + C (F + 1) + T J (see :func:`n_parameters`).

Cost: the kernels are gathered from W in real space and transformed once per pass (all stage
times at once); each velocity evaluation projects the features to C channels first (C FFTs, the
smaller of C and F + 1), so one step costs O(C V log V) like the radius-limited design.  The
divergence stays exact and O(V F): dv_x/dphi_x = sum_c K_c(t, 0) g_c'(phi_x).

Transfer to a larger lattice (:func:`extend_weights`): the kernel is read as a function on the
displacements of the infinite lattice, |dx|, |dy| <= L / 2, which vanishes beyond.  An orbit
(a, b) of the L torus keeps its weight at any L' > L, except that for even L the displacement
L / 2 stands for the two displacements +-L / 2 (one site on the L torus, two on the larger one):
its weight is split evenly over them (halved once per coordinate equal to L / 2).  Orbits new at
L' start at zero.  With this rule the flow at L' = 2 L maps a field made of 2 x 2 copies of an
L field exactly to 2 x 2 copies of the L flow's image (the tests check it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lattice_samplers.flows.cnf import EquivariantCNFLayer, time_basis
from lattice_samplers.flows.layers import FlowLayer

__all__ = ["GlobalCNFLayer", "extend_weights", "n_parameters", "torus_orbits"]


def torus_orbits(L: int) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """The D4 orbits of displacements on the periodic L x L torus and each site's orbit.

    Returns
    -------
    (keys, index) : tuple
        ``keys``: the orbits as (a, b), 0 <= a <= b <= L // 2, ordered by b then a;
        ``index``: long tensor ``(L, L)``, the orbit number of displacement (dx, dy).
    """
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    h = L // 2
    keys = [(a, b) for b in range(h + 1) for a in range(b + 1)]
    number = {k: i for i, k in enumerate(keys)}
    fold = [min(x, L - x) for x in range(L)]
    index = torch.tensor(
        [[number[tuple(sorted((fold[x], fold[y])))] for y in range(L)] for x in range(L)],
        dtype=torch.long,
    )
    return keys, index


def n_parameters(
    L: int, frequencies: int, n_time_basis: int, channels: int, time_channels: int
) -> int:
    """Number of parameters of a :class:`GlobalCNFLayer` (kernels, frequencies, projections)."""
    h = L // 2
    n_orbits = (h + 1) * (h + 2) // 2
    return (
        channels * time_channels * n_orbits
        + frequencies
        + channels * (frequencies + 1)
        + time_channels * n_time_basis
    )


def extend_weights(weight: torch.Tensor, L_from: int, L_to: int) -> torch.Tensor:
    """Kernel weights ``(C, T, orbits at L_from)`` carried to ``L_to >= L_from`` (module doc).

    Raises
    ------
    ValueError
        If ``L_to < L_from`` (folding a kernel onto a smaller torus is not offered).
    """
    if L_to < L_from:
        raise ValueError(
            f"kernel weights transfer to a larger lattice only, not L {L_from} -> {L_to}"
        )
    if L_to == L_from:
        return weight.clone()
    keys_from, _ = torus_orbits(L_from)
    keys_to, _ = torus_orbits(L_to)
    number = {k: i for i, k in enumerate(keys_to)}
    out = weight.new_zeros(weight.shape[:-1] + (len(keys_to),))
    edge = L_from // 2 if L_from % 2 == 0 else None
    for i, (a, b) in enumerate(keys_from):
        # +-L/2 is one site on the L torus but two on the larger one: split the weight
        split = 2 ** ((a == edge) + (b == edge))
        out[..., number[(a, b)]] = weight[..., i] / split
    return out


class GlobalCNFLayer(EquivariantCNFLayer):
    """Neural-ODE layer with whole-torus D4-invariant kernels and projected features and times.

    See the module docstring.  The integration (RK4, exact divergence) is the parent's.

    Parameters
    ----------
    L : int
        Lattice extent.
    frequencies : int
        Number F of learnable sine frequencies.
    n_time_basis : int
        Number J of cosine time-basis functions.
    channels : int
        Feature width C the F + 1 features are projected to.
    time_channels : int
        Number T of time features the basis is projected to.
    ode_steps : int
        RK4 steps on [0, 1].
    init_scale : float
        Initial kernel weights are N(0, init_scale^2 / (C T V)): the initial velocity is of
        order init_scale times a feature (0 gives the identity map).

    Attributes
    ----------
    weight : torch.nn.Parameter
        Kernel weights ``(C, T, n_orbits)``.
    omega : torch.nn.Parameter
        Sine frequencies ``(F,)``, initialized evenly on [0.5, min(F / 2, 4)].
    feature_proj : torch.nn.Parameter
        P, ``(C, F + 1)``; column 0 weighs the linear feature.
    time_proj : torch.nn.Parameter
        Q, ``(T, J)``.
    """

    def __init__(
        self,
        L: int,
        frequencies: int = 49,
        n_time_basis: int = 21,
        channels: int = 20,
        time_channels: int = 20,
        ode_steps: int = 10,
        init_scale: float = 0.01,
    ) -> None:
        FlowLayer.__init__(self)
        for name, value, low in (
            ("cnf_frequencies", frequencies, 0),
            ("cnf_time_basis", n_time_basis, 1),
            ("cnf_channels", channels, 1),
            ("cnf_time_channels", time_channels, 1),
            ("ode_steps", ode_steps, 1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        self.L = int(L)
        self.ode_steps = int(ode_steps)
        self.n_time_basis = int(n_time_basis)
        self.kernel_radius = None
        keys, index = torus_orbits(self.L)
        self.register_buffer("orbit_index", index, persistent=False)
        V = self.L * self.L
        std = init_scale / math.sqrt(channels * time_channels * V)
        self.weight = nn.Parameter(std * torch.randn(channels, time_channels, len(keys)))
        dtype = torch.get_default_dtype()
        # 0.5, 1.0, ... as the local design, spread evenly up to at most 4 for many sines
        # (the field is of order 1: faster sines start as noise)
        top = min(0.5 * frequencies, 4.0)
        omega = torch.linspace(0.5, top, frequencies, dtype=dtype)
        self.omega = nn.Parameter(omega)
        self.feature_proj = nn.Parameter(
            torch.randn(channels, frequencies + 1) / math.sqrt(frequencies + 1)
        )
        self.time_proj = nn.Parameter(
            torch.randn(time_channels, n_time_basis) / math.sqrt(n_time_basis)
        )

    @property
    def n_features(self) -> int:
        """Number of projected feature channels C."""
        return self.weight.shape[0]

    def kernels(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel spectra ``(m, C, L, L // 2 + 1)`` and centres K_c(t, 0) ``(m, C)`` at ``t``."""
        tau = time_basis(t, self.n_time_basis) @ self.time_proj.T  # (m, T)
        coef = torch.einsum("cio,mi->mco", self.weight, tau)
        # gather the orbit weights onto the torus; K(d) = K(-d), so the transform is real
        spectra = torch.fft.rfft2(coef[..., self.orbit_index]).real
        return spectra, coef[..., 0]

    def vector_field(
        self, phi: torch.Tensor, spectrum: torch.Tensor, center: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The velocity ``(n, L, L)`` and its divergence ``(n,)`` at one time (see parent)."""
        arg = self.omega.view(-1, 1, 1) * phi.unsqueeze(1)  # (n, F, L, L)
        proj = self.feature_proj
        g = proj[:, 0].view(-1, 1, 1) * phi.unsqueeze(1)  # (n, C, L, L)
        if arg.shape[1]:
            g = g + torch.einsum("ck,nkxy->ncxy", proj[:, 1:], torch.sin(arg))
        v_hat = (torch.fft.rfft2(g) * spectrum).sum(dim=1)
        v = torch.fft.irfft2(v_hat, s=phi.shape[-2:])
        # div = sum_c K_c(t, 0) sum_x g_c'(phi_x), g_c' = P[c,0] + sum_k P[c,k] w_k cos(w_k phi)
        through = center @ proj  # (F + 1,): sum_c K_c(t, 0) P[c, k]
        div = through[0] * (self.L * self.L)
        if arg.shape[1]:
            div = div + torch.cos(arg).sum(dim=(-2, -1)) @ (through[1:] * self.omega)
        return v, div
