"""discreteopt: combinatorial solvers as trainable PyTorch layers.

>>> import discreteopt as do
>>> layer = do.DiscreteLayer(do.solvers.GridShortestPath(), do.estimators.IMLE(lam=10.0, samples=4))
>>> path = layer(costs)   # costs [B, H, W] -> mean of 4 perturbed 0/1 path masks [B, H, W]
"""

from . import estimators, executors, losses, noise, solvers, stochastic
from .executors.errors import WorkerCrashed
from .layers import DiscreteLayer, discrete_layer, score_function_loss
from .losses import FenchelYoungLoss, HammingLoss, SPOPlus, regret
from .solvers.base import InstanceError, Solver, SolverSpec

__version__ = "0.1.0"

__all__ = ["DiscreteLayer", "FenchelYoungLoss", "HammingLoss", "InstanceError", "SPOPlus", "Solver", "SolverSpec",
           "WorkerCrashed", "discrete_layer", "estimators", "executors", "losses", "noise", "regret",
           "score_function_loss", "solvers", "stochastic", "__version__"]
