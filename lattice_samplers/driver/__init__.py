"""The chain driver: run settings, the block loop, checkpoints and signals, run results.

Layers inside: :mod:`~lattice_samplers.driver.settings` and
:mod:`~lattice_samplers.driver.result` (records), :mod:`~lattice_samplers.driver.checkpoint`
(checkpoint files, SIGINT/SIGTERM), :mod:`~lattice_samplers.driver.loop` (the block loop) and
:mod:`~lattice_samplers.driver.results_file` (netCDF results files).
"""

from lattice_samplers.driver.checkpoint import RunInterrupted, load_checkpoint
from lattice_samplers.driver.loop import BlockReport, run_sampler
from lattice_samplers.driver.result import RunResult
from lattice_samplers.driver.results_file import read_results, write_results
from lattice_samplers.driver.settings import RunSettings

__all__ = [
    "BlockReport",
    "RunInterrupted",
    "RunResult",
    "RunSettings",
    "load_checkpoint",
    "read_results",
    "run_sampler",
    "write_results",
]
