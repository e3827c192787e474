"""``Auto``: break-even arithmetic, calibration against pools whose cost is known (sleep-based timings, robust
to a loaded machine), routing, and the rule that cheap calls never start a pool."""

from __future__ import annotations

import copy
import math
import pickle
import time

import pytest
import torch
from ex_solvers import SleepSolver

from discreteopt.executors import Auto, Executor, Inline, Threads
from discreteopt.executors.auto import _break_even
from discreteopt.solvers import GridShortestPath, TopK

pytestmark = pytest.mark.timeout(120)


class CountingPool(Executor):
    """A 'pool' that solves inline after ``overhead`` seconds and counts its calls."""

    def __init__(self, overhead: float = 0.0, n: int = 2):
        self.overhead, self.calls, self._n = overhead, 0, n

    @property
    def n_workers(self) -> int:
        return self._n

    def map(self, spec, chunks):
        self.calls += 1
        return Inline().map(spec, chunks)

    def solve(self, solver, theta, *, timeout=None):
        self.calls += 1
        time.sleep(self.overhead)
        return solver.solve(theta)


# ===================================================================== arithmetic
def test_break_even_interpolates_between_the_last_loss_and_the_first_win():
    sizes, inline = [1, 2, 4, 8, 16], [1.0, 2.0, 4.0, 8.0, 16.0]
    pool = [5.0, 5.5, 6.0, 7.0, 8.0]
    # (1 - 0.1) * inline crosses the pool line between 4 and 8: 4 + (6 - 3.6) / (0.9 - 0.25) = 7.69
    assert _break_even(sizes, inline, pool, 0.1) == 8.0
    assert _break_even(sizes, inline, [5.0, 5.5, 5.6, 5.8, 6.0], 0.0) == 6.0  # 4 + 1.6 / (1 - 0.05) = 5.68
    assert _break_even(sizes, inline, [0.5] * 5, 0.1) == 1.0  # the pool always wins
    assert _break_even(sizes, inline, [x + 1 for x in inline], 0.1) == math.inf  # never, same slope
    # loses everywhere measured but grows slower: extrapolated beyond the last size
    be = _break_even(sizes, inline, [10.0, 10.5, 11.0, 12.0, 17.0], 0.0)
    assert 16 < be < math.inf and be == math.ceil(8 + (12 - 8) / (1 - 0.625))
    # a single lucky win followed by a loss does not count
    assert _break_even(sizes, inline, [5.0, 1.0, 6.0, 7.0, 8.0], 0.1) == 8.0


# ===================================================================== calibration and routing
def test_calibration_finds_where_parallel_sleeps_pay_off():
    solver = SleepSolver(0.004, per_instance=True)  # inline: 4 ms per instance
    with Threads(4) as threads:  # the 4 chunks sleep in parallel: ~4 ms * ceil(B / 4)
        auto = Auto(threads)
        cal = auto.calibrate(solver, torch.randn(3, 5))
        # B=1: 4 ms both ways (pool loses); B=2: 8 ms vs 4 ms (wins), B=4: 16 vs 4 (wins) -> stop
        assert cal.sizes == (1, 2, 4) and cal.break_even == 2.0, cal.table()
        assert auto.break_even(solver) == 2.0 and auto.calibration(solver) is cal
        assert "break-even batch size: 2" in cal.table()
        x = torch.randn(6, 5)
        assert torch.equal(auto.solve(solver, x), solver.solve(x))
        assert torch.equal(auto.solve(solver, x[:1]), solver.solve(x[:1]))
        assert auto.stats == {"inline": 1, "pool": 1, "calibrations": 1}


def test_a_pool_that_never_pays_is_never_used_after_calibration():
    pool = CountingPool(overhead=0.02)
    auto = Auto(pool, budget=0.3, min_inline_time=1e-3)
    solver = SleepSolver(0.001, per_instance=True)
    x = torch.randn(4, 3)
    assert torch.equal(auto.solve(solver, x), solver.solve(x))  # first call of a spec: warm-up, not timed
    assert auto.stats["calibrations"] == 0
    assert torch.equal(auto.solve(solver, x), solver.solve(x))  # 4 ms inline: triggers calibration
    assert auto.stats["calibrations"] == 1 and auto.break_even(solver) == math.inf
    calls = pool.calls
    for b in (1, 8, 64):
        auto.solve(solver, torch.randn(b, 3))
    assert pool.calls == calls and auto.stats["pool"] == 0


def test_cheap_calls_never_start_a_pool():
    auto = Auto(min_inline_time=0.05)  # default pool (Processes), created only when needed
    solver = GridShortestPath()
    for _ in range(5):
        x = torch.rand(2, 12, 12)
        assert torch.equal(auto.solve(solver, x), solver.solve(x))
    assert auto._pool is None and auto.break_even(solver) is None and auto.stats["inline"] == 5
    auto.close()


def test_fixed_break_even_and_device_native_solvers():
    pool = CountingPool()
    auto = Auto(pool, break_even=4)
    solver = GridShortestPath()
    auto.solve(solver, torch.rand(3, 5, 5))
    assert pool.calls == 0
    auto.solve(solver, torch.rand(4, 5, 5))
    assert pool.calls == 1
    theta = torch.randn(64, 9)
    assert torch.equal(auto.solve(TopK(2), theta), TopK(2).solve(theta)) and pool.calls == 1  # always inline
    per_solver = Auto(pool)
    per_solver.set_break_even(solver, math.inf)
    per_solver.solve(solver, torch.rand(512, 5, 5))
    assert pool.calls == 1 and per_solver.stats["calibrations"] == 0


def test_arguments_are_checked_and_copies_behave():
    with pytest.raises(ValueError, match="pool must be a pool executor"):
        Auto(Inline())
    with pytest.raises(ValueError, match="break_even"):
        Auto(break_even=0)
    with pytest.raises(ValueError, match="margin"):
        Auto(margin=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        Auto().set_break_even(GridShortestPath(), 0)
    auto = Auto(Threads(2), break_even=16)
    assert copy.deepcopy(auto) is auto
    clone = pickle.loads(pickle.dumps(auto))
    assert isinstance(clone.pool, Threads) and clone.fixed_break_even == 16
    clone.close()
    auto.close()


def test_nan_input_is_a_value_error_on_both_routes():
    auto = Auto(CountingPool(), break_even=4)
    bad = torch.rand(8, 5, 5)
    bad[0, 0, 0] = float("nan")
    for x in (bad[:2], bad):
        with pytest.raises(ValueError, match="costs must be finite"):
            auto.solve(GridShortestPath(), x)


class BrokenPool(CountingPool):
    def solve(self, solver, theta, *, timeout=None):
        raise RuntimeError("workers cannot import the solver")


def test_a_failing_calibration_warns_and_keeps_the_spec_inline():
    auto = Auto(BrokenPool(), min_inline_time=1e-3)
    solver = SleepSolver(0.002, per_instance=True)
    x = torch.randn(2, 3)
    auto.solve(solver, x)  # warm-up call
    with pytest.warns(RuntimeWarning, match="calibrating SleepSolver .* failed .*workers cannot import"):
        y = auto.solve(solver, x)
    assert torch.equal(y, solver.solve(x)) and auto.break_even(solver) == math.inf
    assert torch.equal(auto.solve(solver, torch.randn(64, 3)).sum(1), torch.ones(64))  # inline from now on


def test_changing_a_known_break_even_reroutes_the_next_call():
    """The hot path caches each solver's break-even; setting a new one must take effect at once."""
    pool = CountingPool()
    auto = Auto(pool)
    solver = GridShortestPath()
    theta = torch.rand(3, 4, 4) + 0.5
    auto.set_break_even(solver, 4)
    for _ in range(2):  # the second call takes the cached path
        assert torch.equal(auto.solve(solver, theta), solver.solve(theta))
    assert pool.calls == 0 and auto.stats["inline"] == 2
    auto.set_break_even(solver, 2)
    assert torch.equal(auto.solve(solver, theta), solver.solve(theta))
    assert pool.calls == 1
    other = GridShortestPath()  # same spec: shares the break-even, not the cache entry
    auto.solve(solver, theta[:1]), auto.solve(other, theta)
    assert pool.calls == 2 and auto.stats["inline"] == 3
