"""discreteopt: combinatorial solvers as trainable PyTorch layers.

>>> import discreteopt as do
>>> layer = do.DiscreteLayer(do.solvers.GridShortestPath(), do.estimators.IMLE(lam=10.0, samples=4))
>>> path = layer(costs)   # costs [B, H, W] -> mean of 4 perturbed 0/1 path masks [B, H, W]
"""

from . import estimators, evaluation, executors, losses, metrics, noise, solvers, stochastic
from .evaluation import evaluate_regret
from .executors.errors import WorkerCrashed
from .layers import DiscreteLayer, discrete_layer, score_function_loss
from .losses import (
    NCE,
    ContrastiveMAP,
    FenchelYoungLoss,
    HammingLoss,
    ListwiseLTR,
    PairwiseLTR,
    PerturbationGradient,
    PointwiseLTR,
    SPOPlus,
    regret,
)
from .solution_cache import SolutionCache
from .solvers.base import InstanceError, Solver, SolverSpec

__version__ = "0.1.0"

__all__ = ["NCE", "ContrastiveMAP", "DiscreteLayer", "FenchelYoungLoss", "HammingLoss", "InstanceError",
           "ListwiseLTR", "PairwiseLTR", "PerturbationGradient", "PointwiseLTR", "SPOPlus", "SolutionCache", "Solver",
           "SolverSpec", "WorkerCrashed", "discrete_layer", "estimators", "evaluate_regret", "evaluation", "executors", "losses", "metrics", "noise", "regret",
           "score_function_loss", "solvers", "stochastic", "__version__"]
