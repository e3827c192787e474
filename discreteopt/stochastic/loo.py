"""Leave-one-out sums without subtracting one's own term.

Leave-one-out baselines (RLOO, VIMCO, the optimal constant, a control variate's scale) need, for every sample
``i``, a statistic of the *other* samples: ``T_i = sum_{k != i} x_k``. The textbook form ``sum_k x_k - x_i`` is
exact in real arithmetic but not in floating point: the rounding error of the full sum depends on ``x_i``, so the
computed ``T_i`` depends on sample ``i`` itself and the baseline is no longer independent of it. When one sample
dominates (a rare outcome at extreme logits, whose score is ~1 while the others' are ~1e-4) the others vanish in
the rounding entirely: ``(1 + 1e-8) - 1 == 0`` in float32, and the estimator becomes measurably biased.

:func:`loo_sum` forms ``T_i`` as an exclusive prefix sum plus an exclusive suffix sum,

    T_i = (x_0 + ... + x_{i-1}) + (x_{i+1} + ... + x_{S-1}),

so the computed value is a function of the other samples only (exactly, not just up to round-off): a baseline
built from it keeps the estimator unbiased in any dtype. It costs two cumulative sums (``O(S)``), against
``O(S^2)`` for a masked sum over an ``[S, S]`` off-diagonal mask. Reference for the leave-one-out baseline: Kool,
van Hoof & Welling (2019), "Buy 4 REINFORCE samples, get a baseline for free!".
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(x: Tensor, dim: int, who: str) -> int:
    """``x`` a tensor with at least one dim and ``dim`` an integer in range; returns ``dim`` as a non-negative index."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{who}: x must be a torch.Tensor with the samples along dim; got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"{who}: x must have at least one dim (the samples); got a 0-d tensor")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{who}: dim must be an integer in [{-x.ndim}, {x.ndim - 1}] for x of shape "
                         f"{list(x.shape)}; got {dim!r}")
    return dim % x.ndim


def loo_sum(x: Tensor, dim: int = 0) -> Tensor:
    """``T_i = sum_{k != i} x_k`` along ``dim`` (same shape as ``x``), never subtracting ``x_i``.

    ``x``: ``[S, *]`` (``dim = 0``) or any shape with the samples along ``dim``; ``S = 1`` gives zeros and ``S = 0``
    an empty result. Computed as exclusive prefix plus exclusive suffix cumulative sums, so entry ``i`` of the result
    depends on ``x_k``, ``k != i``, only -- also in floating point. Integer and bool ``x`` follow ``torch.cumsum``
    (an ``int64`` result). ``+-inf`` only where the exact sum leaves the float range. A ``dim`` out of range or a
    0-d ``x`` raises ``ValueError``.

    >>> loo_sum(torch.tensor([1.0, 1e-8, 2e-8]))  # float32: (1 + 1e-8 + 2e-8) - 1 would give 0 for the first
    tensor([3.0000e-08, 1.0000e+00, 1.0000e+00])
    """
    dim = _check(x, dim, "loo_sum")
    n = x.shape[dim]
    if n == 0:
        return x.cumsum(dim)  # empty, in cumsum's dtype
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    before = torch.cat([zero, x.narrow(dim, 0, n - 1)], dim=dim).cumsum(dim)  # x_0 + ... + x_{i-1}
    after = torch.cat([x.narrow(dim, 1, n - 1), zero], dim=dim).flip(dim).cumsum(dim).flip(dim)  # x_{i+1} + ...
    return before + after


def loo_mean(x: Tensor, dim: int = 0) -> Tensor:
    """``mean_{k != i} x_k`` along ``dim`` (needs ``S >= 2`` samples along ``dim``).

    Formed as ``loo_sum(x / (S - 1))`` for floating ``x`` (``loo_sum(x) / (S - 1)`` for integer ``x``): every term
    is divided first, so the sum of ``S - 1`` of them cannot overflow where the mean itself fits the dtype (three
    values of ``3e38`` in float32 have the mean ``3e38``, while their sum is ``inf``). Entry ``i`` still depends on the
    other samples only.
    """
    dim = _check(x, dim, "loo_mean")
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"a leave-one-out mean needs at least 2 samples along dim {dim}; got {n}")
    if x.is_floating_point() or x.is_complex():
        return loo_sum(x / (n - 1), dim)
    return loo_sum(x, dim) / (n - 1)
