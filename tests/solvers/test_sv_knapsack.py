"""Knapsack (64-item solver, time-boxed branch and bound with its CP-SAT fallback, CP-SAT, SCIP) against brute
force and scipy's MILP; rational weights; ties as ILP; back-end choice; its error contract. Extreme scales run
in subprocesses: tests/solvers/test_hard_solvers.py and test_bnb_extreme_integers_in_a_subprocess below."""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from discreteopt.data import generate_knapsack
from discreteopt.executors import Threads
from discreteopt.solvers import ILP, InstanceError, Knapsack

BACKENDS = ["items64", "bnb", "cpsat", "scip"]
FORCE_FALLBACK = 1e-9  # seconds: OR-Tools' time limit is reached at the first branching (its safety margin)


def brute_force(theta: np.ndarray, weights: np.ndarray, capacity: np.ndarray, tol: float = 1e-9) -> float:
    """Best <theta, x> over x in {0,1}^n with weights @ x <= capacity (x = 0 is always feasible)."""
    xs = np.array(list(itertools.product((0.0, 1.0), repeat=theta.shape[0])))  # [2^n, n]
    ok = np.all(xs @ weights.T <= capacity + tol, axis=1)
    return float((xs[ok] @ theta).max())


def milp_value(theta: np.ndarray, weights: np.ndarray, capacity: np.ndarray) -> float:
    n = theta.shape[0]
    res = milp(-theta, constraints=LinearConstraint(weights, -np.inf, capacity), integrality=np.ones(n),
               bounds=Bounds(0, 1))
    assert res.success
    return -res.fun


@st.composite
def knapsacks(draw):
    n = draw(st.integers(1, 9))
    m = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = rng.integers(0, 10, (m, n)).astype(float)
    if draw(st.booleans()):  # 2-decimal weights (PyEPO's), exact for the integer back-ends
        weights = np.round(weights + rng.integers(0, 100, (m, n)) / 100, 2)
    capacity = rng.integers(0, 5 * n, m).astype(float) + draw(st.sampled_from([0.0, 0.5, 0.37]))
    theta = rng.integers(-3, 6, (4, n)).astype(float)  # [B, n]: zeros, negatives and ties
    return weights, capacity, theta


@settings(max_examples=60, deadline=None)
@given(case=knapsacks(), backend=st.sampled_from(["auto", *BACKENDS]),
       budget=st.sampled_from([None, 5e-3, FORCE_FALLBACK]))
def test_matches_brute_force(case, backend, budget):
    """All back-ends; ``bnb`` alone (no budget), time-boxed and always handing over to CP-SAT."""
    weights, capacity, theta = case
    if backend == "items64" and weights.shape[0] > 1:
        backend = "auto"
    solver = Knapsack(weights if weights.shape[0] > 1 else weights[0], capacity, backend=backend,
                      bnb_budget=budget)
    x = solver.solve(torch.from_numpy(theta)).numpy()
    assert x.shape == theta.shape
    assert solver.is_feasible(x).all()
    assert not (x[theta < 0]).any()  # an item with a negative value only lowers the objective
    if solver.backend == "items64" or solver.backend == "bnb" and solver.fallbacks == 0:
        assert not (x[theta <= 0]).any()  # documented: the OR-Tools knapsack solvers never pick theta <= 0
    if solver.backend != "bnb" or budget is None:
        assert solver.fallbacks == 0
    best = [brute_force(t, weights, capacity) for t in theta]
    np.testing.assert_allclose((theta * x).sum(1), best, atol=1e-9)


def test_backend_choice_by_rows_size_and_weights():
    rng = np.random.default_rng(0)
    assert Knapsack(rng.integers(1, 9, 64).astype(float), 30).backend == "items64"
    assert Knapsack(rng.integers(1, 9, 65).astype(float), 30).backend == "bnb"
    assert Knapsack(rng.integers(1, 9, (2, 10)).astype(float), [30, 30]).backend == "bnb"
    assert Knapsack(np.round(rng.uniform(3, 8, (3, 80)), 2), [50, 50, 50]).backend == "bnb"
    # profits beyond the exact range of the OR-Tools knapsack solvers (n * 10**digits >= 2**53): CP-SAT
    assert Knapsack(np.ones(9), 3, digits=15).backend == "items64"  # 9e15 < 2**53
    assert Knapsack(np.ones(10), 3, digits=15).backend == "cpsat"
    assert Knapsack(np.ones((2, 10)), [3, 3], digits=15).backend == "cpsat"
    assert Knapsack(np.ones((2, 9)), [3, 3], digits=15).backend == "bnb"
    assert Knapsack([1 / 3, 2 / 3, 1.0], 1.0).backend == "scip"  # not an exact decimal
    assert Knapsack([2.0**60, 2.0**60], 2.0**61).backend == "scip"  # scaled totals beyond 2**53


@pytest.mark.parametrize("m", [1, 3])
def test_many_items_match_scipy_milp(m):
    """n = 80 items (CP-SAT since n > 64), float theta, default digits: the optimum of scipy's HiGHS."""
    rng = np.random.default_rng(m)
    n = 80
    weights = rng.integers(1, 50, (m, n)).astype(float)
    capacity = np.floor(weights.sum(1) / 3)
    theta = rng.normal(1.0, 1.0, (3, n))
    solver = Knapsack(weights, capacity)
    assert solver.backend == "bnb"
    x = solver.solve(torch.from_numpy(theta)).numpy()
    for b in range(3):
        bound = n * np.abs(theta[b]).max() * 1e-9  # documented precision
        assert np.all(weights @ x[b] <= capacity)
        assert theta[b] @ x[b] >= milp_value(theta[b], weights, capacity) - bound - 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "cpsat", "scip"])
def test_many_items_match_scipy_milp_long(backend):
    """The long version: 20 instances of n = 80, 3 rows, integer and PyEPO-style 2-decimal weights."""
    rng = np.random.default_rng(11)
    n = 80
    for weights in (rng.integers(1, 50, (3, n)).astype(float), rng.integers(300, 800, (3, n)) / 100):
        capacity = np.floor(weights.sum(1) / 3)
        theta = rng.normal(1.0, 1.0, (10, n))
        x = Knapsack(weights, capacity, backend=backend).solve(torch.from_numpy(theta)).numpy()
        for b in range(len(theta)):
            assert np.all(weights @ x[b] <= capacity + 1e-9)
            bound = n * np.abs(theta[b]).max() * 1e-9  # documented precision
            assert theta[b] @ x[b] >= milp_value(theta[b], weights, capacity) - bound


def test_pyepo_two_decimal_weights_are_exact():
    """2-decimal weights are scaled exactly: a capacity met with equality is feasible (0.1 + 0.2 = 0.3 in
    decimals, 0.30000000000000004 in floats), and one hundredth too much is not."""
    for backend in BACKENDS:
        solver = Knapsack([0.1, 0.2, 0.7], 0.3, backend=backend)
        assert solver.solve(torch.tensor([[1.0, 1.0, 1.5]])).tolist() == [[1.0, 1.0, 0.0]]
        tight = Knapsack([[3.17, 4.25], [1.01, 1.0]], [7.42, 2.0],
                         backend="auto" if backend == "items64" else backend)
        assert tight.solve(torch.tensor([[1.0, 1.0]])).tolist() == [[0.0, 1.0]] or \
            tight.solve(torch.tensor([[1.0, 1.0]])).tolist() == [[1.0, 0.0]]  # 1.01 + 1.0 > 2.0: one fits
    solver = Knapsack([[3.17, 4.25], [1.0, 1.0]], [7.42, 2.0])
    assert solver.solve(torch.tensor([[1.0, 1.0]])).tolist() == [[1.0, 1.0]]  # 3.17 + 4.25 = 7.42 exactly


def test_rational_weights_match_milp():
    """PyEPO-style data: 2-decimal weights in [3, 8), integer values (many ties), 2 rows."""
    rng = np.random.default_rng(5)
    n = 32
    weights = rng.integers(300, 800, (2, n)) / 100
    capacity = np.array([20.0, 20.0])
    theta = rng.integers(1, 11, (4, n)).astype(float)
    for backend in ("cpsat", "scip"):
        x = Knapsack(weights, capacity, backend=backend).solve(torch.from_numpy(theta)).numpy()
        for b in range(4):
            assert np.all(weights @ x[b] <= capacity + 1e-9)
            assert theta[b] @ x[b] == pytest.approx(milp_value(theta[b], weights, capacity), abs=1e-6)


def test_non_decimal_weights_use_scip():
    weights = np.array([[1 / 3, 2 / 3, 1 / 7, 0.5], [np.pi, 1.0, np.e, 2.0]])
    capacity = np.array([1.0, 5.0])
    solver = Knapsack(weights, capacity)
    assert solver.backend == "scip"
    theta = np.array([[1.0, 2.0, 0.5, 1.5], [3.0, -1.0, 2.0, 0.1]])
    x = solver.solve(torch.from_numpy(theta)).numpy()
    np.testing.assert_allclose((theta * x).sum(1), [brute_force(t, weights, capacity) for t in theta])
    with pytest.raises(ValueError, match="weights must be integers or decimals with at most 6 places"):
        Knapsack(weights, capacity, backend="cpsat")


@pytest.mark.parametrize("backend", ["cpsat", "scip"])
def test_ties_broken_as_ilp(backend):
    """Deliberate ties (equal values and weights, integer sums): Knapsack returns exactly the x of the ILP
    with the same back-end and digits, instance by instance (not only the same objective value)."""
    rng = np.random.default_rng(3)
    n = 12
    weights = np.stack([np.repeat([1.0, 2.0, 3.0], 4), np.round(np.tile([0.5, 1.25], 6), 2)])  # [2, n]
    capacity = np.array([7.0, 4.5])
    theta = np.concatenate([np.ones((1, n)), rng.integers(1, 3, (7, n)).astype(float),
                            np.zeros((1, n)), np.repeat([[2.0, 1.0, 1.0]], 4, axis=1)])  # [10, n]
    t = torch.from_numpy(theta)
    for digits in (4, 9):
        ks = Knapsack(weights, capacity, digits=digits, backend=backend).solve(t)
        ilp = ILP(A_ub=weights, b_ub=capacity, bounds=(0, 1), backend=backend, cpsat_digits=digits).solve(t)
        assert torch.equal(ks, ilp)
    # the default back-end of a multi-row knapsack (time-boxed branch and bound) breaks ties its own way: the
    # same optimal values as that ILP (exactly its answers after a fallback: test_bnb_fallback_is_cpsat)
    ilp = ILP(A_ub=weights, b_ub=capacity, backend="cpsat", cpsat_digits=9).solve(t)
    default = Knapsack(weights, capacity)
    assert default.backend == "bnb"
    torch.testing.assert_close((default.solve(t) * t).sum(1), (ilp * t).sum(1))
    # a 1-row problem through SCIP is exactly the default ILP (ties and all)
    one = Knapsack(weights[0], capacity[0], backend="scip").solve(t)
    assert torch.equal(one, ILP(A_ub=weights[:1], b_ub=capacity[:1]).solve(t))


def test_agrees_with_ilp_backends_in_value():
    rng = np.random.default_rng(7)
    w = rng.integers(1, 30, 12).astype(float)
    theta = torch.from_numpy(rng.normal(size=(5, 12)))
    y = Knapsack(w, 60).solve(theta)
    for backend in ("scip", "cpsat"):
        z = ILP(A_ub=w[None], b_ub=[60.0], backend=backend).solve(theta)
        torch.testing.assert_close((theta * y).sum(1), (theta * z).sum(1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_scaling_is_relative_per_instance(backend):
    """Each instance is scaled by its own max |theta| (powers of two here, so the problems are identical)."""
    w = np.array([3.0, 4.0, 5.0, 6.0])
    base = np.array([1.0, 2.0, 2.5, 4.125])
    theta = np.stack([base, np.ldexp(base, -40), np.ldexp(base, 40), np.ldexp(base, -1050),
                      np.ldexp(base, 1000)])
    x = Knapsack(w, 9, backend=backend).solve(torch.from_numpy(theta)).numpy()
    assert (x == [1.0, 0.0, 0.0, 1.0]).all()


# ----------------------------------------------------------- the time-boxed branch and bound and its fallback
BRANCHING_W = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 2.5]])  # [2, 3]: no two items fit together in either row
BRANCHING_C = np.array([3.0, 3.0])


def branching_thetas() -> torch.Tensor:
    """``[5, 3]``: the LP bound (1.5 items) beats every integer solution (1 item), so the branch and bound has
    to branch and a budget of ``FORCE_FALLBACK`` always stops it; row 2 has no candidate: it reaches no
    solver."""
    return torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [-1.0, -2.0, -0.5], [3.0, 1.0, 2.0],
                         [2.0, 2.0, 1.0]], dtype=torch.float64)


def test_bnb_fallback_is_cpsat_and_counted():
    """A budget that expires at once hands every branching instance to CP-SAT: the answers are exactly those
    of backend='cpsat' (ties included), each row lands where it belongs, and ``fallbacks`` counts them."""
    t = branching_thetas()
    cpsat = Knapsack(BRANCHING_W, BRANCHING_C, backend="cpsat").solve(t)
    assert cpsat[1].tolist() == [0.0, 0.0, 1.0] and cpsat[3].tolist() == [1.0, 0.0, 0.0]
    assert cpsat[2].sum() == 0
    forced = Knapsack(BRANCHING_W, BRANCHING_C, bnb_budget=FORCE_FALLBACK)
    assert forced.backend == "bnb" and forced.fallbacks == 0
    assert torch.equal(forced.solve(t), cpsat)
    assert forced.fallbacks == 4  # every row but the one without candidates
    assert torch.equal(forced.solve(t[3:4]), cpsat[3:4]) and forced.fallbacks == 5
    alone = Knapsack(BRANCHING_W, BRANCHING_C, bnb_budget=None)  # no time box: the B&B proves every optimum
    y = alone.solve(t)
    assert alone.fallbacks == 0
    assert torch.equal(y[1:4], cpsat[1:4])  # unique optima
    torch.testing.assert_close((y * t).sum(1), (cpsat * t).sum(1))
    default = Knapsack(BRANCHING_W, BRANCHING_C)  # 5 ms is plenty for 3 items: the B&B answers them all
    assert default.bnb_budget == 5e-3 and torch.equal(default.solve(t), y) and default.fallbacks == 0


def test_bnb_fallbacks_counted_across_threads_and_reset_by_the_recipe():
    forced = Knapsack(BRANCHING_W, BRANCHING_C, bnb_budget=FORCE_FALLBACK)
    t = branching_thetas().repeat(8, 1)  # [40, 3]
    ex = Threads(2)
    try:
        y = ex.solve(forced, t)
    finally:
        ex.close()
    assert torch.equal(y, Knapsack(BRANCHING_W, BRANCHING_C, backend="cpsat").solve(t))
    assert forced.fallbacks == 32
    rebuilt = pickle.loads(pickle.dumps(forced.spec())).build()
    assert rebuilt.bnb_budget == FORCE_FALLBACK and rebuilt.fallbacks == 0
    copy = pickle.loads(pickle.dumps(forced))  # the lock does not travel; the copy counts on
    assert torch.equal(copy.solve(t[:5]), y[:5]) and copy.fallbacks == 36


def test_time_limit_within_the_budget_leaves_no_time_box():
    """``time_limit <= bnb_budget``: the branch and bound alone answers or raises TIME_LIMIT; no fallback."""
    solver = Knapsack(BRANCHING_W, BRANCHING_C, bnb_budget=FORCE_FALLBACK, time_limit=FORCE_FALLBACK)
    with pytest.raises(InstanceError) as err:
        solver.solve(branching_thetas()[2:])  # row 0 has no candidates; row 1 has to branch
    assert (err.value.index, err.value.status, err.value.solver) == (1, "TIME_LIMIT", "Knapsack[bnb]")
    assert solver.fallbacks == 0
    assert solver.solve(branching_thetas()[2:3]).sum() == 0  # usable afterwards


def test_a_failed_fallback_names_its_instance_in_the_batch():
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 1000, (10, 300)).astype(float)
    solver = Knapsack(weights, np.floor(weights.sum(1) / 2), time_limit=0.02, bnb_budget=FORCE_FALLBACK)
    theta = torch.from_numpy(np.concatenate([-np.ones((2, 300)), rng.random((2, 300))]))  # rows 2, 3: hard
    with pytest.raises(InstanceError) as err:
        solver.solve(theta)
    assert (err.value.index, err.value.status, err.value.solver) == (2, "TIME_LIMIT", "Knapsack[bnb]")
    assert solver.fallbacks == 2


@pytest.mark.parametrize("budget", [5e-3, FORCE_FALLBACK, None])
def test_auto_matches_milp_on_pyepo_data(budget):
    """PyEPO's knapsack data (2-decimal weights, capacity 20 per row; its values, integers with ties, and
    real-valued predictions): the default solver reaches scipy's optimum whoever answers, the branch and bound
    or CP-SAT after it. 32 items x 2 rows (the PtO benchmark) and 40 x 3 with a looser capacity."""
    rng = np.random.default_rng(1)
    for items, dim, cap in ((32, 2, 20.0), (40, 3, 40.0)):
        data = generate_knapsack(4, num_items=items, dim=dim, deg=4, noise_width=0.5, seed=3)
        theta = np.concatenate([data.c, data.c + rng.normal(0.0, 1.0, data.c.shape)]).astype(np.float64)
        capacity = np.full(dim, cap)
        solver = Knapsack(data.weights, capacity, bnb_budget=budget)
        assert solver.backend == "bnb"
        x = solver.solve(torch.from_numpy(theta)).numpy()
        assert solver.is_feasible(x).all()
        for b in range(len(theta)):
            bound = items * np.abs(theta[b]).max() * 1e-9  # documented precision
            assert theta[b] @ x[b] >= milp_value(theta[b], data.weights, capacity) - bound - 1e-9
        if budget == FORCE_FALLBACK:
            assert solver.fallbacks > 0
        elif budget is None:
            assert solver.fallbacks == 0


BNB_SCRIPT = r"""
import itertools, numpy as np, torch
from discreteopt.solvers import Knapsack

def best(theta, w, cap):
    xs = np.array(list(itertools.product((0.0, 1.0), repeat=theta.shape[0])))
    ok = np.all(xs @ w.T <= cap, axis=1)
    return (xs[ok] @ theta).max()

rng = np.random.default_rng(0)
solved = 0
for trial in range(60):
    n, m = int(rng.integers(1, 8)), int(rng.integers(1, 4))
    unit = float(rng.choice([1.0, 2.0**30, 2.0**45]))  # integer weights up to 2**48 (row totals below 2**53)
    w = rng.integers(0, 9, (m, n)).astype(float) * unit
    cap = {0: np.zeros(m), 1: np.floor(w.sum(1) / 2), 2: np.full(m, 1e300)}[trial % 3]
    digits = [9, 15][trial % 2] if n <= 9 else 9
    for budget in (None, 1e-9):
        solver = Knapsack(w if m > 1 else w[0], cap, backend="bnb", bnb_budget=budget, digits=digits)
        for tshift in (-1070, 0, 1000):
            theta = np.ldexp(rng.integers(-3, 9, (2, n)) + rng.random((2, n)) / 16, tshift)
            x = solver.solve(torch.from_numpy(theta)).numpy()
            assert solver.is_feasible(x).all(), (trial, budget, tshift)
            for b in range(2):
                t = np.ldexp(theta[b], -tshift)
                want = best(t, w, np.minimum(cap, w.sum(1)))
                tol = n * np.abs(t).max() * 10.0**-digits * 2 + 1e-9
                assert t @ x[b] >= want - tol, (trial, budget, tshift, b)
            solved += 1
assert solved == 360, solved
print("ALL OK")
"""


def test_bnb_extreme_integers_in_a_subprocess():
    """The branch and bound gets integer weights up to 2**48, capacities of 0 and 1e300, profits of up to
    10**15 and theta from subnormal to 2**1000, with and without its fallback: no abort, the optimum each
    time."""
    proc = subprocess.run([sys.executable, "-c", BNB_SCRIPT], capture_output=True, text=True, timeout=300)
    tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
    assert proc.returncode == 0 and "ALL OK" in proc.stdout, tail


def test_near_ties_follow_the_documented_precision():
    for backend in ("items64", "cpsat"):
        solver = Knapsack([1.0, 1.0], 1, digits=3, backend=backend)
        assert solver.solve(torch.tensor([[1.0, 1.01]])).tolist() == [[0.0, 1.0]]
        theta = np.array([[1.0, 1.0 + 1e-6]])  # closer than 10**-3: a tie, either item is within the bound
        x = solver.solve(torch.from_numpy(theta)).numpy()
        assert x.sum() == 1 and theta[0] @ x[0] >= theta.max() - 2 * theta.max() * 1e-3


def test_nonpositive_items_and_empty_candidates():
    solver = Knapsack([[1.0, 1.0, 1.0]], [5.0])
    assert solver.backend == "items64"
    y = solver.solve(torch.tensor([[-1.0, 0.0, 2.0], [-1.0, -2.0, 0.0], [-1.0, 1e-12, 1.0]]))
    # theta = 1e-12 rounds to profit 0 at 9 digits: never picked by the 64-item solver (documented)
    assert y.tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_capacity_beyond_the_total_and_zero_capacity():
    for backend in BACKENDS:
        big = Knapsack([1.0, 2.0, 3.0], 1e300, backend=backend)
        assert big.solve(torch.tensor([[1.0, 1.0, 1.0]])).tolist() == [[1.0, 1.0, 1.0]]
        zero = Knapsack([1.0, 0.0, 3.0], 0.0, backend=backend)  # only the weightless item fits
        assert zero.solve(torch.tensor([[1.0, 1.0, 1.0]])).tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize("backend", ["auto", "scip"])
def test_time_limit_raises_and_the_solver_recovers(backend):
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 1000, (10, 300)).astype(float)
    solver = Knapsack(weights, np.floor(weights.sum(1) / 2), time_limit=0.02, backend=backend)
    with pytest.raises(InstanceError) as err:
        solver.solve(torch.from_numpy(rng.random((2, 300))))
    assert err.value.index == 0 and err.value.status == "TIME_LIMIT"
    assert err.value.solver == f"Knapsack[{solver.backend}]"
    easy = torch.zeros(1, 300)
    easy[0, 0] = 1.0  # optimum: item 0 alone (every other value is 0), found at once
    assert solver.solve(easy)[0, 0] == 1.0


def test_items64_time_limit_resets_its_solver():
    solver = Knapsack(np.arange(1.0, 11.0), 20, backend="items64", time_limit=1e-9)
    try:
        solver.solve(torch.rand(1, 10, generator=torch.Generator().manual_seed(0)) + 0.1)
    except InstanceError as err:
        assert err.status == "TIME_LIMIT"
        assert getattr(solver._local, "knapsack", None) is None  # rebuilt on the next call
    assert solver.solve(torch.zeros(1, 10)).sum() == 0


@pytest.mark.parametrize("backend", ["auto", "cpsat", "scip"])
def test_spec_pickle_roundtrip_determinism_dtype(backend):
    rng = np.random.default_rng(4)
    solver = Knapsack(rng.integers(1, 9, (2, 10)) / 4, [15.0, 20.0], backend=backend)
    theta = torch.from_numpy(rng.normal(size=(6, 10))).float()
    y = solver.solve(theta)
    assert y.dtype == torch.float32 and y.shape == (6, 10)
    assert torch.equal(y, solver.solve(theta))
    assert torch.equal(pickle.loads(pickle.dumps(solver)).solve(theta), y)  # after a solve
    rebuilt = pickle.loads(pickle.dumps(solver.spec())).build()
    assert repr(rebuilt) == repr(solver) and torch.equal(rebuilt.solve(theta), y)
    assert rebuilt.backend == solver.backend
    one_dim = Knapsack([1.0, 2.0, 3.0], 3)
    assert one_dim.spec().build().weights.shape == (1, 3)
    assert Knapsack(np.arange(1.0, 5.0), 3).solve(torch.zeros(0, 4)).shape == (0, 4)


def test_is_feasible_tolerates_decimal_round_off():
    solver = Knapsack([0.1, 0.2], 0.3)
    assert solver.is_feasible(np.array([[1.0, 1.0], [1.0, 0.0], [0.5, 0.0]])).tolist() == [True, True, False]
    assert not Knapsack([0.1, 0.2], 0.29).is_feasible(np.array([[1.0, 1.0]]))[0]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([1.0, -2.0], 3), {}, "weights must be non-negative"),
        (([1.0, np.nan], 3), {}, "weights must be finite"),
        (([True, False], 3), {}, "weights must hold numbers, not booleans"),
        (([1.0 + 1j, 2.0], 3), {}, "weights must be real"),
        ((["a", "b"], 3), {}, "weights must be a numeric array"),
        (([[1.0, 2.0], [1.0]], 3), {}, "weights must be a rectangular numeric array"),
        (([[[1.0]]], 3), {}, r"weights must have shape \[n\] or \[m, n\]"),
        (([], 3), {}, r"weights must have shape \[n\] or \[m, n\]"),
        ((np.zeros((0, 3)), 3), {}, r"weights must have shape \[n\] or \[m, n\]"),
        (([1.0, 2.0], -1), {}, "capacity must be non-negative"),
        (([1.0, 2.0], np.inf), {}, "capacity must be finite"),
        (([1.0, 2.0], True), {}, "capacity must hold numbers, not booleans"),
        (([[1.0, 2.0], [1.0, 1.0]], [1.0, 2.0, 3.0]), {}, r"capacity must be a scalar or an array \[m=2\]"),
        (([1.0], 1), {"digits": 0}, "digits"),
        (([1.0], 1), {"digits": True}, "digits"),
        (([1.0], 1), {"time_limit": 0}, "time_limit"),
        (([1.0], 1), {"time_limit": True}, "time_limit"),
        (([1.0], 1), {"backend": "bb"}, "backend must be one of"),
        (([1.0], 1), {"bnb_budget": 0}, "bnb_budget"),
        (([1.0], 1), {"bnb_budget": -1e-3}, "bnb_budget"),
        (([1.0], 1), {"bnb_budget": float("nan")}, "bnb_budget"),
        (([1.0], 1), {"bnb_budget": True}, "bnb_budget"),
        (([1 / 3, 1.0], 1), {"backend": "bnb"}, "decimals with at most 6 places"),
        ((np.ones((2, 10)), [3, 3]), {"backend": "bnb", "digits": 15}, "exact profit range"),
        (([1.0], 1), {"backend": ["scip"]}, "backend must be one of"),
        (([[1.0, 2.0], [1.0, 1.0]], [1.0, 2.0]), {"backend": "items64"}, "one capacity row"),
        ((np.ones(65), 3), {"backend": "items64"}, "at most 64 items"),
        (([1 / 3, 1.0], 1), {"backend": "items64"}, "decimals with at most 6 places"),
        ((np.ones(64), 3), {"backend": "items64", "digits": 15}, "exact profit range"),
    ],
)
def test_bad_constructor_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Knapsack(*args, **kwargs)


def test_bad_theta():
    solver = Knapsack([1.0, 2.0], 2)
    with pytest.raises(ValueError, match=r"theta must have shape \[B, n\] with event shape \(2,\)"):
        solver.solve(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="theta must be finite"):
        solver.solve(torch.tensor([[float("inf"), 1.0]]))
    with pytest.raises(ValueError, match="theta must have a floating dtype"):
        solver.solve(torch.tensor([[1, 2]]))
