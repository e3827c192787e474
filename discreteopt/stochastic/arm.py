"""ARM and DisARM: antithetic estimators for Bernoulli variables, and for categorical ones via stick-breaking.

Bernoulli with logits ``theta`` and one uniform ``u ~ U(0, 1)^d`` per pair, the antithetic pair
``b = 1[u < sigmoid(theta)]``, ``b~ = 1[1 - u < sigmoid(theta)]`` (both exact samples):

* ARM (Yin & Zhou, 2019, "ARM: Augment-REINFORCE-merge gradient for stochastic binary networks"):
  ``g_ARM = (f(b~) - f(b)) (u - 1/2)``.
* DisARM (Dong, Mnih & Tucker, 2020, "DisARM: an antithetic gradient estimator for binary latent variables";
  also Yin et al., 2020, "Probabilistic best subset selection ... U2G") integrates out the augmentation given
  the pair: ``g_DisARM = 1/2 (f(b) - f(b~)) (-1)^{b~} 1[b != b~] sigmoid(|theta|)``.

Categorical variables (Dong, Mnih & Tucker, 2021, "Coupled gradient estimators for discrete latent variables")
are written as a sequence of binary decisions (stick-breaking): with class probabilities ``pi`` (classes sorted by
decreasing probability, a deterministic relabelling that keeps the estimator unbiased), draw independent
``c_j ~ Bernoulli(sigmoid(eta_j))``, ``eta_j = log pi_j - log sum_{l > j} pi_l`` for ``j < K - 1``; the category
is the first ``j`` with ``c_j = 1`` (the last class if none), which has law exactly ``pi``. ARM/DisARM on the
``K - 1`` independent binary variables give unbiased ``d/d eta``, mapped back to the logits by the chain rule
(autograd through ``eta(logits)``). Coordinate ``j`` only matters when at least one of the two sequences reaches
it (``c_l = 0`` for all ``l < j``); elsewhere its term has zero conditional mean given the other uniforms and is
dropped (Rao-Blackwellisation, as in the paper).

Both use 2 evaluations per pair; ``samples`` is the number of pairs (``n_evals = 2 * samples``), averaged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ._types import (
    CountingF,
    Estimate,
    SampleFn,
    check_generator,
    check_samples,
    check_tensor_param,
    finish,
    safe_mean,
    uniform,
)
from .families import Bernoulli, Categorical, Family, as_family

# A coordinate-wise antithetic estimate: (f(b) - f(b~)) [S, B, 1...], u, b, b~, eta [B, *E'] -> g_eta [S, B, *E']
_Rule = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def _arm_rule(diff: Tensor, u: Tensor, b: Tensor, bt: Tensor, eta: Tensor) -> Tensor:
    return -diff * (u - 0.5)  # (f(b~) - f(b)) (u - 1/2)


def _disarm_rule(diff: Tensor, u: Tensor, b: Tensor, bt: Tensor, eta: Tensor) -> Tensor:
    sign = 1.0 - 2.0 * bt  # (-1)^{b~}
    return 0.5 * diff * sign * (b != bt).to(u.dtype) * torch.sigmoid(eta.abs())


def stick_breaking_logits(logits: Tensor) -> Tensor:
    """Logits ``eta`` ``[B, *V, K-1]`` of the binary decisions of ``Categorical(softmax(logits))`` in class order.

    ``eta_j = log pi_j - log sum_{l > j} pi_l = logits_j - logsumexp(logits_{j+1..K-1})`` (differentiable), formed
    from the logits directly (no ``log_softmax``): ``eta`` is finite, or ``+-inf`` where the exact value leaves the
    float range (logits near the float maximum), never NaN. ``logits``: a real floating, finite, non-empty tensor
    ``[..., K]`` with ``K >= 2`` (else ``ValueError``).
    """
    check_tensor_param(logits, "logits", min_ndim=1, layout="[..., K]")
    if logits.shape[-1] < 2:
        raise ValueError(f"logits must have K >= 2 classes in the last dim; got shape {list(logits.shape)}")
    tail = torch.logcumsumexp(logits[..., 1:].flip(-1), dim=-1).flip(-1)  # logsumexp_{l > j} logits_l  [..., K-1]
    return logits[..., :-1] - tail  # [B, *V, K-1]


def _decode(c: Tensor, order: Tensor) -> Tensor:
    """Binary decisions ``c`` ``[S, B, *V, K-1]`` in sorted class order -> one-hot samples ``[S, B, *V, K]``."""
    ones = torch.ones_like(c[..., :1])
    first = torch.cat([c, ones], dim=-1).argmax(-1)  # first 1 (argmax returns the first maximum)  [S, B, *V]
    idx = order.expand(*c.shape[:2], *order.shape[1:]).gather(-1, first[..., None])[..., 0]  # [S, B, *V]
    return F.one_hot(idx, order.shape[-1]).to(c.dtype)


def _reached(c: Tensor) -> Tensor:
    """``1[c_l = 0 for all l < j]`` ``[S, B, *V, K-1]``: decision ``j`` is still undecided."""
    before = torch.cumsum(c, dim=-1) - c  # ones strictly before j
    return (before == 0).to(c.dtype)


def _antithetic(f: SampleFn, logits: Tensor, family: Family | None, samples: int,
                generator: torch.Generator | None, rule: _Rule, who: str) -> Estimate:
    family = as_family(family)
    if not isinstance(family, (Bernoulli, Categorical)):
        raise ValueError(f"family must be Bernoulli or Categorical for {who}; got {family!r}")
    family.check(logits, "logits")
    s = check_samples(samples)
    check_generator(generator, logits.device)
    cf = CountingF(f, logits.shape[0], logits.dtype)
    categorical = isinstance(family, Categorical)
    with torch.enable_grad():
        th = logits.detach().clone().requires_grad_(True)  # private leaf: the estimate is d/d th
        if categorical:
            order = th.detach().argsort(dim=-1, descending=True)  # [B, *V, K]
            eta = stick_breaking_logits(th.gather(-1, order))  # [B, *V, K-1]
        else:
            eta = th
        e = eta.detach()
        u = uniform((s, *e.shape), e, generator)  # [S, B, *E']
        p = torch.sigmoid(e)
        b = (u < p).to(e.dtype)  # [S, B, *E']
        bt = (1.0 - u < p).to(e.dtype)  # antithetic
        zb, zbt = (_decode(b, order), _decode(bt, order)) if categorical else (b, bt)
        fb, fbt = cf(zb), cf(zbt)  # [S, B]
        diff = (fb - fbt).detach().reshape(*fb.shape, *([1] * (u.ndim - 2)))  # [S, B, 1...]
        g_eta = rule(diff, u, b, bt, e)  # [S, B, *E']
        if categorical:
            g_eta = g_eta * torch.maximum(_reached(b), _reached(bt))
            (g,) = torch.autograd.grad(eta, th, grad_outputs=g_eta.mean(0))  # chain rule  [B, *V, K]
        else:
            g = g_eta.mean(0)  # [B, *E]
    value = safe_mean(0.5 * fb + 0.5 * fbt, 0)
    return finish(value, logits, g, cf.count, samples=torch.stack([zb, zbt]), f_values=torch.stack([fb, fbt]).detach())


def arm(
    f: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """ARM estimator of ``grad E[f(z)]`` for Bernoulli (default) or Categorical (stick-breaking) ``logits``.

    ``logits`` ``[B, *E]`` (``[B, *V, K]`` for Categorical); ``n_evals = 2 * samples``.
    """
    return _antithetic(f, logits, family, samples, generator, _arm_rule, "arm")


def disarm(
    f: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """DisARM estimator of ``grad E[f(z)]`` for Bernoulli (default) or Categorical (stick-breaking) ``logits``.

    ``logits`` ``[B, *E]`` (``[B, *V, K]`` for Categorical); ``n_evals = 2 * samples``.
    """
    return _antithetic(f, logits, family, samples, generator, _disarm_rule, "disarm")
