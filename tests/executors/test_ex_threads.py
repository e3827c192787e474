"""``Threads``: timeouts, closing with calls in flight, errors with the global instance index, the solver object run as
given (no pickling), daemon threads that never keep the interpreter alive."""

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


# ===================================================================== in-process: the object as given
def test_threads_call_the_solver_object_itself_closures_included():
    """No pickling, no rebuilding: a class defined here, holding an unpicklable lock and a closure, runs under
    Threads, and the calls land on this very object (a rebuilt copy would not record them here)."""
    import threading

    import numpy as np

    from discreteopt.solvers import Solver, from_function

    bonus = 0.5

    class Recorder(Solver):
        def __init__(self):
            self.lock = threading.Lock()  # unpicklable
            self.rows = []

        def solve_numpy(self, theta):
            with self.lock:
                self.rows.append(len(theta))
            return (theta + bonus >= theta.max(1, keepdims=True) + bonus).astype(np.float64)

    solver = Recorder()
    x = torch.randn(9, 4, generator=torch.Generator().manual_seed(0))
    with Threads(3) as ex:
        y = ex.solve(solver, x)
        assert sorted(solver.rows) == [3, 3, 3]  # three chunks, all solved by this object
        assert torch.equal(y, solver.solve(x))
        closure = from_function(lambda t: t >= t.max() - 0 * bonus)
        assert torch.equal(ex.solve(closure, x), closure.solve(x))
        assert torch.equal(ex.submit(closure, x.double()).result(timeout=30), closure.solve(x.double()))


def test_close_returns_while_a_chunk_still_runs():
    """close() fails the call and returns at once although the solve blocks (hang detector, not a timing)."""
    import threading

    import numpy as np

    from discreteopt.solvers import Solver

    started, release = threading.Event(), threading.Event()

    class Blocking(Solver):
        def solve_numpy(self, theta):
            started.set()
            release.wait()
            return np.zeros_like(theta)

    ex = Threads(1)
    fut = ex.submit(Blocking(), torch.randn(2, 3))
    assert started.wait(30)
    closer = threading.Thread(target=ex.close, daemon=True)
    closer.start()
    closer.join(30)
    try:
        assert not closer.is_alive(), "close() waited for a running solve"
        with pytest.raises(RuntimeError, match="closed"):
            fut.result(timeout=5)
    finally:
        release.set()


_NEVER_RETURNS = r'''
import sys, threading, torch
from discreteopt.executors import Threads
from discreteopt.solvers import Solver

class Forever(Solver):
    def solve_numpy(self, theta):
        threading.Event().wait()  # never returns

ex = Threads(2)
try:
    ex.solve(Forever(), torch.randn(4, 3), timeout=0.2)
except TimeoutError:
    print("timed out", flush=True)
if sys.argv[1] == "close":
    ex.close()
    print("closed", flush=True)
'''


@pytest.mark.parametrize("how", ["close", "exit"])
def test_a_solve_that_never_returns_blocks_neither_close_nor_exit(tmp_path, how):
    """Issue 10.3: after a TimeoutError the still-running solve must not keep the interpreter alive."""
    import subprocess
    import sys

    script = tmp_path / "forever.py"
    script.write_text(_NEVER_RETURNS)
    try:
        proc = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the interpreter did not exit ({how}): a running solve kept it alive")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "timed out" in proc.stdout
    assert ("closed" in proc.stdout) == (how == "close")


def test_map_builds_the_spec_once_and_validates_chunks(thread_pool):
    import numpy as np

    from discreteopt.solvers import GridShortestPath

    spec = GridShortestPath().spec()
    chunks = [np.random.default_rng(0).uniform(0.1, 2, size=(b, 4, 4)) for b in (2, 3)]
    got = thread_pool.map(spec, chunks)
    for g, c in zip(got, chunks, strict=True):
        np.testing.assert_array_equal(g, GridShortestPath().solve_numpy(c))
    bad = [chunks[0].copy()]
    bad[0][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="costs must be finite"):
        thread_pool.map(spec, bad)


def test_close_waits_until_idle_threads_have_exited():
    """Idle threads are gone when close() returns: a daemon thread still unwinding at interpreter exit is stopped
    mid-way through destroying its thread-local OR-Tools objects, which aborted the process ("terminate called
    without an active exception", seen in CI after a Knapsack run under Threads(2))."""
    ex = Threads(4)
    ex.solve(ILP(A_ub=[[1.0, 1.0, 1.0]], b_ub=[2.0], backend="cpsat"), torch.randn(8, 3))
    threads = list(ex._state.threads)
    assert len(threads) == 4 and all(t.is_alive() for t in threads)
    ex.close()
    assert not any(t.is_alive() for t in threads)

