"""Gaussian noise ``eps ~ N(0, scale^2)``: ``score(eps) = -eps / scale^2``.

The default of perturbed optimizers (Berthet et al., 2020): with ``nu(z) = z^2 / 2`` the Jacobian
estimate of ``E[y*(theta + scale Z)]`` is ``E[y*(theta + scale Z) Z^T] / scale``.
"""

from __future__ import annotations

import math

import torch

from .base import Noise


class Normal(Noise):
    """Centred Gaussian with standard deviation ``scale``; symmetric (allows ``Antithetic(Normal())``).

    Args:
        scale: standard deviation ``> 0`` (default 1). Estimators also take a ``scale``; give it in one place only.

    Shapes: ``sample(shape)`` -> ``shape``; ``log_prob``/``score`` element-wise; ``weighted_score`` ``[B, S]`` and
    ``[B, S, *E]`` -> ``[B, *E]`` without forming the score tensor.
    Formula: ``log p(eps) = -eps^2 / (2 scale^2) - log(scale sqrt(2 pi))``, ``score(eps) = -eps / scale^2``.
    Reference: Berthet et al., "Learning with Differentiable Perturbed Optimizers", NeurIPS 2020.

    Example::

        >>> eps = Normal(scale=0.5).sample((2, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    """

    symmetric = True

    def _sample(self, shape, generator, device, dtype):
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return z if self.scale == 1.0 else z.mul_(self.scale)

    def log_prob(self, eps):
        return -0.5 * (eps / self.scale) ** 2 - math.log(self.scale) - 0.5 * math.log(2 * math.pi)

    def score(self, eps):
        return eps * (-1.0 / self.scale**2)

    def weighted_score(self, weights, eps):
        # linear score: sum_s w_s * (-eps_s / scale^2) without materialising the score
        b, s = weights.shape
        out = torch.bmm(weights.to(eps.dtype).unsqueeze(1), eps.reshape(b, s, -1))  # [B, 1, prod(E)]
        return out.mul_(-1.0 / self.scale**2).reshape(b, *eps.shape[2:])  # [B, *E]
