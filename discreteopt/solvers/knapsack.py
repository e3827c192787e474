"""0/1 knapsack over one or several capacity rows: OR-Tools' 64-item solver, branch and bound, CP-SAT, SCIP.

For every instance ``b`` of the batch::

    x*_b = argmax_{x in {0,1}^n} <theta_b, x>   s.t.  W x <= capacity        (W: [m, n] >= 0, m >= 1)

**Back-ends** (``backend=``; ``"auto"``, the default, picks one in the constructor, :attr:`Knapsack.backend`
tells which):

===========  ===================================================  ===========================================
back-end     ``"auto"`` picks it when                             what it is
===========  ===================================================  ===========================================
``items64``  one row, ``n <= 64``, weights exact decimals         OR-Tools' 64-item knapsack solver, ~0.05 ms
``bnb``      several rows or ``n > 64``, weights exact decimals   OR-Tools' multi-dimensional branch and
                                                                  bound, time-boxed per instance
                                                                  (``bnb_budget``, 5 ms), then CP-SAT for an
                                                                  instance whose optimum is still unproven
``cpsat``    ``n * 10**digits >= 2**53`` (else: ``bnb``'s         CP-SAT (one worker, fixed seed), the model
             fallback)                                            of ``ILP(backend="cpsat")``
``scip``     weights are not exact decimals (e.g. ``1/3``)        SCIP on floats, the model of ``ILP()``
===========  ===================================================  ===========================================

Why a time-boxed branch and bound (``benchmarks/bench_knapsack.py``, shared 2-core machine, per instance): on
PyEPO's knapsack (32 items, 2 rows of capacity 20, 2-decimal weights) the branch and bound proves the optimum
in ~0.1-1.3 ms, CP-SAT in ~3-4 ms, ``scipy.optimize.milp`` (HiGHS) in ~9-18 ms; with 80 items and 3 rows of
capacity 20 it is ~1-2 ms against ~7-12 ms for CP-SAT. But its time grows exponentially with the number of
items that fit and with correlated values: PyEPO-style weights with 80 items and 3 rows of a quarter of the
total weight take it seconds to minutes (CP-SAT ~16-45 ms, milp ~50-310 ms), and 32 items with values near
their weights (weakly correlated) already take it over 0.2 s. No rule on ``n`` and ``m`` separates the two, so
every instance gets ``bnb_budget`` seconds of branch and bound and then, if its optimum is still unproven,
CP-SAT: an instance costs ``min(t_bnb, bnb_budget + t_cpsat)``, never more than ``bnb_budget`` above CP-SAT
alone (5 ms minimised the mean time over 18 sizes and value distributions; 2 ms costs ~30% more there).
:attr:`Knapsack.fallbacks` counts the instances handed to CP-SAT.

**Weights and capacities** are non-negative reals. The integer back-ends need integers: weights that are exact
decimals with at most 6 places (PyEPO's 2-decimal weights, integers) are scaled exactly, row by row, by the
fewest powers of ten that make them integral (``3.17 -> 317``); the capacity is floored exactly at that scale
(``W x <= 20.5`` over integer ``W x`` is ``W x <= 20``) and clipped to the row's total weight, so any finite
capacity (up to 1e308) is accepted and every number handed to OR-Tools stays below ``2**53``. Other weights go
to SCIP, whose rows hold within its feasibility tolerance (1e-6).

**Profits.** Integer back-ends scale each instance separately::

    p_b,i = round(10**digits * theta_b,i / max_j |theta_b,j|)        (|p_b,i| <= 10**digits)

dividing first, so every finite ``theta`` (subnormal to 1e308, mixed scales) gives integers in range. Rounding
moves each profit by at most ``0.5 / s_b`` with ``s_b = 10**digits / max|theta_b|``, so the returned ``x`` is
optimal for ``theta_b`` up to ``n * max|theta_b| * 10**-digits``: entries closer than that are ties. SCIP gets
``theta_b`` times the power of two that brings ``max|theta_b|`` into ``[0.5, 1)`` (exact); it treats entries
below ~1e-9 of the largest as zero.

**Ties.** With ``backend="cpsat"`` or ``"scip"``, ``Knapsack(weights, capacity, digits=d, backend=b)`` returns
exactly what ``ILP(A_ub=weights, b_ub=capacity, bounds=(0, 1), backend=b, cpsat_digits=d)`` returns, ties
included: the same model, built by the same code and solved by the same deterministic back-end (``ILP()``'s
default back-end is ``"scip"``; pass ``backend="scip"`` for answers identical to a default ``ILP``). The
64-item solver and the branch and bound never choose an item with ``p_b,i <= 0`` (``theta <= 0``, or below
the rounding precision) and break other ties their own (fixed) way. ``items64``, ``cpsat``, ``scip``, and
``bnb`` with ``bnb_budget=None``, are deterministic: the same input gives the same output. ``bnb`` with a
budget (the default) always returns an optimum of the same value, but *which* of several exactly tied optima
depends on who answered, the branch and bound or CP-SAT, and so on wall time: an instance whose branch and
bound takes about ``bnb_budget`` may be answered by either on a loaded machine. Exact ties are rare with
real-valued ``theta`` (predictions, perturbations); pass ``backend="cpsat"`` for ``ILP``'s answers, or
``bnb_budget=None`` for answers that are a fixed function of the input.

**Failure is never silent.** ``time_limit`` (seconds per instance) stops a back-end; an instance without a
proven optimum raises :class:`~discreteopt.solvers.base.InstanceError` (``"TIME_LIMIT"``, ...), and the
back-end is rebuilt for the next call. With ``bnb``, ``time_limit`` bounds the branch and bound and, after a
fallback, CP-SAT, each on its own (an instance may take ``bnb_budget`` plus ``time_limit``); a ``time_limit``
no larger than ``bnb_budget`` leaves no time box: the branch and bound alone answers or raises.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .._validation import check_int_in_range, check_positive
from .base import InstanceError, Solver, ThreadLocalBackend
from .ilp import ILP, INT_SAFE, MAX_DECIMALS, decimal_places, integer_objective, numeric_array

BACKENDS = ("auto", "items64", "bnb", "cpsat", "scip")
_ITEMS64 = 64
BNB_BUDGET = 5e-3  # seconds of branch and bound per instance before CP-SAT takes over (module docstring)


def _nonnegative(v: Any, name: str) -> np.ndarray:
    arr = numeric_array(v, name)
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative; got minimum {arr.min():.6g}")
    return arr


class Knapsack(ThreadLocalBackend, Solver):
    """0/1 knapsack over ``m`` capacity rows: ``theta [B, n] -> x [B, n]`` with ``weights @ x <= capacity``.

    ``x*_b = argmax_{x in {0,1}^n} <theta_b, x>  s.t.  W x <= capacity``; see the module docstring for the
    back-ends, the exact scaling of decimal weights, the profit precision and the tie rule.

    Args:
        weights: non-negative item weights, ``[n]`` (one capacity) or ``[m, n]`` (``m`` capacity rows); reals
            (exact decimals with at most 6 places are scaled exactly for the integer back-ends).
        capacity: a non-negative scalar or ``[m]`` (any finite size; larger than a row's total is no limit).
        digits: decimal digits kept when scaling ``theta`` to integer profits (``items64``, ``bnb``,
            ``cpsat``): the result is optimal up to ``n * max|theta_b| * 10**-digits``.
        time_limit: seconds per instance (``None`` = no limit); an instance stopped before optimality raises
            :class:`~discreteopt.solvers.base.InstanceError` with status ``"TIME_LIMIT"``.
        backend: ``"auto"`` (default; by rows, size and weights), ``"items64"`` (one row, ``n <= 64``),
            ``"bnb"`` (branch and bound, CP-SAT after ``bnb_budget``), ``"cpsat"`` or ``"scip"``.
        bnb_budget: seconds of branch and bound per instance before CP-SAT takes over (``bnb`` only; default
            5 ms); ``None``: no time box, the branch and bound alone (exponential time on hard instances).

    Attributes: ``weights [m, n]``, ``capacity [m]`` (as given, float64), ``n``, ``digits``, ``time_limit``,
    ``bnb_budget``, ``backend`` (the resolved back-end) and ``fallbacks`` (instances that ``bnb`` handed to
    CP-SAT, counted by this object in this process).

    Example (PyEPO-style 2-decimal weights, two rows)::

        >>> import torch
        >>> solver = Knapsack([[3.17, 4.25, 5.5], [1.0, 2.0, 1.5]], capacity=[8.0, 3.0])
        >>> solver.backend
        'bnb'
        >>> solver.solve(torch.tensor([[1.0, 2.0, 2.5]]))   # items 0 and 1: weights 7.42 <= 8 and 3 <= 3
        tensor([[1., 1., 0.]])
    """

    sense = "max"
    event_ndim = 1
    theta_layout = "[B, n]"

    def __init__(self, weights, capacity, digits: int = 9, time_limit: float | None = None,
                 backend: str = "auto", bnb_budget: float | None = BNB_BUDGET):
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
        w = _nonnegative(weights, "weights")
        if w.ndim not in (1, 2) or w.shape[-1] == 0 or (w.ndim == 2 and w.shape[0] == 0):
            raise ValueError(f"weights must have shape [n] or [m, n] with n, m >= 1; got shape {w.shape}")
        self.weights = w.reshape(-1, w.shape[-1])  # [m, n]
        m, n = self.weights.shape
        cap = _nonnegative(capacity, "capacity")
        if cap.ndim == 0:
            cap = np.full(m, float(cap))
        if cap.shape != (m,):
            raise ValueError(f"capacity must be a scalar or an array [m={m}] (one per row of weights); "
                             f"got shape {cap.shape}")
        self.capacity = cap
        self.n = n
        self.digits = check_int_in_range(digits, "digits", 1, 15)
        self.time_limit = None if time_limit is None else check_positive(time_limit, "time_limit")
        self.bnb_budget = None if bnb_budget is None else check_positive(bnb_budget, "bnb_budget")
        self.backend = self._resolve(backend)
        self.fallbacks = 0
        self._spec_kwargs = {"weights": self.weights if m > 1 else self.weights[0], "capacity": self.capacity,
                             "digits": self.digits, "time_limit": self.time_limit, "backend": backend,
                             "bnb_budget": self.bnb_budget}
        self._init_local()  # the OR-Tools knapsack solver per thread, created on first solve

    def _resolve(self, requested: str) -> str:
        """Choose the back-end and build the ILP it shares its model with (checks the data: ValueError)."""
        m, n = self.weights.shape
        decimal = self._fits_integers()
        exact_profits = n * 10.0**self.digits < INT_SAFE  # sums of integer profits exact (items64, bnb)
        if requested == "auto":
            backend = ("scip" if not decimal else "cpsat" if not exact_profits
                       else "items64" if m == 1 and n <= _ITEMS64 else "bnb")
        else:
            backend = requested
        if backend in ("items64", "bnb", "cpsat") and not decimal:
            raise ValueError(f"weights must be integers or decimals with at most {MAX_DECIMALS} places, each row "
                             f"summing to less than 2**53 once scaled, for backend {backend!r} (they are scaled "
                             "exactly to integers); use backend='scip' (or 'auto') for arbitrary real weights")
        if backend == "items64":
            if m != 1 or n > _ITEMS64:
                raise ValueError(f"backend 'items64' solves one capacity row with at most {_ITEMS64} items; got "
                                 f"weights of shape [m={m}, n={n}] (use 'cpsat' or 'auto')")
        if backend in ("items64", "bnb") and not exact_profits:
            raise ValueError(f"digits={self.digits} with n={n} items exceeds the exact profit range of "
                             f"backend {backend!r} (n * 10**digits < 2**53); lower digits, or use 'cpsat' or "
                             "'auto'")
        integer_model = "cpsat" if backend in ("items64", "bnb") else backend  # bnb: its fallback too
        self._ilp = ILP(A_ub=self.weights, b_ub=self.capacity, bounds=(0, 1), backend=integer_model,
                        cpsat_digits=self.digits, time_limit=self.time_limit)
        self._ilp._label = f"Knapsack[{backend}]"
        if backend in ("items64", "bnb"):  # the rows as exact integers (the same scaling as CP-SAT's)
            self._int_weights = np.zeros((m, n), dtype=np.int64)  # [m, n]
            self._int_capacity = []
            for r, (nz, coefs, _, rhs) in enumerate(self._ilp._int_rows):
                self._int_weights[r, nz] = coefs
                self._int_capacity.append(int(rhs))
        return backend

    def _fits_integers(self) -> bool:
        """Every row is exact decimals whose scaled total stays below ``2**53`` (what the integer back-ends need)."""
        for row in self.weights:
            d = decimal_places(row)
            if d is None or round(float(row.sum()) * 10**d) >= INT_SAFE:
                return False
        return True

    def _init_local(self) -> None:
        super()._init_local()
        self._fallback_lock = threading.Lock()  # Threads(n) call one object from several threads

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_fallback_lock", None)  # recreated by _init_local after unpickling
        return state

    def _time_box(self) -> tuple[float | None, bool]:
        """``(seconds for OR-Tools' knapsack solver per instance, whether CP-SAT takes over after them)``."""
        if self.backend == "bnb" and self.bnb_budget is not None and (
                self.time_limit is None or self.bnb_budget < self.time_limit):
            return self.bnb_budget, True
        return self.time_limit, False

    def _knapsack_solver(self):
        """This thread's OR-Tools knapsack solver: the 64-item one or the multi-dimensional B&B."""
        solver = getattr(self._local, "knapsack", None)
        if solver is None:
            from ortools.algorithms.python import knapsack_solver as ks

            kind = (ks.SolverType.KNAPSACK_64ITEMS_SOLVER if self.backend == "items64"
                    else ks.SolverType.KNAPSACK_MULTIDIMENSION_BRANCH_AND_BOUND_SOLVER)
            solver = ks.KnapsackSolver(kind, "discreteopt-knapsack")
            seconds, _ = self._time_box()
            if seconds is not None:
                solver.set_time_limit(seconds)  # wall clock from init() on; re-armed by every init()
            self._local.knapsack = solver
        return solver

    # ----------------------------------------------------------------- Solver contract
    def event_shape(self) -> tuple[int, ...]:
        return (self.n,)

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        if self.backend not in ("items64", "bnb"):
            return self._ilp._solve_numpy(theta)  # [B, n], the ILP's model (see "Ties")
        out = np.zeros_like(theta)  # [B, n]
        seconds, fallback = self._time_box()
        late = []  # instances the time-boxed branch and bound left unproven: CP-SAT's
        for b in range(theta.shape[0]):
            profits = integer_objective(theta[b], self.digits)  # [n], |p| <= 10**digits
            items = np.flatnonzero(profits > 0)  # candidates; the rest can only lower the objective
            if items.size == 0:
                continue
            solver = self._knapsack_solver()
            try:
                solver.init(profits[items].tolist(), self._int_weights[:, items].tolist(), self._int_capacity)
                solver.solve()
                optimal = solver.is_solution_optimal()
            except BaseException:
                self._local.knapsack = None  # rebuilt on the next call
                raise
            if not optimal:
                if fallback:
                    late.append(b)
                    continue
                self._local.knapsack = None
                raise InstanceError(f"Knapsack[{self.backend}]", b, "TIME_LIMIT",
                                    f"stopped before proving optimality (time_limit={self.time_limit})")
            out[b, [i for k, i in enumerate(items) if solver.best_solution_contains(k)]] = 1.0
        if late:
            with self._fallback_lock:
                self.fallbacks += len(late)
            try:
                out[late] = self._ilp._solve_numpy(theta[late])  # [len(late), n], CP-SAT (time_limit each)
            except InstanceError as err:  # index within `late` -> index in the batch
                raise InstanceError(err.solver, late[err.index], err.status, err.detail) from None
        return out

    def is_feasible(self, y) -> np.ndarray:
        """Per-instance check that ``y [B, n]`` is 0/1 and fits every capacity (relative tolerance 1e-9 of the
        row's total weight, for decimal weights summed in floating point)."""
        y = np.asarray(y, dtype=np.float64)
        binary = np.all((y == 0) | (y == 1), axis=-1)
        tol = 1e-9 * (1.0 + self.weights.sum(1))  # [m]
        return binary & np.all(y @ self.weights.T <= self.capacity + tol, axis=-1)
