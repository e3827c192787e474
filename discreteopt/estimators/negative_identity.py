"""Negative identity backpropagation (Sahoo, Paulus, Vlastelica, Musil, Kuleshov & Martius, TMLR 2023 / ICLR 2023,
"Backpropagation through Combinatorial Algorithms: Identity with Projection Works"; PyEPO's ``negativeIdentity``).

The solver is treated as a negative identity in the backward pass. In the paper's *min* convention with costs
``w`` and ``y(w) = argmin_y <w, y>``::

    forward:   y = y(w)                      (B solver calls, none in backward, no hyperparameter)
    backward:  dL/dw = -dL/dy

In the max convention estimators use (``theta = -w``, ``y*(theta) = argmax_y <theta, y>``) this is the plain
identity ``dL/dtheta = dL/dy``; the layer's sign flip turns it into ``-dL/dy`` for min-sense solvers.

Optional projection (the paper's Sec. "projections"): the solver gets ``P(theta)`` instead of ``theta`` and the
identity gradient is pulled back through ``P``'s Jacobian, ``dL/dtheta = J_P(theta)^T dL/dy``. With
``u = theta - mean(theta)`` (over the event dims of each instance)::

    "mean":         P(theta) = u                   J^T g = g - mean(g)
    "norm":         P(theta) = theta / |theta|     J^T g = (g - p <p, g>) / |theta|,   p = P(theta)
    "standardize":  P(theta) = u / |u|             J^T g = (g_c - p <p, g_c>) / |u|,   g_c = g - mean(g)

The projections remove the directions the solver is invariant to, so the update does not grow the costs
without bound (the paper's "cost collapse" discussion). ``"norm"`` keeps every argmax (positive scaling).
``"mean"`` and ``"standardize"`` keep it only for solvers whose feasible ``y`` all have the same ``sum(y)``
(top-k, one-hot, perfect matchings, the monotone lattice paths of PyEPO's grid): for other solvers they
change the problem -- use them there only knowingly. A row with ``|u| = 0`` (or ``|theta| = 0``) is passed
unscaled and its gradient is not divided. Means and inner products are taken of each instance divided by its
largest ``|entry|`` (exact up to rounding), so finite ``theta`` and ``dL/dy`` anywhere in the float range give a
finite gradient unless the exact one overflows (then ``+-inf``, never NaN).
"""

from __future__ import annotations

import torch

from .base import Estimator

_PROJECTIONS = (None, "mean", "norm", "standardize")


class NegativeIdentity(Estimator):
    """Identity gradient through the solver (negated in cost space), optionally through a projection.

    Args:
        projection: ``None`` (PyEPO's ``negativeIdentity``), ``"mean"``, ``"norm"`` or ``"standardize"``
            (mean then norm, as in the paper's code); see the module docstring.

    Shapes: ``theta [B, *E] -> y [B, 1, *E]``; needs ``y`` shaped like ``theta``.

    Example::

        layer = DiscreteLayer(GraphShortestPath.grid(5, 5), NegativeIdentity())
        loss = (layer(c_hat) - y_true).abs().sum(-1).mean()    # dL/dc_hat = -sign(y - y_true)
    """

    samples = 1

    def __init__(self, projection: str | None = None):
        if projection not in _PROJECTIONS:
            raise ValueError(f"projection must be one of {_PROJECTIONS}; got {projection!r}")
        self.projection = projection

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        """``P(theta)`` per instance ``[B, *E]`` (the identity when ``projection`` is ``None``)."""
        if self.projection is None:
            return theta
        u = _center(theta) if self.projection in ("mean", "standardize") else theta
        if self.projection == "mean":
            return u
        return u / _safe_norm(u)

    def plan(self, theta, generator):
        return self.project(theta), None  # [B, *E]

    def finish(self, theta, ys, state):
        return ys.unsqueeze(1), theta  # [B, *Y] -> [B, 1, *Y]; ctx: theta for the projection's Jacobian

    def backward(self, maximize, theta, ctx, grad_y):
        g = grad_y[:, 0]  # [B, 1, *Y] -> [B, *Y]
        if self.projection is None:
            return g
        if self.projection == "mean":
            return _center(g)
        scale = _max_abs(g)  # [B, 1, ...]: the projection is linear in g, computed on g / scale (|.| <= 1)
        g = g / scale
        u = _center(ctx) if self.projection == "standardize" else ctx  # [B, *E]
        if self.projection == "standardize":
            g = g - g.mean(dim=tuple(range(1, g.ndim)), keepdim=True)  # |g| <= 2: no overflow
        norm = _safe_norm(u)  # [B, 1, ...]
        p = u / norm
        dims = tuple(range(1, g.ndim))
        r = g - p * (p * g).sum(dim=dims, keepdim=True)  # |r| <= 2 |g / scale|
        # r * scale / norm, with the factor formed first: inf only where the exact gradient overflows, 0 stays 0
        return torch.where(r == 0, torch.zeros_like(r), r * (scale / norm))


def _max_abs(x: torch.Tensor) -> torch.Tensor:
    """``max_i |x_i|`` per instance ``[B, 1, ...]``; 1 where it is 0."""
    m = x.abs().amax(dim=tuple(range(1, x.ndim)), keepdim=True)
    return torch.where(m > 0, m, torch.ones_like(m))


def _center(x: torch.Tensor) -> torch.Tensor:
    """``x - mean(x)`` per instance, the mean taken of ``x / max|x|`` (a plain sum overflows near 1.8e308)."""
    m = _max_abs(x)
    unit = x / m
    return (unit - unit.mean(dim=tuple(range(1, x.ndim)), keepdim=True)) * m


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """``|x|`` per instance ``[B, 1, ...]``; 1 where it is 0 (the row is passed unscaled).

    Computed as ``m |x / m|`` with ``m = max |x_i|``, so that neither huge (1e30) nor tiny (1e-30) float32 entries
    overflow or underflow in the squares."""
    dims = tuple(range(1, x.ndim))
    m = x.abs().amax(dim=dims, keepdim=True)  # [B, 1, ...]
    m = torch.where(m > 0, m, torch.ones_like(m))
    norm = m * torch.linalg.vector_norm(x / m, dim=dims, keepdim=True)
    return torch.where(norm > 0, norm, torch.ones_like(norm))
