"""``Threads(n)``: solve chunks of the batch on ``n`` threads of the calling process.

Worth it only for solvers whose kernel releases the GIL (OR-Tools back-ends, the numba Dijkstra); a pure-Python
kernel runs no faster than :class:`~discreteopt.executors.base.Inline`. Each thread builds its own solver from
``solver.spec()`` once (back-end models such as OR-Tools' are not shared between threads). A call of ``B``
instances becomes ``n`` chunks of ``ceil(B/n)`` rows.

``timeout``: the call's future fails with :class:`TimeoutError` at the deadline and chunks not yet started are
cancelled; a chunk already running cannot be interrupted (Python threads cannot be killed) and its result is
discarded when it ends. Use :class:`~discreteopt.executors.processes.Processes` when solves must be killable.
:meth:`Threads.close` fails the calls still in flight (never a hang) and waits for running chunks.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec
from ._job import BatchJob, MapPlan, completed, concat_finisher
from ._worker import cached_solver
from .base import (
    DEFAULT,
    Executor,
    check_timeout,
    check_workers,
    chunk_bounds,
    prepare_theta,
    solver_key,
    spec_key,
    to_result,
)


class _State:
    """What the finalizer needs (no reference back to the executor, so it can be garbage collected)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pool: ThreadPoolExecutor | None = None
        self.closed = False
        self.jobs: set[BatchJob] = set()

    def forget(self, job: BatchJob) -> None:
        with self.lock:
            self.jobs.discard(job)

    def shutdown(self, wait: bool = True) -> None:
        with self.lock:
            self.closed = True
            pool, self.pool = self.pool, None
            jobs, self.jobs = list(self.jobs), set()
        for job in jobs:
            job.fail(RuntimeError("Threads executor was closed before the call finished"))
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)


class Threads(Executor):
    """Run solver chunks on a persistent pool of ``n`` threads (default: ``os.cpu_count()``).

    Copies: ``copy.deepcopy`` shares this pool; pickling gives an unstarted pool with the same settings.
    """

    def __init__(self, n: int | None = None, *, timeout: float | None = None):
        self._n = check_workers(n, "threads")
        self.timeout = check_timeout(timeout)
        self._local = threading.local()
        self._state = _State()
        self._finalizer = weakref.finalize(self, self._state.shutdown, False)

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
    def _executor(self, job: BatchJob) -> ThreadPoolExecutor:
        st = self._state
        with st.lock:
            if st.closed:
                raise RuntimeError("Threads executor is closed")
            if st.pool is None:
                st.pool = ThreadPoolExecutor(self._n, thread_name_prefix="discreteopt-solver")
            st.jobs.add(job)
            pool = st.pool
        job.future.add_done_callback(lambda _f: st.forget(job))
        return pool

    def _solver(self, key: str, blob: bytes) -> Solver:
        cache: OrderedDict[str, Solver] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        return cached_solver(cache, key, blob)

    def _run_chunk(self, job: BatchJob, key: str, blob: bytes, start: int, x: np.ndarray) -> None:
        if job.finished:  # failed or timed out meanwhile: do not waste the thread
            return
        try:
            job.add(start, self._solver(key, blob).solve_numpy(x))
        except BaseException as exc:  # noqa: BLE001 -- delivered through the job's future
            job.fail(exc, offset=start)

    def _launch(self, key: tuple[str, bytes], x_parts: list[tuple[int, np.ndarray]], job: BatchJob,
                timeout: float | None) -> Future:
        pool = self._executor(job)
        futures = [pool.submit(self._run_chunk, job, key[0], key[1], start, x) for start, x in x_parts]
        if timeout is not None:
            timer = threading.Timer(timeout, _expire, args=(job, futures, timeout))
            timer.daemon = True
            timer.start()
            job.future.add_done_callback(lambda _f: timer.cancel())
        return job.future

    # ----------------------------------------------------------------- API
    def submit(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> Future:
        timeout = self.timeout if timeout is DEFAULT else check_timeout(timeout)
        if solver.device_native:
            return completed(lambda: solver.solve(theta))
        x = prepare_theta(solver, theta)  # [B, *E] float64, validated here (ValueError in the caller)
        if x.shape[0] == 0:
            return completed(lambda: solver.solve(theta))
        device, dtype = theta.device, theta.dtype
        job = BatchJob(x.shape[0], concat_finisher(lambda y: to_result(y, device, dtype)),
                       type(solver).__name__)
        parts = [(s, x[s:e]) for s, e in chunk_bounds(x.shape[0], self._n)]  # [b_i, *E] views
        return self._launch(solver_key(solver), parts, job, timeout)

    def solve(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> torch.Tensor:
        return self.submit(solver, theta, timeout=timeout).result()

    def map(self, spec: SolverSpec, chunks: list[np.ndarray], *, timeout: float | None = DEFAULT) -> list[np.ndarray]:
        timeout = self.timeout if timeout is DEFAULT else check_timeout(timeout)
        plan = MapPlan(spec, [np.asarray(c, dtype=np.float64) for c in chunks])
        if not plan.parts:
            return plan.finisher()([])
        job = BatchJob(plan.batch, plan.finisher(), spec.cls_path.rpartition(".")[2])
        return self._launch(spec_key(spec), plan.parts, job, timeout).result()

    def close(self) -> None:
        """Fail the calls still in flight, wait for running chunks and stop the threads. Idempotent."""
        self._finalizer.detach()
        self._state.shutdown(wait=True)


def _rebuild(n: int, timeout: float | None) -> Threads:
    return Threads(n, timeout=timeout)


def _expire(job: BatchJob, futures: list[Future], timeout: float) -> None:
    for f in futures:
        f.cancel()
    job.fail(TimeoutError(f"{job.label}: {job.batch} instances were not solved within timeout={timeout} s "
                          "(Threads: chunks already running finish in the background, their results are dropped)"))
