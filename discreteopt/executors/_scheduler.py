"""What the persistent pool executors (:class:`~discreteopt.executors.processes.Processes` and
:class:`~discreteopt.executors.ray_executor.Ray`) do alike: one scheduler, two transports.

:class:`Scheduler` owns the calls in flight and the policy that serves them:

* **Queue.** A call (:class:`Job`) becomes ``min(B, n)`` tasks of ``floor(B/n)`` or ``ceil(B/n)`` rows (balanced) (:class:`Task`); tasks wait in one
  FIFO queue across calls and each worker runs one task at a time, so a timed-out or crashed worker holds no one
  else's work.
* **Solver cache mirror.** Each worker keeps an LRU of solvers built from specs (:func:`~._worker.lru_get`); the
  scheduler mirrors it per worker with the same rule and sends the pickled spec only with a worker's first task
  of that spec (a worker that no longer holds it asks again). A solver whose call raised anything but
  ``ValueError``/``InstanceError`` is dropped from both (:func:`~._worker.keeps_solver`) and rebuilt next time.
* **Faults.** A worker that dies mid-task is replaced (by the subclass) and its chunk solved again, one instance
  per task (``retries`` times); if it dies again the call fails with
  :class:`~discreteopt.executors.errors.WorkerCrashed` naming the instance. A worker that dies before it started
  is not the task's fault: the task goes back to the front of the queue unchanged; several such deaths in a row
  break the pool (the subclass says when a death counts and what the error says).
* **Deadlines.** A call past its ``timeout`` fails with :class:`TimeoutError` and the workers still running it
  are replaced, so no stale work remains.
* **Release.** A call leaves the scheduler once it is resolved and none of its tasks is still out; closing (or
  a failure of the scheduling thread) fails every call not finished, never a hang.

A subclass supplies the transport: how workers start, how a task is posted (:meth:`Scheduler._post`), how a
worker is replaced and stopped, and the scheduling thread's wait for answers (:meth:`Scheduler._serve`), which
hands them to :meth:`Scheduler._complete` (an answer) or :meth:`Scheduler._lost` (the worker died).

Threading: the queue, the job set and the workers' tasks are touched by one thread at a time: the scheduling
thread alone where callers only queue calls (``Processes``), or whoever holds ``lock`` where callers dispatch
too (``Ray``); :meth:`Scheduler._set_broken` is the one hook that differs between the two.

:class:`PoolExecutor` is the public side shared by both executors: ``submit`` / ``solve`` / ``map`` validate the
input in the caller and hand one :class:`Job` per call to the scheduler.
"""

from __future__ import annotations

import abc
import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec
from ._job import BatchJob, MapPlan, completed, concat_finisher
from ._worker import keeps_solver, lru_get
from .base import (
    DEFAULT,
    Executor,
    check_timeout,
    chunk_bounds,
    prepare_theta,
    solver_key,
    spec_key,
    to_result,
)
from .errors import WorkerCrashed

#: consecutive worker deaths before they started after which the pool is declared broken
MAX_STARTUP_FAILURES = 3


def check_retries(retries: Any) -> int:
    """How many times a chunk whose worker died is solved again: an integer ``>= 0``."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0; got {retries!r}")
    return retries


# ===================================================================== scheduler state
@dataclass(eq=False)
class Job:
    """One executor call as the scheduler sees it."""

    batch: BatchJob
    key: str  # hash of the pickled spec: the workers' cache key
    blob: bytes  # the pickled spec
    x: np.ndarray  # [B, *E] float64, the call's whole input
    deadline: float | None
    timeout: float | None
    inflight: int = 0  # tasks sent to a worker and not answered yet


@dataclass(eq=False)
class Task:
    job: Job
    start: int  # global rows [start, stop)
    stop: int
    attempts: int = 0  # times dispatched to a worker that then died
    retry: bool = False  # one instance of a crashed chunk, solved again


@dataclass(eq=False)
class Worker:
    """What the scheduler keeps of a worker (subclasses add its handle)."""

    known: collections.OrderedDict = field(default_factory=collections.OrderedDict, kw_only=True)
    task: Task | None = field(default=None, kw_only=True)  # the task it runs (one at a time)


def _built() -> bool:
    return True  # the mirror's entry for a spec the worker builds on its next task


class Scheduler(abc.ABC):
    """Queue, dispatch, solver cache mirror, retries, deadlines and release of a pool's calls (see the module
    docstring); subclasses supply the workers and the scheduling thread's wait (no reference back to the public
    executor, so it can be garbage collected and finalised)."""

    #: the executor's name in errors ("Processes executor is closed")
    name = "Pool"
    #: what the scheduling thread is called in errors ("Processes dispatcher failed: ...") and its thread's name
    role = "scheduler"
    thread_name = "discreteopt-scheduler"
    #: end of the timeout message, after the number of workers that were running the call
    timeout_action = "worker(s) still running them were replaced"

    def __init__(self, n: int | None, retries: int):
        self.n = n  # tasks per call (the number of workers; Ray resolves it when it starts)
        self.retries = retries
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # closing, broken, or what the subclass waits for
        self.pending: collections.deque[Task] = collections.deque()
        self.jobs: set[Job] = set()
        self.workers: list[Any] = []
        self.closing = False
        self.broken: str | None = None
        self.thread: threading.Thread | None = None
        self.startup_failures = 0
        self.stats = collections.Counter()

    @property
    def closed_reason(self) -> str:
        return f"{self.name} executor was closed before the call finished"

    # ----------------------------------------------------------------- caller side
    def start(self) -> None:
        with self.lock:
            if self.closing:
                raise RuntimeError(f"{self.name} executor is closed")
            if self.broken:
                raise RuntimeError(self.broken)
            if self.thread is not None:
                return
            self._start_workers()
            self.thread = threading.Thread(target=self._loop, daemon=True, name=self.thread_name)
            self.thread.start()

    def put(self, job: Job) -> None:
        self.start()
        with self.lock:
            if self.closing or self.broken:
                self._release(job)
                raise RuntimeError(self.broken or f"{self.name} executor is closed")
            self._enqueue(job)
        self._wake()

    def shutdown(self) -> None:
        """Stop the scheduling thread and the workers; calls not finished fail with ``RuntimeError``.
        Idempotent."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
            self.changed.notify_all()
        self._wake()
        t = self.thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
        # the thread's own exit did the first (and, for Processes, the second) already
        self._fail_leftovers(self.closed_reason)
        self._stop_workers()
        self._after_shutdown(t)

    def _fail_leftovers(self, reason: str) -> None:
        """Fail every call not finished: admitted ones and those still queued (never a hang)."""
        with self.lock:
            jobs = list(self.jobs) + self._take_queued()
            self.jobs = set()
            self.pending.clear()
            for w in self.workers:
                self._drop_task(w)
        for job in jobs:
            job.batch.fail(RuntimeError(reason))
            job.inflight = 0
            self._release(job)

    # ----------------------------------------------------------------- scheduling thread
    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 -- never leave callers hanging on a dead scheduling thread
            with self.lock:
                self.broken = self.broken or f"{self.name} {self.role} failed: {type(exc).__name__}: {exc}"
                self.changed.notify_all()
        finally:
            # `broken` or `closing` is set before this point, so `put` accepts no job after the drain below
            self._fail_leftovers(self.broken or self.closed_reason)

    def _admit(self, job: Job) -> None:
        self.jobs.add(job)
        for start, stop in chunk_bounds(job.x.shape[0], self.n):
            self.pending.append(Task(job, start, stop))
        # several calls in flight: balanced chunks each (chunk_bounds), FIFO across calls

    def _next_timeout(self) -> float | None:
        deadlines = [j.deadline for j in self.jobs if j.deadline is not None and not j.batch.finished]
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    def _dispatch(self) -> None:
        for w in self.workers:
            if w.task is not None:
                continue
            task = self._next_task()
            if task is None:
                return
            self._send(w, task)

    def _next_task(self) -> Task | None:
        while self.pending:
            task = self.pending.popleft()
            if not task.job.batch.finished:
                return task
            self._maybe_release(task.job)
        return None

    def _send(self, w: Worker, task: Task) -> None:
        job = task.job
        # mirror of the worker's LRU of built solvers; if they ever disagree the worker asks for the spec
        with_spec = job.key not in w.known
        lru_get(w.known, job.key, _built)
        w.task = task
        job.inflight += 1
        task.attempts += 1
        self.stats["tasks"] += 1
        self._post(w, task, with_spec)

    def _complete(self, w: Worker, task: Task, y: np.ndarray | None = None,
                  error: BaseException | None = None) -> None:
        """``w`` answered ``task``: its rows ``y [b, *Y]``, or ``error`` (instance index within the task)."""
        w.task = None
        job = task.job
        job.inflight -= 1
        if error is None:
            job.batch.add(task.start, y)
        else:
            if not keeps_solver(error):  # the worker dropped the solver (see keeps_solver): mirror it
                w.known.pop(job.key, None)
            job.batch.fail(error, offset=task.start)
        self._maybe_release(job)

    def _lost(self, task: Task, started: bool, pid: int | None, exitcode: int | None) -> None:
        """The worker running ``task`` died (the subclass has replaced it); ``started``: it had shown it was up
        (read or answered something) before, so the death is the task's fault."""
        job = task.job
        job.inflight -= 1
        if job.batch.finished:
            self._maybe_release(job)
            return
        if not started:  # died before reading or running anything: not the task's fault
            task.attempts -= 1
            self.pending.appendleft(task)
            return
        if task.attempts <= self.retries:
            # solve the chunk again, one instance per task, so a reproducible crash names its instance
            self.stats["retries"] += 1
            for i in reversed(range(task.start, task.stop)):
                self.pending.appendleft(Task(job, i, i + 1, attempts=task.attempts, retry=True))
            return
        job.batch.fail(WorkerCrashed(job.batch.label, task.start, task.stop, pid, exitcode, task.attempts))
        self._maybe_release(job)

    def _startup_failure(self, describe: Callable[[int], str]) -> None:
        """Count a worker that died before it started (reset by the subclass when one is up); the
        :data:`MAX_STARTUP_FAILURES`-th in a row breaks the pool with ``describe(count)`` (``RuntimeError``)."""
        self.startup_failures += 1
        if self.startup_failures >= MAX_STARTUP_FAILURES:
            reason = describe(self.startup_failures)
            self._set_broken(reason)
            raise RuntimeError(reason)

    def _set_broken(self, reason: str) -> None:
        """Called with ``lock`` held (``Ray``); ``Processes`` takes it here."""
        self.broken = reason
        self.changed.notify_all()

    def _expire(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs):
            if job.deadline is None or job.deadline > now or job.batch.finished:
                continue
            running = [w for w in self.workers if w.task is not None and w.task.job is job]
            job.batch.fail(TimeoutError(
                f"{job.batch.label}: {job.batch.batch} instances were not solved within timeout={job.timeout} s; "
                f"the {len(running)} {self.timeout_action}"))
            self.stats["timeouts"] += 1
            for w in running:
                self._replace(w)
                job.inflight -= 1
            self._maybe_release(job)

    def _stop_workers(self) -> None:
        """Stop every worker; idempotent (the list is taken once)."""
        with self.lock:
            workers, self.workers = self.workers, []
        self._stop(workers)

    def _maybe_release(self, job: Job) -> None:
        if job.batch.finished and job.inflight <= 0:
            self.jobs.discard(job)
            self._release(job)

    # ----------------------------------------------------------------- supplied by the transport
    @abc.abstractmethod
    def _start_workers(self) -> None:
        """Create the workers (``self.workers``; called once, with ``lock`` held)."""

    @abc.abstractmethod
    def _enqueue(self, job: Job) -> None:
        """Take a new call (``lock`` held): queue it for the scheduling thread, or admit and dispatch it."""

    @abc.abstractmethod
    def _serve(self) -> None:
        """The scheduling thread: wait for answers, deaths and deadlines until ``closing``."""

    @abc.abstractmethod
    def _post(self, w: Worker, task: Task, with_spec: bool) -> None:
        """Send ``task`` to ``w`` (again, with the spec, when the worker asks for it)."""

    @abc.abstractmethod
    def _replace(self, w: Worker) -> None:
        """Kill ``w`` (it runs a timed-out call) and put a fresh worker in its place (``restarts`` + 1)."""

    @abc.abstractmethod
    def _stop(self, workers: list[Any]) -> None:
        """Stop ``workers`` (taken out of ``self.workers`` by :meth:`_stop_workers`)."""

    def _wake(self) -> None:  # noqa: B027 -- optional hook
        """Wake the scheduling thread after ``put`` or ``shutdown`` (``lock`` not held)."""

    def _take_queued(self) -> list[Job]:
        """Calls taken by ``put`` and not admitted yet (``lock`` held): they fail with the others."""
        return []

    def _drop_task(self, w: Worker) -> None:
        w.task = None

    def _release(self, job: Job) -> None:  # noqa: B027 -- optional hook
        """Free what the call holds besides its future (once it left the scheduler or was refused)."""

    def _after_shutdown(self, thread: threading.Thread | None) -> None:  # noqa: B027 -- optional hook
        """Last step of :meth:`shutdown` (``thread``: the scheduling thread, finished unless it hung)."""


# ===================================================================== public executor
class PoolExecutor(Executor):
    """An executor whose calls run on a :class:`Scheduler` (``self._pool``): validates the input in the caller
    and hands one :class:`Job` per call to the pool (subclasses build it in :meth:`_put`)."""

    timeout: float | None
    _pool: Scheduler

    @property
    def closed(self) -> bool:
        return self._pool.closing

    def __deepcopy__(self, memo) -> PoolExecutor:
        return self  # a pool is a shared resource, not model state

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

    @abc.abstractmethod
    def _put(self, key: tuple[str, bytes], x: np.ndarray, batch: BatchJob, timeout: float | None) -> None:
        """Hand the call (``x [B, *E]`` float64, its ``BatchJob``) to ``self._pool``; the deadline starts here."""
