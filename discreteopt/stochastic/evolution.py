"""Evolution strategies: gradients of a Gaussian-smoothed black-box objective over continuous parameters.

For any (even non-differentiable) ``f``, the smoothed objective ``F_s(theta) = E_{eps ~ N(0, I)}[f(theta +
s eps)]`` (``s`` the noise ``scale``) has gradient ``E[f(theta + s eps) eps] / s`` (the score function of
``N(theta, s^2 I)`` w.r.t. its mean; Rechenberg, 1973; Salimans, Ho, Chen, Sidor & Sutskever, 2017, "Evolution
strategies as a scalable alternative to reinforcement learning"):

* plain: ``g = 1/(S s) sum_i (f(theta + s eps_i) - b_i) eps_i`` with any baseline of
  :mod:`discreteopt.stochastic.baselines` (the scores are ``eps / s``); ``n_evals = S``;
* antithetic (mirrored sampling): ``g = 1/(2 S s) sum_i (f(theta + s eps_i) - f(theta - s eps_i)) eps_i``;
  ``n_evals = 2 S`` (``samples`` counts pairs).

Both are unbiased for ``grad F_s``, not for ``grad f`` (the bias w.r.t. ``grad f`` is ``O(s^2)`` for smooth ``f``).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._types import (
    CountingF,
    Estimate,
    SampleFn,
    check_generator,
    check_positive,
    check_reciprocal,
    check_samples,
    check_tensor_param,
    finish,
    normal,
    safe_mean,
)
from .baselines import Baseline, as_baseline
from .score_function import score_function_gradient


def evolution_strategies(
    f: SampleFn,
    params: Tensor,
    *,
    scale: float | None = None,
    samples: int = 1,
    antithetic: bool = True,
    baseline: Baseline | None = None,
    generator: torch.Generator | None = None,
    sigma: float | None = None,
) -> Estimate:
    """ES estimate of ``grad_theta E[f(theta + scale eps)]``, ``eps ~ N(0, I)``, for continuous ``params`` ``[B, *E]``.

    ``f`` maps points ``[S', B, *E]`` to ``[S', B]`` (``S' = 2 * samples`` with ``antithetic``, ``samples``
    otherwise; no gradient flows through ``f``'s input; integer/bool outputs are cast to ``params``' dtype).
    ``scale > 0`` is the noise scale (default 0.1; ``sigma=`` is its deprecated name). ``baseline`` only applies
    without ``antithetic`` (the mirrored pair is its own baseline). The surrogate's value is the Monte Carlo estimate
    of ``F_scale``; ``info["scale"]`` holds the scale.

    Numerics: ``scale >= torch.finfo(params.dtype).tiny`` (``scale * eps`` must not vanish and ``1 / scale`` must
    be finite in that dtype) and the points ``params +- scale * eps`` must be finite (else ``ValueError`` naming
    ``scale``, before ``f`` is called). The antithetic estimate averages ``(f+ / 2 - f- / 2) eps / 16`` before
    dividing by ``scale / 16``, so ``f`` values of both signs near the float maximum give a finite estimate (or
    ``+-inf`` where the exact one leaves the range), never NaN.

    >>> est = evolution_strategies(lambda x: -(x ** 2).sum(-1), torch.ones(4, 3), scale=0.1, samples=16)
    >>> est.grad                 # ~ -2 (the smoothed gradient of -|x|^2 at 1)
    """
    check_tensor_param(params, "params")
    if sigma is not None:
        if scale is not None:
            raise ValueError(f"pass scale= only (sigma= is its deprecated name); got scale={scale!r} and "
                             f"sigma={sigma!r}")
        warnings.warn("sigma= is deprecated: the noise scale is called scale= everywhere in discreteopt",
                      DeprecationWarning, stacklevel=2)
        scale = check_positive(sigma, "sigma")
    scale = 0.1 if scale is None else check_positive(scale, "scale")
    check_reciprocal(scale, "scale", params.dtype, "params")
    s = check_samples(samples)
    check_generator(generator, params.device)
    if not isinstance(antithetic, bool):
        raise ValueError(f"antithetic must be a bool; got {antithetic!r}")
    if antithetic and baseline is not None:
        raise ValueError("baseline must be None with antithetic=True (the mirrored pair is already a baseline)")
    base = as_baseline(baseline)
    cf = CountingF(f, params.shape[0], params.dtype)
    th = params.detach()
    eps = normal((s, *th.shape), th, generator)  # [S, B, *E]
    extra = [1] * (eps.ndim - 2)
    points = torch.cat([th + scale * eps, th - scale * eps]) if antithetic else th + scale * eps  # [S', B, *E]
    bound = float(th.abs().amax()) + scale * float(eps.abs().amax())  # cheap: points are finite below finfo.max
    if not bound <= torch.finfo(th.dtype).max and not bool(torch.isfinite(points).all()):
        raise ValueError(f"params + scale * eps overflows {params.dtype} (scale={scale!r}, max |params| = "
                         f"{float(th.abs().max()):.4g}): use a smaller scale or a wider dtype; f was not called")
    if antithetic:
        fv = cf(points)  # [2S, B]
        fp, fm = fv[:s].detach(), fv[s:].detach()
        half = (fp * 0.5 - fm * 0.5) * 0.0625  # (f+ - f-) / 32: finite for finite f, and times eps still finite
        g = safe_mean(half.reshape(s, -1, *extra) * eps, 0) * 16.0 / scale  # [B, *E]
        value, aux = safe_mean(fv, 0), None
    else:
        fv = cf(points)  # [S, B]
        fd = fv.detach()
        score = eps / scale  # d log N(x; theta, scale^2) / d theta
        g, aux = score_function_gradient(base, fd, score, th, points)  # [B, *E]
        value = safe_mean(fv, 0)
    return finish(value, params, g, cf.count, f_values=fv.detach(), aux_loss=aux, info={"scale": scale})
