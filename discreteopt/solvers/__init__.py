"""Batched MAP solvers (see :mod:`discreteopt.solvers.base` for the contract)."""

from .argmax import Argmax
from .base import InstanceError, Solver, SolverSpec
from .topk import TopK

__all__ = ["Argmax", "InstanceError", "Solver", "SolverSpec", "TopK"]
