"""Hardening of the pool executors (issue 10): a failed instance leaves worker caches usable, WorkerCrashed says
only what is known, an unreachable Ray address fails fast, chunk_bounds gives one balanced chunk per worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from conftest import HERE

from discreteopt.executors import Inline, WorkerCrashed
from discreteopt.executors._worker import keeps_solver
from discreteopt.executors.base import chunk_bounds
from discreteopt.solvers import ILP, InstanceError, Knapsack
from discreteopt.solvers.base import Solver

pytestmark = pytest.mark.timeout(300)

#: an instance whose first entry equals this makes the solvers below fail
POISON = 666.0


def _argmax_one_hot(theta: np.ndarray) -> np.ndarray:
    out = np.zeros_like(theta)  # [B, n]
    out[np.arange(theta.shape[0]), theta.argmax(axis=1)] = 1.0
    return out


class FragileSolver(Solver):
    """Argmax whose object breaks for good once a call hit a poisoned instance (a stand-in for a native back-end
    left in a bad state, like SCIP after ABNORMAL): reusing it after such a failure gives wrong errors forever."""

    theta_layout = "[B, n]"

    def __init__(self):
        self._broken = False
        self._spec_kwargs = {}

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        if self._broken:
            raise RuntimeError("this solver object is broken: a cached solver was reused after a back-end failure")
        if (theta[:, 0] == POISON).any():
            self._broken = True
            raise RuntimeError("back-end failure on a poisoned instance")
        return _argmax_one_hot(theta)


class AbortSolver(Solver):
    """Argmax, but the process aborts (SIGABRT, as an OR-Tools CHECK failure does) on a poisoned instance."""

    theta_layout = "[B, n]"

    def __init__(self):
        self._spec_kwargs = {}

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        if (theta[:, 0] == POISON).any():
            os.abort()
        return _argmax_one_hot(theta)


# ===================================================================== 10.2: failures poison nothing
def test_bad_instance_then_good_instance_under_processes(proc_pool):
    """One objective coefficient ~1e20 used to leave SCIP answering ABNORMAL in the worker that cached the ILP,
    failing later valid calls of the same object and of a new, equal ILP (same recipe, same cache entry)."""
    solver = ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[4.0])
    bad = torch.tensor([[1e20, 2.0, 3.0]] * 4, dtype=torch.float64)
    good = torch.tensor([[1.0, 2.5, 3.0]] * 4, dtype=torch.float64)
    y = proc_pool.solve(solver, bad, timeout=120)
    assert (y[:, 0] == 1).all() and solver.is_feasible(y.numpy()).all()
    expected = Inline().solve(solver, good)
    assert expected.tolist() == [[1.0, 0.0, 1.0]] * 4
    assert torch.equal(proc_pool.solve(solver, good, timeout=120), expected)
    fresh = ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[4.0])
    assert torch.equal(proc_pool.solve(fresh, good, timeout=120), expected)
    # an infeasible instance (a clean InstanceError) does not break the cached solver either
    tight = ILP(A_eq=[[2.0, 2.0, 2.0]], b_eq=[2.0])  # exactly one item
    theta = torch.tensor([[1.0, 3.0, 2.0]] * 4)
    with pytest.raises(InstanceError, match="INFEASIBLE"):
        proc_pool.solve(ILP(A_eq=[[2.0, 2.0, 2.0]], b_eq=[3.0]), theta, timeout=120)
    assert proc_pool.solve(tight, theta, timeout=120).tolist() == [[0.0, 1.0, 0.0]] * 4


def test_a_solver_whose_call_raised_is_rebuilt_in_the_workers(proc_pool):
    """Worker caches drop a solver whose call raised something other than ValueError/InstanceError: the next call
    (and a new equal solver, which has the same cache key) gets a freshly built one."""
    theta = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    poisoned = theta.clone()
    poisoned[0, 0] = POISON
    expected = Inline().solve(FragileSolver(), theta)
    for _ in range(2):  # both times: the poisoned call fails cleanly, later calls are unaffected
        with pytest.raises(RuntimeError, match="poisoned instance"):
            proc_pool.solve(FragileSolver(), poisoned, timeout=120)
        for _ in range(3):  # several calls: every worker serves chunks of each
            assert torch.equal(proc_pool.solve(FragileSolver(), theta, timeout=120), expected)


def test_keeps_solver_rule():
    assert keeps_solver(ValueError("bad theta"))
    assert keeps_solver(InstanceError("S", 0, "INFEASIBLE"))
    assert not keeps_solver(RuntimeError("back-end trouble"))
    assert not keeps_solver(TypeError("from inside OR-Tools"))


def test_knapsack_with_subnormal_profits_under_processes(proc_pool):
    """Issue 10.1 under Processes: was WorkerCrashed (an OR-Tools CHECK aborted the worker)."""
    solver = Knapsack([1.0, 2.0, 3.0], 4)
    theta = torch.tensor([[1e-310, 2e-310, 3e-310]] * 4, dtype=torch.float64)
    assert proc_pool.solve(solver, theta, timeout=120).tolist() == [[1.0, 0.0, 1.0]] * 4


# ===================================================================== 10.1/10.5: WorkerCrashed says what is known
def test_worker_crashed_message_by_exit_status():
    killed = str(WorkerCrashed("Knapsack", 3, 4, 123, -signal.SIGKILL, 2))
    assert "reproducible" not in killed
    assert "SIGKILL is sent from outside the process" in killed and "not necessarily at fault" in killed
    aborted = str(WorkerCrashed("Knapsack", 3, 4, 123, -signal.SIGABRT, 2))
    assert "native crash inside the solver" in aborted and "every attempt" in aborted
    once = str(WorkerCrashed("Knapsack", 3, 6, 123, 17, 1))
    assert "instances 3..5" in once and "not retried" in once and "its only attempt" in once
    ray = str(WorkerCrashed("Knapsack", 0, 1, None, None, 2))
    assert "exit status is unknown" in ray
    for msg in (killed, aborted, once, ray):
        # never advise running the input in this process: a native abort would end the interpreter
        assert "Solve it with Inline()" not in msg and "Do not re-run this input with Inline()" in msg
        assert "separate process" in msg


def test_native_abort_in_a_worker_is_named_and_the_pool_recovers(proc_pool):
    theta = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    theta[2, 0] = POISON
    with pytest.raises(WorkerCrashed) as info:
        proc_pool.solve(AbortSolver(), theta, timeout=120)
    err = info.value
    assert (err.start, err.stop, err.exitcode, err.attempts) == (2, 3, -signal.SIGABRT, 2)
    assert "killed by SIGABRT" in str(err) and "native crash" in str(err)
    theta[2, 0] = 0.0
    assert torch.equal(proc_pool.solve(AbortSolver(), theta, timeout=120), Inline().solve(AbortSolver(), theta))


# ===================================================================== 10.3: Ray fails fast on a bad address
def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_ray_unreachable_address_fails_fast_in_a_subprocess():
    """Ray(address=<unreachable>) blocked forever in ray.init (deaf to SIGTERM); now ConnectionError naming the
    address within connect_timeout. In a subprocess so that a hang fails the test (timeout) instead of pytest."""
    pytest.importorskip("ray")
    port = _closed_port()
    code = f"""
        import os, time
        from discreteopt.executors import Ray
        for kwargs, env in ((dict(address="127.0.0.1:{port}"), None), (dict(address="ray://127.0.0.1:{port}"), None),
                            (dict(), "127.0.0.1:{port}")):
            if env:
                os.environ["RAY_ADDRESS"] = env
            t0 = time.monotonic()
            try:
                Ray(1, connect_timeout=3, **kwargs).start()
            except ConnectionError as exc:
                assert "127.0.0.1:{port}" in str(exc) and "ray.init was not called" in str(exc), exc
                assert time.monotonic() - t0 < 30, time.monotonic() - t0
            else:
                raise AssertionError("Ray started on an unreachable address")
        print("ALL OK")
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=HERE)
    assert proc.returncode == 0 and "ALL OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_ray_probe_reports_a_silent_host(monkeypatch):
    pytest.importorskip("ray")
    from discreteopt.executors import ray_executor

    def no_answer(addr, timeout):
        raise TimeoutError("timed out")

    monkeypatch.setattr(ray_executor.socket, "create_connection", no_answer)
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=r"'10\.255\.255\.1:6379' \(10\.255\.255\.1:6379; no answer\) "
                                              r"within connect_timeout=2 s"):
        ray_executor.probe_address("10.255.255.1:6379", 2.0)
    assert time.monotonic() - t0 < 5
    assert ray_executor._host_port("ray://head:10001") == ("head", 10001)
    assert ray_executor._host_port("ray://head") == ("head", 10001)
    assert ray_executor._host_port("head") == ("head", 6379)
    assert ray_executor._host_port("[::1]:6380") == ("::1", 6380)
    assert ray_executor._host_port("auto") is None and ray_executor._host_port("local") is None
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_executor.cluster_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert ray_executor.cluster_address(None) == "10.1.2.3:6379"


def test_ray_constructor_arguments():
    pytest.importorskip("ray")
    from discreteopt.executors import Ray

    for bad in (0, -1.0, True, float("inf"), "5"):
        with pytest.raises(ValueError, match="connect_timeout"):
            Ray(1, connect_timeout=bad)
    with pytest.raises(ValueError, match="init_kwargs must not hold 'address'"):
        Ray(1, init_kwargs={"address": "auto"})
    with pytest.raises(ValueError, match="init_kwargs must be a dict"):
        Ray(1, init_kwargs=[("num_cpus", 1)])


# ===================================================================== 10.8: one balanced chunk per worker
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 5, 7, 8, 16])
def test_chunk_bounds_one_balanced_chunk_per_worker(parts):
    """Rounding the chunk size down (or up, as ceil(B/n) does for 9 rows on 4 workers: 3 chunks) leaves workers
    idle or adds a task: every worker gets exactly one chunk, sizes differ by at most one, rows are covered."""
    for batch in range(0, 41):
        bounds = chunk_bounds(batch, parts)
        assert len(bounds) == min(batch, parts), (batch, parts, bounds)
        if not bounds:
            continue
        assert bounds[0][0] == 0 and bounds[-1][1] == batch
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        sizes = [stop - start for start, stop in bounds]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1, (batch, parts, sizes)
