"""TSP: exact against brute-force enumeration (n <= 8) and Held-Karp dynamic programming (n = 12, and n = 20 as
a slow test), a known n = 20 instance, negative / subnormal / huge costs, precision, ties, time limit, helpers."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest
import torch

from discreteopt.data import generate_tsp
from discreteopt.solvers import TSP, InstanceError
from discreteopt.testing import check_solver


def all_tours(n: int) -> np.ndarray:
    """Edge indicators ``[(n-1)!/2, E]`` of every Hamiltonian cycle of K_n (brute force)."""
    index = {e: i for i, e in enumerate(itertools.combinations(range(n), 2))}
    out = []
    for perm in itertools.permutations(range(1, n)):
        if perm[0] > perm[-1]:  # each cycle once: fix node 0 first and one orientation
            continue
        y = np.zeros(len(index))
        cycle = (0, *perm, 0)
        for u, v in zip(cycle[:-1], cycle[1:], strict=True):
            y[index[min(u, v), max(u, v)]] = 1
        out.append(y)
    return np.stack(out)


def held_karp(cost: np.ndarray) -> float:
    """Optimal tour cost of a symmetric matrix ``[n, n]`` by the Held-Karp dynamic programme (O(2^n n^2))."""
    n = cost.shape[0]
    full = 1 << (n - 1)  # subsets of nodes 1..n-1
    dp = np.full((full, n - 1), np.inf)  # dp[S, j]: cheapest path 0 -> ... -> j+1 visiting S
    for j in range(n - 1):
        dp[1 << j, j] = cost[0, j + 1]
    sub = cost[1:, 1:]  # [n-1, n-1]
    for mask in range(1, full):
        row = dp[mask]
        if not np.isfinite(row).any():
            continue
        # extend by every node k not in mask: dp[mask | k, k] = min_j dp[mask, j] + cost[j, k]
        cand = (row[:, None] + sub).min(axis=0)  # [n-1]
        for k in range(n - 1):
            if not mask >> k & 1:
                nm = mask | 1 << k
                if cand[k] < dp[nm, k]:
                    dp[nm, k] = cand[k]
    return float((dp[full - 1] + cost[1:, 0]).min())


def to_matrix(c: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, n))
    iu, ju = np.triu_indices(n, k=1)
    m[iu, ju] = m[ju, iu] = c
    return m


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_contract_and_optimality_against_enumeration(n):
    e = n * (n - 1) // 2
    costs = torch.randn(6, e, generator=_gen(n), dtype=torch.float64)  # negative costs included
    costs[0] = torch.randint(0, 3, (e,), generator=_gen(100 + n)).double()  # many ties
    costs[1] = 0.0  # everything tied
    report = check_solver(TSP(n), costs, solutions=all_tours(n))
    assert report is not None


def test_eight_nodes_against_enumeration_and_pyepo_data():
    tours = all_tours(8)
    assert len(tours) == math.factorial(7) // 2
    data = generate_tsp(8, num_nodes=8, deg=4, noise_width=0.5, seed=3)
    costs = np.concatenate([data.c.astype(np.float64), np.random.default_rng(0).normal(size=(8, 28))])
    y = TSP(8).solve(torch.from_numpy(costs)).numpy()
    assert TSP(8).is_feasible(y).all()
    np.testing.assert_allclose((costs * y).sum(1), (costs @ tours.T).min(1), rtol=1e-9, atol=1e-9)


def test_twelve_nodes_against_held_karp():
    data = generate_tsp(4, num_nodes=12, deg=2, noise_width=0.5, seed=5)
    rng = np.random.default_rng(1)
    costs = np.concatenate([data.c.astype(np.float64), rng.uniform(-1, 1, (2, 66))])
    y = TSP(12).solve(torch.from_numpy(costs)).numpy()
    for b in range(len(costs)):
        assert (costs[b] * y[b]).sum() == pytest.approx(held_karp(to_matrix(costs[b], 12)), rel=1e-9, abs=1e-9)


def test_twenty_nodes_on_a_circle_is_the_angular_order_even_shifted_negative():
    """Points in convex position: the optimal Euclidean tour is the convex hull order (a known optimum)."""
    rng = np.random.default_rng(7)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 20))
    perm = rng.permutation(20)  # node labels scrambled
    pts = np.zeros((20, 2))
    pts[perm] = np.stack([np.cos(angles), np.sin(angles)], 1)
    solver = TSP(20)
    c = np.array([np.linalg.norm(pts[u] - pts[v]) for u, v in solver.edges])
    expected = np.zeros(190)
    index = {e: i for i, e in enumerate(solver.edges)}
    for a, b in zip(perm, np.roll(perm, -1), strict=True):
        expected[index[min(a, b), max(a, b)]] = 1
    y = solver.solve(torch.from_numpy(np.stack([c, c - 10.0, 1e-3 * c - 5.0])))  # shifts keep the optimum
    for row in y.numpy():
        np.testing.assert_array_equal(row, expected)


@pytest.mark.slow
def test_twenty_nodes_pyepo_data_against_held_karp():
    data = generate_tsp(2, num_nodes=20, deg=4, noise_width=0.5, seed=9)
    y = TSP(20).solve(torch.from_numpy(data.c.astype(np.float64))).numpy()
    for b in range(2):
        c = data.c[b].astype(np.float64)
        assert (c * y[b]).sum() == pytest.approx(held_karp(to_matrix(c, 20)), rel=1e-9)


@pytest.mark.parametrize("scale", [5e-324, 1e-310, 1e-200, 1.0, 1e200, 1e306])
def test_subnormal_and_huge_costs_are_scaled_safely_and_solved_exactly(scale):
    tours = all_tours(6)
    rng = np.random.default_rng(3)
    unit = rng.integers(-50, 51, (4, 15)).astype(np.float64)
    costs = unit * scale  # exact multiples (at 5e-324 the subnormal grid itself)
    y = TSP(6).solve(torch.from_numpy(costs)).numpy()
    assert TSP(6).is_feasible(y).all()
    # compare on the integer pattern (sums of huge values would overflow)
    np.testing.assert_array_equal((unit * y).sum(1), (unit @ tours.T).min(1))


def test_precision_bound_of_the_integer_costs():
    """With few digits the tour is optimal up to n * max|c| * 10**-digits, never worse."""
    tours = all_tours(7)
    costs = np.random.default_rng(4).normal(size=(30, 21))
    best = (costs @ tours.T).min(1)
    for digits in (1, 2, 9):
        y = TSP(7, digits=digits).solve(torch.from_numpy(costs)).numpy()
        gap = (costs * y).sum(1) - best
        bound = 7 * np.abs(costs).max(1) * 10.0**-digits
        assert (gap >= -1e-12).all() and (gap <= bound + 1e-12).all()
        if digits == 9:
            assert gap.max() < 1e-12
    k = TSP(7, digits=3).integer_costs(costs)
    assert k.dtype == np.int64 and np.abs(k).max() == 1000
    np.testing.assert_array_equal(TSP(7).integer_costs(np.zeros((1, 21))), np.zeros((1, 21)))


def test_ties_do_not_depend_on_batch_order_threads_or_the_spec_round_trip():
    costs = torch.randint(0, 2, (12, 21), generator=_gen(5)).double()  # heavy ties
    solver = TSP(7)
    y = solver.solve(costs)
    perm = torch.randperm(12, generator=_gen(6))
    assert torch.equal(solver.solve(costs[perm]), y[perm])
    rebuilt = pickle.loads(pickle.dumps(solver.spec())).build()
    assert torch.equal(rebuilt.solve(costs.flip(0)), y.flip(0))
    import threading
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("y", solver.solve(costs)))
    t.start()
    t.join()
    assert torch.equal(out["y"], y)


def test_time_limit_raises_instance_error_with_status():
    costs = torch.from_numpy(generate_tsp(2, num_nodes=40, deg=4, noise_width=0.5, seed=1).c.astype(np.float64))
    with pytest.raises(InstanceError) as info:
        TSP(40, time_limit=1e-6).solve(costs)
    assert info.value.status == "TIME_LIMIT" and info.value.index == 0


def test_helpers_edges_matrix_and_tour_order():
    solver = TSP(5)
    assert solver.edges == list(itertools.combinations(range(5), 2)) and solver.event_shape() == (10,)
    m = np.random.default_rng(2).normal(size=(5, 5))
    m = m + m.T
    c = solver.edge_costs(m)
    assert c.shape == (1, 10) and c[0, solver.edges.index((1, 3))] == m[1, 3]
    with pytest.raises(ValueError, match="symmetric"):
        solver.edge_costs(m + np.triu(np.ones((5, 5)), 1))
    y = solver.solve(torch.from_numpy(c))
    order = solver.tours(y)[0]
    assert order[0] == 0 and sorted(order) == list(range(5))
    index = {e: i for i, e in enumerate(solver.edges)}
    rebuilt = np.zeros(10)
    for a, b in zip(order, np.roll(order, -1), strict=True):
        rebuilt[index[min(a, b), max(a, b)]] = 1
    np.testing.assert_array_equal(rebuilt, y[0].numpy())
    two_triangles = np.zeros(15)
    six = TSP(6)
    for u, v in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]:
        two_triangles[six.edges.index((u, v))] = 1
    assert not six.is_feasible(two_triangles[None])[0]
    with pytest.raises(ValueError, match="Hamiltonian"):
        six.tours(two_triangles[None])


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="num_nodes"):
        TSP(2)
    with pytest.raises(ValueError, match="digits"):
        TSP(5, digits=0)
    with pytest.raises(ValueError, match="time_limit"):
        TSP(5, time_limit=0.0)
    with pytest.raises(ValueError, match="costs"):
        TSP(5).solve(torch.zeros(2, 9))
    with pytest.raises(ValueError, match="costs"):
        TSP(5).solve(torch.full((1, 10), float("nan")))
    assert TSP.shift_invariant and TSP.min_cost is None and TSP.sense == "min"
