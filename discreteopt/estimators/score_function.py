"""Score-function (REINFORCE) estimator on the perturbation noise (Williams, 1992; for perturbed
optimizers: Berthet et al., 2020, Sec. 3; baselines: Kool et al., 2019).

With ``y_s = y*(theta + sigma Z_s)`` and any per-sample loss ``L(y_s)`` -- a black box is fine::

    grad_theta E[ L(y*(theta + sigma Z)) ] = E[ L(y*(theta + sigma Z)) grad nu(Z) ] / sigma
                                           ~ mean_s ( L_s - b_s ) grad nu(Z_s) / sigma

where ``grad nu = -score`` of the noise and ``b_s`` a baseline (default leave-one-out, so ``S >= 2``).

Two ways to use it, because a layer's backward only receives ``dL/dy``, never per-sample losses:

* **black-box losses** -- :func:`discreteopt.layers.score_function_loss` ``(layer, theta, loss_fn)``
  calls ``loss_fn(y [B, S, *Y]) -> [B, S]`` on the sampled solutions (no gradient through it) and returns
  a scalar whose value is the mean loss and whose gradient is the estimate above (:meth:`surrogate`);
* **inside a** :class:`~discreteopt.layers.DiscreteLayer` -- the per-sample loss is replaced by its
  linearisation ``<dL/dy, y_s>``, which makes the backward the perturbed-optimizer Jacobian estimate
  with the baseline (useful for a differentiable downstream loss).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .baselines import Baseline, LeaveOneOut
from .perturbed import PerturbedOptimizer

_LOO = object()


class ScoreFunction(PerturbedOptimizer):
    """REINFORCE on ``theta + sigma Z`` with a baseline (default :class:`LeaveOneOut`)."""

    def __init__(self, sigma: float = 1.0, samples: int = 8, noise="normal",
                 baseline: Baseline | None | object = _LOO):
        super().__init__(sigma=sigma, samples=samples, noise=noise, multiplicative=False,
                         baseline=LeaveOneOut() if baseline is _LOO else baseline)

    def surrogate(self, theta: torch.Tensor, z: torch.Tensor, losses: torch.Tensor,
                  map_losses: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
        """Scalar (or ``[B]``) with value ``mean_s L_s`` and gradient ``mean_s (L_s - b_s) grad nu(Z_s) / sigma``.

        ``theta [B, *E]`` (max convention, with autograd graph), ``z [B, S, *E]`` the noise used,
        ``losses [B, S]`` the per-sample losses (treated as constants).
        """
        b, s = z.shape[:2]
        if losses.shape != (b, s):
            raise ValueError(f"loss_fn must return per-sample losses of shape [B, S] = {(b, s)}; "
                             f"got {tuple(losses.shape)}")
        losses = losses.detach().to(theta.dtype)
        centred = losses
        if self.baseline is not None:
            centred = losses - self.baseline(losses, None if map_losses is None else map_losses.detach())
        coef = self.score_average(centred, z, theta.detach())  # [B, *E]
        linear = (coef * theta).flatten(1).sum(1)  # [B], gradient coef
        per_instance = losses.mean(1) + linear - linear.detach()  # value: mean loss
        if reduction == "none":
            return per_instance
        if reduction == "mean":
            return per_instance.mean()
        if reduction == "sum":
            return per_instance.sum()
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")


LossFn = Callable[[torch.Tensor], torch.Tensor]
