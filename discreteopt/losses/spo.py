"""SPO+ loss."""

from __future__ import annotations

import torch

from .. import _ops
from ..estimators.base import all_finite, inner, ldexp_rows, row_exponents, safe_inner
from ..estimators.guards import Guard
from ..executors.base import Executor
from ..maximizer import Maximizer, validate_input
from ..solvers.base import InstanceError, Solver
from ._common import _check_like, _reduce, _validate, cast_fitting, linearized_loss, reduce_finite


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
    counters ``stats.clamped_entries`` / ``stats.guarded_entries``; the loss is then computed for the guarded
    problem (``y*`` of the clamped ``2 c_hat - c``) and **may be negative**: ``l >= 0`` needs the exact inner
    maximisation.

    Extreme values: where ``2 c_hat - c`` overflows (``|pred|`` beyond half the float maximum), both costs of that
    instance are scaled by a power of two, solved, and the loss scaled back -- exact, since SPO+ is positively
    homogeneous and a clamp at 0 commutes with the scaling (a solver with a non-zero ``min_cost`` raises
    ``ValueError`` instead). Values and reductions are never NaN from finite inputs: a loss beyond the float range
    is ``+-inf``, and a mean or sum of instances at ``+inf`` and ``-inf`` raises ``ValueError``.

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
        return reduce_finite(linearized_loss(pred, true, y_true, self), self.reduction)  # [B] -> reduced

    def _generator_for(self, device: torch.device) -> None:
        return None  # SPO+ draws no noise

    def _linearized(self, pred: torch.Tensor, true: torch.Tensor,
                    y_true: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Storage-backed tensors -> ``(l [B], dl/dpred [B, *E])``; one executor call (``2B`` or ``B`` instances)."""
        validate_input(self.solver, pred, "pred")
        _ops.check_dtype(pred, "pred")
        _check_like(true, pred, "true", "pred")
        dtype = _ops.compute_dtype(pred.dtype)  # float32 for half precision
        true = cast_fitting(true.detach(), dtype, "true", "SPOPlus")
        pred_c = pred.detach().to(dtype)
        if y_true is not None:
            _check_like(y_true, pred, "y_true", "pred")
            y_true = cast_fitting(y_true.detach(), dtype, "y_true", "SPOPlus")
        ndim = pred.ndim - 1
        try:
            d_max, delta = self._solve(true, pred_c, y_true)
            value = inner(d_max, delta, ndim)  # [B]
            ok = all_finite(value)  # (the one check of the common path)
        except (ValueError, InstanceError):  # the solver refused 2 c_hat - c (non-finite entries, or path sums
            # that overflow): the scaled computation below when it overflowed, the solver's error otherwise
            if all_finite(torch.add(true, pred_c, alpha=-2.0)):
                raise
            d_max, ok = None, False
        if not ok:
            if d_max is not None and all_finite(d_max):  # finite d: its products or partial sums overflowed
                value = safe_inner(d_max, delta, ndim)
            else:  # 2 c_hat - c overflows: the loss of the costs scaled by 2**-e, scaled back (SPO+ is
                # positively homogeneous, and y* of the scaled costs is the same: exact)
                e = self._scale_exponents(true, pred_c)
                d_max, delta = self._solve(ldexp_rows(true, -e), ldexp_rows(pred_c, -e), y_true)
                value = ldexp_rows(safe_inner(d_max, delta, ndim), e)
        # d = c - 2 c_hat moves by -2 per unit of c_hat: dl/dpred = -2 delta for costs, +2 delta for scores
        sign = 1.0 if self.solver.sense == "min" else -1.0
        return value.to(pred.dtype), delta.mul_(-2.0 * sign).to(pred.dtype)

    def _solve(self, true: torch.Tensor, pred: torch.Tensor,
               y_true: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d_max, delta = y~ - y*)`` ``[B, *E]`` for costs ``true``, ``pred`` (compute dtype, no graph); one
        executor call (``2B`` instances, or ``B`` when ``y_true`` is given)."""
        # min-convention costs c_hat = sign * pred, c = sign * true; the maximiser of
        # d = c - 2 c_hat solves argmin <2 c_hat - c, y>, and with y* = y*(c):
        #   l = <c - 2 c_hat, y~> + 2 <c_hat, y*> - <c, y*> = <d, y~ - y*>
        d_max = torch.add(true, pred, alpha=-2.0)  # [B, *E]: d for min sense, -d for max sense
        if self.solver.sense != "min":
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
            y_tilde = self.maximizer(d_max)  # [B, *Y]
        return d_max, y_tilde - y_true  # delta held fixed

    def _scale_exponents(self, true: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """``e [B]`` with ``max(|c|, |c_hat|) < 2**e`` per instance, for ``c - 2 c_hat`` that overflows. Solving the
        scaled ``2**-e (c - 2 c_hat)`` is exact (the same minimisers, the same clamp at a bound 0); a non-zero bound
        ``min_cost`` would move relative to the costs: ``ValueError`` then."""
        lo = self.solver.min_cost
        if lo is not None and lo != 0:
            raise ValueError(f"2 * pred - true overflows {str(pred.dtype).replace('torch.', '')} (max |pred| = "
                             f"{float(pred.abs().max()):.4g}, max |true| = {float(true.abs().max()):.4g}); "
                             f"scaling it would move {type(self.solver).__name__}'s bound min_cost = {lo}: expected "
                             "costs below half the float maximum")
        return row_exponents(true, pred)

    def _linearized_fake(self, pred: torch.Tensor, true: torch.Tensor, y_true: torch.Tensor | None):
        _ops.check_structure(self.solver, pred, "pred")
        return pred.new_empty(pred.shape[:1]), torch.empty_like(pred)
