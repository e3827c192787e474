"""``Threads(n)``: solve chunks of the batch on ``n`` threads of the calling process.

Worth it only for solvers whose kernel releases the GIL (OR-Tools back-ends, the numba Dijkstra); a pure-Python
kernel runs no faster than :class:`~discreteopt.executors.base.Inline`. A call of ``B`` instances becomes
``min(B, n)`` chunks whose sizes differ by at most one row.

In-process, like ``Inline``: the solver object is called as given, from several threads at once -- no pickling,
no recipe, no rebuilding, so closures, lambdas (:func:`~discreteopt.solvers.from_function`) and classes defined
in a function work. A solver with mutable per-call state must keep it per thread (the built-in OR-Tools solvers
keep one model per thread, see :class:`~discreteopt.solvers.base.ThreadLocalBackend`).

``timeout``: the call's future fails with :class:`TimeoutError` at the deadline and chunks not yet started are
dropped; a chunk already running cannot be interrupted (Python threads cannot be killed): it finishes in the
background and its result is discarded. The threads are daemon threads, so such a solve -- even one that never
returns -- blocks neither :meth:`Threads.close` nor the interpreter's exit. Use
:class:`~discreteopt.executors.processes.Processes` when solves must be killable.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec
from ._job import BatchJob, MapPlan, completed, concat_finisher
from ._worker import lru_get
from .base import (
    DEFAULT,
    Executor,
    check_timeout,
    check_workers,
    chunk_bounds,
    prepare_theta,
    spec_key,
    to_result,
)

_STOP = None  # sentinel task: the thread that takes it exits


class _State:
    """What the threads and the finalizer need (no reference back to the executor, so it can be collected)."""

    def __init__(self, n: int):
        self.n = n
        self.lock = threading.Lock()
        self.tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.busy: set[threading.Thread] = set()  # threads running a chunk now
        self.closed = False
        self.jobs: set[BatchJob] = set()
        self.built: OrderedDict[str, Solver] = OrderedDict()  # solvers built by map() from specs

    def admit(self, job: BatchJob) -> None:
        """Register a call; start the threads on first use (``RuntimeError`` once closed)."""
        with self.lock:
            if self.closed:
                raise RuntimeError("Threads executor is closed")
            if not self.threads:
                for i in range(self.n):
                    t = threading.Thread(target=_serve, args=(self.tasks, self.lock, self.busy), daemon=True,
                                         name=f"discreteopt-solver-{i}")
                    t.start()
                    self.threads.append(t)
            self.jobs.add(job)
        job.future.add_done_callback(lambda _f: self.forget(job))

    def forget(self, job: BatchJob) -> None:
        with self.lock:
            self.jobs.discard(job)

    def shutdown(self) -> None:
        """Fail the calls in flight, drop queued chunks, tell idle threads to exit and wait (at most
        ``_JOIN_IDLE`` seconds) until they have; never waits for a running chunk (its daemon thread ends when the
        chunk does, or with the interpreter).

        Joining the idle threads matters at interpreter exit (this also runs from the ``weakref.finalize`` atexit
        hook): a daemon thread still unwinding when the interpreter finalises is stopped by ``pthread_exit`` in
        the middle of destroying its thread-local native solvers (OR-Tools' C++ objects), which aborts the
        process with "terminate called without an active exception"."""
        with self.lock:
            self.closed = True
            jobs, self.jobs = list(self.jobs), set()
            threads, self.threads = self.threads, []
            self.built.clear()
        for job in jobs:
            job.fail(RuntimeError("Threads executor was closed before the call finished"))
        while True:  # queued chunks belong to the failed calls: drop them
            try:
                self.tasks.get_nowait()
            except queue.Empty:
                break
        for _ in threads:
            self.tasks.put(_STOP)
        with self.lock:
            idle = [t for t in threads if t not in self.busy]
        deadline = time.monotonic() + _JOIN_IDLE
        for t in idle:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))


_JOIN_IDLE = 5.0  # seconds close() waits for idle threads to exit (they only have to take the stop sentinel)


def _serve(tasks: queue.SimpleQueue, lock: threading.Lock, busy: set) -> None:
    """Body of a solver thread: run tasks until the stop sentinel (``busy`` holds it while a task runs)."""
    me = threading.current_thread()
    while True:
        task = tasks.get()
        if task is _STOP:
            return
        with lock:
            busy.add(me)
        try:
            task()
        finally:
            with lock:
                busy.discard(me)


class Threads(Executor):
    """Run solver chunks on a persistent pool of ``n`` daemon threads of this process (default ``os.cpu_count()``).

    Args:
        n: number of threads (an integer ``>= 1``; ``None``: ``os.cpu_count()``).
        timeout: default seconds per call (``None``: no limit); ``submit``/``solve`` take ``timeout=`` too. A call
            past it fails with :class:`TimeoutError`; chunks still running finish in the background, their
            results dropped.

    The solver object is called as given from up to ``n`` threads at once (see the module docstring): same
    results as ``solver.solve(theta)``, instance errors with their index in the full batch. Device-native solvers
    and empty batches are solved in the caller. :meth:`close` (or leaving a ``with`` block) fails the calls
    still in flight and returns without waiting for a solve still running (its idle threads are joined first).

    Copies: ``copy.deepcopy`` shares this pool; pickling gives an unstarted pool with the same settings.

    Example::

        >>> import torch
        >>> from discreteopt.solvers import GridShortestPath
        >>> with Threads(2) as ex:
        ...     y = ex.solve(GridShortestPath(), torch.rand(8, 5, 5) + 0.1)
        >>> y.shape
        torch.Size([8, 5, 5])
    """

    def __init__(self, n: int | None = None, *, timeout: float | None = None):
        self._n = check_workers(n, "threads")
        self.timeout = check_timeout(timeout)
        self._state = _State(self._n)
        self._finalizer = weakref.finalize(self, self._state.shutdown)

    @property
    def n_workers(self) -> int:
        return self._n

    @property
    def closed(self) -> bool:
        return self._state.closed

    def __repr__(self) -> str:
        return f"Threads({self._n})"

    def __reduce__(self):
        return (_rebuild, (self._n, self.timeout))

    def __deepcopy__(self, memo) -> Threads:
        return self

    # ----------------------------------------------------------------- internals
    def _launch(self, kernel: Callable[[np.ndarray], np.ndarray], parts: list[tuple[int, np.ndarray]],
                job: BatchJob, timeout: float | None) -> Future:
        st = self._state
        st.admit(job)
        for start, x in parts:
            st.tasks.put(lambda start=start, x=x: _run_chunk(job, kernel, start, x))
        if timeout is not None:
            timer = threading.Timer(timeout, _expire, args=(job, timeout))
            timer.daemon = True
            timer.start()
            job.future.add_done_callback(lambda _f: timer.cancel())
        return job.future

    # ----------------------------------------------------------------- API
    def submit(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> Future:
        """Start solving ``theta [B, *E]`` on the threads; returns a future of ``y [B, *Y]`` (``theta``'s device and
        dtype). Bad input raises ``ValueError`` here, in the caller."""
        timeout = self.timeout if timeout is DEFAULT else check_timeout(timeout)
        if solver.device_native:
            return completed(lambda: solver.solve(theta))
        x = prepare_theta(solver, theta, ship=False)  # [B, *E] float64, validated (ValueError in the caller)
        if x.shape[0] == 0:
            return completed(lambda: solver.solve(theta))
        device, dtype = theta.device, theta.dtype
        job = BatchJob(x.shape[0], concat_finisher(lambda y: to_result(y, device, dtype)), type(solver).__name__)
        parts = [(s, x[s:e]) for s, e in chunk_bounds(x.shape[0], self._n)]  # [b_i, *E] views
        # input validated above: the chunks go to the solver's kernel (output still checked)
        return self._launch(solver._run_numpy, parts, job, timeout)

    def solve(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> torch.Tensor:
        return self.submit(solver, theta, timeout=timeout).result()

    def map(self, spec: SolverSpec, chunks: list[np.ndarray], *, timeout: float | None = DEFAULT) -> list[np.ndarray]:
        """Solve each ``float64`` chunk ``[b_i, *E]`` with the solver built from ``spec`` (once, then kept for later
        calls of an equal spec) -> ``[b_i, *Y]``."""
        timeout = self.timeout if timeout is DEFAULT else check_timeout(timeout)
        plan = MapPlan(spec, [np.asarray(c, dtype=np.float64) for c in chunks])
        if not plan.parts:
            return plan.finisher()([])
        key = spec_key(spec)[0]
        with self._state.lock:
            solver = lru_get(self._state.built, key, spec.build)
        job = BatchJob(plan.batch, plan.finisher(), spec.cls_path.rpartition(".")[2])
        return self._launch(solver.solve_numpy, plan.parts, job, timeout).result()  # validates the chunks

    def close(self) -> None:
        """Fail the calls still in flight and stop the threads; waits for idle threads to exit, never for a
        chunk still running (it finishes in its daemon thread, its result dropped). Idempotent."""
        self._finalizer.detach()
        self._state.shutdown()


def _run_chunk(job: BatchJob, kernel: Callable[[np.ndarray], np.ndarray], start: int, x: np.ndarray) -> None:
    if job.finished:  # failed, closed or timed out meanwhile: do not waste the thread
        return
    try:
        job.add(start, kernel(x))
    except BaseException as exc:  # noqa: BLE001 -- delivered through the job's future
        job.fail(exc, offset=start)


def _rebuild(n: int, timeout: float | None) -> Threads:
    return Threads(n, timeout=timeout)


def _expire(job: BatchJob, timeout: float) -> None:
    job.fail(TimeoutError(f"{job.label}: {job.batch} instances were not solved within timeout={timeout} s "
                          "(Threads: chunks already running finish in the background, their results are dropped)"))
