"""Multi-sample score-function estimators: RLOO and VIMCO.

RLOO (REINFORCE leave-one-out; Kool, van Hoof & Welling, 2019, "Buy 4 REINFORCE samples, get a baseline for
free!"):

    g = 1/S sum_i (f(z_i) - 1/(S-1) sum_{k != i} f(z_k)) grad log p(z_i)
      = 1/(S-1) sum_i (f(z_i) - f̄) grad log p(z_i).

VIMCO (Mnih & Rezende, 2016, "Variational inference for Monte Carlo objectives") estimates the gradient of the
multi-sample objective ``E[L]``, ``L = log 1/K sum_i exp(f(z_i))`` (``f`` returns log-weights ``log w``):

    g = sum_j (L - L_{-j}) grad log p(z_j) + sum_j w~_j grad f(z_j),
    L_{-j} = log 1/K (sum_{i != j} exp f(z_i) + exp(mean_{i != j} f(z_i))),

the second term only when ``f`` itself depends on parameters (it comes from the surrogate's value).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._types import CountingF, Estimate, SampleFn, check_generator, check_samples, finish
from .baselines import LeaveOneOut
from .families import Family, as_family
from .loo import loo_mean
from .score_function import reinforce


def rloo(
    f: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    samples: int = 2,
    generator: torch.Generator | None = None,
) -> Estimate:
    """RLOO: REINFORCE with the leave-one-out baseline (Kool et al., 2019); ``n_evals = samples``.

    ``g = 1/S sum_i (f(z_i) - 1/(S-1) sum_{k != i} f(z_k)) grad log p(z_i)``, the baseline formed without
    ``sum - own`` (:func:`~.loo.loo_sum`). ``logits`` ``[B, *E]`` in the layout of ``family`` (default
    :class:`Bernoulli`), ``f``: ``[S, B, *E] -> [S, B]`` (integer/bool values cast to the logits' dtype),
    ``samples = S >= 2``.

    >>> est = rloo(lambda z: z.sum(-1), torch.zeros(8, 5, requires_grad=True), samples=4)
    >>> est.surrogate.backward()
    """
    check_samples(samples, minimum=2)
    return reinforce(f, logits, family=family, samples=samples, baseline=LeaveOneOut(), generator=generator)


def vimco(
    log_w: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    samples: int = 2,
    generator: torch.Generator | None = None,
) -> Estimate:
    """VIMCO gradient of ``E[L]``, ``L = log 1/K sum_i exp(log_w(z_i))``, with ``K = samples >= 2``; ``n_evals = K``.

    ``g = sum_j (L - L_{-j}) grad log p(z_j) + sum_j w~_j grad log_w(z_j)`` (the second term through autograd when
    ``log_w`` depends on parameters), ``L_{-j}`` with ``log_w(z_j)`` replaced by the mean of the others (Mnih &
    Rezende, 2016). The coefficients ``L - L_{-j}`` are formed in float64 from the other samples only, so they stay
    exact when ``log_w`` is large (``1e5 + O(1)`` in float32). ``logits`` ``[B, *E]``, ``log_w``: ``[K, B, *E] ->
    [K, B]`` (integer/bool values cast). The surrogate's value is the bound ``L`` itself (per problem), not
    ``E[log_w]``.

    >>> est = vimco(log_w, logits, samples=5); (-est.surrogate).backward()   # maximise the bound
    """
    family = as_family(family)
    family.check(logits, "logits")
    k = check_samples(samples, minimum=2)
    check_generator(generator, logits.device)
    cf = CountingF(log_w, logits.shape[0], logits.dtype)
    z = family.sample(logits, k, generator)  # [K, B, *E]
    fv = cf(z)  # [K, B]
    fd = fv.detach()
    # L - L_{-j} is a difference of two log-sum-exps of the size of log_w: formed in float64 (log_w = 1e6 + O(1)
    # in float32 would leave only ~0.06 of resolution), and the leave-one-out mean without "sum - own" (see .loo)
    wide = fd.to(torch.float64 if fd.device.type != "mps" else fd.dtype)
    bound = torch.logsumexp(wide, 0)  # [B] (the log K cancels in the difference)
    loo_avg = loo_mean(wide)  # [K, B], mean_{i != j} f_i
    eye = torch.eye(k, dtype=torch.bool, device=fd.device)[:, :, None]  # [K, K, 1]
    swapped = torch.where(eye, loo_avg[:, None, :], wide[None, :, :])  # [K(j), K(i), B]: f_i, f_j -> geo-mean
    bound_minus = torch.logsumexp(swapped, 1)  # [K, B]
    coef = (bound[None] - bound_minus).to(fd.dtype)  # [K, B]: L - L_{-j}
    score = family.score(logits, z)  # [K, B, *E]
    g = (coef.reshape(*coef.shape, *([1] * (score.ndim - 2))) * score).sum(0)  # [B, *E]
    value = torch.logsumexp(fv, 0) - math.log(k)  # keeps log_w's own graph: sum_j w~_j grad log_w_j
    return finish(value, logits, g, cf.count, samples=z, f_values=fd)
