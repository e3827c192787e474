"""SPO+ loss."""

from __future__ import annotations

import torch
from torch import nn

from ..estimators.base import inner
from ..estimators.guards import Guard
from ..executors.base import Executor
from ..maximizer import Maximizer, validate_input
from ..solvers.base import Solver
from ._common import _check_like, _reduce


class SPOPlus(nn.Module):
    """SPO+ loss (Elmachtoub & Grigas, 2022, "Smart 'Predict, then Optimize'", Management Science).

    Stated for minimisation over costs ``c`` with ``y*(c) = argmin_y <c, y>`` and ``z*(c) = <c, y*(c)>``::

        l(c_hat, c) = max_y <c - 2 c_hat, y> + 2 <c_hat, y*(c)> - z*(c)     (>= 0)
        subgradient  = 2 ( y*(c) - y*(2 c_hat - c) )                        w.r.t. c_hat

    Max-sense solvers (scores ``r``) use ``c = -r``; the loss is then differentiated w.r.t. the predicted
    scores by autograd. ``y_true = y*(c)`` can be passed to save solver calls; otherwise it is solved together
    with ``y*(2 c_hat - c)`` in one executor call (``2B`` instances). The guard (default clamp) applies to
    ``2 c_hat - c`` for solvers with ``min_cost``; the loss is then computed for the solution of the guarded
    problem.
    """

    def __init__(self, solver: Solver, executor: Executor | None = None, guard: Guard | None = None,
                 reduction: str = "mean"):
        super().__init__()
        self.maximizer = Maximizer(solver, executor, guard)
        self.solver = solver
        _reduce(torch.zeros(1), reduction)
        self.reduction = reduction

    @property
    def stats(self):
        return self.maximizer.stats

    def forward(self, pred: torch.Tensor, true: torch.Tensor, y_true: torch.Tensor | None = None) -> torch.Tensor:
        validate_input(self.solver, pred, "pred")
        _check_like(true, pred, "true", "pred")
        true = true.to(pred.dtype)
        # min-convention costs c_hat = sign * pred, c = sign * true; the maximiser of
        # d = c - 2 c_hat solves argmin <2 c_hat - c, y>, and with y* = y*(c):
        #   l = <c - 2 c_hat, y~> + 2 <c_hat, y*> - <c, y*> = <d, y~ - y*>
        sign = 1.0 if self.solver.sense == "min" else -1.0
        d_max = torch.add(true, pred.detach(), alpha=-2.0)  # [B, *E]: d for min sense, -d for max sense
        if sign < 0:
            d_max = d_max.neg_()
        if y_true is None:
            c_max = torch.neg(true) if self.solver.sense == "min" else true  # -c: y*(c) = argmax <-c, y>
            ys = self.maximizer(torch.cat([d_max, c_max]))  # [2B, *Y], one executor call
            y_tilde, y_true = ys[: pred.shape[0]], ys[pred.shape[0]:]
        else:
            _check_like(y_true, pred, "y_true", "pred")
            y_tilde = self.maximizer(d_max)  # [B, *Y]
            y_true = y_true.to(pred.dtype)
        loss = _SPOPlusFunction.apply(pred, d_max, y_tilde - y_true, -2.0 * sign)  # [B]
        return _reduce(loss, self.reduction)


class _SPOPlusFunction(torch.autograd.Function):
    """``l = <d, delta>`` per instance with ``delta = y~ - y*`` held fixed; ``dl/dpred = coef * delta``.

    ``d = c - 2 c_hat`` moves by ``-2`` per unit of ``c_hat``: ``coef = -2`` for costs (min sense) and ``+2``
    for scores (``c_hat = -pred``). The true costs get no gradient. One autograd node instead of four.
    """

    @staticmethod
    def forward(ctx, pred, d, delta, coef):  # noqa: ARG004 -- pred is the autograd input
        ctx.save_for_backward(delta)
        ctx.coef = coef
        return inner(d, delta, d.ndim - 1)  # [B]

    @staticmethod
    def backward(ctx, grad_loss):
        (delta,) = ctx.saved_tensors
        g = (grad_loss * ctx.coef).reshape(-1, *([1] * (delta.ndim - 1)))  # [B] -> [B, 1, ...]
        return g * delta, None, None, None
