"""Gradient estimators for solver layers (see :mod:`discreteopt.estimators.base` for the contract).

All estimators work in the max convention ``y*(theta) = argmax_y <theta, y>``; the
:class:`~discreteopt.layers.DiscreteLayer` converts min-sense solvers and guards bounded costs.
"""

from .aimle import AIMLE
from .base import Estimator
from .baselines import Baseline, LeaveOneOut, MAPBaseline
from .guards import Auto, Clamp, Guard, GuardWarning, Raise, Shift
from .imle import IMLE, TargetDistribution
from .interpolation import Interpolation
from .negative_identity import NegativeIdentity
from .perturbed import PerturbedOptimizer
from .score_function import ScoreFunction
from .straight_through import StraightThrough

__all__ = [
    "AIMLE", "Auto", "Baseline", "Clamp", "Estimator", "Guard", "GuardWarning", "IMLE", "Interpolation", "LeaveOneOut", "MAPBaseline",
    "NegativeIdentity", "PerturbedOptimizer", "Raise", "ScoreFunction", "Shift", "StraightThrough", "TargetDistribution",
]
