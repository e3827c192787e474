"""``Processes(n)``: a persistent pool of ``n`` worker processes that solve chunks of the batch.

* **Persistent.** Workers start on the first call (or :meth:`Processes.start`) and serve every later call;
  each builds a solver from ``solver.spec()`` once and keeps it (LRU of 16 specs per worker, keyed by a hash of
  the pickled spec). :meth:`Processes.close`, garbage collection of the executor and interpreter exit all
  stop them.
* **Chunks, not instances.** A call of ``B`` instances becomes ``n`` tasks of ``ceil(B/n)`` rows, one per
  worker. Several calls may be in flight at once (``submit`` returns immediately); their tasks queue FIFO.
* **Shared memory.** When a call's input exceeds ``shm_bytes`` it is written once into a
  :mod:`multiprocessing.shared_memory` segment that workers read in place; their outputs above the same size
  come back through segments too. Smaller calls are pickled through the pipes (cheaper below ~32 KiB).
* **Start methods.** ``"spawn"`` (default) and ``"forkserver"``: safe with CUDA initialised in the parent.
  ``"fork"`` is refused (forking a process that runs threads or CUDA is unsafe). Workers never touch a GPU:
  they hide CUDA devices from themselves and run torch with one intra-op thread (one worker per core).
  Inputs on a GPU are copied to the host in the caller; results come back on the input's device.
* **Faults.** A worker that dies (killed, segfault, ``os._exit``) is replaced and its chunk solved again, split
  into one task per instance (``retries`` times, default once); if it dies again the call fails with
  :class:`WorkerCrashed` naming the instance. ``timeout`` (per executor or per call) fails the call with
  :class:`TimeoutError` and restarts the workers still running it, so no stale work remains. Errors raised by
  the solver (``ValueError``, :class:`~discreteopt.solvers.base.InstanceError` with the index in the full batch)
  reach the caller unchanged. Workers ignore Ctrl-C (the parent handles it and closes the pool at exit) and exit
  by themselves when the parent process dies.

A dispatcher thread owns the pipes: it sends tasks to idle workers, collects results, watches worker liveness
(process sentinels) and deadlines, and resolves the calls' futures.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec
from ._job import BatchJob, MapPlan, completed, concat_finisher
from ._worker import CACHE_SIZE, worker_main
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
from .errors import WorkerCrashed, describe_exit

__all__ = ["Processes", "WorkerCrashed"]

_START_METHODS = ("spawn", "forkserver")
#: consecutive worker deaths before their first message after which the pool is declared broken
_MAX_STARTUP_FAILURES = 3


class _RemoteTraceback(Exception):
    def __init__(self, tb: str):
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


# ===================================================================== dispatcher state
@dataclass(eq=False)
class _Job:
    batch: BatchJob
    key: str
    blob: bytes
    sources: np.ndarray  # [B, *E] float64, the call's whole input (a view into `shm` when it has one)
    shm: shared_memory.SharedMemory | None
    deadline: float | None
    timeout: float | None
    inflight: int = 0
    released: bool = False


@dataclass(eq=False)
class _Task:
    job: _Job
    start: int  # global rows [start, stop)
    stop: int
    attempts: int = 0  # times dispatched to a worker that then died
    retry: bool = False


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Any
    known: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    task: _Task | None = None
    task_id: int = -1
    ready: bool = False


class _Pool:
    """Worker processes plus the dispatcher thread (no reference back to the public executor, so it can be
    garbage collected and finalised)."""

    def __init__(self, n: int, start_method: str, shm_bytes: int, retries: int):
        self.n = n
        self.ctx = mp.get_context(start_method)
        self.shm_bytes = shm_bytes
        self.retries = retries
        self.lock = threading.Lock()
        self.ready_cond = threading.Condition(self.lock)  # a worker reported "ready"
        self.incoming: collections.deque[_Job] = collections.deque()
        self.pending: collections.deque[_Task] = collections.deque()
        self.workers: list[_Worker] = []
        self.jobs: set[_Job] = set()
        self.closing = False
        self.broken: str | None = None
        self.thread: threading.Thread | None = None
        self.ids = itertools.count()
        self.startup_failures = 0
        self.stats = collections.Counter()
        # self-pipe that wakes the dispatcher out of `wait`; written and closed under `wake_lock` only, so a
        # late wake-up never writes into a descriptor number the OS has reused
        self.wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._wake_open = True

    # ----------------------------------------------------------------- caller side
    def start(self) -> None:
        with self.lock:
            if self.closing:
                raise RuntimeError("Processes executor is closed")
            if self.broken:
                raise RuntimeError(self.broken)
            if self.thread is not None:
                return
            for _ in range(self.n):
                self.workers.append(self._spawn())
            self.thread = threading.Thread(target=self._loop, daemon=True, name="discreteopt-dispatcher")
            self.thread.start()

    def wait_ready(self, timeout: float) -> None:
        """Block until every worker has started (imported its modules) or raise ``RuntimeError``."""
        with self.lock:
            ok = self.ready_cond.wait_for(
                lambda: self.closing or self.broken or all(w.ready for w in self.workers), timeout)
            if self.broken or self.closing:
                raise RuntimeError(self.broken or "Processes executor is closed")
        if not ok:
            raise RuntimeError(f"Processes workers did not start within {timeout} s")

    def put(self, job: _Job) -> None:
        self.start()
        with self.lock:
            if self.closing or self.broken:
                self._release(job)
                raise RuntimeError(self.broken or "Processes executor is closed")
            self.incoming.append(job)
        self._wake()

    def pids(self) -> list[int]:
        with self.lock:
            return [w.proc.pid for w in self.workers]

    def shutdown(self) -> None:
        """Stop the dispatcher and the workers; calls not finished fail with ``RuntimeError``. Idempotent."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
            self.ready_cond.notify_all()
        self._wake()
        t = self.thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
        self._stop_workers()  # no-op if the dispatcher did it already
        self._fail_leftovers("Processes executor was closed before the call finished")
        if t is None or not t.is_alive():
            with self.wake_lock:
                self._wake_open = False
                for fd in (self._wake_r, self._wake_w):
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def _fail_leftovers(self, reason: str) -> None:
        """Fail every call not finished: admitted ones and those still queued in ``incoming`` (never a hang)."""
        with self.lock:
            queued = list(self.incoming)
            self.incoming.clear()
        for job in list(self.jobs) + queued:
            job.batch.fail(RuntimeError(reason))
            job.inflight = 0
            self._release(job)
        self.jobs.clear()
        self.pending.clear()

    def _wake(self) -> None:
        with self.wake_lock:
            if not self._wake_open:
                return
            try:
                os.write(self._wake_w, b"x")
            except (BlockingIOError, OSError):  # pipe full: the dispatcher is woken already
                pass

    # ----------------------------------------------------------------- workers
    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=worker_main, args=(child_conn, os.getpid()), daemon=True,
                                name="discreteopt-worker")
        proc.start()
        child_conn.close()
        self.stats["started"] += 1
        return _Worker(proc, parent_conn)

    def _stop_workers(self) -> None:
        with self.lock:
            workers, self.workers = self.workers, []
        for w in workers:
            try:
                w.conn.send(("stop",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for w in workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for w in workers:
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(timeout=1.0)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=1.0)
            w.conn.close()

    def _kill(self, w: _Worker) -> None:
        w.proc.kill()
        w.proc.join(timeout=5.0)
        w.conn.close()

    # ----------------------------------------------------------------- dispatcher thread
    def _loop(self) -> None:
        try:
            while True:
                with self.lock:
                    if self.closing:
                        break
                    while self.incoming:
                        self._admit(self.incoming.popleft())
                self._dispatch()
                waitables: list[Any] = [self._wake_r]
                for w in self.workers:
                    waitables += [w.conn, w.proc.sentinel]
                ready = mpc.wait(waitables, timeout=self._next_timeout())
                if self._wake_r in ready:
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        pass
                for w in list(self.workers):
                    if w.conn in ready:
                        self._receive(w)
                for w in list(self.workers):
                    if w.proc.sentinel in ready or not w.proc.is_alive():
                        self._drain_then_bury(w)
                self._expire()
        except BaseException as exc:  # noqa: BLE001 -- never leave callers hanging on a dead dispatcher
            with self.lock:
                self.broken = self.broken or f"Processes dispatcher failed: {type(exc).__name__}: {exc}"
                self.ready_cond.notify_all()
        finally:
            # `broken` or `closing` is set before this point, so `put` accepts no job after the drain below
            self._fail_leftovers(self.broken or "Processes executor was closed before the call finished")
            self._stop_workers()

    def _admit(self, job: _Job) -> None:
        self.jobs.add(job)
        for start, stop in chunk_bounds(job.sources.shape[0], self.n):
            self.pending.append(_Task(job, start, stop))
        # several calls in flight: ceil(B/n) chunks each, FIFO across calls

    def _next_timeout(self) -> float | None:
        deadlines = [j.deadline for j in self.jobs if j.deadline is not None and not j.batch.finished]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _dispatch(self) -> None:
        for w in self.workers:
            if w.task is not None:
                continue
            task = self._next_task()
            if task is None:
                return
            self._send(w, task)

    def _next_task(self) -> _Task | None:
        while self.pending:
            task = self.pending.popleft()
            if not task.job.batch.finished:
                return task
            self._maybe_release(task.job)
        return None

    def _send(self, w: _Worker, task: _Task) -> None:
        job = task.job
        # mirror of the worker's LRU of built solvers; if they ever disagree the worker answers "need"
        known = job.key in w.known
        w.known[job.key] = True
        w.known.move_to_end(job.key)
        if len(w.known) > CACHE_SIZE:
            w.known.popitem(last=False)
        w.task, w.task_id = task, next(self.ids)
        job.inflight += 1
        task.attempts += 1
        self.stats["tasks"] += 1
        self._post(w, task, with_spec=not known)

    def _post(self, w: _Worker, task: _Task, with_spec: bool) -> None:
        job = task.job
        if job.shm is not None:
            payload = ("shm", job.shm.name, job.sources.dtype.str, job.sources.shape, task.start, task.stop)
            out_bytes: int | None = self.shm_bytes // self.n
        else:
            payload = job.sources[task.start:task.stop]
            out_bytes = None
        try:
            w.conn.send(("task", w.task_id, job.key, job.blob if with_spec else None, payload, out_bytes))
        except (OSError, ValueError):  # worker died: its sentinel reports it on the next turn
            pass

    def _receive(self, w: _Worker) -> bool:
        """Handle one message from ``w``; ``False`` when its pipe is closed (the worker died)."""
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            return False  # died: its sentinel is handled next
        kind = msg[0]
        if kind == "ready":
            w.ready = True
            self.startup_failures = 0
            with self.lock:
                self.ready_cond.notify_all()
            return True
        task_id, body = msg[1], msg[2:]
        task = w.task
        if task is None or task_id != w.task_id:
            _discard(body)
            return True
        if kind == "need":  # the worker no longer holds this spec: send the task again with it
            self._post(w, task, with_spec=True)
            return True
        w.task = None
        job = task.job
        job.inflight -= 1
        if kind == "ok":
            y = _unpack(body[0])
            job.batch.add(task.start, y)
        else:
            exc = pickle.loads(body[0])
            exc.__cause__ = _RemoteTraceback(body[1])
            job.batch.fail(exc, offset=task.start)
        self._maybe_release(job)
        return True

    def _drain_then_bury(self, w: _Worker) -> None:
        # a result sent just before dying is still in the pipe (poll() is also true at end of file: stop there)
        try:
            while w.conn.poll() and self._receive(w):
                pass
        except (EOFError, OSError):
            pass
        w.proc.join(timeout=1.0)
        if w.proc.is_alive():
            return
        self.workers.remove(w)
        code = w.proc.exitcode
        w.conn.close()
        self.stats["died"] += 1
        if not w.ready:
            self.startup_failures += 1
            if self.startup_failures >= _MAX_STARTUP_FAILURES:
                reason = (f"Processes workers die on start-up ({describe_exit(code)}, {self.startup_failures} in a "
                          "row). With start_method='spawn' or 'forkserver' the main module is re-imported in each "
                          "worker: guard the script's entry point with `if __name__ == '__main__':` and make the "
                          "solver's class importable.")
                with self.lock:
                    self.broken = reason
                    self.ready_cond.notify_all()
                raise RuntimeError(reason)
        if not self.closing:
            self.workers.append(self._spawn())
            self.stats["restarts"] += 1
        task = w.task
        if task is None:
            return
        job = task.job
        job.inflight -= 1
        if job.batch.finished:
            self._maybe_release(job)
            return
        if not w.ready:  # died before reading anything: not the task's fault
            task.attempts -= 1
            self.pending.appendleft(task)
            return
        if task.attempts <= self.retries:
            # solve the chunk again, one instance per task, so a reproducible crash names its instance
            self.stats["retries"] += 1
            for i in reversed(range(task.start, task.stop)):
                self.pending.appendleft(_Task(job, i, i + 1, attempts=task.attempts, retry=True))
            return
        job.batch.fail(WorkerCrashed(job.batch.label, task.start, task.stop, w.proc.pid, code, task.attempts))
        self._maybe_release(job)

    def _expire(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs):
            if job.deadline is None or job.deadline > now or job.batch.finished:
                continue
            running = [w for w in self.workers if w.task is not None and w.task.job is job]
            job.batch.fail(TimeoutError(
                f"{job.batch.label}: {job.batch.batch} instances were not solved within timeout={job.timeout} s; "
                f"the {len(running)} worker(s) still running them were restarted"))
            self.stats["timeouts"] += 1
            for w in running:
                self.workers.remove(w)
                self._kill(w)
                job.inflight -= 1
                self.workers.append(self._spawn())
                self.stats["restarts"] += 1
            self._maybe_release(job)

    def _maybe_release(self, job: _Job) -> None:
        if job.batch.finished and job.inflight <= 0:
            self.jobs.discard(job)
            self._release(job)

    @staticmethod
    def _release(job: _Job) -> None:
        if job.released:
            return
        job.released = True
        if job.shm is not None:
            job.sources = None  # type: ignore[assignment]  # drop the view before closing the segment
            try:
                job.shm.close()
            except BufferError:
                pass
            try:
                job.shm.unlink()
            except FileNotFoundError:
                pass


def _unpack(y: Any) -> np.ndarray:
    if isinstance(y, tuple) and y and y[0] == "shm":
        _, name, dtype, shape = y
        shm = shared_memory.SharedMemory(name=name)
        try:
            return np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf).copy()
        finally:
            shm.close()
            shm.unlink()
    return y


def _discard(body) -> None:
    """A stale result (its call failed or timed out): free a shared-memory output segment."""
    if body and isinstance(body[0], tuple) and body[0] and body[0][0] == "shm":
        try:
            _unpack(body[0])
        except FileNotFoundError:
            pass


# ===================================================================== public executor
class Processes(Executor):
    """Persistent pool of ``n`` worker processes (see module docstring).

    Args:
        n: number of workers (default ``os.cpu_count()``).
        start_method: ``"spawn"`` (default) or ``"forkserver"``.
        timeout: default per-call deadline in seconds (``None``: none); ``submit``/``solve``/``map`` take
            ``timeout=`` to override it per call.
        shm_bytes: calls whose input is at least this many bytes go through shared memory (default 32 KiB).
        retries: how many times a chunk whose worker died is solved again before :class:`WorkerCrashed`.

    Copies: ``copy.deepcopy`` (e.g. of a model holding a layer) shares this pool; pickling gives an unstarted
    pool with the same settings.
    """

    def __init__(self, n: int | None = None, *, start_method: str = "spawn", timeout: float | None = None,
                 shm_bytes: int = 32 * 1024, retries: int = 1):
        n = check_workers(n, "worker processes")
        if start_method not in _START_METHODS:
            raise ValueError(f"start_method must be one of {_START_METHODS} (fork is unsafe with threads and "
                             f"CUDA); got {start_method!r}")
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f"start_method {start_method!r} is not available on this platform")
        timeout = check_timeout(timeout)
        if isinstance(shm_bytes, bool) or not isinstance(shm_bytes, int) or shm_bytes < 1:
            raise ValueError(f"shm_bytes must be an integer >= 1; got {shm_bytes!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0; got {retries!r}")
        self._n = n
        self.start_method = start_method
        self.timeout = timeout
        self.shm_bytes = shm_bytes
        self.retries = retries
        self._pool = _Pool(n, start_method, shm_bytes, retries)
        self._finalizer = weakref.finalize(self, self._pool.shutdown)

    @property
    def n_workers(self) -> int:
        return self._n

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``tasks`` sent, workers ``started`` / ``died`` / ``restarts``, chunk ``retries``,
        ``timeouts``."""
        return dict(self._pool.stats)

    @property
    def closed(self) -> bool:
        return self._pool.closing

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (empty before the first call)."""
        return self._pool.pids()

    def start(self, wait: bool = True, timeout: float = 300.0) -> Processes:
        """Start the workers now instead of on the first call; with ``wait`` return once all of them are up
        (each imports torch: ~1-3 s, in parallel; longer on a loaded machine)."""
        self._pool.start()
        if wait:
            self._pool.wait_ready(timeout)
        return self

    def __repr__(self) -> str:
        return f"Processes({self._n}, start_method={self.start_method!r})"

    def __reduce__(self):
        return (_rebuild, (self._n, self.start_method, self.timeout, self.shm_bytes, self.retries))

    def __deepcopy__(self, memo) -> Processes:
        return self  # a pool is a shared resource, not model state

    # ----------------------------------------------------------------- API
    def submit(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> Future:
        """Start solving ``theta [B, *E]`` on the workers; returns at once with a future of ``y [B, *Y]``
        (on ``theta``'s device and dtype). Bad input raises ``ValueError`` here, in the caller.
        Device-native solvers run inline on ``theta``'s device."""
        timeout = self.timeout if timeout is DEFAULT else check_timeout(timeout)
        if solver.device_native:
            return completed(lambda: solver.solve(theta))
        x = prepare_theta(solver, theta)  # [B, *E] float64, validated (ValueError here, in the caller)
        if x.shape[0] == 0:
            return completed(lambda: solver.solve(theta))
        device, dtype = theta.device, theta.dtype
        batch = BatchJob(x.shape[0], concat_finisher(lambda y: to_result(y, device, dtype)), type(solver).__name__)
        self._put(solver_key(solver), x, batch, timeout)
        return batch.future

    def solve(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> torch.Tensor:
        return self.submit(solver, theta, timeout=timeout).result()

    def map(self, spec: SolverSpec, chunks: list[np.ndarray], *, timeout: float | None = DEFAULT) -> list[np.ndarray]:
        """Solve each ``float64`` chunk ``[b_i, *E]`` on the workers -> ``[b_i, *Y]`` (blocking).

        The chunks are joined into one batch and re-split into one task per worker; all chunks must share the
        per-instance shape ``E``.
        """
        timeout = self.timeout if timeout is DEFAULT else check_timeout(timeout)
        chunks = [np.asarray(c, dtype=np.float64) for c in chunks]
        plan = MapPlan(spec, chunks)
        if not plan.parts:
            return plan.finisher()([])
        shapes = {c.shape[1:] for _, c in plan.parts}
        if len(shapes) > 1:
            raise ValueError(f"chunks must share the per-instance shape [b_i, *E]; got {sorted(shapes)}")
        x = np.concatenate([c for _, c in plan.parts], axis=0)  # [sum b_i, *E]
        batch = BatchJob(plan.batch, plan.finisher(), spec.cls_path.rpartition(".")[2])
        self._put(spec_key(spec), x, batch, timeout)
        return batch.future.result()

    def _put(self, key: tuple[str, bytes], x: np.ndarray, batch: BatchJob, timeout: float | None) -> None:
        shm = None
        if x.nbytes >= self._pool.shm_bytes:
            shm = shared_memory.SharedMemory(create=True, size=x.nbytes)
            view = np.ndarray(x.shape, dtype=x.dtype, buffer=shm.buf)  # [B, *E] in shared memory
            view[...] = x
            x = view
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pool.put(_Job(batch, key[0], key[1], x, shm, deadline, timeout))

    def close(self) -> None:
        """Stop the workers (waits up to ~2 s, then kills them); calls not finished fail. Idempotent."""
        self._finalizer()


def _rebuild(n, start_method, timeout, shm_bytes, retries) -> Processes:
    return Processes(n, start_method=start_method, timeout=timeout, shm_bytes=shm_bytes, retries=retries)
