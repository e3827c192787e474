"""Pathwise (reparameterisation) gradients for reparameterisable distributions: a thin wrapper over ``rsample``.

For ``x = g(theta, eps)`` with ``eps`` independent of ``theta`` (``torch.distributions`` with ``has_rsample``),

    grad E_theta[f(x)] = E_eps[grad_x f(g(theta, eps)) d g / d theta],

estimated by ``1/S sum_i f(x_i)`` and autograd (Kingma & Welling, 2014; Rezende, Mohamed & Wierstra, 2014;
Mohamed, Rosca, Figurnov & Mnih, 2020, "Monte Carlo gradient estimation in machine learning", sec. 5).

When is it unbiased? Exactly when the derivative may be moved inside the expectation: ``theta -> f(g(theta,
eps))`` must be absolutely continuous along the reparameterisation path for almost every ``eps`` with an
integrable derivative -- e.g. ``f`` differentiable, or Lipschitz (ReLU, ``|x|``, hinge), and ``g`` smooth in
``theta``, with ``E[sup_theta |grad_theta f(g(theta, eps))|] < inf`` near ``theta`` (dominated convergence).
"Differentiable almost everywhere" is *not* enough: a step function ``f(x) = 1[x > 0]`` has derivative 0 almost
everywhere, so the estimate is 0 while ``d/d mu P(x > 0) = N(0; mu, sigma^2) != 0``; the jump contributes a term
the pathwise estimator cannot see. For such ``f`` use a score-function or measure-valued estimator.
"""

from __future__ import annotations

import torch
from torch import distributions as D

from ._types import CountingF, Estimate, SampleFn, check_samples, safe_mean, safe_sum


def _check_parameters(dist: D.Distribution) -> None:
    """Every tensor parameter of ``dist`` (its ``arg_constraints`` that are set, and those of a wrapped
    ``base_dist``) must be real floating: ``ValueError`` naming it otherwise."""
    seen = 0
    while isinstance(dist, D.Distribution) and seen < 16:
        for name in getattr(dist, "arg_constraints", {}) or {}:
            value = vars(dist).get(name)  # set parameters only (no lazily computed ones)
            if isinstance(value, torch.Tensor) and not value.is_floating_point():
                kind = "complex" if value.is_complex() else "integer or bool"
                raise ValueError(f"distribution {type(dist).__name__} has {kind} parameter {name} (dtype "
                                 f"{value.dtype}); the pathwise estimator needs real floating parameters: pass floats, "
                                 f"e.g. {name}.double()")
        dist = getattr(dist, "base_dist", None)
        seen += 1


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

    Surrogate ``sum_b 1/S sum_i f(x_i)[b]`` with ``x_i = distribution.rsample()``; its backward is the estimate
    (unbiased under the condition in the module docstring: ``f`` differentiable or Lipschitz along the path, not
    merely differentiable almost everywhere).

    Arguments:
        f: samples ``[S, *batch_shape, *event_shape]`` -> values ``[S, B]``, floating and differentiable in its
            input (an integer or bool output carries no gradient and raises ``ValueError``).
        distribution: a ``torch.distributions.Distribution`` with ``batch_shape = [B, ...]`` and ``has_rsample``
            (Normal, MultivariateNormal, Gamma, Beta, RelaxedOneHotCategorical, ...). Gradients reach whatever
            parameters built it. Integer, bool and complex parameters are refused (``ValueError``: pass floats;
            ``torch.distributions`` cannot sample them). Non-finite samples raise ``ValueError`` naming the
            distribution (not ``f``).
        samples: ``S >= 1``.
        generator: ``torch.distributions`` cannot take one, so a given generator seeds the global RNG inside
            :func:`torch.random.fork_rng` (the global state is left untouched).

    >>> mu = torch.zeros(4, 3, requires_grad=True)
    >>> est = pathwise(lambda x: (x ** 2).sum(-1), D.Normal(mu, 1.0), samples=8)
    >>> est.surrogate.backward()    # mu.grad ~ 2 mu
    """
    if not isinstance(distribution, D.Distribution):
        raise ValueError(f"distribution must be a torch.distributions.Distribution; got {type(distribution).__name__}")
    if not distribution.has_rsample:
        raise ValueError(f"distribution {type(distribution).__name__} has no rsample (not reparameterisable); use a "
                         "score-function estimator (reinforce, rloo) or a relaxation instead")
    if len(distribution.batch_shape) < 1:
        raise ValueError("distribution must have a batch dim first (batch_shape [B, ...]); got batch_shape "
                         f"{list(distribution.batch_shape)}. Expand it, e.g. Normal(mu[None], sigma[None])")
    _check_parameters(distribution)
    s = check_samples(samples)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    x = _rsample(distribution, s, generator)  # [S, *batch_shape, *event_shape]
    if not x.is_floating_point():
        raise ValueError(f"distribution {type(distribution).__name__} produced {x.dtype} samples; the pathwise "
                         "estimator needs real-valued samples")
    bad = ~torch.isfinite(x.detach())
    if bool(bad.any()):
        raise ValueError(f"distribution {type(distribution).__name__}.rsample returned {int(bad.sum())} NaN or inf "
                         f"values out of {x.numel()} (check its parameters, e.g. NaN/inf or extreme values, or use "
                         "a wider dtype); f was not called")
    cf = CountingF(f, distribution.batch_shape[0], x.dtype)
    fv = cf.through("pathwise")(x)  # [S, B]; integer/bool outputs rejected (no gradient through them)
    per_item = safe_mean(fv, 0)  # [B]
    return Estimate(safe_sum(per_item), per_item, cf.count, samples=x.detach(), f_values=fv.detach())
