"""Helpers shared by the losses: reduction and argument checks."""

from __future__ import annotations

import torch

from .._validation import check_finite


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")


def _check_like(y: torch.Tensor, ref: torch.Tensor, name: str, ref_name: str) -> None:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped like {ref_name} {tuple(ref.shape)}; "
                         f"got {type(y).__name__}")
    if y.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}; got {tuple(y.shape)}")
    check_finite(y, name)
