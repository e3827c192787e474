"""The ``Executor`` contract: where solver calls run.

An executor takes a solver and a batch ``theta [B, *E]`` and returns ``y [B, *Y]`` exactly as
``solver.solve(theta)`` would (same values, device, dtype), possibly computed elsewhere:

* :meth:`Executor.solve` -- blocking;
* :meth:`Executor.submit` -- returns a :class:`concurrent.futures.Future` resolving to the tensor, so a
  training loop can run GPU work while CPU workers solve;
* :meth:`Executor.map` -- the low-level primitive on numpy chunks and a picklable :class:`SolverSpec`.

Estimators and layers never know which executor they use. Errors raised by the solver for one instance
(:class:`~discreteopt.solvers.base.InstanceError`) carry the index in the *full* batch.

In-process executors (:class:`Inline`, :class:`~discreteopt.executors.threads.Threads`) run the solver object
as given: no pickling, no rebuilding, so closures and classes defined in a function work there. Process
executors (:class:`~discreteopt.executors.processes.Processes`, :class:`~discreteopt.executors.ray_executor.Ray`)
ship the solver's recipe (:meth:`~discreteopt.solvers.base.Solver.spec`), verified once per solver object
(:func:`solver_key`); a solver without a usable recipe gets a
:class:`~discreteopt.solvers.base.RecipeError` in the caller, saying why and what to do.
"""

from __future__ import annotations

import abc
import hashlib
import math
import os
import pickle
import threading
import uuid
import weakref
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from .._validation import check_tensor, host_float64, host_to_tensor
from ..solvers.base import RecipeError, Solver, SolverSpec, verified_spec

#: "not given": ``timeout=`` arguments default to the executor's own timeout
DEFAULT: Any = object()


def check_timeout(timeout: Any) -> float | None:
    """``None`` or a number of seconds ``> 0`` (``ValueError`` naming ``timeout`` otherwise)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise ValueError(f"timeout must be a finite number of seconds > 0 or None; got {timeout!r}")
    return float(timeout)


def check_workers(n: Any, what: str) -> int:
    """Number of workers: ``None`` -> ``os.cpu_count()``, else an integer ``>= 1``."""
    n = (os.cpu_count() or 1) if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (number of {what}) must be an integer >= 1; got {n!r}")
    return int(n)


def chunk_bounds(batch: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(batch)`` into ``min(batch, parts)`` contiguous ``(start, stop)`` chunks whose sizes differ by at
    most one (the first ``batch % parts`` chunks hold one row more).

    One chunk per worker (never one task per instance): per-task overhead is paid ``parts`` times per call, and
    no worker stays idle (``ceil(batch / parts)``-row chunks would leave one idle for 9 rows on 4 workers). An
    empty batch gives no chunks.
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1; got {parts}")
    if batch <= 0:
        return []
    n = min(batch, parts)
    size, extra = divmod(batch, n)
    bounds, start = [], 0
    for i in range(n):
        stop = start + size + (i < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def spec_key(spec: SolverSpec) -> tuple[str, bytes]:
    """``(stable hash, pickled bytes)`` of a spec: workers cache built solvers under the hash.

    ``SolverSpec`` is frozen but its kwargs may hold numpy arrays (unhashable), so the key is a digest of the
    pickled spec: equal recipes give equal keys in every process. A spec that cannot be pickled raises
    :class:`~discreteopt.solvers.base.RecipeError`.
    """
    try:
        blob = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 -- pickling errors have many types
        raise RecipeError(f"the solver recipe {spec.cls_path} cannot be pickled for worker processes "
                          f"({type(exc).__name__}: {exc}); use Inline()/Threads() or picklable arguments") from exc
    return _digest(blob), blob


def _digest(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


class _Unshippable:
    """Stand-in recipe of a solver whose recipe failed :func:`~discreteopt.solvers.base.verified_spec`: building
    it raises that error (pool executors raise it in the caller first, see :func:`prepare_theta`)."""

    def __init__(self, message: str):
        self.message = message

    def build(self):
        raise RecipeError(self.message)


_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: ``id(solver) -> (weakref, entry)`` for solvers that are weak-referenceable but unhashable (``__eq__`` without
#: ``__hash__``)
_KEYS_BY_ID: dict[int, tuple[weakref.ref, tuple]] = {}
_KEYS_LOCK = threading.Lock()


def _cached(solver: Solver) -> tuple | None:
    with _KEYS_LOCK:
        try:
            return _KEYS.get(solver)
        except TypeError:
            item = _KEYS_BY_ID.get(id(solver))
            return item[1] if item is not None and item[0]() is solver else None


def _store(solver: Solver, entry: tuple) -> None:
    with _KEYS_LOCK:
        try:
            _KEYS[solver] = entry
            return
        except TypeError:
            pass
        ident = id(solver)
        try:
            ref = weakref.ref(solver, lambda _r: _KEYS_BY_ID.pop(ident, None))
        except TypeError:  # not weak-referenceable: verified again on every call
            return
        _KEYS_BY_ID[ident] = (ref, entry)


def _solver_entry(solver: Solver) -> tuple[str, bytes, RecipeError | None]:
    """``(key, blob, error)``: the verified recipe of ``solver``, computed once per solver object (solvers are
    immutable after construction). A solver without a usable recipe gets a unique key, the blob of an
    :class:`_Unshippable` and the :class:`RecipeError` saying why."""
    cached = _cached(solver)
    if cached is not None:
        return cached
    try:
        _, blob = verified_spec(solver)
        entry: tuple[str, bytes, RecipeError | None] = (_digest(blob), blob, None)
    except RecipeError as exc:
        label = repr(solver)
        label = label if len(label) <= 80 else type(solver).__name__
        err = RecipeError(f"Processes and Ray executors rebuild the solver in worker processes from its recipe "
                          f"(solver.spec()); {label} cannot be rebuilt there: {exc}")
        err.__cause__ = exc.__cause__ or exc
        entry = (f"unshippable-{uuid.uuid4().hex}", pickle.dumps(_Unshippable(str(err))), err)
    _store(solver, entry)
    return entry


def solver_key(solver: Solver) -> tuple[str, bytes]:
    """``(hash, pickled recipe)`` of ``solver`` (:func:`spec_key` of its verified ``spec()``), computed once per
    solver object; hot paths call this instead of pickling the spec on every call.

    Never raises for a solver without a usable recipe: it gets a key of its own (so that, e.g., ``Auto`` can
    still route it inline) and a recipe whose ``build()`` raises the :class:`RecipeError`; :func:`prepare_theta`
    raises that error in the caller before anything is sent to a worker.
    """
    key, blob, _ = _solver_entry(solver)
    return key, blob


def recipe_error(solver: Solver) -> RecipeError | None:
    """The :class:`RecipeError` that keeps ``solver`` from worker processes, or ``None`` (cached per object)."""
    return _solver_entry(solver)[2]


def prepare_theta(solver: Solver, theta: torch.Tensor, *, ship: bool = True) -> np.ndarray:
    """Checks of :meth:`Solver.solve` done in the caller (``ValueError`` naming the argument), then the
    ``float64`` contiguous host copy workers receive (``[B, *E]``).

    ``ship=True`` (process executors): the solver's recipe must be usable, else its
    :class:`~discreteopt.solvers.base.RecipeError` is raised here, before anything is sent to a worker.
    """
    theta = check_tensor(theta, solver.arg_name, solver.theta_layout)
    x = host_float64(theta)
    solver.validate(x)
    if ship:
        err = recipe_error(solver)
        if err is not None:
            raise err
    return np.ascontiguousarray(x)


def to_result(y: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Host result ``[B, *Y]`` -> tensor on the input's device and dtype (as :meth:`Solver.solve` returns)."""
    return host_to_tensor(y, device, dtype)


class Executor(abc.ABC):
    """Where batched solver calls run: ``solve(solver, theta [B, *E]) -> y [B, *Y]``, exactly ``solver.solve(theta)``.

    Contract of every executor: the same values, device and dtype as ``solver.solve(theta)``; bad input raises
    ``ValueError`` in the caller; an instance without a solution raises
    :class:`~discreteopt.solvers.base.InstanceError` with its index in the full batch; :meth:`close` releases
    workers (executors are context managers). Subclasses implement :meth:`map` and usually :meth:`submit`.

    Implementations: :class:`Inline` (the calling thread), :class:`~discreteopt.executors.threads.Threads`
    (threads of this process), :class:`~discreteopt.executors.processes.Processes` and
    :class:`~discreteopt.executors.ray_executor.Ray` (worker processes, which rebuild the solver from its recipe),
    :class:`~discreteopt.executors.auto.Auto` (inline or a pool by batch size).

    Example::

        >>> import torch
        >>> from discreteopt.executors import Inline
        >>> from discreteopt.solvers import TopK
        >>> with Inline() as ex:
        ...     ex.solve(TopK(1), torch.tensor([[0.2, 0.9, 0.1]]))
        tensor([[0., 1., 0.]])
    """

    @property
    def n_workers(self) -> int:
        """How many instances' chunks run at once (1 for :class:`Inline`)."""
        return 1

    @abc.abstractmethod
    def map(self, spec: SolverSpec, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Solve each ``float64`` chunk ``[b_i, *E]`` with the solver built from ``spec`` -> ``[b_i, *Y]``."""

    def submit(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = None) -> Future:
        """Start solving ``theta`` and return a future of the result tensor (default: run now).

        ``timeout`` (seconds, pool executors): the future fails with :class:`TimeoutError` when the call has
        not finished in time. Executors that run in the calling thread (:class:`Inline`) cannot preempt it
        and ignore ``timeout``.
        """
        fut: Future = Future()
        try:
            fut.set_result(self.solve(solver, theta, timeout=timeout))
        except BaseException as exc:  # noqa: BLE001 -- delivered through the future
            fut.set_exception(exc)
        return fut

    def solve(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = None) -> torch.Tensor:
        """Blocking ``solver.solve(theta)`` through this executor."""
        return self.submit(solver, theta, timeout=timeout).result()

    def close(self) -> None:  # noqa: B027 -- optional hook, not abstract
        """Release workers (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Inline(Executor):
    """Solve in the calling thread (no workers): ``Inline().solve(solver, theta)`` is ``solver.solve(theta)``.

    Always correct and the default of every layer; best for tiny batches, device-native (GPU) solvers and
    debugging (a solver's error is raised right here, with its traceback). Runs the solver object as given: no
    pickling, no recipe, so closures and classes defined in a function work. ``timeout`` is ignored (the
    calling thread cannot be preempted); use :class:`~discreteopt.executors.processes.Processes` for solves that
    must be killable.

    Example::

        >>> import torch
        >>> from discreteopt.solvers import from_function
        >>> top = from_function(lambda t: t >= t.max())    # a lambda is fine in-process
        >>> Inline().solve(top, torch.tensor([[1.0, 3.0, 2.0]]))
        tensor([[0., 1., 0.]])
    """

    def map(self, spec: SolverSpec, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Build the solver from ``spec`` and solve each ``float64`` chunk ``[b_i, *E]`` -> ``[b_i, *Y]``."""
        solver = spec.build()
        return [solver.solve_numpy(c) for c in chunks]

    def solve(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = None) -> torch.Tensor:
        return solver.solve(theta)  # timeout: the calling thread cannot be preempted

    def __repr__(self) -> str:
        return "Inline()"
