"""discreteopt: combinatorial solvers as trainable PyTorch layers."""

from . import estimators, executors, losses, noise, solvers, stochastic
from .layers import DiscreteLayer, discrete_layer, score_function_loss
from .solvers.base import InstanceError, Solver, SolverSpec

__version__ = "0.1.0"

__all__ = ["DiscreteLayer", "InstanceError", "Solver", "SolverSpec", "discrete_layer", "estimators", "executors",
           "losses", "noise", "score_function_loss", "solvers", "stochastic", "__version__"]
