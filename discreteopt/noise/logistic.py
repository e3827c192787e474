"""Logistic noise ``eps = beta * (log U - log(1 - U))``: the difference of two Gumbels.

Perturbing binary decisions with it gives ``P(theta + eps > 0) = sigmoid(theta / beta)``. With
``z = eps / beta``::

    log p(eps) = -z - 2 log(1 + exp(-z)) - log beta,   score(eps) = -tanh(z / 2) / beta.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Noise, uniform_open


class Logistic(Noise):
    """Centred logistic distribution with scale ``beta`` (``scale=``); variance ``pi^2 beta^2 / 3``."""

    symmetric = True

    def _sample(self, shape, generator, device, dtype):
        u = uniform_open(shape, generator, device, dtype)
        return self.scale * (torch.log(u) - torch.log1p(-u))

    def log_prob(self, eps):
        z = eps / self.scale
        return -z - 2.0 * F.softplus(-z) - math.log(self.scale)

    def score(self, eps):
        return -torch.tanh(eps / (2.0 * self.scale)) / self.scale
