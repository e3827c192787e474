"""Sum-of-Gamma noise for k-subset selection (Niepert, Minervini & Franceschi, 2021, "Implicit MLE", Sec. 5).

Each entry is::

    eps = (tau / k) * ( sum_{i=1}^{n_iter} Gamma(shape=1/k, rate=i/k) - log(n_iter) )

The sum of ``k`` independent copies is ``tau * (max of n_iter Exp(1) variables - log n_iter)``, which tends
to a Gumbel(0, tau) variable as ``n_iter`` grows. Perturbing ``theta`` with it therefore makes the
top-k of the perturbed scores behave like a Gumbel perturbation of the k-subset as a whole, instead of
of each item. Gamma draws use ``torch._standard_gamma`` with the caller's generator on the caller's device.
The density has no closed form: no ``log_prob``/``score``.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_int_in_range
from .base import Noise


class SumOfGamma(Noise):
    """Sum-of-Gamma perturbation with subset size ``k``, ``n_iter`` terms and temperature ``scale``."""

    def __init__(self, k: int, n_iter: int = 10, scale: float = 1.0):
        super().__init__(scale)
        self.k = check_int_in_range(k, "k", 1, 2**31)
        self.n_iter = check_int_in_range(n_iter, "n_iter", 1, 10_000)

    def _sample(self, shape, generator, device, dtype):
        k = float(self.k)
        total = torch.zeros(shape, device=device, dtype=dtype)
        conc = torch.full(shape, 1.0 / k, device=device, dtype=dtype)
        for i in range(1, self.n_iter + 1):
            # Gamma(shape 1/k, rate i/k) = standard Gamma(1/k) * (k / i)
            total += torch._standard_gamma(conc, generator=generator) * (k / i)
        return (self.scale / k) * (total - math.log(self.n_iter))

    def __repr__(self) -> str:
        return f"SumOfGamma(k={self.k}, n_iter={self.n_iter}, scale={self.scale})"
