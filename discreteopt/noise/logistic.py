"""Logistic noise ``eps = scale * (log U - log(1 - U))``: the difference of two Gumbels.

Perturbing binary decisions with it gives ``P(theta + eps > 0) = sigmoid(theta / scale)``. With
``z = eps / scale``::

    log p(eps) = -z - 2 log(1 + exp(-z)) - log scale,   score(eps) = -tanh(z / 2) / scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Noise, uniform_open


class Logistic(Noise):
    """Centred logistic distribution with scale ``scale``; variance ``pi^2 scale^2 / 3``; symmetric.

    Args:
        scale: ``> 0`` (default 1). Estimators also take a ``scale``; give it in one place only.

    Shapes: ``sample(shape)`` -> ``shape``; ``log_prob``/``score`` element-wise.
    Formula: ``eps = scale * logit(U)``; ``score(eps) = -tanh(eps / (2 scale)) / scale``.
    Reference: the logistic distribution as a difference of Gumbels (e.g. Maddison, Mnih & Teh, 2017, "The Concrete
    Distribution").

    Example::

        >>> eps = Logistic(scale=0.5).sample((3,), generator=torch.Generator().manual_seed(0))
    """

    symmetric = True

    def _sample(self, shape, generator, device, dtype):
        u = uniform_open(shape, generator, device, dtype)
        return self.scale * (torch.log(u) - torch.log1p(-u))

    def log_prob(self, eps):
        z = eps / self.scale
        return -z - 2.0 * F.softplus(-z) - math.log(self.scale)

    def score(self, eps):
        return -torch.tanh(eps / (2.0 * self.scale)) / self.scale
