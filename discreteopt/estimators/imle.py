"""Implicit Maximum Likelihood Estimation (Niepert, Minervini & Franceschi, NeurIPS 2021).

Forward (perturb-and-MAP), for ``s = 1..S``::

    eps_s ~ noise,   y_s = y*(theta + eps_s)              y*(t) = argmax_y <t, y>

Backward, with the per-sample loss gradient ``g_s = dL/dy_s`` and a target distribution
``theta'_s = alpha * theta - beta * lam * g_s`` (default ``alpha = beta = 1``: ``theta - lam * g_s``)::

    dL/dtheta = mean_s ( y*(theta + eps_s) - y*(theta'_s + eps_s) ) / lam

The same noise sample is reused for the target. The division by ``lam`` makes the estimate a finite
difference whose scale does not depend on ``lam`` (torch-imle omits it; ``divide_by_lam=False`` restores
that behaviour, where ``lam`` then also scales the gradient). ``noise=None`` gives the deterministic
variant (``eps = 0``). Solver calls: ``B*S`` in forward, ``B*S`` in backward, one batch each.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_positive
from ..noise.base import Noise
from .base import Estimator, check_samples, perturb, resolve_noise, sample_noise, unflatten


class TargetDistribution:
    """I-MLE target ``theta' = alpha * theta - beta * lam * dL/dy`` (torch-imle's ``beta`` is ``beta * lam``)."""

    def __init__(self, alpha: float = 1.0, beta: float = 1.0):
        if not isinstance(alpha, (int, float)) or not torch.isfinite(torch.tensor(float(alpha))):
            raise ValueError(f"alpha must be a finite number; got {alpha!r}")
        self.alpha = float(alpha)
        self.beta = check_positive(beta, "beta")

    def __call__(self, theta: torch.Tensor, grad: torch.Tensor, lam: float) -> torch.Tensor:
        """``theta [B, 1, *E]`` (broadcast), ``grad [B, S, *E]`` -> ``[B, S, *E]``."""
        return self.alpha * theta - (self.beta * lam) * grad

    def __repr__(self) -> str:
        return f"TargetDistribution(alpha={self.alpha}, beta={self.beta})"


class _Ctx(NamedTuple):
    theta: torch.Tensor  # [B, *E]
    eps: torch.Tensor | None  # [B, S, *E]
    y: torch.Tensor  # [B, S, *Y]


class IMLE(Estimator):
    """I-MLE with ``lam`` (finite-difference step), ``samples`` (S), ``noise`` and ``target``."""

    def __init__(self, lam: float = 10.0, samples: int = 1, noise: Noise | None | str = "gumbel",
                 target: TargetDistribution | None = None, divide_by_lam: bool = True):
        self.lam = check_positive(lam, "lam")
        self.samples = check_samples(samples)
        self.noise = resolve_noise(noise)
        self.target = target if target is not None else TargetDistribution()
        if not isinstance(self.target, TargetDistribution):
            raise ValueError(f"target must be a TargetDistribution; got {type(target).__name__}")
        self.divide_by_lam = bool(divide_by_lam)

    # forward
    def plan(self, theta, generator):
        if self.noise is None:
            eps = torch.zeros((theta.shape[0], self.samples, *theta.shape[1:]), device=theta.device,
                              dtype=theta.dtype)  # [B, S, *E]
        else:
            eps = sample_noise(self.noise, theta, self.samples, generator)  # [B, S, *E]
        return perturb(theta, eps), eps  # [B*S, *E]

    def finish(self, theta, ys, eps):
        y = unflatten(ys, theta.shape[0], self.samples)  # [B*S, *Y] -> [B, S, *Y]
        return y, _Ctx(theta, eps, y)

    # backward
    def _fd_step(self) -> float:
        return self.lam

    def backward(self, maximize, theta, ctx, grad_y):
        lam = self._fd_step()
        target = self.target(ctx.theta.unsqueeze(1), grad_y, lam) + ctx.eps  # [B, S, *E]
        y_target = unflatten(maximize(target.reshape(-1, *theta.shape[1:])), *grad_y.shape[:2])  # [B, S, *Y]
        diff = ctx.y - y_target  # [B, S, *Y]
        self._observe(diff)
        grad = diff.mean(dim=1)  # [B, *E]
        return grad / lam if self.divide_by_lam else grad

    def _observe(self, diff: torch.Tensor) -> None:
        """Hook for adaptive subclasses (AIMLE)."""
