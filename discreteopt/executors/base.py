"""The ``Executor`` contract: where solver calls run.

An executor takes a solver and a batch ``theta [B, *E]`` and returns ``y [B, *Y]`` exactly as
``solver.solve(theta)`` would (same values, device, dtype), possibly computed elsewhere:

* :meth:`Executor.solve` -- blocking;
* :meth:`Executor.submit` -- returns a :class:`concurrent.futures.Future` resolving to the tensor, so a
  training loop can run GPU work while CPU workers solve;
* :meth:`Executor.map` -- the low-level primitive on numpy chunks and a picklable :class:`SolverSpec`.

Estimators and layers never know which executor they use. Errors raised by the solver for one instance
(:class:`~discreteopt.solvers.base.InstanceError`) carry the index in the *full* batch.
"""

from __future__ import annotations

import abc
import hashlib
import math
import os
import pickle
import threading
import weakref
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec

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
    """Split ``range(batch)`` into at most ``parts`` contiguous ``(start, stop)`` chunks of ``ceil(batch/parts)``.

    One chunk per worker (never one task per instance): per-task overhead is paid ``parts`` times per call.
    An empty batch gives no chunks.
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1; got {parts}")
    if batch <= 0:
        return []
    size = math.ceil(batch / parts)
    return [(start, min(start + size, batch)) for start in range(0, batch, size)]


def spec_key(spec: SolverSpec) -> tuple[str, bytes]:
    """``(stable hash, pickled bytes)`` of a spec: workers cache built solvers under the hash.

    ``SolverSpec`` is frozen but its kwargs may hold numpy arrays (unhashable), so the key is a digest of the
    pickled spec: equal recipes give equal keys in every process.
    """
    blob = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.blake2b(blob, digest_size=16).hexdigest(), blob


_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_KEYS_LOCK = threading.Lock()


def solver_key(solver: Solver) -> tuple[str, bytes]:
    """:func:`spec_key` of ``solver.spec()``, computed once per solver object (solvers are immutable after
    construction); hot paths call this instead of pickling the spec on every call."""
    try:
        with _KEYS_LOCK:
            cached = _KEYS.get(solver)
    except TypeError:  # not weak-referenceable / unhashable solver class
        return spec_key(solver.spec())
    if cached is None:
        cached = spec_key(solver.spec())
        with _KEYS_LOCK:
            _KEYS[solver] = cached
    return cached


def prepare_theta(solver: Solver, theta: torch.Tensor) -> np.ndarray:
    """Checks of :meth:`Solver.solve` done in the caller (``ValueError`` naming the argument), then the
    ``float64`` contiguous host copy workers receive (``[B, *E]``)."""
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"{solver.arg_name} must be a torch.Tensor of shape {solver.theta_layout}; "
                         f"got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise ValueError(f"{solver.arg_name} must have a floating dtype; got {theta.dtype}")
    theta = theta.detach()
    solver.validate(theta)
    return np.ascontiguousarray(theta.cpu().numpy().astype(np.float64, copy=False))


def to_result(y: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Host result ``[B, *Y]`` -> tensor on the input's device and dtype (as :meth:`Solver.solve` returns)."""
    return torch.from_numpy(np.ascontiguousarray(y)).to(device=device, dtype=dtype)


class Executor(abc.ABC):
    """Runs batched solver calls. Subclasses implement :meth:`map` (and usually :meth:`submit`)."""

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
    """Solve in the calling thread (no workers). Always correct; best for tiny batches and GPU solvers."""

    def map(self, spec: SolverSpec, chunks: list[np.ndarray]) -> list[np.ndarray]:
        solver = spec.build()
        return [solver.solve_numpy(c) for c in chunks]

    def solve(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = None) -> torch.Tensor:
        return solver.solve(theta)  # timeout: the calling thread cannot be preempted

    def __repr__(self) -> str:
        return "Inline()"
