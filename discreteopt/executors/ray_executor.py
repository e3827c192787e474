"""``Ray(...)``: solve chunks of the batch on Ray actors, on this machine or across a cluster.

* **Lazy.** ``ray`` is imported on the first call (``ImportError`` naming the ``[ray]`` extra when missing);
  ``ray.init`` runs only if Ray is not initialised yet: a local instance by default, ``address="auto"`` or
  ``"ray://host:10001"`` to join a cluster. The executor never shuts Ray down (Ray does at interpreter exit).
* **Actors, solver built once.** ``n`` actors (default: the cluster's CPUs / ``num_cpus``) each build a solver
  from ``solver.spec()`` the first time they see it and keep it (LRU of 16 specs, as
  :class:`~discreteopt.executors.processes.Processes`); the spec travels once per actor. On a cluster the
  solver's class must be importable on every node (install ``discreteopt`` there).
* **Chunks.** A call of ``B`` instances becomes ``n`` tasks of ``ceil(B/n)`` rows; each actor runs one task at
  a time (the executor queues the rest, FIFO across calls), so a timed-out or crashed actor holds no one else's
  work.
* **Faults.** An actor that dies mid-task (killed, segfault, node lost) is replaced and its chunk solved again,
  one instance per task (``retries`` times, default once); if it dies again the call fails with
  :class:`~discreteopt.executors.errors.WorkerCrashed` naming the instance. Actors that die before answering
  anything three times in a row (e.g. the package is missing on the node) fail the executor with Ray's error.
  ``timeout`` fails the call with :class:`TimeoutError` and replaces the actors still running it. Solver errors
  (``ValueError``, :class:`~discreteopt.solvers.base.InstanceError` with the index in the full batch) reach the
  caller unchanged.

A collector thread waits on the tasks (``ray.wait``, polling every ``poll`` seconds so that calls submitted
meanwhile are seen), hands out queued tasks to idle actors and resolves the calls' futures.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec
from ._job import BatchJob, MapPlan, completed, concat_finisher, relocate
from ._worker import CACHE_SIZE, isolate_worker
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

__all__ = ["Ray"]

_MAX_STARTUP_FAILURES = 3
_NEED_SPEC = "need-spec"


def import_ray():
    """``import ray`` with an install hint."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("discreteopt.executors.Ray needs the 'ray' package: pip install 'discreteopt[ray]' "
                          "(or pip install 'ray>=2.9')") from exc
    return ray


class SolverActor:
    """Body of the Ray actor (decorated with ``ray.remote`` when the executor starts)."""

    def __init__(self):
        isolate_worker()
        self._cache: collections.OrderedDict[str, Solver] = collections.OrderedDict()

    def pid(self) -> int:
        import os

        return os.getpid()

    def solve(self, key: str, blob: bytes | None, x: np.ndarray) -> Any:
        import pickle

        solver = self._cache.get(key)
        if solver is None:
            if blob is None:  # evicted here but not in the driver's mirror: ask for the spec again
                return _NEED_SPEC
            solver = pickle.loads(blob).build()
            self._cache[key] = solver
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        if not x.flags.writeable:  # zero-copy view of Ray's object store
            x = x.copy()
        return solver.solve_numpy(x)


# ===================================================================== collector state
@dataclass(eq=False)
class _Job:
    batch: BatchJob
    key: str
    blob: bytes
    x: np.ndarray  # [B, *E] float64
    deadline: float | None
    timeout: float | None
    inflight: int = 0


@dataclass(eq=False)
class _Task:
    job: _Job
    start: int  # global rows [start, stop)
    stop: int
    attempts: int = 0


@dataclass(eq=False)
class _Slot:
    handle: Any
    pid_ref: Any
    known: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    task: _Task | None = None
    ref: Any = None
    answered: bool = False  # the actor has run something (so a later death is the task's fault)


class _RayPool:
    """Actors, queued tasks and the collector thread (no reference back to the public executor)."""

    def __init__(self, n: int | None, num_cpus: float, retries: int, poll: float, address: str | None,
                 init_kwargs: dict[str, Any]):
        self.requested = n
        self.num_cpus = num_cpus
        self.retries = retries
        self.poll = poll
        self.address = address
        self.init_kwargs = init_kwargs
        self.ray: Any = None
        self.actor_cls: Any = None
        self.lock = threading.Lock()
        self.wakeup = threading.Condition(self.lock)
        self.slots: list[_Slot] = []
        self.pending: collections.deque[_Task] = collections.deque()
        self.jobs: set[_Job] = set()
        self.closing = False
        self.broken: str | None = None
        self.thread: threading.Thread | None = None
        self.startup_failures = 0
        self.stats = collections.Counter()

    # ----------------------------------------------------------------- caller side
    def start(self) -> None:
        with self.lock:
            if self.closing:
                raise RuntimeError("Ray executor is closed")
            if self.broken:
                raise RuntimeError(self.broken)
            if self.thread is not None:
                return
            ray = self.ray = import_ray()
            if not ray.is_initialized():
                ray.init(address=self.address, **{"include_dashboard": False, **self.init_kwargs})
            n = self.requested
            if n is None:
                n = max(1, int(ray.cluster_resources().get("CPU", 1) // self.num_cpus))
            self.actor_cls = ray.remote(SolverActor).options(num_cpus=self.num_cpus, max_restarts=0)
            self.slots = [self._new_slot() for _ in range(n)]
            self.thread = threading.Thread(target=self._loop, daemon=True, name="discreteopt-ray-collector")
            self.thread.start()

    def put(self, job: _Job) -> None:
        self.start()
        with self.lock:
            if self.closing or self.broken:
                raise RuntimeError(self.broken or "Ray executor is closed")
            self.jobs.add(job)
            for start, stop in chunk_bounds(job.x.shape[0], len(self.slots)):
                self.pending.append(_Task(job, start, stop))
            self._dispatch()
            self.wakeup.notify_all()

    def pids(self, timeout: float = 60.0) -> list[int]:
        with self.lock:
            refs = [s.pid_ref for s in self.slots]
        return [int(p) for p in self.ray.get(refs, timeout=timeout)] if refs else []

    def shutdown(self) -> None:
        with self.lock:
            if self.closing:
                return
            self.closing = True
            self.wakeup.notify_all()
        t = self.thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
        self._fail_leftovers("Ray executor was closed before the call finished")
        with self.lock:
            slots, self.slots = self.slots, []
        for s in slots:
            self._kill(s.handle)

    # ----------------------------------------------------------------- actors (called under the lock)
    def _new_slot(self) -> _Slot:
        handle = self.actor_cls.remote()
        self.stats["started"] += 1
        return _Slot(handle, handle.pid.remote())

    def _kill(self, handle: Any) -> None:
        try:
            self.ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001 -- already dead or Ray shut down
            pass

    def _replace(self, slot: _Slot) -> None:
        self._kill(slot.handle)
        fresh = self._new_slot()
        slot.handle, slot.pid_ref, slot.answered = fresh.handle, fresh.pid_ref, False
        slot.known.clear()
        slot.task, slot.ref = None, None
        self.stats["restarts"] += 1

    def _dispatch(self) -> None:
        for slot in self.slots:
            if slot.task is not None:
                continue
            task = self._next_task()
            if task is None:
                return
            self._send(slot, task)

    def _next_task(self) -> _Task | None:
        while self.pending:
            task = self.pending.popleft()
            if not task.job.batch.finished:
                return task
            self._maybe_release(task.job)
        return None

    def _send(self, slot: _Slot, task: _Task, with_spec: bool | None = None) -> None:
        job = task.job
        if with_spec is None:  # mirror of the actor's LRU of built solvers
            with_spec = job.key not in slot.known
            slot.known[job.key] = True
            slot.known.move_to_end(job.key)
            if len(slot.known) > CACHE_SIZE:
                slot.known.popitem(last=False)
            job.inflight += 1
            task.attempts += 1
            self.stats["tasks"] += 1
        slot.task = task
        slot.ref = slot.handle.solve.remote(job.key, job.blob if with_spec else None, job.x[task.start:task.stop])

    # ----------------------------------------------------------------- collector thread
    def _loop(self) -> None:
        ray = self.ray
        try:
            while True:
                with self.lock:
                    if self.closing:
                        break
                    refs = [s.ref for s in self.slots if s.ref is not None]
                    if not refs:
                        self.wakeup.wait(self._next_timeout())
                        self._expire()
                        self._dispatch()
                        continue
                ready, rest = ray.wait(refs, num_returns=1, timeout=self.poll)
                if ready and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready += more
                outcomes = [(ref, *self._fetch(ref)) for ref in ready]
                with self.lock:
                    if self.closing:
                        break
                    for ref, ok, value in outcomes:
                        self._handle(ref, ok, value)
                    self._expire()
                    self._dispatch()
        except BaseException as exc:  # noqa: BLE001 -- never leave callers hanging on a dead collector
            with self.lock:
                self.broken = self.broken or f"Ray collector failed: {type(exc).__name__}: {exc}"
        finally:
            self._fail_leftovers(self.broken or "Ray executor was closed before the call finished")

    def _fetch(self, ref: Any) -> tuple[bool, Any]:
        try:
            return True, self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 -- classified in _handle
            return False, exc

    def _handle(self, ref: Any, ok: bool, value: Any) -> None:
        slot = next((s for s in self.slots if s.ref is not None and (s.ref is ref or s.ref == ref)), None)
        if slot is None or slot.task is None:  # stale: the slot was replaced (timeout) meanwhile
            return
        task, job = slot.task, slot.task.job
        ex = self.ray.exceptions
        if ok and isinstance(value, str) and value == _NEED_SPEC:
            self._send(slot, task, with_spec=True)
            return
        if not ok and isinstance(value, ex.RayActorError):
            self._crashed(slot, value)
            return
        slot.task, slot.ref, slot.answered = None, None, True
        self.startup_failures = 0
        job.inflight -= 1
        if ok:
            y = value if value.flags.writeable else value.copy()  # [b, *Y]
            job.batch.add(task.start, y)
        else:
            cause = value.cause if isinstance(value, ex.RayTaskError) and value.cause is not None else value
            job.batch.fail(relocate(cause, task.start))
        self._maybe_release(job)

    def _crashed(self, slot: _Slot, err: BaseException) -> None:
        task, job = slot.task, slot.task.job  # type: ignore[union-attr]
        assert task is not None
        answered = slot.answered or self._pid_known(slot)
        pid = self._pid_or_none(slot)
        self.stats["died"] += 1
        self._replace(slot)
        job.inflight -= 1
        if job.batch.finished:
            self._maybe_release(job)
            return
        if not answered:  # died before running anything: not the task's fault
            self.startup_failures += 1
            if self.startup_failures >= _MAX_STARTUP_FAILURES:
                self.broken = (f"Ray actors die on start-up ({self.startup_failures} in a row); the last error: "
                               f"{err}. On a cluster, install discreteopt (and the solver's module) on every node.")
                raise RuntimeError(self.broken)
            task.attempts -= 1
            self.pending.appendleft(task)
            return
        if task.attempts <= self.retries:
            self.stats["retries"] += 1
            for i in reversed(range(task.start, task.stop)):
                self.pending.appendleft(_Task(job, i, i + 1, attempts=task.attempts))
            return
        job.batch.fail(WorkerCrashed(job.batch.label, task.start, task.stop, pid, None, task.attempts))
        self._maybe_release(job)

    def _pid_known(self, slot: _Slot) -> bool:
        ready, _ = self.ray.wait([slot.pid_ref], timeout=0)
        return bool(ready) and self._fetch(slot.pid_ref)[0]

    def _pid_or_none(self, slot: _Slot) -> int | None:
        ok, value = self._fetch(slot.pid_ref) if self._pid_known(slot) else (False, None)
        return int(value) if ok else None

    def _next_timeout(self) -> float | None:
        deadlines = [j.deadline for j in self.jobs if j.deadline is not None and not j.batch.finished]
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs):
            if job.deadline is None or job.deadline > now or job.batch.finished:
                continue
            running = [s for s in self.slots if s.task is not None and s.task.job is job]
            job.batch.fail(TimeoutError(
                f"{job.batch.label}: {job.batch.batch} instances were not solved within timeout={job.timeout} s; "
                f"the {len(running)} Ray actor(s) still running them were replaced"))
            self.stats["timeouts"] += 1
            for s in running:
                self._replace(s)
                job.inflight -= 1
            self._maybe_release(job)

    def _maybe_release(self, job: _Job) -> None:
        if job.batch.finished and job.inflight <= 0:
            self.jobs.discard(job)

    def _fail_leftovers(self, reason: str) -> None:
        with self.lock:
            jobs, self.jobs = list(self.jobs), set()
            self.pending.clear()
            for s in self.slots:
                s.task, s.ref = None, None
        for job in jobs:
            job.batch.fail(RuntimeError(reason))


# ===================================================================== public executor
class Ray(Executor):
    """Solve chunks on ``n`` Ray actors (see module docstring).

    Args:
        n: number of actors (default: the cluster's CPUs divided by ``num_cpus``, read when Ray starts).
        address: ``None`` (default) joins the Ray instance already initialised in this process or starts a
            local one; ``"auto"`` / ``"ray://host:port"`` joins a cluster (passed to ``ray.init``).
        timeout: default per-call deadline in seconds; ``submit``/``solve``/``map`` take ``timeout=``.
        retries: how many times a chunk whose actor died is solved again before ``WorkerCrashed``.
        num_cpus: CPUs reserved per actor.
        poll: seconds between checks for calls submitted while others are in flight.
        init_kwargs: extra keyword arguments of ``ray.init`` (e.g. ``num_cpus=``), used only if this executor
            initialises Ray.
    """

    def __init__(self, n: int | None = None, *, address: str | None = None, timeout: float | None = None,
                 retries: int = 1, num_cpus: float = 1.0, poll: float = 0.005,
                 init_kwargs: dict[str, Any] | None = None):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n (number of Ray actors) must be an integer >= 1 or None; got {n!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0; got {retries!r}")
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
            raise ValueError(f"num_cpus must be a number > 0; got {num_cpus!r}")
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0 < poll <= 1:
            raise ValueError(f"poll must be a number of seconds in (0, 1]; got {poll!r}")
        if address is not None and not isinstance(address, str):
            raise ValueError(f"address must be a string such as 'auto' or 'ray://host:10001', or None; "
                             f"got {address!r}")
        import_ray()  # fail at construction, with the install hint, when Ray is missing
        self.timeout = check_timeout(timeout)
        self._settings = {"n": n, "address": address, "timeout": self.timeout, "retries": retries,
                          "num_cpus": float(num_cpus), "poll": float(poll), "init_kwargs": dict(init_kwargs or {})}
        self._pool = _RayPool(n, float(num_cpus), retries, float(poll), address, dict(init_kwargs or {}))
        self._finalizer = weakref.finalize(self, self._pool.shutdown)

    @property
    def n_workers(self) -> int:
        """Number of actors (starts Ray when ``n`` was not given)."""
        if self._settings["n"] is not None:
            return self._settings["n"]
        self.start()
        return len(self._pool.slots)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``tasks`` sent, actors ``started`` / ``died`` / ``restarts``, chunk ``retries``, ``timeouts``."""
        return dict(self._pool.stats)

    @property
    def closed(self) -> bool:
        return self._pool.closing

    def start(self) -> Ray:
        """Initialise Ray (if needed) and create the actors now instead of on the first call."""
        self._pool.start()
        return self

    def worker_pids(self, timeout: float = 60.0) -> list[int]:
        """Process ids of the current actors (waits until they run; empty before the first call)."""
        return self._pool.pids(timeout)

    def __repr__(self) -> str:
        n = self._settings["n"]
        return f"Ray({'auto' if n is None else n}, address={self._settings['address']!r})"

    def __reduce__(self):
        s = self._settings
        return (_rebuild, (s,))

    def __deepcopy__(self, memo) -> Ray:
        return self

    # ----------------------------------------------------------------- API
    def submit(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> Future:
        """Start solving ``theta [B, *E]`` on the actors; returns a future of ``y [B, *Y]`` (``theta``'s device
        and dtype). Bad input raises ``ValueError`` here; device-native solvers run inline."""
        timeout = self.timeout if timeout is DEFAULT else check_timeout(timeout)
        if solver.device_native:
            return completed(lambda: solver.solve(theta))
        x = prepare_theta(solver, theta)  # [B, *E] float64, validated in the caller
        if x.shape[0] == 0:
            return completed(lambda: solver.solve(theta))
        device, dtype = theta.device, theta.dtype
        batch = BatchJob(x.shape[0], concat_finisher(lambda y: to_result(y, device, dtype)), type(solver).__name__)
        self._put(solver_key(solver), x, batch, timeout)
        return batch.future

    def solve(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> torch.Tensor:
        return self.submit(solver, theta, timeout=timeout).result()

    def map(self, spec: SolverSpec, chunks: list[np.ndarray], *, timeout: float | None = DEFAULT) -> list[np.ndarray]:
        """Solve each ``float64`` chunk ``[b_i, *E]`` on the actors -> ``[b_i, *Y]`` (blocking)."""
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
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pool.put(_Job(batch, key[0], key[1], x, deadline, timeout))

    def close(self) -> None:
        """Kill the actors; calls not finished fail. Ray itself keeps running. Idempotent."""
        self._finalizer()


def _rebuild(settings: dict[str, Any]) -> Ray:
    s = dict(settings)
    return Ray(s.pop("n"), **s)
