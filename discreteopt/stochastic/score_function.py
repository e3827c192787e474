"""Score-function (REINFORCE / likelihood-ratio) estimators.

``grad E_theta[f(z)] = E[f(z) grad log p_theta(z)]``, estimated with ``S`` samples as

    g = 1/S sum_i (f(z_i) - b_i) s_i + correction,       s_i = grad log p_theta(z_i) = z_i - E[z]

with a baseline ``b`` from :mod:`discreteopt.stochastic.baselines` (Williams, 1992, "Simple statistical
gradient-following algorithms for connectionist reinforcement learning").

:func:`rao_blackwell` sums out each variable of a factorised distribution exactly (the "local expectation
gradient" of Titsias & Lazaro-Gredilla, 2015):

    d/d theta_v E[f] = E_{z_{-v}} [ sum_c f(z_{-v}, z_v = c) d p_v(c) / d theta_v ],

which costs ``1 + V (C - 1)`` evaluations per sample (``V`` variables with ``C`` values) and has lower variance
than any baseline.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._types import (
    CountingF,
    Estimate,
    SampleFn,
    check_generator,
    check_samples,
    finish,
    mean_product,
    safe_mean,
)
from .baselines import Baseline, as_baseline
from .families import Family, as_family


def reinforce(
    f: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    samples: int = 1,
    baseline: Baseline | None = None,
    generator: torch.Generator | None = None,
) -> Estimate:
    """REINFORCE: ``g = mean_i (f(z_i) - b_i) grad log p(z_i) + correction``; ``n_evals = samples``.

    ``logits`` ``[B, *E]`` (layout of ``family``, default :class:`Bernoulli`); ``f``: ``[S, B, *E] -> [S, B]``
    (integer/bool values are cast to the logits' dtype); ``baseline`` one of :mod:`.baselines` (default none).

    Precision: the scores ``z - E[z]`` keep full relative precision at extreme logits, and the leave-one-out
    baselines never subtract a sample's own value. Without a baseline, a large common offset in ``f`` is still
    multiplied by the float32 rounding of the scores (``E[s] = 0`` holds only to ~1e-7 relative), a bias of about
    ``1e-7 |E f|``; a leave-one-out baseline (:func:`~.multisample.rloo`) cancels the offset exactly.

    >>> est = reinforce(lambda z: (z - t).pow(2).sum(-1), logits, samples=4, baseline=LeaveOneOut())
    >>> est.surrogate.backward()          # logits.grad ~ d E[f] / d logits
    """
    family = as_family(family)
    family.check(logits, "logits")
    s = check_samples(samples)
    check_generator(generator, logits.device)
    base = as_baseline(baseline)
    cf = CountingF(f, logits.shape[0], logits.dtype)
    z = family.sample(logits, s, generator)  # [S, B, *E]
    fv = cf(z)  # [S, B]
    fd = fv.detach()
    score = family.score(logits, z)  # [S, B, *E]
    g, aux = score_function_gradient(base, fd, score, logits.detach(), z)
    return finish(safe_mean(fv, 0), logits, g, cf.count, samples=z, f_values=fd, aux_loss=aux)


def score_function_gradient(
    baseline: Baseline, f_values: Tensor, scores: Tensor, params: Tensor, z: Tensor
) -> tuple[Tensor, Tensor | None]:
    """``(mean_i (f_i - b_i) s_i + correction [B, *E], aux_loss)`` for values ``[S, B]`` and scores ``[S, B, *E]``.

    The weights ``f_i - b_i``, their products with the scores and the mean are formed in float64 (except on MPS)
    and cast back to the scores' dtype: in float32, ``f = 1e4 + O(1)`` would otherwise round each product by
    ``~1e-3`` of the gradient, an error that depends on the sample itself (a bias, not noise). The weights are
    halved (``f_i / 2 - b_i / 2``, exact) and the mean of the products is overflow-safe (:func:`._types.mean_product`),
    so values or scores near the float maximum give a finite estimate, or ``+-inf`` where the exact one leaves the
    range, never NaN.
    """
    out = baseline(f_values, scores, params, z)
    extra = [1] * (scores.ndim - 2)
    wide = torch.float64 if scores.device.type != "mps" else scores.dtype
    b = out.value if out.value.ndim == scores.ndim else out.value.reshape(*out.value.shape, *extra)
    half = f_values.to(wide).reshape(*f_values.shape, *extra) * 0.5 - b.to(wide) * 0.5  # (f - b) / 2, finite
    g = mean_product(half, scores.to(wide), 0) * 2.0  # [B, *E]
    if out.correction is not None:
        g = g + out.correction.to(wide)
    return g.to(scores.dtype), out.aux_loss


def local_table(cf: CountingF, family: Family, z: Tensor, fz: Tensor) -> Tensor:
    """``f`` with one variable changed: ``T[i, b, v, c] = f(z_i with z_iv = c)`` ``[S, B, V, C]`` (detached).

    Evaluates ``f`` only where ``c`` differs from the sampled value (``V (C - 1)`` points per sample) and reuses
    ``fz = f(z)`` ``[S, B]`` for the rest.
    """
    s, b = z.shape[:2]
    v, c = family.n_factors(tuple(z.shape[2:]))
    idx = family.factor_index(z)  # [S, B, V]
    shift = torch.arange(1, c, device=z.device)  # [C-1]
    alt = (idx[..., None] + shift) % c  # [S, B, V, C-1]
    z_alt = family.substitute(z, alt)  # [S, B, V, C-1, *E]
    z_alt = z_alt.movedim(1, 3).reshape(s * v * (c - 1), b, *z.shape[2:])  # [S*V*(C-1), B, *E]
    with torch.no_grad():
        f_alt = cf(z_alt).detach().reshape(s, v, c - 1, b).movedim(3, 1)  # [S, B, V, C-1]
    table = torch.empty((s, b, v, c), dtype=fz.dtype, device=fz.device)
    table.scatter_(-1, idx[..., None], fz.detach()[..., None, None].expand(s, b, v, 1))
    table.scatter_(-1, alt, f_alt)
    return table


def rao_blackwell(
    f: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Rao-Blackwellised REINFORCE for factorised Bernoulli/Categorical variables (local expectation gradients).

    Surrogate ``mean_i sum_v sum_c p_v(c) T[i, v, c]`` (``T`` from :func:`local_table`, detached), whose gradient is
    ``mean_i sum_v sum_c T[i, v, c] grad p_v(c)``; ``n_evals = samples * (1 + V (C - 1))``.
    """
    family = as_family(family)
    family.check(logits, "logits")
    s = check_samples(samples)
    check_generator(generator, logits.device)
    family.n_factors(tuple(logits.shape[1:]))  # raises for non-factorised families
    cf = CountingF(f, logits.shape[0], logits.dtype)
    z = family.sample(logits, s, generator)  # [S, B, *E]
    fv = cf(z)  # [S, B]
    table = local_table(cf, family, z, fv)  # [S, B, V, C]
    with torch.enable_grad():
        th = logits.detach().clone().requires_grad_(True)
        probs = family.factor_probs(th)  # [B, V, C]
        term = (probs[None] * table).sum((-1, -2)).mean(0)  # [B]
        (g,) = torch.autograd.grad(term.sum(), th)  # [B, *E]
    return finish(safe_mean(fv, 0), logits, g, cf.count, samples=z, f_values=fv.detach())
