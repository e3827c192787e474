"""One executor call split into chunks: collects the chunk results and resolves the call's future.

Shared by :class:`~discreteopt.executors.threads.Threads`, :class:`~discreteopt.executors.processes.Processes`
and :class:`~discreteopt.executors.ray_executor.Ray`. A chunk covers the global rows ``[start, stop)`` of the
batch; results may arrive in any order and a chunk may be re-split (a retried chunk is solved row by row), so
pieces are keyed by their global start row and assembled once every row is covered.

Errors: the first error resolves the future; :class:`~discreteopt.solvers.base.InstanceError` raised for a
chunk is re-raised with the instance's index in the *full* batch (:func:`relocate`); any other exception
(``ValueError`` from validation included) is delivered unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError

import numpy as np

from ..solvers.base import InstanceError, SolverSpec

#: turns the sorted pieces ``[(start, y_piece), ...]`` into the future's result
Finisher = Callable[[list[tuple[int, np.ndarray]]], object]


def relocate(exc: BaseException, offset: int) -> BaseException:
    """``exc`` as seen by the caller of the whole batch: instance indices shifted by ``offset``."""
    if isinstance(exc, InstanceError) and offset:
        moved = exc.shifted(offset)
        moved.__cause__ = exc.__cause__
        return moved
    return exc


class BatchJob:
    """Collects pieces of a ``batch``-row result and resolves ``future`` exactly once (thread-safe)."""

    def __init__(self, batch: int, finish: Finisher, label: str):
        self.future: Future = Future()
        self.future.set_running_or_notify_cancel()
        self.batch = int(batch)
        self.label = label
        self._finish = finish
        self._pieces: dict[int, np.ndarray] = {}
        self._rows = 0
        self._lock = threading.Lock()

    @property
    def finished(self) -> bool:
        return self.future.done()

    def add(self, start: int, y: np.ndarray) -> None:
        """Record the result of global rows ``[start, start + len(y))``; resolves the future when complete."""
        with self._lock:
            if self.future.done() or start in self._pieces:
                return
            self._pieces[start] = y
            self._rows += len(y)
            if self._rows < self.batch:
                return
            pieces = sorted(self._pieces.items())
            self._pieces = {}
        try:
            result = self._finish(pieces)
        except BaseException as exc:  # noqa: BLE001 -- e.g. inconsistent output shapes, delivered to the caller
            self.fail(exc)
            return
        try:
            self.future.set_result(result)
        except InvalidStateError:  # failed concurrently (timeout)
            pass

    def fail(self, exc: BaseException, offset: int = 0) -> bool:
        """Resolve with ``exc`` (instance index shifted by ``offset``) unless already resolved."""
        with self._lock:
            if self.future.done():
                return False
            self._pieces = {}
            try:
                self.future.set_exception(relocate(exc, offset))
            except InvalidStateError:
                return False
            return True


def concat_finisher(convert: Callable[[np.ndarray], object]) -> Finisher:
    """Finisher of :meth:`Executor.submit`: concatenate the pieces ``-> [B, *Y]`` and ``convert`` it."""

    def finish(pieces: list[tuple[int, np.ndarray]]) -> object:
        return convert(np.concatenate([y for _, y in pieces], axis=0))  # [B, *Y]

    return finish


class MapPlan:
    """How :meth:`Executor.map` distributes the caller's chunks: global ``bounds`` of each chunk, the non-empty
    chunks as ``parts`` ``[(global start, array), ...]`` and the results of empty chunks, solved in the caller
    (their output shape is only known to the solver)."""

    def __init__(self, spec: SolverSpec, chunks: list[np.ndarray]):
        self.bounds: list[tuple[int, int]] = []
        self.parts: list[tuple[int, np.ndarray]] = []
        self.empty: dict[int, np.ndarray] = {}
        start = 0
        for c in chunks:
            self.bounds.append((start, start + len(c)))
            if len(c):
                self.parts.append((start, c))
            start += len(c)
        self.batch = start
        if len(self.parts) < len(chunks):
            solver = spec.build()
            self.empty = {i: solver.solve_numpy(c) for i, c in enumerate(chunks) if not len(c)}

    def finisher(self) -> Finisher:
        """Regroup the pieces into the caller's chunks."""

        def finish(pieces: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
            # the executor may have re-split the rows (one task per worker, retries per instance): pieces are
            # sorted and contiguous, so join them and cut the caller's chunks out of the whole
            full = pieces[0][1] if len(pieces) == 1 else np.concatenate([y for _, y in pieces], axis=0)  # [B, *Y]
            return [self.empty[i] if i in self.empty else full[start:stop]
                    for i, (start, stop) in enumerate(self.bounds)]

        return finish


def completed(fn: Callable[[], object]) -> Future:
    """A future already resolved with ``fn()`` (or its exception): the inline path of ``submit``."""
    fut: Future = Future()
    try:
        fut.set_result(fn())
    except BaseException as exc:  # noqa: BLE001 -- delivered through the future
        fut.set_exception(exc)
    return fut
