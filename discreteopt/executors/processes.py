"""``Processes(n)``: a persistent pool of ``n`` worker processes that solve chunks of the batch.

* **Persistent.** Workers start on the first call (or :meth:`Processes.start`) and serve every later call;
  each builds a solver from ``solver.spec()`` once and keeps it (LRU of 16 specs per worker, keyed by a hash of
  the pickled spec). :meth:`Processes.close`, garbage collection of the executor and interpreter exit all
  stop them.
* **Chunks, not instances.** A call of ``B`` instances becomes ``min(B, n)`` tasks of ``floor(B/n)`` or ``ceil(B/n)`` rows (balanced), one per
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
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from ._job import BatchJob
from ._scheduler import Job, PoolExecutor, Scheduler, Task, Worker, check_retries
from ._worker import worker_main
from .base import check_timeout, check_workers
from .errors import WorkerCrashed, describe_exit

__all__ = ["Processes", "WorkerCrashed"]

_START_METHODS = ("spawn", "forkserver")


class _RemoteTraceback(Exception):
    def __init__(self, tb: str):
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


# ===================================================================== dispatcher state
@dataclass(eq=False)
class _Job(Job):
    # x: a view into `shm` when the call has one
    shm: shared_memory.SharedMemory | None = None
    released: bool = False


@dataclass(eq=False)
class _Worker(Worker):
    proc: Any
    conn: Any
    task_id: int = -1
    ready: bool = False


class _Pool(Scheduler):
    """Worker processes plus the dispatcher thread (no reference back to the public executor, so it can be
    garbage collected and finalised); queue, retries and deadlines are the :class:`Scheduler`'s."""

    name = "Processes"
    role = "dispatcher"
    thread_name = "discreteopt-dispatcher"
    timeout_action = "worker(s) still running them were restarted"

    def __init__(self, n: int, start_method: str, shm_bytes: int, retries: int):
        super().__init__(n, retries)
        self.ctx = mp.get_context(start_method)
        self.shm_bytes = shm_bytes
        self.incoming: collections.deque[_Job] = collections.deque()  # put by callers, admitted by the dispatcher
        self.ids = itertools.count()
        # self-pipe that wakes the dispatcher out of `wait`; written and closed under `wake_lock` only, so a
        # late wake-up never writes into a descriptor number the OS has reused
        self.wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._wake_open = True

    # ----------------------------------------------------------------- caller side
    def wait_ready(self, timeout: float) -> None:
        """Block until every worker has started (imported its modules) or raise ``RuntimeError``."""
        with self.lock:
            ok = self.changed.wait_for(
                lambda: self.closing or self.broken or all(w.ready for w in self.workers), timeout)
            if self.broken or self.closing:
                raise RuntimeError(self.broken or "Processes executor is closed")
        if not ok:
            raise RuntimeError(f"Processes workers did not start within {timeout} s")

    def pids(self) -> list[int]:
        with self.lock:
            return [w.proc.pid for w in self.workers]

    def _enqueue(self, job: _Job) -> None:
        self.incoming.append(job)

    def _take_queued(self) -> list[_Job]:
        queued = list(self.incoming)
        self.incoming.clear()
        return queued

    def _wake(self) -> None:
        with self.wake_lock:
            if not self._wake_open:
                return
            try:
                os.write(self._wake_w, b"x")
            except (BlockingIOError, OSError):  # pipe full: the dispatcher is woken already
                pass

    def _after_shutdown(self, thread: threading.Thread | None) -> None:
        if thread is None or not thread.is_alive():
            with self.wake_lock:
                self._wake_open = False
                for fd in (self._wake_r, self._wake_w):
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def _set_broken(self, reason: str) -> None:
        with self.lock:  # the dispatcher runs without the lock
            super()._set_broken(reason)

    # ----------------------------------------------------------------- workers
    def _start_workers(self) -> None:
        for _ in range(self.n):
            self.workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=worker_main, args=(child_conn, os.getpid()), daemon=True,
                                name="discreteopt-worker")
        proc.start()
        child_conn.close()
        self.stats["started"] += 1
        return _Worker(proc, parent_conn)

    def _respawn(self) -> None:
        self.workers.append(self._spawn())
        self.stats["restarts"] += 1

    def _stop(self, workers: list[_Worker]) -> None:
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

    def _replace(self, w: _Worker) -> None:
        self.workers.remove(w)
        self._kill(w)
        self._respawn()

    # ----------------------------------------------------------------- dispatcher thread
    def _loop(self) -> None:
        try:
            super()._loop()  # fails the calls left when it ends
        finally:
            self._stop_workers()

    def _serve(self) -> None:
        while True:
            with self.lock:
                if self.closing:
                    return
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

    def _send(self, w: _Worker, task: Task) -> None:
        w.task_id = next(self.ids)
        super()._send(w, task)

    def _post(self, w: _Worker, task: Task, with_spec: bool) -> None:
        job: _Job = task.job  # type: ignore[assignment]
        if job.shm is not None:
            payload = ("shm", job.shm.name, job.x.dtype.str, job.x.shape, task.start, task.stop)
            out_bytes: int | None = self.shm_bytes // self.n
        else:
            payload = job.x[task.start:task.stop]
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
                self.changed.notify_all()  # wait_ready
            return True
        task_id, body = msg[1], msg[2:]
        task = w.task
        if task is None or task_id != w.task_id:
            _discard(body)
            return True
        if kind == "need":  # the worker no longer holds this spec: send the task again with it
            self._post(w, task, with_spec=True)
            return True
        if kind == "ok":
            self._complete(w, task, y=_unpack(body[0]))
        else:
            exc = pickle.loads(body[0])
            exc.__cause__ = _RemoteTraceback(body[1])
            self._complete(w, task, error=exc)
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
            self._startup_failure(lambda count: (
                f"Processes workers die on start-up ({describe_exit(code)}, {count} in a row). With "
                "start_method='spawn' or 'forkserver' the main module is re-imported in each worker: guard the "
                "script's entry point with `if __name__ == '__main__':` and make the solver's class importable."))
        if not self.closing:
            self._respawn()
        if w.task is not None:
            self._lost(w.task, w.ready, w.proc.pid, code)

    def _release(self, job: _Job) -> None:
        if job.released:
            return
        job.released = True
        if job.shm is not None:
            job.x = None  # type: ignore[assignment]  # drop the view before closing the segment
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
class Processes(PoolExecutor):
    """Persistent pool of ``n`` worker processes that solve chunks of the batch (see the module docstring).

    ``ex.solve(solver, theta [B, *E]) -> y [B, *Y]`` equals ``solver.solve(theta)`` (values, device, dtype). The
    batch becomes ``min(B, n)`` tasks of ``floor(B/n)`` or ``ceil(B/n)`` rows (balanced), one per worker; each worker builds the solver from its recipe
    (``solver.spec()``, verified in the caller) once and keeps it (LRU of 16 recipes; a solver whose call raised
    anything but ``ValueError``/``InstanceError`` is dropped and rebuilt, so one bad instance cannot poison later
    calls). Inputs of ``shm_bytes`` or more travel through shared memory. Worth it when a call's solve time
    exceeds the ~0.1-0.5 ms of overhead per call (see :class:`~discreteopt.executors.auto.Auto`).

    Faults: a worker that dies is replaced and its chunk solved again, one instance per task, ``retries`` times;
    then :class:`~discreteopt.executors.errors.WorkerCrashed` names the instance and what its exit status says.
    ``timeout`` fails the call with ``TimeoutError`` and restarts the workers still on it. Solver errors
    (``ValueError``, :class:`~discreteopt.solvers.base.InstanceError` with the index in the full batch) reach
    the caller unchanged; bad input raises ``ValueError`` in the caller before anything is sent.

    Args:
        n: number of workers (default ``os.cpu_count()``).
        start_method: ``"spawn"`` (default) or ``"forkserver"``.
        timeout: default per-call deadline in seconds (``None``: none); ``submit``/``solve``/``map`` take
            ``timeout=`` to override it per call.
        shm_bytes: calls whose input is at least this many bytes go through shared memory (default 32 KiB).
        retries: how many times a chunk whose worker died is solved again before :class:`WorkerCrashed`.

    Copies: ``copy.deepcopy`` (e.g. of a model holding a layer) shares this pool; pickling gives an unstarted
    pool with the same settings.

    Example (guard the entry point: ``spawn`` re-imports the main module in each worker)::

        if __name__ == "__main__":
            with Processes(4) as ex:
                y = ex.solve(Knapsack(weights, capacity), theta)     # theta [B, n] -> y [B, n]
                fut = ex.submit(ILP(A_ub=A, b_ub=b), theta2)         # returns at once; fut.result() later
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
        retries = check_retries(retries)
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

    # ----------------------------------------------------------------- API (submit/solve/map: PoolExecutor)
    def _put(self, key: tuple[str, bytes], x: np.ndarray, batch: BatchJob, timeout: float | None) -> None:
        shm = None
        if x.nbytes >= self._pool.shm_bytes:
            shm = shared_memory.SharedMemory(create=True, size=x.nbytes)
            view = np.ndarray(x.shape, dtype=x.dtype, buffer=shm.buf)  # [B, *E] in shared memory
            view[...] = x
            x = view
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pool.put(_Job(batch, key[0], key[1], x, deadline, timeout, shm=shm))

    def close(self) -> None:
        """Stop the workers (waits up to ~2 s, then kills them); calls not finished fail. Idempotent."""
        self._finalizer()


def _rebuild(n, start_method, timeout, shm_bytes, retries) -> Processes:
    return Processes(n, start_method=start_method, timeout=timeout, shm_bytes=shm_bytes, retries=retries)
