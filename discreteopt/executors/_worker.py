"""The loop run by each :class:`~discreteopt.executors.processes.Processes` worker process.

Protocol over one duplex pipe (parent <-> worker), every message a tuple:

* worker -> parent, once at start: ``("ready", pid)``;
* parent -> worker: ``("task", task_id, key, spec_blob | None, payload, shm_out_bytes)``; ``spec_blob`` is the
  pickled :class:`SolverSpec`, sent only the first time this worker sees ``key`` (the parent mirrors the worker's
  LRU cache of built solvers); ``payload`` is the chunk as an array, or ``("shm", name, dtype, shape, lo, hi)``:
  rows ``[lo, hi)`` of an array in shared memory;
* worker -> parent: ``("need", task_id)`` when it does not hold the spec (the parent resends with it);
* worker -> parent: ``("ok", task_id, y)`` with ``y`` an array or ``("shm", name, dtype, shape)`` (a segment the
  worker created and the parent unlinks), or ``("err", task_id, pickled exception, traceback text)``; after an
  error other than ``ValueError``/``InstanceError`` the worker drops that solver from its cache
  (:func:`keeps_solver`) and so does the parent's mirror;
* parent -> worker: ``("stop",)``.

A worker ignores SIGINT (Ctrl-C is the parent's to handle; it then closes the pool) and exits by itself when
its parent process disappears, so no orphan survives a killed parent. It never touches a GPU: it hides every
CUDA device from itself before building any solver (:func:`isolate_worker`), so a solver or spec that would
initialise CUDA fails with a clear error instead of taking GPU memory in every worker.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

import numpy as np

#: built solvers kept per worker process, Ray actor or thread (the pools mirror this LRU to know which specs a
#: worker holds)
CACHE_SIZE = 16


def lru_get(cache: OrderedDict, key: str, make: Callable[[], Any] | None, size: int = CACHE_SIZE) -> Any:
    """``cache[key]``, marked most recently used; when absent, ``make()`` stored under ``key`` (the least recently
    used entry evicted beyond ``size``), or ``None`` when ``make`` is ``None``.

    The one LRU rule of built solvers: worker processes, Ray actors and threads keep their solvers by it, and the
    pools mirror each worker's cache by it too, so mirror and cache agree."""
    value = cache.get(key)
    if value is None:
        if make is None:
            return None
        value = make()
        cache[key] = value
        if len(cache) > size:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return value


def keeps_solver(exc: BaseException) -> bool:
    """Whether a cached solver stays in its worker's cache after a call of it raised ``exc``.

    Input errors (``ValueError``) and clean per-instance failures (:class:`~discreteopt.solvers.base.InstanceError`,
    after which the built-in solvers reset their back-end themselves) leave it usable. Anything else came from
    inside a back-end and may have left it in a bad state: the solver is dropped and rebuilt from its recipe on the
    next call, so one bad instance never poisons later calls of the same (or an equal) solver."""
    from ..solvers.base import InstanceError

    return isinstance(exc, (ValueError, InstanceError))


def cached_solver(cache: OrderedDict, key: str, blob: bytes | None) -> Any:
    """The solver cached under ``key`` (the hash of the pickled spec ``blob``), built from ``blob`` and cached when
    missing; ``None`` when it is missing and no ``blob`` came (evicted here but not in the parent's mirror)."""

    def build() -> Any:
        return pickle.loads(blob).build()

    return lru_get(cache, key, None if blob is None else build)


def isolate_worker() -> None:
    """Settings of every worker process (pool or Ray actor), applied before any solver is built.

    * ``CUDA_VISIBLE_DEVICES=""``: torch initialises CUDA lazily and reads this variable then, so no CUDA
      context (hundreds of MiB of GPU memory per process) can be created in a worker;
    * one intra-op torch thread: a pool already runs one worker per core, more threads only oversubscribe.
    """
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    torch.set_num_threads(1)


def _watch_parent(parent_pid: int, poll: float = 0.25) -> None:
    """Exit this process once the parent is gone (reparented, or its pid no longer exists)."""
    first_ppid = os.getppid()
    while True:
        time.sleep(poll)
        if os.getppid() != first_ppid:
            os._exit(3)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(3)
        except PermissionError:  # pid reused by another user's process: ours is gone
            os._exit(3)


def _open_payload(payload: Any) -> tuple[np.ndarray, shared_memory.SharedMemory | None]:
    if isinstance(payload, tuple) and payload and payload[0] == "shm":
        _, name, dtype, shape, lo, hi = payload
        shm = shared_memory.SharedMemory(name=name)
        full = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf)  # [B, *E] view, no copy
        return full[lo:hi], shm
    return payload, None


def _pack_result(y: np.ndarray, shm_out_bytes: int | None) -> Any:
    y = np.ascontiguousarray(y)
    if shm_out_bytes is None or y.nbytes < max(shm_out_bytes, 1):
        return y
    shm = shared_memory.SharedMemory(create=True, size=y.nbytes)
    np.ndarray(y.shape, dtype=y.dtype, buffer=shm.buf)[...] = y
    name = shm.name
    shm.close()  # the parent attaches, copies and unlinks
    return ("shm", name, y.dtype.str, y.shape)


def _exception_blob(exc: BaseException) -> bytes:
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
        return blob
    except Exception:  # noqa: BLE001 -- unpicklable exception: keep its type name and message
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def worker_main(conn, parent_pid: int) -> None:
    """Serve tasks from ``conn`` until told to stop or the parent disappears."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    isolate_worker()
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    cache: OrderedDict[str, Any] = OrderedDict()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        _, task_id, key, blob, payload, shm_out_bytes = msg
        shm = None
        try:
            solver = cached_solver(cache, key, blob)
            if solver is None:  # evicted here but not in the parent's mirror: ask for it
                conn.send(("need", task_id))
                continue
            theta, shm = _open_payload(payload)
            y = solver.solve_numpy(theta)
            del theta
            reply = ("ok", task_id, _pack_result(y, shm_out_bytes))
        except Exception as exc:  # noqa: BLE001 -- sent to the parent, re-raised there
            if not keeps_solver(exc):
                cache.pop(key, None)  # the parent's mirror drops it too (Scheduler._complete)
            reply = ("err", task_id, _exception_blob(exc), traceback.format_exc())
        finally:
            if shm is not None:
                try:
                    shm.close()
                except BufferError:  # the solver kept a view of its input: leave the mapping
                    pass
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
