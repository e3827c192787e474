"""Regret of decisions."""

from __future__ import annotations

import torch

from .. import _ops
from .._validation import check_real
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
    the summed regret by the summed ``|objective of y*|`` (``"mean"`` and ``"sum"``). A zero denominator (an
    instance, resp. every instance, whose optimal objective is 0) makes the ratio undefined: ``ValueError``
    (use ``normalized=False`` there).

    Precision: the regret is one inner product ``<c, y_hat - y*>`` computed in float64 (no cancellation of two
    large objectives), returned in ``torch.promote_types(theta_true.dtype, y_hat.dtype)`` (``theta_true``'s
    dtype for an integer or bool ``y_hat``): float16 decisions under float32 costs get a float32 regret.
    ``ValueError`` when a value does not fit: a regret (or, normalised, an optimal objective) beyond float64's
    range -- inputs near 1e154 and beyond -- or a regret beyond the result dtype's (float16 costs and decisions
    whose regret exceeds 65504).
    Reference: Elmachtoub & Grigas, "Smart 'Predict, then Optimize'", Management Science 2022 (normalised regret
    as in PyEPO).

    Args:
        solver: the :class:`~discreteopt.solvers.base.Solver` of the decisions.
        theta_true: ``[B, *E]`` true natural arguments (costs for ``sense == "min"``).
        y_hat: ``[B, *E]`` decisions to evaluate (e.g. ``solver.solve(predicted)`` or a layer's output; the
            regret is differentiable in ``y_hat`` and ``theta_true``, with ``y*`` held fixed); finite, of a real
            dtype (floating, integer or bool).
        y_opt: ``[B, *E]`` optimal solutions ``y*(theta_true)`` (finite, real dtype); solved (one executor call,
            no gradient) if omitted.
        normalized: divide by the optimal objective (see above).
        executor: where ``y_opt`` is solved (default ``Inline()``).
        reduction: ``"none"`` (default, ``[B]``), ``"mean"`` or ``"sum"``.

    Works under ``torch.func`` (``vmap`` folds the vmapped dim into one solver call) and, with ``y_opt`` given,
    under ``torch.compile`` (where the zero-denominator and overflow checks, which read values, are skipped).
    Example::

        >>> import torch, discreteopt as do
        >>> solver = do.solvers.GraphShortestPath.grid(5, 5)
        >>> c, c_hat = torch.rand(4, 40), torch.rand(4, 40)
        >>> r = do.regret(solver, c, solver.solve(c_hat))     # [4], >= 0
    """
    _validate(solver, theta_true, "theta_true")
    _check_like(y_hat, theta_true, "y_hat", "theta_true")
    check_real(y_hat, "y_hat")
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
        check_real(y_opt, "y_opt")
    dtype = torch.promote_types(theta_true.dtype, y_hat.dtype) if y_hat.is_floating_point() else theta_true.dtype
    t, y_star = theta_true.to(torch.float64), y_opt.to(torch.float64)
    # <c, y_hat - y*> in one inner product: no cancellation of two large objectives (and no inf - inf)
    gap = inner(t, y_hat.to(torch.float64) - y_star, ndim)  # [B]
    r = gap if solver.sense == "min" else -gap
    if normalized:
        _reduce(r, reduction)  # checks the name
        opt = inner(t, y_star, ndim).abs()  # [B]
        denom = opt if reduction == "none" else opt.sum()
        _check_denominator(denom, reduction, theta_true)
        r = r / denom if reduction == "none" else r.sum() / denom
    else:
        r = _reduce(r, reduction)
    out = r.to(dtype)
    _check_fits(out, dtype, "the normalised regret" if normalized else "the regret <theta_true, y_hat - y*>",
                theta_true, y_hat)
    return out


def _values(x: torch.Tensor) -> torch.Tensor:
    """The values behind ``x`` (every vmapped element under torch.func); call under ``_DisableFuncTorch``."""
    return _ops.plain(x).detach() if _ops.transformed(x) else x.detach()


def _largest(x: torch.Tensor) -> float:
    return float(_values(x).double().abs().max())


def _check_fits(x: torch.Tensor, dtype: torch.dtype, what: str, theta: torch.Tensor, y: torch.Tensor) -> None:
    """``ValueError`` if the result ``x``, computed in float64 from finite inputs, does not fit ``dtype`` (not
    checked under compile)."""
    if _ops.compiling():
        return
    with torch._C._DisableFuncTorch():
        if bool(torch.isfinite(_values(x)).all()):
            return
        big = f"max |theta_true| = {_largest(theta):.3g}, max |y_hat| = {_largest(y):.3g}"
    raise ValueError(f"{what} overflows {str(dtype).replace('torch.', '')} ({big}); rescale theta_true"
                     + ("" if dtype == torch.float64 else " or pass float32/float64 tensors"))


def _check_denominator(denom: torch.Tensor, reduction: str, theta: torch.Tensor) -> None:
    """``ValueError`` if a normalisation denominator ``|<theta_true, y*>|`` is 0 or overflowed float64 (not
    checked under compile)."""
    if _ops.compiling():
        return
    with torch._C._DisableFuncTorch():
        v = _values(denom).reshape(-1)
        if bool(((v != 0) & torch.isfinite(v)).all()):  # the usual case: one reduction
            return
        zero = (v == 0).nonzero().flatten()
        finite = bool(torch.isfinite(v).all())
        big = "" if finite else f"max |theta_true| = {_largest(theta):.3g}"
    if zero.numel():
        where = f"instance {int(zero[0])} ({zero.numel()} such)" if reduction == "none" else "every instance"
        raise ValueError(f"regret(normalized=True): the optimal objective <theta_true, y*> is 0 for {where}, so "
                         "the normalised regret is undefined; use normalized=False there")
    if not finite:
        raise ValueError(f"regret(normalized=True): the optimal objective <theta_true, y*> overflows float64 ({big}); "
                         "rescale theta_true")
