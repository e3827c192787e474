"""Perturbed optimizers (Berthet, Blondel, Teboul, Cuturi, Vert & Bach, NeurIPS 2020, "Learning with
Differentiable Perturbed Optimizers").

Additive perturbation of scale ``scale`` (the paper's ``sigma``), ``Z`` with density ``p(z) ~ exp(-nu(z))``
(``grad nu = -score`` of the noise)::

    y_s(theta)       = E[ y*(theta + scale Z) ]                         (forward: Monte Carlo mean over S samples)
    J_theta y_s      = E[ y*(theta + scale Z) grad nu(Z)^T ] / scale    (Normal: grad nu(Z) = Z)
    dL/dtheta        = mean_s ( <g_s, y_s> - b_s ) grad nu(Z_s) / scale

``Z = eps`` is drawn from ``noise``; a noise with its own scale ``s`` (``Normal(scale=s)``) is the same as
``scale=s`` with a unit noise: the score of the noise carries ``1/s``, so every term divides by the *effective*
scale ``scale * noise.scale`` (giving both != 1 raises ``ValueError``: the scale would be given twice).

Multiplicative perturbation (for positive-cost problems: signs of ``theta`` are preserved, so shortest
path costs stay positive and no guard is needed), with ``sigma = scale * noise.scale``::

    theta_s = theta * exp(scale eps_s - sigma^2 / 2)
    dL/dtheta = mean_s ( <g_s, y_s> - b_s ) grad nu(Z_s) / (scale * theta)       (theta != 0)

``b_s`` is an optional :mod:`baseline <discreteopt.estimators.baselines>` (control variate; unbiased since
``E[grad nu(Z)] = 0``). For antithetic pairs use ``noise=Antithetic(Normal())``. Solver calls: ``B*S`` in
forward (``+B`` with :class:`~discreteopt.estimators.baselines.MAPBaseline`), none in backward.
The estimate is exact in expectation for ``y_s`` computed with the *guarded* solver: a clamp that
alters perturbed costs changes the smoothed map (the default guard says so when it happens).

Extreme values: the effective scale must be a normal number of the compute dtype (the estimate divides by it;
:meth:`PerturbedOptimizer.check_dtype`), and at most :func:`max_multiplicative_scale` for a multiplicative
perturbation. The backward is linear in ``dL/dy`` (:attr:`~discreteopt.estimators.base.Estimator.linear_backward`):
when a per-sample term ``<dL/dy, y_s>`` overflows although the mean does not (``dL/dy`` near the float maximum),
the layer recomputes the estimate on ``dL/dy`` scaled by a power of two per instance -- exactly; an estimate whose
exact value leaves the float range (a tiny ``scale``; multiplicative with ``theta`` near 0) raises ``ValueError``.

How to choose ``scale`` and ``samples``: ``scale`` is a smoothing width in the units of ``theta``. Too small and
almost every sample returns the same solution, so the gradient is rarely non-zero and noisy (it divides by
``scale``); too large and ``y_s`` is a blur that ignores ``theta``. Start with ``scale`` about the gap between the
objective values of competing solutions (for costs of order 1 on a small graph: 0.5-2) and ``samples`` 5-20.
Measured (``benchmarks/bench_defaults.py --sweep``: PyEPO's 5x5 shortest path, deg 4, noise 0.5, arc costs of
order 1, linear model, Fenchel-Young loss, 10 samples, 3 seeds), normalised test regret for ``scale`` =
0.1 / 0.5 / 1 / 2 / 5: 0.087 / 0.074 / 0.074 / 0.073 / 0.081 -- a broad optimum, worse at both ends.
Multiplicative noise: ``scale`` is a relative width; 0.2-0.5 on the Warcraft costs in [0.8, 9.2].
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import torch

from .base import (
    Estimator,
    check_bool,
    check_in_dtype,
    check_noise,
    check_samples,
    check_scale_once,
    dtype_range,
    inner,
    resolve_noise,
    resolve_scale,
    sample_noise,
    unflatten,
)
from .baselines import Baseline, LeaveOneOut, MAPBaseline


def max_multiplicative_scale(dtype: torch.dtype | None = None) -> float:
    """Largest effective ``scale`` of a multiplicative perturbation in ``dtype`` (``None``: float64):
    ``sqrt(2 log(finfo.max))`` (37.7 in float64, 13.3 in float32). Beyond it the factor
    ``exp(scale eps - scale^2 / 2)`` of a typical ``eps`` underflows to 0 (``scale^2 / 2`` itself overflows a
    Python float from ``scale ~ 1.3e154``), so every perturbed ``theta`` would be 0 or overflow."""
    big = sys.float_info.max if dtype is None else dtype_range(dtype)[1]
    return math.sqrt(2.0 * math.log(big))


class _Ctx(NamedTuple):
    theta: torch.Tensor  # [B, *E]
    z: torch.Tensor  # [B, S, *E]
    y: torch.Tensor  # [B, S, *Y]
    y_map: torch.Tensor | None  # [B, *Y]


class PerturbedOptimizer(Estimator):
    """Perturbed maximiser: forward ``mean_s y*(theta + scale Z_s)``, Jacobian by the score of the noise.

    Args:
        scale: noise scale ``> 0`` (default 1.0): the perturbation is ``scale * eps`` with ``eps ~ noise``
            (multiplicative: ``theta * exp(scale * eps - sigma^2 / 2)``). See the module docstring for how to set it.
            The effective scale must be a normal number of the compute dtype (``[1.2e-38, 3.4e38]`` in float32;
            the estimate divides by it) and, multiplicative, at most :func:`max_multiplicative_scale` (37.7 in
            float64, 13.3 in float32); ``ValueError`` otherwise.
        samples: number ``S >= 1`` of perturbed solutions per instance (default 10).
        noise: ``"normal"`` (default), ``"gumbel"`` or a :class:`~discreteopt.noise.Noise` with a tractable score
            (``Normal``, ``Gumbel``, ``Logistic``, ``Antithetic(Normal())``). Its own ``scale`` must be 1 when
            ``scale != 1``.
        multiplicative: log-normal multiplicative perturbation (keeps the signs of ``theta``; needs ``theta != 0``).
        baseline: optional control variate (:class:`~discreteopt.estimators.baselines.LeaveOneOut`,
            :class:`~discreteopt.estimators.baselines.MAPBaseline`).
        sigma: deprecated name of ``scale`` (``DeprecationWarning``; giving both raises ``ValueError``).

    Shapes: ``theta [B, *E]`` -> perturbed arguments ``[B*S, *E]`` -> ``y [B, S, *Y]`` (the layer returns the mean
    ``[B, *Y]``); backward ``grad_y [B, S, *Y] -> grad_theta [B, *E]``.

    Formula (additive)::

        y_s(theta) = E[y*(theta + scale Z)],   dL/dtheta = mean_s (<g_s, y_s> - b_s) grad nu(Z_s) / scale

    Reference: Berthet et al., "Learning with Differentiable Perturbed Optimizers", NeurIPS 2020.

    Example::

        >>> import discreteopt as do
        >>> layer = do.DiscreteLayer(do.solvers.TopK(2), PerturbedOptimizer(scale=0.5, samples=10), seed=0)
        >>> y = layer(torch.randn(4, 6, requires_grad=True))    # [4, 6], mean of 10 perturbed top-2 masks
    """

    def __init__(self, scale: float | None = None, samples: int = 10, noise="normal", multiplicative: bool = False,
                 baseline: Baseline | None = None, *, sigma: float | None = None):
        self.scale = resolve_scale(scale, sigma)
        self.samples = check_samples(samples)
        self.noise = resolve_noise(noise)
        if self.noise is None:
            raise ValueError("noise must be a Noise with a score (e.g. Normal()); got None")
        check_noise(self.noise, self.samples, needs_score=True)
        check_scale_once(self.scale, self.noise)
        if baseline is not None and not isinstance(baseline, Baseline):
            raise ValueError(f"baseline must be a Baseline or None; got {type(baseline).__name__}")
        if baseline is not None and self.samples < baseline.min_samples:
            raise ValueError(f"samples must be >= {baseline.min_samples} for {baseline!r}; got {samples}")
        self.baseline = baseline
        self.multiplicative = check_bool(multiplicative, "multiplicative")
        if self.multiplicative and self.effective_scale > max_multiplicative_scale():
            raise ValueError(f"scale must be at most {max_multiplicative_scale():.4g} for a multiplicative "
                             "perturbation (the factor exp(scale * eps - scale**2 / 2) underflows to 0 beyond it "
                             f"in float64); got scale={self.effective_scale!r}")

    @property
    def linear_backward(self) -> bool:  # type: ignore[override]
        """The backward is linear in ``dL/dy`` for no baseline and the (linear) built-in baselines."""
        return self.baseline is None or type(self.baseline) in (LeaveOneOut, MAPBaseline)

    def check_dtype(self, dtype):
        """The effective scale must be a normal number of ``dtype`` (multiplicative: at most
        :func:`max_multiplicative_scale`)."""
        sigma = self.effective_scale
        check_in_dtype(sigma, "scale", dtype, self, "the perturbation scale * eps and the division of the "
                       "estimate by scale leave the float range")
        if self.multiplicative and sigma > max_multiplicative_scale(dtype):
            dt = str(dtype).replace("torch.", "")
            raise ValueError(f"scale={sigma:.4g} is too large for a multiplicative perturbation in {dt} "
                             f"({self!r}): the factor exp(scale * eps - scale**2 / 2) underflows to 0; expected "
                             f"scale <= {max_multiplicative_scale(dtype):.4g}, or compute in float64")

    @property
    def sigma(self) -> float:
        """Deprecated name of :attr:`scale`."""
        return self.scale

    @property
    def effective_scale(self) -> float:
        """``scale * noise.scale``: the standard deviation (Normal noise) of the perturbation."""
        return self.scale * self.noise.scale

    # ------------------------------------------------------------------ perturbation
    def factor(self, z: torch.Tensor) -> torch.Tensor | None:
        """Multiplicative factor ``exp(scale eps - sigma^2 / 2)`` ``[B, S, *E]``, ``sigma = scale * noise.scale``
        (mean 1 for Normal noise); ``None`` when additive."""
        if not self.multiplicative:
            return None
        return (z * self.scale).sub_(self.effective_scale**2 / 2).exp_()

    def perturbation(self, theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``theta [B, *E]``, ``z [B, S, *E]`` -> perturbed ``[B, S, *E]`` (differentiable in ``theta``)."""
        if self.multiplicative:
            return theta.unsqueeze(1) * self.factor(z)
        return torch.add(theta.unsqueeze(1), z, alpha=self.scale)  # [B, S, *E]

    def sample(self, theta: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Noise ``Z [B, S, *E]`` on ``theta``'s device and dtype."""
        if self.multiplicative and bool((theta == 0).any()):
            raise ValueError("theta must have no zero entry for a multiplicative perturbation "
                             "(the Jacobian estimate divides by theta)")
        return sample_noise(self.noise, theta, self.samples, generator)

    # ------------------------------------------------------------------ forward
    def plan(self, theta, generator):
        z = self.sample(theta, generator)  # [B, S, *E]
        thetas = self.perturbation(theta, z).reshape(-1, *theta.shape[1:])  # [B, S, *E] -> [B*S, *E]
        if self.baseline is not None and self.baseline.needs_map:
            thetas = torch.cat([thetas, theta])  # [B*S + B, *E]
        return thetas, z

    def finish(self, theta, ys, z):
        b, s = theta.shape[0], self.samples
        y = unflatten(ys[: b * s], b, s)  # [B*S, *Y] -> [B, S, *Y]
        y_map = ys[b * s:] if ys.shape[0] > b * s else None  # [B, *Y]
        return y, _Ctx(theta, z, y, y_map)

    # ------------------------------------------------------------------ backward
    def score_average(self, values: torch.Tensor, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``mean_s values_s * grad nu(Z_s) / scale`` (``/ theta`` when multiplicative): ``[B, *E]``.

        ``values [B, S]``, ``z [B, S, *E]``, ``theta [B, *E]``; ``grad nu = -score`` of the noise (which carries
        the noise's own ``1 / noise.scale``, so the whole divides by the effective scale).
        """
        avg = self.noise.weighted_score(values, z)  # [B, *E]
        avg = avg.mul_(-1.0 / (self.scale * values.shape[1]))
        return avg.div_(theta) if self.multiplicative else avg

    def backward(self, maximize, theta, ctx, grad_y):
        ndim = theta.ndim - 1
        values = inner(grad_y, ctx.y, ndim)  # [B, S]
        if self.baseline is not None:
            map_values = inner(grad_y, ctx.y_map.unsqueeze(1), ndim) if ctx.y_map is not None else None  # [B, S]
            values = values - self.baseline(values, map_values)
        return self.score_average(values, ctx.z, ctx.theta)  # [B, *E]
