"""discreteopt: combinatorial solvers as trainable PyTorch layers."""

from . import executors, solvers
from .solvers.base import InstanceError, Solver, SolverSpec

__version__ = "0.1.0"

__all__ = ["InstanceError", "Solver", "SolverSpec", "executors", "solvers", "__version__"]
