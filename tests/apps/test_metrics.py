"""Evaluation metrics (:mod:`discreteopt.metrics`, :func:`discreteopt.evaluation.evaluate_regret`): values by hand,
and the bad inputs the standing fuzz test (issue 10, item 9) found -- each test of an error failed on the code
before the fix (IndexError, raw torch errors, or NaN/inf returned as a metric)."""

from __future__ import annotations

import pytest
import torch

from discreteopt.evaluation import evaluate_regret
from discreteopt.metrics import (
    accuracy,
    normalized_regret,
    path_cost,
    shortest_path_metrics,
    subset_precision,
)
from discreteopt.solvers import TopK

F64 = torch.float64


# ------------------------------------------------------------------------------------------------ values
def test_metric_values_by_hand():
    w = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 0.5]]])
    true = torch.tensor([[[1, 0], [1, 1]], [[1, 1], [0, 1]]])
    pred = torch.tensor([[[1, 1], [0, 1]], [[1, 0], [1, 1]]], dtype=torch.bool)  # bool paths: was a NotImplementedError
    assert path_cost(w, pred).tolist() == [7.0, 2.5]
    m = shortest_path_metrics(pred, w, true)  # costs 7 vs 8 and 2.5 vs 2.5
    assert m == {"cost_optimal_accuracy": 0.5, "exact_match_accuracy": 0.0, "cost_ratio": (7 / 8 + 1.0) / 2}
    c, y_opt, y_pred = [[1, 2, 3], [2, 2, 1]], [[1, 0, 0], [0, 0, 1]], [[0, 1, 0], [0, 0, 1]]
    assert normalized_regret(c, y_pred, y_opt) == 0.5  # the docstring example
    # max sense, roles swapped: optima 2 + 1 = 3, decisions 1 + 1 = 2
    assert normalized_regret(torch.tensor(c), torch.tensor(y_opt), torch.tensor(y_pred), sense="max") == 1 / 3
    assert subset_precision(torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]), torch.tensor([[1, 0, 0, 1], [1, 1, 1, 1]])) \
        == pytest.approx(0.25)  # (1/2 + 0 [nothing selected]) / 2
    logits = torch.tensor([[0.1, 2.0, float("-inf")], [3.0, float("-inf"), 1.0], [0.0, 1.0, 0.5]])  # -inf: masks
    assert accuracy(logits, torch.tensor([1, 2, 1])) == pytest.approx(2 / 3)
    assert accuracy(logits.reshape(1, 3, 3), torch.tensor([[1, 2, 1]])) == pytest.approx(2 / 3)  # [B, T, C]
    assert path_cost(torch.zeros(0, 3), torch.zeros(0, 3)).shape == (0,)  # no instances: no costs (not a mean)


# ------------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("fn, args, match", [
    (path_cost, (torch.ones(4), torch.ones(4)), r"weights must have shape \[B, \*E\]"),  # was IndexError
    (path_cost, (torch.ones(2, 2, dtype=torch.complex64), torch.ones(2, 2)), "weights must have a real dtype"),
    (path_cost, (torch.tensor([[1.0, float("nan")]]), torch.ones(1, 2)), "weights must be finite"),
    (path_cost, (torch.ones(2, 3), torch.ones(2, 2)), "same shape"),
    (shortest_path_metrics, (torch.ones(2, 3, dtype=torch.complex128), torch.ones(2, 3), torch.ones(2, 3)),
     "pred_paths must have a real dtype"),  # was NotImplementedError from round()
    (shortest_path_metrics, (torch.ones(0, 3), torch.ones(0, 3), torch.ones(0, 3)), "empty batch"),  # was nan
    (shortest_path_metrics, (torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3)[:, :2]), "same shape"),
    (normalized_regret, (torch.ones(3), torch.ones(3), torch.ones(3)), r"true_costs must have shape"),
    (normalized_regret, (torch.ones(0, 3), torch.ones(0, 3), torch.ones(0, 3)), "empty batch"),  # was nan
    (normalized_regret, (torch.ones(1, 2), torch.tensor([[float("inf"), 0.0]]), torch.ones(1, 2)),
     "pred_solutions must be finite"),
    (subset_precision, (torch.ones(0, 4), torch.ones(0, 4)), "empty batch"),  # was nan
    (subset_precision, (torch.tensor([[0.5, 1.0]]), torch.ones(1, 2)), "selected must be a 0/1"),  # was counted as 1
    (subset_precision, (torch.ones(3), torch.ones(3)), r"selected must have shape"),  # was IndexError
    (accuracy, (torch.ones(2, 3, dtype=torch.complex64), torch.tensor([0, 1])), "logits must have a real dtype"),
    (accuracy, (torch.ones(3, 5), torch.tensor([0, 1, 2, 3])), r"labels must have shape \(3,\)"),  # was RuntimeError
    (accuracy, (torch.ones(0, 5), torch.zeros(0, dtype=torch.long)), "empty batch"),  # was nan
    (accuracy, (torch.ones(2, 0), torch.zeros(2, dtype=torch.long)), "at least one class"),  # was IndexError
    (accuracy, (torch.ones(2, 3, dtype=torch.bool), torch.tensor([0, 1])), "floating or integer dtype"),
    (accuracy, (torch.ones(2, 3), torch.tensor([0.0, 1.0])), "labels must be an integer tensor"),
    (accuracy, (torch.ones(2, 3), torch.tensor([0, 3])), r"class indices in \[0, 3\)"),  # was a silent miss
    (accuracy, (torch.tensor([[float("nan"), 0.0]]), torch.tensor([1])), "logits must not be NaN"),
])
def test_bad_inputs_are_value_errors_naming_the_argument(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_zero_denominators_are_value_errors_not_nan():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"sum_i \|c_i\^T y\*_i\| = 0"):  # was nan (0 / 0)
        normalized_regret(z, torch.ones(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="optimal path of instance 1 has cost 0"):  # cost_ratio was nan
        shortest_path_metrics(torch.ones(2, 3), torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), torch.ones(2, 3))


def test_overflowing_objectives_are_value_errors_not_nan():
    big = torch.tensor([[1.5e308, -1.5e308]], dtype=F64)
    with pytest.raises(ValueError, match="path cost .* overflows float64"):  # inf - inf was NaN
        path_cost(big, torch.tensor([[2.0, 2.0]], dtype=F64))
    with pytest.raises(ValueError, match="objective .* overflows float64"):
        normalized_regret(big, torch.tensor([[2.0, 0.0]], dtype=F64), torch.tensor([[0.0, 2.0]], dtype=F64))
    with pytest.raises(ValueError, match="cost ratio .* overflows float64"):  # was inf
        shortest_path_metrics(torch.tensor([[1.0, 0.0]], dtype=F64), torch.tensor([[1e300, 1e-300]], dtype=F64),
                              torch.tensor([[0.0, 1.0]], dtype=F64))


# ------------------------------------------------------------------------------------------------ evaluate_regret
class _Fixed(torch.nn.Module):
    def __init__(self, pred):
        super().__init__()
        self.pred = pred

    def forward(self, x):
        return self.pred[x]


def test_evaluate_regret_refuses_a_zero_denominator_and_non_finite_targets():
    c = torch.tensor([[0.0, -1.0, -2.0]], dtype=F64)  # max sense: optimal objective 0
    with pytest.raises(ValueError, match=r"sum_i \|<c_i, y\*_i>\| = 0"):  # was normalized = nan
        evaluate_regret(_Fixed(torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)), TopK(1), [(torch.arange(1), c)])
    w_nan = torch.tensor([[float("nan"), 0.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match="loader: w must be finite"):  # was a NaN regret
        evaluate_regret(_Fixed(c), TopK(1), [(torch.arange(1), c + 3, w_nan)])
    res = evaluate_regret(_Fixed(torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)), TopK(1), [(torch.arange(1), c + 3)])
    assert (res.normalized, res.mean, res.count) == (1.0 / 3.0, 1.0, 1)  # regret 3 - 2, optimum 3
