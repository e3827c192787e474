"""The public conformance checker run on every built-in solver, with brute-force optimality."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from discreteopt.solvers import ILP, Argmax, Assignment, GraphShortestPath, GridShortestPath, Knapsack, TopK
from discreteopt.testing import check_solver, enumerate_solutions

_A = np.array([[3, 1, 4, 1, 5, 2], [2, 7, 1, 8, 2, 1]], dtype=float)

CASES = {
    "topk": (TopK(3), (7,), "any"),
    "argmax": (Argmax(), (5,), "any"),
    "grid8": (GridShortestPath(8), (3, 4), "pos"),
    "grid4": (GridShortestPath(4, backend="torch"), (3, 3), "pos"),
    "graph5x5": (GraphShortestPath.grid(3, 3), (12,), "pos"),
    "graph5x5_negative": (GraphShortestPath.grid(3, 3, backend="torch"), (12,), "any"),  # acyclic: any sign
    "graph_cycle": (GraphShortestPath(nx.cycle_graph(5), 0, 2), (5,), "pos"),
    "knapsack": (Knapsack([3, 1, 4, 1, 5, 9, 2, 6], 12), (8,), "any"),
    "knapsack2d": (Knapsack(_A, [8, 9]), (6,), "any"),
    "assignment": (Assignment(), (3, 4), "any"),
    "assignment_min": (Assignment(maximize=False), (3, 3), "pos"),
    "ilp_scip": (ILP(A_ub=_A, b_ub=[8, 9], backend="scip"), (6,), "any"),
    "ilp_cpsat": (ILP(A_ub=_A, b_ub=[8, 9], A_eq=np.ones((1, 6)), b_eq=[3], backend="cpsat"), (6,), "any"),
    "ilp_general_int_min": (ILP(A_ub=-_A, b_ub=[-6, -6], bounds=(0, 2), sense="min", backend="scip"), (6,), "pos"),
}


#: grid moves written out here: the grid oracle shares no code with the solver (not its offsets either)
MOVES = {8: [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)],
         4: [(-1, 0), (0, -1), (0, 1), (1, 0)]}


def grid_paths_oracle(h: int, w: int, neighbourhood: int) -> np.ndarray:
    """Every simple top-left -> bottom-right path of an ``h x w`` grid as 0/1 masks ``[M, h, w]``: a networkx grid
    graph (the 4 rook moves) plus, for 8 neighbours, the diagonals from the explicit list above."""
    g = nx.grid_2d_graph(h, w)
    if neighbourhood == 8:
        g.add_edges_from(((r, c), (r + dr, c + dc)) for r in range(h) for c in range(w)
                         for dr, dc in MOVES[8] if 0 <= r + dr < h and 0 <= c + dc < w)
    masks = []
    for path in nx.all_simple_paths(g, (0, 0), (h - 1, w - 1)):
        m = np.zeros((h, w))
        m[tuple(np.array(path).T)] = 1.0
        masks.append(m)
    return np.unique(np.stack(masks), axis=0)


def test_grid_oracle_counts_paths():
    # 2x2: two L's; with diagonals also the diagonal and the zig-zag through all 4 cells
    assert len(grid_paths_oracle(2, 2, 4)) == 2 and len(grid_paths_oracle(2, 2, 8)) == 4
    # 3x3 rook moves: 12 self-avoiding corner-to-corner walks; the two Hamiltonian S's cover the same 9 cells
    assert len(grid_paths_oracle(3, 3, 4)) == 11


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_solver_passes_the_conformance_checker(name):
    solver, event, domain = CASES[name]
    g = torch.Generator().manual_seed(len(name))
    theta = torch.rand(6, *event, generator=g, dtype=torch.float64) * 4
    if domain == "any":
        theta = theta - 2.0
    theta[-1] = 1.0  # an instance where every solution ties
    if isinstance(solver, GridShortestPath):
        solutions = grid_paths_oracle(*event, solver.neighbourhood)
    else:
        solutions = enumerate_solutions(solver, event)
    report = check_solver(solver, theta, solutions=solutions)
    assert report["checked_optimal"] == 6


def test_enumerate_solutions_counts():
    assert len(enumerate_solutions(TopK(2), (5,))) == 10
    assert len(enumerate_solutions(Assignment(), (2, 3))) == 6
    assert len(enumerate_solutions(Knapsack([1, 1, 1], 2), (3,))) == 7  # all subsets but the full one
    assert len(enumerate_solutions(ILP(A_eq=np.ones((1, 4)), b_eq=[2], backend="scip"), (4,))) == 6


class Lazy(TopK):
    """A wrong solver: the first k entries whatever theta says."""

    def _solve_torch(self, theta):
        y = torch.zeros_like(theta)
        y[:, : self.k] = 1.0
        return y


def test_checker_catches_a_wrong_solver():
    theta = torch.tensor([[0.0, 0.0, 5.0, 1.0]], dtype=torch.float64)
    with pytest.raises(AssertionError, match="optimum"):
        check_solver(Lazy(1), theta, solutions=enumerate_solutions(TopK(1), (4,)))
