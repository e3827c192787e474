"""Gumbel noise: the perturbation that makes perturb-and-MAP exact for argmax (Gumbel-max trick).

With ``eps ~ Gumbel(0, scale)`` i.i.d., ``argmax_i (theta_i + eps_i)`` is distributed as
``softmax(theta / scale)`` (Gumbel, 1954; Papandreou & Yuille, 2011). Density with ``z = eps / scale``::

    p(eps) = exp(-(z + exp(-z))) / scale,   score(eps) = (exp(-z) - 1) / scale.
"""

from __future__ import annotations

import torch

from .base import Noise, uniform_open


class Gumbel(Noise):
    """Standard Gumbel (location 0) with scale ``scale``; mean ``0.5772 * scale``, variance ``pi^2 scale^2 / 6``.

    Args:
        scale: ``> 0`` (default 1). Estimators also take a ``scale``; give it in one place only.

    Shapes: ``sample(shape)`` -> ``shape``; ``log_prob``/``score`` element-wise.
    Formula: ``eps = -scale * log(-log U)``, ``U ~ U(0, 1)``; ``score(eps) = (exp(-eps / scale) - 1) / scale``.
    Reference: Gumbel, 1954; Papandreou & Yuille, "Perturb-and-MAP random fields", ICCV 2011.

    Example::

        >>> eps = Gumbel().sample((4, 10), generator=torch.Generator().manual_seed(0))   # [4, 10]
    """

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
