"""Perturbed Fenchel-Young loss."""

from __future__ import annotations

import torch
from torch import nn

from ..estimators.base import inner
from ..estimators.perturbed import PerturbedOptimizer
from ..layers import DiscreteLayer
from ..maximizer import validate_input
from ..solvers.base import Solver
from ._common import _check_like, _reduce


class FenchelYoungLoss(nn.Module):
    """Perturbed Fenchel-Young loss (Berthet et al., 2020, Sec. 4; InferOpt.jl's ``FenchelYoungLoss``).

    In the max convention, with ``F(theta) = E[ max_y <theta_Z, y> ]`` and ``theta_Z = theta + sigma Z``
    (or ``theta * exp(sigma Z - sigma^2/2)`` for a multiplicative perturbation)::

        L(theta; y_true) = F(theta) - <theta, y_true>        (+ Omega(y_true), constant, omitted)
        grad_theta L     = E[ y*(theta + sigma Z) ] - y_true  (additive)
                         = E[ exp(sigma Z - sigma^2/2) * y*(theta_Z) ] - y_true   (multiplicative)

    Estimated with the layer's ``S`` samples in one executor call; the value estimate
    ``mean_s <theta_Z_s, y_s> - <theta, y_true>`` is differentiated by autograd with the solutions
    held fixed (Danskin), which gives exactly the gradient above. For min-sense solvers ``theta = -costs``.

    ``FenchelYoungLoss(layer)`` uses ``layer``'s solver, :class:`PerturbedOptimizer`, guard, executor and
    generator; ``FenchelYoungLoss(solver, sigma=..., samples=..., noise=...)`` builds that layer.
    """

    def __init__(self, layer_or_solver: DiscreteLayer | Solver, sigma: float = 1.0, samples: int = 10,
                 noise="normal", multiplicative: bool = False, reduction: str = "mean", **layer_kwargs):
        super().__init__()
        if isinstance(layer_or_solver, Solver):
            layer_or_solver = DiscreteLayer(
                layer_or_solver, PerturbedOptimizer(sigma, samples, noise, multiplicative), **layer_kwargs)
        if not isinstance(layer_or_solver, DiscreteLayer):
            raise ValueError(f"layer_or_solver must be a DiscreteLayer or a Solver; got {type(layer_or_solver).__name__}")
        if not isinstance(layer_or_solver.estimator, PerturbedOptimizer):
            raise ValueError("FenchelYoungLoss needs a layer whose estimator is a PerturbedOptimizer; "
                             f"got {type(layer_or_solver.estimator).__name__}")
        _reduce(torch.zeros(1), reduction)
        self.layer = layer_or_solver
        self.reduction = reduction

    def forward(self, theta: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        layer, est = self.layer, self.layer.estimator
        validate_input(layer.solver, theta, "theta")
        _check_like(y_true, theta, "y_true", "theta")
        sign = -1.0 if layer.solver.sense == "min" else 1.0
        ndim = theta.ndim - 1
        detached = theta.detach()
        theta_max = torch.neg(detached) if sign < 0 else detached  # [B, *E], no graph
        z = est.sample(theta_max, layer.generator_for(theta.device))  # [B, S, *E]
        factor = est.factor(z)  # [B, S, *E] (multiplicative) or None
        perturbed = theta_max.unsqueeze(1) * factor if factor is not None else \
            torch.add(theta_max.unsqueeze(1), z, alpha=est.sigma)  # [B, S, *E]
        y = layer.maximizer(perturbed.reshape(-1, *theta.shape[1:]))  # [B*S, *Y]
        y = y.reshape(perturbed.shape)  # [B*S, *Y] -> [B, S, *Y]
        # mean_s <theta_Z_s, y_s> = <theta, ybar> + c with the solutions held fixed (Danskin):
        #   additive:        ybar = mean_s y_s,              c = sigma * mean_s <Z_s, y_s>
        #   multiplicative:  ybar = mean_s factor_s * y_s,   c = 0
        if factor is None:
            ybar = y.mean(dim=1)  # [B, *Y]
            const = est.sigma * inner(z, y, ndim).mean(dim=1)  # [B]
        else:
            ybar = (factor * y).mean(dim=1)  # [B, *Y]
            const = 0.0
        direction = (ybar - y_true.to(theta.dtype)).mul_(sign)  # [B, *E]: gradient w.r.t. theta
        loss = inner(theta, direction, ndim) + const  # [B]
        return _reduce(loss, self.reduction)
