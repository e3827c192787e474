"""Evaluate a predict-then-optimise model over a data loader: regret and normalised regret in one call.

For a model ``f`` that predicts the solver's natural arguments (costs for ``sense == "min"``, values for
``sense == "max"``) from features ``x``, and the true arguments ``c``::

    y_hat_i = solver(f(x_i)),   y*_i = solver(c_i)  (or the optimal solutions the loader provides)
    regret_i = <c_i, y_hat_i> - <c_i, y*_i>   (min)      regret_i = <c_i, y*_i> - <c_i, y_hat_i>   (max)
    normalised regret = sum_i regret_i / sum_i |<c_i, y*_i>|

(Tang & Khalil 2022, "PyEPO", the regret metric; the same number as PyEPO's ``regret(model, optmodel, loader)``
and :func:`discreteopt.metrics.normalized_regret`).

Predictions are solved exactly, without user code: a solver that accepts any finite argument is called as is;
a solver with a lower bound ``min_cost`` (Dijkstra) that is ``shift_invariant`` (every feasible ``y`` has the
same ``sum(y)``, so a per-instance constant keeps the optimum) gets the predictions shifted per instance; any
other bounded solver raises ``ValueError`` when a prediction is below its bound, since clamping would change the
problem being evaluated.

This lives in its own module rather than in :mod:`discreteopt.metrics`: metrics are pure functions of tensors,
while this helper runs a model, iterates a loader and calls solvers (through an executor).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._validation import check_finite, check_real
from .estimators.guards import Raise, Shift
from .executors.base import Executor
from .maximizer import Maximizer
from .solvers.base import Solver


@dataclasses.dataclass(frozen=True)
class RegretResult:
    """What :func:`evaluate_regret` returns.

    Attributes:
        normalized: ``sum_i regret_i / sum_i |objective of y*_i|`` (PyEPO's number).
        mean: mean per-instance regret (in the units of the objective).
        count: number of instances evaluated.
    """

    normalized: float
    mean: float
    count: int


def _unpack(batch: Any) -> tuple[Any, torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, Mapping):
        if "x" not in batch or "c" not in batch:
            raise ValueError(f"loader: a dict batch needs keys 'x' and 'c' (optionally 'w'); got {sorted(batch)}")
        return batch["x"], batch["c"], batch.get("w")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1], batch[2] if len(batch) >= 3 else None
    raise ValueError("loader must yield (x, c), (x, c, w[, ...]) tuples or dicts with 'x', 'c' (and 'w'); "
                     f"got a {type(batch).__name__}")


def _real(x: Any, name: str) -> torch.Tensor:
    """``x`` as a finite floating tensor (integer and bool widened to float64); ``ValueError`` naming ``name``
    for a complex or non-finite ``x``."""
    t = torch.as_tensor(x)
    check_real(t, name)
    t = t if t.is_floating_point() else t.double()
    check_finite(t, name)
    return t


def _guard_for(solver: Solver, pred: torch.Tensor, what: str):
    """``Shift()`` for bounded shift-invariant solvers, else ``Raise()`` after an explicit bound check."""
    if solver.min_cost is None:
        return Raise()
    if getattr(solver, "shift_invariant", False):
        return Shift()
    low = float(pred.min()) if pred.numel() else 0.0
    if low < solver.min_cost:
        raise ValueError(f"{what} has entries below {type(solver).__name__}'s lower bound min_cost="
                         f"{solver.min_cost} (smallest {low:.6g}) and the solver is not shift-invariant, so no "
                         "exact answer exists for it here; use a solver that accepts them (an LP/ILP, or a DAG "
                         "shortest path), or a model whose output respects the bound (e.g. softplus)")
    return Raise()


@torch.no_grad()
def evaluate_regret(model: Callable[[Any], torch.Tensor], solver: Solver, loader: Iterable,
                    executor: Executor | None = None) -> RegretResult:
    """Regret and normalised regret of ``model`` on every instance of ``loader`` (module docstring).

    Args:
        model: ``x [B, ...] -> predicted natural arguments [B, *E]`` (an ``nn.Module`` is put in eval mode for
            the call and restored afterwards).
        solver: the optimisation problem; its ``sense`` decides the sign of the regret.
        loader: iterable of batches ``(x, c)``, ``(x, c, w, ...)`` (PyEPO's ``optDataset`` order: features,
            true costs, optimal solutions, ...) or dicts with keys ``"x"``, ``"c"`` and optionally ``"w"``.
            ``c [B, *E]`` are the true arguments; ``w [B, *E]``, when given, are taken as the optimal solutions
            (otherwise ``c`` is solved).
        executor: where solver calls run (default inline).

    Returns:
        :class:`RegretResult` ``(normalized, mean, count)``.

    ``ValueError`` for non-finite or complex ``c`` or ``w``, an empty loader, objectives that overflow float64,
    and ``sum_i |<c_i, y*_i>| = 0`` (the normalised regret is undefined there).

    Example::

        res = evaluate_regret(model, do.solvers.Knapsack(weights, capacity), test_loader)
        print(res.normalized)
    """
    if not isinstance(solver, Solver):
        raise ValueError(f"solver must be a discreteopt Solver; got {type(solver).__name__}")
    was_training = getattr(model, "training", None)
    if was_training:
        model.eval()
    total_regret, total_opt, count = 0.0, 0.0, 0
    try:
        for batch in loader:
            x, c, w = _unpack(batch)
            c = _real(c, "loader: c")
            pred = model(x)
            if not isinstance(pred, torch.Tensor) or pred.shape != c.shape:
                got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
                raise ValueError(f"model(x) must return a tensor shaped like the true costs c {tuple(c.shape)}; "
                                 f"got {got}")
            pred = pred.detach().to(torch.float64)
            c64 = c.detach().to(device=pred.device, dtype=torch.float64)
            sign = -1.0 if solver.sense == "min" else 1.0  # natural argument -> max convention
            y_hat = Maximizer(solver, executor, _guard_for(solver, pred, "model(x)"))(sign * pred)
            if w is None:
                y_opt = Maximizer(solver, executor, _guard_for(solver, c64, "the true costs c"))(sign * c64)
            else:
                y_opt = _real(w, "loader: w").to(device=pred.device, dtype=torch.float64)
                if y_opt.shape != c.shape:
                    raise ValueError(f"loader: w must be shaped like c {tuple(c.shape)}; got {tuple(y_opt.shape)}")
            opt = (c64 * y_opt).flatten(1).sum(1)  # [B]
            gap = (c64 * y_hat.to(torch.float64)).flatten(1).sum(1) - opt  # [B]: <c, y_hat - y*>
            regret = gap if solver.sense == "min" else -gap
            total_regret += float(regret.sum())
            total_opt += float(opt.abs().sum())
            count += int(c.shape[0])
    finally:
        if was_training:
            model.train()
    if count == 0:
        raise ValueError("loader yielded no instances")
    if not (math.isfinite(total_regret) and math.isfinite(total_opt)):
        raise ValueError(f"the objectives <c_i, y_i> overflow float64 (summed regret {total_regret}, summed "
                         f"|optimal objective| {total_opt}); rescale the true costs c")
    if total_opt == 0:
        raise ValueError(f"sum_i |<c_i, y*_i>| = 0 over the {count} instances (every optimal objective is 0), so the "
                         "normalised regret is undefined; RegretResult.mean would be "
                         f"{total_regret / count:.6g}")
    return RegretResult(normalized=total_regret / total_opt, mean=total_regret / count, count=count)
