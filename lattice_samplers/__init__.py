"""lattice_samplers: compare MCMC samplers for 2D lattice phi^4 theory.

The package puts classical samplers (local Metropolis, HMC, Wolff cluster) and
normalizing-flow independence Metropolis behind one interface and measures them with
the same statistics (tau_int, ESS, cost per effective sample with training counted).
"""

from lattice_samplers.theory import PARAMETRIZATIONS, Phi4Theory

__version__ = "0.1.0"

__all__ = ["PARAMETRIZATIONS", "Phi4Theory", "__version__"]
