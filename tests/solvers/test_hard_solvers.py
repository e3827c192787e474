"""Hardening (issue 10): every finite input handed to OR-Tools is safe (run in subprocesses, so that an abort of the
interpreter fails the test instead of killing pytest), a failed instance poisons nothing, bad input is a clear
ValueError naming the argument, for Knapsack, ILP, Assignment, TopK and Argmax."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from discreteopt.solvers import ILP, Argmax, Assignment, InstanceError, Knapsack, TopK

ROOT = Path(__file__).resolve().parents[2]


def run_isolated(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; a native abort shows as a negative return code, not a dead pytest."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def assert_survived(proc: subprocess.CompletedProcess) -> None:
    tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
    assert proc.returncode == 0, f"the subprocess died with return code {proc.returncode}:\n{tail}"
    assert "ALL OK" in proc.stdout, tail


# Knapsack at every scale: theta, weights and capacities multiplied by powers of two (exact), so the answer must
# have the optimal value of the well-scaled problem; a back-end that cannot represent the data may refuse it in
# the constructor with a ValueError. Runs under Inline and Threads(2).
KNAPSACK_SCRIPT = r"""
import itertools, numpy as np, torch
from discreteopt.executors import Inline, Threads
from discreteopt.solvers import Knapsack

def best(theta, w, cap):
    xs = np.array(list(itertools.product((0.0, 1.0), repeat=theta.shape[0])))
    ok = np.all(xs @ w.T <= cap, axis=1)
    return (xs[ok] @ theta).max()

rng = np.random.default_rng(0)
n = 6
W = rng.integers(0, 8, (2, n)).astype(float)
CAP = np.floor(W.sum(1) / 2)
TH = rng.integers(-2, 9, (3, n)).astype(float) + rng.random((3, n)) / 16   # [B, n]
counts = {"solved": 0, "refused": 0}
ex = {"inline": Inline(), "threads": Threads(2)}
for rows in (1, 2):
    w0, c0 = W[:rows], CAP[:rows]
    for wshift in (0, -1070, 50, 1000):                 # subnormal to 2**1000 weights
        for cap_mode in ("base", "huge", "zero"):
            w = np.ldexp(w0, wshift)
            cap = {"base": np.ldexp(c0, wshift), "huge": np.full(rows, 1e300), "zero": np.zeros(rows)}[cap_mode]
            with np.errstate(over="ignore"):
                c_ref = np.ldexp(cap, -wshift)  # the capacity of the well-scaled problem (inf: no limit)
            for backend in ("auto", "items64", "cpsat", "scip"):
                try:
                    solver = Knapsack(w if rows > 1 else w[0], cap, backend=backend)
                except ValueError:
                    counts["refused"] += 1
                    continue
                for tshift in (-1060, 0, 500, 1000):
                    theta = np.ldexp(TH, tshift)
                    for name, e in ex.items():
                        x = e.solve(solver, torch.from_numpy(theta)).numpy()
                        assert solver.is_feasible(x).all(), (rows, wshift, cap_mode, backend, tshift, name)
                        for b in range(len(TH)):
                            got, want = TH[b] @ x[b], best(TH[b], w0, c_ref)
                            assert got >= want - 1e-6 * abs(want), (rows, wshift, cap_mode, backend, tshift, name, b)
                        counts["solved"] += 1
                # mixed scales in one instance: the item worth 2**1000 must be taken
                mixed = np.array([[2.0**-1060, 2.0**1000, 1e-300, 3.0, 2.0**-1, 1e-310]])
                for name, e in ex.items():
                    x = e.solve(solver, torch.from_numpy(mixed)).numpy()
                    if (w0[:, 1] <= c_ref).all():
                        assert x[0, 1] == 1.0, (rows, wshift, cap_mode, backend, name)
                    assert solver.is_feasible(x).all()
ex["threads"].close()
assert counts["solved"] > 300, counts
print(counts)
print("ALL OK")
"""

ILP_SCRIPT = r"""
import numpy as np, torch
from scipy.optimize import linprog, milp, LinearConstraint, Bounds
from discreteopt.executors import Inline, Threads
from discreteopt.solvers import ILP, InstanceError

rng = np.random.default_rng(1)
n = 5
A = rng.integers(1, 6, (2, n)).astype(float)
b = np.array([7.0, 8.0])
TH = np.round(rng.normal(size=(3, n)), 3)
ex = {"inline": Inline(), "threads": Threads(2)}
counts = {"solved": 0, "refused": 0, "infeasible": 0}
def reference(rhs_ref, integ):
    out = []
    for t in TH:
        if integ:
            r = milp(-t, constraints=LinearConstraint(A, -np.inf, rhs_ref), integrality=np.ones(n),
                     bounds=Bounds(0, 1))
        else:
            r = linprog(-t, A_ub=A, b_ub=rhs_ref, bounds=(0, 1))
        out.append(-r.fun)
    return np.array(out)

for backend in ("scip", "cpsat", "glop"):
    integ = backend != "glop"
    for rshift in (0, -1000, 70, 1000):                 # rows of 2**-1000 .. 2**1000 (SCIP's infinity: 1e20)
        for rhs_mode in ("base", "huge", "minus_huge"):
            rhs = {"base": np.ldexp(b, rshift), "huge": np.full(2, 1e300), "minus_huge": np.full(2, -1e300)}[rhs_mode]
            with np.errstate(over="ignore"):
                rhs_ref = np.clip(np.ldexp(rhs, -rshift), -1e6, 1e6)  # the well-scaled problem's right-hand side
            ref = None if rhs_mode == "minus_huge" else reference(rhs_ref, integ)
            try:
                solver = ILP(A_ub=np.ldexp(A, rshift), b_ub=rhs, backend=backend, integrality=integ)
            except ValueError:
                counts["refused"] += 1
                continue
            for tshift in (-1060, -300, 0, 66, 300, 1000):
                theta = torch.from_numpy(np.ldexp(TH, tshift))
                for name, e in ex.items():
                    try:
                        x = e.solve(solver, theta).numpy()
                    except InstanceError as err:
                        assert rhs_mode == "minus_huge" and err.status == "INFEASIBLE", (backend, rshift, rhs_mode, err)
                        counts["infeasible"] += 1
                        continue
                    assert rhs_mode != "minus_huge"
                    assert np.all(x @ A.T <= rhs_ref * (1 + 1e-9) + 1e-6), (backend, rshift, tshift)
                    np.testing.assert_allclose((TH * x).sum(1), ref, rtol=1e-6, atol=1e-9,
                                               err_msg=str((backend, rshift, rhs_mode, tshift, name)))
                    counts["solved"] += 1
ex["threads"].close()
assert counts["solved"] > 150 and counts["infeasible"] > 30, counts
print(counts)
print("ALL OK")
"""


def test_knapsack_every_finite_scale_in_a_subprocess():
    """Issue 10.1: subnormal profits overflowed the integer scaling (an OR-Tools CHECK aborted the interpreter
    or a wrong answer came back). Every scale from subnormal to 2**1000, weights and capacities included."""
    assert_survived(run_isolated(KNAPSACK_SCRIPT))


def test_ilp_every_finite_scale_in_a_subprocess():
    """Issue 10.1/10.2: CP-SAT raised TypeError on tiny theta; SCIP answered ABNORMAL for coefficients >= 1e20 and
    rejected right-hand sides of -1e300. Every back-end, under Inline and Threads."""
    assert_survived(run_isolated(ILP_SCRIPT))


def test_knapsack_subnormal_profits_exact_answer():
    """The audit's case, in process now that it is safe: the optimum of the well-scaled problem."""
    for backend in ("items64", "cpsat", "scip"):
        solver = Knapsack([1.0, 2.0, 3.0], 4, backend=backend)
        theta = torch.tensor([[1e-310, 2e-310, 3e-310], [5e-324, 0.0, 5e-324]], dtype=torch.float64)
        x = solver.solve(theta)
        assert x[0].tolist() == [1.0, 0.0, 1.0]
        assert x[1, 0] == 1.0 and x[1, 2] == 1.0 or backend == "items64" and x[1].sum() >= 1


def test_failed_instance_then_valid_instance_on_the_same_object():
    """A failure (time limit, infeasibility, SCIP trouble) leaves the same solver object usable."""
    ilp = ILP(A_ub=[[1.0, 2.0, 3.0]], b_ub=[4.0])
    big = torch.tensor([[1e20, 2.0, 3.0]], dtype=torch.float64)
    assert ilp.solve(big)[0, 0] == 1.0
    assert ilp.solve(torch.tensor([[1.0, 2.5, 3.0]])).tolist() == [[1.0, 0.0, 1.0]]
    infeasible = ILP(A_eq=[[2.0, 2.0]], b_eq=[3.0], bounds=(0, 5))
    with pytest.raises(InstanceError, match="INFEASIBLE"):
        infeasible.solve(torch.ones(1, 2))
    with pytest.raises(InstanceError, match="INFEASIBLE"):  # the same answer again, not a stale state
        infeasible.solve(torch.ones(1, 2))


# ---------------------------------------------------------------------------- input audit (issue 10.5)
SOLVERS = {
    "Argmax": (Argmax(), (3,)),
    "TopK": (TopK(2), (3,)),
    "Assignment": (Assignment(), (2, 3)),
    "Knapsack": (Knapsack([1.0, 2.0, 3.0], 3), (3,)),
    "ILP": (ILP(A_ub=[[1.0, 1.0, 1.0]], b_ub=[2.0]), (3,)),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_bad_theta_is_a_value_error_naming_theta(name):
    solver, event = SOLVERS[name]
    bad = {
        "bool": torch.ones(2, *event, dtype=torch.bool),
        "int": torch.ones(2, *event, dtype=torch.int64),
        "complex": torch.ones(2, *event, dtype=torch.complex64),
        "nan": torch.full((2, *event), float("nan")),
        "inf": torch.full((2, *event), float("-inf")),
        "no batch dim": torch.ones(*event),
        "extra dim": torch.ones(2, 1, *event),
        "list": [[1.0] * event[-1]],
        "numpy": np.ones((2, *event)),
    }
    for what, theta in bad.items():
        with pytest.raises(ValueError, match="theta") as err:
            solver.solve(theta)
        assert "theta" in str(err.value), what
    empty_event = (0,) if len(event) == 1 else (1, 0)
    with pytest.raises(ValueError, match="theta"):
        solver.solve(torch.ones(2, *empty_event))
    assert solver.solve(torch.ones(0, *event)).shape[0] == 0  # an empty batch is fine


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: TopK(True), "k must be an integer"),
        (lambda: TopK(np.float64(2.0)), "k must be an integer"),
        (lambda: Assignment(maximize=np.int64(1)), "maximize must be True or False"),
        (lambda: Knapsack([1.0, 2.0], capacity=[True]), "capacity must hold numbers, not booleans"),
        (lambda: Knapsack([1.0, 2.0], capacity=np.nan), "capacity must be finite"),
        (lambda: Knapsack(np.array([1, 2], dtype=np.complex128), 2), "weights must be real"),
        (lambda: Knapsack([1.0, 2.0], 2, time_limit=float("nan")), "time_limit"),
        (lambda: ILP(A_ub=[[1.0, 2.0]], b_ub=np.array([1.0 + 2j])), "b_ub must be real"),
        (lambda: ILP(n=2, integrality=["a", "b"]), "integrality"),
        (lambda: ILP(n=2, sense=["max"]), "sense must be"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("cap", [1.7e308, 1.7976931348623157e308, 1e300])
def test_decimal_rows_with_a_right_hand_side_near_the_float_maximum(cap):
    """A 2-decimal row with a capacity near the float maximum: scaling the right-hand side to integers (x 100)
    overflowed to inf and round(inf) raised OverflowError from the constructor (found by the long fuzz run). The
    row is redundant: clipped to its activity range; an equality that far away is refused by name."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warnings either
        k = Knapsack([0.25, 0.5], cap)
        assert k.solve(torch.tensor([[1.0, 2.0]])).tolist() == [[1.0, 1.0]]
        ilp = ILP(A_ub=[[0.5, 0.25]], b_ub=[cap], bounds=(0, 1), backend="cpsat")
        assert ilp.solve(torch.tensor([[1.0, -1.0]])).tolist() == [[1.0, 0.0]]
        with pytest.raises(ValueError, match="b_eq entry 0 has entries too large for the integer back-end"):
            ILP(A_eq=[[0.5, 0.25]], b_eq=[cap], bounds=(0, 1), backend="cpsat")
