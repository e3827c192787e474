"""Perturbed optimizers (Berthet, Blondel, Teboul, Cuturi, Vert & Bach, NeurIPS 2020, "Learning with
Differentiable Perturbed Optimizers").

Additive perturbation, ``Z`` with density ``p(z) ~ exp(-nu(z))`` (``grad nu = -score``)::

    y_sigma(theta)       = E[ y*(theta + sigma Z) ]                      (forward: Monte Carlo mean)
    J_theta y_sigma      = E[ y*(theta + sigma Z) grad nu(Z)^T ] / sigma  (Normal: grad nu(Z) = Z)
    dL/dtheta            = mean_s ( <g_s, y_s> - b_s ) grad nu(Z_s) / sigma

Multiplicative perturbation (for positive-cost problems: signs of ``theta`` are preserved, so shortest
path costs stay positive and no guard is needed)::

    theta_s = theta * exp(sigma Z_s - sigma^2 / 2)
    dL/dtheta = mean_s ( <g_s, y_s> - b_s ) grad nu(Z_s) / (sigma * theta)       (theta != 0)

``b_s`` is an optional :mod:`baseline <discreteopt.estimators.baselines>` (control variate; unbiased since
``E[grad nu(Z)] = 0``). For antithetic pairs use ``noise=Antithetic(Normal())``. Solver calls: ``B*S`` in
forward (``+B`` with :class:`~discreteopt.estimators.baselines.MAPBaseline`), none in backward.
The estimate is exact in expectation for ``y_sigma`` computed with the *guarded* solver: a clamp that
alters perturbed costs changes the smoothed map.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_positive
from .base import Estimator, check_samples, inner, resolve_noise, sample_noise, unflatten
from .baselines import Baseline


class _Ctx(NamedTuple):
    theta: torch.Tensor  # [B, *E]
    z: torch.Tensor  # [B, S, *E]
    y: torch.Tensor  # [B, S, *Y]
    y_map: torch.Tensor | None  # [B, *Y]


class PerturbedOptimizer(Estimator):
    """Additive (default) or multiplicative perturbed maximiser with ``sigma``, ``samples`` and ``noise``."""

    def __init__(self, sigma: float = 1.0, samples: int = 10, noise="normal", multiplicative: bool = False,
                 baseline: Baseline | None = None):
        self.sigma = check_positive(sigma, "sigma")
        self.samples = check_samples(samples)
        self.noise = resolve_noise(noise)
        if self.noise is None:
            raise ValueError("noise must be a Noise with a score (e.g. Normal()); got None")
        if baseline is not None and not isinstance(baseline, Baseline):
            raise ValueError(f"baseline must be a Baseline or None; got {type(baseline).__name__}")
        if baseline is not None and self.samples < baseline.min_samples:
            raise ValueError(f"samples must be >= {baseline.min_samples} for {baseline!r}; got {samples}")
        self.baseline = baseline
        self.multiplicative = bool(multiplicative)

    # ------------------------------------------------------------------ perturbation
    def perturbation(self, theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``theta [B, *E]``, ``z [B, S, *E]`` -> perturbed ``[B, S, *E]`` (differentiable in ``theta``)."""
        if self.multiplicative:
            return theta.unsqueeze(1) * torch.exp(self.sigma * z - self.sigma**2 / 2)
        return theta.unsqueeze(1) + self.sigma * z

    def sample(self, theta: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Noise ``Z [B, S, *E]`` on ``theta``'s device and dtype."""
        if self.multiplicative and bool((theta == 0).any()):
            raise ValueError("theta must have no zero entry for a multiplicative perturbation "
                             "(the Jacobian estimate divides by theta)")
        return sample_noise(self.noise, theta, self.samples, generator)

    # ------------------------------------------------------------------ forward
    def plan(self, theta, generator):
        z = self.sample(theta, generator)  # [B, S, *E]
        thetas = self.perturbation(theta, z).reshape(-1, *theta.shape[1:])  # [B, S, *E] -> [B*S, *E]
        if self.baseline is not None and self.baseline.needs_map:
            thetas = torch.cat([thetas, theta])  # [B*S + B, *E]
        return thetas, z

    def finish(self, theta, ys, z):
        b, s = theta.shape[0], self.samples
        y = unflatten(ys[: b * s], b, s)  # [B*S, *Y] -> [B, S, *Y]
        y_map = ys[b * s:] if ys.shape[0] > b * s else None  # [B, *Y]
        return y, _Ctx(theta, z, y, y_map)

    # ------------------------------------------------------------------ backward
    def score_weights(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``grad nu(Z) / sigma`` (``/ theta`` when multiplicative): ``[B, S, *E]``."""
        w = -self.noise.score(z) / self.sigma
        return w / theta.unsqueeze(1) if self.multiplicative else w

    def backward(self, maximize, theta, ctx, grad_y):
        ndim = theta.ndim - 1
        values = inner(grad_y, ctx.y, ndim)  # [B, S]
        if self.baseline is not None:
            map_values = inner(grad_y, ctx.y_map.unsqueeze(1), ndim) if ctx.y_map is not None else None  # [B, S]
            values = values - self.baseline(values, map_values)
        w = self.score_weights(ctx.z, ctx.theta)  # [B, S, *E]
        coef = values.reshape(*values.shape, *([1] * ndim))  # [B, S] -> [B, S, 1, ...]
        return (coef * w).mean(dim=1)  # [B, *E]
