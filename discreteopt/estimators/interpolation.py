"""Blackbox differentiation of combinatorial solvers (Vlastelica, Paulus, Musil, Martius & Rolinek,
ICLR 2020, "Differentiation of Blackbox Combinatorial Solvers").

The gradient of a piecewise-linear interpolation of ``L(y*(w))``. In the paper's *min* convention with
costs ``w`` and ``y(w) = argmin_y <w, y>``::

    w' = w + lam * dL/dy,     dL/dw = -( y(w) - y(w') ) / lam

In the max convention used by estimators (``theta = -w``) this reads
``theta' = theta - lam * dL/dy`` and ``dL/dtheta = ( y*(theta) - y*(theta') ) / lam``; the layer's sign
flip turns it back into the formula above. For solvers that need non-negative costs the layer's guard
(default :class:`~discreteopt.estimators.guards.Clamp`) makes ``w' = max(w + lam * dL/dy, min_cost)`` as in
the paper. Deterministic: forward ``B`` solver calls, backward ``B``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_positive
from .base import Estimator


class _Ctx(NamedTuple):
    theta: torch.Tensor  # [B, *E]
    y: torch.Tensor  # [B, 1, *Y]


class Interpolation(Estimator):
    """Blackbox differentiation with interpolation strength ``lam``."""

    samples = 1

    def __init__(self, lam: float = 20.0):
        self.lam = check_positive(lam, "lam")

    def plan(self, theta, generator):
        return theta, None  # [B, *E]

    def finish(self, theta, ys, state):
        y = ys.unsqueeze(1)  # [B, *Y] -> [B, 1, *Y]
        return y, _Ctx(theta, y)

    def backward(self, maximize, theta, ctx, grad_y):
        g = grad_y[:, 0]  # [B, 1, *Y] -> [B, *Y]
        y_lam = maximize(ctx.theta - self.lam * g)  # [B, *Y]
        return (ctx.y[:, 0] - y_lam) / self.lam
