"""Adaptive I-MLE (Minervini, Franceschi & Niepert, AAAI 2023, "Adaptive Perturbation-Based Gradient
Estimation for Discrete Latent Variable Models").

Same forward as :class:`~discreteopt.estimators.imle.IMLE`. The finite-difference step ``lam`` is adapted
online so that the gradient is neither almost always zero (``lam`` too small) nor a coarse difference of
unrelated solutions (``lam`` too large). After each backward pass::

    n_t = mean over instances and samples of #{ i : (y_s - y'_s)_i != 0 }   (non-zero gradient entries)
    m_t = (1 - momentum) * m_{t-1} + momentum * n_t                          (running count)
    lam_{t+1} = clip( lam_t * exp( eta * (target - m_t) / target ), lam_min, lam_max )

so ``lam`` grows while the running count is below ``target`` and shrinks above it.

``two_sided=True`` uses central differences (the paper's symmetric perturbation)::

    dL/dtheta = mean_s ( y*(theta + eps_s + lam g_s) - y*(theta + eps_s - lam g_s) ) / (2 lam)

(``2*B*S`` backward solves in one batch) instead of ``(y*(theta + eps_s) - y*(theta + eps_s - lam g_s)) / lam``.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_positive
from .imle import IMLE, TargetDistribution


class AIMLE(IMLE):
    """I-MLE with ``lam`` adapted to a ``target`` number of non-zero gradient entries per sample."""

    def __init__(self, target: float = 1.0, samples: int = 1, noise="gumbel", initial_lam: float = 1.0,
                 eta: float = 0.1, momentum: float = 0.1, two_sided: bool = False,
                 lam_min: float = 1e-3, lam_max: float = 1e3, divide_by_lam: bool = True,
                 target_distribution: TargetDistribution | None = None):
        super().__init__(lam=initial_lam, samples=samples, noise=noise, target=target_distribution,
                         divide_by_lam=divide_by_lam)
        self.target_nonzero = check_positive(target, "target")
        self.eta = check_positive(eta, "eta")
        if not (isinstance(momentum, (int, float)) and 0 < momentum <= 1):
            raise ValueError(f"momentum must be in (0, 1]; got {momentum!r}")
        self.momentum = float(momentum)
        self.lam_min = check_positive(lam_min, "lam_min")
        self.lam_max = check_positive(lam_max, "lam_max")
        if not self.lam_min <= self.lam <= self.lam_max:
            raise ValueError(f"initial_lam must be in [lam_min, lam_max] = [{lam_min}, {lam_max}]; got {initial_lam}")
        self.two_sided = bool(two_sided)
        self.running_nonzero: float | None = None
        self.lam_history: list[float] = []

    def backward(self, maximize, theta, ctx, grad_y):
        if not self.two_sided:
            return super().backward(maximize, theta, ctx, grad_y)
        lam = self.lam
        step = (self.target.beta * lam) * grad_y  # [B, S, *E]
        both = torch.stack([self.target.alpha * ctx.theta.unsqueeze(1) + ctx.eps + step,
                            self.target.alpha * ctx.theta.unsqueeze(1) + ctx.eps - step])  # [2, B, S, *E]
        ys = maximize(both.reshape(-1, *theta.shape[1:]))  # [2*B*S, *Y]
        ys = ys.reshape(2, *grad_y.shape[:2], *ys.shape[1:])  # [2, B, S, *Y]
        diff = ys[0] - ys[1]  # [B, S, *Y]
        self._observe(diff)
        grad = diff.mean(dim=1) / 2.0  # [B, *E]
        return grad / lam if self.divide_by_lam else grad

    def _observe(self, diff):
        nonzero = float((diff != 0).flatten(2).sum(-1).to(torch.float64).mean())  # mean over [B, S]
        m = nonzero if self.running_nonzero is None else \
            (1 - self.momentum) * self.running_nonzero + self.momentum * nonzero
        self.running_nonzero = m
        factor = math.exp(self.eta * (self.target_nonzero - m) / self.target_nonzero)
        self.lam = min(max(self.lam * factor, self.lam_min), self.lam_max)
        self.lam_history.append(self.lam)


__all__ = ["AIMLE"]
