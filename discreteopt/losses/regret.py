"""Regret of decisions."""

from __future__ import annotations

import torch

from ..estimators.base import inner
from ..executors.base import Executor
from ..maximizer import Maximizer, validate_input
from ..solvers.base import Solver
from ._common import _check_like, _reduce


def regret(solver: Solver, theta_true: torch.Tensor, y_hat: torch.Tensor, y_opt: torch.Tensor | None = None,
           normalized: bool = False, executor: Executor | None = None, reduction: str = "none") -> torch.Tensor:
    """Regret of decisions ``y_hat`` under the true natural arguments ``theta_true`` (>= 0)::

        min sense:  <c, y_hat> - <c, y*(c)>            max sense:  <r, y*(r)> - <r, y_hat>

    ``normalized=True`` divides by ``|objective of y*|`` per instance (``reduction="none"``) or, as PyEPO does,
    the summed regret by the summed ``|objective of y*|`` (``"mean"`` and ``"sum"``).
    ``y_opt`` (the optimal solutions) is solved when not given. Per instance ``[B]`` by default.
    """
    validate_input(solver, theta_true, "theta_true")
    _check_like(y_hat, theta_true, "y_hat", "theta_true")
    ndim = theta_true.ndim - 1
    with torch.no_grad():
        if y_opt is None:
            y_opt = Maximizer(solver, executor)(-theta_true if solver.sense == "min" else theta_true)
        else:
            _check_like(y_opt, theta_true, "y_opt", "theta_true")
    t = theta_true.to(y_hat.dtype)
    opt = inner(t, y_opt.to(y_hat.dtype), ndim)  # [B]
    gap = inner(t, y_hat, ndim) - opt  # [B]
    r = gap if solver.sense == "min" else -gap
    tiny = torch.finfo(r.dtype).tiny
    if normalized and reduction == "none":
        return r / opt.abs().clamp_min(tiny)
    if normalized:
        _reduce(r, reduction)
        return r.sum() / opt.abs().sum().clamp_min(tiny)
    return _reduce(r, reduction)
