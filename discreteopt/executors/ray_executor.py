"""``Ray(...)``: solve chunks of the batch on Ray actors, on this machine or across a cluster.

* **Lazy.** ``ray`` is imported on the first call (``ImportError`` naming the ``[ray]`` extra when missing);
  ``ray.init`` runs only if Ray is not initialised yet: a local instance by default, ``address="auto"``,
  ``"host:6379"`` or ``"ray://host:10001"`` to join a cluster. The executor never shuts Ray down (Ray does at
  interpreter exit).
* **No hang on a bad address.** ``ray.init`` on an address nobody answers blocks for minutes, deaf to SIGTERM.
  Before joining a cluster (an ``address``, ``RAY_ADDRESS``, or the cluster ``"auto"`` finds) the executor
  opens a TCP connection to it with ``connect_timeout`` seconds (default 10) and raises ``ConnectionError``
  naming the address when that fails. The probe shows that the port accepts connections, not that a Ray head
  listens there; past it, ``ray.init``'s own timeouts apply.
* **Actors, solver built once.** ``n`` actors (default: the cluster's CPUs / ``num_cpus``) each build a solver
  from ``solver.spec()`` the first time they see it and keep it (LRU of 16 specs, as
  :class:`~discreteopt.executors.processes.Processes`); the spec travels once per actor. On a cluster the
  solver's class must be importable on every node (install ``discreteopt`` there).
* **Chunks.** A call of ``B`` instances becomes ``min(B, n)`` tasks of ``floor(B/n)`` or ``ceil(B/n)`` rows (balanced); each actor runs one task at
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
import math
import os
import socket
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..solvers.base import Solver
from ._job import BatchJob
from ._scheduler import Job, PoolExecutor, Scheduler, Task, Worker, check_retries
from ._worker import cached_solver, isolate_worker, keeps_solver
from .base import check_timeout

__all__ = ["Ray"]

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
        solver = cached_solver(self._cache, key, blob)
        if solver is None:  # evicted here but not in the driver's mirror: ask for the spec again
            return _NEED_SPEC
        if not x.flags.writeable:  # zero-copy view of Ray's object store
            x = x.copy()
        try:
            return solver.solve_numpy(x)
        except Exception as exc:
            if not keeps_solver(exc):
                self._cache.pop(key, None)  # rebuilt on the next call; the driver's mirror drops it too
            raise


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray address (``"host:port"``, ``"ray://host:port"``, ``"[::1]:6379"``); ``None`` when
    it names no host (``"auto"``, ``"local"``) or cannot be parsed (``ray.init`` then reports it)."""
    addr = address.strip()
    client = addr.startswith("ray://")
    if client:
        addr = addr[len("ray://"):]
    addr = addr.split("/", 1)[0]
    if not addr or addr in ("auto", "local"):
        return None
    host, sep, port = addr.rpartition(":")
    if not sep or "]" in port:  # no port given
        host, port = addr, "10001" if client else "6379"
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        return None


def cluster_address(address: str | None) -> str | None:
    """The address ``ray.init(address)`` would connect to, when one can be known without connecting: the given
    one, ``RAY_ADDRESS``, or (for ``"auto"``) the cluster last started on this node; ``None`` for a new local
    instance or when unknown."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env not in ("auto", "local"):
        return env
    if address not in (None, "auto"):
        return address
    if address == "auto":
        try:  # where Ray itself looks: the address file of the last `ray start` (private API: best effort)
            from ray._private.services import find_bootstrap_address

            return find_bootstrap_address(None)
        except Exception:  # noqa: BLE001 -- unknown: ray.init decides
            return None
    return None


def probe_address(address: str, timeout: float) -> None:
    """Open (and close) a TCP connection to a Ray ``address`` within ``timeout`` seconds, or raise
    ``ConnectionError`` naming it: an unreachable address must fail fast, not hang in ``ray.init``."""
    target = _host_port(address)
    if target is None:
        return
    host, port = target
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        raise ConnectionError(
            f"Ray: cannot reach the Ray cluster at address {address!r} ({host}:{port}; {reason}) within "
            f"connect_timeout={timeout:g} s. Check the address, that the head node is running and that the port "
            "is reachable from here; ray.init was not called.") from exc


# ===================================================================== collector state
@dataclass(eq=False)
class _Slot(Worker):
    handle: Any
    pid_ref: Any
    ref: Any = None
    answered: bool = False  # the actor has run something (so a later death is the task's fault)


class _RayPool(Scheduler):
    """Actors and the collector thread (no reference back to the public executor); queue, retries and
    deadlines are the :class:`Scheduler`'s."""

    name = "Ray"
    role = "collector"
    thread_name = "discreteopt-ray-collector"
    timeout_action = "Ray actor(s) still running them were replaced"

    def __init__(self, n: int | None, num_cpus: float, retries: int, poll: float, address: str | None,
                 init_kwargs: dict[str, Any], connect_timeout: float = 10.0):
        super().__init__(None, retries)  # `n` is resolved when Ray starts
        self.connect_timeout = connect_timeout
        self.requested = n
        self.num_cpus = num_cpus
        self.poll = poll
        self.address = address
        self.init_kwargs = init_kwargs
        self.ray: Any = None
        self.actor_cls: Any = None

    # ----------------------------------------------------------------- caller side
    def _start_workers(self) -> None:
        ray = self.ray = import_ray()
        if not ray.is_initialized():
            target = cluster_address(self.address)
            if target is not None:
                probe_address(target, self.connect_timeout)
            ray.init(address=self.address, **{"include_dashboard": False, **self.init_kwargs})
        n = self.requested
        if n is None:
            n = max(1, int(ray.cluster_resources().get("CPU", 1) // self.num_cpus))
        self.actor_cls = ray.remote(SolverActor).options(num_cpus=self.num_cpus, max_restarts=0)
        self.workers = [self._new_slot() for _ in range(n)]
        self.n = n

    def _enqueue(self, job: Job) -> None:
        self._admit(job)
        self._dispatch()
        self.changed.notify_all()

    def pids(self, timeout: float = 60.0) -> list[int]:
        with self.lock:
            refs = [s.pid_ref for s in self.workers]
        return [int(p) for p in self.ray.get(refs, timeout=timeout)] if refs else []

    def _stop(self, slots: list[_Slot]) -> None:
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
        self._drop_task(slot)
        self.stats["restarts"] += 1

    def _drop_task(self, slot: _Slot) -> None:
        slot.task, slot.ref = None, None

    def _post(self, slot: _Slot, task: Task, with_spec: bool) -> None:
        job = task.job
        slot.ref = slot.handle.solve.remote(job.key, job.blob if with_spec else None, job.x[task.start:task.stop])

    # ----------------------------------------------------------------- collector thread
    def _serve(self) -> None:
        ray = self.ray
        while True:
            with self.lock:
                if self.closing:
                    return
                refs = [s.ref for s in self.workers if s.ref is not None]
                if not refs:
                    self.changed.wait(self._next_timeout())
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
                    return
                for ref, ok, value in outcomes:
                    self._handle(ref, ok, value)
                self._expire()
                self._dispatch()

    def _fetch(self, ref: Any) -> tuple[bool, Any]:
        try:
            return True, self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 -- classified in _handle
            return False, exc

    def _handle(self, ref: Any, ok: bool, value: Any) -> None:
        slot = next((s for s in self.workers if s.ref is not None and (s.ref is ref or s.ref == ref)), None)
        if slot is None or slot.task is None:  # stale: the slot was replaced (timeout) meanwhile
            return
        task = slot.task
        ex = self.ray.exceptions
        if ok and isinstance(value, str) and value == _NEED_SPEC:
            self._post(slot, task, with_spec=True)
            return
        if not ok and isinstance(value, ex.RayActorError):
            self._crashed(slot, value)
            return
        slot.ref, slot.answered = None, True
        self.startup_failures = 0
        if ok:
            self._complete(slot, task, y=value if value.flags.writeable else value.copy())  # [b, *Y]
        else:
            cause = value.cause if isinstance(value, ex.RayTaskError) and value.cause is not None else value
            self._complete(slot, task, error=cause)

    def _crashed(self, slot: _Slot, err: BaseException) -> None:
        task = slot.task
        assert task is not None
        answered = slot.answered or self._pid_known(slot)
        pid = self._pid_or_none(slot)
        self.stats["died"] += 1
        self._replace(slot)
        if not answered and not task.job.batch.finished:  # died before running anything
            self._startup_failure(lambda count: (
                f"Ray actors die on start-up ({count} in a row); the last error: {err}. On a cluster, install "
                "discreteopt (and the solver's module) on every node."))
        self._lost(task, answered, pid, None)

    def _pid_known(self, slot: _Slot) -> bool:
        ready, _ = self.ray.wait([slot.pid_ref], timeout=0)
        return bool(ready) and self._fetch(slot.pid_ref)[0]

    def _pid_or_none(self, slot: _Slot) -> int | None:
        ok, value = self._fetch(slot.pid_ref) if self._pid_known(slot) else (False, None)
        return int(value) if ok else None


# ===================================================================== public executor
class Ray(PoolExecutor):
    """Solve chunks of the batch on ``n`` Ray actors, on this machine or a cluster (see the module docstring).

    ``ex.solve(solver, theta [B, *E]) -> y [B, *Y]`` equals ``solver.solve(theta)`` (values, device, dtype): the
    batch becomes ``min(B, n)`` balanced chunks (sizes differ by at most one), each actor builds the solver from its recipe
    (``solver.spec()``) once and keeps it. Faults: a dead actor is replaced and its chunk retried one instance per
    task (:class:`~discreteopt.executors.errors.WorkerCrashed` if it dies again); ``timeout`` fails a call with
    ``TimeoutError``; solver errors reach the caller unchanged. Ray is imported and initialised on first use,
    after a TCP probe of the cluster address (``ConnectionError`` naming it within ``connect_timeout``).

    Args:
        n: number of actors (default: the cluster's CPUs divided by ``num_cpus``, read when Ray starts).
        address: ``None`` (default) joins the Ray instance already initialised in this process (or
            ``RAY_ADDRESS``) or starts a local one; ``"auto"``, ``"host:6379"`` or ``"ray://host:10001"`` joins a
            cluster (passed to ``ray.init``).
        timeout: default per-call deadline in seconds; ``submit``/``solve``/``map`` take ``timeout=``.
        retries: how many times a chunk whose actor died is solved again before ``WorkerCrashed``.
        num_cpus: CPUs reserved per actor.
        poll: seconds between checks for calls submitted while others are in flight.
        init_kwargs: extra keyword arguments of ``ray.init`` (e.g. ``num_cpus=``), used only if this executor
            initialises Ray (not ``address``: pass it above).
        connect_timeout: seconds to wait for a TCP connection to the cluster address before ``ray.init``.

    Example::

        ex = Ray(4)                                   # a local Ray instance with 4 solver actors
        y = ex.solve(Knapsack(weights, capacity), theta)
        Ray(address="10.0.0.5:6379", connect_timeout=5).start()   # ConnectionError after 5 s if unreachable
    """

    def __init__(self, n: int | None = None, *, address: str | None = None, timeout: float | None = None,
                 retries: int = 1, num_cpus: float = 1.0, poll: float = 0.005,
                 init_kwargs: dict[str, Any] | None = None, connect_timeout: float = 10.0):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n (number of Ray actors) must be an integer >= 1 or None; got {n!r}")
        check_retries(retries)
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
            raise ValueError(f"num_cpus must be a number > 0; got {num_cpus!r}")
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0 < poll <= 1:
            raise ValueError(f"poll must be a number of seconds in (0, 1]; got {poll!r}")
        if address is not None and not isinstance(address, str):
            raise ValueError(f"address must be a string such as 'auto' or 'ray://host:10001', or None; "
                             f"got {address!r}")
        if init_kwargs is not None and not isinstance(init_kwargs, dict):
            raise ValueError(f"init_kwargs must be a dict of ray.init arguments or None; got {init_kwargs!r}")
        if init_kwargs and "address" in init_kwargs:
            raise ValueError("init_kwargs must not hold 'address': pass Ray(address=...) (it is probed first)")
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) \
                or not (math.isfinite(connect_timeout) and connect_timeout > 0):
            raise ValueError(f"connect_timeout must be a finite number of seconds > 0; got {connect_timeout!r}")
        import_ray()  # fail at construction, with the install hint, when Ray is missing
        self.timeout = check_timeout(timeout)
        self._settings = {"n": n, "address": address, "timeout": self.timeout, "retries": retries,
                          "num_cpus": float(num_cpus), "poll": float(poll), "init_kwargs": dict(init_kwargs or {}),
                          "connect_timeout": float(connect_timeout)}
        self._pool = _RayPool(n, float(num_cpus), retries, float(poll), address, dict(init_kwargs or {}),
                              float(connect_timeout))
        self._finalizer = weakref.finalize(self, self._pool.shutdown)

    @property
    def n_workers(self) -> int:
        """Number of actors (starts Ray when ``n`` was not given)."""
        if self._settings["n"] is not None:
            return self._settings["n"]
        self.start()
        return len(self._pool.workers)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``tasks`` sent, actors ``started`` / ``died`` / ``restarts``, chunk ``retries``, ``timeouts``."""
        return dict(self._pool.stats)

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

    # ----------------------------------------------------------------- API (submit/solve/map: PoolExecutor)
    def _put(self, key: tuple[str, bytes], x: np.ndarray, batch: BatchJob, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pool.put(Job(batch, key[0], key[1], x, deadline, timeout))

    def close(self) -> None:
        """Kill the actors; calls not finished fail. Ray itself keeps running. Idempotent."""
        self._finalizer()


def _rebuild(settings: dict[str, Any]) -> Ray:
    s = dict(settings)
    return Ray(s.pop("n"), **s)
