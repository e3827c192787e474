"""Losses for learning through solvers: Fenchel-Young, SPO+, Hamming, regret.

Conventions: every loss takes the solver's *natural* arguments (costs for ``sense == "min"``, scores
for ``sense == "max"``) and returns a loss to minimise. ``reduction`` is ``"mean"`` (default), ``"sum"``
or ``"none"`` (per instance ``[B]``).
"""

from __future__ import annotations

import torch
from torch import nn

from ._validation import check_finite
from .estimators.base import inner
from .estimators.guards import Guard
from .estimators.perturbed import PerturbedOptimizer
from .executors.base import Executor
from .layers import DiscreteLayer, Maximizer, validate_input
from .solvers.base import Solver


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


class SPOPlus(nn.Module):
    """SPO+ loss (Elmachtoub & Grigas, 2022, "Smart 'Predict, then Optimize'", Management Science).

    Stated for minimisation over costs ``c`` with ``y*(c) = argmin_y <c, y>`` and ``z*(c) = <c, y*(c)>``::

        l(c_hat, c) = max_y <c - 2 c_hat, y> + 2 <c_hat, y*(c)> - z*(c)     (>= 0)
        subgradient  = 2 ( y*(c) - y*(2 c_hat - c) )                        w.r.t. c_hat

    Max-sense solvers (scores ``r``) use ``c = -r``; the loss is then differentiated w.r.t. the predicted
    scores by autograd. ``y_true = y*(c)`` can be passed to save solver calls; otherwise it is solved together
    with ``y*(2 c_hat - c)`` in one executor call (``2B`` instances). The guard (default clamp) applies to
    ``2 c_hat - c`` for solvers with ``min_cost``; the loss is then computed for the solution of the guarded
    problem.
    """

    def __init__(self, solver: Solver, executor: Executor | None = None, guard: Guard | None = None,
                 reduction: str = "mean"):
        super().__init__()
        self.maximizer = Maximizer(solver, executor, guard)
        self.solver = solver
        _reduce(torch.zeros(1), reduction)
        self.reduction = reduction

    @property
    def stats(self):
        return self.maximizer.stats

    def forward(self, pred: torch.Tensor, true: torch.Tensor, y_true: torch.Tensor | None = None) -> torch.Tensor:
        validate_input(self.solver, pred, "pred")
        _check_like(true, pred, "true", "pred")
        true = true.to(pred.dtype)
        # min-convention costs c_hat = sign * pred, c = sign * true; the maximiser of
        # d = c - 2 c_hat solves argmin <2 c_hat - c, y>, and with y* = y*(c):
        #   l = <c - 2 c_hat, y~> + 2 <c_hat, y*> - <c, y*> = <d, y~ - y*>
        sign = 1.0 if self.solver.sense == "min" else -1.0
        d_max = torch.add(true, pred.detach(), alpha=-2.0)  # [B, *E]: d for min sense, -d for max sense
        if sign < 0:
            d_max = d_max.neg_()
        if y_true is None:
            c_max = torch.neg(true) if self.solver.sense == "min" else true  # -c: y*(c) = argmax <-c, y>
            ys = self.maximizer(torch.cat([d_max, c_max]))  # [2B, *Y], one executor call
            y_tilde, y_true = ys[: pred.shape[0]], ys[pred.shape[0]:]
        else:
            _check_like(y_true, pred, "y_true", "pred")
            y_tilde = self.maximizer(d_max)  # [B, *Y]
            y_true = y_true.to(pred.dtype)
        loss = _SPOPlusFunction.apply(pred, d_max, y_tilde - y_true, -2.0 * sign)  # [B]
        return _reduce(loss, self.reduction)


class _SPOPlusFunction(torch.autograd.Function):
    """``l = <d, delta>`` per instance with ``delta = y~ - y*`` held fixed; ``dl/dpred = coef * delta``.

    ``d = c - 2 c_hat`` moves by ``-2`` per unit of ``c_hat``: ``coef = -2`` for costs (min sense) and ``+2``
    for scores (``c_hat = -pred``). The true costs get no gradient. One autograd node instead of four.
    """

    @staticmethod
    def forward(ctx, pred, d, delta, coef):  # noqa: ARG004 -- pred is the autograd input
        ctx.save_for_backward(delta)
        ctx.coef = coef
        return inner(d, delta, d.ndim - 1)  # [B]

    @staticmethod
    def backward(ctx, grad_loss):
        (delta,) = ctx.saved_tensors
        g = (grad_loss * ctx.coef).reshape(-1, *([1] * (delta.ndim - 1)))  # [B] -> [B, 1, ...]
        return g * delta, None, None, None


class HammingLoss(nn.Module):
    """Normalised Hamming distance ``mean_i [ y_i (1 - t_i) + (1 - y_i) t_i ]`` per instance.

    Equals the fraction of differing entries for 0/1 vectors and is linear in ``y``, so it is
    differentiable for the relaxed outputs of a layer (gradient ``1 - 2 t``).
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


def regret(solver: Solver, theta_true: torch.Tensor, y_hat: torch.Tensor, y_opt: torch.Tensor | None = None,
           normalized: bool = False, executor: Executor | None = None, reduction: str = "none") -> torch.Tensor:
    """Regret of decisions ``y_hat`` under the true natural arguments ``theta_true`` (>= 0)::

        min sense:  <c, y_hat> - <c, y*(c)>            max sense:  <r, y*(r)> - <r, y_hat>

    ``normalized=True`` divides by ``|objective of y*|`` per instance (``reduction="none"``) or, as PyEPO does,
    the summed regret by the summed ``|objective of y*|`` (``"mean"`` and ``"sum"``).
    ``y_opt`` (the optimal solutions) is solved when not given. Per instance ``[B]`` by default.
    """
    validate_input(solver, theta_true, "theta_true")
    _check_like(y_hat, theta_true, "y_hat", "theta_true")
    ndim = theta_true.ndim - 1
    with torch.no_grad():
        if y_opt is None:
            y_opt = Maximizer(solver, executor)(-theta_true if solver.sense == "min" else theta_true)
        else:
            _check_like(y_opt, theta_true, "y_opt", "theta_true")
    t = theta_true.to(y_hat.dtype)
    opt = inner(t, y_opt.to(y_hat.dtype), ndim)  # [B]
    gap = inner(t, y_hat, ndim) - opt  # [B]
    r = gap if solver.sense == "min" else -gap
    tiny = torch.finfo(r.dtype).tiny
    if normalized and reduction == "none":
        return r / opt.abs().clamp_min(tiny)
    if normalized:
        _reduce(r, reduction)
        return r.sum() / opt.abs().sum().clamp_min(tiny)
    return _reduce(r, reduction)
