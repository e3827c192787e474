"""``DiscreteLayer``: a combinatorial solver as a trainable ``nn.Module``.

API in three lines::

    layer = DiscreteLayer(GridShortestPath(), IMLE(lam=20.0, samples=10), executor=Processes(8))
    path = layer(costs)                       # [B, H, W] -> [B, H, W], mean over the S samples
    loss = (path - true_path).abs().mean(); loss.backward()

The layer owns the three things estimators must not know about:

* **sense** -- estimators see a maximiser ``theta -> argmax_y <theta, y>``. For ``solver.sense == "min"``
  the layer's input is the solver's natural argument (costs ``w``) and the layer maximises ``theta = -w``;
  the layer's autograd function negates the estimator's gradient once, so gradients come back in cost space;
* **guards** -- before every solver call the natural argument goes through one
  :class:`~discreteopt.estimators.guards.Guard`. The default ``Auto()`` never changes the problem silently:
  nothing for solvers without a bound (acyclic ``GraphShortestPath`` solves negative costs exactly), the exact
  ``Shift()`` for ``shift_invariant`` solvers, and otherwise (Dijkstra on a cyclic graph or the Warcraft grid,
  ``min_cost = 0``) blackbox backprop's clamp of perturbed costs to 0 with a one-time ``GuardWarning`` and the
  counters ``stats.clamped_entries`` / ``stats.guarded_entries``. The eval-mode MAP forward behaves like
  ``solver.solve`` (``Auto`` never clamps it: negative costs raise the solver's ``ValueError``). ``Clamp()``
  clamps without a warning (still counted), ``Raise()`` refuses; a multiplicative
  :class:`~discreteopt.estimators.PerturbedOptimizer` keeps positive costs positive and never needs the guard;
* **execution** -- all solver calls of a forward (the ``S`` perturbed copies, ``[B, S, *E] -> [B*S, *E]``)
  and of a backward go to the executor as *one* batch. :attr:`DiscreteLayer.stats` counts them.

Output: ``[B, *Y]`` (mean over samples; the single solution when ``S = 1``), or ``[B, S, *Y]`` with
``return_samples=True``, on ``theta``'s device and dtype. In ``eval()`` mode the layer returns the
unperturbed MAP solution by default (``eval_mode="map"``; ``"estimator"`` keeps the training forward).
Noise is drawn with a ``torch.Generator`` on ``theta``'s device: pass ``generator=`` or ``seed=``;
with neither, the device's default generator is used (``torch.manual_seed`` makes runs reproducible).

PyTorch's tools (details in :class:`DiscreteLayer`): ``torch.func`` (``grad``, ``vjp``, ``vmap``, ``jacrev``)
through an ``autograd.Function`` with ``setup_context`` and a vmap rule that folds the vmapped dim into the batch;
``torch.compile(fullgraph=True)`` through the custom operators of :mod:`discreteopt._ops`; float16 / bfloat16
inputs computed in float32; second-order gradients exact for ``StraightThrough`` and refused with a clear error
for the finite-difference and Monte-Carlo estimators.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import torch

from . import _ops
from ._validation import check_finite, describe_nonfinite
from .estimators.base import (
    Estimator,
    all_finite,
    dtype_range,
    ldexp_rows,
    max_abs,
    row_exponents,
)
from .estimators.guards import Guard
from .executors.base import Executor
from .maximizer import Maximizer, SolverStats, validate_input
from .noise.base import check_generator
from .solvers.base import Solver


class _Call:
    """One forward of a layer and what its backward needs.

    ``start`` validates ``theta``, samples the noise (:meth:`Estimator.plan`) and submits the solver batch;
    ``finish`` waits for it and builds ``y``; ``backward`` turns ``dL/dy`` into ``dL/dtheta``. Eager calls
    start in :meth:`DiscreteLayer.forward_async` (so the executor works while the caller continues); under
    ``torch.func`` the autograd function starts it; under ``torch.compile`` the custom operator does.
    """

    __slots__ = ("layer", "samples", "map", "dtype", "theta_max", "state", "future", "est_ctx", "s", "rows",
                 "thetas")

    def __init__(self, layer: DiscreteLayer, samples: bool, map_mode: bool = False):
        self.layer, self.samples, self.map = layer, samples, map_mode
        self.future: Future | None = None
        self.est_ctx: Any = None
        self.thetas: torch.Tensor | None = None

    # ------------------------------------------------------------------ forward
    def start(self, theta: torch.Tensor) -> Future:
        """Validate the (storage-backed) natural argument ``theta [B, *E]`` and submit the solver batch."""
        validate_input(self.layer.solver, theta, "theta")
        _ops.check_dtype(theta, "theta")
        return self.submit(self.layer._theta_max(theta), theta.dtype)

    def submit(self, theta_max: torch.Tensor, dtype: torch.dtype) -> Future:
        layer = self.layer
        self.theta_max, self.dtype = theta_max, dtype  # [B, *E], max convention, compute dtype, no graph
        if self.map:
            with layer.maximizer.unperturbed():  # MAP: the guard never clamps (Auto) -- like solver.solve
                self.future = layer.maximizer.submit(theta_max)
        else:
            layer.estimator.check_dtype(theta_max.dtype)  # hyperparameters that cannot work in this dtype
            thetas, self.state = layer.estimator.plan(theta_max, layer.generator_for(theta_max.device))  # [N, *E]
            self.thetas = thetas  # (only for the message of a perturbation that overflows)
            self.future = layer.maximizer.submit(thetas)
        return self.future

    def finish(self) -> torch.Tensor:
        """``y [B, *Y]`` (mean over samples) or ``[B, S, *Y]`` in the input's dtype."""
        thetas, self.thetas = self.thetas, None
        with naming_overflow(self.layer, thetas, self.theta_max):
            ys = self.future.result()  # [N, *Y]
        if self.map:
            y = ys if ys.dtype == self.dtype else ys.to(self.dtype)  # [B, *Y]
            return y.unsqueeze(1) if self.samples else y  # [B, 1, *Y]
        est = self.layer.estimator
        if est.needs_same_shape and ys.shape[1:] != self.theta_max.shape[1:]:
            raise ValueError(f"{type(est).__name__} needs solutions of the same shape as theta "
                             f"{tuple(self.theta_max.shape[1:])}; the solver returned {tuple(ys.shape[1:])}")
        y, self.est_ctx = est.finish(self.theta_max, ys, self.state)  # [B, S, *Y]
        self.state = None
        self.rows, self.s = y.shape[0], y.shape[1]
        if y.dtype != self.dtype:
            y = y.to(self.dtype)  # half precision: computed in float32
        elif self.samples:
            return y.clone()  # [B, S, *Y]; a copy: in-place edits must not reach the backward context
        if self.samples:
            return y
        # S == 1: a view, which autograd forbids editing in place (same protection, no copy)
        return y[:, 0] if self.s == 1 else y.mean(dim=1)  # [B, *Y]

    # ------------------------------------------------------------------ backward
    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        """``dL/dy`` (``[B, *Y]`` or ``[B, S, *Y]``, storage-backed) -> ``dL/dtheta [B, *E]`` (natural argument)."""
        layer = self.layer
        bad = _ops.nonfinite_rows(grad_out)  # [B] or None: these rows get a NaN gradient, the others are solved
        if bad is not None:
            grad_out = grad_out.masked_fill(bad.reshape(-1, *([1] * (grad_out.ndim - 1))), 0.0)
            self.warn_nonfinite(bad)
        if grad_out.dtype != self.theta_max.dtype:
            grad_out = grad_out.to(self.theta_max.dtype)
        grad_y = self.per_sample(grad_out)  # [B, S, *Y]
        maximize = self.checked(layer.maximizer.backward_fn(), grad_y)
        grad = layer.estimator.backward(maximize, self.theta_max, self.est_ctx, grad_y)
        if not all_finite(grad):  # one check (one reduction off the CPU); rare path below
            grad = self.nonfinite_estimate(grad, grad_out, bad, maximize)
        if grad.dtype != self.dtype:
            grad = grad.to(self.dtype)
        if bad is not None:
            grad = grad.masked_fill(bad.reshape(-1, *([1] * (grad.ndim - 1))), float("nan"))
        return -grad if layer.solver.sense == "min" else grad  # [B, *E]

    def per_sample(self, grad_out: torch.Tensor) -> torch.Tensor:
        """``dL/dy`` -> the per-sample gradients ``grad_y [B, S, *Y]`` the estimator sees (see estimators.base)."""
        if self.samples:
            return grad_out * self.s  # [B, S, *Y]
        return grad_out.unsqueeze(1).expand(grad_out.shape[0], self.s, *grad_out.shape[1:])  # [B, S, *Y]

    def checked(self, maximize: Callable[[torch.Tensor], torch.Tensor],
                grad_y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``maximize`` for the estimator's backward: when the solver refuses non-finite arguments (a step times
        ``dL/dy`` that overflows, e.g. I-MLE's ``theta - lam * dL/dy``), a ``ValueError`` that says so."""
        def step_overflow(t: torch.Tensor) -> ValueError:
            dt = str(t.dtype).replace("torch.", "")
            return ValueError(
                f"lam * dL/dy overflows {dt} in the backward of {self.owner()}: the arguments it sends to the "
                f"solver (e.g. I-MLE's target theta - lam * dL/dy) have {describe_nonfinite(t)}, with "
                f"{self.layer.estimator!r}, max |dL/dy| = {max_abs(grad_y):.4g} and max |theta| = "
                f"{max_abs(self.theta_max):.4g}. Expected lam * max |dL/dy| + max |theta| below "
                f"{dtype_range(t.dtype)[1]:.4g}: use a smaller lam, scale the loss down, or compute in float64")

        def solve(t: torch.Tensor) -> torch.Tensor:
            with explaining_overflow(t, step_overflow):
                return maximize(t)
        return solve

    def nonfinite_estimate(self, grad: torch.Tensor, grad_out: torch.Tensor, bad: torch.Tensor | None,
                           maximize: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """An estimate ``grad [B, *E]`` with NaN/inf entries although ``theta`` and ``dL/dy`` are finite (rows in
        ``bad`` excepted: they become NaN anyway). Linear estimators (``linear_backward``) are recomputed exactly on
        ``dL/dy`` scaled by a power of two per instance (per-sample terms such as ``<dL/dy, y_s> / scale`` may
        overflow where their mean does not); what stays non-finite raises ``ValueError`` naming the estimator."""
        est = self.layer.estimator

        def finite(g: torch.Tensor) -> bool:
            return all_finite(g if bad is None else g.masked_fill(bad.reshape(-1, *([1] * (g.ndim - 1))), 0.0))

        if finite(grad):
            return grad
        if est.linear_backward:
            e = row_exponents(grad_out)  # [B]
            unit = self.per_sample(ldexp_rows(grad_out, -e))  # [B, S, *Y], |.| <= S
            grad = ldexp_rows(est.backward(maximize, self.theta_max, self.est_ctx, unit), e)  # [B, *E]
            if finite(grad):
                return grad
        dt = str(grad.dtype).replace("torch.", "")
        theta = self.theta_max
        lo = float(theta.detach().abs().min()) if theta.numel() else 0.0
        raise ValueError(
            f"dL/dtheta of {self.owner()} is not finite ({describe_nonfinite(grad)}) although theta and dL/dy are "
            f"(max |dL/dy| = {max_abs(grad_out):.4g}; |theta| in [{lo:.4g}, {max_abs(theta):.4g}]; computed in "
            f"{dt}): the estimate of {est!r} leaves the float range"
            + (" (its exact value overflows: recomputed on dL/dy scaled down, it still does)"
               if est.linear_backward else "")
            + f". Expected an estimate within {dt}: scale the loss down, use milder hyperparameters (the estimate "
            "divides by lam or scale; a multiplicative perturbation divides by theta), or compute in float64")

    def warn_nonfinite(self, bad: torch.Tensor) -> None:
        """One ``RuntimeWarning`` per layer the first time ``dL/dy`` holds NaN/inf (eager calls only)."""
        layer = self.layer
        if _ops.transformed(bad) or getattr(layer, "_warned_nonfinite", False):
            return
        layer._warned_nonfinite = True
        warnings.warn(f"the incoming gradient (dL/dy) of {self.owner()} holds NaN/inf for {int(bad.sum())} of "
                      f"{bad.numel()} instances: their dL/dtheta is NaN (the others are computed), as torch ops "
                      "propagate NaN. The loss or a layer after this one produced it (theta itself is finite); "
                      "torch.autograd.detect_anomaly() finds the operation. Warned once per layer.",
                      RuntimeWarning, stacklevel=3)

    def double_backward(self, grad_out: torch.Tensor, theta: torch.Tensor,
                        gg: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Derivatives of ``<gg, dL/dtheta>`` w.r.t. ``dL/dy`` and ``theta``: exact for ``StraightThrough``
        (its backward ``J_r(theta)^T dL/dy`` is smooth); ``RuntimeError`` for every other estimator."""
        from .estimators.straight_through import StraightThrough

        est = self.layer.estimator
        if not (isinstance(est, StraightThrough) and type(est).backward is StraightThrough.backward):
            raise RuntimeError(self.second_order_message())
        sign = -1.0 if self.layer.solver.sense == "min" else 1.0
        r = est.surrogate

        def grad_theta(t: torch.Tensor, go: torch.Tensor) -> torch.Tensor:
            g = go[:, 0] if self.samples else go  # [B, *Y] (S = 1)
            if r is None:
                return g * sign
            _, pull = torch.func.vjp(lambda u: r(u * sign), t)  # d/dt r(sign t) = sign J_r^T
            return pull(g)[0]

        _, pull = torch.func.vjp(grad_theta, theta, grad_out)
        d_theta, d_grad = pull(gg)
        return d_grad, d_theta

    def owner(self) -> str:
        layer = self.layer
        return f"DiscreteLayer(solver={layer.solver!r}, estimator={type(layer.estimator).__name__})"

    def second_order_message(self) -> str:
        from .estimators.imle import IMLE
        from .estimators.interpolation import Interpolation
        from .estimators.perturbed import PerturbedOptimizer

        est = self.layer.estimator
        if isinstance(est, (IMLE, Interpolation)):
            why = "a finite difference of solver outputs"
        elif isinstance(est, PerturbedOptimizer):
            why = "a Monte-Carlo Jacobian estimate with the noise held fixed"
        else:
            why = "not declared twice differentiable"
        return (f"double backward (create_graph=True, a gradient penalty, nested torch.func.grad) through "
                f"{self.owner()}: the backward of {type(est).__name__} is {why}, piecewise constant in theta, so "
                "its derivative would be 0 almost everywhere instead of the curvature of the smoothed solver map. "
                "DiscreteLayer refuses it rather than return a silent zero; second-order gradients are supported "
                "with the StraightThrough estimator.")


class _LayerFunction(torch.autograd.Function):
    """``theta`` (the solver's natural argument) -> ``y``: forward without ``ctx``, ``setup_context``, a vmap
    rule (fold the vmapped dim into the batch) and a backward through :class:`_LayerBackward` when it must
    itself be differentiable (``create_graph=True``, ``torch.func``). Python arguments: the :class:`_Call`."""

    @staticmethod
    def forward(theta, call):
        if call.future is None:  # torch.func: nothing was submitted ahead (theta is storage-backed here)
            call.start(theta)
        return call.finish()

    @staticmethod
    def setup_context(ctx, inputs, output):
        theta, call = inputs
        ctx.call = call
        if call.map:
            ctx.mark_non_differentiable(output)
        else:
            ctx.save_for_backward(theta)

    @staticmethod
    def backward(ctx, grad):
        call = ctx.call
        if call.map:
            return None, None
        if torch.is_grad_enabled() or _ops.transformed(grad):  # the gradient must itself be differentiable
            (theta,) = ctx.saved_tensors
            return _LayerBackward.apply(grad, theta, call), None
        return call.backward(grad), None

    @staticmethod
    def vmap(info, in_dims, theta, call):
        v = info.batch_size
        theta = _ops.to_front(theta, in_dims[0], v)  # [V, B, *E]
        layer = call.layer
        watch = None if call.map else _ops.RandomnessGuard(
            info.randomness, layer.generator_for(theta.device), theta.device, call.owner())
        y = _LayerFunction.apply(_ops.fold(theta), call)  # one forward, one solver call for V*B instances
        if watch is not None:
            watch.check()
        return _ops.unfold(y, v), 0  # [V*B, ...] -> [V, B, ...]

    @staticmethod
    def jvp(ctx, *grads):
        raise NotImplementedError(f"{ctx.call.owner()} supports reverse-mode differentiation only (backward, "
                                  "torch.func.grad/vjp/jacrev); forward mode (torch.func.jvp/jacfwd) is not "
                                  "implemented")


class _EagerLayerFunction(torch.autograd.Function):
    """:class:`_LayerFunction` for the eager path, with the classic ``forward(ctx, ...)``: the ``apply`` of a
    ``setup_context`` function binds its arguments with ``inspect.signature`` on every call (~70 us), which only
    ``torch.func`` needs. Same forward, same backward."""

    @staticmethod
    def forward(ctx, theta, call):
        y = _LayerFunction.forward(theta, call)
        _LayerFunction.setup_context(ctx, (theta, call), y)
        return y

    backward = staticmethod(_LayerFunction.backward)


class _LayerBackward(torch.autograd.Function):
    """``(dL/dy, theta) -> dL/dtheta`` as a differentiable function: its backward is the double backward
    (:meth:`_Call.double_backward`), its vmap rule folds like the forward's (or loops over the vmapped
    dim when the forward was not vmapped, e.g. ``jacrev``)."""

    @staticmethod
    def forward(grad, theta, call):  # noqa: ARG004 -- theta is an input for the double backward
        return call.backward(grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.call = inputs[2]
        ctx.save_for_backward(inputs[0], inputs[1])

    @staticmethod
    def backward(ctx, gg):
        grad, theta = ctx.saved_tensors
        d_grad, d_theta = ctx.call.double_backward(grad, theta, gg)
        return d_grad, d_theta, None

    @staticmethod
    def vmap(info, in_dims, grad, theta, call):
        v = info.batch_size
        grad = _ops.to_front(grad, in_dims[0], v)  # [V, B, *Y]
        theta = _ops.to_front(theta, in_dims[1], v)  # [V, B, *E]
        b = grad.shape[1]
        if call.rows == v * b:  # the forward was vmapped too: its context holds all V*B instances
            return _ops.unfold(_LayerBackward.apply(_ops.fold(grad), _ops.fold(theta), call), v), 0
        if call.rows == b:  # one forward, V cotangents (jacrev, vmap over vjp)
            return torch.stack([_LayerBackward.apply(grad[i], theta[i], call) for i in range(v)]), 0
        raise RuntimeError(f"vmap over the backward of {call.owner()}: {v} x {b} cotangents do not match the "
                           f"forward's {call.rows} instances")


class LayerHandle:
    """Result of :meth:`DiscreteLayer.forward_async`; :meth:`result` gives what ``forward`` would."""

    def __init__(self, fn: Callable[[], torch.Tensor] | None, future: Future | None,
                 value: torch.Tensor | None = None):
        self._fn, self._future, self._value = fn, future, value

    def done(self) -> bool:
        """True when the solver batch has finished (``result()`` will not wait)."""
        return self._future is None or self._future.done()

    def result(self) -> torch.Tensor:
        """The layer's output (waits for the solver batch the first time)."""
        if self._value is None:
            self._value = self._fn()
        return self._value


class DiscreteLayer(_ops.Native):
    """A batched combinatorial solver as a differentiable ``nn.Module``: ``y = layer(theta)``.

    Forward solves ``y*(theta) = argmax_{y in C} <theta, y>`` (``argmin`` over costs for ``solver.sense ==
    "min"``) for every instance, at perturbed arguments when the estimator samples noise; backward turns
    ``dL/dy`` into ``dL/dtheta`` with the ``estimator`` (I-MLE, AIMLE, blackbox interpolation, perturbed
    optimizer, score function, straight-through, ...), calling the solver again where it needs to.

    Args:
        solver: a :class:`~discreteopt.solvers.base.Solver` (``TopK``, ``GridShortestPath``, ``ILP``, your own).
        estimator: an :class:`~discreteopt.estimators.base.Estimator`: the forward sampling and backward rule.
        executor: where solver calls run (:class:`~discreteopt.executors.Inline` by default, ``Threads(n)``,
            ``Processes(n)``, ``Ray(...)``); all solves of one forward (``B*S`` instances) and of one backward
            are one batch.
        guard: bound policy for solvers with ``min_cost`` (default :class:`~discreteopt.estimators.guards.Auto`:
            exact where possible, a visible clamp otherwise; see :mod:`discreteopt.estimators.guards`).
        generator: ``torch.Generator`` on ``theta``'s device for the noise; or
        seed: an ``int`` (one generator per device, seeded once); with neither, the device's default generator.
        return_samples: return the ``S`` solutions ``[B, S, *Y]`` instead of their mean (also per call).
        eval_mode: in ``eval()`` mode, ``"map"`` (default) returns the unperturbed solution ``y*(theta)`` (no
            noise, no gradient); ``"estimator"`` keeps the training forward.

    Shapes:
        ``theta [B, *E]`` (the solver's natural argument: scores for ``"max"``, costs for ``"min"``) ->
        ``y [B, *Y]`` (mean of the ``S`` perturbed solutions; the solution itself when ``S = 1``) or
        ``[B, S, *Y]`` with ``return_samples=True`` (``[B, 1, *Y]`` in MAP mode), on ``theta``'s device and in its
        dtype. ``dL/dtheta`` has ``theta``'s shape and dtype and is in cost space for min-sense solvers
        (the sign is flipped once, here).

    Formula: ``y = mean_s y*(theta + eps_s)`` (estimator-dependent sampling); ``dL/dtheta`` is the
    estimator's (e.g. I-MLE: ``mean_s (y*(theta + eps_s) - y*(theta - lam dL/dy_s + eps_s)) / lam``).
    Reference: Niepert et al. 2021 (I-MLE), Vlastelica et al. 2020 (blackbox), Berthet et al. 2020 (perturbed).

    Execution: :meth:`forward_async` submits the solver batch and returns a :class:`LayerHandle` (overlap GPU
    work with CPU solves); :attr:`stats` counts executor calls and instances per phase. Stateful estimators
    (AIMLE's ``lam``) are saved in ``state_dict()``.

    PyTorch support:

    * **torch.func** -- ``grad``, ``vjp``, ``jacrev`` and ``vmap`` work (autograd function with ``setup_context``).
      ``vmap`` folds the vmapped dim into the batch: ``[V, B, *E] -> [V*B, *E]``, one solver call, then back to
      ``[V, B, *Y]``. Noise: one ``[V*B, S, *E]`` draw from the layer's generator, i.e. independent noise for
      every vmapped element (``vmap(layer)(x)`` equals ``layer(x.flatten(0, 1))`` reshaped, for the same seed,
      not a Python loop over ``V``, which draws in another order); this needs ``vmap(...,
      randomness="different")`` -- the default ``"error"`` raises, ``"same"`` is refused. Deterministic forwards
      (``eval()`` MAP mode, ``Interpolation``, ``StraightThrough``, ``IMLE(noise=None)``) equal the loop exactly
      under any ``randomness``. Stateful estimators (AIMLE) update once per folded backward. Forward mode
      (``jvp``, ``jacfwd``) raises ``NotImplementedError``.
    * **torch.compile** -- ``torch.compile(model, fullgraph=True)`` traces through the layer: the forward (noise,
      solver call, executor) and the backward are the custom operators ``discreteopt::layer_forward`` /
      ``layer_backward`` / ``layer_map`` with fake-tensor implementations. They run the same eager code, so a
      compiled model draws the same noise and gives the same values and gradients as the eager one for a fixed
      seed; :meth:`forward_async` runs synchronously there. ``torch.jit.script`` raises a ``RuntimeError`` naming
      ``torch.compile``; ``torch.jit.trace`` refuses (it would record the solution as a constant).
    * **dtypes** -- float16 and bfloat16 inputs are computed in float32 (noise, solver, estimator) and ``y`` and
      ``dL/dtheta`` come back in the input dtype; other dtypes raise ``ValueError`` naming ``theta``.
    * **second order** (``create_graph=True``, gradient penalties, ``grad(grad(f))``) -- exact for
      ``StraightThrough`` (its backward ``J_r(theta)^T dL/dy`` is differentiated in ``theta`` and ``dL/dy``).
      ``IMLE``, ``AIMLE``, ``Interpolation`` (finite differences of solutions) and ``PerturbedOptimizer``,
      ``ScoreFunction`` (Monte-Carlo Jacobians at fixed noise) have a backward that is piecewise constant in
      ``theta``: a double backward raises ``RuntimeError`` naming the layer and the estimator instead of returning
      a silent zero. The first-order gradient with ``create_graph=True`` is unaffected.
    * **non-finite values** -- instances whose incoming gradient ``dL/dy`` holds NaN/inf get a NaN ``dL/dtheta``
      (one ``RuntimeWarning`` per layer; the other instances are computed), as torch ops propagate NaN. From a
      finite ``theta`` and ``dL/dy`` the layer never returns NaN: hyperparameters that cannot work in the compute
      dtype (:meth:`Estimator.check_dtype <discreteopt.estimators.base.Estimator.check_dtype>`, e.g. ``lam`` or
      ``scale`` beyond float32's range), a perturbation or an I-MLE step that overflows, and an estimate that
      leaves the float range raise ``ValueError`` naming the estimator and its hyperparameters. Linear estimators
      (``PerturbedOptimizer``, ``ScoreFunction``) whose per-sample terms overflow are recomputed exactly on
      ``dL/dy`` scaled by a power of two. Half-precision inputs are checked in float32: a gradient beyond
      float16's range comes back as ``inf`` (what ``GradScaler`` expects).

    Example::

        >>> import torch, discreteopt as do
        >>> layer = do.DiscreteLayer(do.solvers.TopK(2), do.estimators.IMLE(lam=1.0, samples=4), seed=0)
        >>> theta = torch.randn(3, 5, requires_grad=True)
        >>> y = layer(theta)                           # [3, 5]: mean of 4 perturbed top-2 masks
        >>> (y * torch.randn(3, 5)).sum().backward()   # theta.grad [3, 5]
        >>> grads = torch.func.grad(lambda t: (layer(t) * t).sum())(theta.detach())
        >>> y_map = layer.eval()(theta)                # [3, 5]: the top-2 mask of theta itself
    """

    def __init__(self, solver: Solver, estimator: Estimator, executor: Executor | None = None, *,
                 guard: Guard | None = None, generator: torch.Generator | None = None, seed: int | None = None,
                 return_samples: bool = False, eval_mode: str = "map"):
        super().__init__()
        if not isinstance(estimator, Estimator):
            raise ValueError(f"estimator must be an Estimator; got {type(estimator).__name__}")
        if generator is not None and seed is not None:
            raise ValueError("pass either generator or seed, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int; got {seed!r}")
        if eval_mode not in ("map", "estimator"):
            raise ValueError(f"eval_mode must be 'map' or 'estimator'; got {eval_mode!r}")
        self.solver = solver
        self.estimator = estimator
        self.maximizer = Maximizer(solver, executor, guard)
        self.return_samples = bool(return_samples)
        self.eval_mode = eval_mode
        self._generator = generator
        self._seed = seed
        self._generators: dict[str, torch.Generator] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def stats(self) -> SolverStats:
        """Executor calls and solved instances per phase (and the guard's counters) since the last reset."""
        return self.maximizer.stats

    @property
    def executor(self) -> Executor:
        return self.maximizer.executor

    def generator_for(self, device: torch.device) -> torch.Generator | None:
        """The generator used for noise on ``device`` (``None``: the device's default generator)."""
        if self._generator is not None:
            check_generator(self._generator, device)
            return self._generator
        if self._seed is None:
            return None
        key = str(torch.device(device))
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self._seed)
        return self._generators[key]

    def to_max(self, theta: torch.Tensor) -> torch.Tensor:
        """Validate the natural argument and return the max-convention ``theta`` (differentiable)."""
        validate_input(self.solver, theta, "theta")
        _ops.check_dtype(theta, "theta")
        return -theta if self.solver.sense == "min" else theta

    def _theta_max(self, theta: torch.Tensor) -> torch.Tensor:
        """Natural ``theta`` -> max-convention copy in the compute dtype (float32 for half precision), no graph."""
        t = theta.detach()
        dtype = _ops.compute_dtype(t.dtype)
        if dtype != t.dtype:
            t = t.to(dtype)
            return t.neg_() if self.solver.sense == "min" else t
        return torch.neg(t) if self.solver.sense == "min" else t  # [B, *E]

    def _uses_map(self) -> bool:
        return not self.training and self.eval_mode == "map"

    # ------------------------------------------------------------------ forward
    def forward_async(self, theta: torch.Tensor, return_samples: bool | None = None) -> LayerHandle:
        """Start the solver batch now (``executor.submit``) and return a handle; ``.result()`` == ``forward``.

        Under ``torch.func`` transforms and ``torch.compile`` the forward runs synchronously and the handle is done.
        """
        samples = self.return_samples if return_samples is None else bool(return_samples)
        if _ops.compiling() or _ops.transformed(theta):
            return LayerHandle(None, None, self.forward(theta, samples))
        if torch.jit.is_tracing():
            self._refuse_jit_trace()
        call = _Call(self, samples, self._uses_map())
        fut = call.start(theta)
        if call.map:  # no autograd graph: the MAP solution has no gradient
            return LayerHandle(call.finish, fut)
        return LayerHandle(lambda: _EagerLayerFunction.apply(theta, call), fut)

    def forward(self, theta: torch.Tensor, return_samples: bool | None = None) -> torch.Tensor:
        """``theta [B, *E]`` (solver's natural argument) -> ``y [B, *Y]`` or ``[B, S, *Y]`` (see the class)."""
        samples = self.return_samples if return_samples is None else bool(return_samples)
        if _ops.compiling():
            if self._uses_map():
                return torch.ops.discreteopt.layer_map(theta.detach(), self._op_id, samples)
            return torch.ops.discreteopt.layer_forward(theta, self._op_id, samples)[0]
        if _ops.transformed(theta):
            _ops.check_structure(self.solver, theta, "theta")
            _ops.check_values(theta, "theta")
            return _LayerFunction.apply(theta, _Call(self, samples, self._uses_map()))
        return self.forward_async(theta, samples).result()

    # ------------------------------------------------------------------ custom-operator hooks (_ops)
    def _op_forward(self, theta: torch.Tensor, samples: bool) -> tuple[torch.Tensor, torch.Tensor]:
        call = _Call(self, samples)
        call.start(theta)
        y = call.finish()
        return y, _ops.store_context(call)

    def _op_map(self, theta: torch.Tensor, samples: bool) -> torch.Tensor:
        call = _Call(self, samples, map_mode=True)
        call.start(theta)
        return call.finish()

    def _op_forward_fake(self, theta: torch.Tensor, samples: bool, map_mode: bool = False) -> torch.Tensor:
        _ops.check_structure(self.solver, theta, "theta")
        b = theta.shape[0]
        y_event = tuple(self.solver.output_shape(tuple(theta.shape[1:])))
        s = 1 if map_mode else self.estimator.samples
        shape = (b, s, *y_event) if samples else (b, *y_event)
        return theta.new_empty(shape)

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict[str, Any]:
        """The estimator's training state (e.g. AIMLE's adapted ``lam``), saved in ``state_dict()``."""
        return {"estimator": self.estimator.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or "estimator" not in state:
            raise ValueError(f"DiscreteLayer extra state must be a dict with key 'estimator'; got {state!r}")
        self.estimator.load_state_dict(state["estimator"])

    def extra_repr(self) -> str:
        return f"solver={self.solver!r}, estimator={self.estimator!r}, executor={self.executor!r}, " \
               f"guard={self.maximizer.guard!r}"


def discrete_layer(theta: torch.Tensor, solver: Solver, estimator: Estimator, executor: Executor | None = None,
                   *, guard: Guard | None = None, generator: torch.Generator | None = None, seed: int | None = None,
                   return_samples: bool = False) -> torch.Tensor:
    """Functional form of :class:`DiscreteLayer` (training-mode forward): ``y = discrete_layer(theta, solver, est)``.

    Args:
        theta: ``[B, *E]``, the solver's natural argument (float16/bfloat16/float32/float64).
        solver, estimator, executor, guard, generator, seed, return_samples: as for :class:`DiscreteLayer`.

    Returns ``y [B, *Y]`` (or ``[B, S, *Y]`` with ``return_samples=True``), differentiable w.r.t. ``theta``
    through ``estimator``. A layer is built per call: stateful estimators (AIMLE's ``lam``) keep their state in
    ``estimator`` across calls, but a ``seed`` restarts the noise every call (pass a ``generator`` to continue
    one stream). Works under ``torch.func``; for ``torch.compile`` use the module (a layer built inside a
    compiled region is not traced).

    Example::

        >>> import torch, discreteopt as do
        >>> theta = torch.randn(2, 6, requires_grad=True)
        >>> y = do.discrete_layer(theta, do.solvers.TopK(3), do.estimators.IMLE(lam=1.0), seed=0)   # [2, 6]
    """
    layer = DiscreteLayer(solver, estimator, executor, guard=guard, generator=generator, seed=seed)
    return layer(theta, return_samples=return_samples)


def score_function_loss(layer: DiscreteLayer, theta: torch.Tensor,
                        loss_fn: Callable[[torch.Tensor], torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Score-function (REINFORCE) estimate for a black-box per-sample loss of a solver layer.

    With ``y_s = y*(theta + scale Z_s)`` (the layer's :class:`~discreteopt.estimators.ScoreFunction`, ``S``
    samples, one executor call) and per-sample losses ``L_s = loss_fn(y)[:, s]``::

        value    = mean_s L_s
        gradient = mean_s (L_s - b_s) grad nu(Z_s) / scale        (sign-flipped for min-sense solvers)

    where ``grad nu = -score`` of the noise and ``b_s`` the estimator's baseline (default leave-one-out).
    Reference: Williams 1992; Berthet et al. 2020, Sec. 3; Kool et al. 2019 (leave-one-out baseline).

    Args:
        layer: a :class:`DiscreteLayer` whose estimator is a ``ScoreFunction``.
        theta: ``[B, *E]``, the solver's natural argument (with its autograd graph).
        loss_fn: ``y [B, S, *Y] -> [B, S]`` per-sample losses, called without gradient (any black box); must be
            finite.
        reduction: ``"mean"`` (default) or ``"sum"`` over instances, or ``"none"`` (``[B]``).

    Returns a scalar (``[B]`` for ``"none"``) whose value is the mean loss and whose gradient w.r.t. ``theta`` is
    the estimate above. Finite for finite inputs whose exact results fit ``theta``'s dtype (``theta`` near the float
    maximum, huge losses: computed on terms scaled by powers of two); ``ValueError`` when ``scale`` does not fit the
    dtype, ``loss_fn``'s values do not fit it, or the estimate itself overflows it. Eager only: under
    ``torch.func`` transforms or ``torch.compile`` it raises ``ValueError`` (``loss_fn`` runs outside autograd on
    the sampled solutions).

    Example::

        >>> import torch, discreteopt as do
        >>> layer = do.DiscreteLayer(do.solvers.TopK(2), do.estimators.ScoreFunction(samples=4), seed=0)
        >>> theta = torch.randn(3, 5, requires_grad=True)
        >>> loss = do.score_function_loss(layer, theta, lambda y: (y[..., 0] - 1.0) ** 2)   # [B, S] -> scalar
        >>> loss.backward()
    """
    from .estimators.score_function import ScoreFunction

    if not isinstance(layer, DiscreteLayer):
        raise ValueError(f"layer must be a DiscreteLayer; got {type(layer).__name__}")
    est = layer.estimator
    if not isinstance(est, ScoreFunction):
        raise ValueError(f"layer.estimator must be a ScoreFunction; got {type(est).__name__}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
    if _ops.compiling() or _ops.transformed(theta):
        raise ValueError("score_function_loss runs eagerly only (loss_fn is called on the sampled solutions "
                         "outside autograd): call it outside torch.func transforms and torch.compile")
    theta_max = layer.to_max(theta)
    detached = layer._theta_max(theta)
    est.check_dtype(detached.dtype)
    thetas, z = est.plan(detached, layer.generator_for(theta.device))  # [N, *E]
    with naming_overflow(layer, thetas, detached):
        ys = layer.maximizer(thetas)  # [N, *Y]
    y, ctx = est.finish(detached, ys, z)  # [B, S, *Y]
    with torch.no_grad():
        losses = _per_sample_losses(loss_fn, y)
        map_losses = None
        if ctx.y_map is not None:
            map_losses = _per_sample_losses(loss_fn, ctx.y_map.unsqueeze(1).expand_as(y))  # [B, S]
    value = est.surrogate(theta_max.to(detached.dtype), z, losses, map_losses, reduction)
    return value.to(theta.dtype)


@contextlib.contextmanager
def explaining_overflow(args: torch.Tensor | None,
                        explain: Callable[[torch.Tensor], ValueError]) -> Iterator[None]:
    """Around a solve of the arguments ``args`` computed by the layer: when the solver refuses them
    (``ValueError``) because they overflowed, ``explain(args)`` -- an error that says which computation
    overflowed -- is raised instead (the solver's error as its cause); other errors, and any error when ``args``
    is ``None`` or finite, pass unchanged."""
    try:
        yield
    except ValueError as err:
        if args is None or all_finite(args):
            raise
        raise explain(args) from err


def naming_overflow(layer: DiscreteLayer, thetas: torch.Tensor | None,
                    theta: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """:func:`explaining_overflow` for the perturbed arguments ``thetas [N, *E]`` of ``layer`` (``theta [B, *E]``
    the unperturbed ones; ``None``: a MAP call): the error names the perturbation."""
    return explaining_overflow(thetas, lambda t: perturbation_overflow(layer, t, theta))


def perturbation_overflow(layer: DiscreteLayer, thetas: torch.Tensor, theta: torch.Tensor) -> ValueError:
    """The error for a solver that refused the perturbed arguments ``thetas [N, *E]`` of ``layer`` because they
    overflowed (``theta [B, *E]`` the unperturbed ones)."""
    dt = str(thetas.dtype).replace("torch.", "")
    return ValueError(
        f"the perturbation of {type(layer.estimator).__name__} overflows {dt}: theta (max |theta| = "
        f"{max_abs(theta):.4g}) perturbed by {layer.estimator!r} gives {describe_nonfinite(thetas)} in the "
        f"solver's arguments. Expected max |theta| plus the perturbation (scale * eps; multiplicative: "
        f"theta * exp(scale * eps)) below {dtype_range(thetas.dtype)[1]:.4g}: use a smaller scale, rescale theta, "
        "or compute in float64")


def _per_sample_losses(loss_fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """``loss_fn(y [B, S, *Y])`` checked to be finite ``[B, S]`` values (``ValueError`` otherwise)."""
    losses = torch.as_tensor(loss_fn(y), device=y.device)
    if losses.shape != y.shape[:2]:
        raise ValueError(f"loss_fn must return per-sample losses of shape [B, S] = {tuple(y.shape[:2])}; "
                         f"got {tuple(losses.shape)}")
    check_finite(losses, "loss_fn(y)")
    return losses
