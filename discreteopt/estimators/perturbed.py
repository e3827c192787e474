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
from .base import Estimator, check_noise, check_samples, inner, resolve_noise, sample_noise, unflatten
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
        check_noise(self.noise, self.samples, needs_score=True)
        if baseline is not None and not isinstance(baseline, Baseline):
            raise ValueError(f"baseline must be a Baseline or None; got {type(baseline).__name__}")
        if baseline is not None and self.samples < baseline.min_samples:
            raise ValueError(f"samples must be >= {baseline.min_samples} for {baseline!r}; got {samples}")
        self.baseline = baseline
        self.multiplicative = bool(multiplicative)

    # ------------------------------------------------------------------ perturbation
    def factor(self, z: torch.Tensor) -> torch.Tensor | None:
        """Multiplicative factor ``exp(sigma Z - sigma^2 / 2)`` ``[B, S, *E]`` (``None`` when additive)."""
        if not self.multiplicative:
            return None
        return (z * self.sigma).sub_(self.sigma**2 / 2).exp_()

    def perturbation(self, theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``theta [B, *E]``, ``z [B, S, *E]`` -> perturbed ``[B, S, *E]`` (differentiable in ``theta``)."""
        if self.multiplicative:
            return theta.unsqueeze(1) * self.factor(z)
        return torch.add(theta.unsqueeze(1), z, alpha=self.sigma)  # [B, S, *E]

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
    def score_average(self, values: torch.Tensor, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``mean_s values_s * grad nu(Z_s) / sigma`` (``/ theta`` when multiplicative): ``[B, *E]``.

        ``values [B, S]``, ``z [B, S, *E]``, ``theta [B, *E]``; ``grad nu = -score`` of the noise.
        """
        avg = self.noise.weighted_score(values, z)  # [B, *E]
        avg = avg.mul_(-1.0 / (self.sigma * values.shape[1]))
        return avg.div_(theta) if self.multiplicative else avg

    def backward(self, maximize, theta, ctx, grad_y):
        ndim = theta.ndim - 1
        values = inner(grad_y, ctx.y, ndim)  # [B, S]
        if self.baseline is not None:
            map_values = inner(grad_y, ctx.y_map.unsqueeze(1), ndim) if ctx.y_map is not None else None  # [B, S]
            values = values - self.baseline(values, map_values)
        return self.score_average(values, ctx.z, ctx.theta)  # [B, *E]
