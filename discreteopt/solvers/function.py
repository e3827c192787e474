"""``from_function``: a :class:`~discreteopt.solvers.base.Solver` from a plain function.

The shortest way to bring your own solver::

    solver = from_function(fn)                     # fn(theta_b [*E] float64 numpy) -> y_b [*Y]
    solver = from_function(fn, batched=True)       # fn(theta [B, *E] float64 numpy) -> y [B, *Y]
    solver = from_function(fn, backend="torch")    # fn(theta_b tensor) -> tensor, on the input's device

``fn`` solves ``argmax_y <theta, y>`` (``sense="max"``) or ``argmin_y <theta, y>`` (``sense="min"``); layers flip
the sign once for ``"min"``. Its input is validated first (shape, finiteness) and its output checked: every
solution must have shape ``output_shape`` (default: the instance's own shape) and finite entries, else a
``ValueError`` (wrong shape or type) or an :class:`~discreteopt.solvers.base.InstanceError` with status
``"NON_FINITE_OUTPUT"`` and the instance's index (NaN/inf) is raised. Bool and integer results are converted.

Executors: :class:`~discreteopt.executors.Inline` and :class:`~discreteopt.executors.Threads` call ``fn`` as
given (lambdas and closures work). :class:`~discreteopt.executors.Processes` and
:class:`~discreteopt.executors.Ray` send ``fn`` to worker processes by pickle, which works for functions defined
with ``def`` at module level of an importable module (pickled by reference); a lambda or a closure raises a
:class:`~discreteopt.solvers.base.RecipeError` in the caller saying so. ``backend="torch"`` solvers are
device-native: every executor runs them in the caller, on the input's device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from .base import InstanceError, Solver, _as_real_array

Backend = Literal["numpy", "torch"]


class FunctionSolver(Solver):
    """A :class:`~discreteopt.solvers.base.Solver` calling a plain function (made by :func:`from_function`).

    Args: see :func:`from_function`. Attributes ``fn``, ``sense``, ``batched``, ``backend`` hold them.
    """

    def __init__(self, fn: Callable[..., Any], *, sense: str = "max",
                 event_shape: Sequence[int | None] | None = None, batched: bool = False,
                 backend: Backend = "numpy", output_shape: Sequence[int] | Callable[..., Any] | None = None):
        if not callable(fn):
            raise ValueError(f"fn must be a callable (theta -> solution); got {type(fn).__name__}")
        if sense not in ("max", "min"):
            raise ValueError(f"sense must be 'max' or 'min'; got {sense!r}")
        if not isinstance(batched, bool):
            raise ValueError(f"batched must be True or False; got {batched!r}")
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch'; got {backend!r}")
        self.fn = fn
        self.sense = sense  # instance attributes: override the class defaults read by layers
        self.batched = batched
        self.backend = backend
        self.device_native = backend == "torch"
        self._event = _event_shape(event_shape)
        self.event_ndim = len(self._event)
        dims = ", ".join("n" if d is None and len(self._event) == 1 else (f"d{i}" if d is None else str(d))
                         for i, d in enumerate(self._event))
        self.theta_layout = f"[B, {dims}]"
        self._output = _output_shape(output_shape)
        self._name = _describe(fn)

    # ----------------------------------------------------------------- description
    def event_shape(self) -> tuple[int | None, ...]:
        return self._event

    def output_shape(self, theta_event_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = self._output
        if out is None:
            return tuple(theta_event_shape)
        if callable(out):
            return tuple(int(d) for d in out(tuple(theta_event_shape)))
        return out

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v, default in (
            ("sense", self.sense, "max"), ("batched", self.batched, False), ("backend", self.backend, "numpy"))
            if v != default)
        return f"from_function({self._name}{extra})"

    # ----------------------------------------------------------------- hooks
    def solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        if self.backend == "torch":
            return self.solve_torch(torch.from_numpy(theta)).cpu().double().numpy()
        if self.batched:
            return self.fn(theta) if len(theta) else self._empty(theta)
        return self._per_instance(theta, lambda t: _as_numpy(t))

    def solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        if self.backend == "numpy":
            y = self.solve_numpy(theta.detach().cpu().double().numpy())
            return torch.from_numpy(np.asarray(y, dtype=np.float64)).to(theta.device, theta.dtype)
        if not len(theta):
            return torch.zeros((0, *self.output_shape(tuple(theta.shape[1:]))), dtype=theta.dtype,
                               device=theta.device)
        if self.batched:
            y = self.fn(theta)  # checked by the base class: shape, real dtype, finite (NON_FINITE_OUTPUT)
            if isinstance(y, torch.Tensor):
                return y
            return torch.as_tensor(_as_real_array(y, f"from_function({self._name})"), device=theta.device)
        return torch.as_tensor(self._per_instance(theta, _as_numpy), device=theta.device)

    # ----------------------------------------------------------------- helpers
    def _empty(self, theta) -> np.ndarray:
        return np.zeros((0, *self.output_shape(tuple(theta.shape[1:]))))

    def _per_instance(self, theta, to_numpy: Callable[[Any], np.ndarray]) -> np.ndarray:
        """Call ``fn`` on every instance; checks each answer so the error names the instance."""
        expected = tuple(self.output_shape(tuple(theta.shape[1:])))
        out = np.empty((theta.shape[0], *expected), dtype=np.float64)  # [B, *Y]
        for b in range(theta.shape[0]):
            raw = self.fn(theta[b])
            try:
                yb = to_numpy(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"from_function({self._name}) returned {type(raw).__name__} for instance {b}, "
                                 f"not an array of solutions ({exc})") from exc
            if yb.dtype.kind not in "biuf":
                raise ValueError(f"from_function({self._name}) must return a real (bool, integer or float) "
                                 f"array; got dtype {yb.dtype} for instance {b}")
            if yb.shape != expected:
                raise ValueError(f"from_function({self._name}) returned shape {yb.shape} for instance {b} of "
                                 f"shape {tuple(theta.shape[1:])}; expected {expected} (pass output_shape= when "
                                 "the solution has another shape than the instance)")
            if not np.isfinite(yb).all():
                raise InstanceError(f"from_function({self._name})", b, "NON_FINITE_OUTPUT",
                                    "fn returned NaN or inf; a solution must be finite")
            out[b] = yb
        return out


def from_function(fn: Callable[..., Any], *, sense: str = "max", event_shape: Sequence[int | None] | None = None,
                  batched: bool = False, backend: Backend = "numpy",
                  output_shape: Sequence[int] | Callable[..., Any] | None = None) -> FunctionSolver:
    """A :class:`~discreteopt.solvers.base.Solver` from a plain function ``fn`` (see the module docstring).

    Args:
        fn: the solver. ``batched=False``: ``fn(theta_b) -> y_b``, one instance ``theta_b [*E]`` at a time;
            ``batched=True``: ``fn(theta) -> y`` on the whole batch ``theta [B, *E]`` -> ``y [B, *Y]``. Inputs are
            ``float64`` numpy arrays (``backend="numpy"``) or torch tensors on the input's device
            (``backend="torch"``: ``float32``/``float64``, half precision widened to ``float32``). Results may be
            numpy arrays, tensors, lists, bool or integer arrays.
        sense: ``"max"`` (``fn`` maximises ``<theta, y>``) or ``"min"`` (it minimises; layers flip the sign).
        event_shape: per-instance shape ``E`` of ``theta``, ``None`` entries for any size; default ``(None,)``
            (vectors of any length). Its length is the number of instance dims (e.g. ``(None, None)`` for grids).
        batched: whether ``fn`` takes the whole batch.
        backend: ``"numpy"`` (default; host kernels, runs on worker pools) or ``"torch"`` (device-native: runs in
            the caller on the input's device, never on a worker).
        output_shape: per-instance shape ``Y`` of a solution when it differs from ``E``: a tuple, or a function
            ``E -> Y``. Default ``Y = E``.

    Returns:
        a :class:`FunctionSolver`; ``solver.solve(theta [B, *E]) -> y [B, *Y]`` in ``theta``'s device and dtype.

    Example (argmax as a one-hot vector, one instance at a time)::

        >>> import numpy as np, torch
        >>> def one_hot_argmax(theta_b):
        ...     return np.arange(theta_b.size) == theta_b.argmax()
        >>> solver = from_function(one_hot_argmax)
        >>> solver.solve(torch.tensor([[0.1, 0.7, 0.2], [5.0, -1.0, 0.0]]))
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
        >>> from_function(lambda t: t == t.min(1, keepdims=True), sense="min", batched=True).solve(
        ...     torch.tensor([[0.1, 0.7, 0.2]]))
        tensor([[1., 0., 0.]])
    """
    return FunctionSolver(fn, sense=sense, event_shape=event_shape, batched=batched, backend=backend,
                          output_shape=output_shape)


def _event_shape(event_shape: Sequence[int | None] | None) -> tuple[int | None, ...]:
    if event_shape is None:
        return (None,)
    if isinstance(event_shape, (int, np.integer)) and not isinstance(event_shape, bool):
        event_shape = (event_shape,)
    try:
        shape = tuple(event_shape)
    except TypeError:
        shape = None
    if not shape or not all(d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1)
                            for d in shape):
        raise ValueError("event_shape must be a non-empty tuple of sizes >= 1 or None (any size), one per "
                         f"instance dim, e.g. (None,) or (12, 12); got {event_shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


def _output_shape(output_shape: Any) -> Any:
    if output_shape is None or callable(output_shape):
        return output_shape
    if isinstance(output_shape, (int, np.integer)) and not isinstance(output_shape, bool):
        output_shape = (output_shape,)
    try:
        shape = tuple(output_shape)
    except TypeError:
        shape = None
    if shape is None or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
                                for d in shape):
        raise ValueError(f"output_shape must be a tuple of sizes >= 0, a function E -> Y, or None (Y = E); "
                         f"got {output_shape!r}")
    return tuple(int(d) for d in shape)


def _describe(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        return f"partial({_describe(fn.func)})"
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _as_numpy(y: Any) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu()
        return (y.float() if y.dtype in (torch.float16, torch.bfloat16) else y).numpy()
    return np.asarray(y)
