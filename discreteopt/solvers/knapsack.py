"""0/1 knapsack (one or several capacity dimensions) through the OR-Tools knapsack solver.

For every instance ``b``::

    x*_b = argmax_{x in {0,1}^n} <theta_b, x>   s.t.  W x <= capacity        (W: [m, n], m >= 1)

Weights and capacities must be non-negative and integer-valued (the OR-Tools solver works on 64-bit
integers); scale rational weights yourself. The solver also needs non-negative integer profits, so each
instance is handled as follows:

* items with ``theta_b,i <= 0`` can never raise the objective; they are set aside and returned as 0
  (an item with ``theta == 0`` is a tie: leaving it out is one of the optima);
* the positive entries are scaled to integers ``p_i = round(theta_b,i * 10**digits / max_i theta_b,i)``.
  Rounding moves each profit by at most ``0.5 / scale``, so the returned ``x`` is optimal for ``theta_b``
  up to ``n * max_i theta_b,i * 10**-digits``: items whose values differ by less are treated as ties.

One-dimensional instances with at most 64 candidate items use OR-Tools' 64-item solver, all others its
multi-dimensional branch and bound. Both are exact; ``time_limit`` (seconds per instance) bounds the
branch and bound, and an instance that stops before proving optimality raises
:class:`~discreteopt.solvers.base.InstanceError` with status ``"TIME_LIMIT"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_int_in_range, check_positive
from .base import InstanceError, Solver, ThreadLocalBackend

_EXACT_IN_DOUBLE = 2.0**53  # the branch and bound sums profits in doubles


def _nonneg_integer_array(v: Any, name: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got {int((~np.isfinite(arr)).sum())} NaN/inf entries")
    if (arr < 0).any() or not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"{name} must hold non-negative integers (scale rational weights yourself); "
                         f"got min {arr.min(initial=0):.6g}, non-integer entries: "
                         f"{int((arr != np.round(arr)).sum())}")
    if arr.size and arr.max() >= 2.0**62:
        raise ValueError(f"{name} has entries too large for 64-bit integers")
    return arr


class Knapsack(ThreadLocalBackend, Solver):
    """0/1 knapsack: ``theta [B, n] -> x [B, n]`` with ``weights @ x <= capacity`` (see module docstring).

    Args:
        weights: item weights, ``[n]`` (one capacity) or ``[m, n]`` (``m`` capacity dimensions).
        capacity: a scalar or ``[m]``.
        digits: decimal digits kept when scaling ``theta`` to integer profits (precision note above).
        time_limit: seconds per instance for the branch and bound (``None`` = no limit).
    """

    sense = "max"
    event_ndim = 1
    theta_layout = "[B, n]"

    def __init__(self, weights, capacity, digits: int = 9, time_limit: float | None = None):
        w = _nonneg_integer_array(weights, "weights")
        if w.ndim not in (1, 2) or w.shape[-1] == 0:
            raise ValueError(f"weights must have shape [n] or [m, n] with n >= 1; got shape {w.shape}")
        self.weights = w.reshape(-1, w.shape[-1])  # [m, n]
        m, n = self.weights.shape
        cap = _nonneg_integer_array(capacity, "capacity")
        if cap.ndim == 0:
            cap = np.full(m, float(cap))
        if cap.shape != (m,):
            raise ValueError(f"capacity must be a scalar or an array [m={m}] (one per row of weights); "
                             f"got shape {cap.shape}")
        self.capacity = cap
        self.n = n
        self.digits = check_int_in_range(digits, "digits", 1, 15)
        if n * 10.0**self.digits >= _EXACT_IN_DOUBLE:
            raise ValueError(f"digits={self.digits} with n={n} items exceeds the solver's exact profit range; "
                             "lower digits")
        self.time_limit = None if time_limit is None else check_positive(time_limit, "time_limit")
        self._spec_kwargs = {"weights": self.weights if m > 1 else self.weights[0], "capacity": self.capacity,
                             "digits": self.digits, "time_limit": self.time_limit}
        self._init_local()  # OR-Tools solvers per thread, created on first solve

    def _backend(self, few_items: bool):
        """The OR-Tools solver for this thread: the 64-item one or the branch and bound."""
        from ortools.algorithms.python import knapsack_solver as ks

        key = "small" if few_items else "bnb"
        solver = getattr(self._local, key, None)
        if solver is None:
            kind = (ks.SolverType.KNAPSACK_64ITEMS_SOLVER if few_items
                    else ks.SolverType.KNAPSACK_MULTIDIMENSION_BRANCH_AND_BOUND_SOLVER)
            solver = ks.KnapsackSolver(kind, "discreteopt-knapsack")
            if self.time_limit is not None:
                solver.set_time_limit(self.time_limit)
            setattr(self._local, key, solver)
        return solver

    def event_shape(self) -> tuple[int, ...]:
        return (self.n,)

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        out = np.zeros_like(theta)  # [B, n]
        capacity = self.capacity.astype(np.int64).tolist()
        for b in range(theta.shape[0]):
            items = np.flatnonzero(theta[b] > 0)  # candidates; the rest stay 0
            if items.size == 0:
                continue
            values = theta[b, items]
            profits = np.round(values * (10.0**self.digits / values.max())).astype(np.int64)
            solver = self._backend(self.weights.shape[0] == 1 and items.size <= 64)
            solver.init(profits.tolist(), self.weights[:, items].astype(np.int64).tolist(), capacity)
            solver.solve()
            if not solver.is_solution_optimal():
                raise InstanceError("Knapsack", b, "TIME_LIMIT",
                                    f"stopped before proving optimality (time_limit={self.time_limit})")
            chosen = [i for k, i in enumerate(items) if solver.best_solution_contains(k)]
            out[b, chosen] = 1.0
        return out

    def is_feasible(self, y) -> np.ndarray:
        """Per-instance check that ``y [B, n]`` is 0/1 and fits every capacity."""
        y = np.asarray(y, dtype=np.float64)
        binary = np.all((y == 0) | (y == 1), axis=-1)
        return binary & np.all(y @ self.weights.T <= self.capacity, axis=-1)
