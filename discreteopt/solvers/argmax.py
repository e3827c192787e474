"""Categorical MAP: ``y = argmax_{y in one-hot} <theta, y>``, the one-hot vector of the largest logit.

Ties go to the lowest index (deterministic on every device). Runs natively on the input's device.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import Solver


class Argmax(Solver):
    """One-hot argmax over the last dim: ``theta [B, n] -> y [B, n]``."""

    shift_invariant = True  # every feasible y has the same sum
    sense = "max"
    event_ndim = 1
    theta_layout = "[B, n]"
    device_native = True

    def __init__(self):
        self._spec_kwargs = {}

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        # torch.argmax returns the first maximal index on CPU and CUDA
        idx = theta.argmax(dim=-1, keepdim=True)  # [B, 1]
        return torch.zeros_like(theta).scatter_(-1, idx, 1.0)

    def is_feasible(self, y):
        y = np.asarray(y)
        return np.all((y == 0) | (y == 1), axis=-1) & (y.sum(-1) == 1)
