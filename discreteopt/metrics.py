"""Evaluation metrics of the use cases (all computed on CPU or any device, no gradients).

Shortest paths (vertex-weighted, Warcraft)
    cost of a path mask ``y`` under true vertex weights ``w``: ``c(y) = sum_v w_v y_v`` (both end points count);
    *cost-optimal accuracy* = fraction of instances with ``|c(y_pred) - c(y*)| <= rtol * c(y*)`` (ties allowed,
    the number the Warcraft papers report); *exact match* = fraction with ``y_pred == y*`` everywhere;
    *cost ratio* = mean over instances of ``c(y_pred) / c(y*)`` (1 is optimal).

Predict-then-optimise (PyEPO)
    *normalised regret* (Tang & Khalil 2022, "PyEPO", the regret metric), ``>= 0``::

        sense "min":  sum_i (c_i^T y_pred_i - c_i^T y*_i) / sum_i |c_i^T y*_i|
        sense "max":  sum_i (r_i^T y*_i - r_i^T y_pred_i) / sum_i |r_i^T y*_i|

    :func:`discreteopt.evaluation.evaluate_regret` computes it for a model over a data loader.

Subset selection
    *subset precision* = mean over instances of ``|S ∩ R| / |S|`` with ``S`` the selected and ``R`` the relevant
    positions (Chen et al. 2018, L2X, the BeerAdvocate rationale metric).
"""

from __future__ import annotations

import torch


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")


def path_cost(weights, paths) -> torch.Tensor:
    """Cost ``sum_v w_v y_v`` per instance: ``[B, *E], [B, *E] -> [B]`` (float64)."""
    w, y = _as_tensor(weights).double(), _as_tensor(paths).double()
    _check_same_shape(w, y, "weights", "paths")
    return (w * y).flatten(1).sum(1)  # [B, prod(E)] -> [B]


def shortest_path_metrics(pred_paths, true_weights, true_paths, rtol: float = 1e-5) -> dict[str, float]:
    """Cost-optimal accuracy, exact-match accuracy and cost ratio of predicted paths (module docstring)."""
    pred, w, true = _as_tensor(pred_paths), _as_tensor(true_weights), _as_tensor(true_paths)
    _check_same_shape(pred, true, "pred_paths", "true_paths")
    c_pred = path_cost(w, pred.to(w.device))  # [B]
    c_opt = path_cost(w, true.to(w.device))  # [B]
    cost_ok = (c_pred - c_opt).abs() <= rtol * c_opt.abs()
    exact = (pred.round() == true.round().to(pred.device)).flatten(1).all(1)
    return {
        "cost_optimal_accuracy": float(cost_ok.double().mean()),
        "exact_match_accuracy": float(exact.double().mean()),
        "cost_ratio": float((c_pred / c_opt).mean()),
    }


def normalized_regret(true_costs, pred_solutions, opt_solutions, sense: str = "min") -> float:
    """Normalised regret of ``pred_solutions [B, *E]`` under ``true_costs [B, *E]`` (module docstring).

    ``sense="min"`` (costs, shortest path, TSP): ``sum_i c_i^T (y_pred_i - y*_i) / sum_i |c_i^T y*_i|``;
    ``sense="max"`` (values, knapsack): ``sum_i r_i^T (y*_i - y_pred_i) / sum_i |r_i^T y*_i|``. Both are ``>= 0``
    when ``opt_solutions`` are optimal. Example (minimisation, two instances)::

        c = [[1, 2, 3], [2, 2, 1]]; y* = [[1, 0, 0], [0, 0, 1]]; y_pred = [[0, 1, 0], [0, 0, 1]]
        normalized_regret(c, y_pred, y*) == ((2 - 1) + (1 - 1)) / (1 + 1) == 0.5
    """
    if sense not in ("min", "max"):
        raise ValueError(f"sense must be 'min' or 'max'; got {sense!r}")
    c = _as_tensor(true_costs).double()
    yp, yo = _as_tensor(pred_solutions).double(), _as_tensor(opt_solutions).double()
    _check_same_shape(c, yp, "true_costs", "pred_solutions")
    _check_same_shape(c, yo, "true_costs", "opt_solutions")
    opt = (c * yo.to(c.device)).flatten(1).sum(1)  # [B]
    gap = (c * yp.to(c.device)).flatten(1).sum(1) - opt  # [B]: <c, y_pred - y*>
    if sense == "max":
        gap = -gap
    return float(gap.sum() / opt.abs().sum())


def subset_precision(selected, relevant) -> float:
    """Mean over instances of ``|S ∩ R| / |S|`` for 0/1 or boolean masks ``[B, n]`` (instances with ``S`` empty
    count as 0)."""
    s, r = _as_tensor(selected).bool(), _as_tensor(relevant).bool().to(_as_tensor(selected).device)
    _check_same_shape(s, r, "selected", "relevant")
    hit = (s & r).flatten(1).sum(1).double()
    size = s.flatten(1).sum(1).double()
    return float(torch.where(size > 0, hit / size.clamp_min(1), torch.zeros_like(hit)).mean())


def accuracy(logits, labels) -> float:
    """Top-1 accuracy of ``logits [B, C]`` against integer ``labels [B]``."""
    lg, lb = _as_tensor(logits), _as_tensor(labels)
    return float((lg.argmax(-1) == lb.to(lg.device)).double().mean())
