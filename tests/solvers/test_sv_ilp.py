"""ILP (OR-Tools: SCIP, CP-SAT, GLOP) against brute force, scipy oracles, and its error contract."""

from __future__ import annotations

import itertools
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from discreteopt.solvers import ILP, InstanceError

INTEGER_BACKENDS = ["scip", "cpsat"]


# ---------------------------------------------------------------------------- oracles
def brute_force(theta, A_ub, b_ub, A_eq, b_eq, ub: int, sense: str = "max"):
    """Best objective over x in {0..ub}^n satisfying the constraints, or None when none does."""
    n = theta.shape[0]
    xs = np.array(list(itertools.product(range(ub + 1), repeat=n)), dtype=np.float64)  # [K, n]
    ok = np.ones(len(xs), dtype=bool)
    if A_ub is not None:
        ok &= np.all(xs @ A_ub.T <= b_ub, axis=1)
    if A_eq is not None:
        ok &= np.all(xs @ A_eq.T == b_eq, axis=1)
    if not ok.any():
        return None
    vals = xs[ok] @ theta
    return vals.max() if sense == "max" else vals.min()


@st.composite
def integer_programs(draw):
    """Small integer programs with integer data (ties are frequent) and 0..ub variables."""
    n = draw(st.integers(1, 6))
    ub = draw(st.sampled_from([1, 1, 2]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    m_ub = draw(st.integers(0, 3))
    m_eq = draw(st.integers(0, 1))
    A_ub = rng.integers(-2, 5, (m_ub, n)).astype(float) if m_ub else None
    b_ub = rng.integers(0, 3 * n, m_ub).astype(float) if m_ub else None
    A_eq = rng.integers(0, 3, (m_eq, n)).astype(float) if m_eq else None
    b_eq = rng.integers(0, 2 * n, m_eq).astype(float) if m_eq else None
    theta = rng.integers(-3, 4, (3, n)).astype(float)  # [B, n], small integers -> ties
    sense = draw(st.sampled_from(["max", "min"]))
    return dict(A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, ub=ub, sense=sense, n=n), theta


# ---------------------------------------------------------------------------- optimality
@pytest.mark.parametrize("backend", INTEGER_BACKENDS)
@settings(max_examples=30, deadline=None)
@given(case=integer_programs())
def test_integer_programs_match_brute_force(backend, case):
    args, theta = case
    ub, sense = args["ub"], args["sense"]
    solver = ILP(A_ub=args["A_ub"], b_ub=args["b_ub"], A_eq=args["A_eq"], b_eq=args["b_eq"],
                 bounds=(0, ub), sense=sense, backend=backend, n=args["n"])
    best = [brute_force(t, args["A_ub"], args["b_ub"], args["A_eq"], args["b_eq"], ub, sense) for t in theta]
    if best[0] is None:  # the constraint set is empty: every instance is infeasible, the first one reports it
        with pytest.raises(InstanceError) as err:
            solver.solve(torch.from_numpy(theta))
        assert err.value.index == 0 and err.value.status == "INFEASIBLE"
        return
    x = solver.solve(torch.from_numpy(theta)).numpy()
    assert x.shape == theta.shape
    assert solver.is_feasible(x).all()
    np.testing.assert_allclose((theta * x).sum(1), best, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sense=st.sampled_from(["max", "min"]))
def test_mixed_integer_and_lp_match_scipy(seed, sense):
    """SCIP on a MILP with some continuous variables, and GLOP on the LP, against scipy's HiGHS."""
    rng = np.random.default_rng(seed)
    n, m = 6, 3
    A_ub = rng.uniform(0, 3, (m, n))
    b_ub = rng.uniform(2, 6, m)
    lb, ub = np.zeros(n), rng.integers(1, 4, n).astype(float)
    integrality = rng.random(n) < 0.5
    theta = rng.normal(size=(2, n))  # [B, n]
    sign = -1.0 if sense == "max" else 1.0  # scipy minimises
    cons = LinearConstraint(A_ub, -np.inf, b_ub)
    for backend, integ in (("scip", integrality), ("glop", np.zeros(n, bool))):
        x = ILP(A_ub=A_ub, b_ub=b_ub, bounds=(lb, ub), integrality=integ, sense=sense,
                backend=backend).solve(torch.from_numpy(theta)).numpy()
        for b in range(2):
            ref = milp(sign * theta[b], constraints=cons, integrality=integ.astype(int), bounds=Bounds(lb, ub))
            assert ref.success
            assert np.all(A_ub @ x[b] <= b_ub + 1e-6) and np.all((x[b] >= lb - 1e-9) & (x[b] <= ub + 1e-9))
            assert np.allclose(x[b][integ], np.round(x[b][integ]))
            assert theta[b] @ x[b] == pytest.approx(sign * ref.fun, abs=1e-6)


def test_lp_alias_and_linprog():
    rng = np.random.default_rng(3)
    A_eq, b_eq = np.ones((1, 5)), np.array([2.5])
    theta = rng.normal(size=(4, 5))
    x = ILP(A_eq=A_eq, b_eq=b_eq, backend="lp", bounds=(0, 1)).solve(torch.from_numpy(theta)).numpy()
    for b in range(4):
        ref = linprog(-theta[b], A_eq=A_eq, b_eq=b_eq, bounds=(0, 1))
        assert theta[b] @ x[b] == pytest.approx(-ref.fun, abs=1e-7)


def test_general_integer_bounds_and_negative_lower_bounds():
    """Variables in [-2, 3] with a coupling constraint, checked by enumeration over that box."""
    rng = np.random.default_rng(0)
    A_ub, b_ub = np.array([[1.0, 1.0, 1.0], [1.0, -2.0, 0.0]]), np.array([2.0, 1.0])
    theta = rng.integers(-3, 4, (6, 3)).astype(float)
    box = np.array(list(itertools.product(range(-2, 4), repeat=3)), dtype=float)
    box = box[np.all(box @ A_ub.T <= b_ub, axis=1)]
    for backend in INTEGER_BACKENDS:
        x = ILP(A_ub=A_ub, b_ub=b_ub, bounds=(-2, 3), backend=backend).solve(torch.from_numpy(theta)).numpy()
        np.testing.assert_allclose((theta * x).sum(1), (box @ theta.T).max(0))


# ---------------------------------------------------------------------------- CP-SAT precision
def test_cpsat_scaling_is_per_instance_relative():
    """Tiny or huge theta are scaled per instance: an absolute rounding would zero them out."""
    w = np.array([[3.0, 4.0, 5.0, 6.0]])
    theta = np.array([[1.0, 2.0, 2.5, 4.1], [1e-9, 2e-9, 2.5e-9, 4.1e-9], [1e9, 2e9, 2.5e9, 4.1e9]])
    x = ILP(A_ub=w, b_ub=[9.0], backend="cpsat").solve(torch.from_numpy(theta)).numpy()
    assert (x == x[0]).all()
    assert theta[0] @ x[0] == pytest.approx(5.1)  # items 0 and 3


def test_cpsat_near_ties_follow_the_documented_precision():
    one_of_two = dict(A_ub=[[1.0, 1.0]], b_ub=[1.0], backend="cpsat", cpsat_digits=3)
    solver = ILP(**one_of_two)
    # 1e-2 relative difference > 10**-3: resolved correctly
    assert solver.solve(torch.tensor([[1.0, 1.01]])).tolist() == [[0.0, 1.0]]
    # 1e-5 relative difference < 10**-3: a tie for CP-SAT; either answer is within the bound
    theta = np.array([[1.0, 1.0 + 1e-5]])
    x = solver.solve(torch.from_numpy(theta)).numpy()
    bound = np.abs(theta).max() * 10.0**-3 * 2  # max|theta| * 10**-digits * sum_i max(|lb|, |ub|)
    assert x.sum() == 1 and theta[0] @ x[0] >= theta.max() - bound


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), digits=st.integers(1, 3))
def test_cpsat_gap_within_documented_bound(seed, digits):
    rng = np.random.default_rng(seed)
    n = 7
    A_ub, b_ub = rng.integers(1, 6, (2, n)).astype(float), np.array([8.0, 9.0])
    theta = rng.normal(size=(3, n)) * 10.0 ** rng.uniform(-6, 6)
    x = ILP(A_ub=A_ub, b_ub=b_ub, backend="cpsat", cpsat_digits=digits).solve(torch.from_numpy(theta)).numpy()
    for b in range(3):
        best = brute_force(theta[b], A_ub, b_ub, None, None, 1)
        bound = np.abs(theta[b]).max() * 10.0**-digits * n
        assert theta[b] @ x[b] >= best - bound * (1 + 1e-9)


# ---------------------------------------------------------------------------- statuses
@pytest.mark.parametrize(
    ("backend", "A_eq", "b_eq"),
    [("scip", [[2.0, 2.0]], [3.0]),  # no integer point on 2x + 2y = 3
     ("cpsat", [[2.0, 2.0]], [3.0]),
     ("glop", [[1.0, 1.0]], [3.0])],  # x + y = 3 misses the box [0, 1]^2
)
def test_infeasible_raises_for_instance_zero(backend, A_eq, b_eq):
    solver = ILP(A_eq=A_eq, b_eq=b_eq, bounds=(0, 1), backend=backend)
    with pytest.raises(InstanceError, match="instance 0 .*INFEASIBLE") as err:
        solver.solve(torch.ones(3, 2))
    assert err.value.index == 0 and err.value.status == "INFEASIBLE"


@pytest.mark.parametrize("backend", ["scip", "glop"])
def test_unbounded_names_the_failing_instance(backend):
    """max theta * x s.t. x <= 5 with x free: bounded for theta > 0, unbounded for theta < 0."""
    solver = ILP(A_ub=[[1.0]], b_ub=[5.0], bounds=(None, None), backend=backend)
    assert solver.solve(torch.tensor([[1.0], [2.0]])).tolist() == [[5.0], [5.0]]
    with pytest.raises(InstanceError) as err:
        solver.solve(torch.tensor([[1.0], [2.0], [-1.0], [3.0]]))
    assert err.value.index == 2 and err.value.status == "UNBOUNDED"
    assert "instance 2" in str(err.value)


@pytest.mark.parametrize("backend", INTEGER_BACKENDS)
def test_time_limit_on_a_market_split_instance(backend):
    """Market split (Cornuejols-Dawande) instances are notoriously hard for branch and bound."""
    rng = np.random.default_rng(0)
    A = rng.integers(0, 100, (4, 36)).astype(float)
    solver = ILP(A_eq=A, b_eq=np.floor(A.sum(1) / 2), backend=backend, time_limit=0.1)
    with pytest.raises(InstanceError) as err:
        solver.solve(torch.ones(2, 36))
    assert err.value.index == 0 and err.value.status == "TIME_LIMIT"
    assert "time_limit=0.1" in err.value.detail


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize("backend", ["scip", "cpsat", "glop"])
def test_spec_pickle_roundtrip_determinism_dtype(backend):
    rng = np.random.default_rng(1)
    w = rng.integers(1, 9, (2, 8)).astype(float)
    kw = dict(A_ub=w, b_ub=[12.0, 14.0], backend=backend)
    if backend == "glop":
        kw["integrality"] = False
    solver = ILP(**kw)
    theta = torch.from_numpy(rng.normal(size=(5, 8))).float()
    y = solver.solve(theta)
    assert y.dtype == torch.float32 and y.shape == (5, 8)
    assert torch.equal(y, solver.solve(theta))  # deterministic, model reused
    state = pickle.dumps(solver)  # after a solve: the live OR-Tools model must not be pickled
    assert torch.equal(pickle.loads(state).solve(theta), y)
    rebuilt = pickle.loads(pickle.dumps(solver.spec())).build()
    assert repr(rebuilt) == repr(solver)
    assert torch.equal(rebuilt.solve(theta), y)
    theta64 = theta.double().numpy()
    np.testing.assert_array_equal(rebuilt.solve_numpy(theta64), solver.solve_numpy(theta64))
    # an instance's answer does not depend on the instances solved before it
    np.testing.assert_array_equal(rebuilt.solve_numpy(theta64[::-1])[::-1], solver.solve_numpy(theta64))


def test_threads_get_their_own_model():
    rng = np.random.default_rng(2)
    solver = ILP(A_ub=rng.integers(1, 9, (1, 20)).astype(float), b_ub=[30.0])
    chunks = [rng.normal(size=(6, 20)) for _ in range(6)]
    expected = [solver.solve_numpy(c) for c in chunks]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(solver.solve_numpy, chunks))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)


def test_sense_min_and_maximize():
    w = np.array([[1.0, 1.0, 1.0, 1.0]])
    theta = torch.tensor([[3.0, -1.0, 2.0, -4.0]])
    lo = ILP(A_eq=w, b_eq=[2.0], sense="min")
    hi = ILP(A_eq=w, b_eq=[2.0], sense="max")
    assert lo.solve(theta).tolist() == [[0.0, 1.0, 0.0, 1.0]]
    assert lo.maximize(theta).tolist() == hi.solve(theta).tolist() == [[1.0, 0.0, 1.0, 0.0]]
    assert ILP(n=3).sense == "max" and lo.sense == "min"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(A_ub=[[1.0, np.nan]], b_ub=[1.0]), "A_ub must be finite"),
        (dict(A_ub=[1.0, 2.0], b_ub=[1.0]), "A_ub must be a 2-D"),
        (dict(A_ub=[[1.0, 2.0]], b_ub=[1.0, 2.0]), r"b_ub must have shape \[1\]"),
        (dict(A_ub=[[1.0, 2.0]], b_ub=[np.inf]), "b_ub must be finite"),
        (dict(A_ub=[[1.0, 2.0]]), "b_ub is required"),
        (dict(b_eq=[1.0]), "A_eq is required"),
        (dict(A_ub=[[1.0, 2.0]], b_ub=[1.0], A_eq=[[1.0, 2.0, 3.0]], b_eq=[1.0]), "A_eq implies n=3"),
        (dict(n=3, bounds=(1, 0)), "bounds must satisfy"),
        (dict(n=3, bounds=(0, [1, 1])), r"bounds\[ub\]"),
        (dict(n=3, bounds=(0, 1, 2)), "bounds must be a pair"),
        (dict(n=3, integrality=[True, False]), "integrality implies n=2"),
        (dict(), "number of variables"),
        (dict(n=2, backend="gurobi"), "backend must be one of"),
        (dict(n=2, sense="maximum"), "sense must be"),
        (dict(n=2, time_limit=-1.0), "time_limit"),
        (dict(n=2, backend="glop", integrality=True), "integrality: backend 'glop'"),
        (dict(n=2, backend="cpsat", integrality=[True, False]), "integrality: backend 'cpsat'"),
        (dict(A_ub=[[1 / 3, 1.0]], b_ub=[1.0], backend="cpsat"), "A_ub row 0 must hold integers or decimals"),
        (dict(A_eq=[[1.0, 1.0]], b_eq=[1 / 3], backend="cpsat"), "b_eq entry 0 must hold integers or decimals"),
        (dict(A_ub=[[2.0**60, 2.0**60]], b_ub=[1.0], backend="cpsat"), "A_ub row 0 has entries too large"),
        (dict(A_ub=[[2.0**40, 2.0**40]], b_ub=[1.0], bounds=(0, 2**14), backend="cpsat"), "too large for CP-SAT"),
        (dict(A_ub=[[True, False]], b_ub=[1.0]), "A_ub must hold numbers, not booleans"),
        (dict(A_ub=[[1.0, 2.0j]], b_ub=[1.0]), "A_ub must be real"),
        (dict(A_ub=[["1", "x"]], b_ub=[1.0]), "A_ub must be a numeric array"),
        (dict(A_ub=[[1.0, 2.0], [1.0]], b_ub=[1.0, 1.0]), "A_ub must be a rectangular numeric array"),
        (dict(A_ub=[[1.0, 2.0]], b_ub=[True]), "b_ub must hold numbers, not booleans"),
        (dict(n=2, bounds=(False, True)), r"bounds\[lb\] must hold numbers, not booleans"),
        (dict(n=2, bounds=(0, np.nan)), r"bounds\[ub\] must be free of NaN"),
        (dict(n=2, time_limit=True), "time_limit"),
        (dict(n=2, backend=["scip"]), "backend must be one of"),
        (dict(n=True), "n must be an integer"),
        (dict(n=2, cpsat_digits=True), "cpsat_digits"),
        (dict(A_ub=[[1.0, 1.0]], b_ub=[1e300], bounds=(None, None)), r"b_ub\[0\] = 1e\+300 is beyond what SCIP"),
        (dict(A_eq=[[1.0, 1.0]], b_eq=[-1e300], bounds=(None, 0), backend="glop"), r"b_eq\[0\] = -1e\+300"),
        (dict(n=2, bounds=(0, None), backend="cpsat"), "bounds must be finite"),
        (dict(n=2, bounds=(0.2, 0.8), backend="cpsat"), "no integer value"),
        (dict(n=2, bounds=(0, 1e9), backend="cpsat", cpsat_digits=12), "overflows"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ILP(**kwargs)


def test_bad_theta():
    solver = ILP(A_ub=[[1.0, 1.0, 1.0]], b_ub=[2.0])
    with pytest.raises(ValueError, match=r"theta must have shape \[B, n\] with event shape \(3,\)"):
        solver.solve(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"theta must have shape \[B, n\] \(2 dims\)"):
        solver.solve(torch.zeros(3))
    with pytest.raises(ValueError, match="theta must be finite; got 1 NaN"):
        solver.solve(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="theta must be finite"):
        solver.solve_numpy(np.array([[0.0, np.inf, 1.0]]))


# ---------------------------------------------------------------------------- scaling and robustness
@pytest.mark.parametrize("backend", ["scip", "cpsat", "glop"])
def test_objective_scale_does_not_change_the_answer(backend):
    """Any finite scale reaches the back-end in range: theta times powers of two (exact) gives the same x, from
    subnormal (2**-1050) to 2**1000 (1e20 made SCIP answer ABNORMAL; subnormal theta overflowed CP-SAT's scale)."""
    rng = np.random.default_rng(8)
    A_ub = rng.integers(1, 6, (2, 7)).astype(float)
    kw = dict(A_ub=A_ub, b_ub=[8.0, 9.0], backend=backend)
    if backend == "glop":
        kw["integrality"] = False
    solver = ILP(**kw)
    base = np.round(rng.normal(size=(4, 7)), 3)
    ref = solver.solve(torch.from_numpy(base))
    for shift in (-1050, -300, -40, 40, 66, 300, 1000):
        scaled = torch.from_numpy(np.ldexp(base, shift))
        assert torch.equal(solver.solve(scaled), ref), shift
    assert torch.equal(solver.solve(torch.zeros(1, 7)), solver.solve(torch.zeros(1, 7)))  # theta = 0: any x


def test_large_objective_coefficient_does_not_poison_the_solver():
    """Issue 10.2: one coefficient ~1e20 made SCIP answer ABNORMAL, and every later call on the same object
    too. Now the instance is solved (exact power-of-two scaling) and later calls are unaffected."""
    solver = ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[4.0])
    x = solver.solve(torch.tensor([[1e20, 2.0, 3.0]], dtype=torch.float64)).numpy()
    assert x[0, 0] == 1.0 and solver.is_feasible(x).all()  # 2 and 3 are below SCIP's 1e-9 of 1e20: ties
    assert solver.solve(torch.tensor([[1.0, 2.5, 3.0]], dtype=torch.float64)).tolist() == [[1.0, 0.0, 1.0]]
    fresh = ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[4.0])
    assert fresh.solve(torch.tensor([[1.0, 2.5, 3.0]], dtype=torch.float64)).tolist() == [[1.0, 0.0, 1.0]]


@pytest.mark.parametrize("backend", ["scip", "cpsat", "glop"])
def test_a_failed_instance_rebuilds_the_model(backend):
    """After a non-optimal status the thread's back-end model is discarded (a fresh one answers the next call)."""
    kw = dict(A_ub=[[1.0]], b_ub=[5.0], backend=backend)
    if backend == "cpsat":  # CP-SAT needs finite bounds: make the instance infeasible instead
        kw = dict(A_eq=[[2.0]], b_eq=[3.0], bounds=(0, 5), backend="cpsat")
    else:
        kw["bounds"] = (None, None)
    solver = ILP(**kw)
    first = solver._model()
    with pytest.raises(InstanceError):
        solver.solve(torch.tensor([[-1.0]] if backend != "cpsat" else [[1.0]]))
    assert getattr(solver._local, "model", None) is None
    if backend != "cpsat":
        assert solver.solve(torch.tensor([[1.0]])).tolist() == [[5.0]]
        assert solver._model() is not first


def test_a_back_end_left_broken_by_a_failure_is_replaced(monkeypatch):
    """Simulates SCIP's stuck state: a model that failed once fails forever. The solver must not reuse it."""
    from discreteopt.solvers import ilp as ilp_module

    real_solve = ilp_module._ScipModel.solve

    def solve(self, c):
        if getattr(self, "broken", False) or c[0] > 100:
            self.broken = True
            return "ABNORMAL", None, ""
        return real_solve(self, c)

    monkeypatch.setattr(ilp_module._ScipModel, "solve", solve)
    solver = ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[4.0])
    with pytest.raises(InstanceError, match="ABNORMAL"):
        solver.solve(torch.tensor([[1000.0, 2.0, 3.0]]))
    assert solver.solve(torch.tensor([[1.0, 2.5, 3.0]])).tolist() == [[1.0, 0.0, 1.0]]


def test_extreme_constraint_rows_and_right_hand_sides():
    """Rows with coefficients of 2**70 (> SCIP's 1e20 infinity) or 2**-1000 are scaled exactly; a right-hand
    side of 1e300 is redundant, -1e300 infeasible (was 'SCIP rejected the model' for every call)."""
    theta = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    for scale in (2.0**70, 2.0**-1000, 1.0):
        for backend in ("scip", "glop"):
            kw = dict(integrality=False) if backend == "glop" else {}
            solver = ILP(A_ub=np.array([[1.0, 1.0, 2.0]]) * scale, b_ub=[3.0 * scale], backend=backend, **kw)
            assert solver.solve(theta).tolist() == [[0.0, 1.0, 1.0]], (scale, backend)
    for backend in ("scip", "glop", "cpsat"):
        kw = dict(integrality=False) if backend == "glop" else {}
        free = ILP(A_ub=[[1.0, 1.0, 1.0]], b_ub=[1e300], backend=backend, **kw)
        assert free.solve(theta).tolist() == [[1.0, 1.0, 1.0]]
        none = ILP(A_ub=[[1.0, 1.0, 1.0]], b_ub=[-1e300], backend=backend, **kw)
        with pytest.raises(InstanceError, match="INFEASIBLE"):
            none.solve(theta)


def test_cpsat_accepts_exact_decimal_rows_and_agrees_with_scip():
    rng = np.random.default_rng(12)
    A_ub = rng.integers(300, 800, (2, 10)) / 100  # PyEPO-style 2-decimal weights
    b_ub = np.array([12.5, 14.07])
    A_eq = np.array([np.round(np.linspace(0.1, 1.0, 10), 1)])
    theta = torch.from_numpy(rng.normal(size=(6, 10)))
    cp = ILP(A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.5], backend="cpsat", cpsat_digits=12)
    sc = ILP(A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.5])
    x, z = cp.solve(theta).numpy(), sc.solve(theta).numpy()
    assert cp.is_feasible(x).all()
    np.testing.assert_allclose((theta.numpy() * x).sum(1), (theta.numpy() * z).sum(1), atol=1e-9)
    # 0.29 is 0.28999999999999998 in binary: scaled exactly to 29, so x0 = 1 (weight 0.29) fits
    assert ILP(A_ub=[[0.29, 1.0]], b_ub=[0.29], backend="cpsat").solve(torch.tensor([[1.0, 0.5]])).tolist() == [
        [1.0, 0.0]]


def test_solutions_have_no_negative_zero():
    solver = ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[3.0])
    y = solver.solve(torch.tensor([[1e-15, 1.0, 2.0]], dtype=torch.float64))
    assert not torch.signbit(y).any()
