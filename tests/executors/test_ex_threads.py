"""``Threads``: timeouts, closing with calls in flight, errors with the global instance index."""

from __future__ import annotations

import time

import pytest
import torch
from ex_solvers import SleepSolver

from discreteopt.executors import Inline, Threads
from discreteopt.solvers import ILP, InstanceError

pytestmark = pytest.mark.timeout(60)


def test_timeout_fails_the_call_without_waiting_for_running_chunks():
    with Threads(2) as ex:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="timeout=0.2"):
            ex.solve(SleepSolver(1.5), torch.randn(4, 3), timeout=0.2)
        assert time.monotonic() - t0 < 1.0
    with pytest.raises(ValueError, match="timeout"):
        Threads(1, timeout=0)


def test_close_fails_calls_in_flight_instead_of_hanging():
    ex = Threads(1)
    first = ex.submit(SleepSolver(0.3), torch.randn(2, 3))
    queued = ex.submit(SleepSolver(0.3), torch.randn(2, 3))
    ex.close()
    for fut in (first, queued):
        with pytest.raises(RuntimeError, match="closed"):
            fut.result(timeout=5)
    with pytest.raises(RuntimeError, match="closed"):
        ex.submit(SleepSolver(0.0), torch.randn(2, 3))


def test_instance_error_index_and_same_results(thread_pool):
    solver = ILP(bounds=(0, None), n=2)
    theta = -torch.rand(9, 2) - 0.1
    theta[6, 1] = 1.0  # chunks of 5 and 4: second chunk, local index 1
    with pytest.raises(InstanceError) as info:
        thread_pool.solve(solver, theta)
    assert info.value.index == 6
    x = torch.randn(7, 4)
    assert torch.equal(thread_pool.solve(SleepSolver(0.0), x), Inline().solve(SleepSolver(0.0), x))
