"""Hamming loss."""

from __future__ import annotations

import torch
from torch import nn

from ._common import _check_like, _reduce


class HammingLoss(nn.Module):
    """Normalised Hamming distance ``mean_i [ y_i (1 - t_i) + (1 - y_i) t_i ]`` per instance.

    Equals the fraction of differing entries for 0/1 vectors and is linear in ``y``, so it is
    differentiable for the relaxed outputs of a layer (gradient ``(1 - 2 t) / n`` per instance, ``n`` entries).
    The usual loss for I-MLE / blackbox layers (Vlastelica et al., ICLR 2020; Niepert et al., NeurIPS 2021).

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per instance ``[B]``).

    Shapes: ``y [B, *Y]`` (a layer's output, any float dtype), ``y_true [B, *Y]`` (0/1 targets, finite) -> scalar
    (or ``[B]``). Plain tensor operations: works under ``torch.func``, ``torch.compile`` (``y_true``'s values are not
    checked inside a compiled graph) and to any order of differentiation.

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
        _check_like(y_true, y, "y_true", "y")
        t = y_true.to(y.dtype)
        return _reduce((y * (1 - t) + (1 - y) * t).flatten(1).mean(1), self.reduction)
