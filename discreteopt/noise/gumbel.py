"""Gumbel noise: the perturbation that makes perturb-and-MAP exact for argmax (Gumbel-max trick).

With ``eps ~ Gumbel(0, beta)`` i.i.d., ``argmax_i (theta_i + eps_i)`` is distributed as
``softmax(theta / beta)`` (Gumbel, 1954; Papandreou & Yuille, 2011). Density with ``z = eps / beta``::

    p(eps) = exp(-(z + exp(-z))) / beta,   score(eps) = (exp(-z) - 1) / beta.
"""

from __future__ import annotations

import torch

from .base import Noise, uniform_open


class Gumbel(Noise):
    """Standard Gumbel (location 0) with scale ``beta`` (``scale=``); mean ``0.5772 * beta``."""

    def _sample(self, shape, generator, device, dtype):
        u = uniform_open(shape, generator, device, dtype)
        g = u.log_().neg_().log_().neg_()  # -log(-log u), in place
        return g if self.scale == 1.0 else g.mul_(self.scale)

    def log_prob(self, eps):
        z = eps / self.scale
        return -(z + torch.exp(-z)) - torch.log(torch.as_tensor(self.scale, dtype=eps.dtype, device=eps.device))

    def score(self, eps):
        z = eps / self.scale
        return (torch.exp(-z) - 1.0) / self.scale
