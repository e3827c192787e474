"""``Auto(pool)``: run a call inline or on a worker pool, whichever is faster for its batch size.

A pool pays a fixed cost per call (sending tasks, waking workers, collecting results: ~0.1-0.5 ms) and a
per-instance transfer cost, and divides the solve time by its ``n`` workers. With inline time
``T_in(B) ~ a_in + b_in B`` and pool time ``T_pool(B) ~ a_pool + b_pool B`` (``b_pool ~ b_in / n + transfer``),
the pool wins above the break-even batch size::

    B* = min { B : T_pool(B') <= (1 - margin) T_in(B')  for all B' >= B }

``Auto`` measures ``B*`` once per solver spec (:meth:`Auto.calibrate`) or takes it from the user
(``break_even=``), then sends calls with ``B >= B*`` to the pool and solves smaller ones in the caller's thread
with no overhead. ``margin`` (default 10 %) keeps the pool for batch sizes where it is clearly faster, so that
noise in the calibration cannot make ``Auto`` slower than inline.

When calibration runs (unless ``break_even`` is given): calls of a spec not calibrated yet run inline and are
timed, except the first one (it may include one-off costs: JIT compilation, building a model); the first
later call that takes at least ``min_inline_time`` (default 0.5 ms; below that no pool round trip can pay off)
triggers :meth:`calibrate` on its own rows, right after it. Calibration starts the pool (if needed)
and times inline and pool solves of the call's rows tiled to ``1, 2, 4, ...`` instances (best of a few repeats
each) until the pool wins twice in a row or ``budget`` seconds are spent; ``B*`` is interpolated between the
last losing and the first winning size, or extrapolated from the last two sizes. A solver that never needs a
pool (cheap calls only) never starts one.

Device-native solvers (``TopK``, ``Argmax``, torch back-ends) always run inline on the input's device.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec
from ._job import completed
from .base import DEFAULT, Executor, Inline, solver_key, spec_key

__all__ = ["Auto", "Calibration"]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Result of :meth:`Auto.calibrate`: measured seconds per call at each batch size and the break-even.

    ``break_even`` is ``math.inf`` when the pool never won (every call then runs inline).
    """

    solver: str
    workers: int
    sizes: tuple[int, ...]
    inline_s: tuple[float, ...]
    pool_s: tuple[float, ...]
    break_even: float
    seconds: float  # wall time of the calibration (pool start-up excluded)

    def table(self) -> str:
        """The measurements as a plain-text table."""
        lines = [f"{'batch':>7} {'inline ms':>10} {'pool ms':>10} {'pool/inline':>12}"]
        for m, ti, tp in zip(self.sizes, self.inline_s, self.pool_s, strict=True):
            lines.append(f"{m:>7d} {ti * 1e3:>10.3f} {tp * 1e3:>10.3f} {tp / ti:>12.2f}")
        lines.append(f"break-even batch size: {self.break_even:g} ({self.solver}, {self.workers} workers)")
        return "\n".join(lines)


class Auto(Executor):
    """Inline below a break-even batch size, ``pool`` above it (see the module docstring for the model).

    ``ex.solve(solver, theta [B, *E]) -> y [B, *Y]`` equals ``solver.solve(theta)``; only where it runs depends
    on ``B``: with pool time ``T_pool(B) ~ a_pool + b_pool B`` against inline ``T_in(B) ~ a_in + b_in B``, calls
    with ``B >= B*`` (the smallest size from which the pool is at least ``margin`` faster, measured per solver
    recipe by :meth:`calibrate` or fixed by ``break_even``) go to the pool. Timing noise is absorbed by the
    best-of-``repeats`` minimum and ``margin``; a calibration that fails (e.g. a solver workers cannot rebuild)
    warns and keeps that solver inline. Device-native solvers always run inline on the input's device.

    Args:
        pool: the executor used for large calls (default ``Processes()`` with ``os.cpu_count()`` workers,
            created on first use). ``Auto`` owns it: :meth:`close` closes it.
        break_even: fixed break-even batch size for every solver (no calibration); ``None`` measures it per
            solver spec. :meth:`set_break_even` sets it for one solver.
        margin: the pool is used only where it is measured at least this fraction faster than inline.
        min_inline_time: seconds; calls faster than this inline never trigger calibration.
        budget: seconds of measurements per calibration (pool start-up not counted).
        repeats: timed repeats per batch size (the minimum is kept: robust to other load on the machine).

    Example::

        ex = Auto(Processes(4))               # calibrates each solver on its first calls that take >= 0.5 ms
        y = ex.solve(solver, theta)           # small batches inline, large ones on the pool
        print(ex.calibration(solver).table()) # the measured break-even
    """

    def __init__(self, pool: Executor | None = None, *, break_even: int | None = None, margin: float = 0.1,
                 min_inline_time: float = 5e-4, budget: float = 2.0, repeats: int = 3):
        if pool is not None and (not isinstance(pool, Executor) or isinstance(pool, (Inline, Auto))):
            raise ValueError(f"pool must be a pool executor (Processes, Threads, Ray); got {pool!r}")
        if break_even is not None and (isinstance(break_even, bool) or not isinstance(break_even, int)
                                       or break_even < 1):
            raise ValueError(f"break_even must be an integer batch size >= 1 or None; got {break_even!r}")
        if not (isinstance(margin, (int, float)) and 0 <= margin < 1):
            raise ValueError(f"margin must be in [0, 1); got {margin!r}")
        for name, v in (("min_inline_time", min_inline_time), ("budget", budget)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a number of seconds > 0; got {v!r}")
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1; got {repeats!r}")
        self._pool = pool
        self.fixed_break_even = break_even
        self.margin = float(margin)
        self.min_inline_time = float(min_inline_time)
        self.budget = float(budget)
        self.repeats = repeats
        self._break_even: dict[str, float] = {}
        self._calibrations: dict[str, Calibration] = {}
        self._seen: set[str] = set()  # specs whose first (warm-up) call ran
        self._keys: dict[int, tuple[weakref.ref, str]] = {}
        #: ``id(solver) -> (weakref, break-even)`` once the break-even of its spec is known: the hot path
        self._known: dict[int, tuple[weakref.ref, float]] = {}
        self._lock = threading.Lock()
        self._calibrating = threading.Lock()
        self.stats = {"inline": 0, "pool": 0, "calibrations": 0}

    # ----------------------------------------------------------------- configuration
    @property
    def pool(self) -> Executor:
        """The pool executor (created, not started, on first access)."""
        with self._lock:
            if self._pool is None:
                from .processes import Processes

                self._pool = Processes()
            return self._pool

    @property
    def n_workers(self) -> int:
        return self.pool.n_workers

    def break_even(self, solver: Solver) -> float | None:
        """Batch size from which ``solver`` goes to the pool (``None``: not known yet; ``inf``: never)."""
        if self.fixed_break_even is not None:
            return float(self.fixed_break_even)
        return self._break_even.get(self._key(solver))

    def set_break_even(self, solver: Solver, batch_size: float) -> None:
        """Fix the break-even batch size of ``solver``'s spec (``math.inf``: always inline)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, float)) or not batch_size >= 1:
            raise ValueError(f"batch_size must be a number >= 1 (or math.inf); got {batch_size!r}")
        self._break_even[self._key(solver)] = float(batch_size)
        self._known.clear()

    def calibration(self, solver: Solver) -> Calibration | None:
        """The last :class:`Calibration` of ``solver``'s spec, if one ran."""
        return self._calibrations.get(self._key(solver))

    def __repr__(self) -> str:
        return f"Auto({self._pool!r}, break_even={self.fixed_break_even})"

    def __reduce__(self):
        return (_rebuild, (self._pool, self.fixed_break_even, self.margin, self.min_inline_time, self.budget,
                           self.repeats))

    def __deepcopy__(self, memo) -> Auto:
        return self

    # ----------------------------------------------------------------- API
    def _stays_inline(self, solver: Solver, theta: torch.Tensor) -> bool:
        """Hot path: ``True`` when the break-even of ``solver``'s spec is known and ``theta``'s batch is below it
        (one dict lookup; every other case goes through :meth:`_route`)."""
        be = self.fixed_break_even
        if be is None:
            entry = self._known.get(id(solver))
            if entry is None or entry[0]() is not solver:
                return False
            be = entry[1]
        shape = getattr(theta, "shape", None)
        if not shape or shape[0] >= be:
            return False
        self.stats["inline"] += 1
        return True

    def _route(self, solver: Solver, theta: torch.Tensor) -> tuple[Executor | None, str | None]:
        """``(pool, key)`` when this call should run on the pool, else ``(None, key)`` (``key``: the spec's hash,
        ``None`` when no timing is needed)."""
        if solver.device_native:
            return None, None
        try:
            batch = theta.shape[0]
        except (AttributeError, IndexError, TypeError):  # not a batch: solver.solve raises the ValueError
            return None, None
        if self.fixed_break_even is not None:
            be, key = float(self.fixed_break_even), None
        else:
            key = self._key(solver)
            be = self._break_even.get(key)
            entry = self._keys.get(id(solver))
            if be is not None and entry is not None:
                self._known[id(solver)] = (entry[0], be)
        if be is not None and batch >= be:
            self.stats["pool"] += 1
            return self.pool, key
        self.stats["inline"] += 1
        return None, (None if be is not None else key)

    def _key(self, solver: Solver) -> str:
        """The spec hash of ``solver`` through a per-executor ``id()`` cache (the hot path of every call)."""
        ident = id(solver)
        entry = self._keys.get(ident)
        if entry is not None and entry[0]() is solver:
            return entry[1]
        key = solver_key(solver)[0]
        keys, known = self._keys, self._known
        try:
            ref = weakref.ref(solver, lambda _r: (keys.pop(ident, None), known.pop(ident, None)))
        except TypeError:  # not weak-referenceable: no cache
            return key
        keys[ident] = (ref, key)
        return key

    def _inline(self, solver: Solver, theta: torch.Tensor, key: str | None) -> torch.Tensor:
        """``solver.solve(theta)``; timed while the spec ``key`` is not calibrated (see module docstring)."""
        if key is None or key not in self._seen:
            if key is not None:
                self._seen.add(key)  # first call of the spec: warm-up, not timed
            return solver.solve(theta)
        t0 = time.perf_counter()
        y = solver.solve(theta)
        if time.perf_counter() - t0 >= self.min_inline_time:
            with self._calibrating:
                if key not in self._break_even:  # not done meanwhile by another thread
                    self._calibrate_or_stay_inline(solver, theta, key)
        return y

    def _calibrate_or_stay_inline(self, solver: Solver, theta: torch.Tensor, key: str) -> None:
        """Automatic calibration never fails the user's call: if the pool cannot solve this spec (e.g. the
        solver's class is not importable by worker processes), warn and keep the spec inline."""
        try:
            self.calibrate(solver, theta)
        except Exception as exc:  # noqa: BLE001 -- reported as a warning, the call itself succeeded
            self._break_even[key] = math.inf
            self._known.clear()
            warnings.warn(f"Auto: calibrating {type(solver).__name__} on {self._pool!r} failed "
                          f"({type(exc).__name__}: {exc}); its calls run inline", RuntimeWarning, stacklevel=4)

    def submit(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> Future:
        """Route the call (see module docstring); ``timeout`` applies to pool calls only."""
        if self._stays_inline(solver, theta):
            return completed(lambda: solver.solve(theta))
        pool, key = self._route(solver, theta)
        if pool is None:
            return completed(lambda: self._inline(solver, theta, key))
        return pool.submit(solver, theta, **({} if timeout is DEFAULT else {"timeout": timeout}))

    def solve(self, solver: Solver, theta: torch.Tensor, *, timeout: float | None = DEFAULT) -> torch.Tensor:
        if self._stays_inline(solver, theta):
            return solver.solve(theta)
        pool, key = self._route(solver, theta)
        if pool is None:
            return self._inline(solver, theta, key)
        return pool.solve(solver, theta, **({} if timeout is DEFAULT else {"timeout": timeout}))

    def map(self, spec: SolverSpec, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Pool when the spec's break-even is known and reached by the total rows, else inline."""
        rows = sum(len(c) for c in chunks)
        be = float(self.fixed_break_even) if self.fixed_break_even is not None \
            else self._break_even.get(spec_key(spec)[0])
        if be is not None and rows >= be:
            return self.pool.map(spec, chunks)
        return Inline().map(spec, chunks)

    def close(self) -> None:
        """Close the pool (if one was created). Idempotent."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.close()

    # ----------------------------------------------------------------- calibration
    def calibrate(self, solver: Solver, theta: torch.Tensor) -> Calibration:
        """Measure inline and pool times for ``solver`` on the rows of ``theta [B, *E]`` (valid input of the
        solver, e.g. the call that triggered it) and store the break-even batch size of its spec."""
        if not isinstance(theta, torch.Tensor) or theta.ndim == 0 or theta.shape[0] == 0:
            raise ValueError(f"theta must be a non-empty batch [B, *E] of the solver's input; got "
                             f"{type(theta).__name__} {tuple(getattr(theta, 'shape', ()))}")
        solver.validate(theta.detach())
        key = self._key(solver)
        pool = self.pool
        n = pool.n_workers
        theta = theta.detach()

        def tiled(m: int) -> torch.Tensor:
            return theta[torch.arange(m, device=theta.device) % theta.shape[0]]  # [m, *E]

        # warm-up (untimed): starts the workers and builds the solver in each of them
        pool.solve(solver, tiled(n))
        pool.solve(solver, tiled(n))
        t_start = time.perf_counter()
        sizes: list[int] = []
        inline_s: list[float] = []
        pool_s: list[float] = []
        wins, m = 0, 1
        while True:
            x = tiled(m)
            sizes.append(m)
            inline_s.append(_best_of(self.repeats, lambda x=x: solver.solve(x)))
            pool_s.append(_best_of(self.repeats, lambda x=x: pool.solve(solver, x)))
            wins = wins + 1 if pool_s[-1] <= (1 - self.margin) * inline_s[-1] else 0
            if wins >= 2 or time.perf_counter() - t_start > self.budget or m >= 1 << 20:
                break
            m *= 2
        result = Calibration(type(solver).__name__, n, tuple(sizes), tuple(inline_s), tuple(pool_s),
                             _break_even(sizes, inline_s, pool_s, self.margin), time.perf_counter() - t_start)
        self._break_even[key] = result.break_even
        self._known.clear()
        self._calibrations[key] = result
        self.stats["calibrations"] += 1
        return result


def _best_of(repeats: int, fn: Callable[[], Any]) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _break_even(sizes: list[int], inline_s: list[float], pool_s: list[float], margin: float) -> float:
    """Smallest batch size from which the pool stays ``margin`` faster (see module docstring)."""
    target = [(1 - margin) * t for t in inline_s]
    wins = [p <= t for p, t in zip(pool_s, target, strict=True)]
    k = len(sizes)
    while k > 0 and wins[k - 1]:
        k -= 1  # sizes[k:] all win
    if k == 0:
        return float(sizes[0])
    if k < len(sizes):  # lose at sizes[k-1], win at sizes[k]: interpolate the crossing
        crossing = _crossing(sizes[k - 1], sizes[k], target[k - 1], target[k], pool_s[k - 1], pool_s[k])
        return float(math.ceil(min(max(crossing, sizes[k - 1] + 1), sizes[k])))
    if len(sizes) < 2:
        return math.inf
    # the pool never won: extrapolate the last two sizes; it wins later only if its slope is smaller
    crossing = _crossing(sizes[-2], sizes[-1], target[-2], target[-1], pool_s[-2], pool_s[-1])
    return float(math.ceil(crossing)) if math.isfinite(crossing) and crossing > sizes[-1] else math.inf


def _crossing(m0: int, m1: int, t0: float, t1: float, p0: float, p1: float) -> float:
    """Batch size where the lines through ``(m0, t0), (m1, t1)`` and ``(m0, p0), (m1, p1)`` meet (``inf`` if the
    pool line is not below at large sizes)."""
    dt, dp = (t1 - t0) / (m1 - m0), (p1 - p0) / (m1 - m0)
    if dp >= dt:
        return math.inf if p1 > t1 else float(m1)
    return m0 + (p0 - t0) / (dt - dp)


def _rebuild(pool, break_even, margin, min_inline_time, budget, repeats) -> Auto:
    return Auto(pool, break_even=break_even, margin=margin, min_inline_time=min_inline_time, budget=budget,
                repeats=repeats)
