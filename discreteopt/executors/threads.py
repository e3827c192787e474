"""``Threads(n)``: solve chunks of the batch on ``n`` threads of the calling process.

Worth it only for solvers whose kernel releases the GIL (OR-Tools back-ends, the numba Dijkstra); a pure-Python
kernel runs no faster than :class:`~discreteopt.executors.base.Inline`. Each thread builds its own solver from
``solver.spec()`` once (back-end models such as OR-Tools' are not shared between threads).

``timeout``: the call's future fails with :class:`TimeoutError` at the deadline and chunks not yet started are
cancelled; a chunk already running cannot be interrupted (Python threads cannot be killed) and its result is
discarded when it ends. Use :class:`~discreteopt.executors.processes.Processes` when solves must be killable.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec
from ._job import BatchJob, MapPlan, completed, concat_finisher
from .base import Executor, chunk_bounds, prepare_theta, spec_key, to_result

_CACHE_SIZE = 16
_DEFAULT = object()


class Threads(Executor):
    """Run solver chunks on a persistent pool of ``n`` threads (default: ``os.cpu_count()``)."""

    def __init__(self, n: int | None = None, *, timeout: float | None = None):
        n = (os.cpu_count() or 1) if n is None else n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (number of threads) must be an integer >= 1; got {n!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None; got {timeout!r}")
        self._n = n
        self.timeout = timeout
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def n_workers(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"Threads({self._n})"

    # ----------------------------------------------------------------- internals
    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("Threads executor is closed")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._n, thread_name_prefix="discreteopt-solver")
            return self._pool

    def _solver(self, key: str, blob: bytes) -> Solver:
        cache: OrderedDict[str, Solver] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        solver = cache.get(key)
        if solver is None:
            solver = pickle.loads(blob).build()
            cache[key] = solver
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return solver

    def _run_chunk(self, job: BatchJob, key: str, blob: bytes, start: int, x: np.ndarray) -> None:
        if job.finished:  # failed or timed out meanwhile: do not waste the thread
            return
        try:
            job.add(start, self._solver(key, blob).solve_numpy(x))
        except BaseException as exc:  # noqa: BLE001 -- delivered through the job's future
            job.fail(exc, offset=start)

    def _launch(self, spec: SolverSpec, x_parts: list[tuple[int, np.ndarray]], job: BatchJob,
                timeout: float | None) -> Future:
        pool = self._executor()
        key, blob = spec_key(spec)
        futures = [pool.submit(self._run_chunk, job, key, blob, start, x) for start, x in x_parts]
        if timeout is not None:
            timer = threading.Timer(timeout, _expire, args=(job, futures, timeout))
            timer.daemon = True
            timer.start()
            job.future.add_done_callback(lambda _f: timer.cancel())
        return job.future

    # ----------------------------------------------------------------- API
    def submit(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None | object = _DEFAULT) -> Future:
        timeout = self.timeout if timeout is _DEFAULT else timeout
        if solver.device_native:
            return completed(lambda: solver.solve(theta))
        x = prepare_theta(solver, theta)  # [B, *E] float64
        if x.shape[0] == 0:
            return completed(lambda: solver.solve(theta))
        device, dtype = theta.device, theta.dtype
        job = BatchJob(x.shape[0], concat_finisher(lambda y: to_result(y, device, dtype)),
                       type(solver).__name__)
        parts = [(s, x[s:e]) for s, e in chunk_bounds(x.shape[0], self._n)]
        return self._launch(solver.spec(), parts, job, timeout)  # type: ignore[arg-type]

    def map(self, spec: SolverSpec, chunks: list[np.ndarray], *, timeout: float | None = None) -> list[np.ndarray]:
        plan = MapPlan(spec, [np.asarray(c, dtype=np.float64) for c in chunks])
        if not plan.parts:
            return plan.finisher()([])
        job = BatchJob(plan.batch, plan.finisher(), spec.cls_path.rpartition(".")[2])
        return self._launch(spec, plan.parts, job, timeout if timeout is not None else self.timeout).result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _expire(job: BatchJob, futures: list[Future], timeout: float) -> None:
    for f in futures:
        f.cancel()
    job.fail(TimeoutError(f"{job.label}: {job.batch} instances were not solved within timeout={timeout} s "
                          "(Threads: chunks already running finish in the background, their results are dropped)"))

