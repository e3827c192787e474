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
  :class:`~discreteopt.estimators.guards.Guard` (default ``Clamp()``: ``w = max(w, min_cost)``). Perturbed
  costs of Dijkstra-type solvers (``min_cost = 0``) that would go negative are clamped to 0 (blackbox
  backprop's rule); ``Raise()`` refuses them instead; ``Shift()`` is only allowed for solvers whose feasible
  set has a constant ``sum(y)``; a multiplicative :class:`~discreteopt.estimators.PerturbedOptimizer` keeps
  positive costs positive and never needs the guard;
* **execution** -- all solver calls of a forward (the ``S`` perturbed copies, ``[B, S, *E] -> [B*S, *E]``)
  and of a backward go to the executor as *one* batch. :attr:`DiscreteLayer.stats` counts them.

Output: ``[B, *Y]`` (mean over samples; the single solution when ``S = 1``), or ``[B, S, *Y]`` with
``return_samples=True``, on ``theta``'s device and dtype. In ``eval()`` mode the layer returns the
unperturbed MAP solution by default (``eval_mode="map"``; ``"estimator"`` keeps the training forward).
Noise is drawn with a ``torch.Generator`` on ``theta``'s device: pass ``generator=`` or ``seed=``;
with neither, the device's default generator is used (``torch.manual_seed`` makes runs reproducible).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import torch
from torch import nn

from ._validation import check_finite
from .estimators.base import Estimator
from .estimators.guards import Guard
from .executors.base import Executor
from .maximizer import Maximizer, SolverStats, validate_input
from .noise.base import check_generator
from .solvers.base import Solver


class _Pending:
    """A planned forward whose solver batch is (being) solved by the executor."""

    def __init__(self, estimator: Estimator, theta: torch.Tensor, state: Any, future: Future):
        self.estimator, self.theta, self.state, self.future = estimator, theta, state, future

    def finish(self) -> tuple[torch.Tensor, Any]:
        ys = self.future.result()  # [N, *Y]
        if self.estimator.needs_same_shape and ys.shape[1:] != self.theta.shape[1:]:
            raise ValueError(f"{type(self.estimator).__name__} needs solutions of the same shape as theta "
                             f"{tuple(self.theta.shape[1:])}; the solver returned {tuple(ys.shape[1:])}")
        return self.estimator.finish(self.theta, ys, self.state)


class _LayerFunction(torch.autograd.Function):
    """``theta`` (the solver's natural argument) -> ``y``; the estimator works on ``theta_max = sign * theta``.

    The sign flip of min-sense solvers is applied here, in both directions, rather than as a separate
    autograd node: one tensor operation fewer per step each way.
    """

    @staticmethod
    def forward(ctx, theta, layer, pending, reduce):  # noqa: ARG004 -- theta is the autograd input
        y, est_ctx = pending.finish()  # [B, S, *Y]
        ctx.layer, ctx.est_ctx, ctx.reduce, ctx.samples = layer, est_ctx, reduce, y.shape[1]
        ctx.theta = pending.theta
        if not reduce:
            return y.clone()  # [B, S, *Y]; a copy: in-place edits must not reach the backward context
        # S == 1: a view, which autograd forbids editing in place (same protection, no copy)
        return y[:, 0] if y.shape[1] == 1 else y.mean(dim=1)  # [B, *Y]

    @staticmethod
    def backward(ctx, grad_out):
        s = ctx.samples
        if ctx.reduce:  # every sample sees the full dL/dy (see estimators.base)
            grad_y = grad_out.unsqueeze(1).expand(grad_out.shape[0], s, *grad_out.shape[1:])  # [B, S, *Y]
        else:
            grad_y = grad_out * s  # [B, S, *Y]
        layer = ctx.layer
        grad = layer.estimator.backward(layer.maximizer.backward_fn(), ctx.theta, ctx.est_ctx, grad_y)  # [B, *E]
        if grad.dtype != ctx.theta.dtype:
            grad = grad.to(ctx.theta.dtype)
        return (-grad if layer.solver.sense == "min" else grad), None, None, None


class LayerHandle:
    """Result of :meth:`DiscreteLayer.forward_async`; :meth:`result` gives what ``forward`` would."""

    def __init__(self, fn: Callable[[], torch.Tensor], future: Future):
        self._fn, self._future, self._value = fn, future, None

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> torch.Tensor:
        if self._value is None:
            self._value = self._fn()
        return self._value


class DiscreteLayer(nn.Module):
    """``solver`` + ``estimator`` (+ ``executor``, ``guard``) as a module (see module docstring)."""

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
        return -theta if self.solver.sense == "min" else theta

    def _uses_map(self) -> bool:
        return not self.training and self.eval_mode == "map"

    # ------------------------------------------------------------------ forward
    def forward_async(self, theta: torch.Tensor, return_samples: bool | None = None) -> LayerHandle:
        """Start the solver batch now (``executor.submit``) and return a handle; ``.result()`` == ``forward``."""
        samples = self.return_samples if return_samples is None else bool(return_samples)
        validate_input(self.solver, theta, "theta")
        detached = theta.detach()
        theta_max = torch.neg(detached) if self.solver.sense == "min" else detached  # [B, *E], no graph
        if self._uses_map():
            fut = self.maximizer.submit(theta_max)

            def finish_map() -> torch.Tensor:
                y = fut.result()  # [B, *Y]
                return y.unsqueeze(1) if samples else y  # [B, 1, *Y]

            return LayerHandle(finish_map, fut)
        thetas, state = self.estimator.plan(theta_max, self.generator_for(theta.device))  # [N, *E]
        fut = self.maximizer.submit(thetas)
        pending = _Pending(self.estimator, theta_max, state, fut)

        def finish() -> torch.Tensor:
            return _LayerFunction.apply(theta, self, pending, not samples)

        return LayerHandle(finish, fut)

    def forward(self, theta: torch.Tensor, return_samples: bool | None = None) -> torch.Tensor:
        """``theta [B, *E]`` (solver's natural argument) -> ``y [B, *Y]`` or ``[B, S, *Y]``."""
        return self.forward_async(theta, return_samples).result()

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

    Stateful estimators (AIMLE's ``lam``) keep their state in ``estimator`` across calls.
    """
    layer = DiscreteLayer(solver, estimator, executor, guard=guard, generator=generator, seed=seed)
    return layer(theta, return_samples=return_samples)


def score_function_loss(layer: DiscreteLayer, theta: torch.Tensor,
                        loss_fn: Callable[[torch.Tensor], torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Score-function estimate for a black-box per-sample loss (see :mod:`discreteopt.estimators.score_function`).

    ``loss_fn(y [B, S, *Y]) -> [B, S]`` is called without gradient. Returns the mean loss (``reduction``
    ``"mean"``/``"sum"``/``"none"`` over instances) whose gradient w.r.t. ``theta`` is
    ``mean_s (L_s - b_s) grad nu(Z_s) / sigma`` (sign-flipped for min-sense solvers). One executor call.
    """
    from .estimators.score_function import ScoreFunction

    if not isinstance(layer, DiscreteLayer):
        raise ValueError(f"layer must be a DiscreteLayer; got {type(layer).__name__}")
    est = layer.estimator
    if not isinstance(est, ScoreFunction):
        raise ValueError(f"layer.estimator must be a ScoreFunction; got {type(est).__name__}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
    theta_max = layer.to_max(theta)
    detached = theta_max.detach()
    thetas, z = est.plan(detached, layer.generator_for(theta.device))  # [N, *E]
    y, ctx = est.finish(detached, layer.maximizer(thetas), z)  # [B, S, *Y]
    with torch.no_grad():
        losses = _per_sample_losses(loss_fn, y)
        map_losses = None
        if ctx.y_map is not None:
            map_losses = _per_sample_losses(loss_fn, ctx.y_map.unsqueeze(1).expand_as(y))  # [B, S]
    return est.surrogate(theta_max, z, losses, map_losses, reduction)


def _per_sample_losses(loss_fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """``loss_fn(y [B, S, *Y])`` checked to be finite ``[B, S]`` values (``ValueError`` otherwise)."""
    losses = torch.as_tensor(loss_fn(y), device=y.device)
    if losses.shape != y.shape[:2]:
        raise ValueError(f"loss_fn must return per-sample losses of shape [B, S] = {tuple(y.shape[:2])}; "
                         f"got {tuple(losses.shape)}")
    check_finite(losses, "loss_fn(y)")
    return losses
