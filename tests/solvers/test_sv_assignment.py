"""Assignment (scipy linear_sum_assignment) against enumeration of all injective maps rows -> columns."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from discreteopt.solvers import Assignment


def brute_force(theta: np.ndarray, maximize: bool) -> float:
    """Best total score over all assignments of the n rows to distinct columns out of m."""
    n, m = theta.shape
    totals = [theta[np.arange(n), list(cols)].sum() for cols in itertools.permutations(range(m), n)]
    return max(totals) if maximize else min(totals)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), extra=st.integers(0, 1), maximize=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_matches_brute_force(n, extra, maximize, seed):
    rng = np.random.default_rng(seed)
    theta = rng.integers(-2, 3, (3, n, n + extra)).astype(float)  # [B, n, m], small integers -> ties
    solver = Assignment(maximize=maximize)
    y = solver.solve(torch.from_numpy(theta)).numpy()
    assert y.shape == theta.shape
    assert solver.is_feasible(y).all()
    np.testing.assert_allclose((theta * y).sum((1, 2)), [brute_force(t, maximize) for t in theta])


def test_square_gives_permutation_matrices():
    theta = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(0))
    y = Assignment().solve(theta)
    assert torch.equal(y.sum(1), torch.ones(4, 6)) and torch.equal(y.sum(2), torch.ones(4, 6))


def test_maximize_flips_a_cost_solver():
    theta = torch.tensor([[[1.0, 5.0], [4.0, 2.0]]])
    costs = Assignment(maximize=False)
    assert costs.sense == "min"
    assert costs.solve(theta).tolist() == [[[1.0, 0.0], [0.0, 1.0]]]
    assert costs.maximize(theta).tolist() == Assignment().solve(theta).tolist() == [[[0.0, 1.0], [1.0, 0.0]]]


def test_is_feasible_rejects_bad_matrices():
    solver = Assignment()
    good = np.eye(3)[None]
    two_in_a_column = np.array([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    empty_row = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    half = np.eye(3)[None] * 0.5
    assert solver.is_feasible(np.concatenate([good, two_in_a_column, empty_row, half])).tolist() == [
        True, False, False, False]


def test_spec_pickle_roundtrip_dtype_determinism():
    solver = Assignment(maximize=False)
    theta = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(1)).float()
    y = solver.solve(theta)
    assert y.dtype == torch.float32 and y.shape == (5, 3, 4)
    assert torch.equal(solver.solve(theta), y)
    rebuilt = pickle.loads(pickle.dumps(solver.spec())).build()
    assert repr(rebuilt) == repr(solver) == "Assignment(maximize=False)"
    assert torch.equal(rebuilt.solve(theta), y)


def test_bad_input():
    solver = Assignment()
    with pytest.raises(ValueError, match=r"theta must have shape \[B, n, m\] with 1 <= n <= m"):
        solver.solve(torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"theta must have shape \[B, n, m\].*\(3 dims\)"):
        solver.solve(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="theta must be finite; got 1 NaN"):
        solver.solve(torch.tensor([[[0.0, float("nan")], [1.0, 2.0]]]))
    with pytest.raises(ValueError, match="maximize must be True or False"):
        Assignment(maximize="yes")


def test_extreme_scales_match_the_rescaled_problem():
    """Entries near the float limit (sums would overflow) or subnormal: same answer as the well-scaled problem."""
    rng = np.random.default_rng(3)
    base = rng.integers(-9, 10, (12, 5, 5)).astype(float) + rng.random((12, 5, 5)) / 8  # no ties, |x| < 10
    for maximize in (True, False):
        solver = Assignment(maximize=maximize)
        ref = solver.solve(torch.from_numpy(base))
        for shift in (-1060, 1015, 1020):  # 2**1020 * 9.x is finite, but scipy's sums overflow: wrong answers
            got = solver.solve(torch.from_numpy(np.ldexp(base, shift)))
            assert torch.equal(got, ref), (maximize, shift)


def test_bad_shapes_and_arguments():
    solver = Assignment()
    with pytest.raises(ValueError, match=r"1 <= n <= m"):
        solver.solve(torch.zeros(2, 0, 3))
    assert solver.solve(torch.zeros(0, 2, 3)).shape == (0, 2, 3)
    for bad in (1, 0, None, np.array([True])):
        with pytest.raises(ValueError, match="maximize must be True or False"):
            Assignment(maximize=bad)
    with pytest.raises(ValueError, match="theta must have a floating dtype"):
        solver.solve(torch.ones(1, 2, 2, dtype=torch.int64))
