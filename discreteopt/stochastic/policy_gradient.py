"""Clipped importance-weighted policy-gradient surrogates: PPO and GRPO, as objectives over log-probs and rewards.

Samples (actions, or sequences of tokens) ``a_i`` were drawn from an old policy ``pi_old``; with the per-token ratio
``r = pi_theta(a) / pi_old(a) = exp(log_prob - old_log_prob)`` and advantages ``A``:

* PPO (Schulman, Wolski, Dhariwal, Radford & Klimov, 2017, "Proximal policy optimization algorithms", eq. 7):
  ``J = E[min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)]``. While ``r`` is inside the clip range its gradient is
  the importance-weighted REINFORCE gradient ``r A grad log pi_theta(a)``; where the clipped term is the minimum
  (``r > 1 + eps`` with ``A > 0``, or ``r < 1 - eps`` with ``A < 0``) the sample contributes no gradient.
* GRPO (Shao et al., 2024, "DeepSeekMath", sec. 4.1): ``G`` samples per problem (a group), advantages normalised
  within the group ``A_i = (R_i - mean(R)) / (std(R) + delta)`` (:func:`group_advantages`; ``std`` with Bessel's
  correction, as in common implementations), the PPO term per token, and an optional KL penalty to a reference
  policy with Schulman's unbiased, non-negative "k3" estimator
  ``KL(pi_theta || pi_ref) ~ pi_ref/pi_theta - log(pi_ref/pi_theta) - 1`` (:func:`kl_k3`):
  ``J = mean_i mean_t [min(r_it A_i, clip(r_it) A_i) - beta k3_it]``.

Layouts: ``log_prob`` ``[S, B]`` (one log-probability per sample) or ``[S, B, T]`` (per token, with ``mask``
``[S, B, T]`` marking real tokens); ``S`` samples of ``B`` independent problems. Token aggregation:
``"sequence"`` averages tokens within each sequence, then sequences (the GRPO paper); ``"token"`` averages all
tokens of a problem's samples together (DAPO, Yu et al., 2025).

The returned :class:`~discreteopt.stochastic._types.Estimate` holds the objective ``J`` to *maximise*
(``(-est.surrogate).backward()``); ``n_evals`` is the number of rewards per problem (``S``), ``info`` has the
clip fraction and approximate KL to the old policy.

Numerics (inputs: real floating, finite tensors; integer, bool and complex ones raise ``ValueError``): the
objective is formed on the advantages divided by a power of two ``c`` with ``max |A| / c < 2`` and scaled back
after the means, and every mean divides its terms before summing, so advantages or rewards near the float maximum
give the exact (finite) objective, ``+-inf`` only where the exact mean leaves the float range, never NaN. The
log-ratio ``log_prob - old_log_prob`` is capped at ``log(finfo.max) - 2`` (86.7 in float32, 707.8 in float64)
before the exponential: exact for ``A >= 0`` (the clipped term, gradient 0, is the minimum there) and for any ratio
in range; beyond it, with ``A < 0``, the ratio saturates at ``e^cap`` instead of overflowing (and its gradient is
0 there).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._types import (
    Estimate,
    _pow2_at_least,
    check_positive,
    check_tensor_param,
    pow2_unit,
    safe_mean,
    safe_sum,
)

_AGGREGATIONS = ("sequence", "token")


def _check_real(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of log-probabilities; got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a real floating-point tensor (float16, bfloat16, float32, float64); got "
                         f"dtype {x.dtype}" + (" (a conjugate view is complex)" if x.is_complex() else ""))
    if not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} must be finite; got {int(torch.isnan(x.detach()).sum())} NaN and "
                         f"{int(torch.isinf(x.detach()).sum())} inf entries")
    return x


def kl_k3(log_prob: Tensor, ref_log_prob: Tensor) -> Tensor:
    """Per-sample ``exp(ref - lp) - (ref - lp) - 1`` (>= 0, unbiased for ``KL(pi || pi_ref)`` under ``a ~ pi``).

    ``log_prob``, ``ref_log_prob``: real floating, finite tensors of broadcastable shapes (integer, bool and complex
    inputs raise ``ValueError``); the result has their broadcast shape and promoted dtype. Where ``ref - lp``
    overflows to ``+inf`` (log-probabilities near the float maximum) the result is ``+inf``, never NaN.
    """
    _check_real(log_prob, "log_prob")
    _check_real(ref_log_prob, "ref_log_prob")
    try:
        torch.broadcast_shapes(log_prob.shape, ref_log_prob.shape)
    except RuntimeError:
        raise ValueError(f"ref_log_prob {list(ref_log_prob.shape)} must broadcast with log_prob "
                         f"{list(log_prob.shape)}") from None
    d = ref_log_prob - log_prob
    big = d == math.inf  # expm1(inf) - inf would be NaN
    ds = torch.where(big, torch.zeros_like(d), d)
    return torch.where(big, d, torch.expm1(ds) - ds)


def group_advantages(rewards: Tensor, eps: float = 1e-6, scale: bool = True) -> Tensor:
    """GRPO advantages ``(R - mean_G R) / (std_G R + eps)`` ``[G, B]`` for rewards ``[G, B]`` (``G`` = group size).

    ``scale=False`` only centres (Dr. GRPO, Liu et al., 2025). A group with equal rewards gets zero advantages.
    Each problem's rewards are first divided by a power of two bringing their largest magnitude below 1 when it
    exceeds 1 (exact; ``eps`` is divided alike), so the mean and the standard deviation cannot overflow: rewards
    near the float maximum give the exact z-scores (``|A| <= sqrt(G)``), never NaN. Half-precision rewards are
    computed in float32 and cast back. ``rewards``: real floating, finite ``[G, B]``, ``G >= 2``.
    """
    check_tensor_param(rewards, "rewards", min_ndim=2, layout="[G, B]")
    if rewards.ndim != 2:
        raise ValueError(f"rewards must have shape [G, B] (G samples per problem); got {list(rewards.shape)}")
    if rewards.shape[0] < 2:
        raise ValueError(f"rewards must hold a group of G >= 2 samples per problem (dim 0); got G={rewards.shape[0]}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a non-negative finite number; got {eps!r}")
    r = rewards.detach()
    if r.dtype in (torch.float16, torch.bfloat16):
        r = r.float()
    unit = 0.5 / pow2_unit(r, 0)  # [1, B] a power of two <= 1/2 with max |r| unit < 1 (exact scaling)
    rs = r * unit  # [G, B], |rs| < 1
    centred = rs - rs.mean(0, keepdim=True)
    if not scale:
        return (centred / unit).to(rewards.dtype)  # +-inf only where the exact value leaves the float range
    den = rs.std(0, keepdim=True) + eps * unit  # (std + eps) 2^-e
    ok = den > 0  # 0 only for equal rewards (centred = 0) with eps 2^-e underflowing to 0
    return torch.where(ok, centred / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(centred)).to(
        rewards.dtype)


def _check_clip(clip_eps: Any) -> tuple[float, float]:
    lo, hi = clip_eps if isinstance(clip_eps, tuple) else (clip_eps, clip_eps)
    lo, hi = check_positive(lo, "clip_eps"), check_positive(hi, "clip_eps")
    if lo >= 1.0:
        raise ValueError(f"clip_eps (lower) must be < 1 so that 1 - eps > 0; got {lo}")
    return lo, hi


def _check_like(x: Tensor | None, name: str, like: Tensor) -> Tensor | None:
    if x is None:
        return None
    check_tensor_param(x, name, min_ndim=1, layout=f"{list(like.shape)} (like log_prob)")
    if x.shape != like.shape:
        raise ValueError(f"{name} must have the shape of log_prob {list(like.shape)}; got {list(x.shape)}")
    return x


def _check_mask(mask: Tensor | None, like: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(like.detach())
    if not isinstance(mask, Tensor) or mask.shape != like.shape:
        got = list(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a tensor with the shape of log_prob {list(like.shape)}; got {got}")
    m = mask.to(like.dtype)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("mask must hold 0/1 (or bool) entries marking the real tokens")
    return m


def _check_log_prob(log_prob: Tensor) -> Tensor:
    check_tensor_param(log_prob, "log_prob", min_ndim=2, layout="[S, B] or [S, B, T]")
    if log_prob.ndim > 3:
        raise ValueError(f"log_prob must have shape [S, B] or [S, B, T]; got {list(log_prob.shape)}")
    return log_prob


def _broadcast_adv(adv: Tensor, like: Tensor, name: str) -> Tensor:
    check_tensor_param(adv, name, min_ndim=2, layout="[S, B] or the shape of log_prob")
    if adv.shape == like.shape:
        return adv.detach()
    if like.ndim == 3 and adv.shape == like.shape[:2]:
        return adv.detach()[..., None]  # [S, B] -> [S, B, 1]
    raise ValueError(f"{name} must have shape {list(like.shape[:2])} or {list(like.shape)}; got {list(adv.shape)}")


def _clipped_objective(
    log_prob: Tensor,
    old_log_prob: Tensor | None,
    adv: Tensor,
    clip: tuple[float, float],
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token ``min(r A, clip(r) A)``, the ratio ``r`` and the 0/1 "clipped" indicator (all ``like log_prob``).

    ``adv`` is already divided by :func:`._types.pow2_unit` (``|A| < 2``), and the log-ratio is capped at
    ``log(finfo.max) - 2`` (module docstring), so no product overflows.
    """
    old = log_prob.detach() if old_log_prob is None else old_log_prob.detach()
    cap = math.log(torch.finfo(log_prob.dtype).max) - 2.0
    ratio = torch.exp((log_prob - old).clamp(max=cap))
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip[0], 1.0 + clip[1]) * adv
    obj = torch.minimum(unclipped, clipped)
    return obj, ratio, (clipped.detach() < unclipped.detach()).to(log_prob.dtype)


def _masked_mean(x: Tensor, mask: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``sum(x mask) / max(sum(mask), 1)`` over ``dims``, the terms divided by a power of two ``>= n`` first (exact)
    so that the sum cannot overflow where the mean fits (:func:`._types.safe_mean`)."""
    p = _pow2_at_least(math.prod(x.shape[d] for d in dims))
    return (x * mask * (1.0 / p)).sum(dims) / (mask.sum(dims).clamp(min=1.0) / p)


def _aggregate(x: Tensor, mask: Tensor, aggregation: str) -> Tensor:
    """Per-problem mean ``[B]`` of per-sample ``[S, B]`` or per-token ``[S, B, T]`` values (overflow-safe)."""
    if x.ndim == 2:
        return safe_mean(x, 0)
    if aggregation == "sequence":
        seq = _masked_mean(x, mask, (2,))  # [S, B]
        return safe_mean(seq, 0)  # [B]
    return _masked_mean(x, mask, (0, 2))  # [B]


def _check_aggregation(aggregation: Any) -> str:
    if aggregation not in _AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {_AGGREGATIONS}; got {aggregation!r}")
    return aggregation


def _policy_estimate(obj: Tensor, unit: Tensor, ratio: Tensor, clipped: Tensor, log_prob: Tensor,
                     old_log_prob: Tensor | None, mask: Tensor, aggregation: str, rewards: Tensor,
                     **info: Any) -> Estimate:
    """``obj`` is the objective divided by ``unit`` (a power of two, :func:`._types.pow2_unit`); the mean is scaled back."""
    per_item = _aggregate(obj, mask, aggregation) * unit  # [B]; +-inf only where the exact mean leaves the range
    dims = tuple(range(mask.ndim))
    with torch.no_grad():
        old = log_prob if old_log_prob is None else old_log_prob
        approx_kl = float(_masked_mean(kl_k3(old.detach(), log_prob.detach()), mask, dims))
        info.update(clip_fraction=float(_masked_mean(clipped, mask, dims)), approx_kl_old=approx_kl,
                    ratio_mean=float(_masked_mean(ratio.detach(), mask, dims)))
    return Estimate(safe_sum(per_item), per_item, n_evals=log_prob.shape[0], f_values=rewards.detach(), info=info)


def ppo_surrogate(
    log_prob: Tensor,
    old_log_prob: Tensor | None,
    advantages: Tensor,
    *,
    clip_eps: float | tuple[float, float] = 0.2,
    mask: Tensor | None = None,
    aggregation: str = "sequence",
) -> Estimate:
    """PPO clipped objective ``J`` (maximise it), per problem ``[B]`` in ``per_item``.

    ``log_prob`` ``[S, B]`` or ``[S, B, T]`` under the current policy (differentiable); ``old_log_prob`` the same
    under the sampling policy (``None``: on-policy, ratio 1); ``advantages`` ``[S, B]`` (broadcast over tokens) or
    the shape of ``log_prob``; ``clip_eps`` a float or ``(eps_low, eps_high)``; ``mask`` marks real tokens.
    """
    _check_log_prob(log_prob)
    _check_like(old_log_prob, "old_log_prob", log_prob)
    clip = _check_clip(clip_eps)
    aggregation = _check_aggregation(aggregation)
    m = _check_mask(mask, log_prob)
    adv = _broadcast_adv(advantages, log_prob, "advantages")
    unit = pow2_unit(adv)  # a power of two with max |adv| / unit < 2: the objective is formed on adv / unit
    obj, ratio, clipped = _clipped_objective(log_prob, old_log_prob, adv / unit, clip)
    return _policy_estimate(obj, unit, ratio, clipped, log_prob, old_log_prob, m, aggregation, advantages)


def grpo_surrogate(
    log_prob: Tensor,
    old_log_prob: Tensor | None,
    rewards: Tensor,
    *,
    clip_eps: float | tuple[float, float] = 0.2,
    ref_log_prob: Tensor | None = None,
    beta: float = 0.04,
    mask: Tensor | None = None,
    eps: float = 1e-6,
    scale_rewards: bool = True,
    aggregation: str = "sequence",
) -> Estimate:
    """GRPO objective ``J`` (maximise it) for ``G`` samples per problem: ``rewards`` ``[G, B]``.

    ``log_prob``/``old_log_prob``/``ref_log_prob``/``mask``: ``[G, B]`` or ``[G, B, T]``; the KL term is added only
    when ``ref_log_prob`` is given (``beta >= 0`` its weight). ``info["advantages"]`` holds ``[G, B]``.
    """
    _check_log_prob(log_prob)
    _check_like(old_log_prob, "old_log_prob", log_prob)
    _check_like(ref_log_prob, "ref_log_prob", log_prob)
    clip = _check_clip(clip_eps)
    aggregation = _check_aggregation(aggregation)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a non-negative finite number; got {beta!r}")
    if not isinstance(rewards, Tensor) or tuple(rewards.shape) != tuple(log_prob.shape[:2]):
        got = list(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"rewards must have shape [G, B] = {list(log_prob.shape[:2])}; got {got}")
    m = _check_mask(mask, log_prob)
    adv = group_advantages(rewards, eps=eps, scale=scale_rewards)  # [G, B]
    badv = _broadcast_adv(adv, log_prob, "advantages")
    unit = pow2_unit(badv)
    obj, ratio, clipped = _clipped_objective(log_prob, old_log_prob, badv / unit, clip)
    info: dict[str, Any] = {"advantages": adv}
    if ref_log_prob is not None:
        kl = kl_k3(log_prob, ref_log_prob.detach())
        obj = obj - (beta / unit) * kl
        info["kl_ref"] = float(_masked_mean(kl.detach(), m, tuple(range(m.ndim))))
    return _policy_estimate(obj, unit, ratio, clipped, log_prob, old_log_prob, m, aggregation, rewards, **info)
