"""SPO+ loss."""

from __future__ import annotations

import torch

from .. import _ops
from ..estimators.base import inner
from ..estimators.guards import Guard
from ..executors.base import Executor
from ..maximizer import Maximizer, validate_input
from ..solvers.base import Solver
from ._common import _check_like, _reduce, _validate, linearized_loss


class SPOPlus(_ops.Native):
    """SPO+ loss (Elmachtoub & Grigas, 2022, "Smart 'Predict, then Optimize'", Management Science).

    Stated for minimisation over costs ``c`` with ``y*(c) = argmin_y <c, y>`` and ``z*(c) = <c, y*(c)>``::

        l(c_hat, c) = max_y <c - 2 c_hat, y> + 2 <c_hat, y*(c)> - z*(c)     (>= 0)
        subgradient  = 2 ( y*(c) - y*(2 c_hat - c) )                        w.r.t. c_hat

    Max-sense solvers (scores ``r``) use ``c = -r``; the loss is then differentiated w.r.t. the predicted
    scores by autograd. ``y_true = y*(c)`` can be passed to save solver calls; otherwise it is solved together
    with ``y*(2 c_hat - c)`` in one executor call (``2B`` instances).

    ``2 c_hat - c`` is often negative (a linear model's predictions). The default guard
    (:class:`~discreteopt.estimators.guards.Auto`) solves it exactly where possible: solvers without a bound --
    :class:`~discreteopt.solvers.GraphShortestPath` on an acyclic graph such as PyEPO's grid (dynamic programming),
    LPs/ILPs -- take it as is, ``shift_invariant`` solvers get the exact ``Shift()``; only where nothing exact
    exists (Dijkstra on a cyclic graph) it is clamped to ``min_cost``, with a one-time ``GuardWarning`` and the
    counters ``stats.clamped_entries`` / ``stats.guarded_entries``; the loss is then that of the guarded problem.

    Args:
        solver: any :class:`~discreteopt.solvers.base.Solver` (``y`` of the shape of its argument).
        executor: where the solver runs (default ``Inline()``).
        guard: bound policy for ``min_cost`` solvers (default ``Auto()``; ``Clamp()``, ``Shift()``, ``Raise()``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per instance ``[B]``).

    Shapes: ``pred [B, *E]``, ``true [B, *E]``, optional ``y_true [B, *E]`` -> loss scalar (or ``[B]``).

    PyTorch support: ``torch.func`` (``grad``, ``vmap``: the vmapped dim is folded into one solver call),
    ``torch.compile(fullgraph=True)`` (custom operator ``discreteopt::linearized_loss``), float16/bfloat16 (computed
    in float32, returned in the input dtype). ``true`` and ``y_true`` get no gradient. A NaN/inf incoming gradient
    raises ``ValueError``. Second order is exact: SPO+ is piecewise linear in ``pred``, so the gradient
    ``2 (y*(c) - y*(2 c_hat - c))`` is constant almost everywhere and a gradient penalty differentiates it as such
    (zero Hessian; the graph through ``dL/dloss`` is kept).

    Example::

        >>> import discreteopt as do
        >>> spo = SPOPlus(do.solvers.GraphShortestPath.grid(5, 5))
        >>> c_hat, c = torch.randn(8, 40, requires_grad=True), torch.rand(8, 40)
        >>> spo(c_hat, c).backward()
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

    #: SPO+ is piecewise linear in the prediction: the constant direction is its exact derivative and the zero
    #: second derivative is exact almost everywhere, so a double backward is allowed (see LinearizedLoss)
    _second_order_refusal = None

    def forward(self, pred: torch.Tensor, true: torch.Tensor, y_true: torch.Tensor | None = None) -> torch.Tensor:
        """``pred [B, *E]``, ``true [B, *E]`` (natural arguments), optional ``y_true = y*(true)`` -> loss."""
        if not _ops.compiling():  # (under torch.compile the operator checks its arguments)
            if torch.jit.is_tracing():
                self._refuse_jit_trace()
            if _ops.transformed(pred):
                _validate(self.solver, pred, "pred")
        return _reduce(linearized_loss(pred, true, y_true, self), self.reduction)  # [B] -> reduced

    def _generator_for(self, device: torch.device) -> None:
        return None  # SPO+ draws no noise

    def _linearized(self, pred: torch.Tensor, true: torch.Tensor,
                    y_true: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Storage-backed tensors -> ``(l [B], dl/dpred [B, *E])``; one executor call (``2B`` or ``B`` instances)."""
        validate_input(self.solver, pred, "pred")
        _ops.check_dtype(pred, "pred")
        _check_like(true, pred, "true", "pred")
        dtype = _ops.compute_dtype(pred.dtype)  # float32 for half precision
        true = true.detach().to(dtype)
        # min-convention costs c_hat = sign * pred, c = sign * true; the maximiser of
        # d = c - 2 c_hat solves argmin <2 c_hat - c, y>, and with y* = y*(c):
        #   l = <c - 2 c_hat, y~> + 2 <c_hat, y*> - <c, y*> = <d, y~ - y*>
        sign = 1.0 if self.solver.sense == "min" else -1.0
        d_max = torch.add(true, pred.detach().to(dtype), alpha=-2.0)  # [B, *E]: d for min sense, -d for max sense
        if sign < 0:
            d_max = d_max.neg_()
        if y_true is None:
            c_max = torch.neg(true) if self.solver.sense == "min" else true  # -c: y*(c) = argmax <-c, y>
            if self.maximizer.cache is None:
                ys = self.maximizer(torch.cat([d_max, c_max]))  # [2B, *Y], one executor call
                y_tilde, y_true = ys[: pred.shape[0]], ys[pred.shape[0]:]
            else:  # y*(c) is the loss's reference: solved exactly, never answered from a cache's pool
                y_tilde = self.maximizer(d_max)  # [B, *Y]
                with self.maximizer.unperturbed():
                    y_true = self.maximizer(c_max, use_cache=False)  # [B, *Y]
        else:
            _check_like(y_true, pred, "y_true", "pred")
            y_tilde = self.maximizer(d_max)  # [B, *Y]
            y_true = y_true.detach().to(dtype)
        delta = y_tilde - y_true  # [B, *E], held fixed
        value = inner(d_max, delta, delta.ndim - 1)  # [B]
        # d = c - 2 c_hat moves by -2 per unit of c_hat: dl/dpred = -2 delta for costs, +2 delta for scores
        return value.to(pred.dtype), delta.mul_(-2.0 * sign).to(pred.dtype)

    def _linearized_fake(self, pred: torch.Tensor, true: torch.Tensor, y_true: torch.Tensor | None):
        _ops.check_structure(self.solver, pred, "pred")
        return pred.new_empty(pred.shape[:1]), torch.empty_like(pred)
