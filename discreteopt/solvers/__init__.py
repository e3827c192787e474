"""Batched MAP solvers (see :mod:`discreteopt.solvers.base` for the contract)."""

from .argmax import Argmax
from .assignment import Assignment
from .base import InstanceError, Solver, SolverSpec
from .graph_shortest_path import GraphShortestPath
from .grid_shortest_path import GridShortestPath
from .ilp import ILP
from .knapsack import Knapsack
from .topk import TopK

__all__ = ["Argmax", "GraphShortestPath", "GridShortestPath", "Assignment", "ILP", "InstanceError", "Knapsack", "Solver", "SolverSpec", "TopK"]
