"""Every executor gives exactly ``solver.solve(theta)``: grid shortest path, ILP (SCIP), knapsack, top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from discreteopt.executors import Auto, Inline
from discreteopt.solvers import ILP, GridShortestPath, Knapsack, TopK

pytestmark = pytest.mark.timeout(180)


def _problems():
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 20, size=12)
    yield "grid", GridShortestPath(), torch.rand(37, 12, 12, generator=g) * 9 + 0.1
    # knapsack-type ILP with a cardinality constraint, solved by SCIP; theta in float32 (dtype kept)
    a_ub = np.stack([weights, np.ones(12)])
    yield "ilp", ILP(A_ub=a_ub, b_ub=np.array([50.0, 4.0])), torch.randn(9, 12, generator=g).float()
    yield "knapsack", Knapsack(weights, 45), torch.rand(11, 12, generator=g, dtype=torch.float64)
    yield "topk", TopK(3), torch.randn(8, 10, generator=g)


PROBLEMS = list(_problems())


@pytest.fixture(params=["threads", "processes", "auto"])
def executor(request, proc_pool, thread_pool):
    if request.param == "threads":
        return thread_pool
    if request.param == "processes":
        return proc_pool
    ex = Auto(proc_pool, break_even=2)  # every call of >= 2 instances goes to the pool
    ex.close = lambda: None  # the session pool is closed by its fixture
    return ex


@pytest.mark.parametrize("name,solver,theta", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_same_results_as_inline(executor, name, solver, theta):
    expected = Inline().solve(solver, theta)
    got = executor.solve(solver, theta)
    assert got.dtype == theta.dtype and got.device == theta.device
    assert got.shape == expected.shape
    assert torch.equal(got, expected), f"{name}: {executor!r} differs from inline"
    # submit gives the same tensor as solve, and twice the same call the same answer (solver cached per worker)
    assert torch.equal(executor.submit(solver, theta).result(timeout=120), expected)


def test_device_native_solver_never_leaves_the_caller(proc_pool):
    before = proc_pool.stats.get("tasks", 0)
    theta = torch.randn(64, 10)
    assert torch.equal(proc_pool.solve(TopK(4), theta), TopK(4).solve(theta))
    assert proc_pool.stats.get("tasks", 0) == before


def test_map_keeps_the_callers_chunks(proc_pool, thread_pool):
    solver = GridShortestPath()
    rng = np.random.default_rng(1)
    chunks = [rng.uniform(0.1, 5, size=(b, 6, 6)) for b in (3, 0, 5, 1)]
    expected = [solver.solve_numpy(c) for c in chunks]
    for ex in (Inline(), thread_pool, proc_pool):
        got = ex.map(solver.spec(), chunks)
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g, e)


def test_large_batch_through_shared_memory_leaves_no_segment(proc_pool):
    import os

    solver = GridShortestPath()
    theta = torch.rand(600, 12, 12, generator=torch.Generator().manual_seed(3)) + 0.05  # 691 KB > shm_bytes
    before = {f for f in os.listdir("/dev/shm") if f.startswith("psm_")}
    assert torch.equal(proc_pool.solve(solver, theta), solver.solve(theta))
    after = {f for f in os.listdir("/dev/shm") if f.startswith("psm_")}
    assert after <= before, f"leaked shared-memory segments: {sorted(after - before)}"
