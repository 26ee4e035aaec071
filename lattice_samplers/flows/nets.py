"""Conditioner networks: they map the passive (frozen) sites of a field to layer parameters.

Two families:

* ``dense``: fully connected on the V/2 passive sites (the family of arXiv:2112.15532): the
  input is the vector of passive-site values, hidden layers of a given width (default 2 L^2),
  and the output is P numbers per active site.
* ``conv``: periodic convolutions (the Albergo et al. tutorial, arXiv:2101.08176): the input is
  the field with its active sites zeroed, 3x3 kernels with circular padding, P output channels
  read off at the active sites.

Each network has a *symmetry* under phi -> -phi of its input:

* ``"none"``: ordinary layers with biases.
* ``"odd"``: net(-x) = -net(x) exactly: every layer is bias-free and the activation is odd
  (tanh, softsign), so the composition is odd.
* ``"even"``: net(-x) = net(x) exactly: the first layer is bias-free, its outputs go through
  ``|.|`` and then get a bias and the activation, act(|W1 x| + b1); the rest is an ordinary
  network.  We take the absolute value of the first layer's pre-activations rather than of
  the output (``|s(x)|``,) or of the inputs (``s(|x|)``): ``|s(x)|``
  forces s >= 0 (a coupling could only widen), and ``s(|x|)`` cannot see relative signs
  (whether neighbours are aligned), which decides the conditional width in the double-well
  regime; |W1 x| keeps both (|x1 + x2| and |x1 - x2| tell alignment apart).  The activation
  after |.| keeps s bounded like the other networks' (a piecewise-linear s would let
  exp(s) grow without bound in the tails).

No network uses batch statistics: each sample's output depends on that sample alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "SYMMETRIES",
    "AbsBias",
    "Conditioner",
    "check_activation",
    "conv_net",
    "dense_net",
]

#: Activation name -> (module factory, is the function odd?)
ACTIVATIONS: dict[str, tuple[type[nn.Module], bool]] = {
    "tanh": (nn.Tanh, True),
    "softsign": (nn.Softsign, True),
    "relu": (nn.ReLU, False),
    "leaky_relu": (nn.LeakyReLU, False),
    "silu": (nn.SiLU, False),
}

SYMMETRIES = ("none", "odd", "even")


class AbsBias(nn.Module):
    """|x| + b with a learnable bias per feature (channel for conv): even in x.

    Parameters
    ----------
    n_features : int
        Size of the feature dimension (dimension 1 of the input).
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return |x| + b, broadcasting b over dimension 1."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return torch.abs(x) + self.bias.view(shape)


def check_activation(activation: str, symmetry: str) -> None:
    """Raise ValueError for an unknown activation, or a non-odd one where odd is needed."""
    if activation not in ACTIVATIONS:
        known = ", ".join(ACTIVATIONS)
        raise ValueError(f"unknown activation {activation!r} (known: {known})")
    if symmetry not in SYMMETRIES:
        raise ValueError(f"unknown network symmetry {symmetry!r} (known: {', '.join(SYMMETRIES)})")
    if symmetry == "odd" and not ACTIVATIONS[activation][1]:
        odd = ", ".join(k for k, (_, is_odd) in ACTIVATIONS.items() if is_odd)
        raise ValueError(
            f"a Z2-equivariant flow needs an odd activation ({odd}), got {activation!r}"
        )


def _stack(
    make_layer, sizes: Sequence[int], activation: str, symmetry: str, init_scale: float
) -> nn.Sequential:
    """Layers between consecutive ``sizes`` with activations, honouring the symmetry."""
    check_activation(activation, symmetry)
    act_cls = ACTIVATIONS[activation][0]
    mods: list[nn.Module] = []
    n = len(sizes) - 1
    for i in range(n):
        # odd: no bias anywhere; even: the first layer is bias-free (abs makes it even)
        bias = not (symmetry == "odd" or (symmetry == "even" and i == 0 and n > 1))
        layer = make_layer(sizes[i], sizes[i + 1], bias)
        if i == n - 1:
            # Start every coupling close to the identity, but not exactly at it, so that
            # every parameter receives a gradient from the first step on.
            with torch.no_grad():
                layer.weight.mul_(init_scale)
                if layer.bias is not None:
                    layer.bias.zero_()
        mods.append(layer)
        if i < n - 1:
            if symmetry == "even" and i == 0:
                mods.append(AbsBias(sizes[1]))
            mods.append(act_cls())
    return nn.Sequential(*mods)


def dense_net(
    n_in: int,
    hidden: Sequence[int],
    n_out: int,
    activation: str = "tanh",
    symmetry: str = "none",
    init_scale: float = 0.01,
) -> nn.Sequential:
    """A fully connected network ``n_in -> hidden... -> n_out`` (see the module notes).

    With ``symmetry="even"`` and no hidden layer the only even linear map is 0, so at least
    one hidden layer is required then.
    """
    if symmetry == "even" and len(hidden) == 0:
        raise ValueError("an even (Z2-invariant) network needs at least one hidden layer")
    return _stack(
        lambda a, b, bias: nn.Linear(a, b, bias=bias),
        [n_in, *hidden, n_out],
        activation,
        symmetry,
        init_scale,
    )


def conv_net(
    c_in: int,
    hidden: Sequence[int],
    c_out: int,
    kernel_size: int = 3,
    activation: str = "tanh",
    symmetry: str = "none",
    init_scale: float = 0.01,
) -> nn.Sequential:
    """A periodic convolutional network on ``(n, c_in, L, L)`` (circular padding keeps L)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size}")
    if symmetry == "even" and len(hidden) == 0:
        raise ValueError("an even (Z2-invariant) network needs at least one hidden layer")

    def make(a: int, b: int, bias: bool) -> nn.Conv2d:
        return nn.Conv2d(
            a, b, kernel_size, padding=kernel_size // 2, padding_mode="circular", bias=bias
        )

    return _stack(make, [c_in, *hidden, c_out], activation, symmetry, init_scale)


class Conditioner(nn.Module):
    """Maps a field to per-active-site parameters through one or more network heads.

    Parameters
    ----------
    kind : {"dense", "conv"}
        Network family.
    L : int
        Lattice extent.
    active, passive : torch.Tensor
        Flat site indices (``int64``, increasing) of the updated and the conditioning sites.
    heads : sequence of (n_params, symmetry)
        One network per head; head i returns ``n_params`` numbers per active site and has
        the given symmetry ("none", "odd", "even").
    hidden : sequence of int
        Hidden widths (dense) or channels (conv).
    activation : str
        Activation name, see :data:`ACTIVATIONS`.
    kernel_size : int
        Convolution kernel size (conv only).
    init_scale : float
        Factor on the default init of each head's last layer (near-identity couplings).
    """

    def __init__(
        self,
        kind: str,
        L: int,
        active: torch.Tensor,
        passive: torch.Tensor,
        heads: Sequence[tuple[int, str]],
        hidden: Sequence[int],
        activation: str = "tanh",
        kernel_size: int = 3,
        init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        if kind not in ("dense", "conv"):
            raise ValueError(f"unknown conditioner {kind!r} (known: dense, conv)")
        self.kind = kind
        self.L = L
        self.n_active = int(active.numel())
        self.head_sizes = [int(p) for p, _ in heads]
        self.register_buffer("active", active.clone(), persistent=False)
        self.register_buffer("passive", passive.clone(), persistent=False)
        if kind == "dense":
            n_in = int(passive.numel())
            self.nets = nn.ModuleList(
                dense_net(n_in, hidden, p * self.n_active, activation, sym, init_scale)
                for p, sym in heads
            )
        else:
            self.nets = nn.ModuleList(
                conv_net(1, hidden, p, kernel_size, activation, sym, init_scale) for p, sym in heads
            )

    def forward(self, xp: torch.Tensor) -> list[torch.Tensor]:
        """Return one tensor ``(n, n_params, V/2)`` per head from passive values ``(n, V/2)``.

        ``xp`` lists the passive sites in increasing flat index; outputs list the active
        sites in increasing flat index.
        """
        n = xp.shape[0]
        if self.kind == "dense":
            return [net(xp).view(n, p, self.n_active) for net, p in zip(self.nets, self.head_sizes)]
        L = self.L
        # the convolution sees the whole lattice with the active sites set to zero
        inp = xp.new_zeros(n, L * L).index_copy(1, self.passive, xp).view(n, 1, L, L)
        return [
            net(inp).view(n, p, L * L).index_select(2, self.active)
            for net, p in zip(self.nets, self.head_sizes)
        ]
