"""Straight-through estimator (Bengio, Leonard & Courville, 2013, "Estimating or Propagating Gradients
Through Stochastic Neurons").

Forward: ``y = y*(theta)`` (MAP, ``B`` solver calls). Backward replaces the zero Jacobian of the solver
by the Jacobian of a smooth surrogate ``r``::

    dL/dtheta = J_r(theta)^T dL/dy         (default r = identity: dL/dtheta = dL/dy)

e.g. ``surrogate=lambda t: torch.softmax(t / tau, -1)`` for one-hot solvers. No solver call in backward.
Needs ``y`` and ``theta`` of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import Estimator


class StraightThrough(Estimator):
    """Straight-through gradient through ``surrogate`` (``None`` = identity).

    Args:
        surrogate: callable ``r(theta [B, *E]) -> [B, *Y]`` (same shape as ``y``) whose Jacobian replaces the
            solver's; ``None`` (default) is the identity.

    Shapes: ``theta [B, *E]`` -> ``y [B, 1, *Y]``; backward ``grad_y [B, 1, *Y] -> grad_theta [B, *E]``.
    Formula: ``dL/dtheta = J_r(theta)^T dL/dy``.
    Reference: Bengio, Leonard & Courville, 2013.

    Example::

        >>> import discreteopt as do
        >>> est = StraightThrough(surrogate=lambda t: torch.softmax(t / 0.5, -1))
        >>> y = do.DiscreteLayer(do.solvers.Argmax(), est)(torch.randn(3, 4, requires_grad=True))   # one-hot [3, 4]
    """

    samples = 1

    def __init__(self, surrogate: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if surrogate is not None and not callable(surrogate):
            raise ValueError(f"surrogate must be callable or None; got {type(surrogate).__name__}")
        self.surrogate = surrogate

    def plan(self, theta, generator):
        return theta, None  # [B, *E]

    def finish(self, theta, ys, state):
        return ys.unsqueeze(1), theta  # [B, *Y] -> [B, 1, *Y]

    def backward(self, maximize, theta, ctx, grad_y):
        g = grad_y[:, 0]  # [B, 1, *Y] -> [B, *Y]
        if self.surrogate is None:
            return g
        with torch.enable_grad():
            t = ctx.detach().requires_grad_(True)
            r = self.surrogate(t)
            if r.shape != g.shape:
                raise ValueError(f"surrogate must map theta {tuple(t.shape)} to the shape of y {tuple(g.shape)}; "
                                 f"got {tuple(r.shape)}")
            (grad,) = torch.autograd.grad(r, t, g)
        return grad
