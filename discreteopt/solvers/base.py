"""The ``Solver`` contract.

A solver is a batched MAP oracle. In its natural sense it computes, for every instance ``b``::

    sense == "max":  y*_b = argmax_{y in C} <theta_b, y>
    sense == "min":  y*_b = argmin_{y in C} <c_b, y>        (e.g. shortest paths over costs)

Layers and estimators only ever see the *max* convention: :meth:`Solver.maximize` receives
``theta`` and calls the natural solver on ``-theta`` when ``sense == "min"``. That is the single place
where the sign is flipped.

Two levels:

* :meth:`Solver.solve` takes a tensor ``[B, *E]`` and returns ``[B, *Y]`` on the input's device and dtype.
  It validates the input (shape, NaN/inf, domain) and never builds an autograd graph.
* :meth:`Solver.solve_numpy` is the CPU kernel on ``float64`` arrays. Executors ship
  :meth:`Solver.spec` (a picklable recipe) to worker processes, rebuild the solver once per worker, and call
  ``solve_numpy`` on chunks of the batch. Solvers that run natively on any torch device (``TopK``, ``Argmax``)
  set ``device_native = True`` and implement :meth:`Solver._solve_torch` instead; executors then run them
  inline on the input's device.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import threading
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .._validation import check_event_shape, check_finite, check_nonnegative

Sense = Literal["max", "min"]


class InstanceError(RuntimeError):
    """A solver could not produce an optimal solution for one instance of the batch.

    ``index`` is the position of the instance in the batch passed to ``solve``; executors that split the
    batch into chunks re-raise it with the global index (:meth:`shifted`). ``status`` is the back-end's
    status name (``"INFEASIBLE"``, ``"UNBOUNDED"``, ``"TIME_LIMIT"``, ...).
    """

    def __init__(self, solver: str, index: int, status: str, detail: str = ""):
        self.solver = solver
        self.index = int(index)
        self.status = status
        self.detail = detail
        msg = f"{solver}: instance {self.index} of the batch has no optimal solution (status {status})"
        super().__init__(msg + (f": {detail}" if detail else ""))

    def shifted(self, offset: int) -> InstanceError:
        """The same error with ``index`` moved by ``offset`` (chunk start in the full batch)."""
        return InstanceError(self.solver, self.index + offset, self.status, self.detail)

    def __reduce__(self):  # picklable across worker processes
        return (InstanceError, (self.solver, self.index, self.status, self.detail))


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """Picklable recipe of a solver: ``build()`` reconstructs it (in a worker, once).

    Holds only the import path of the class and its constructor arguments (numpy arrays, numbers,
    strings), never a live back-end object such as an OR-Tools model.
    """

    cls_path: str
    kwargs: dict[str, Any]

    def build(self) -> Solver:
        module, _, name = self.cls_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**self.kwargs)


class Solver(abc.ABC):
    """Batched MAP solver: ``solve(theta[B, *E]) -> y[B, *Y]`` (see module docstring).

    Subclasses set :attr:`sense`, :attr:`event_ndim`, describe their argument in :attr:`theta_layout`,
    and implement :meth:`_solve_numpy` (CPU kernel) or :meth:`_solve_torch` (``device_native``).
    They store their constructor arguments in ``self._spec_kwargs`` so :meth:`spec` can rebuild them.
    """

    sense: ClassVar[Sense] = "max"
    #: number of dims of one instance's ``theta`` (after the batch dim)
    event_ndim: ClassVar[int] = 1
    #: human-readable layout of the argument for error messages
    theta_layout: ClassVar[str] = "[B, n]"
    #: True when ``_solve_torch`` runs on any device (no host round trip, no worker pool)
    device_native: ClassVar[bool] = False
    #: natural-sense argument must be >= this (e.g. 0 for Dijkstra); ``None`` = no bound
    min_cost: ClassVar[float | None] = None
    #: the argument's name in error messages
    arg_name: ClassVar[str] = "theta"
    #: True when every feasible ``y`` has the same ``sum(y)``, so adding a constant to an instance's argument
    #: keeps its optimum (the layer's ``Shift()`` guard relies on it)
    shift_invariant: ClassVar[bool] = False

    _spec_kwargs: dict[str, Any]

    # ----------------------------------------------------------------- description
    def event_shape(self) -> tuple[int | None, ...]:
        """Expected per-instance shape of ``theta`` (None where any size is accepted)."""
        return (None,) * self.event_ndim

    def output_shape(self, theta_event_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-instance shape of ``y`` for a given per-instance shape of ``theta`` (default: the same)."""
        return tuple(theta_event_shape)

    def spec(self) -> SolverSpec:
        """Picklable recipe that rebuilds this solver (see :class:`SolverSpec`)."""
        cls = type(self)
        return SolverSpec(f"{cls.__module__}.{cls.__qualname__}", dict(self._spec_kwargs))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self._spec_kwargs.items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------- validation
    def validate(self, theta: torch.Tensor | np.ndarray) -> None:
        """Shape, finiteness and domain checks; raises ``ValueError`` naming the argument."""
        check_event_shape(theta, self.event_shape(), self.arg_name, self.theta_layout)
        check_finite(theta, self.arg_name)
        if self.min_cost is not None:
            shifted = theta - self.min_cost if self.min_cost != 0 else theta
            check_nonnegative(shifted, self.arg_name, f"{type(self).__name__} needs entries >= {self.min_cost}")

    # ----------------------------------------------------------------- solving
    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        """Solve every instance of ``theta [B, *E]`` in the solver's natural sense -> ``y [B, *Y]``.

        The result is on ``theta``'s device with ``theta``'s (floating) dtype and is not part of any
        autograd graph.
        """
        if not isinstance(theta, torch.Tensor):
            raise ValueError(f"{self.arg_name} must be a torch.Tensor of shape {self.theta_layout}; "
                             f"got {type(theta).__name__}")
        if not theta.is_floating_point():
            raise ValueError(f"{self.arg_name} must have a floating dtype; got {theta.dtype}")
        theta = theta.detach()
        if self.device_native:
            self.validate(theta)
            with torch.no_grad():
                return self._solve_torch(theta).to(theta.dtype)
        # host kernels: validate the numpy view (zero-copy on CPU; numpy's single-threaded reductions are
        # far cheaper than torch's thread pool for these small checks)
        arr = theta.cpu().numpy().astype(np.float64, copy=False)
        self.validate(arr)
        y = self._solve_numpy(arr)
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=theta.device, dtype=theta.dtype)

    def solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        """CPU kernel on a ``float64`` array ``[B, *E]`` (what worker processes call); validates first."""
        theta = np.asarray(theta, dtype=np.float64)
        self.validate(theta)
        if self.device_native:
            return self._solve_torch(torch.from_numpy(theta)).numpy()
        return self._solve_numpy(theta)

    def maximize(self, theta: torch.Tensor) -> torch.Tensor:
        """``argmax_y <theta, y>`` whatever the natural sense: flips the sign once for ``sense == "min"``."""
        return self.solve(-theta if self.sense == "min" else theta)

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} implements neither _solve_numpy nor _solve_torch")

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not device_native")

    # ----------------------------------------------------------------- helpers
    def objective(self, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``<theta, y>`` per instance -> ``[B]`` (in whatever sense ``theta`` is given).

        Solvers whose ``y`` has another shape than ``theta`` (e.g. a path over edges) override this.
        """
        return (theta * y).flatten(1).sum(1)  # [B, prod(E)] -> [B]

    def is_feasible(self, y: np.ndarray) -> np.ndarray:
        """Per-instance feasibility of candidate solutions ``y [B, *Y]`` -> bool ``[B]`` (None: unknown)."""
        return None  # type: ignore[return-value]


class ThreadLocalBackend:
    """Mixin of solvers that keep live back-end objects (OR-Tools models) per thread in ``self._local``.

    Such objects cannot be pickled and must not be shared between threads: ``self._local`` is a fresh
    :class:`threading.local` after construction and after unpickling (``copy``, process pools), so every thread
    and every process builds its own on first use.
    """

    def _init_local(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_local()


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{tuple(v.shape)}"
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return f"<{type(v).__name__} of {len(v)}>"
    return repr(v)
