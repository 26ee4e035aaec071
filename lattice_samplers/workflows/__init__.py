"""Workflows: a validated spec in, a run, a result out; each also provides its scan job hooks.

* :mod:`~lattice_samplers.workflows.sample` -- one classical sampler;
* :mod:`~lattice_samplers.workflows.compare` -- every sampler on one theory point;
* :mod:`~lattice_samplers.workflows.train` -- one flow trained by reverse KL (scan job);
* :mod:`~lattice_samplers.workflows.tune` -- beta at a fixed correlation length.

Import the module you need (``compare`` and ``train`` load torch when a flow is trained).
"""
