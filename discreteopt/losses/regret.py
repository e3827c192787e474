"""Regret of decisions."""

from __future__ import annotations

import torch

from .. import _ops
from ..estimators.base import inner
from ..executors.base import Executor
from ..maximizer import Maximizer
from ..solvers.base import Solver
from ._common import _check_like, _reduce, _validate, solve_max


def regret(solver: Solver, theta_true: torch.Tensor, y_hat: torch.Tensor, y_opt: torch.Tensor | None = None,
           normalized: bool = False, executor: Executor | None = None, reduction: str = "none") -> torch.Tensor:
    """Regret of decisions ``y_hat`` under the true natural arguments ``theta_true`` (>= 0)::

        min sense:  <c, y_hat> - <c, y*(c)>            max sense:  <r, y*(r)> - <r, y_hat>

    ``normalized=True`` divides by ``|objective of y*|`` per instance (``reduction="none"``) or, as PyEPO does,
    the summed regret by the summed ``|objective of y*|`` (``"mean"`` and ``"sum"``).
    Reference: Elmachtoub & Grigas, "Smart 'Predict, then Optimize'", Management Science 2022 (normalised regret
    as in PyEPO).

    Args:
        solver: the :class:`~discreteopt.solvers.base.Solver` of the decisions.
        theta_true: ``[B, *E]`` true natural arguments (costs for ``sense == "min"``).
        y_hat: ``[B, *E]`` decisions to evaluate (e.g. ``solver.solve(predicted)`` or a layer's output; the
            regret is differentiable in ``y_hat`` and ``theta_true``, with ``y*`` held fixed).
        y_opt: ``[B, *E]`` optimal solutions ``y*(theta_true)``; solved (one executor call, no gradient) if omitted.
        normalized: divide by the optimal objective (see above).
        executor: where ``y_opt`` is solved (default ``Inline()``).
        reduction: ``"none"`` (default, ``[B]``), ``"mean"`` or ``"sum"``.

    Works under ``torch.func`` (``vmap`` folds the vmapped dim into one solver call) and, with ``y_opt`` given,
    under ``torch.compile``. Example::

        >>> import torch, discreteopt as do
        >>> solver = do.solvers.GraphShortestPath.grid(5, 5)
        >>> c, c_hat = torch.rand(4, 40), torch.rand(4, 40)
        >>> r = do.regret(solver, c, solver.solve(c_hat))     # [4], >= 0
    """
    _validate(solver, theta_true, "theta_true")
    _check_like(y_hat, theta_true, "y_hat", "theta_true")
    ndim = theta_true.ndim - 1
    if y_opt is None:
        if _ops.compiling():
            raise ValueError("regret under torch.compile needs y_opt (the optimal solutions): solving theta_true "
                             "is a solver call outside the compiled graph; pass y_opt=solver.solve(theta_true)")
        detached = theta_true.detach()
        maximizer = Maximizer(solver, executor)
        with maximizer.unperturbed():  # an evaluation: like solver.solve, never a clamp
            y_opt = solve_max(maximizer, -detached if solver.sense == "min" else detached)
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
