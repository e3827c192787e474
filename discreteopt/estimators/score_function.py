"""Score-function (REINFORCE) estimator on the perturbation noise (Williams, 1992; for perturbed
optimizers: Berthet et al., 2020, Sec. 3; baselines: Kool et al., 2019).

With ``y_s = y*(theta + scale Z_s)`` and any per-sample loss ``L(y_s)`` -- a black box is fine::

    grad_theta E[ L(y*(theta + scale Z)) ] = E[ L(y*(theta + scale Z)) grad nu(Z) ] / scale
                                           ~ mean_s ( L_s - b_s ) grad nu(Z_s) / scale

where ``grad nu = -score`` of the noise and ``b_s`` a baseline (default leave-one-out, so ``S >= 2``). With a
noise of its own scale ``s`` the division is by the effective scale ``scale * s`` (the noise's score carries
``1/s``).

Two ways to use it, because a layer's backward only receives ``dL/dy``, never per-sample losses:

* **black-box losses** -- :func:`discreteopt.layers.score_function_loss` ``(layer, theta, loss_fn)``
  calls ``loss_fn(y [B, S, *Y]) -> [B, S]`` on the sampled solutions (no gradient through it) and returns
  a scalar whose value is the mean loss and whose gradient is the estimate above (:meth:`surrogate`);
* **inside a** :class:`~discreteopt.layers.DiscreteLayer` -- the per-sample loss is replaced by its
  linearisation ``<dL/dy, y_s>``, which makes the backward the perturbed-optimizer Jacobian estimate
  with the baseline (useful for a differentiable downstream loss).

Choosing ``scale`` and ``samples``: as for :class:`~discreteopt.estimators.perturbed.PerturbedOptimizer`; the
variance grows like ``1 / (scale^2 S)``, so prefer ``S >= 8`` and the leave-one-out baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import describe_nonfinite
from .base import all_finite, ldexp_rows, resolve_scale, row_exponents
from .baselines import Baseline, LeaveOneOut
from .perturbed import PerturbedOptimizer

_LOO = object()


class ScoreFunction(PerturbedOptimizer):
    """REINFORCE on ``theta + scale Z`` with a baseline (default :class:`LeaveOneOut`).

    Args:
        scale: noise scale ``> 0`` (default 1.0): perturbation ``scale * eps``, ``eps ~ noise``.
        samples: ``S`` per instance (default 8; ``>= 2`` for the default leave-one-out baseline).
        noise: ``"normal"`` (default), ``"gumbel"`` or a :class:`~discreteopt.noise.Noise` with a score; its own
            ``scale`` must be 1 when ``scale != 1``.
        baseline: :class:`LeaveOneOut` (default), :class:`~discreteopt.estimators.baselines.MAPBaseline` or ``None``.
        sigma: deprecated name of ``scale``.

    Shapes: ``theta [B, *E]``; ``losses [B, S]`` (black-box form); ``y [B, S, *Y]``.

    Formula: ``grad = mean_s (L_s - b_s) grad nu(Z_s) / scale`` (module docstring).
    Reference: Williams, "Simple statistical gradient-following algorithms", 1992; Kool et al., "Buy 4
    REINFORCE samples, get a baseline for free!", 2019.

    Example::

        >>> import discreteopt as do
        >>> layer = do.DiscreteLayer(do.solvers.Argmax(), ScoreFunction(scale=1.0, samples=8), seed=0)
        >>> logits, reward = torch.randn(4, 5, requires_grad=True), torch.randn(5)
        >>> loss = do.score_function_loss(layer, logits, lambda y: -(y * reward).sum(-1))  # black box: [B, S]
        >>> loss.backward()
    """

    def __init__(self, scale: float | None = None, samples: int = 8, noise="normal",
                 baseline: Baseline | None | object = _LOO, *, sigma: float | None = None):
        scale = resolve_scale(scale, sigma)
        super().__init__(scale=scale, samples=samples, noise=noise, multiplicative=False,
                         baseline=LeaveOneOut() if baseline is _LOO else baseline)

    def surrogate(self, theta: torch.Tensor, z: torch.Tensor, losses: torch.Tensor,
                  map_losses: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
        """Scalar (or ``[B]``) with value ``mean_s L_s`` and gradient ``mean_s (L_s - b_s) grad nu(Z_s) / scale``.

        ``theta [B, *E]`` (max convention, with autograd graph), ``z [B, S, *E]`` the noise used,
        ``losses [B, S]`` the per-sample losses (treated as constants).

        Overflow-safe: the losses of each instance are scaled by a power of two before the baseline and the score
        average (exact), and the gradient enters as ``<coef, theta - theta.detach()>`` (exactly 0 in value, never
        ``inf - inf`` for ``theta`` near the float max). ``ValueError`` when the losses do not fit ``theta``'s
        dtype or the estimate itself overflows it.
        """
        b, s = z.shape[:2]
        if losses.shape != (b, s):
            raise ValueError(f"loss_fn must return per-sample losses of shape [B, S] = {(b, s)}; "
                             f"got {tuple(losses.shape)}")
        dtype = theta.dtype
        losses = losses.detach().to(dtype)
        map_losses = None if map_losses is None else map_losses.detach().to(dtype)
        if not all_finite(losses) or (map_losses is not None and not all_finite(map_losses)):
            raise ValueError(f"loss_fn(y) overflows {str(dtype).replace('torch.', '')}, the dtype theta is "
                             f"computed in: its values must fit it; got {describe_nonfinite(losses)} after the cast")
        e = row_exponents(losses) if map_losses is None else row_exponents(losses, map_losses)  # [B]
        unit = ldexp_rows(losses, -e)  # [B, S], |.| < 1
        centred = unit
        if self.baseline is not None:
            centred = unit - self.baseline(unit, None if map_losses is None else ldexp_rows(map_losses, -e))
        coef = ldexp_rows(self.score_average(centred, z, theta.detach()), e)  # [B, *E]
        if not all_finite(coef):
            raise ValueError(f"the score-function gradient of {self!r} overflows {str(dtype).replace('torch.', '')} "
                             f"({describe_nonfinite(coef)}; max |loss| = {float(losses.abs().max()):.4g}): it "
                             "divides the losses by scale; expected smaller losses, a larger scale, or float64")
        mean = losses.mean(1)  # [B]
        if not all_finite(mean):  # the sum overflows: the mean of the scaled losses, scaled back (exact)
            mean = ldexp_rows(unit.mean(1), e)
        per_instance = mean + (coef * (theta - theta.detach())).flatten(1).sum(1)  # value: mean loss; grad: coef
        if reduction == "none":
            return per_instance
        if reduction == "mean":
            return per_instance.mean()
        if reduction == "sum":
            return per_instance.sum()
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")


LossFn = Callable[[torch.Tensor], torch.Tensor]
