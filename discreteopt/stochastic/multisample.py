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
from .score_function import reinforce


def rloo(
    f: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    samples: int = 2,
    generator: torch.Generator | None = None,
) -> Estimate:
    """REINFORCE with the leave-one-out baseline; needs ``samples >= 2``; ``n_evals = samples``."""
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
    """VIMCO gradient of ``E[log 1/K sum_i exp(log_w(z_i))]`` with ``K = samples >= 2``; ``n_evals = K``.

    The surrogate's value is the bound ``L`` itself (per problem), not ``E[log_w]``.
    """
    family = as_family(family)
    family.check(logits, "logits")
    k = check_samples(samples, minimum=2)
    check_generator(generator, logits.device)
    cf = CountingF(log_w, logits.shape[0])
    z = family.sample(logits, k, generator)  # [K, B, *E]
    fv = cf(z)  # [K, B]
    fd = fv.detach()
    bound = torch.logsumexp(fd, 0) - math.log(k)  # [B]
    loo_mean = (fd.sum(0, keepdim=True) - fd) / (k - 1)  # [K, B]
    eye = torch.eye(k, dtype=torch.bool, device=fd.device)[:, :, None]  # [K, K, 1]
    swapped = torch.where(eye, loo_mean[:, None, :], fd[None, :, :])  # [K(j), K(i), B]: f_i, f_j -> geo-mean
    bound_minus = torch.logsumexp(swapped, 1) - math.log(k)  # [K, B]
    coef = bound[None] - bound_minus  # [K, B]
    score = family.score(logits, z)  # [K, B, *E]
    g = (coef.reshape(*coef.shape, *([1] * (score.ndim - 2))) * score).sum(0)  # [B, *E]
    value = torch.logsumexp(fv, 0) - math.log(k)  # keeps log_w's own graph: sum_j w~_j grad log_w_j
    return finish(value, logits, g, cf.count, samples=z, f_values=fd)
