"""Gaussian noise ``eps ~ N(0, sigma^2)``: ``score(eps) = -eps / sigma^2``.

The default of perturbed optimizers (Berthet et al., 2020): with ``nu(z) = z^2 / 2`` the Jacobian
estimate of ``E[y*(theta + sigma Z)]`` is ``E[y*(theta + sigma Z) Z^T] / sigma``.
"""

from __future__ import annotations

import math

import torch

from .base import Noise


class Normal(Noise):
    """Centred Gaussian with standard deviation ``scale``."""

    symmetric = True

    def _sample(self, shape, generator, device, dtype):
        return self.scale * torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def log_prob(self, eps):
        return -0.5 * (eps / self.scale) ** 2 - math.log(self.scale) - 0.5 * math.log(2 * math.pi)

    def score(self, eps):
        return -eps / self.scale**2
