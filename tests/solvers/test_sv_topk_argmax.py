"""TopK and Argmax: brute force, deterministic ties, device and contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from discreteopt.solvers import Argmax, TopK
from discreteopt.testing import check_solver, enumerate_solutions


@pytest.mark.parametrize("k", [1, 2, 4])
def test_topk_conformance(k):
    solver = TopK(k)
    g = torch.Generator().manual_seed(k)
    theta = torch.randn(5, 6, generator=g, dtype=torch.float64)
    theta[3] = 1.0  # all tied
    check_solver(solver, theta, solutions=enumerate_solutions(solver, (6,)))


@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 9)),
                elements=st.integers(-2, 2).map(float)), data=st.data())
def test_topk_optimal_and_lowest_index_on_ties(x, data):
    k = data.draw(st.integers(1, x.shape[1]))
    y = TopK(k).solve(torch.from_numpy(x)).numpy()
    assert (y.sum(1) == k).all()
    for b in range(len(x)):
        assert (x[b] * y[b]).sum() == np.sort(x[b])[::-1][:k].sum()
        # ties: among equal values the chosen ones have the lowest indices
        order = sorted(range(x.shape[1]), key=lambda i: (-x[b, i], i))[:k]
        assert sorted(np.nonzero(y[b])[0].tolist()) == sorted(order)


def test_argmax_conformance_and_ties():
    theta = torch.tensor([[0.0, 2.0, 2.0], [5.0, -1.0, 5.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    check_solver(Argmax(), theta, solutions=np.eye(3))
    assert Argmax().solve(theta).argmax(1).tolist() == [1, 0, 2]


def test_topk_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        TopK(3).solve(torch.rand(2, 2))
    with pytest.raises(ValueError, match="k must be"):
        TopK(0)
    with pytest.raises(ValueError, match=r"theta must have shape \[B, n\]"):
        TopK(1).solve(torch.rand(3))
    with pytest.raises(ValueError, match="finite"):
        TopK(1).solve(torch.tensor([[float("inf"), 0.0]]))
    with pytest.raises(ValueError, match="floating"):
        TopK(1).solve(torch.tensor([[1, 2]]))


def test_topk_keeps_device_and_dtype():
    for dtype in (torch.float16, torch.float32, torch.float64):
        y = TopK(2).solve(torch.tensor([[0.1, 0.5, 0.3]], dtype=dtype))
        assert y.dtype == dtype and y.tolist() == [[0.0, 1.0, 1.0]]
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        y = TopK(2).solve(torch.tensor([[0.1, 0.5, 0.3]], device="cuda"))
        assert y.is_cuda


@pytest.mark.parametrize("solver", [Argmax(), TopK(1)])
def test_empty_event_is_a_clear_error(solver):
    """Argmax over n = 0 categories raised IndexError from torch; now a ValueError naming theta."""
    with pytest.raises(ValueError, match=r"theta must have shape \[B, n\] with n >= 1|k must be in \[1, n\]"):
        solver.solve(torch.zeros(3, 0))
    assert solver.solve(torch.zeros(0, 4)).shape == (0, 4)  # an empty batch is fine


@pytest.mark.parametrize("k", [True, 2.0, "2", None, -1])
def test_topk_rejects_non_integer_k(k):
    with pytest.raises(ValueError, match="k must be"):
        TopK(k)


def test_bad_theta_dtypes_and_values_name_the_argument():
    for solver in (Argmax(), TopK(2)):
        with pytest.raises(ValueError, match="theta must have a floating dtype"):
            solver.solve(torch.tensor([[True, False, True]]))
        with pytest.raises(ValueError, match="theta must have a floating dtype"):
            solver.solve(torch.tensor([[1.0 + 1j, 2.0, 0.0]]))
        with pytest.raises(ValueError, match="theta must be finite; got 1 NaN"):
            solver.solve(torch.tensor([[float("nan"), 1.0, 0.0]]))


def test_extreme_scales_keep_the_order():
    theta = torch.tensor([[1e-310, 3e-310, 2e-310], [1e300, -1e308, 1e308]], dtype=torch.float64)
    assert Argmax().solve(theta).argmax(1).tolist() == [1, 2]
    assert TopK(2).solve(theta).tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
