"""Knapsack (OR-Tools knapsack solver) against brute force, scipy's MILP, and its error contract."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from discreteopt.solvers import ILP, InstanceError, Knapsack


def brute_force(theta: np.ndarray, weights: np.ndarray, capacity: np.ndarray) -> float:
    """Best <theta, x> over x in {0,1}^n with weights @ x <= capacity (x = 0 is always feasible)."""
    xs = np.array(list(itertools.product((0.0, 1.0), repeat=theta.shape[0])))  # [2^n, n]
    ok = np.all(xs @ weights.T <= capacity, axis=1)
    return float((xs[ok] @ theta).max())


@st.composite
def knapsacks(draw):
    n = draw(st.integers(1, 9))
    m = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = rng.integers(0, 10, (m, n)).astype(float)
    capacity = rng.integers(0, 5 * n, m).astype(float)
    theta = rng.integers(-3, 6, (4, n)).astype(float)  # [B, n]: zeros, negatives and ties
    return weights, capacity, theta


@settings(max_examples=40, deadline=None)
@given(case=knapsacks())
def test_matches_brute_force(case):
    weights, capacity, theta = case
    solver = Knapsack(weights if weights.shape[0] > 1 else weights[0], capacity)
    x = solver.solve(torch.from_numpy(theta)).numpy()
    assert x.shape == theta.shape
    assert solver.is_feasible(x).all()
    assert not (x[theta <= 0]).any()  # documented: items with theta <= 0 are never chosen
    best = [brute_force(t, weights, capacity) for t in theta]
    np.testing.assert_allclose((theta * x).sum(1), best, atol=1e-9)


@pytest.mark.parametrize("m", [1, 3])
def test_many_items_match_scipy_milp(m):
    """n = 80 > 64 exercises the branch and bound also in one dimension; float theta, default digits."""
    rng = np.random.default_rng(m)
    n = 80
    weights = rng.integers(1, 50, (m, n)).astype(float)
    capacity = np.floor(weights.sum(1) / 3)
    theta = rng.normal(1.0, 1.0, (3, n))
    x = Knapsack(weights, capacity).solve(torch.from_numpy(theta)).numpy()
    for b in range(3):
        ref = milp(-theta[b], constraints=LinearConstraint(weights, -np.inf, capacity),
                   integrality=np.ones(n), bounds=Bounds(0, 1))
        bound = n * theta[b].max() * 1e-9  # documented precision
        assert np.all(weights @ x[b] <= capacity)
        assert theta[b] @ x[b] >= -ref.fun - bound - 1e-9


def test_agrees_with_ilp_backends():
    rng = np.random.default_rng(7)
    w = rng.integers(1, 30, 12).astype(float)
    theta = torch.from_numpy(rng.normal(size=(5, 12)))
    y = Knapsack(w, 60).solve(theta)
    for backend in ("scip", "cpsat"):
        z = ILP(A_ub=w[None], b_ub=[60.0], backend=backend).solve(theta)
        torch.testing.assert_close((theta * y).sum(1), (theta * z).sum(1))


def test_scaling_is_relative_per_instance():
    w = np.array([3.0, 4.0, 5.0, 6.0])
    theta = np.array([[1.0, 2.0, 2.5, 4.1], [1e-12, 2e-12, 2.5e-12, 4.1e-12], [1e12, 2e12, 2.5e12, 4.1e12]])
    x = Knapsack(w, 9).solve(torch.from_numpy(theta)).numpy()
    assert (x == [1.0, 0.0, 0.0, 1.0]).all()


def test_near_ties_follow_the_documented_precision():
    solver = Knapsack([1.0, 1.0], 1, digits=3)
    assert solver.solve(torch.tensor([[1.0, 1.01]])).tolist() == [[0.0, 1.0]]
    theta = np.array([[1.0, 1.0 + 1e-6]])  # closer than 10**-3: a tie, either item is within the bound
    x = solver.solve(torch.from_numpy(theta)).numpy()
    assert x.sum() == 1 and theta[0] @ x[0] >= theta.max() - 2 * theta.max() * 1e-3


def test_nonpositive_items_and_empty_candidates():
    solver = Knapsack([[1.0, 1.0, 1.0]], [5.0])
    y = solver.solve(torch.tensor([[-1.0, 0.0, 2.0], [-1.0, -2.0, 0.0]]))
    assert y.tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_time_limit_raises():
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 1000, (10, 300)).astype(float)
    solver = Knapsack(weights, np.floor(weights.sum(1) / 2), time_limit=0.02)
    with pytest.raises(InstanceError) as err:
        solver.solve(torch.from_numpy(rng.random((2, 300))))
    assert err.value.index == 0 and err.value.status == "TIME_LIMIT"


def test_spec_pickle_roundtrip_determinism_dtype():
    rng = np.random.default_rng(4)
    solver = Knapsack(rng.integers(1, 9, (2, 10)).astype(float), [15.0, 20.0])
    theta = torch.from_numpy(rng.normal(size=(6, 10))).float()
    y = solver.solve(theta)
    assert y.dtype == torch.float32 and y.shape == (6, 10)
    assert torch.equal(y, solver.solve(theta))
    assert torch.equal(pickle.loads(pickle.dumps(solver)).solve(theta), y)  # after a solve
    rebuilt = pickle.loads(pickle.dumps(solver.spec())).build()
    assert repr(rebuilt) == repr(solver) and torch.equal(rebuilt.solve(theta), y)
    one_dim = Knapsack([1.0, 2.0, 3.0], 3)
    assert one_dim.spec().build().weights.shape == (1, 3)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1.0, -2.0], 3), "weights must hold non-negative integers"),
        (([1.0, 2.5], 3), "weights must hold non-negative integers"),
        (([1.0, np.nan], 3), "weights must be finite"),
        (([[[1.0]]], 3), r"weights must have shape \[n\] or \[m, n\]"),
        (([], 3), r"weights must have shape \[n\] or \[m, n\]"),
        (([1.0, 2.0], -1), "capacity must hold non-negative integers"),
        (([1.0, 2.0], 2.5), "capacity must hold non-negative integers"),
        (([[1.0, 2.0], [1.0, 1.0]], [1.0, 2.0, 3.0]), r"capacity must be a scalar or an array \[m=2\]"),
    ],
)
def test_bad_constructor_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        Knapsack(*args)


def test_bad_options_and_theta():
    with pytest.raises(ValueError, match="digits"):
        Knapsack([1.0], 1, digits=0)
    with pytest.raises(ValueError, match="time_limit"):
        Knapsack([1.0], 1, time_limit=0)
    solver = Knapsack([1.0, 2.0], 2)
    with pytest.raises(ValueError, match=r"theta must have shape \[B, n\] with event shape \(2,\)"):
        solver.solve(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="theta must be finite"):
        solver.solve(torch.tensor([[float("inf"), 1.0]]))
