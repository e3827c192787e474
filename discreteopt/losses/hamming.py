"""Hamming loss."""

from __future__ import annotations

import torch
from torch import nn

from .. import _ops
from .._validation import check_real
from ._common import _check_like, _reduce


def _check_targets(y_true: torch.Tensor) -> None:
    """``ValueError`` unless ``y_true`` is real with values in ``[0, 1]`` (every vmapped element under torch.func)."""
    check_real(y_true, "y_true", "0/1 targets: bool, integer or floating")
    if y_true.dtype == torch.bool or _ops.compiling():  # values are not read inside a compiled graph
        return
    if _ops.transformed(y_true):
        with torch._C._DisableFuncTorch():
            lo, hi = torch.aminmax(_ops.plain(y_true).detach().resolve_neg())
    else:
        lo, hi = torch.aminmax(y_true.detach().resolve_neg())
    if not (float(lo) >= 0 and float(hi) <= 1):
        raise ValueError(f"y_true must hold 0/1 targets (or probabilities in [0, 1]); got values in "
                         f"[{float(lo):.6g}, {float(hi):.6g}]")


class HammingLoss(nn.Module):
    """Normalised Hamming distance ``mean_i [ y_i (1 - t_i) + (1 - y_i) t_i ]`` per instance.

    Equals the fraction of differing entries for 0/1 vectors and is linear in ``y``, so it is
    differentiable for the relaxed outputs of a layer (gradient ``(1 - 2 t) / n`` per instance, ``n`` entries).
    The usual loss for I-MLE / blackbox layers (Vlastelica et al., ICLR 2020; Niepert et al., NeurIPS 2021).
    Soft targets ``t`` in ``[0, 1]`` give the expected Hamming distance to a target drawn entrywise from
    ``Bernoulli(t)``.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per instance ``[B]``).

    Shapes: ``y [B, *Y]`` (a layer's output: float16, bfloat16, float32 or float64, finite), ``y_true [B, *Y]``
    (0/1 targets or probabilities in ``[0, 1]``; bool, integer or floating) -> scalar (or ``[B]``), in ``y``'s
    dtype. ``B >= 1`` and a non-empty event: ``ValueError`` otherwise, and for any other dtype, a non-finite ``y``
    or a target outside ``[0, 1]``. Means are formed as sums of ``term / n`` (and ``loss_i / B``), so they never
    overflow where the exact mean fits the dtype. Plain tensor operations: works under ``torch.func``,
    ``torch.compile`` (values are not checked inside a compiled graph) and to any order of differentiation.

    Example::

        >>> import torch, discreteopt as do
        >>> layer = do.DiscreteLayer(do.solvers.TopK(2), do.estimators.IMLE(lam=1.0), seed=0)
        >>> theta = torch.randn(4, 6, requires_grad=True)
        >>> target = do.solvers.TopK(2).solve(torch.randn(4, 6))
        >>> HammingLoss()(layer(theta), target).backward()
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        _reduce(torch.zeros(1), reduction)
        self.reduction = reduction

    def forward(self, y: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.ndim < 2:
            raise ValueError(f"y must be a tensor [B, *Y]; got {getattr(y, 'shape', type(y).__name__)}")
        if y.dtype not in _ops.SUPPORTED_DTYPES:
            raise ValueError(f"y must have a floating dtype (float16, bfloat16, float32 or float64: a layer's "
                             f"output); got {y.dtype}")
        if y.shape[0] == 0 or y[0].numel() == 0:
            raise ValueError(f"y must have a non-empty batch and a non-empty event [B, *Y]; got shape "
                             f"{tuple(y.shape)}")
        _check_like(y_true, y, "y_true", "y")
        _check_targets(y_true)
        if not _ops.compiling():
            _ops.check_values(y, "y")
        t = y_true.to(y.dtype)
        per = (y * (1 - t) + (1 - y) * t).flatten(1).div(y[0].numel()).sum(1)  # [B]: mean over the n entries
        if self.reduction == "mean":
            return per.div(per.shape[0]).sum()
        return _reduce(per, self.reduction)
