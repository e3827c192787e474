"""Perturbed Fenchel-Young loss."""

from __future__ import annotations

import torch

from .. import _ops
from ..estimators.base import all_finite, inner, ldexp_rows, resolve_scale, row_exponents
from ..estimators.perturbed import PerturbedOptimizer
from ..layers import DiscreteLayer, naming_overflow
from ..maximizer import validate_input
from ..solvers.base import Solver
from ._common import _check_like, _reduce, _validate, cast_fitting, linearized_loss, reduce_finite


class FenchelYoungLoss(_ops.Native):
    """Perturbed Fenchel-Young loss (Berthet et al., 2020, Sec. 4; InferOpt.jl's ``FenchelYoungLoss``).

    In the max convention, with ``F(theta) = E[ max_y <theta_Z, y> ]`` and ``theta_Z = theta + scale Z``
    (or ``theta * exp(scale Z - scale^2/2)`` for a multiplicative perturbation)::

        L(theta; y_true) = F(theta) - <theta, y_true>        (+ Omega(y_true), constant, omitted)
        grad_theta L     = E[ y*(theta + scale Z) ] - y_true  (additive)
                         = E[ exp(scale Z - scale^2/2) * y*(theta_Z) ] - y_true   (multiplicative)

    Estimated with the layer's ``S`` samples in one executor call; the value estimate
    ``mean_s <theta_Z_s, y_s> - <theta, y_true>`` is differentiated by autograd with the solutions
    held fixed (Danskin), which gives exactly the gradient above. For min-sense solvers ``theta = -costs``.

    Two ways to build it:

    * ``FenchelYoungLoss(layer)`` uses ``layer``'s solver, :class:`PerturbedOptimizer` (its ``scale``, ``samples``,
      ``noise``), guard, executor and generator. Passing any of ``scale``, ``samples``, ``noise``,
      ``multiplicative``, ``executor``, ``guard``, ``generator``, ``seed`` as well raises ``ValueError``: they belong
      to the layer and its estimator.
    * ``FenchelYoungLoss(solver, scale=..., samples=..., noise=..., ...)`` builds that layer.

    Args:
        layer_or_solver: a :class:`~discreteopt.layers.DiscreteLayer` with a :class:`PerturbedOptimizer`, or a
            :class:`~discreteopt.solvers.base.Solver`.
        scale: noise scale (default 1.0), samples (default 10), noise (default ``"normal"``), multiplicative
            (default False): the :class:`PerturbedOptimizer` built for a solver.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per instance ``[B]``).
        executor, guard, generator, seed: the layer built for a solver (see :class:`~discreteopt.layers.DiscreteLayer`;
            the default guard is :class:`~discreteopt.estimators.guards.Auto`).
        sigma: deprecated name of ``scale``.

    Shapes: ``theta [B, *E]`` (natural argument), ``y_true [B, *E]`` -> loss scalar (or ``[B]``).
    Reference: Berthet et al., "Learning with Differentiable Perturbed Optimizers", NeurIPS 2020.

    Extreme values: ``scale`` must fit the compute dtype (:meth:`PerturbedOptimizer.check_dtype`; e.g.
    ``scale=1e300`` with float32 ``theta`` raises ``ValueError``), and a perturbation that overflows raises
    ``ValueError`` naming it. When ``<theta, E[y] - y_true>`` overflows in its products or partial sums (``y_true``
    or ``theta`` near the float maximum), the value is recomputed on terms scaled by a power of two per instance:
    ``+-inf`` only where the exact value leaves the float range, never NaN; a mean or sum over instances at
    ``+inf`` and ``-inf`` raises ``ValueError``.

    PyTorch support: ``torch.func`` (``grad``, ``vmap`` -- the vmapped dim is folded into one solver call and one
    noise draw, so ``vmap`` needs ``randomness="different"``), ``torch.compile(fullgraph=True)`` (custom operator
    ``discreteopt::linearized_loss``; same noise and values as eager for a fixed seed), float16/bfloat16 (computed
    in float32, returned in the input dtype). ``y_true`` gets no gradient. A NaN/inf incoming gradient raises
    ``ValueError``. Second order: a double backward (gradient penalty) raises ``RuntimeError``: the gradient is a
    Monte-Carlo estimate at fixed noise, piecewise constant in ``theta``, while the loss's Hessian is not zero.

    Example::

        >>> import discreteopt as do
        >>> fy = FenchelYoungLoss(do.solvers.GraphShortestPath.grid(5, 5), scale=0.5, samples=10, seed=0)
        >>> c_hat = torch.randn(8, 40, requires_grad=True)
        >>> y_true = do.solvers.GraphShortestPath.grid(5, 5).solve(torch.rand(8, 40))
        >>> fy(c_hat, y_true).backward()
    """

    def __init__(self, layer_or_solver: DiscreteLayer | Solver, scale: float | None = None,
                 samples: int | None = None, noise=None, multiplicative: bool | None = None,
                 reduction: str = "mean", *, executor=None, guard=None, generator=None, seed: int | None = None,
                 sigma: float | None = None):
        super().__init__()
        estimator_args = {"scale": scale, "samples": samples, "noise": noise, "multiplicative": multiplicative,
                          "sigma": sigma}
        layer_args = {"executor": executor, "guard": guard, "generator": generator, "seed": seed}
        if isinstance(layer_or_solver, DiscreteLayer):
            given = [k for k, v in {**estimator_args, **layer_args}.items() if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} belong(s) to the layer's estimator or the layer: "
                                 "FenchelYoungLoss(layer) uses layer.estimator (a PerturbedOptimizer) and the layer's "
                                 "guard, executor and generator. Set them there, or pass a solver instead of a layer")
        elif isinstance(layer_or_solver, Solver):
            estimator = PerturbedOptimizer(
                scale=resolve_scale(scale, sigma), samples=10 if samples is None else samples,
                noise="normal" if noise is None else noise,
                multiplicative=False if multiplicative is None else multiplicative)
            layer_or_solver = DiscreteLayer(layer_or_solver, estimator, executor, guard=guard, generator=generator,
                                            seed=seed)
        else:
            raise ValueError(f"layer_or_solver must be a DiscreteLayer or a Solver; got {type(layer_or_solver).__name__}")
        if not isinstance(layer_or_solver.estimator, PerturbedOptimizer):
            raise ValueError("layer_or_solver: FenchelYoungLoss needs a layer whose estimator is a "
                             f"PerturbedOptimizer; got {type(layer_or_solver.estimator).__name__}")
        _reduce(torch.zeros(1), reduction)
        self.layer = layer_or_solver
        self.reduction = reduction

    #: a double backward raises this (see LinearizedLoss): the Monte-Carlo gradient at fixed noise is piecewise
    #: constant in theta, while the loss's Hessian (the Jacobian of the perturbed maximiser) is not zero
    _second_order_refusal = (
        "double backward (create_graph=True, a gradient penalty, nested torch.func.grad) through FenchelYoungLoss: "
        "its gradient E[y*(theta + scale Z)] - y_true is estimated with the noise held fixed, piecewise constant in "
        "theta, so autograd's second derivative would be 0 while the loss's Hessian (the Jacobian of the perturbed "
        "maximiser) is not. Refused rather than silently zero; SPOPlus (piecewise linear) supports it.")

    def forward(self, theta: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """``theta [B, *E]`` (natural argument), ``y_true [B, *E]`` -> loss (scalar, or ``[B]`` for ``"none"``)."""
        if not _ops.compiling():  # (under torch.compile the operator checks its arguments)
            if torch.jit.is_tracing():
                self._refuse_jit_trace()
            if _ops.transformed(theta):
                _validate(self.layer.solver, theta, "theta")
        return reduce_finite(linearized_loss(theta, y_true, None, self), self.reduction)  # [B] -> reduced

    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        return self.layer.generator_for(device)

    def _linearized(self, theta: torch.Tensor, y_true: torch.Tensor, _unused=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Storage-backed ``theta [B, *E]``, ``y_true [B, *E]`` -> ``(value [B], direction [B, *E])`` with
        ``dvalue/dtheta = direction`` (natural argument); one executor call of ``B*S`` instances."""
        layer, est = self.layer, self.layer.estimator
        validate_input(layer.solver, theta, "theta")
        _ops.check_dtype(theta, "theta")
        _check_like(y_true, theta, "y_true", "theta")
        sign = -1.0 if layer.solver.sense == "min" else 1.0
        ndim = theta.ndim - 1
        theta_max = layer._theta_max(theta)  # [B, *E], no graph, float32 for half precision
        est.check_dtype(theta_max.dtype)  # a scale that cannot work in this dtype: ValueError naming it
        z = est.sample(theta_max, layer.generator_for(theta.device))  # [B, S, *E]
        factor = est.factor(z)  # [B, S, *E] (multiplicative) or None
        perturbed = theta_max.unsqueeze(1) * factor if factor is not None else \
            torch.add(theta_max.unsqueeze(1), z, alpha=est.scale)  # [B, S, *E]
        with naming_overflow(layer, perturbed, theta_max):
            y = layer.maximizer(perturbed.reshape(-1, *theta.shape[1:]))  # [B*S, *Y]
        y = y.reshape(perturbed.shape)  # [B*S, *Y] -> [B, S, *Y]
        # mean_s <theta_Z_s, y_s> = <theta, ybar> + c with the solutions held fixed (Danskin):
        #   additive:        ybar = mean_s y_s,              c = scale * mean_s <Z_s, y_s>
        #   multiplicative:  ybar = mean_s factor_s * y_s,   c = 0
        if factor is None:
            ybar = y.mean(dim=1)  # [B, *Y]
            const = est.scale * inner(z, y, ndim).mean(dim=1)  # [B]
        else:
            ybar = (factor * y).mean(dim=1)  # [B, *Y]
            const = 0.0
        target = cast_fitting(y_true, ybar.dtype, "y_true", "FenchelYoungLoss")  # [B, *E]
        direction = ybar.sub_(target)  # [B, *E]: gradient w.r.t. theta_max
        value = inner(theta_max, direction, ndim) + const  # [B]
        if not all_finite(value):  # products or partial sums overflowed (inf - inf): recompute them scaled
            value = self._safe_value(theta_max, direction, z, y, factor is None)
        if sign < 0:
            direction = direction.neg_()  # gradient w.r.t. the natural argument (costs)
        return value.to(theta.dtype), direction.to(theta.dtype)

    def _safe_value(self, theta_max: torch.Tensor, direction: torch.Tensor, z: torch.Tensor, y: torch.Tensor,
                    additive: bool) -> torch.Tensor:
        """``<theta, direction> + scale * mean_s <Z_s, y_s>`` ``[B]`` computed on terms scaled by a power of two per
        instance: ``+-inf`` only where the exact value leaves the float range, never ``inf - inf``."""
        ndim = theta_max.ndim - 1
        ea, eb = row_exponents(theta_max), row_exponents(direction)  # [B]
        e = ea + eb
        value = inner(ldexp_rows(theta_max, -ea), ldexp_rows(direction, -eb), ndim)  # [B], |.| <= numel
        if additive:
            noise_term = inner(z, y, ndim).mean(dim=1)  # [B], moderate
            scale = ldexp_rows(torch.full_like(noise_term, self.layer.estimator.scale), -e)
            value = value + scale * noise_term
        return ldexp_rows(value, e)

    def _linearized_fake(self, theta: torch.Tensor, y_true: torch.Tensor, _unused=None):
        _ops.check_structure(self.layer.solver, theta, "theta")
        return theta.new_empty(theta.shape[:1]), torch.empty_like(theta)
