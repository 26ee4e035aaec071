"""Test support that ships with the package: statistical checks and the scan self-test job.

* :mod:`.checks`: :func:`check_mean`, :func:`check_agreement` (k sigma from the Gamma method);
* :mod:`.selftest`: the ``selftest`` scan job (checks the scan machinery in a second).

Production code imports nothing from here except the self-test job's registration in
:mod:`lattice_samplers.jobs`.
"""

from lattice_samplers.testing.checks import Check, check_agreement, check_mean

__all__ = ["Check", "check_agreement", "check_mean"]
