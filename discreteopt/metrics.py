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

Input contract (every function): tensors (or what ``torch.as_tensor`` takes) of a real dtype -- bool, integer or
floating; complex and meta tensors are refused -- with a batch dimension (``[B, *E]``, at least 2-d) and finite
values. Sums and ratios are computed in float64. Every metric that averages over instances needs ``B >= 1``. An
undefined or unrepresentable number raises ``ValueError`` instead of returning NaN or inf: a ratio over a zero
denominator (``cost_ratio`` with an optimal path of cost 0, ``normalized_regret`` with ``sum_i |c_i^T y*_i| = 0``)
and an objective beyond float64's range (inputs near 1e154 and beyond, whose products overflow).
"""

from __future__ import annotations

import torch

from ._validation import check_finite, check_real


def _as_tensor(x, name: str) -> torch.Tensor:
    try:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a tensor (or an array-like of numbers); got {type(x).__name__}: {exc}") \
            from None
    if t.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor (a shape without values); got shape {tuple(t.shape)}")
    check_real(t, name)
    t = t.detach()
    return t.resolve_neg() if t.is_neg() else t


def _batched(x, name: str, layout: str = "[B, *E]", finite: bool = True) -> torch.Tensor:
    """``x`` as a real tensor with a batch dimension (``ValueError`` naming ``name`` otherwise)."""
    t = _as_tensor(x, name)
    if t.ndim < 2:
        raise ValueError(f"{name} must have shape {layout} (a batch dimension first, at least 2 dims); "
                         f"got shape {tuple(t.shape)}")
    if finite:
        check_finite(t, name)
    return t


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")


def _check_nonempty_batch(x: torch.Tensor, name: str) -> None:
    if x.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (shape {tuple(x.shape)}): a mean over no instances is undefined")


def _overflow(values: torch.Tensor, what: str, *inputs: tuple[str, torch.Tensor]) -> None:
    """``ValueError`` if ``values`` (computed in float64 from finite inputs) overflowed."""
    if not bool(torch.isfinite(values).all()):
        sizes = ", ".join(f"max |{n}| = {float(t.double().abs().max()):.3g}" for n, t in inputs if t.numel())
        raise ValueError(f"{what} overflows float64 ({sizes}); rescale the inputs")


def _rounded(x: torch.Tensor) -> torch.Tensor:
    """Floating masks rounded to the nearest integer; bool and integer masks as they are."""
    return x.round() if x.is_floating_point() else x


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a_i, b_i>`` per instance in float64: ``[B, *E], [B, *E] -> [B]``."""
    return (a.double() * b.to(device=a.device, dtype=torch.float64)).flatten(1).sum(1)  # [B, prod(E)] -> [B]


def path_cost(weights, paths) -> torch.Tensor:
    """Cost ``sum_v w_v y_v`` per instance: ``[B, *E], [B, *E] -> [B]`` (float64).

    ``ValueError`` if an argument is not a real, finite ``[B, *E]`` tensor, if the shapes differ, or if a cost
    overflows float64. ``B = 0`` gives an empty ``[0]`` result; an empty event gives zeros.
    """
    w, y = _batched(weights, "weights"), _batched(paths, "paths")
    _check_same_shape(w, y, "weights", "paths")
    cost = _inner(w, y)  # [B]
    _overflow(cost, "a path cost sum_v w_v y_v", ("weights", w), ("paths", y))
    return cost


def shortest_path_metrics(pred_paths, true_weights, true_paths, rtol: float = 1e-5) -> dict[str, float]:
    """Cost-optimal accuracy, exact-match accuracy and cost ratio of predicted paths (module docstring).

    Shapes: ``pred_paths``, ``true_weights``, ``true_paths`` ``[B, *E]`` with ``B >= 1``. ``ValueError`` (naming
    the argument) for a non-real, non-finite or mis-shaped argument, an empty batch, a path cost that overflows
    float64, or an optimal path of cost 0 (its cost ratio is undefined; shortest-path weights are positive).
    """
    pred = _batched(pred_paths, "pred_paths")
    w = _batched(true_weights, "true_weights")
    true = _batched(true_paths, "true_paths")
    _check_same_shape(pred, true, "pred_paths", "true_paths")
    _check_same_shape(w, true, "true_weights", "true_paths")
    _check_nonempty_batch(pred, "pred_paths")
    c_pred = _inner(w, pred)  # [B]
    c_opt = _inner(w, true)  # [B]
    _overflow(torch.cat([c_pred, c_opt]), "a path cost sum_v w_v y_v", ("true_weights", w),
              ("pred_paths", pred), ("true_paths", true))
    zero = (c_opt == 0).nonzero().flatten()
    if zero.numel():
        raise ValueError(f"true_paths: the optimal path of instance {int(zero[0])} has cost 0 under true_weights "
                         f"({zero.numel()} such instances); the cost ratio c(pred) / c(true) is undefined")
    ratio = c_pred / c_opt  # [B]
    _overflow(ratio, "the cost ratio c(pred) / c(true)", ("c(pred)", c_pred), ("c(true)", c_opt))
    cost_ok = (c_pred - c_opt).abs() <= rtol * c_opt.abs()
    exact = (_rounded(pred) == _rounded(true).to(pred.device)).flatten(1).all(1)
    return {
        "cost_optimal_accuracy": float(cost_ok.double().mean()),
        "exact_match_accuracy": float(exact.double().mean()),
        "cost_ratio": float(ratio.mean()),
    }


def normalized_regret(true_costs, pred_solutions, opt_solutions, sense: str = "min") -> float:
    """Normalised regret of ``pred_solutions [B, *E]`` under ``true_costs [B, *E]`` (module docstring).

    ``sense="min"`` (costs, shortest path, TSP): ``sum_i c_i^T (y_pred_i - y*_i) / sum_i |c_i^T y*_i|``;
    ``sense="max"`` (values, knapsack): ``sum_i r_i^T (y*_i - y_pred_i) / sum_i |r_i^T y*_i|``. Both are ``>= 0``
    when ``opt_solutions`` are optimal. ``ValueError`` for a non-real, non-finite or mis-shaped argument, an empty
    batch, ``sum_i |c_i^T y*_i| = 0`` (the ratio is undefined: report the unnormalised regret instead) or an
    objective or ratio beyond float64's range. Example (minimisation, two instances)::

        c = [[1, 2, 3], [2, 2, 1]]; y* = [[1, 0, 0], [0, 0, 1]]; y_pred = [[0, 1, 0], [0, 0, 1]]
        normalized_regret(c, y_pred, y*) == ((2 - 1) + (1 - 1)) / (1 + 1) == 0.5
    """
    if sense not in ("min", "max"):
        raise ValueError(f"sense must be 'min' or 'max'; got {sense!r}")
    c = _batched(true_costs, "true_costs")
    yp, yo = _batched(pred_solutions, "pred_solutions"), _batched(opt_solutions, "opt_solutions")
    _check_same_shape(c, yp, "true_costs", "pred_solutions")
    _check_same_shape(c, yo, "true_costs", "opt_solutions")
    _check_nonempty_batch(c, "true_costs")
    opt = _inner(c, yo)  # [B]
    pred = _inner(c, yp)  # [B]
    _overflow(torch.cat([opt, pred]), "an objective c_i^T y_i", ("true_costs", c), ("pred_solutions", yp),
              ("opt_solutions", yo))
    gap = (pred - opt).sum()  # sum_i <c_i, y_pred_i - y*_i>
    denom = opt.abs().sum()
    _overflow(torch.stack([gap, denom]), "the summed objectives", ("true_costs", c))
    if float(denom) == 0.0:
        raise ValueError("opt_solutions: sum_i |c_i^T y*_i| = 0 (every optimal objective is 0 under true_costs), so "
                         "the normalised regret is undefined; report the unnormalised regret instead")
    value = (gap if sense == "min" else -gap) / denom
    _overflow(value, "the normalised regret", ("regret", gap), ("sum_i |c_i^T y*_i|", denom))
    return float(value)


def subset_precision(selected, relevant) -> float:
    """Mean over instances of ``|S ∩ R| / |S|`` for 0/1 or boolean masks ``[B, n]`` (instances with ``S`` empty
    count as 0).

    ``ValueError`` for masks that are not real ``[B, *E]`` tensors of 0/1 values, mismatched shapes or ``B = 0``.
    """
    s, r = _batched(selected, "selected"), _batched(relevant, "relevant")
    _check_same_shape(s, r, "selected", "relevant")
    _check_nonempty_batch(s, "selected")
    for t, name in ((s, "selected"), (r, "relevant")):
        if t.dtype != torch.bool and not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name} must be a 0/1 or boolean mask; got values other than 0 and 1")
    s, r = s.bool(), r.bool().to(s.device)
    hit = (s & r).flatten(1).sum(1).double()
    size = s.flatten(1).sum(1).double()
    return float(torch.where(size > 0, hit / size.clamp_min(1), torch.zeros_like(hit)).mean())


def accuracy(logits, labels) -> float:
    """Top-1 accuracy of ``logits [B, C]`` against integer ``labels [B]`` (or ``[B, ..., C]`` against ``[B, ...]``).

    ``logits`` are real (floating or integer; ``-inf`` allowed, NaN is not) with ``C >= 1`` classes; ``labels`` are
    integer class indices in ``[0, C)``. ``ValueError`` otherwise, and for ``B = 0``.
    """
    lg = _batched(logits, "logits", "[B, C]", finite=False)
    lb = _as_tensor(labels, "labels")
    if lg.dtype == torch.bool:
        raise ValueError("logits must have a floating or integer dtype; got torch.bool")
    if lb.shape != lg.shape[:-1]:
        raise ValueError(f"labels must have shape {tuple(lg.shape[:-1])} (logits {tuple(lg.shape)} without the class "
                         f"dimension); got {tuple(lb.shape)}")
    if lb.dtype == torch.bool or lb.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of class indices; got {lb.dtype}")
    _check_nonempty_batch(lg, "logits")
    n_classes = lg.shape[-1]
    if n_classes == 0:
        raise ValueError(f"logits must have at least one class; got shape {tuple(lg.shape)}")
    if lg.is_floating_point() and bool(torch.isnan(lg).any()):
        raise ValueError(f"logits must not be NaN; got {int(torch.isnan(lg).sum())} NaN entries")
    if lb.numel() and not (0 <= int(lb.min()) and int(lb.max()) < n_classes):
        raise ValueError(f"labels must be class indices in [0, {n_classes}); got values in "
                         f"[{int(lb.min())}, {int(lb.max())}]")
    return float((lg.argmax(-1) == lb.to(lg.device)).double().mean())
