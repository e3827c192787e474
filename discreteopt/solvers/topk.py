"""Top-k selection: ``y = argmax_{y in {0,1}^n, sum(y) = k} <theta, y>``.

The optimum is the indicator of the k largest entries of each row. Ties are broken deterministically in
favour of the lower index (a stable descending sort), on every device, so repeated calls and CPU/GPU agree.
Runs natively on the input's device: no host round trip.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import check_int_in_range
from .base import Solver


class TopK(Solver):
    """k-subset selection over the last dim: ``theta [B, n] -> y [B, n]`` with ``y.sum(-1) == k``.

    Formula: ``y_b = argmax_{y in {0,1}^n, sum(y) = k} <theta_b, y>``, the indicator of the ``k`` largest entries
    of ``theta_b`` (the MAP state of a k-subset distribution; I-MLE's standard example, Niepert et al. 2021).
    Ties go to the lower index (stable descending sort) on every device. Exact for every finite input; runs
    natively on ``theta``'s device and dtype (``device_native``). Shift-invariant.

    Args:
        k: subset size, an integer ``>= 1`` (``bool`` refused); each call needs ``n >= k``.

    ``theta`` must be a floating tensor ``[B, n]`` with finite entries and ``n >= k`` (``ValueError`` naming the
    argument otherwise).

    Example::

        >>> import torch
        >>> TopK(2).solve(torch.tensor([[0.1, 3.0, 2.0, 2.0]]))
        tensor([[0., 1., 1., 0.]])
    """

    shift_invariant = True  # every feasible y has the same sum
    sense = "max"
    event_ndim = 1
    theta_layout = "[B, n]"
    device_native = True

    def __init__(self, k: int):
        check_int_in_range(k, "k", 1, 2**62)
        self.k = int(k)
        self._spec_kwargs = {"k": self.k}

    def validate(self, theta) -> None:
        super().validate(theta)
        n = theta.shape[-1]
        if self.k > n:
            raise ValueError(f"k must be in [1, n]: theta has shape [B, n] = {tuple(theta.shape)} (n={n}) but "
                             f"k={self.k}")

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        order = torch.sort(theta, dim=-1, descending=True, stable=True).indices[..., : self.k]  # [B, k]
        y = torch.zeros_like(theta)
        return y.scatter_(-1, order, 1.0)

    def is_feasible(self, y):
        """Per-instance check that ``y [B, n]`` is 0/1 with exactly ``k`` ones -> bool ``[B]``."""
        y = np.asarray(y)
        return np.all((y == 0) | (y == 1), axis=-1) & (y.sum(-1) == self.k)
