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
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._types import Estimate, check_positive, check_tensor_param

_AGGREGATIONS = ("sequence", "token")


def kl_k3(log_prob: Tensor, ref_log_prob: Tensor) -> Tensor:
    """Per-sample ``exp(ref - lp) - (ref - lp) - 1`` (>= 0, unbiased for ``KL(pi || pi_ref)`` under ``a ~ pi``)."""
    d = ref_log_prob - log_prob
    return torch.expm1(d) - d


def group_advantages(rewards: Tensor, eps: float = 1e-6, scale: bool = True) -> Tensor:
    """GRPO advantages ``(R - mean_G R) / (std_G R + eps)`` ``[G, B]`` for rewards ``[G, B]`` (``G`` = group size).

    ``scale=False`` only centres (Dr. GRPO, Liu et al., 2025). A group with equal rewards gets zero advantages.
    """
    check_tensor_param(rewards, "rewards", min_ndim=2, layout="[G, B]")
    if rewards.ndim != 2:
        raise ValueError(f"rewards must have shape [G, B] (G samples per problem); got {list(rewards.shape)}")
    if rewards.shape[0] < 2:
        raise ValueError(f"rewards must hold a group of G >= 2 samples per problem (dim 0); got G={rewards.shape[0]}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a non-negative finite number; got {eps!r}")
    r = rewards.detach()
    centred = r - r.mean(0, keepdim=True)
    if not scale:
        return centred
    return centred / (r.std(0, keepdim=True) + eps)


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
    """Per-token ``min(r A, clip(r) A)``, the ratio ``r`` and the 0/1 "clipped" indicator (all ``like log_prob``)."""
    old = log_prob.detach() if old_log_prob is None else old_log_prob.detach()
    ratio = torch.exp(log_prob - old)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip[0], 1.0 + clip[1]) * adv
    obj = torch.minimum(unclipped, clipped)
    return obj, ratio, (clipped.detach() < unclipped.detach()).to(log_prob.dtype)


def _aggregate(x: Tensor, mask: Tensor, aggregation: str) -> Tensor:
    """Per-problem mean ``[B]`` of per-sample ``[S, B]`` or per-token ``[S, B, T]`` values."""
    if x.ndim == 2:
        return x.mean(0)
    if aggregation == "sequence":
        seq = (x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # [S, B]
        return seq.mean(0)  # [B]
    return (x * mask).sum((0, 2)) / mask.sum((0, 2)).clamp(min=1.0)  # [B]


def _check_aggregation(aggregation: Any) -> str:
    if aggregation not in _AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {_AGGREGATIONS}; got {aggregation!r}")
    return aggregation


def _policy_estimate(obj: Tensor, ratio: Tensor, clipped: Tensor, log_prob: Tensor, old_log_prob: Tensor | None,
                     mask: Tensor, aggregation: str, rewards: Tensor, **info: Any) -> Estimate:
    per_item = _aggregate(obj, mask, aggregation)  # [B]
    valid = mask.sum().clamp(min=1.0)
    with torch.no_grad():
        old = log_prob if old_log_prob is None else old_log_prob
        approx_kl = float((kl_k3(old.detach(), log_prob.detach()) * mask).sum() / valid)
        info.update(clip_fraction=float((clipped * mask).sum() / valid), approx_kl_old=approx_kl,
                    ratio_mean=float((ratio.detach() * mask).sum() / valid))
    return Estimate(per_item.sum(), per_item, n_evals=log_prob.shape[0], f_values=rewards.detach(), info=info)


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
    obj, ratio, clipped = _clipped_objective(log_prob, old_log_prob, adv, clip)
    return _policy_estimate(obj, ratio, clipped, log_prob, old_log_prob, m, aggregation, advantages)


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
    obj, ratio, clipped = _clipped_objective(log_prob, old_log_prob, _broadcast_adv(adv, log_prob, "advantages"),
                                             clip)
    info: dict[str, Any] = {"advantages": adv}
    if ref_log_prob is not None:
        kl = kl_k3(log_prob, ref_log_prob.detach())
        obj = obj - beta * kl
        info["kl_ref"] = float((kl.detach() * m).sum() / m.sum().clamp(min=1.0))
    return _policy_estimate(obj, ratio, clipped, log_prob, old_log_prob, m, aggregation, rewards, **info)
