"""ARM and DisARM: antithetic estimators for factorised Bernoulli variables with logits ``theta``.

ARM (Yin & Zhou, 2019, "ARM: Augment-REINFORCE-merge gradient for stochastic binary networks"), ``u ~ U(0,1)^d``:

    g_ARM = (f(1[u > sigmoid(-theta)]) - f(1[u < sigmoid(theta)])) (u - 1/2).

DisARM (Dong, Mnih & Tucker, 2020, "DisARM: an antithetic gradient estimator for binary latent variables")
integrates out the augmentation given the antithetic pair ``b = 1[u < sigmoid(theta)]``,
``b~ = 1[1 - u < sigmoid(theta)]``:

    g_DisARM = 1/2 (f(b) - f(b~)) (-1)^{b~} 1[b != b~] sigmoid(|theta|).

Both use 2 evaluations per pair; ``samples`` is the number of pairs (``n_evals = 2 * samples``), averaged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._types import CountingF, Estimate, SampleFn, check_generator, check_samples, check_tensor_param, finish, uniform


def _pairs(f, logits, samples, generator):
    check_tensor_param(logits, "logits", layout="[B, *E] (Bernoulli logits)")
    s = check_samples(samples)
    check_generator(generator, logits.device)
    cf = CountingF(f, logits.shape[0])
    u = uniform((s, *logits.shape), logits.detach(), generator)  # [S, B, *E]
    return cf, u, s


def arm(
    f: SampleFn, logits: Tensor, *, samples: int = 1, generator: torch.Generator | None = None
) -> Estimate:
    """ARM estimator of ``grad E[f(z)]``, ``z ~ Bernoulli(sigmoid(logits))``; ``logits`` ``[B, *E]``."""
    cf, u, s = _pairs(f, logits, samples, generator)
    th = logits.detach()
    b1 = (u > torch.sigmoid(-th)).to(th.dtype)  # [S, B, *E]
    b2 = (u < torch.sigmoid(th)).to(th.dtype)
    f1, f2 = cf(b1), cf(b2)  # [S, B]
    diff = (f1 - f2).detach().reshape(*f1.shape, *([1] * (u.ndim - 2)))
    g = (diff * (u - 0.5)).mean(0)  # [B, *E]
    value = (0.5 * (f1 + f2)).mean(0)
    return finish(value, logits, g, cf.count, samples=torch.stack([b1, b2]), f_values=torch.stack([f1, f2]).detach())


def disarm(
    f: SampleFn, logits: Tensor, *, samples: int = 1, generator: torch.Generator | None = None
) -> Estimate:
    """DisARM estimator of ``grad E[f(z)]``, ``z ~ Bernoulli(sigmoid(logits))``; ``logits`` ``[B, *E]``."""
    cf, u, s = _pairs(f, logits, samples, generator)
    th = logits.detach()
    p = torch.sigmoid(th)
    b = (u < p).to(th.dtype)  # [S, B, *E]
    bt = (1.0 - u < p).to(th.dtype)  # antithetic
    fb, fbt = cf(b), cf(bt)  # [S, B]
    diff = (fb - fbt).detach().reshape(*fb.shape, *([1] * (u.ndim - 2)))
    sign = 1.0 - 2.0 * bt  # (-1)^{b~}
    g = (0.5 * diff * sign * (b != bt).to(th.dtype) * torch.sigmoid(th.abs())).mean(0)  # [B, *E]
    value = (0.5 * (fb + fbt)).mean(0)
    return finish(value, logits, g, cf.count, samples=torch.stack([b, bt]), f_values=torch.stack([fb, fbt]).detach())
