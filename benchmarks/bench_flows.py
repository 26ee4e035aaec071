"""Flow throughput: training steps/s and proposal samples/s, against a minimal plain-torch twin.

For L = 8, 16, 20, the paper's dense family (8 Z2-equivariant affine couplings, one hidden
layer of 2 L^2, tanh, global rescaling), the tutorial's convolutional family (16 affine
couplings, 3x3 circular convolutions with [8, 8] channels) and the equivariant continuous flow
(``family = "cnf"`` with its defaults: free-field base, one RK4-integrated neural ODE with FFT
convolutions, global rescaling), in float32 and float64, it measures

* ``train/s``: full training steps per second of the package's trainer (batch 1000:
  sampling, loss, backward, Adam, plus the float64 log weights and the per-step
  independence-Metropolis pass);
* ``core x``: the package's bare step (sample, loss, backward, Adam) over the same step of a
  minimal implementation: a hand-written loop of matmuls / convolutions and tanh on plain
  tensors with the same weights, no modules (for the cnf: an inline RK4 loop over the same
  FFT convolutions and divergence); checked to give the same fields;
* ``samples/s``: proposals per second from ``FlowProposal.sample`` (torch.inference_mode,
  large batches, float64 NumPy out) and ``sample x``, the ratio to the minimal twin doing the
  same (including the float64 conversion).

A ratio of 1.00 means no framework overhead; the target is >= 0.90.  Timings are the best of
interleaved repetitions (this machine is shared and noisy); ratios are measured side by side.
Batches: training 1000 (dense) or 256 (conv: 3x3 convolutions with few channels are slow on
CPUs; float64 ones, which have no oneDNN path, get a quarter of that on the CPU; cnf: 256, the
batch of arXiv:2207.00283); proposals per call scale as 1/V for the dense family.

Run: ``python benchmarks/bench_flows.py`` (about 2-3 minutes on 2 CPU cores);
``--device cuda`` on a GPU; ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from lattice_samplers.flows import (
    CNFSettings,
    CouplingFlowSettings,
    FlowProposal,
    FlowSettings,
    TrainSettings,
)
from lattice_samplers.flows.action import phi4_action
from lattice_samplers.flows.cnf import EquivariantCNFLayer
from lattice_samplers.flows.layers import (
    AffineCoupling,
    FreeFieldLayer,
    GlobalRescaling,
    checkerboard_indices,
)
from lattice_samplers.flows.train import Trainer, set_torch_threads
from lattice_samplers.theory import Phi4Theory

BETA = {8: 0.576, 16: 0.633, 20: 0.645}  # the paper's beta(L), lam = 0.5


def family_config(family: str, dtype: str) -> FlowSettings:
    """The benchmarked architectures: dense and conv couplings, and the cnf flow."""
    if family == "dense":
        return CouplingFlowSettings(dtype=dtype)
    if family == "cnf":
        return CNFSettings(dtype=dtype)
    return CouplingFlowSettings(
        conditioner="conv", n_layers=16, hidden=(8, 8), equivariant=False, dtype=dtype
    )


# ---------------------------------------------------------------------- the minimal twin
def _net_spec(seq: torch.nn.Sequential) -> list[tuple]:
    """The network as a list of plain operations on copied tensors."""
    ops: list[tuple] = []
    for m in seq:
        name = type(m).__name__
        if name in ("Linear", "Conv2d"):
            b = m.bias.detach().clone() if m.bias is not None else None
            ops.append(("lin" if name == "Linear" else "conv", m.weight.detach().clone(), b))
        elif name == "AbsBias":
            ops.append(("absb", m.bias.detach().clone()))
        elif name == "Tanh":
            ops.append(("tanh",))
        else:
            raise TypeError(name)
    return ops


class Minimal:
    """The same flow written as a plain loop over weight tensors (no nn.Module)."""

    def __init__(self, flow, theory: Phi4Theory) -> None:
        self.L = flow.L
        self.V = flow.volume
        self.kind = flow.arch["conditioner"]
        self.h, self.c2, self.c4 = theory.hopping
        self.c0 = theory.c0
        self.layers = []
        self.params: list[torch.Tensor] = []
        L = self.L
        idx = [checkerboard_indices(L, 0)[0], checkerboard_indices(L, 1)[0]]
        self.idx = [i.to(flow.device) for i in idx]
        # gathering [even | odd] halves back into site order is one index_select
        self.unsplit = torch.argsort(torch.cat(idx)).to(flow.device)
        masks = []
        for p in (0, 1):
            m = torch.zeros(self.V, dtype=flow.dtype, device=flow.device)
            m[self.idx[p]] = 1
            masks.append(m.view(1, 1, L, L))
        self.masks = masks
        self.log_scale = None
        for layer in flow.layers:
            if isinstance(layer, AffineCoupling):
                s_net, t_net = (_net_spec(n) for n in layer.conditioner.nets)
                self.layers.append((layer.parity, s_net, t_net))
                for op in s_net + t_net:
                    self.params += [t for t in op[1:] if t is not None]
            elif isinstance(layer, GlobalRescaling):
                self.log_scale = layer.log_scale.detach().clone()
                self.params.append(self.log_scale)
            else:
                raise TypeError(type(layer))

    def requires_grad_(self) -> Minimal:
        for p in self.params:
            p.requires_grad_(True)
        return self

    @staticmethod
    def _net(x: torch.Tensor, ops) -> torch.Tensor:
        for op in ops:
            if op[0] == "lin":
                x = F.linear(x, op[1], op[2])
            elif op[0] == "conv":
                k = op[1].shape[-1] // 2
                x = F.conv2d(F.pad(x, (k, k, k, k), mode="circular"), op[1], op[2])
            elif op[0] == "absb":
                b = op[1] if x.dim() == 2 else op[1].view(1, -1, 1, 1)
                x = torch.abs(x) + b
            else:
                x = torch.tanh(x)
        return x

    def sample(self, n: int, gen: torch.Generator, dtype, device):
        """(phi (n, L, L), log_q (n,)) in the flow dtype, autograd-ready."""
        L, V = self.L, self.V
        z = torch.randn((n, L, L), generator=gen, dtype=dtype, device=device)
        log_det = torch.zeros(n, dtype=dtype, device=device)
        if self.kind == "dense":
            # keep the two checkerboard halves apart: no gathers inside the loop
            zf = z.reshape(n, V)
            half = [zf[:, self.idx[0]], zf[:, self.idx[1]]]
            for p, s_net, t_net in self.layers:
                xp = half[1 - p]
                s = self._net(xp, s_net)
                t = self._net(xp, t_net)
                half[p] = half[p] * torch.exp(s) + t
                log_det = log_det + s.sum(dim=1)
            phi = torch.cat(half, dim=1).index_select(1, self.unsplit).view(n, L, L)
        else:
            x = z.view(n, 1, L, L)
            for p, s_net, t_net in self.layers:
                ma, mp = self.masks[p], self.masks[1 - p]
                inp = x * mp
                s = self._net(inp, s_net)
                t = self._net(inp, t_net)
                x = mp * x + ma * (x * torch.exp(s) + t)
                log_det = log_det + (ma * s).sum(dim=(1, 2, 3))
            phi = x.view(n, L, L)
        if self.log_scale is not None:
            phi = phi * torch.exp(self.log_scale)
            log_det = log_det + V * self.log_scale
        log_q = -0.5 * (z * z).sum(dim=(1, 2)) - 0.5 * V * math.log(2 * math.pi) - log_det
        return phi, log_q


class MinimalCNF:
    """The cnf flow as plain tensor code: FFT base, an inline RK4 loop, rescaling."""

    def __init__(self, flow, theory: Phi4Theory) -> None:
        self.L, self.V = flow.L, flow.volume
        self.sqrt_g = None
        self.log_scale = None
        for layer in flow.layers:
            if isinstance(layer, FreeFieldLayer):
                self.sqrt_g, self.base_log_det = layer.sqrt_g.clone(), layer.log_det_value
            elif isinstance(layer, EquivariantCNFLayer):
                self.weight = layer.weight.detach().clone()
                self.omega = layer.omega.detach().clone()
                self.steps, self.R = layer.ode_steps, layer.kernel_radius
            elif isinstance(layer, GlobalRescaling):
                self.log_scale = layer.log_scale.detach().clone()
            else:
                raise TypeError(type(layer))
        self.params = [self.weight, self.omega]
        if self.log_scale is not None:
            self.params.append(self.log_scale)
        # D4 orbits (a, b), a <= b <= R, of the displacements, periodically wrapped
        L, R = self.L, self.R
        keys = [(a, b) for b in range(R + 1) for a in range(b + 1)]
        st = torch.zeros(len(keys), L, L, dtype=torch.float64)
        for dx in range(-R, R + 1):
            for dy in range(-R, R + 1):
                st[keys.index(tuple(sorted((abs(dx), abs(dy))))), dx % L, dy % L] += 1
        self.spec = torch.fft.rfft2(st).real.to(flow.dtype).to(flow.device)  # (O, L, L/2+1)
        self.center = st[:, 0, 0].to(flow.dtype).to(flow.device)

    def requires_grad_(self) -> MinimalCNF:
        for p in self.params:
            p.requires_grad_(True)
        return self

    def sample(self, n: int, gen: torch.Generator, dtype, device):
        L, V = self.L, self.V
        z = torch.randn((n, L, L), generator=gen, dtype=dtype, device=device)
        log_det = torch.zeros(n, dtype=dtype, device=device)
        x = z
        if self.sqrt_g is not None:
            x = torch.fft.irfft2(torch.fft.rfft2(x) * self.sqrt_g.to(dtype), s=(L, L))
            log_det = log_det + self.base_log_det
        h = 1.0 / self.steps
        J = self.weight.shape[1]
        om = self.omega.view(-1, 1, 1)

        def field(t: float, x: torch.Tensor):
            b = torch.cos(math.pi * t * torch.arange(J, dtype=dtype, device=device))
            c = torch.einsum("fjo,j->fo", self.weight, b)  # (F + 1, O)
            k_hat = torch.einsum("fo,oxy->fxy", c, self.spec)
            k0 = c @ self.center
            arg = om * x.unsqueeze(1)
            feats = torch.cat([x.unsqueeze(1), torch.sin(arg)], dim=1)
            v = torch.fft.irfft2((torch.fft.rfft2(feats) * k_hat).sum(1), s=(L, L))
            div = k0[0] * V + torch.cos(arg).sum(dim=(2, 3)) @ (k0[1:] * self.omega)
            return v, div

        for i in range(self.steps):
            t = i * h
            k1, d1 = field(t, x)
            k2, d2 = field(t + h / 2, x + h / 2 * k1)
            k3, d3 = field(t + h / 2, x + h / 2 * k2)
            k4, d4 = field(t + h, x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            log_det = log_det + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
        if self.log_scale is not None:
            x = x * torch.exp(self.log_scale)
            log_det = log_det + V * self.log_scale
        log_q = -0.5 * (z * z).sum(dim=(1, 2)) - 0.5 * V * math.log(2 * math.pi) - log_det
        return x, log_q


# ---------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(fns: dict, reps: int, min_time: float, device: str) -> dict[str, float]:
    """Best seconds per call of each function, measured in interleaved rounds.

    The minimum over rounds estimates the uncontended cost: on a shared machine, other
    jobs only ever add time.

    A first (warm-up) call of each sizes the inner loop so that a timed block lasts about
    ``min_time``; expensive calls are timed singly.
    """
    inner = {}
    for name, f in fns.items():
        t0 = time.perf_counter()
        f()
        _sync(device)
        inner[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                f()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / inner[name])
    return {k: min(v) for k, v in times.items()}


def bench_one(L: int, family: str, dtype: str, device: str, args) -> dict:
    theory = Phi4Theory.create(L, "ising", beta=BETA.get(L, 0.6), lam=0.5)
    cfg = family_config(family, dtype)
    tdt = torch.float32 if dtype == "float32" else torch.float64
    batch = {"dense": args.batch, "conv": args.conv_batch, "cnf": args.cnf_batch}[family]
    n = max(1024, args.samples * 64 // (L * L)) if family == "dense" else args.conv_samples
    if family == "conv" and dtype == "float64" and device == "cpu":
        # no oneDNN path for float64 convolutions: 4x smaller workloads keep the run short
        batch, n = max(16, batch // 4), max(64, n // 4)
    trainer = Trainer.for_theory(
        theory, cfg, TrainSettings(batch_size=batch, device=device, seed=1, lr=1e-3)
    )
    flow = trainer.flow
    with torch.no_grad():  # generic weights, not the near-identity init
        g = torch.Generator().manual_seed(0)
        for p in flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g).to(p))
    twin = MinimalCNF if family == "cnf" else Minimal
    mini = twin(flow, theory)
    # same architecture: same fields and densities from the same noise
    ga = torch.Generator(device=device).manual_seed(3)
    gb = torch.Generator(device=device).manual_seed(3)
    with torch.inference_mode():
        pa, qa = flow.sample_with_log_q(8, ga)
        pb, qb = mini.sample(8, gb, tdt, device)
    tol = 1e-3 if dtype == "float32" else 1e-9
    assert torch.allclose(pa, pb, rtol=tol, atol=tol), "minimal twin differs"
    assert torch.allclose(qa, qb, rtol=tol, atol=tol * L * L), "minimal twin log_q differs"

    # ---- training: the package's bare step against the twin's, then the full step
    mini_t = twin(flow, theory).requires_grad_()
    opt_f = torch.optim.Adam(flow.parameters(), lr=1e-6)
    opt_m = torch.optim.Adam(mini_t.params, lr=1e-6)
    h, c2, c4 = theory.hopping
    gen_f = torch.Generator(device=device).manual_seed(5)
    gen_m = torch.Generator(device=device).manual_seed(5)

    def core_framework():
        phi, log_q = flow.sample_with_log_q(batch, gen_f)
        loss = (log_q + trainer.action(phi)).mean()
        opt_f.zero_grad(set_to_none=True)
        loss.backward()
        opt_f.step()

    def core_minimal():
        phi, log_q = mini_t.sample(batch, gen_m, tdt, device)
        loss = (log_q + phi4_action(phi, h, c2, c4, theory.c0)).mean()
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        opt_m.step()

    t_train = interleaved(
        {"pkg": core_framework, "min": core_minimal, "full": trainer.train_step},
        args.reps,
        args.min_time,
        device,
    )

    # ---- sampling: FlowProposal against the twin under inference_mode, float64 NumPy out
    prop = FlowProposal(flow, seed=7)
    bs = flow.default_batch_size()
    gen_s = torch.Generator(device=device).manual_seed(9)

    def sample_minimal():
        with torch.inference_mode():
            for start in range(0, n, bs):
                m = min(bs, n - start)
                phi, log_q = mini.sample(m, gen_s, tdt, device)
                phi.double().cpu().numpy()
                log_q.double().cpu().numpy()

    t_samp = interleaved(
        {"pkg": lambda: prop.sample(n), "min": sample_minimal}, args.reps, args.min_time, device
    )
    return {
        "L": L,
        "family": family,
        "dtype": dtype,
        "params": flow.n_parameters,
        "batch": batch,
        "n": n,
        "train/s": 1.0 / t_train["full"],
        "core x": t_train["min"] / t_train["pkg"],
        "samples/s": n / t_samp["pkg"],
        "sample x": t_samp["min"] / t_samp["pkg"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, nargs="+", default=[8, 16, 20])
    ap.add_argument("--families", nargs="+", default=["dense", "conv", "cnf"])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1000, help="training batch (dense)")
    ap.add_argument("--conv-batch", type=int, default=256, help="training batch (conv)")
    ap.add_argument("--samples", type=int, default=8192, help="proposals per call at L = 8")
    ap.add_argument("--conv-samples", type=int, default=1024, help="proposals per call (conv, cnf)")
    ap.add_argument("--cnf-batch", type=int, default=256, help="training batch (cnf)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per timed block")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="L = 8 only, fewer samples")
    args = ap.parse_args()
    if args.quick:
        args.L, args.samples, args.conv_samples, args.reps = [8], 2048, 256, 2
        args.conv_batch, args.cnf_batch, args.min_time = 64, 64, 0.1
    threads = set_torch_threads(args.threads)
    dev = args.device
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else f"{threads} CPU threads"
    print(f"torch {torch.__version__}, device {dev} ({name})")
    head = (
        f"{'L':>3} {'family':>6} {'dtype':>7} {'params':>8} {'batch':>5} {'train/s':>8} "
        f"{'core x':>6} {'n':>5} {'samples/s':>9} {'sample x':>8}"
    )
    print(head)
    print("-" * len(head))
    t0 = time.perf_counter()
    for L in args.L:
        for family in args.families:
            for dtype in args.dtypes:
                r = bench_one(L, family, dtype, dev, args)
                print(
                    f"{r['L']:>3} {r['family']:>6} {r['dtype']:>7} {r['params']:>8} "
                    f"{r['batch']:>5} {r['train/s']:>8.2f} {r['core x']:>6.2f} {r['n']:>5} "
                    f"{r['samples/s']:>9.0f} {r['sample x']:>8.2f}",
                    flush=True,
                )
    print(
        f"(x = minimal twin time / package time: 1.00 = no overhead; "
        f"total {time.perf_counter() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
