"""``Ray``: same results as inline, a killed actor replaced and its chunk retried, a reproducible crash named,
timeouts, errors reaching the caller, lazy import. Runs a local Ray instance (2 CPUs) for this module."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest
import torch
from conftest import HERE, proc_alive, wait_until
from ex_solvers import POISON, CrashSolver, ProbeSolver, SleepSolver

from discreteopt.executors import Inline, Ray, WorkerCrashed
from discreteopt.solvers import ILP, GridShortestPath, InstanceError, Knapsack, TopK

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def ray_runtime():
    try:
        import ray
    except ImportError:
        pytest.skip("Ray is not installed (pip install 'discreteopt[ray]')")
    # actors must import the test solvers by module name, like spawned worker processes
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), old) if p)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 -- e.g. no shared memory / sockets in a sandbox
        pytest.skip(f"a local Ray instance cannot start here: {type(exc).__name__}: {exc}")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_ex(ray_runtime):
    ex = Ray(2, num_cpus=0.5).start()  # leaves one of the instance's 2 CPUs to the other executors below
    ex.worker_pids()  # wait until both actors run
    yield ex
    ex.close()


def test_same_results_as_inline(ray_ex):
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    w = rng.integers(1, 20, size=12)
    cases = [
        (GridShortestPath(), torch.rand(37, 12, 12, generator=g) * 9 + 0.1),
        (ILP(A_ub=np.stack([w, np.ones(12)]), b_ub=np.array([50.0, 4.0])), torch.randn(9, 12, generator=g).float()),
        (Knapsack(w, 45), torch.rand(11, 12, generator=g, dtype=torch.float64)),
        (TopK(3), torch.randn(8, 10, generator=g)),
    ]
    for solver, theta in cases:
        expected = Inline().solve(solver, theta)
        got = ray_ex.solve(solver, theta, timeout=120)
        assert got.dtype == theta.dtype and torch.equal(got, expected), type(solver).__name__
    chunks = [rng.uniform(0.1, 5, size=(b, 6, 6)) for b in (3, 0, 5)]
    for got, c in zip(ray_ex.map(GridShortestPath().spec(), chunks), chunks, strict=True):
        np.testing.assert_array_equal(got, GridShortestPath().solve_numpy(c))


def test_actors_are_isolated_from_cuda(ray_ex):
    rows = ray_ex.solve(ProbeSolver(), torch.zeros(4, 4), timeout=120).numpy()
    assert set(rows[:, 0].astype(int)) <= set(ray_ex.worker_pids())
    np.testing.assert_array_equal(rows[:, 1:], [[1.0, 0.0, 1.0]] * 4)


def test_killed_actor_is_replaced_and_its_chunk_retried(ray_ex):
    solver = SleepSolver(0.1, per_instance=True)
    theta = torch.randn(20, 5, generator=torch.Generator().manual_seed(1))
    before, pids = ray_ex.stats, ray_ex.worker_pids()
    fut = ray_ex.submit(solver, theta)
    time.sleep(0.4)
    os.kill(pids[0], signal.SIGKILL)
    assert torch.equal(fut.result(timeout=120), Inline().solve(solver, theta))
    stats = ray_ex.stats
    assert stats.get("died", 0) - before.get("died", 0) == 1
    assert stats.get("retries", 0) - before.get("retries", 0) == 1
    assert pids[0] not in ray_ex.worker_pids() and not proc_alive(pids[0])


def test_chunk_that_always_crashes_names_the_instance(ray_ex):
    theta = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    theta[1, 0] = POISON
    with pytest.raises(WorkerCrashed, match="while solving instance 1 of the batch, 2 time") as info:
        ray_ex.solve(CrashSolver(), theta, timeout=120)
    assert (info.value.start, info.value.stop) == (1, 2)
    theta[1, 0] = 0.0
    assert torch.equal(ray_ex.solve(CrashSolver(), theta, timeout=120), Inline().solve(CrashSolver(), theta))


def test_timeout_and_errors_reach_the_caller(ray_ex):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="timeout=0.5"):
        ray_ex.solve(SleepSolver(30.0), torch.randn(4, 3), timeout=0.5)
    assert time.monotonic() - t0 < 10
    solver = ILP(bounds=(0, None), n=3)
    theta = -torch.rand(10, 3) - 0.1
    theta[8, 0] = 2.0
    with pytest.raises(InstanceError) as info:
        ray_ex.solve(solver, theta, timeout=120)
    assert info.value.index == 8 and info.value.status == "UNBOUNDED"
    bad = torch.rand(3, 12, 12)
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="costs must be finite"):
        ray_ex.submit(GridShortestPath(), bad)


def test_close_kills_the_actors(ray_runtime):
    ex = Ray(1, num_cpus=0.5).start()
    pids = ex.worker_pids()
    fut = ex.submit(SleepSolver(30.0), torch.randn(2, 3))
    ex.close()
    with pytest.raises(RuntimeError, match="closed"):
        fut.result(timeout=10)
    assert wait_until(lambda: not any(proc_alive(p) for p in pids), timeout=30)


def test_missing_ray_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'discreteopt\[ray\]'"):
        Ray(2)


def test_a_failed_call_leaves_the_actors_usable(ray_ex):
    """Issue 10.2 under Ray: a solver whose call raised a back-end error is dropped from the actors' caches and
    rebuilt (FragileSolver stays broken once it failed); the 1e20 objective that made SCIP ABNORMAL is solved."""
    from test_hard_executors import POISON as FRAGILE_POISON
    from test_hard_executors import FragileSolver

    theta = torch.randn(6, 4, generator=torch.Generator().manual_seed(5))
    poisoned = theta.clone()
    poisoned[0, 0] = FRAGILE_POISON
    expected = Inline().solve(FragileSolver(), theta)
    with pytest.raises(RuntimeError, match="poisoned instance"):
        ray_ex.solve(FragileSolver(), poisoned, timeout=120)
    for _ in range(3):
        assert torch.equal(ray_ex.solve(FragileSolver(), theta, timeout=120), expected)
    solver = ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[4.0])
    assert (ray_ex.solve(solver, torch.tensor([[1e20, 2.0, 3.0]] * 2), timeout=120)[:, 0] == 1).all()
    good = torch.tensor([[1.0, 2.5, 3.0]] * 2)
    assert ray_ex.solve(ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[4.0]), good, timeout=120).tolist() == [[1.0, 0.0, 1.0]] * 2
