"""One seed, one chain: a kernel compiled in this process and one loaded from Numba's cache agree.

Numba compiles a kernel on its first call and caches the machine code; later processes load
it.  With ``nsz`` among the fastmath flags (together with ``reassoc``) the freshly compiled
HMC block and the cached one rounded differently in the last bit, so a run on a fresh machine
differed from every later run with the same seed (README's main-job table did not reproduce).
The test runs the same short chains in two processes sharing one empty cache folder: the
first compiles, the second loads.  The negative control adds ``nsz`` back to the kernels'
flags (before they are compiled) and must see the two processes disagree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = r"""
import sys
import numpy as np
import lattice_samplers.kernels.common as common
if sys.argv[2] == "nsz":
    common.FASTMATH = {*common.FASTMATH, "nsz"}
from lattice_samplers.samplers import make_sampler
from lattice_samplers.theory import Phi4Theory

theory = Phi4Theory.create(8, "ising", beta=0.576, lam=0.5)
SETTINGS = {
    "hmc": {"step_size": 0.2, "n_leapfrog": 10, "tune": False},
    "metropolis": {},
    "cluster": {},
    "fourier_hmc": {"tune": False},
}
out = []
for kind in sys.argv[3].split(","):
    settings = SETTINGS[kind]
    sampler = make_sampler(kind, theory, settings)
    rng = np.random.default_rng(1)
    state = sampler.init(None, rng)
    for _ in range(60):
        state, _ = sampler.step(state, rng)
    out.append(np.array(state.phi, copy=True))
np.save(sys.argv[1], np.stack(out))
"""


KINDS = ("hmc", "metropolis", "cluster", "fourier_hmc")


def _two_processes(
    tmp_path: Path, variant: str, kinds: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    results = []
    for run in ("compiles", "loads"):
        path = tmp_path / f"{run}.npy"
        subprocess.run(
            [sys.executable, "-c", SCRIPT, str(path), variant, ",".join(kinds)],
            env=env,
            check=True,
            timeout=300,
        )
        results.append(np.load(path))
    return results[0], results[1]


def test_compiled_and_cached_kernels_give_the_same_chains(tmp_path: Path) -> None:
    compiled, cached = _two_processes(tmp_path, "production", KINDS)
    for k, name in enumerate(KINDS):
        assert np.array_equal(compiled[k], cached[k]), name


def test_negative_control_nsz_makes_the_cached_hmc_differ(tmp_path: Path) -> None:
    compiled, cached = _two_processes(tmp_path, "nsz", ("hmc",))
    if np.array_equal(compiled[0], cached[0]):
        pytest.fail("with nsz the compiled and cached HMC kernels agreed: the check is blind")
