"""Measure-valued (weak) derivatives.

The derivative of a measure is written as a scaled difference of two probability measures,
``d p_theta / d theta_j = c_j (p+_j - p-_j)``, so ``d E[f] / d theta_j = c_j (E_{p+}[f] - E_{p-}[f])``
(Pflug, 1989; Mohamed, Rosca, Figurnov & Mnih, 2020, "Monte Carlo gradient estimation in machine learning", sec. 6).
The other coordinates share one sample (common random numbers).

* Bernoulli, logits ``theta_j``: ``c = sigmoid'(theta_j)``, ``p+ = delta_1``, ``p- = delta_0``:
  ``g_j = p_j (1 - p_j) (f(z_j = 1) - f(z_j = 0))`` (this coincides with the Rao-Blackwellised estimator);
  ``1 + V`` evaluations per sample.
* Categorical, logits ``theta_vk``: ``d pi_v / d theta_vk = pi_vk (delta_k - pi_v)``:
  ``g_vk = pi_vk (f(z_v = e_k) - f(z))`` with ``z ~ pi``; ``1 + V (K - 1)`` evaluations per sample.
* Gaussian ``N(mu, sigma^2)`` (per coordinate): ``d/d mu: c = 1/(sigma sqrt(2 pi))``, ``p+- = mu +- sigma R``,
  ``R ~ Rayleigh(1)``; ``d/d sigma: c = 1/sigma``, ``p+ = mu + sigma D`` with ``D`` double-sided Maxwell,
  ``p- = N(mu, sigma^2)``; reported w.r.t. ``log sigma``: ``g = f(x_j = mu + sigma D) - f(x)``.
  ``1 + 3 d`` evaluations per sample.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._types import (
    CountingF,
    Estimate,
    SampleFn,
    check_generator,
    check_samples,
    check_tensor_param,
    finish,
    normal,
    safe_mean,
    uniform,
)
from .families import Bernoulli, Categorical, Family, as_family
from .score_function import local_table


def measure_valued(
    f: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Measure-valued derivative of ``E[f(z)]`` w.r.t. the logits of a Bernoulli or Categorical ``family``.

    Bernoulli: ``g_j = p_j (1 - p_j) (f(z_j = 1) - f(z_j = 0))`` (``p (1 - p)`` as ``sigmoid(theta)
    sigmoid(-theta)``, accurate at extreme logits); Categorical: ``g_vk = pi_vk (f(z_v = e_k) - f(z))``. ``logits``
    ``[B, *E]``, ``f``: ``[S, B, *E] -> [S, B]`` (integer/bool values cast to the logits' dtype);
    ``n_evals = samples * (1 + V (C - 1))``. Reference: Mohamed et al. (2020), sec. 6.
    """
    family = as_family(family)
    family.check(logits, "logits")
    if not isinstance(family, (Bernoulli, Categorical)):
        raise ValueError(f"family must be Bernoulli or Categorical for measure_valued; got {family!r}")
    s = check_samples(samples)
    check_generator(generator, logits.device)
    cf = CountingF(f, logits.shape[0], logits.dtype)
    z = family.sample(logits, s, generator)  # [S, B, *E]
    fv = cf(z)  # [S, B]
    table = local_table(cf, family, z, fv)  # [S, B, V, C]
    probs = family.factor_probs(logits.detach())  # [B, V, C]
    if isinstance(family, Bernoulli):
        g = (probs[..., 0] * probs[..., 1])[None] * (table[..., 1] - table[..., 0])  # [S, B, V]: p (1 - p) df
    else:
        g = probs[None] * (table - fv.detach()[..., None, None])  # [S, B, V, K]
    g = g.mean(0).reshape(logits.shape)  # [B, *E]
    return finish(safe_mean(fv, 0), logits, g, cf.count, samples=z, f_values=fv.detach())


def measure_valued_gaussian(
    f: SampleFn,
    mean: Tensor,
    log_std: Tensor,
    *,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Estimate, Estimate]:
    """Measure-valued derivatives of ``E[f(x)]``, ``x ~ N(mean, exp(log_std)^2)``, w.r.t. ``mean`` and ``log_std``.

    ``mean``, ``log_std``: ``[B, d]``; ``f``: ``[S, B, d] -> [S, B]``. Returns ``(estimate for mean, estimate for
    log_std)``; backward both surrogates (the second has value 0 so their sum still estimates ``E[f]``).

    Numerics: every standard deviation ``exp(log_std)`` must be a normal number of the dtype (``finfo.tiny <=
    exp(log_std) <= finfo.max``; it divides the ``mean`` estimate) and every evaluation point finite, else
    ``ValueError`` naming ``log_std`` (before ``f`` is called). Differences of ``f`` are halved and averaged before
    the division by ``exp(log_std)``, so ``f`` values near the float maximum give a finite estimate (``+-inf`` only
    where the exact one leaves the range), never NaN.
    """
    check_tensor_param(mean, "mean", layout="[B, d]")
    check_tensor_param(log_std, "log_std", layout="[B, d]")
    if mean.ndim != 2 or mean.shape != log_std.shape:
        raise ValueError(f"mean and log_std must both be [B, d]; got {list(mean.shape)} and {list(log_std.shape)}")
    s = check_samples(samples)
    check_generator(generator, mean.device)
    b, d = mean.shape
    cf = CountingF(f, b, mean.dtype)
    mu, sd = mean.detach(), log_std.detach().exp()
    info = torch.finfo(sd.dtype)
    if not bool(((sd >= info.tiny) & (sd <= info.max)).all()):
        raise ValueError(f"log_std must give standard deviations exp(log_std) in [{info.tiny:.4g}, {info.max:.4g}] "
                         f"(normal {sd.dtype} numbers: they divide the estimate); got log_std in "
                         f"[{float(log_std.detach().min()):.4g}, {float(log_std.detach().max()):.4g}]")
    x = mu + sd * normal((s, b, d), mu, generator)  # [S, B, d]
    rayleigh = torch.sqrt(-2.0 * torch.log(uniform((s, b, d), mu, generator)))  # [S, B, d]
    maxwell = normal((s, b, d, 3), mu, generator).norm(dim=-1)  # [S, B, d]
    sign = torch.where(uniform((s, b, d), mu, generator) < 0.5, -1.0, 1.0).to(mu.dtype)
    eye = torch.eye(d, dtype=torch.bool, device=mu.device)  # [d(j), d]
    base = x[:, :, None, :].expand(s, b, d, d)  # [S, B, d(j), d]

    def with_coord(val: Tensor) -> Tensor:  # val [S, B, d]: x with coordinate j set to val_j -> f  [S, B, d]
        pts = torch.where(eye, val[:, :, :, None], base)  # [S, B, d(j), d]
        pts = pts.movedim(2, 1).reshape(s * d, b, d)  # [S*d, B, d]
        with torch.no_grad():
            return cf(pts).detach().reshape(s, d, b).movedim(1, 2)  # [S, B, d]

    plus, minus, maxw = mu + sd * rayleigh, mu - sd * rayleigh, mu + sd * sign * maxwell
    noise = max(float(t.abs().amax()) for t in (x - mu, rayleigh, maxwell))  # cheap bound first
    bound = float(mu.abs().amax()) + float(sd.amax()) * noise
    if not bound <= info.max and not all(bool(torch.isfinite(p).all()) for p in (x, plus, minus, maxw)):
        raise ValueError(f"mean + exp(log_std) * eps overflows {mu.dtype} (max |mean| = {float(mu.abs().max()):.4g}, "
                         f"max exp(log_std) = {float(sd.max()):.4g}): use smaller values or a wider dtype")
    fx = cf(x)  # [S, B]
    f_plus, f_minus, f_max = with_coord(plus), with_coord(minus), with_coord(maxw)
    half = math.sqrt(2 * math.pi) / 2
    g_mean = safe_mean(f_plus * 0.5 - f_minus * 0.5, 0) / (sd * half)  # [B, d]: mean (f+ - f-) / (sd sqrt(2 pi))
    g_log_std = safe_mean(f_max * 0.5 - fx.detach()[..., None] * 0.5, 0) * 2.0  # [B, d]
    n = cf.count
    est_mean = finish(safe_mean(fx, 0), mean, g_mean, n, samples=x, f_values=fx.detach())
    est_std = finish(torch.zeros_like(fx[0].detach()), log_std, g_log_std, n)
    return est_mean, est_std
