"""Blackbox differentiation of combinatorial solvers (Vlastelica, Paulus, Musil, Martius & Rolinek,
ICLR 2020, "Differentiation of Blackbox Combinatorial Solvers").

The gradient of a piecewise-linear interpolation of ``L(y*(w))``. In the paper's *min* convention with
costs ``w`` and ``y(w) = argmin_y <w, y>``::

    w' = w + lam * dL/dy,     dL/dw = -( y(w) - y(w') ) / lam

In the max convention used by estimators (``theta = -w``) this reads
``theta' = theta - lam * dL/dy`` and ``dL/dtheta = ( y*(theta) - y*(theta') ) / lam``; the layer's sign
flip turns it back into the formula above. For solvers that need non-negative costs and have no exact guard
(Dijkstra on a cyclic graph, the Warcraft grid) the layer's default guard
(:class:`~discreteopt.estimators.guards.Auto`) makes ``w' = max(w + lam * dL/dy, min_cost)`` as in the paper, and
says so (a one-time warning and counters in ``layer.stats``); on acyclic graphs (PyEPO's grid) ``w'`` is solved
exactly whatever its sign. Deterministic: forward ``B`` solver calls, backward ``B``.

Choosing ``lam``: as I-MLE's step (:mod:`discreteopt.estimators.imle`); the paper uses ``lam = 20`` on Warcraft
(costs 0.8-9.2); PyEPO's 5x5 shortest path works with ``lam = 10``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .base import Estimator, check_in_dtype, check_step


class _Ctx(NamedTuple):
    theta: torch.Tensor  # [B, *E]
    y: torch.Tensor  # [B, 1, *Y]


class Interpolation(Estimator):
    """Blackbox differentiation (DBB) with interpolation strength ``lam``.

    Args:
        lam: interpolation strength ``> 0`` (default 20, the paper's Warcraft value).

    Shapes: ``theta [B, *E]`` -> ``y [B, 1, *Y]`` (the layer returns ``[B, *Y]``); backward
    ``grad_y [B, 1, *Y] -> grad_theta [B, *E]``.

    Formula (max convention): ``dL/dtheta = (y*(theta) - y*(theta - lam dL/dy)) / lam``.
    Reference: Vlastelica et al., "Differentiation of Blackbox Combinatorial Solvers", ICLR 2020.

    Example::

        >>> import discreteopt as do
        >>> layer = do.DiscreteLayer(do.solvers.GridShortestPath(), Interpolation(lam=20.0))
        >>> costs = torch.rand(2, 12, 12, requires_grad=True) + 0.8
        >>> layer(costs).sum().backward()          # costs.grad: [2, 12, 12]
    """

    samples = 1

    def __init__(self, lam: float = 20.0):
        self.lam = check_step(lam, "lam")

    def check_dtype(self, dtype):
        """``lam`` must be a normal number of the compute ``dtype`` (the target and the division by ``lam``)."""
        check_in_dtype(self.lam, "lam", dtype, self, "the target w + lam * dL/dy and the division by lam leave the "
                       "float range")

    def plan(self, theta, generator):
        return theta, None  # [B, *E]

    def finish(self, theta, ys, state):
        y = ys.unsqueeze(1)  # [B, *Y] -> [B, 1, *Y]
        return y, _Ctx(theta, y)

    def backward(self, maximize, theta, ctx, grad_y):
        g = grad_y[:, 0]  # [B, 1, *Y] -> [B, *Y]
        y_lam = maximize(ctx.theta - self.lam * g)  # [B, *Y]
        return (ctx.y[:, 0] - y_lam) / self.lam
