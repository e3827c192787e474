"""Implicit Maximum Likelihood Estimation (Niepert, Minervini & Franceschi, NeurIPS 2021, "Implicit MLE:
Backpropagating Through Discrete Exponential Family Distributions").

Forward (perturb-and-MAP), for ``s = 1..S``::

    eps_s ~ noise,   y_s = y*(theta + scale * eps_s)              y*(t) = argmax_y <t, y>

Backward, with the per-sample loss gradient ``g_s = dL/dy_s`` and the target distribution
``theta'_s = alpha * theta - beta * lam * g_s`` (default ``alpha = beta = 1``: ``theta - lam * g_s``)::

    dL/dtheta = mean_s ( y*(theta + scale * eps_s) - y*(theta'_s + scale * eps_s) ) / lam

The same noise sample ``eps_s`` perturbs the target, so with ``alpha = 1`` the difference is a finite
difference of the perturbed MAP along ``-g_s``; since ``<theta + eps, y_s> >= <theta + eps, y'_s>`` and
``<theta' + eps, y'_s> >= <theta' + eps, y_s>``, every per-sample estimate satisfies
``<g_s, y_s - y'_s> >= 0`` (it never points uphill for a linear loss).

The division by ``lam`` makes the estimate a finite difference whose scale does not depend on ``lam``.
torch-imle omits it (its gradient grows with ``lam``); ``divide_by_lam=False`` gives that behaviour.
``noise=None`` is the deterministic variant (``eps = 0``; with ``alpha = 1`` it equals
:class:`~discreteopt.estimators.interpolation.Interpolation`). Noise is drawn on ``theta``'s device with the
layer's generator. Output keeps the batch shape ``[B, *Y]`` (never flattened to ``[B*S, ...]``).

Solver calls: ``B*S`` in forward and ``B*S`` in backward, one executor batch each.

How to choose ``lam`` and ``scale``: ``lam`` is a finite-difference step in the units of ``theta`` per unit of
``dL/dy``. If ``lam * |g|`` is much smaller than the gap between the best and the second-best solution's objective,
the target MAP equals the forward MAP and the gradient is zero; if it is much larger, the difference compares
unrelated solutions. Aim for ``lam * typical |g|`` of about one to a few objective gaps (note that a loss averaged
over a batch of ``B`` divides ``g`` by ``B``); :class:`~discreteopt.estimators.aimle.AIMLE` adapts it for you.
``scale`` (the noise temperature) smooths the forward: 1 with Gumbel noise on logits, about the objective gap
otherwise; Sum-of-Gamma noise for k-subsets. Measured (``benchmarks/bench_defaults.py --sweep``: PyEPO's 5x5
shortest path, deg 4, noise 0.5, arc costs of order 1, linear model, regret loss ``<c, y>`` averaged over batches
of 32 so ``|g|`` is about 0.03, Gumbel noise ``scale=1``, 10 samples, 3 seeds), normalised test regret for ``lam`` =
0.5 / 2 / 10 / 50 / 200: 0.140 / 0.107 / 0.091 / 0.084 / 0.077, i.e. best once ``lam * |g|`` reaches a few units.
On the Warcraft 12x12 maps (costs 0.8-9.2) the papers use ``lam = 20``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_positive
from ..noise.base import Noise
from .base import (
    Estimator,
    check_bool,
    check_in_dtype,
    check_noise,
    check_samples,
    check_scale_once,
    check_step,
    mean_samples,
    resolve_noise,
    sample_noise,
    unflatten,
)


class TargetDistribution:
    """I-MLE target ``theta' = alpha * theta - beta * lam * dL/dy`` (torch-imle's ``beta`` is ``beta * lam``).

    Args:
        alpha: finite weight of ``theta`` in the target (default 1: a finite difference along ``-dL/dy``).
        beta: positive weight of the step (default 1).

    Shapes: ``theta [B, 1, *E]`` (broadcast over samples), ``grad [B, S, *E]`` -> ``[B, S, *E]``.
    Reference: Niepert et al., 2021, Sec. 3.2 (perturbation-based implicit differentiation).

    Example::

        >>> est = IMLE(lam=1.0, target=TargetDistribution(alpha=0.5, beta=2.0))   # theta' = theta / 2 - 2 g
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not abs(float(alpha)) < float("inf"):
            raise ValueError(f"alpha must be a finite number; got {alpha!r}")
        self.alpha = float(alpha)
        self.beta = check_positive(beta, "beta")

    def __call__(self, theta: torch.Tensor, grad: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
        """``theta [B, 1, *E]`` (broadcast), ``grad [B, S, *E]``, ``lam`` a number or ``[B, S, 1, ...]``
        -> ``alpha * theta - beta * lam * grad`` ``[B, S, *E]``."""
        return self.perturbed(theta, theta, grad, lam)

    def perturbed(self, theta_eps: torch.Tensor, theta: torch.Tensor, grad: torch.Tensor,
                  lam: float | torch.Tensor) -> torch.Tensor:
        """The perturbed target ``alpha * theta - beta * lam * grad + eps`` from ``theta_eps = theta + eps``
        ``[B, S, *E]`` (the forward's perturbed input) and ``theta [B, 1, *E]``: ``[B, S, *E]``, a fresh tensor."""
        if isinstance(lam, torch.Tensor):
            out = (grad * (-self.beta * lam)).add_(theta_eps)  # [B, S, *E]
        else:
            out = torch.add(theta_eps, grad, alpha=-self.beta * lam)  # [B, S, *E], one fused op
        return out if self.alpha == 1.0 else out.add_(theta, alpha=self.alpha - 1.0)

    def __repr__(self) -> str:
        return f"TargetDistribution(alpha={self.alpha}, beta={self.beta})"


class _Ctx(NamedTuple):
    theta: torch.Tensor  # [B, *E]
    perturbed: torch.Tensor  # theta + eps_s, [B, S, *E] (an expanded view of theta for noise=None)
    y: torch.Tensor  # [B, S, *Y]


class IMLE(Estimator):
    """Implicit MLE: perturb-and-MAP forward, finite difference towards a target distribution backward.

    Args:
        lam: finite-difference step ``> 0`` (default 10; module docstring says how to choose it); a normal float64
            number, and in training a normal number of the compute dtype (``ValueError`` otherwise: ``1 / lam`` or
            ``lam * dL/dy`` would leave the float range).
        samples: ``S >= 1`` perturbed solutions per instance (default 1).
        noise: ``"gumbel"`` (default), ``"normal"``, a :class:`~discreteopt.noise.Noise` (e.g.
            ``SumOfGamma(k)`` for k-subsets) or ``None`` (deterministic, ``eps = 0``).
        target: the :class:`TargetDistribution` (default ``alpha = beta = 1``).
        divide_by_lam: divide the difference by ``lam`` (default; ``False`` is torch-imle's convention).
        scale: noise scale ``> 0`` (default 1): the perturbation is ``scale * eps``, ``eps ~ noise``; with a noise
            whose own ``scale`` differs from 1, ``scale`` must be 1. Needs a noise when ``!= 1``. Same range as
            ``lam`` (in float32, ``[1.2e-38, 3.4e38]``).

    Shapes: ``theta [B, *E]`` -> ``y [B, S, *Y]`` (the layer returns the mean ``[B, *Y]``); backward
    ``grad_y [B, S, *Y] -> grad_theta [B, *E]``.

    Formula: ``dL/dtheta = mean_s (y*(theta + scale eps_s) - y*(alpha theta - beta lam g_s + scale eps_s)) / lam``.
    Reference: Niepert, Minervini & Franceschi, "Implicit MLE", NeurIPS 2021.

    Example::

        >>> import discreteopt as do
        >>> layer = do.DiscreteLayer(do.solvers.GridShortestPath(), IMLE(lam=20.0, samples=10), seed=0)
        >>> costs = torch.rand(2, 12, 12, requires_grad=True) + 0.8
        >>> path = layer(costs)              # [2, 12, 12], mean of 10 perturbed 0/1 paths
        >>> path.sum().backward()
    """

    def __init__(self, lam: float = 10.0, samples: int = 1, noise: Noise | None | str = "gumbel",
                 target: TargetDistribution | None = None, divide_by_lam: bool = True, scale: float = 1.0):
        self.lam = check_step(lam, "lam")
        self.samples = check_samples(samples)
        self.noise = resolve_noise(noise)
        self.scale = check_step(scale, "scale")
        if self.noise is not None:
            check_noise(self.noise, self.samples)
            check_scale_once(self.scale, self.noise)
        elif self.scale != 1.0:
            raise ValueError(f"scale={scale} scales the noise, but noise is None (deterministic): drop scale or "
                             "pass a noise")
        self.target = target if target is not None else TargetDistribution()
        if not isinstance(self.target, TargetDistribution):
            raise ValueError(f"target must be a TargetDistribution; got {type(target).__name__}")
        self.divide_by_lam = check_bool(divide_by_lam, "divide_by_lam")

    def check_dtype(self, dtype):
        """``lam`` and the effective noise scale must be normal numbers of the compute ``dtype``."""
        check_in_dtype(self.lam, "lam", dtype, self, "the target theta - lam * dL/dy and the division by lam "
                       "leave the float range")
        if self.target.beta != 1.0:
            check_in_dtype(self.target.beta * self.lam, "beta * lam", dtype, self, "the target's step "
                           "beta * lam * dL/dy leaves the float range")
        if self.noise is not None:
            check_in_dtype(self.scale * self.noise.scale, "scale", dtype, self,
                           "the perturbation scale * eps overflows or vanishes")

    # ------------------------------------------------------------------ forward
    def plan(self, theta, generator):
        b, e = theta.shape[0], theta.shape[1:]
        if self.noise is None:
            perturbed = theta.unsqueeze(1).expand(b, self.samples, *e)  # [B, S, *E]
        else:
            # theta + scale eps in the noise buffer: only that is needed later (the target reuses eps)
            eps = sample_noise(self.noise, theta, self.samples, generator)  # [B, S, *E]
            if self.scale != 1.0:
                eps = eps.mul_(self.scale)
            perturbed = eps.add_(theta.unsqueeze(1))  # [B, S, *E]
        return perturbed.reshape(-1, *e), perturbed  # [B*S, *E]

    def finish(self, theta, ys, perturbed):
        y = unflatten(ys, theta.shape[0], self.samples)  # [B*S, *Y] -> [B, S, *Y]
        return y, _Ctx(theta, perturbed, y)

    # ------------------------------------------------------------------ backward
    def step_size(self, theta: torch.Tensor, grad_y: torch.Tensor) -> float | torch.Tensor:
        """Finite-difference step: ``lam`` (subclasses may return a per-sample ``[B, S, 1, ...]`` tensor)."""
        return self.lam

    def targets(self, ctx: _Ctx, grad_y: torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
        """Perturbed targets ``alpha * theta - beta * step * g_s + eps_s``: ``[B, S, *E]``."""
        return self.target.perturbed(ctx.perturbed, ctx.theta.unsqueeze(1), grad_y, step)

    def backward(self, maximize, theta, ctx, grad_y):
        step = self.step_size(ctx.theta, grad_y)
        target = self.targets(ctx, grad_y, step)  # [B, S, *E]
        y_target = unflatten(maximize(target.reshape(-1, *theta.shape[1:])), *grad_y.shape[:2])  # [B, S, *Y]
        diff = ctx.y - y_target  # [B, S, *Y]
        self._observe(diff)
        if self.divide_by_lam:
            diff = diff.div_(step)
        return mean_samples(diff)  # [B, *E]

    def _observe(self, diff: torch.Tensor) -> None:
        """Hook for adaptive subclasses (AIMLE): sees the per-sample differences ``[B, S, *Y]``."""
