"""Evolution strategies: gradients of a Gaussian-smoothed black-box objective over continuous parameters.

For any (even non-differentiable) ``f``, the smoothed objective ``F_sigma(theta) = E_{eps ~ N(0, I)}[f(theta +
sigma eps)]`` has gradient ``E[f(theta + sigma eps) eps] / sigma`` (the score function of ``N(theta, sigma^2 I)``
w.r.t. its mean; Rechenberg, 1973; Salimans, Ho, Chen, Sidor & Sutskever, 2017, "Evolution strategies as a scalable
alternative to reinforcement learning"):

* plain: ``g = 1/(S sigma) sum_i (f(theta + sigma eps_i) - b_i) eps_i`` with any baseline of
  :mod:`discreteopt.stochastic.baselines` (the scores are ``eps / sigma``); ``n_evals = S``;
* antithetic (mirrored sampling): ``g = 1/(2 S sigma) sum_i (f(theta + sigma eps_i) - f(theta - sigma eps_i))
  eps_i``; ``n_evals = 2 S`` (``samples`` counts pairs).

Both are unbiased for ``grad F_sigma``, not for ``grad f`` (the bias w.r.t. ``grad f`` is ``O(sigma^2)`` for smooth
``f``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._types import (
    CountingF,
    Estimate,
    SampleFn,
    check_generator,
    check_positive,
    check_samples,
    check_tensor_param,
    finish,
    normal,
)
from .baselines import Baseline, as_baseline
from .score_function import score_function_gradient


def evolution_strategies(
    f: SampleFn,
    params: Tensor,
    *,
    sigma: float = 0.1,
    samples: int = 1,
    antithetic: bool = True,
    baseline: Baseline | None = None,
    generator: torch.Generator | None = None,
) -> Estimate:
    """ES estimate of ``grad_theta E[f(theta + sigma eps)]`` for continuous ``params`` ``[B, *E]``.

    ``f`` maps points ``[S', B, *E]`` to ``[S', B]`` (``S' = 2 * samples`` with ``antithetic``, ``samples``
    otherwise; no gradient flows through ``f``'s input). ``baseline`` only applies without ``antithetic`` (the
    mirrored pair is its own baseline). The surrogate's value is the Monte Carlo estimate of ``F_sigma``.
    """
    check_tensor_param(params, "params")
    sigma = check_positive(sigma, "sigma")
    s = check_samples(samples)
    check_generator(generator, params.device)
    if not isinstance(antithetic, bool):
        raise ValueError(f"antithetic must be a bool; got {antithetic!r}")
    if antithetic and baseline is not None:
        raise ValueError("baseline must be None with antithetic=True (the mirrored pair is already a baseline)")
    base = as_baseline(baseline)
    cf = CountingF(f, params.shape[0])
    th = params.detach()
    eps = normal((s, *th.shape), th, generator)  # [S, B, *E]
    extra = [1] * (eps.ndim - 2)
    if antithetic:
        fv = cf(torch.cat([th + sigma * eps, th - sigma * eps]))  # [2S, B]
        fp, fm = fv[:s].detach(), fv[s:].detach()
        g = (((fp - fm) / (2.0 * sigma)).reshape(s, -1, *extra) * eps).mean(0)  # [B, *E]
        value, aux = fv.mean(0), None
    else:
        x = th + sigma * eps
        fv = cf(x)  # [S, B]
        fd = fv.detach()
        score = eps / sigma  # d log N(x; theta, sigma^2) / d theta
        g, aux = score_function_gradient(base, fd, score, th, x)  # [B, *E]
        value = fv.mean(0)
    return finish(value, params, g, cf.count, f_values=fv.detach(), aux_loss=aux, info={"sigma": sigma})
