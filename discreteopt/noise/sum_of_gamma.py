"""Sum-of-Gamma noise for k-subset selection (Niepert, Minervini & Franceschi, 2021, "Implicit MLE", Sec. 5).

Each entry is::

    eps = (tau / k) * ( S - log(n_iter) ),    S = sum_{i=1}^{n_iter} Gamma(shape=1/k, rate=i/k)

with ``tau`` the ``scale``. The sum of ``k`` independent copies is ``tau * (max of n_iter Exp(1) variables -
log n_iter)``, which tends to a Gumbel(0, tau) variable as ``n_iter`` grows. Perturbing ``theta`` with it
therefore makes the top-k of the perturbed scores behave like a Gumbel perturbation of the k-subset as a whole,
instead of of each item. Moments (``H_n`` the harmonic number)::

    E[eps] = (tau / k) (H_n - log n),      Var[eps] = (tau^2 / k) sum_{i=1}^{n} 1 / i^2

**Sampling (one Gamma draw per entry, not ``n_iter``).** The terms have different scales ``k/i``, so ``S`` is not
a Gamma variable, but it is a Gamma *mixture* with the smallest scale ``k/n`` (Moschopoulos, 1985, "The
distribution of the sum of independent gamma random variables"): with ``r = 1/k``, ``q_i = 1 - i/n``::

    S = (k / n) * Gamma(n r + K),    K = sum_{i=1}^{n-1} K_i,   K_i ~ NegativeBinomial(r, success prob i/n)

(``Gamma(r, scale k/i) = (k/n) Gamma(r + K_i)`` by the Gamma-Poisson construction). The law of ``K`` is computed
once per ``(k, n_iter)`` by the recursion of the logarithm of its generating function::

    P(K = 0) = prod_i (i/n)^r,   P(K = m) = (1/m) sum_{j=1}^{m} a_j P(K = m - j),   a_j = r sum_i q_i^j

and truncated where the remaining mass is below ``2**-64`` (below the resolution of the float64 uniform that
draws ``K`` by inversion): up to that round-off the law is exact. A draw is then one float64 uniform, one
``searchsorted`` in that table and one ``torch._standard_gamma`` of shape ``n r + K`` -- about 10x faster than
``n_iter`` Gamma draws at ``n_iter = 10`` (``benchmarks/bench_pto.py`` prints the ratio on ``[256, 10, 144]``).
For ``k = 1``, ``S`` is the max of ``n`` Exp(1) variables and is drawn by inversion, ``S = -log(1 - U^(1/n))``
(one uniform per entry). For ``n_iter > 256`` (the table grows like ``45 n`` entries and costs ``O(n^2)``
once) the ``n_iter`` terms are drawn directly, in a few large calls. All draws use the caller's generator on the caller's device. The density has no closed form: no
``log_prob``/``score``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._validation import check_int_in_range
from .base import Noise, uniform_open

#: largest ``n_iter`` sampled through the Gamma-mixture table; larger ones draw the ``n_iter`` terms directly
MIXTURE_MAX_N_ITER = 256
_TAIL = 2.0**-64


def mixture_weights(k: int, n_iter: int) -> np.ndarray:
    """``P(K = m)`` for ``m = 0 .. M-1`` (float64, sums to 1 up to a tail ``< 2**-64``): the mixing law of
    :class:`SumOfGamma` (module docstring), ``S = (k/n) Gamma(n/k + K)``."""
    n, r = int(n_iter), 1.0 / float(k)
    q = 1.0 - np.arange(1, n, dtype=np.float64) / n  # [n-1]: failure probabilities, largest q_1 = 1 - 1/n
    p0 = math.exp(r * float(np.sum(np.log(np.arange(1, n + 1) / n))))
    if n == 1 or q.size == 0:
        return np.ones(1)
    # the tail decays like q_1^m: ~(45 + log terms) * n entries reach 2**-64; grow the buffer when needed
    size = int(64 * n) + 64
    while True:
        powers = q[None, :] ** np.arange(1, size, dtype=np.float64)[:, None]  # [size-1, n-1]
        a = np.concatenate([[0.0], r * powers.sum(1)])  # [size]: a_0 unused, a_j = r sum_i q_i^j
        p = np.zeros(size)
        p[0] = cum = p0
        for m in range(1, size):
            p[m] = float(np.dot(a[1 : m + 1], p[m - 1 :: -1])) / m
            cum += p[m]
            # past the bulk and the mode the terms fall at least geometrically with ratio q_1, so the
            # remaining mass is below p_m / (1 - q_1) = n p_m
            if cum > 0.5 and p[m] < p[m - 1] and p[m] * n < _TAIL:
                return p[: m + 1]
        size *= 2


class SumOfGamma(Noise):
    """Sum-of-Gamma perturbation with subset size ``k``, ``n_iter`` terms and temperature ``scale``.

    Args:
        k: subset size of the k-subset problem the noise is meant for (>= 1).
        n_iter: number of Gamma terms (>= 1); more terms bring the k-fold sum closer to a Gumbel.
        scale: temperature ``tau`` (> 0).

    Shapes: ``sample(shape)`` returns i.i.d. entries of ``shape`` (e.g. ``[B, S, n]``). Formula, moments and
    the sampling method are in the module docstring.

    Example::

        noise = SumOfGamma(k=10, n_iter=10)
        eps = noise.sample((256, 10, 144), torch.Generator().manual_seed(0))   # [256, 10, 144]
    """

    def __init__(self, k: int, n_iter: int = 10, scale: float = 1.0):
        super().__init__(scale)
        self.k = check_int_in_range(k, "k", 1, 2**31)
        self.n_iter = check_int_in_range(n_iter, "n_iter", 1, 10_000)
        self._cdf: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def _table(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        cdf = self._cdf.get(key)
        if cdf is None:
            c = np.cumsum(mixture_weights(self.k, self.n_iter))
            cdf = torch.as_tensor(c / c[-1], dtype=dtype, device=device)  # [M], last entry exactly 1
            self._cdf[key] = cdf
        return cdf

    def _sample(self, shape, generator, device, dtype):
        work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        if self.k == 1:
            s = self._sample_max_of_exponentials(shape, generator, device, work)
        elif self.n_iter <= MIXTURE_MAX_N_ITER:
            s = self._sample_mixture(shape, generator, device, work)
        else:
            s = self._sample_terms(shape, generator, device, work)
        # eps = (tau / k) (S - log n) with S = (k / n) s, in this order: draws of S below half an ulp of log n
        # (frequent for large k) then land on the same float as with the published formula
        s.mul_(self.k / self.n_iter).sub_(math.log(self.n_iter))
        return s.mul_(self.scale / self.k).to(dtype)

    def _sample_mixture(self, shape, generator, device, work):
        """``n S / k = Gamma(n/k + K)`` with ``K`` drawn by inversion of the mixing law."""
        udtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        cdf = self._table(device, udtype)
        u = torch.rand(shape, generator=generator, device=device, dtype=udtype)
        mix = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.numel() - 1)  # K, int64 [*shape]
        conc = mix.to(work).add_(self.n_iter / self.k)
        return torch._standard_gamma(conc, generator=generator)

    def _sample_max_of_exponentials(self, shape, generator, device, work):
        """``k = 1``: ``S`` is the max of ``n`` Exp(1) variables, drawn by inversion of its CDF ``(1 - e^-x)^n``:
        ``S = -log(1 - U^(1/n))`` (one uniform per entry); returns ``n S / k = n S``."""
        udtype = torch.float32 if device.type == "mps" else torch.float64
        u = uniform_open(shape, generator, device, udtype)
        s = u.log_().div_(self.n_iter).expm1_().neg_().log_().neg_()  # -log(1 - u^(1/n)), accurate near u = 1
        return s.mul_(self.n_iter).to(work)

    def _sample_terms(self, shape, generator, device, work):
        """``n S / k = sum_i (n / i) Gamma(1/k)``, drawn in chunks of terms (large ``n_iter``)."""
        total = torch.zeros(shape, device=device, dtype=work)
        numel = max(1, math.prod(shape))
        chunk = max(1, min(self.n_iter, (1 << 24) // numel))
        for start in range(1, self.n_iter + 1, chunk):
            idx = torch.arange(start, min(start + chunk, self.n_iter + 1), device=device, dtype=work)  # [c]
            conc = torch.full((idx.numel(), *shape), 1.0 / self.k, device=device, dtype=work)  # [c, *shape]
            g = torch._standard_gamma(conc, generator=generator)
            total += (g * (self.n_iter / idx).reshape(-1, *([1] * len(shape)))).sum(0)
        return total

    def __repr__(self) -> str:
        return f"SumOfGamma(k={self.k}, n_iter={self.n_iter}, scale={self.scale})"
