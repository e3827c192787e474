"""Exact expectations and gradients by enumeration, and a statistical check for estimators.

Use these to test any gradient estimator (yours included):

>>> value, grad = gradient(f, logits, Bernoulli())          # E[f] [B] and d E[f] / d logits [B, *E]
>>> ests = torch.stack([my_estimator(f, logits) for _ in range(2000)])
>>> assert_unbiased(ests, grad)                             # |mean - exact| <= z * stderr + atol

``E_theta[f] = sum_z p_theta(z) f(z)`` is computed over every outcome (``2^d`` for ``d <= 20`` Bernoulli variables,
``K^V`` for categorical ones, ``C(n, k)`` subsets) and differentiated with autograd. Gaussian expectations use a
tensor-product Gauss-Hermite rule (exact for polynomials of degree ``< 2 * nodes`` in each coordinate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._types import SampleFn, check_tensor_param
from .families import Family, as_family


def _outcome_values(f: SampleFn, params: Tensor, family: Family) -> tuple[Tensor, Tensor]:
    """Every outcome's log-probability ``[N, B]`` and value ``[N, B]``."""
    b = params.shape[0]
    outs = family.outcomes(tuple(params.shape[1:]), params.detach())  # [N, *E]
    z = outs[:, None].expand(outs.shape[0], b, *outs.shape[1:])  # [N, B, *E]
    values = f(z)
    if tuple(values.shape) != (z.shape[0], b):
        raise ValueError(f"f must map [S, B, *E] to [S, B]; got {list(values.shape)}")
    return family.log_prob(params, z), values


def expectation(f: SampleFn, params: Tensor, family: Family | None = None) -> Tensor:
    """``E_theta[f(z)]`` ``[B]`` by enumeration, differentiable in ``params``."""
    family = as_family(family)
    family.check(params, "params")
    logp, values = _outcome_values(f, params, family)
    return (logp.exp() * values).sum(0)


def gradient(f: SampleFn, params: Tensor, family: Family | None = None) -> tuple[Tensor, Tensor]:
    """``(E[f] [B], d E[f] / d params [B, *E])`` by enumeration and autograd."""
    with torch.enable_grad():
        th = params.detach().clone().requires_grad_(True)
        value = expectation(f, th, family)
        (g,) = torch.autograd.grad(value.sum(), th)
    return value.detach(), g


def multisample_expectation(
    f: SampleFn,
    params: Tensor,
    family: Family | None,
    k: int,
    combine: Callable[[Tensor], Tensor],
) -> Tensor:
    """``E[combine(f(z_1), ..., f(z_k))]`` over ``k`` i.i.d. samples ``[B]``, differentiable.

    ``combine`` maps values ``[k, M, B]`` to ``[M, B]``; e.g. VIMCO's bound
    ``lambda v: v.logsumexp(0) - math.log(v.shape[0])``. Costs ``N^k`` terms for ``N`` outcomes.
    """
    family = as_family(family)
    family.check(params, "params")
    logp, values = _outcome_values(f, params, family)  # [N, B]
    n = logp.shape[0]
    if n**k > 2_000_000:
        raise ValueError(f"{n}^{k} sample tuples is too many to enumerate")
    grids = torch.meshgrid(*[torch.arange(n, device=params.device)] * k, indexing="ij")
    idx = torch.stack([g.reshape(-1) for g in grids])  # [k, M]
    tuple_logp = logp[idx].sum(0)  # [M, B]
    tuple_vals = combine(values[idx])  # [M, B]
    return (tuple_logp.exp() * tuple_vals).sum(0)


def gaussian_expectation(f: SampleFn, mean: Tensor, log_std: Tensor, nodes: int = 24) -> Tensor:
    """``E[f(mean + exp(log_std) * eps)]``, ``eps ~ N(0, I)``, by Gauss-Hermite quadrature ``[B]``.

    ``mean`` and ``log_std`` are ``[B, d]`` with ``d <= 4`` (``nodes^d`` evaluations); differentiable in both.
    """
    check_tensor_param(mean, "mean", layout="[B, d]")
    check_tensor_param(log_std, "log_std", layout="[B, d]")
    if mean.shape != log_std.shape or mean.ndim != 2:
        raise ValueError(f"mean and log_std must both be [B, d]; got {list(mean.shape)} and {list(log_std.shape)}")
    d = mean.shape[1]
    if d > 4:
        raise ValueError(f"gaussian_expectation enumerates nodes^d points; d must be <= 4, got {d}")
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2 / 2), sum w = sqrt(2 pi)
    x = torch.as_tensor(x, dtype=mean.dtype, device=mean.device)
    w = torch.as_tensor(w / math.sqrt(2 * math.pi), dtype=mean.dtype, device=mean.device)
    grids = torch.meshgrid(*[torch.arange(nodes, device=mean.device)] * d, indexing="ij")
    idx = torch.stack([g.reshape(-1) for g in grids], dim=-1)  # [M, d]
    eps = x[idx]  # [M, d]
    weight = w[idx].prod(-1)  # [M]
    pts = mean[None] + log_std.exp()[None] * eps[:, None, :]  # [M, B, d]
    return (weight[:, None] * f(pts)).sum(0)


@dataclass
class UnbiasedCheck:
    """Outcome of :func:`check_unbiased`: per-entry ``|mean - target|`` against ``z * stderr + atol``."""

    ok: bool
    max_abs_error: float
    max_z: float
    mean: Tensor
    stderr: Tensor
    target: Tensor

    def __str__(self) -> str:
        return (f"{'OK' if self.ok else 'FAILED'}: max |mean - exact| = {self.max_abs_error:.3g}, "
                f"max z-score = {self.max_z:.2f}\n  mean  = {self.mean.flatten()[:8].tolist()}\n"
                f"  exact = {self.target.flatten()[:8].tolist()}\n  stderr= {self.stderr.flatten()[:8].tolist()}")


def check_unbiased(estimates: Tensor, target: Tensor, z: float = 4.5, atol: float = 1e-6) -> UnbiasedCheck:
    """Compare the mean of ``N`` independent estimates ``[N, *shape]`` with the exact ``target`` ``[*shape]``.

    Passes when every entry satisfies ``|mean - target| <= z * std / sqrt(N) + atol`` (``std`` the sample std of the
    estimates). With ``z = 4.5`` a correct estimator fails an entry with probability ~7e-6.
    """
    if estimates.ndim < 1 or estimates.shape[0] < 2:
        raise ValueError(f"estimates must be [N, *shape] with N >= 2; got {list(estimates.shape)}")
    if tuple(estimates.shape[1:]) != tuple(target.shape):
        raise ValueError(f"target must have shape {list(estimates.shape[1:])}; got {list(target.shape)}")
    est = estimates.detach().double()
    tgt = target.detach().double().to(est.device)
    mean = est.mean(0)
    stderr = est.std(0) / math.sqrt(est.shape[0])
    err = (mean - tgt).abs()
    zs = err / (stderr + 1e-300)
    ok = bool((err <= z * stderr + atol).all())
    return UnbiasedCheck(ok, float(err.max()), float(zs.max()), mean, stderr, tgt)


def assert_unbiased(estimates: Tensor, target: Tensor, z: float = 4.5, atol: float = 1e-6) -> UnbiasedCheck:
    """:func:`check_unbiased`, raising ``AssertionError`` with a report when it fails."""
    res = check_unbiased(estimates, target, z=z, atol=atol)
    if not res.ok:
        raise AssertionError(str(res))
    return res
