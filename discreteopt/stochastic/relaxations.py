"""Continuous relaxations of discrete samples: Gumbel-softmax / Concrete, straight-through, relaxed top-k.

All of these are *biased* pathwise estimators: the discrete sample is replaced by a differentiable function of the
logits and reparameterised noise, and the bias vanishes only as the temperature ``tau -> 0`` (while the variance
grows like ``1 / tau``).

* Gumbel-softmax / Concrete (Jang, Gu & Poole, 2017; Maddison, Mnih & Teh, 2017), ``g_i ~ Gumbel(0, 1)``:
  ``y = softmax((logits + g) / tau)``; as ``tau -> 0``, ``y -> one_hot(argmax(logits + g))``, an exact sample of
  ``Categorical(softmax(logits))``.
* Binary Concrete (Maddison et al., 2017, sec. 3.3), ``l ~ Logistic(0, 1)``: ``y = sigmoid((logits + l) / tau)``;
  ``y -> 1[logits + l > 0] ~ Bernoulli(sigmoid(logits))``.
* Straight-through Gumbel (Jang et al., 2017, sec. 2.2): forward the hard sample, backward the relaxed gradient:
  ``y = hard + (soft - soft.detach())``.
* Temperature annealing (Jang et al., 2017, sec. 4.1): ``tau_t = max(tau_min, tau0 * exp(-r t))``, updated every
  ``N`` steps (:func:`anneal_tau`, :class:`TemperatureSchedule`).
* Relaxed top-k for subset selection, ``scores`` ``[B, n]``:

  - L2X (Chen, Song, Wainwright & Jordan, 2018, "Learning to explain"): ``k`` independent Concrete samples
    ``c^(j) = softmax((scores + g^(j)) / tau)``, mask ``m_i = max_j c^(j)_i``. Its ``tau -> 0`` limit is the set of
    distinct items among ``k`` draws *with* replacement (so at most ``k`` ones).
  - SoftSub (Xie & Ermon, 2019, "Reparameterizable subset sampling via continuous relaxations"): Gumbel keys
    ``r = scores + g`` (weighted reservoir sampling with weights ``exp(scores)``), then ``k`` rounds of
    ``a^(j) = softmax(alpha^(j) / tau)``, ``alpha^(j+1) = alpha^(j) + log(1 - a^(j))``, ``alpha^(1) = r``;
    mask ``m = sum_j a^(j)``. Its ``tau -> 0`` limit is the top-k of the keys: an exact sample of ``k`` items
    *without* replacement with probabilities proportional to ``exp(scores)``.

The estimators under the common convention (:mod:`discreteopt.stochastic._types`) are :func:`concrete` (Bernoulli
or Categorical, ``hard=True`` for straight-through), :func:`l2x_subset` and :func:`softsub`; each evaluates ``f``
on the relaxed samples (``f`` must accept continuous inputs) ``samples`` times, so ``n_evals = samples``.

Numerics: ``tau`` must satisfy ``tau >= torch.finfo(dtype).tiny`` of the logits' dtype (``1 / tau`` finite there),
else ``ValueError``; every softmax is taken of ``(y - max y) / tau`` (:func:`shifted_softmax`), so logits near the
float maximum or a tiny ``tau`` give the one-hot (top-k) limit, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
    safe_mean,
    safe_sum,
)
from .families import Bernoulli, Categorical, Family, _gumbel, _logistic, as_family

# ------------------------------------------------------------------------------------------------ helpers


def _check_dim(dim: int, ndim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
        raise ValueError(f"dim must be an integer in [{-ndim}, {ndim - 1}] for logits with {ndim} dims; got {dim!r}")
    return dim


def _check_logits(logits: Tensor, name: str = "logits") -> Tensor:
    return check_tensor_param(logits, name, min_ndim=1, layout="[*, K]")


def _check_tau(tau: float, like: Tensor) -> float:
    """``tau`` a positive number with ``1 / tau`` finite in ``like``'s dtype (:func:`._types.check_reciprocal`)."""
    return check_reciprocal(check_positive(tau, "tau"), "tau", like.dtype, "logits")


def shifted_softmax(y: Tensor, tau: float | Tensor, dim: int = -1) -> Tensor:
    """``softmax(y / tau)`` along ``dim``, formed as ``softmax((y - max y) / tau)``.

    Equal in real arithmetic (softmax is shift-invariant; the maximum is detached, which leaves the gradient exact),
    but ``y / tau`` alone overflows for large ``y`` or small ``tau`` (``inf / inf = NaN`` inside softmax), while the
    shifted values lie in ``[-inf, 0]`` with a 0 at the maximum: the result is the one-hot limit, never NaN.
    """
    return torch.softmax((y - y.detach().amax(dim, keepdim=True)) / tau, dim=dim)


def _loo_logsumexp(w: Tensor, floor: float) -> Tensor:
    """``log sum_{j != i} exp(w_j)`` along the last dim of a finite ``w`` (``floor = -finfo.max`` stands for
    ``log 0``): exclusive prefix plus suffix log-cumulative sums, so no ``log(1 - softmax)`` and no underflow."""
    pad = torch.full_like(w[..., :1], floor)
    before = torch.logcumsumexp(torch.cat([pad, w[..., :-1]], dim=-1), dim=-1)  # log sum_{j < i}
    after = torch.logcumsumexp(torch.cat([w[..., 1:], pad], dim=-1).flip(-1), dim=-1).flip(-1)  # log sum_{j > i}
    return torch.logaddexp(before, after)


def _straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward ``hard``, backward ``d soft``: ``hard + soft - soft.detach()``."""
    return hard + (soft - soft.detach())


# ------------------------------------------------------------------------------------------------ samplers


def gumbel_softmax(
    logits: Tensor,
    tau: float = 1.0,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Gumbel-softmax (Concrete) sample ``softmax((logits + g) / tau)`` along ``dim``, same shape as ``logits``.

    ``hard=True`` returns the one-hot ``argmax(logits + g)`` with the relaxed sample's gradient (straight-through).
    Unlike :func:`torch.nn.functional.gumbel_softmax` it takes a ``generator`` (reproducible) and validates inputs.
    ``tau >= torch.finfo(logits.dtype).tiny`` (``1 / tau`` finite); ``logits + g`` is shifted by its maximum along
    ``dim`` first (:func:`shifted_softmax`), so logits near the float maximum give the one-hot limit, not NaN.
    """
    _check_logits(logits)
    tau = _check_tau(tau, logits)
    dim = _check_dim(dim, logits.ndim)
    if logits.shape[dim] < 2:
        raise ValueError(f"logits must have at least 2 classes along dim={dim}; got shape {list(logits.shape)}")
    check_generator(generator, logits.device)
    y = logits + _gumbel(tuple(logits.shape), logits.detach(), generator)
    soft = shifted_softmax(y, tau, dim)
    if not hard:
        return soft
    idx = y.detach().argmax(dim, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(dim, idx, 1.0)
    return _straight_through(one_hot, soft)


def gumbel_sigmoid(
    logits: Tensor,
    tau: float = 1.0,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Binary Concrete sample ``sigmoid((logits + l) / tau)``, ``l ~ Logistic(0, 1)``, same shape as ``logits``.

    ``hard=True`` returns ``1[logits + l > 0]`` (an exact ``Bernoulli(sigmoid(logits))`` sample) with the relaxed
    gradient (straight-through). ``tau >= torch.finfo(logits.dtype).tiny`` (``1 / tau`` finite in that dtype).
    """
    _check_logits(logits)
    tau = _check_tau(tau, logits)
    check_generator(generator, logits.device)
    y = logits + _logistic(tuple(logits.shape), logits.detach(), generator)
    soft = torch.sigmoid(y / tau)
    if not hard:
        return soft
    return _straight_through((y.detach() > 0).to(soft.dtype), soft)


def straight_through_gumbel(
    logits: Tensor,
    tau: float = 1.0,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Straight-through Gumbel-softmax: one-hot forward, ``d softmax((logits + g) / tau)`` backward."""
    return gumbel_softmax(logits, tau=tau, hard=True, dim=dim, generator=generator)


# ------------------------------------------------------------------------------------------------ annealing


def anneal_tau(step: int, tau0: float = 1.0, rate: float = 1e-4, tau_min: float = 0.5, every: int = 1) -> float:
    """Jang et al. (2017)'s schedule ``tau = max(tau_min, tau0 * exp(-rate * N floor(step / N)))``, ``N = every``."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer; got {step!r}")
    tau0 = check_positive(tau0, "tau0")
    tau_min = check_positive(tau_min, "tau_min")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
        raise ValueError(f"rate must be a non-negative finite number; got {rate!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer; got {every!r}")
    return max(tau_min, tau0 * math.exp(-rate * every * (step // every)))


@dataclass
class TemperatureSchedule:
    """Stateful :func:`anneal_tau`: ``sched.tau`` is the current temperature, ``sched.step()`` advances it.

    >>> sched = TemperatureSchedule(tau0=1.0, rate=3e-5, tau_min=0.5, every=1000)
    >>> for batch in loader:
    ...     y = gumbel_softmax(logits, tau=sched.tau); ...; sched.step()
    """

    tau0: float = 1.0
    rate: float = 1e-4
    tau_min: float = 0.5
    every: int = 1
    t: int = 0

    def __post_init__(self) -> None:
        anneal_tau(self.t, self.tau0, self.rate, self.tau_min, self.every)  # validates every field

    def __call__(self, step: int) -> float:
        return anneal_tau(step, self.tau0, self.rate, self.tau_min, self.every)

    @property
    def tau(self) -> float:
        return self(self.t)

    def step(self) -> float:
        """Advance one step; returns the new temperature."""
        self.t += 1
        return self.tau


# ------------------------------------------------------------------------------------------------ relaxed top-k


def _check_subset(scores: Tensor, k: int) -> None:
    check_tensor_param(scores, "scores", min_ndim=2, layout="[B, n]")
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [B, n]; got {list(scores.shape)}")
    n = scores.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, n={n}]; got {k!r}")


def relaxed_topk_l2x(
    scores: Tensor,
    k: int,
    tau: float = 0.5,
    samples: int = 1,
    generator: torch.Generator | None = None,
    hard: bool = False,
) -> Tensor:
    """L2X relaxed subset mask ``[S, B, n]``: ``m_i = max_j softmax((scores + g^(j)) / tau)_i`` over ``k`` draws.

    ``hard=True``: forward the ``tau -> 0`` limit (indicator of the items drawn at least once among ``k`` argmax
    draws with replacement, so at most ``k`` ones) with the relaxed gradient (straight-through).
    ``tau >= torch.finfo(scores.dtype).tiny``; each softmax is shifted by its maximum (:func:`shifted_softmax`).
    """
    _check_subset(scores, k)
    tau = check_reciprocal(check_positive(tau, "tau"), "tau", scores.dtype, "scores")
    s = check_samples(samples)
    check_generator(generator, scores.device)
    g = _gumbel((s, k, *scores.shape), scores.detach(), generator)  # [S, k, B, n]
    y = scores + g  # [S, k, B, n]
    soft = shifted_softmax(y, tau, -1).amax(dim=1)  # [S, k, B, n] -> [S, B, n]
    if not hard:
        return soft
    draws = F.one_hot(y.detach().argmax(-1), scores.shape[1]).amax(dim=1).to(soft.dtype)  # [S, B, n]
    return _straight_through(draws, soft)


def relaxed_topk_softsub(
    scores: Tensor,
    k: int,
    tau: float = 0.5,
    samples: int = 1,
    generator: torch.Generator | None = None,
    hard: bool = False,
) -> Tensor:
    """SoftSub relaxed k-hot mask ``[S, B, n]`` from Gumbel keys: ``k`` softmaxes summed (entries >= 0 summing to
    ``k``; an entry can exceed 1 at moderate ``tau``, as in the paper's relaxation).

    ``hard=True``: forward the exact top-k of the keys ``scores + g`` (a k-subset drawn without replacement with
    probabilities proportional to ``exp(scores)``) with the relaxed gradient (straight-through).

    Numerics: each round uses ``w = (alpha - max alpha) / tau`` (shifted: no overflow into NaN), clamped below at
    ``-finfo.max``, and ``log(1 - a_i) = logsumexp_{j != i} w_j - logsumexp w`` from exclusive prefix and suffix
    log-cumulative sums (never ``log(1 - a)``, which is ``log 0`` as soon as the leading item's weight rounds to 1:
    the old clamp at ``log(tiny)`` let a leading item with a gap above ~708 win every round, a mask of ``[2, 0,
    ...]``); ``alpha`` is clamped below at ``-finfo.max``. Every value stays finite for finite scores and
    ``tau >= finfo(dtype).tiny``, and small ``tau`` gives the top-k limit.
    """
    _check_subset(scores, k)
    tau = check_reciprocal(check_positive(tau, "tau"), "tau", scores.dtype, "scores")
    s = check_samples(samples)
    check_generator(generator, scores.device)
    keys = scores + _gumbel((s, *scores.shape), scores.detach(), generator)  # [S, B, n]
    floor = -torch.finfo(scores.dtype).max
    alpha = keys  # [S, B, n]
    mask = torch.zeros_like(keys)
    for j in range(k):
        w = ((alpha - alpha.detach().amax(-1, keepdim=True)) / tau).clamp(min=floor)  # [S, B, n] in [-max, 0]
        mask = mask + torch.softmax(w, dim=-1)
        if j + 1 < k:
            log1m = _loo_logsumexp(w, floor) - torch.logsumexp(w, dim=-1, keepdim=True)  # log(1 - a), <= 0
            alpha = (alpha + log1m).clamp(min=floor)
    if not hard:
        return mask
    top = keys.detach().topk(k, dim=-1).indices  # [S, B, k]
    khot = torch.zeros_like(mask).scatter_(-1, top, 1.0)
    return _straight_through(khot, mask)


# ------------------------------------------------------------------------------------------------ estimators


def _pathwise_estimate(cf: CountingF, z: Tensor, who: str) -> Estimate:
    fv = cf.through(who)(z)  # [S, B]; integer/bool outputs rejected (no gradient through them)
    per_item = safe_mean(fv, 0)  # [B]
    return Estimate(safe_sum(per_item), per_item, cf.count, samples=z.detach(), f_values=fv.detach())


def concrete(
    f: SampleFn,
    logits: Tensor,
    *,
    family: Family | None = None,
    tau: float = 1.0,
    hard: bool = False,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Gumbel-softmax / binary-Concrete pathwise estimator of ``grad E[f(z)]`` (biased; ``n_evals = samples``).

    Surrogate ``1/S sum_i f(y_i)``, ``y_i`` the relaxed sample of ``family`` (:class:`Bernoulli` -> binary Concrete,
    :class:`Categorical` -> Gumbel-softmax over the last dim) at temperature ``tau``. ``hard=True`` is the
    straight-through variant: ``f`` sees the exact discrete sample, the gradient is the relaxed one. ``f`` is
    differentiated, so it must return floating values (an integer or bool output raises ``ValueError``: it would
    carry no gradient). ``logits`` ``[B, *E]``; ``f``: ``[S, B, *E] -> [S, B]``.

    >>> est = concrete(lambda y: (y * w).sum((-1, -2)), logits, family=Categorical(), tau=0.5, samples=4)
    """
    family = as_family(family)
    family.check(logits, "logits")
    if not isinstance(family, (Bernoulli, Categorical)):
        raise ValueError(f"family must be Bernoulli or Categorical for concrete; got {family!r}")
    tau = _check_tau(tau, logits)
    s = check_samples(samples)
    check_generator(generator, logits.device)
    cf = CountingF(f, logits.shape[0], logits.dtype)
    z = family.perturb(logits, s, generator)  # [S, B, *E], differentiable
    soft = family.relax(z, tau)
    y = _straight_through(family.hard(z), soft) if hard else soft
    return _pathwise_estimate(cf, y, "concrete")


def l2x_subset(
    f: SampleFn,
    scores: Tensor,
    *,
    k: int,
    tau: float = 0.5,
    samples: int = 1,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> Estimate:
    """L2X estimator: surrogate ``1/S sum_i f(m_i)`` with ``m_i`` from :func:`relaxed_topk_l2x` (``n_evals = S``).

    ``scores`` ``[B, n]``; ``f``: masks ``[S, B, n]`` -> ``[S, B]``.
    """
    m = relaxed_topk_l2x(scores, k, tau=tau, samples=samples, generator=generator, hard=hard)  # [S, B, n]
    return _pathwise_estimate(CountingF(f, scores.shape[0], scores.dtype), m, "l2x_subset")


def softsub(
    f: SampleFn,
    scores: Tensor,
    *,
    k: int,
    tau: float = 0.5,
    samples: int = 1,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> Estimate:
    """SoftSub estimator: surrogate ``1/S sum_i f(m_i)``, ``m_i`` from :func:`relaxed_topk_softsub` (``n_evals = S``).

    ``scores`` ``[B, n]`` (log-weights); ``f``: masks ``[S, B, n]`` -> ``[S, B]``.
    """
    m = relaxed_topk_softsub(scores, k, tau=tau, samples=samples, generator=generator, hard=hard)  # [S, B, n]
    return _pathwise_estimate(CountingF(f, scores.shape[0], scores.dtype), m, "softsub")
