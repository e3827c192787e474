"""Helpers shared by the losses: reduction, argument checks, and the autograd function of the linearised losses.

:class:`LinearizedLoss` serves every loss whose gradient is a *direction* held fixed over the forward's solver
calls (Danskin): Fenchel-Young (``E[y*(theta + scale Z)] - y_true``) and SPO+ (``2 (y*(c) - y*(2 c_hat - c))``). It
is an ``autograd.Function`` with ``setup_context`` and a vmap rule (``torch.func``), and the custom operator
``discreteopt::linearized_loss`` under ``torch.compile`` (see :mod:`discreteopt._ops`).
"""

from __future__ import annotations

import math

import torch

from .. import _ops
from ..estimators.base import all_finite


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")


class _WithValue(torch.autograd.Function):
    """``a``'s gradient with ``value``'s value (``value`` has no graph): a reduction recomputed without overflow
    keeps the plain reduction's gradient, which does not depend on the values."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a, value):
        return value.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def reduce_finite(x: torch.Tensor, reduction: str) -> torch.Tensor:
    """:func:`_reduce` of per-instance losses ``x [B]`` that never turns finite or one-signed values into NaN:
    when the plain mean or sum is not finite, its value is recomputed on ``x`` scaled by a power of two (exact), so
    a finite mean of huge values stays finite and an overflowing sum is ``+-inf``; instances that are ``+inf`` and
    ``-inf`` at once (their exact values beyond the float range with both signs) make the reduction undefined:
    ``ValueError``. The gradient is the plain reduction's. Eager only: under ``torch.compile`` and ``torch.func``
    transforms this is :func:`_reduce`."""
    out = _reduce(x, reduction)
    if reduction == "none" or _ops.compiling() or _ops.transformed(x) or not x.numel() or all_finite(out):
        return out
    values = x.detach()
    if bool(torch.isnan(values).any()):
        return out  # (a NaN instance: propagated as it is)
    if bool(torch.isposinf(values).any()) and bool(torch.isneginf(values).any()):
        raise ValueError(f"the {reduction} of the per-instance losses is undefined: some overflow to +inf and others "
                         f"to -inf in {str(x.dtype).replace('torch.', '')} (their exact values leave the float "
                         "range with both signs); expected smaller inputs, or reduction='none'")
    finite = values[torch.isfinite(values)]
    e = math.frexp(float(finite.abs().max()))[1] if finite.numel() else 0
    half = e // 2
    scaled = _reduce(values * 2.0 ** -half * 2.0 ** -(e - half), reduction)  # |.| < 1 per entry (inf stays inf)
    return _WithValue.apply(out, scaled * 2.0 ** half * 2.0 ** (e - half))


def _check_like(y: torch.Tensor, ref: torch.Tensor, name: str, ref_name: str) -> None:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped like {ref_name} {tuple(ref.shape)}; "
                         f"got {type(y).__name__}")
    if y.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}; got {tuple(y.shape)}")
    if not _ops.compiling():  # values are checked inside the custom operators there
        _ops.check_values(y, name)


def cast_fitting(x: torch.Tensor, dtype: torch.dtype, name: str, owner: str) -> torch.Tensor:
    """``x`` (finite, checked before) cast to the compute ``dtype`` of ``owner``; ``ValueError`` naming ``name``
    when the cast overflows (float64 values beyond float32's range would become inf and then inf - inf = NaN, or a
    solver's misleading "theta must be finite")."""
    out = x.to(dtype)
    if out.dtype != x.dtype and not all_finite(out):
        dt = str(dtype).replace("torch.", "")
        big = float(_ops.plain(x).detach().abs().max()) if _ops.transformed(x) else float(x.detach().abs().max())
        raise ValueError(f"{name} does not fit {dt}, the dtype {owner} computes in here (that of its prediction): "
                         f"max |{name}| = {big:.4g}. Expected values within {dt}'s range, or a prediction in a "
                         "wider dtype")
    return out


def _validate(solver, x: torch.Tensor, name: str) -> None:
    """``validate_input`` for plain, functorch-wrapped (values of every vmapped element) and fake tensors."""
    _ops.check_structure(solver, x, name)
    if not _ops.compiling():
        _ops.check_values(x, name)


class LinearizedLoss(torch.autograd.Function):
    """``(x, a, b, loss) -> (value [B], direction [B, *E])`` from ``loss._linearized(x, a, b)`` (storage-backed
    tensors); the gradient is ``dvalue/dx = direction`` (``a``, ``b`` -- targets -- get none).

    Second order: the backward ``grad_value * direction`` keeps its graph in ``grad_value``; ``direction`` is a
    constant, which is exact for piecewise-linear losses (SPO+: zero Hessian almost everywhere). Losses whose
    true Hessian is not zero (Fenchel-Young) set ``loss._second_order_refusal`` to a message: a double backward
    then raises it.
    """

    @staticmethod
    def forward(x, a, b, loss):
        return loss._linearized(x, a, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.loss = inputs[3]
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1], inputs[0])

    @staticmethod
    def backward(ctx, grad_value, _grad_direction):
        direction, x = ctx.saved_tensors
        loss = ctx.loss
        # a NaN/inf dL/dloss propagates to its instance, as in any torch op (no solver call in this backward)
        grad = grad_value.reshape(-1, *([1] * (direction.ndim - 1))) * direction  # [B, 1, ...] * [B, *E]
        message = loss._second_order_refusal
        if message is not None and (torch.is_grad_enabled() or _ops.transformed(grad)):
            grad = _ops.refuse_second_order(grad, x, message)
        return grad, None, None, None

    @staticmethod
    def vmap(info, in_dims, x, a, b, loss):
        v = info.batch_size
        x, a, b = (_ops.fold(_ops.to_front(t, d, v)) for t, d in zip((x, a, b), in_dims[:3], strict=True))
        watch = _ops.RandomnessGuard(info.randomness, loss._generator_for(x.device), x.device, type(loss).__name__)
        value, direction = LinearizedLoss.apply(x, a, b, loss)  # one forward for the V*B instances
        watch.check()
        return (_ops.unfold(value, v), _ops.unfold(direction, v)), (0, 0)


class EagerLinearizedLoss(torch.autograd.Function):
    """:class:`LinearizedLoss` with the classic ``forward(ctx, ...)`` for the eager path (no ``inspect.signature``
    binding per call, which only ``torch.func`` needs). Same forward, same backward."""

    @staticmethod
    def forward(ctx, x, a, b, loss):
        out = LinearizedLoss.forward(x, a, b, loss)
        LinearizedLoss.setup_context(ctx, (x, a, b, loss), out)
        return out

    backward = staticmethod(LinearizedLoss.backward)


def linearized_loss(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None, loss) -> torch.Tensor:
    """``value [B]`` of ``loss._linearized`` with gradient ``direction``: custom operator under ``torch.compile``,
    :class:`LinearizedLoss` under ``torch.func``, :class:`EagerLinearizedLoss` otherwise."""
    if _ops.compiling():
        return torch.ops.discreteopt.linearized_loss(x, a, b, loss._op_id)[0]
    if _ops.transformed(x):
        return LinearizedLoss.apply(x, a, b, loss)[0]
    return EagerLinearizedLoss.apply(x, a, b, loss)[0]


class _Solve(torch.autograd.Function):
    """``maximizer(theta_max)`` as a non-differentiable function usable under ``torch.func`` (vmap: folded)."""

    @staticmethod
    def forward(theta_max, maximizer):
        return maximizer(theta_max)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output)

    @staticmethod
    def backward(ctx, grad):
        return None, None

    @staticmethod
    def vmap(info, in_dims, theta_max, maximizer):
        v = info.batch_size
        return _ops.unfold(_Solve.apply(_ops.fold(_ops.to_front(theta_max, in_dims[0], v)), maximizer), v), 0


def solve_max(maximizer, theta_max: torch.Tensor) -> torch.Tensor:
    """``argmax_y <theta_max, y>`` without gradient; works on functorch-wrapped tensors."""
    if _ops.transformed(theta_max):
        return _Solve.apply(theta_max, maximizer)
    with torch.no_grad():
        return maximizer(theta_max)
