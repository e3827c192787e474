"""Categorical MAP: ``y = argmax_{y in one-hot} <theta, y>``, the one-hot vector of the largest logit.

Ties go to the lowest index (deterministic on every device). Runs natively on the input's device.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import Solver


class Argmax(Solver):
    """One-hot argmax over the last dim: ``theta [B, n] -> y [B, n]`` (``n >= 1``).

    Formula: ``y_b = e_{i*}`` with ``i* = min argmax_i theta_b,i`` -- the MAP state of a categorical distribution
    with logits ``theta_b``, i.e. ``argmax_{y in {e_1..e_n}} <theta_b, y>``. Ties go to the lowest index on every
    device (``torch.argmax`` returns the first maximal index). Exact for every finite input; runs natively on
    ``theta``'s device and dtype (``device_native``: executors never ship it to workers). Shift-invariant: adding
    a constant to a row does not change its answer.

    Takes no arguments. ``theta`` must be a floating tensor ``[B, n]`` with ``n >= 1`` and finite entries
    (``ValueError`` naming ``theta`` otherwise); ``B = 0`` gives an empty result.

    Example::

        >>> import torch
        >>> Argmax().solve(torch.tensor([[0.1, 2.0, 2.0], [3.0, -1.0, 0.0]]))
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
    """

    shift_invariant = True  # every feasible y has the same sum
    sense = "max"
    event_ndim = 1
    theta_layout = "[B, n]"
    device_native = True

    def __init__(self):
        self._spec_kwargs = {}

    def validate(self, theta) -> None:
        super().validate(theta)
        if theta.shape[-1] == 0:
            raise ValueError(f"theta must have shape [B, n] with n >= 1 (one entry per category); got shape "
                             f"{tuple(theta.shape)}")

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        # torch.argmax returns the first maximal index on CPU and CUDA
        idx = theta.argmax(dim=-1, keepdim=True)  # [B, 1]
        return torch.zeros_like(theta).scatter_(-1, idx, 1.0)

    def is_feasible(self, y):
        """Per-instance check that ``y [B, n]`` is one-hot -> bool ``[B]``."""
        y = np.asarray(y)
        return np.all((y == 0) | (y == 1), axis=-1) & (y.sum(-1) == 1)
