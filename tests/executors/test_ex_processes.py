"""``Processes``: faults (killed worker, reproducible crash), timeouts, errors reaching the caller, start methods,
overlap with the caller, shutdown without leftover processes."""

from __future__ import annotations

import copy
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from conftest import HERE, descendants, helper_processes, proc_alive, wait_until
from ex_solvers import POISON, CrashSolver, ProbeSolver, SleepSolver

from discreteopt.executors import Inline, Processes, WorkerCrashed
from discreteopt.solvers import ILP, GridShortestPath, InstanceError

pytestmark = pytest.mark.timeout(240)


def _delta(pool, before, key):
    return pool.stats.get(key, 0) - before.get(key, 0)


# ===================================================================== faults
def test_killed_worker_is_replaced_and_its_chunk_retried(proc_pool):
    solver = SleepSolver(0.1, per_instance=True)  # each worker: 10 instances = 1 s
    theta = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    before, pids = proc_pool.stats, proc_pool.worker_pids()
    fut = proc_pool.submit(solver, theta)
    time.sleep(0.3)
    os.kill(pids[0], signal.SIGKILL)
    y = fut.result(timeout=120)
    assert torch.equal(y, Inline().solve(solver, theta))  # nothing missing, nothing duplicated
    assert _delta(proc_pool, before, "died") == 1
    assert _delta(proc_pool, before, "restarts") >= 1
    assert _delta(proc_pool, before, "retries") == 1
    assert pids[0] not in proc_pool.worker_pids() and len(proc_pool.worker_pids()) == 2
    assert not proc_alive(pids[0])


def test_chunk_that_always_crashes_names_the_instance(proc_pool):
    theta = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    theta[4, 0] = POISON
    with pytest.raises(WorkerCrashed, match=r"CrashSolver: worker process \d+ died \(exit code 17\) while "
                                            r"solving instance 4 of the batch, 2 time\(s\)") as info:
        proc_pool.solve(CrashSolver(), theta, timeout=120)
    err = info.value
    assert (err.start, err.stop, err.exitcode, err.attempts) == (4, 5, 17, 2)
    assert pickle.loads(pickle.dumps(err)).start == 4
    # the pool recovered: healthy input is solved by fresh workers
    theta[4, 0] = 0.0
    assert torch.equal(proc_pool.solve(CrashSolver(), theta, timeout=120), Inline().solve(CrashSolver(), theta))


def test_per_call_timeout_fails_fast_and_restarts_the_busy_workers(proc_pool):
    before = proc_pool.stats
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="timeout=0.5"):
        proc_pool.solve(SleepSolver(30.0), torch.randn(4, 3), timeout=0.5)
    assert time.monotonic() - t0 < 10
    # the call fails first, then the dispatcher replaces the two workers still sleeping
    assert wait_until(lambda: _delta(proc_pool, before, "restarts") == 2, timeout=10)
    assert _delta(proc_pool, before, "timeouts") == 1
    x = torch.randn(4, 3)
    assert torch.equal(proc_pool.solve(SleepSolver(0.0), x, timeout=120), Inline().solve(SleepSolver(0.0), x))


def test_executor_default_timeout_and_bad_values():
    with pytest.raises(ValueError, match="timeout"):
        Processes(1, timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        Processes(1, timeout=float("nan"))
    with pytest.raises(ValueError, match="start_method"):
        Processes(1, start_method="fork")
    with pytest.raises(ValueError, match="n \\(number of worker processes\\)"):
        Processes(0)


# ===================================================================== errors reach the caller
def test_instance_error_carries_the_global_index(proc_pool):
    # no constraints, x >= 0 unbounded above: an instance with a positive entry is unbounded
    solver = ILP(bounds=(0, None), n=3)
    theta = -torch.rand(10, 3, generator=torch.Generator().manual_seed(2)) - 0.1
    theta[7, 1] = 1.0  # second chunk [5, 10) of two workers: local index 2
    with pytest.raises(InstanceError) as info:
        proc_pool.solve(solver, theta, timeout=120)
    assert info.value.index == 7 and info.value.status == "UNBOUNDED"
    assert "instance 7 of the batch" in str(info.value)
    with pytest.raises(InstanceError) as inline_info:
        solver.solve(theta)
    assert inline_info.value.index == 7


def test_nan_input_raises_value_error_in_the_caller(proc_pool):
    before = proc_pool.stats
    theta = torch.rand(8, 12, 12)
    theta[3, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="costs must be finite; got 1 NaN"):
        proc_pool.submit(GridShortestPath(), theta)  # raised by submit itself, before any task is sent
    with pytest.raises(ValueError, match="costs must be non-negative"):
        proc_pool.submit(GridShortestPath(), -torch.rand(4, 12, 12))
    with pytest.raises(ValueError, match=r"costs must have shape \[B, H, W\]"):
        proc_pool.submit(GridShortestPath(), torch.rand(4, 12))
    assert _delta(proc_pool, before, "tasks") == 0


# ===================================================================== overlap with the caller
def test_submit_returns_at_once_and_overlaps_with_caller_work(proc_pool):
    solver = SleepSolver(1.0)
    theta = torch.randn(4, 3)
    t0 = time.monotonic()
    fut = proc_pool.submit(solver, theta)
    assert time.monotonic() - t0 < 0.5 and not fut.done()
    time.sleep(1.0)  # the caller's own work (e.g. the GPU part of the next micro-batch)
    y = fut.result(timeout=60)
    elapsed = time.monotonic() - t0
    assert torch.equal(y, Inline().solve(solver, theta))
    assert elapsed < 1.8, f"solve and caller work did not overlap: {elapsed:.2f} s for 1 s + 1 s"


def test_layer_forward_async_overlaps(proc_pool):
    from discreteopt.estimators import IMLE
    from discreteopt.layers import DiscreteLayer

    layer = DiscreteLayer(SleepSolver(0.5), IMLE(lam=1.0, samples=2), executor=proc_pool, seed=0)
    theta = torch.randn(3, 4, requires_grad=True)
    handle = layer.forward_async(theta)
    assert not handle.done()
    y = handle.result()  # [B, n], mean over 2 samples
    assert y.shape == (3, 4) and torch.allclose(y.sum(-1), torch.ones(3))
    sync = DiscreteLayer(SleepSolver(0.0), IMLE(lam=1.0, samples=2), executor=Inline(), seed=0)(theta)
    assert torch.equal(y, sync)  # same seed, same noise: same result through the pool


# ===================================================================== start methods, isolation
@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_start_methods_solve_and_isolate_workers_from_cuda(start_method, proc_pool):
    pool = proc_pool if start_method == "spawn" else Processes(1, start_method="forkserver")
    try:
        rows = pool.solve(ProbeSolver(), torch.zeros(4, 4), timeout=120).numpy()
        assert set(rows[:, 0].astype(int)) <= set(pool.worker_pids())
        assert os.getpid() not in rows[:, 0]
        np.testing.assert_array_equal(rows[:, 1:], [[1.0, 0.0, 1.0]] * 4)  # CUDA hidden, not initialised, 1 thread
        costs = torch.rand(5, 12, 12) + 0.1
        assert torch.equal(pool.solve(GridShortestPath(), costs, timeout=120), GridShortestPath().solve(costs))
    finally:
        if pool is not proc_pool:
            pids = pool.worker_pids()
            pool.close()
            assert not any(proc_alive(p) for p in pids)


# ===================================================================== shutdown
def test_close_and_garbage_collection_leave_no_worker_processes():
    baseline = descendants() - helper_processes()
    a, b = Processes(1).start(wait=False), Processes(1).start(wait=False)  # both start in parallel
    a.start(), b.start()  # wait until they are up
    pids = a.worker_pids() + b.worker_pids()
    assert len(pids) == 2 and all(proc_alive(p) for p in pids)
    fut = a.submit(SleepSolver(30.0), torch.randn(2, 3))  # in flight when closed: fails, never hangs
    a.close()
    a.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        fut.result(timeout=10)
    with pytest.raises(RuntimeError, match="closed"):
        a.solve(GridShortestPath(), torch.rand(2, 4, 4))
    del b
    gc.collect()
    assert wait_until(lambda: not any(proc_alive(p) for p in pids), timeout=10)
    assert descendants() - helper_processes() <= baseline


def test_deepcopy_shares_and_pickle_rebuilds(proc_pool):
    assert copy.deepcopy(proc_pool) is proc_pool
    clone = pickle.loads(pickle.dumps(proc_pool))
    assert isinstance(clone, Processes) and clone.n_workers == 2 and clone.worker_pids() == []
    clone.close()


_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {here!r})
    from ex_solvers import SleepSolver
    from discreteopt.executors import Processes
    if __name__ == "__main__":
        pool = Processes(1).start()
        pool.solve(SleepSolver(0.0), torch.randn(1, 2))
        print(pool.worker_pids()[0], flush=True)
        pool.solve(SleepSolver(60.0), torch.randn(1, 2))
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
                         ids=["ctrl-c", "parent-killed"])
def test_no_orphan_worker_when_the_parent_is_interrupted_or_killed(tmp_path, sig):
    script = tmp_path / "parent.py"
    script.write_text(_SCRIPT.format(here=str(HERE)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), proc.stderr.read()
        worker = int(line)
        time.sleep(0.3)  # the worker is inside the 60 s solve
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert wait_until(lambda: not proc_alive(worker), timeout=15), f"worker {worker} outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ===================================================================== CUDA in the parent
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_pool_with_cuda_initialised_in_the_parent(start_method):
    costs = (torch.rand(16, 12, 12, device="cuda") + 0.1).double()  # CUDA initialised here, before the pool
    assert torch.cuda.is_initialized()
    with Processes(2, start_method=start_method) as pool:
        y = pool.solve(GridShortestPath(backend="numba"), costs, timeout=120)
        assert y.device == costs.device and y.dtype == costs.dtype
        assert torch.equal(y.cpu(), GridShortestPath(backend="numba").solve(costs.cpu()))
        rows = pool.solve(ProbeSolver(), torch.zeros(4, 4, device="cuda"), timeout=120).cpu().numpy()
        np.testing.assert_array_equal(rows[:, 1:3], [[1.0, 0.0]] * 4)  # workers: CUDA hidden, never initialised
