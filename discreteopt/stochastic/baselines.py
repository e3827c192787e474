"""Baselines and control variates for the score-function (REINFORCE) estimator.

A baseline turns ``g = mean_i f(z_i) s_i`` (``s_i = d log p(z_i) / d theta``) into
``g = mean_i (f(z_i) - b_i) s_i + correction``. It stays unbiased as long as ``b_i`` does not depend on ``z_i``
(``E[s] = 0``) and ``correction`` is the exact mean of whatever else it subtracts. Every baseline here is
unbiased: the ones estimated from the batch of samples use the *other* samples only (leave-one-out).

Protocol: ``baseline(f_values [S, B], scores [S, B, *E], params [B, *E], z [S, B, *E]) -> BaselineOutput``
(all inputs detached), where ``BaselineOutput.value`` is ``[S, B]`` (one baseline per sample) or ``[S, B, *E]``
(one per sample and parameter).

References: Williams (1992); Greensmith, Bartlett & Baxter (2004) for the optimal constant baseline
``b*_j = E[f s_j^2] / E[s_j^2]``; Mnih & Gregor (2014, NVIL) for learned baselines; Kool, van Hoof & Welling
(2019) for leave-one-out; Ross (2013, "Simulation") for the optimal control-variate scaling ``c* = Cov / Var``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
from torch import Tensor, nn

from ._types import pow2_unit
from .loo import loo_mean, loo_sum


class BaselineOutput(NamedTuple):
    value: Tensor  # [S, B] or [S, B, *E], no autograd
    correction: Tensor | None = None  # [B, *E] added to the gradient estimate
    aux_loss: Tensor | None = None  # trains the baseline's own parameters


class Baseline(Protocol):
    def __call__(self, f_values: Tensor, scores: Tensor, params: Tensor, z: Tensor) -> BaselineOutput: ...


def _need_two(f_values: Tensor, who: str) -> None:
    if f_values.shape[0] < 2:
        raise ValueError(f"samples must be >= 2 for the {who} baseline (it uses the other samples); "
                         f"got {f_values.shape[0]}")


class NoBaseline:
    """``b = 0``: plain REINFORCE."""

    def __call__(self, f_values, scores, params, z):
        return BaselineOutput(torch.zeros_like(f_values))

    def __repr__(self) -> str:
        return "NoBaseline()"


class MovingAverage:
    """``b = `` exponential moving average of ``E[f]`` over *previous* calls (``b_t = decay b_{t-1} + (1 - decay) f̄_t``).

    Unbiased because it only uses past samples. ``init`` is the baseline of the first call.
    """

    def __init__(self, decay: float = 0.9, init: float = 0.0):
        if not (isinstance(decay, (int, float)) and 0.0 <= decay < 1.0):
            raise ValueError(f"decay must be in [0, 1); got {decay!r}")
        self.decay = float(decay)
        self.value = float(init)

    def __call__(self, f_values, scores, params, z):
        out = torch.full_like(f_values, self.value)
        self.value = self.decay * self.value + (1.0 - self.decay) * float(f_values.mean())
        return BaselineOutput(out)

    def __repr__(self) -> str:
        return f"MovingAverage(decay={self.decay}, value={self.value:.4g})"


class LeaveOneOut:
    """RLOO baseline ``b_i = mean_{k != i} f(z_k)`` ``[S, B]`` (Kool, van Hoof & Welling, 2019); ``samples >= 2``.

    Unbiased because ``b_i`` is a function of the other samples only. It is formed with :func:`~.loo.loo_sum`
    (exclusive prefix + suffix sums), never as ``(sum_k f_k - f_i) / (S - 1)``, whose rounding error depends on
    ``f_i`` and biases the estimate when one value dominates.

    >>> est = reinforce(f, logits, samples=4, baseline=LeaveOneOut())   # same as rloo(f, logits, samples=4)
    """

    def __call__(self, f_values, scores, params, z):
        _need_two(f_values, "leave-one-out")
        return BaselineOutput(loo_mean(f_values))  # [S, B]

    def __repr__(self) -> str:
        return "LeaveOneOut()"


class OptimalConstant:
    """Per-parameter variance-minimising constant ``b*_j = E[f s_j^2] / E[s_j^2]``, estimated leave-one-out.

    Greensmith, Bartlett & Baxter (2004): among constant baselines, ``b*_j`` minimises the variance of coordinate
    ``j`` of ``(f - b) s``. Estimated from the other samples (``samples >= 2``) so that it stays unbiased:

        b_ij = sum_{k != i} f_k s_kj^2 / sum_{k != i} s_kj^2        (0 where the denominator is 0)

    ``value`` has shape ``[S, B, *E]``. Both leave-one-out sums use :func:`~.loo.loo_sum` (no ``total - own``: at
    logits near +-9 in float32 the rare sample's ``s^2 ~ 1`` swallows the others' ``s^2 ~ 1e-8``). ``f`` and the
    scores are divided by powers of two first (:func:`~._types.pow2_unit`; ``b*`` is invariant to the scores' scale
    and scales with ``f``), so large values or scores (``eps / scale`` of a tiny ES scale) cannot overflow ``s^2``
    or ``f s^2`` into ``inf / inf``.

    >>> est = reinforce(f, logits, samples=8, baseline=OptimalConstant())
    """

    def __call__(self, f_values, scores, params, z):
        _need_two(f_values, "optimal constant")
        uf, us = pow2_unit(f_values), pow2_unit(scores)  # exact rescaling: |f / uf|, |s / us| < 2
        fv = (f_values / uf).reshape(*f_values.shape, *([1] * (scores.ndim - 2)))  # [S, B, 1...]
        sn = scores / us
        s2 = sn * sn  # [S, B, *E]
        num = loo_sum(fv * s2)  # [S, B, *E]
        den = loo_sum(s2)
        tiny = torch.finfo(s2.dtype).tiny
        b = torch.where(den > tiny, num / den.clamp(min=tiny), torch.zeros_like(num)) * uf  # [S, B, *E]
        return BaselineOutput(b)

    def __repr__(self) -> str:
        return "OptimalConstant()"


class LearnedBaseline:
    """``b = module(params)`` ``[B]``, trained by ``aux_loss = sum_b mean_i (f(z_i) - b)^2`` (NVIL).

    ``module`` receives the *detached* parameters ``[B, *E]`` (so no gradient leaks into them) and returns ``[B]``
    or ``[B, 1]``; to condition on inputs ``x``, close over them. Add ``est.aux_loss`` to your loss (or backward
    it) and include ``module.parameters()`` in an optimiser.
    """

    def __init__(self, module: nn.Module | Callable[[Tensor], Tensor]):
        if not callable(module):
            raise ValueError(f"module must be callable (params [B, *E] -> [B]); got {type(module).__name__}")
        self.module = module

    def __call__(self, f_values, scores, params, z):
        b = self.module(params.detach())
        if b.ndim == 2 and b.shape[1] == 1:
            b = b[:, 0]
        if tuple(b.shape) != (f_values.shape[1],):
            raise ValueError(f"the learned baseline must return [B] = [{f_values.shape[1]}]; got {list(b.shape)}")
        aux = ((f_values - b[None]) ** 2).mean(0).sum()
        return BaselineOutput(b.detach()[None].expand_as(f_values), aux_loss=aux)

    def __repr__(self) -> str:
        return f"LearnedBaseline({self.module!r})"


class ControlVariate:
    """A control variate ``h(z)`` with known mean, scaled per parameter by ``c*_j = Cov(f s_j, h s_j) / Var(h s_j)``.

    ``g_j = mean_i [f_i s_ij - c_ij (h_i s_ij - d_j E[h])]``: unbiased since ``E[h s] = grad E[h]`` and ``c_ij`` is
    estimated from the other samples (leave-one-out; needs ``samples >= 3`` to be useful, ``>= 2`` to run).

    Arguments:
        h: samples ``[S, B, *E]`` -> ``[S, B]``.
        h_mean: params ``[B, *E]`` -> ``E[h]`` ``[B]``, differentiable (its gradient ``d_j E[h]`` is taken with
            autograd). Example: MuProp's first-order Taylor expansion of ``f`` around ``E[z]`` (Gu, Levine,
            Sutskever & Mnih, 2016). With ``h = 1`` this reduces to :class:`OptimalConstant`.
        c: ``None`` estimates ``c*`` leave-one-out (a ratio of moments of ``S - 1`` samples: noisy, and it can
            *add* variance below ~20 samples); a number fixes the scale (``c = 1`` is MuProp's estimator), with
            no estimation noise.

    With ``c=None``, ``x_k = f_k s_k`` and ``y_k = h_k s_k`` (per parameter), ``n = S - 1``:

        m^x_i = 1/n sum_{k != i} x_k,   Cov_i = 1/n sum_{k != i} x_k y_k - m^x_i m^y_i,
        Var_i = 1/n sum_{k != i} y_k^2 - (m^y_i)^2,   c_i = Cov_i / Var_i   (0 where Var_i <= 1e-10 E_{-i}[y^2])

    Every leave-one-out sum is a :func:`~.loo.loo_sum` accumulated in float64, so ``c_i`` is a function of the
    other samples only (at ``S = 2`` the leave-one-out variance is exactly 0 and ``c = 0``); ``total - own`` would
    let the rounding of ``sample i`` leak into its own scale and bias the estimate. ``value`` and ``correction``
    are returned in float64 (``c_i h_i`` rounded to float32 would depend on ``h_i``);
    :func:`~.score_function.score_function_gradient` casts the estimate back. Limit in float32: the correction
    ``c d E[h]`` cancels ``c h s`` only to the float32 rounding of the scores (and of ``h_mean``'s gradient), so
    with ``|c h| >> |grad|`` (e.g. ``f = 1e4 + O(1)``) a relative bias of ``~1e-7 |c h| / |grad|`` remains; use
    float64 logits there. ``h_mean`` should keep full precision at extreme logits (``exp(logsigmoid(p))`` rather
    than ``sigmoid(p)``, whose float32 backward is 0 beyond ``|p| ~ 17``). Reference for ``c*``: Ross
    (2013), "Simulation", sec. 9.2. ``value`` has shape ``[S, B, *E]``, ``correction`` ``[B, *E]``.

    >>> cv = ControlVariate(lambda z: (z * w).sum(-1), lambda p: (torch.sigmoid(p) * w).sum(-1))
    >>> est = reinforce(f, logits, samples=16, baseline=cv)
    """

    def __init__(self, h: Callable[[Tensor], Tensor], h_mean: Callable[[Tensor], Tensor], c: float | None = None):
        if not callable(h) or not callable(h_mean):
            raise ValueError("h and h_mean must be callables (samples -> [S, B] and params -> [B])")
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c)):
            raise ValueError(f"c must be None (estimate c* leave-one-out) or a finite number; got {c!r}")
        self.h = h
        self.h_mean = h_mean
        self.c = c

    def __call__(self, f_values, scores, params, z):
        if self.c is None:
            _need_two(f_values, "control-variate")
        with torch.no_grad():
            hv = self.h(z)
        if not isinstance(hv, Tensor) or tuple(hv.shape) != tuple(f_values.shape):
            got = list(hv.shape) if isinstance(hv, Tensor) else type(hv).__name__
            raise ValueError(f"h must map samples to [S, B] = {list(f_values.shape)}; got {got}")
        hv = hv.detach().to(f_values.dtype)
        with torch.enable_grad():
            th = params.detach().clone().requires_grad_(True)
            (dmean,) = torch.autograd.grad(self.h_mean(th).sum(), th)  # [B, *E]
        extra = [1] * (scores.ndim - 2)
        if self.c is not None:
            return BaselineOutput(self.c * hv, correction=self.c * dmean)
        n = f_values.shape[0] - 1
        s64 = scores.double()
        x = f_values.double().reshape(*f_values.shape, *extra) * s64  # [S, B, *E]
        y = hv.double().reshape(*hv.shape, *extra) * s64  # [S, B, *E]
        mx, my = loo_sum(x) / n, loo_sum(y) / n
        m2 = loo_sum(y * y) / n
        cov = loo_sum(x * y) / n - mx * my
        var = m2 - my * my
        tiny = torch.finfo(torch.float64).tiny
        c = torch.where(var > 1e-10 * m2 + tiny, cov / var.clamp(min=tiny), torch.zeros_like(cov))  # [S, B, *E]
        # b = c h and the correction stay in float64: rounding c_i h_i to float32 would depend on h_i itself
        b = c * hv.double().reshape(*hv.shape, *extra)  # [S, B, *E]: (f - c h) s
        return BaselineOutput(b, correction=c.mean(0) * dmean.double())

    def __repr__(self) -> str:
        return f"ControlVariate(c={self.c})"


def as_baseline(baseline: Baseline | None) -> Baseline:
    if baseline is None:
        return NoBaseline()
    if not callable(baseline):
        raise ValueError(f"baseline must be None or a Baseline (NoBaseline(), MovingAverage(), LeaveOneOut(), "
                         f"OptimalConstant(), LearnedBaseline(m), ControlVariate(h, h_mean)); got {baseline!r}")
    return baseline
