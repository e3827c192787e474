"""Pathwise (reparameterisation) gradients for reparameterisable distributions: a thin wrapper over ``rsample``.

For ``x = g(theta, eps)`` with ``eps`` independent of ``theta`` (``torch.distributions`` with ``has_rsample``),

    grad E_theta[f(x)] = E_eps[grad_x f(g(theta, eps)) d g / d theta],

estimated by ``1/S sum_i f(x_i)`` and autograd (Kingma & Welling, 2014; Rezende, Mohamed & Wierstra, 2014;
Mohamed et al., 2020, sec. 5). Unbiased for ``f`` differentiable almost everywhere with integrable gradient.
"""

from __future__ import annotations

import torch
from torch import distributions as D

from ._types import CountingF, Estimate, SampleFn, check_samples


def _rsample(dist: D.Distribution, s: int, generator: torch.Generator | None) -> torch.Tensor:
    """``dist.rsample((s,))``; with a ``generator``, the global RNG is seeded from it inside ``fork_rng``."""
    if generator is None:
        return dist.rsample((s,))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):  # CPU state always forked, CUDA when in use
        torch.manual_seed(seed)
        return dist.rsample((s,))


def pathwise(
    f: SampleFn,
    distribution: D.Distribution,
    *,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Reparameterisation estimator of ``grad E[f(x)]``, ``x ~ distribution``; ``n_evals = samples``.

    ``distribution`` has ``batch_shape = [B, ...]`` and ``has_rsample`` (Normal, MultivariateNormal, Gamma, Beta,
    RelaxedOneHotCategorical, ...); ``f`` maps ``[S, *batch_shape, *event_shape]`` -> ``[S, B]``. Gradients reach
    whatever parameters built ``distribution``; ``torch.distributions`` cannot take a generator, so a given
    ``generator`` seeds the global RNG inside :func:`torch.random.fork_rng` (the global state is left untouched).
    """
    if not isinstance(distribution, D.Distribution):
        raise ValueError(f"distribution must be a torch.distributions.Distribution; got {type(distribution).__name__}")
    if not distribution.has_rsample:
        raise ValueError(f"distribution {type(distribution).__name__} has no rsample (not reparameterisable); use a "
                         "score-function estimator (reinforce, rloo) or a relaxation instead")
    if len(distribution.batch_shape) < 1:
        raise ValueError("distribution must have a batch dim first (batch_shape [B, ...]); got batch_shape "
                         f"{list(distribution.batch_shape)}. Expand it, e.g. Normal(mu[None], sigma[None])")
    s = check_samples(samples)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    cf = CountingF(f, distribution.batch_shape[0])
    x = _rsample(distribution, s, generator)  # [S, *batch_shape, *event_shape]
    fv = cf(x)  # [S, B]
    per_item = fv.mean(0)  # [B]
    return Estimate(per_item.sum(), per_item, cf.count, samples=x.detach(), f_values=fv.detach())
