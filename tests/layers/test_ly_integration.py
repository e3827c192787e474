"""Interplay of guards, the solution cache and the losses (regressions found when the pieces met)."""

from __future__ import annotations

import pytest
import torch

import discreteopt as do
from discreteopt.solvers import GraphShortestPath, GridShortestPath


def test_regret_never_clamps_negative_true_costs_on_a_cyclic_grid():
    # regret is an evaluation: like solver.solve, negative true costs on a solver with no exact option raise
    # (before, a fresh Maximizer with the training guard clamped them, with a warning, to another problem)
    solver = GridShortestPath()
    costs = torch.rand(2, 4, 4) + 0.1
    costs[0, 1, 1] = -0.5
    with pytest.raises(ValueError, match="non-negative"):
        do.regret(solver, costs, solver.solve(costs.clamp_min(0)))


def test_regret_solves_negative_costs_exactly_on_a_dag():
    solver = GraphShortestPath.grid(3, 3)
    c = torch.randn(5, len(solver.edges), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = solver.solve(c)
    assert torch.equal(do.regret(solver, c, y), torch.zeros(5, dtype=torch.float64))


def test_spo_plus_reference_solution_is_not_answered_from_the_cache():
    # a cache whose pool holds one (bad) path and solves nothing: y~ comes from the pool, but the loss's
    # reference y*(c) must stay the exact optimum, so the loss equals the one computed with y_true given
    solver = GraphShortestPath.grid(3, 3)
    g = torch.Generator().manual_seed(1)
    true = torch.rand(6, len(solver.edges), generator=g, dtype=torch.float64)
    pred = torch.rand(6, len(solver.edges), generator=g, dtype=torch.float64)
    y_star = solver.solve(true)
    worst = solver.solve(-true.clone().abs() + 10.0 * (true > -1))  # some feasible path
    loss = do.SPOPlus(solver)
    cache = do.SolutionCache.from_solutions(worst[:1], solve_ratio=0.0, seed=0)
    cache.attach(loss)
    cached = loss(pred, true)
    reference = do.SPOPlus(solver)
    do.SolutionCache.from_solutions(worst[:1], solve_ratio=0.0, seed=0).attach(reference)
    given = reference(pred, true, y_true=y_star)
    assert torch.allclose(cached, given)
    assert loss.stats.cache_hits == 6  # y~ for the 6 instances came from the pool, y*(c) did not
