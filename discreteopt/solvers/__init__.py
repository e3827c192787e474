"""Batched MAP solvers (see :mod:`discreteopt.solvers.base` for the contract).

Bring your own: subclass :class:`Solver` and implement one hook (``solve_instance``, ``solve_numpy`` or
``solve_torch``), or wrap a function with :func:`from_function`.
"""

from .argmax import Argmax
from .assignment import Assignment
from .base import InstanceError, RecipeError, Solver, SolverSpec, ThreadLocalBackend
from .function import FunctionSolver, from_function
from .graph_shortest_path import GraphShortestPath
from .grid_shortest_path import GridShortestPath
from .ilp import ILP
from .knapsack import Knapsack
from .pdhg import PDHG, LinearProgram, PDHGResult
from .topk import TopK
from .tsp import TSP

__all__ = [
    "Argmax",
    "Assignment",
    "FunctionSolver",
    "GraphShortestPath",
    "GridShortestPath",
    "ILP",
    "InstanceError",
    "Knapsack",
    "LinearProgram",
    "PDHG",
    "PDHGResult",
    "RecipeError",
    "Solver",
    "SolverSpec",
    "ThreadLocalBackend",
    "TopK",
    "TSP",
    "from_function",
]
