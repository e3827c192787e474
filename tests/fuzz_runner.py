"""Worker side of the fuzz test (``tests/test_fuzz.py``): builds one case from a plain, picklable description, runs
the public entry point it names, checks the answer and reports one outcome.

Outcomes (``run_case(case) -> {"outcome": ..., "detail": ...}``):

* ``"ok"``: a correct answer (shape, dtype, device, finiteness; feasibility and optimality against a brute-force
  oracle where that is cheap); ``"value_error"``; ``"instance_error"`` -- the three allowed ones;
* ``"wrong"``: a check failed (a wrong, infeasible, sub-optimal or non-finite answer); ``"error"``: any other
  exception; ``"harness"``: the case could not be built (a bug of this file).

The parent (:class:`Worker`) runs cases in a persistent subprocess (``python tests/fuzz_runner.py``) and adds two
outcomes of its own: ``"crash"`` (the process died: an abort in native code) and ``"hang"`` (no answer within the
timeout). The worker is restarted after either.

Cases are dicts of numbers, strings, lists and dicts only, so that a failing case prints as a reproducer:
``python -c "import sys; sys.path.insert(0, 'tests'); import fuzz_runner; print(fuzz_runner.run_case(CASE))"``.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np

# ===================================================================== input tensors
#: special values injected at chosen positions of an input
SPECIAL = (0.0, -0.0, 5e-324, -5e-324, 1e-310, 2.2250738585072014e-308, 1e-300, 1.0, -1.0, 65504.0, 1e20, -1e20,
           3.4e38, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308, float("nan"), float("inf"),
           float("-inf"))
KINDS = ("normal", "ints", "zeros", "subnormal", "tiny", "huge", "max", "mixed", "f32edge")
DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "bool", "complex64", "complex128")
VIEWS = ("none", "noncontig", "transposed", "expanded", "neg", "conj", "batch_stride")


def values(kind: str, shape: tuple[int, ...], seed: int, positive: bool = False) -> np.ndarray:
    """float64 values of ``shape`` of one scale ``kind`` (deterministic in ``seed``)."""
    rng = np.random.RandomState(seed % (2**32))
    size = int(np.prod(shape)) if len(shape) else 1
    sign = np.where(rng.rand(size) < 0.5, -1.0, 1.0)
    u = rng.uniform(0.5, 1.0, size)
    if kind == "normal":
        v = rng.standard_normal(size) * 3.0
    elif kind == "ints":
        v = rng.randint(-3, 4, size).astype(np.float64)
    elif kind == "zeros":
        v = np.zeros(size)
    elif kind == "subnormal":
        v = sign * rng.choice([5e-324, 1e-323, 1e-320, 1e-315, 1e-310, 2e-310, 2.2e-308], size)
    elif kind == "tiny":
        v = sign * u * 1e-300
    elif kind == "huge":
        v = sign * u * 1e300
    elif kind == "max":
        v = sign * u * 1.7976931348623157e308
    elif kind == "mixed":
        v = sign * u * rng.choice([5e-324, 1e-310, 1e-30, 1.0, 1e20, 1e300], size)
    elif kind == "f32edge":
        v = sign * rng.choice([1e-45, 1e-40, 6e-8, 65504.0, 1e20, 3.4e38], size)
    else:
        raise KeyError(kind)
    v = v.reshape(shape) if len(shape) else v[:1].reshape(())
    return np.abs(v) if positive else v


def make_tensor(spec: dict, requires_grad: bool = False):
    """A torch tensor from ``spec`` = {shape, kind, seed, dtype, view, inject, positive}. With ``requires_grad``
    (floating dtypes), returns ``(leaf, x)``: ``x`` is the (view of the) leaf passed to the entry point."""
    import torch

    shape = tuple(int(d) for d in spec["shape"])
    v = values(spec.get("kind", "normal"), shape, spec.get("seed", 0), spec.get("positive", False))
    flat = v.reshape(-1)
    for idx, val in spec.get("inject", ()):
        if flat.size:
            flat[int(idx) % flat.size] = val
    dtype = getattr(torch, spec.get("dtype", "float64"))
    view = spec.get("view", "none")
    base = torch.from_numpy(np.array(v))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casts of NaN/huge values to integers
        base = base.to(dtype) if not dtype.is_complex else base.to(torch.complex128).to(dtype)
    grad = requires_grad and (base.is_floating_point() or base.is_complex())
    if view == "noncontig" and base.ndim >= 1:
        big = torch.zeros(*base.shape[:-1], 2 * base.shape[-1], dtype=base.dtype)
        big[..., ::2] = base
        leaf = big.requires_grad_(grad)
        x = leaf[..., ::2]
    elif view == "batch_stride" and base.ndim >= 1:
        big = torch.zeros(2 * base.shape[0], *base.shape[1:], dtype=base.dtype)
        big[::2] = base
        leaf = big.requires_grad_(grad)
        x = leaf[::2]
    elif view == "transposed" and base.ndim >= 2:
        leaf = base.transpose(-1, -2).contiguous().requires_grad_(grad)
        x = leaf.transpose(-1, -2)
    elif view == "expanded" and base.ndim >= 1 and base.shape[0] > 0:
        leaf = base[:1].clone().requires_grad_(grad)
        x = leaf.expand(base.shape)
    elif view == "neg" and (base.is_floating_point() or base.is_complex()):
        leaf = (-base).requires_grad_(grad)
        x = torch._neg_view(leaf)
    elif view == "conj":
        cdtype = base.dtype if base.is_complex() else torch.complex128
        leaf = base.to(cdtype).requires_grad_(requires_grad)
        x = leaf.conj()
    else:
        leaf = base.requires_grad_(grad)
        x = leaf
    return (leaf, x) if requires_grad else x


def shaped(spec: dict, batch: int, event: tuple[int, ...]) -> dict:
    """``spec`` with its ``shape`` set from ``spec["shape_variant"]`` applied to a nominal ``[batch, *event]``."""
    variant = spec.get("shape_variant", "ok")
    shape: tuple[int, ...]
    if variant == "ok":
        shape = (batch, *event)
    elif variant == "empty_batch":
        shape = (0, *event)
    elif variant == "zero_event":
        shape = (batch, *event[:-1], 0) if event else (batch, 0)
    elif variant == "no_batch":
        shape = tuple(event)
    elif variant == "extra_dim":
        shape = (1, batch, *event)
    elif variant == "scalar":
        shape = ()
    elif variant == "huge_empty":
        shape = (10**7, *event[:-1], 0) if event else (10**7, 0)
    elif variant == "empty_huge_event":
        shape = (0, *event[:-1], 10**7) if event else (0, 10**7)
    elif variant == "wrong_event":
        shape = (batch, *event[:-1], (event[-1] + 1) if event else 2)
    else:
        raise KeyError(variant)
    out = dict(spec)
    out["shape"] = list(shape)
    return out


def as64(x) -> np.ndarray:
    """The values a solver sees: float64 numpy, lazy views resolved."""
    return x.detach().resolve_neg().resolve_conj().double().cpu().numpy()


def unit_scale(a: np.ndarray) -> np.ndarray:
    """``a`` times the power of two bringing ``max|a|`` into [0.5, 1): exact apart from underflow, so oracle sums
    of huge values cannot overflow."""
    top = float(np.abs(a).max(initial=0.0))
    return a if top == 0.0 else np.ldexp(a, -math.frexp(top)[1])


class Wrong(AssertionError):
    """A check of the answer failed."""


def check(cond, msg: str) -> None:
    if not bool(cond):
        raise Wrong(msg)


def check_tensor_out(y, shape, dtype, name: str = "y", finite: bool = True) -> None:
    import torch

    check(isinstance(y, torch.Tensor), f"{name} is a {type(y).__name__}, not a tensor")
    check(tuple(y.shape) == tuple(shape), f"{name} has shape {tuple(y.shape)}, expected {tuple(shape)}")
    check(y.dtype == dtype, f"{name} has dtype {y.dtype}, expected {dtype}")
    check(y.device.type == "cpu", f"{name} is on {y.device}")
    if finite and y.numel():
        check(bool(torch.isfinite(y.detach().double()).all()), f"{name} has non-finite entries: {y}")


# ===================================================================== solvers
def _solver_input(case: dict, event: tuple[int, ...]):
    spec = shaped(case["x"], case.get("batch", 2), event)
    return make_tensor(spec)


def _solve_entry(solver, x, entry: str):
    """Call the entry point ``entry`` of ``solver`` on ``x``; returns the tensor result in the natural sense."""
    import torch

    if entry == "solve":
        return solver.solve(x)
    if entry == "maximize":
        y = solver.maximize(torch.neg(x) if solver.sense == "min" and x.is_floating_point() else x)
        return y
    if entry == "solve_numpy":
        arr = x.detach().resolve_neg().resolve_conj().cpu()
        if arr.dtype == torch.bfloat16:
            arr = arr.float()
        out = solver.solve_numpy(arr.numpy())
        check(isinstance(out, np.ndarray) and out.dtype == np.float64, f"solve_numpy returned {type(out)}")
        return torch.from_numpy(out).to(x.dtype)
    raise KeyError(entry)


def _check_solver_output(solver, x, y, out_event) -> np.ndarray:
    import torch

    out_event = tuple(solver.output_shape(tuple(x.shape[1:])))  # the nominal event may differ from x's
    check_tensor_out(y, (x.shape[0], *out_event), x.dtype)
    y64 = y.double().numpy()
    feas = solver.is_feasible(y64) if y64.shape[0] else None
    if feas is not None:
        check(np.all(feas), f"infeasible solution(s) at rows {np.flatnonzero(~np.asarray(feas)).tolist()}: {y}")
    check(not y.requires_grad, "the solution carries an autograd graph")
    del torch
    return y64


def _sanity_after(solver, make_theta, oracle) -> None:
    """The same solver object still answers a valid instance correctly (nothing poisoned by the fuzzed call)."""
    import torch

    theta = make_theta()
    y = solver.solve(torch.from_numpy(theta))
    oracle(theta, y.numpy(), "sanity instance after the fuzzed call")


def _run_solver_case(case, solver, event, out_event, oracle, make_sane):
    """Common driver: fuzzed call + checks; afterwards a valid instance on the same object (poisoning)."""
    x = _solver_input(case, event)
    try:
        y = _solve_entry(solver, x, case.get("entry", "solve"))
        y64 = _check_solver_output(solver, x, y, out_event)
        if y64.shape[0]:
            theta = as64(x)
            rows = _oracle_rows(y64.shape[0])
            oracle(theta[rows], y64[rows], "fuzzed instance")
    finally:
        if make_sane is not None:
            _sanity_after(solver, make_sane, oracle)


def _oracle_rows(b: int, cap: int = 512):
    """Rows the (per-row, pure-Python) oracles check: all up to ``cap``, else the first and last ``cap // 2`` (a
    batch of 10**7 empty instances is solved by the library in milliseconds; checking every row in Python is not)."""
    return slice(None) if b <= cap else np.r_[0:cap // 2, b - cap // 2:b]


def _rel_tol(theta: np.ndarray, rel: float) -> float:
    return rel * float(np.abs(unit_scale(theta)).max(initial=0.0)) * max(theta.shape[-1], 1)


def solver_topk(case):
    from discreteopt.solvers import TopK

    n = case["n"]
    solver = TopK(case["k"])
    k = solver.k

    def oracle(theta, y, where):
        for b in range(theta.shape[0]):
            t, sel = theta[b], y[b] == 1
            check(set(np.unique(y[b])) <= {0.0, 1.0} and sel.sum() == k, f"{where}: row {b} is not a {k}-subset: {y[b]}")
            if sel.all():
                continue
            lo, hi = t[sel].min(), t[~sel].max()
            check(lo >= hi, f"{where}: row {b} is not a top-{k} set (selected min {lo} < unselected max {hi})")
            # ties go to the lower index
            tied_out = np.flatnonzero(~sel & (t == lo))
            tied_in = np.flatnonzero(sel & (t == lo))
            if tied_out.size and tied_in.size:
                check(tied_in.max() < tied_out.min(), f"{where}: row {b}: tie not broken towards the lower index")

    def sane():
        return np.random.RandomState(1).randn(3, max(n, k))

    _run_solver_case(case, solver, (n,), (n,), oracle, sane if k <= 50 else None)


def solver_argmax(case):
    from discreteopt.solvers import Argmax

    n = case["n"]
    solver = Argmax()

    def oracle(theta, y, where):
        for b in range(theta.shape[0]):
            check(set(np.unique(y[b])) <= {0.0, 1.0} and y[b].sum() == 1, f"{where}: row {b} not one-hot: {y[b]}")
            i = int(np.argmax(y[b]))
            check(i == int(np.argmax(theta[b])), f"{where}: row {b}: picked {i}, first argmax {np.argmax(theta[b])}")

    _run_solver_case(case, solver, (n,), (n,), oracle, lambda: np.random.RandomState(2).randn(3, 4))


def _weights(kind: str, shape, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    if kind == "ints":
        return rng.randint(0, 6, shape).astype(np.float64)
    if kind == "decimals":
        return np.round(rng.uniform(0, 5, shape), 2)
    if kind == "reals":
        return rng.randint(1, 7, shape) / 3.0
    if kind == "zero":
        return np.zeros(shape)
    if kind == "huge":
        return rng.uniform(0.5, 1, shape) * 1e300
    if kind == "subnormal":
        return rng.choice([5e-324, 1e-310, 0.0], shape)
    if kind == "mixed":
        return rng.choice([0.0, 1e-310, 1.0, 3.0, 1e20, 1e300], shape)
    if kind == "negative":
        return rng.randint(-3, 4, shape).astype(np.float64)
    if kind == "nan":
        w = rng.randint(0, 6, shape).astype(np.float64)
        w.reshape(-1)[0] = np.nan
        return w
    raise KeyError(kind)


def _enumerate_binary(n: int) -> np.ndarray:
    return np.array(list(itertools.product((0.0, 1.0), repeat=n)))  # [2^n, n]


def solver_knapsack(case):
    from discreteopt.solvers import Knapsack

    n, m = case["n"], case["m"]
    w = _weights(case["weights"], (m, n), case["wseed"])
    wt = w if m > 1 or case.get("weights_2d", False) else w[0]
    cap = _weights(case["capacity"], (m,), case["wseed"] + 1) * case.get("cap_factor", 1.0)
    solver = Knapsack(wt, cap if case.get("cap_vector", True) or m > 1 else float(cap[0]), digits=case["digits"],
                      backend=case["backend"])
    X = _enumerate_binary(n)
    W, C = solver.weights, solver.capacity
    # feasible subsets, exactly (the integer back-ends scale decimals exactly; SCIP holds rows within 1e-6, so a
    # subset within that of a capacity is left out of the comparison both ways)
    act = X @ W.T  # [2^n, m]
    slack = 1e-6 * np.maximum(1.0, np.abs(C))
    strict = np.all(act <= C - slack, axis=1) if solver.backend == "scip" else np.all(act <= C, axis=1)
    digits = solver.digits if solver.backend != "scip" else 8

    def oracle(theta, y, where):
        for b in range(theta.shape[0]):
            t = unit_scale(theta[b])
            best = float((X[strict] @ t).max(initial=0.0)) if strict.any() else 0.0
            got = float(y[b] @ t)
            tol = n * float(np.abs(t).max(initial=0.0)) * 10.0 ** -digits * 2 + 1e-300
            check(got >= best - tol, f"{where}: row {b} sub-optimal: objective {got!r} < brute force {best!r} "
                                     f"(unit-scaled, tol {tol:.3g}); y={y[b]}")

    def sane():
        return np.random.RandomState(3).randn(2, n)

    _run_solver_case(case, solver, (n,), (n,), oracle, sane)


def _ilp_data(case, scaled: bool = True):
    """Constraint data of an ILP case (integer rows, a feasible box point, one optional poisoned entry), then each
    row times ``row_scale``; ``scaled=False``: before that scaling (the same feasible set, the oracle's data)."""
    rng = np.random.RandomState(case["dseed"])
    n = case["n"]
    lo, hi = case["bounds"]
    data = {}
    if case["m_ub"]:
        A = rng.randint(-2, 4, (case["m_ub"], n)).astype(np.float64)
        b = np.maximum(A.clip(min=0).sum(1) * hi * 0.5, 0).round()
        data["A_ub"], data["b_ub"] = A, b
    if case["m_eq"]:
        x0 = rng.randint(lo, hi + 1, n).astype(np.float64)  # a feasible point for the equality rows
        A = rng.randint(0, 3, (case["m_eq"], n)).astype(np.float64)
        data["A_eq"], data["b_eq"] = A, A @ x0
        if "A_ub" in data:  # keep x0 feasible for the inequalities too
            data["b_ub"] = np.maximum(data["b_ub"], data["A_ub"] @ x0)
    if case.get("poison"):  # one bad entry in the constraint data
        key = "A_ub" if "A_ub" in data else ("A_eq" if "A_eq" in data else None)
        if key:
            data[key] = data[key].copy()
            data[key][0, 0] = case["poison"]
    scale = case.get("row_scale", 1.0) if scaled else 1.0
    for a, bb in (("A_ub", "b_ub"), ("A_eq", "b_eq")):
        if a in data and scale != 1.0:
            with np.errstate(all="ignore"):
                data[a] = data[a] * scale
                data[bb] = data[bb] * scale
    return data


def solver_ilp(case):
    import torch
    from scipy.optimize import linprog

    from discreteopt.solvers import ILP

    n = case["n"]
    lo, hi = case["bounds"]
    backend = case["backend"]
    data = _ilp_data(case)
    solver = ILP(**data, bounds=(lo, hi), sense=case["sense"], backend=backend, cpsat_digits=case["digits"])
    integer = backend in ("scip", "cpsat")
    X = np.array(list(itertools.product(range(lo, hi + 1), repeat=n)), dtype=np.float64)
    data = _ilp_data(case, scaled=False)  # scaling a row by s > 0 keeps the feasible set: the oracle's data

    xmax = float(max(abs(lo), abs(hi), 1))

    def feasible(x, rel, floor=1.0):  # [K, n] -> [K]: rows hold within rel times the row's scale
        # (max |a| * max |x| + |b| + floor); floor=0: scale-invariant, as the solver's own row scaling makes it
        ok = np.ones(len(x), dtype=bool)
        for a, bb, eq in (("A_ub", "b_ub", False), ("A_eq", "b_eq", True)):
            if a in data:
                A, b = data[a], data[bb]
                act = x @ A.T
                tol = rel * (np.abs(A).max(1) * xmax + np.abs(b) + floor)
                ok &= np.all(np.abs(act - b) <= tol, axis=1) if eq else np.all(act <= b + tol, axis=1)
        return ok

    sign = 1.0 if case["sense"] == "max" else -1.0
    # strictly feasible points, feasible for every back-end's tolerance: scale-invariant (a row of subnormal
    # coefficients, 5e-324 x0 = 0, forces x0 = 0 once the solver scales it; an absolute floor would let x0 = 1 in)
    feas_X = X[feasible(X, 1e-12, floor=0.0)]

    def lp_opt(t):
        A_ub, b_ub = data.get("A_ub"), data.get("b_ub")
        A_eq, b_eq = data.get("A_eq"), data.get("b_eq")
        res = linprog(-sign * t, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=[(lo, hi)] * n, method="highs")
        return None if res.status != 0 else float(sign * t @ res.x)

    # a continuous solution comes back in the input's dtype: float16 / bfloat16 round each entry by up to half
    # their eps (relative), which moves the objective and the row activities by that much (integers are exact)
    out_eps = 0.0 if integer else {"float16": 2.0**-11, "bfloat16": 2.0**-8}.get(case["x"]["dtype"], 0.0)

    def oracle(theta, y, where):
        # SCIP/GLOP/CP-SAT: feasibility 1e-6 relative to the (scaled) row; PDHG: a relative KKT tolerance
        rel = max(1e-4 if backend == "pdhg" else 1e-6, 2 * n * out_eps)
        check(np.all(feasible(y, rel)), f"{where}: infeasible ILP answer {y}")
        for b in range(theta.shape[0]):
            t = unit_scale(theta[b])
            got = sign * float(y[b] @ t)
            if integer:
                best = float((feas_X @ t * sign).max()) if len(feas_X) else None
                tol = float(np.abs(t).max(initial=0)) * n * max(hi, abs(lo), 1) * 10.0 ** -min(case["digits"], 8) * 2
            else:
                best = lp_opt(t)  # max of sign * <t, x>
                tol = float(np.abs(t).max(initial=0)) * n * max(hi, abs(lo), 1) * (
                    (1e-4 if backend == "pdhg" else 1e-8) + 2 * out_eps)
            if best is not None and (integer or not case.get("poison")):  # (HiGHS on a poisoned row: no oracle)
                check(got >= best - tol - 1e-300, f"{where}: row {b} sub-optimal ({backend}): {got!r} < {best!r} "
                                                  f"(unit-scaled, tol {tol:.3g}); y={y[b]}")

    def sane():
        return np.random.RandomState(4).randn(2, n)

    _run_solver_case(case, solver, (n,), (n,), oracle, sane)
    del torch


def solver_assignment(case):
    from discreteopt.solvers import Assignment

    n, m = case["n"], case["m"]
    solver = Assignment(maximize=case["maximize"])
    sign = 1.0 if case["maximize"] else -1.0

    def oracle(theta, y, where):
        for b in range(theta.shape[0]):
            t = unit_scale(theta[b])
            nn, mm = t.shape
            best = max(sign * sum(t[i, p[i]] for i in range(nn)) for p in itertools.permutations(range(mm), nn))
            got = sign * float((y[b] * t).sum())
            tol = 1e-12 * nn * float(np.abs(t).max(initial=0)) + 1e-300
            check(got >= best - tol, f"{where}: row {b} sub-optimal assignment: {got!r} < {best!r}")

    _run_solver_case(case, solver, (n, m), (n, m), oracle, lambda: np.random.RandomState(5).randn(2, 3, 4))


def solver_tsp(case):
    from discreteopt.solvers import TSP

    n = case["n"]
    solver = TSP(n, digits=case["digits"])
    edges = solver.edges
    index = {e: i for i, e in enumerate(edges)}
    tours = []
    for perm in itertools.permutations(range(1, n)):
        if perm[0] > perm[-1]:
            continue
        cyc = (0, *perm, 0)
        y = np.zeros(len(edges))
        for u, v in zip(cyc[:-1], cyc[1:], strict=True):
            y[index[(min(u, v), max(u, v))]] = 1.0
        tours.append(y)
    T = np.array(tours)

    def oracle(theta, y, where):
        for b in range(theta.shape[0]):
            c = unit_scale(theta[b])
            best = float((T @ c).min())
            got = float(y[b] @ c)
            tol = n * float(np.abs(c).max(initial=0)) * 10.0 ** -solver.digits * 2 + 1e-300
            check(got <= best + tol, f"{where}: row {b} sub-optimal tour: {got!r} > {best!r}")

    _run_solver_case(case, solver, (len(edges),), (len(edges),), oracle,
                     lambda: np.random.RandomState(6).rand(2, len(edges)))


def _grid_oracle(costs: np.ndarray, src, dst, nb: int) -> float:
    """Cheapest vertex-weighted path cost (both endpoints counted) by Bellman-Ford in unit-scaled float64."""
    from discreteopt.solvers.grid_shortest_path import _OFFSETS  # neighbour sets only (8: king, 4: rook)

    h, w = costs.shape
    moves = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    if nb == 4:
        moves = [(dr, dc) for dr, dc in moves if abs(dr) + abs(dc) == 1]
    assert len(moves) == len(_OFFSETS[nb])
    dist = np.full((h, w), np.inf)
    dist[src] = costs[src]
    for _ in range(h * w):
        changed = False
        for r in range(h):
            for c in range(w):
                for dr, dc in moves:
                    pr, pc = r - dr, c - dc
                    if 0 <= pr < h and 0 <= pc < w and dist[pr, pc] + costs[r, c] < dist[r, c]:
                        dist[r, c] = dist[pr, pc] + costs[r, c]
                        changed = True
        if not changed:
            break
    return float(dist[dst])


def solver_grid(case):
    import torch

    from discreteopt.solvers import GridShortestPath

    h, w = case["h"], case["w"]
    solver = GridShortestPath(neighbourhood=case["nb"], source=tuple(case["source"]), target=tuple(case["target"]),
                              backend=case["backend"])
    other = GridShortestPath(neighbourhood=case["nb"], source=tuple(case["source"]), target=tuple(case["target"]),
                             backend="torch" if solver.backend == "numba" else "numba")

    def cells(hh, ww):
        return solver._cells(hh, ww)

    def oracle(theta, y, where):
        hh, ww = theta.shape[1:]
        sr, sc, tr, tc = cells(hh, ww)
        for b in range(theta.shape[0]):
            c = unit_scale(theta[b])
            best = _grid_oracle(c, (sr, sc), (tr, tc), case["nb"])
            got = float((y[b] * c).sum())
            tol = 1e-12 * hh * ww * float(np.abs(c).max(initial=0)) + 1e-300
            check(got <= best + tol, f"{where}: row {b} sub-optimal path: {got!r} > {best!r}; y={y[b]}")
        # both back-ends return the same canonical path, bit for bit
        y2 = other.solve(torch.from_numpy(theta)).numpy()
        check(np.array_equal(y2, y), f"{where}: back-ends {solver.backend} and {other.backend} disagree")

    def sane():
        return np.random.RandomState(7).rand(2, max(h, 1), max(w, 1)) + 0.1

    try:
        cells(max(h, 1), max(w, 1))
        ok_cells = True
    except ValueError:
        ok_cells = False
    _run_solver_case(case, solver, (h, w), (h, w), oracle, sane if ok_cells else None)


def _graph(case):
    rng = np.random.RandomState(case["gseed"])
    nodes = case["nodes"]
    edges = []
    for _ in range(case["edges"]):
        u, v = rng.randint(0, nodes, 2)
        if case["dag"] and u >= v:
            u, v = min(u, v), max(u, v)
            if u == v:
                continue
        edges.append((int(u), int(v)))
    if case.get("chain", True):  # a path 0 -> 1 -> ... -> nodes-1 so that the target is reachable
        edges += [(i, i + 1) for i in range(nodes - 1)]
    return edges


def _simple_paths(edges, directed, s, t):
    """Edge-index sets of every simple s -> t path (parallel edges and self-loops included in the graph)."""
    adj: dict[int, list[tuple[int, int]]] = {}
    for i, (u, v) in enumerate(edges):
        adj.setdefault(u, []).append((v, i))
        if not directed:
            adj.setdefault(v, []).append((u, i))
    out = []

    def dfs(node, seen, used):
        if node == t:
            out.append(list(used))
            return
        for nxt, i in adj.get(node, []):
            if nxt not in seen:
                dfs(nxt, seen | {nxt}, used + [i])

    dfs(s, {s}, [])
    return out


def solver_graph(case):
    import torch

    from discreteopt.solvers import GraphShortestPath

    edges = _graph(case)
    nodes = case["nodes"]
    s, t = case["source"] % nodes, case["target"] % nodes
    if case.get("networkx"):
        import networkx as nx

        g = nx.DiGraph() if case["directed"] else nx.Graph()
        g.add_nodes_from(range(nodes))
        g.add_edges_from(edges)
        edges = list(g.edges)
        graph = g
        solver = GraphShortestPath(graph, s, t, backend=case["backend"])
    else:
        graph = np.array(edges, dtype=np.int64).reshape(-1, 2)
        solver = GraphShortestPath(graph, s, t, num_nodes=nodes, directed=case["directed"], backend=case["backend"])
    other = GraphShortestPath(graph, s, t, **({} if case.get("networkx") else
                                              {"num_nodes": nodes, "directed": case["directed"]}),
                              backend="torch" if solver.backend == "numba" else "numba")
    paths = _simple_paths(edges, case["directed"], s, t)
    E = len(edges)
    P = np.zeros((len(paths), E))
    for k, p in enumerate(paths):
        P[k, p] = 1.0

    def oracle(theta, y, where):
        for b in range(theta.shape[0]):
            c = unit_scale(theta[b])
            best = float((P @ c).min()) if len(P) else np.inf
            got = float(y[b] @ c)
            tol = 1e-12 * E * float(np.abs(c).max(initial=0)) + 1e-300
            check(got <= best + tol, f"{where}: row {b} sub-optimal path: {got!r} > {best!r}; y={y[b]}")
        y2 = other.solve(torch.from_numpy(theta)).numpy()
        check(np.array_equal(y2, y), f"{where}: back-ends {solver.backend} and {other.backend} disagree")

    _run_solver_case(case, solver, (E,), (E,), oracle, lambda: np.random.RandomState(8).rand(2, E) + 0.1)


def _user_fn(kind: str, n: int):
    """A user function for ``from_function`` (one instance ``[n]`` -> ``[n]``) returning ``kind``."""
    import torch

    def fn(theta_b):
        arr = theta_b.detach().cpu().numpy() if isinstance(theta_b, torch.Tensor) else np.asarray(theta_b)
        batched = arr.ndim == 2
        idx = np.argmax(arr, axis=-1)
        y = np.zeros(arr.shape)
        if batched:
            y[np.arange(arr.shape[0]), idx] = 1.0
        else:
            y[idx] = 1.0
        if kind == "float":
            out = y
        elif kind == "bool":
            out = y.astype(bool)
        elif kind == "int":
            out = y.astype(np.int32)
        elif kind == "list":
            out = y.tolist()
        elif kind == "nan":
            out = y.copy()
            out.reshape(-1)[0] = np.nan
        elif kind == "inf":
            out = y.copy()
            out.reshape(-1)[-1] = np.inf
        elif kind == "complex":
            out = y.astype(np.complex128)
        elif kind == "none":
            out = None
        elif kind == "wrong_shape":
            out = np.zeros(arr.shape[:-1] + (arr.shape[-1] + 1,))
        elif kind == "string":
            out = "solution"
        elif kind == "ragged":
            out = [[1.0], [0.0, 1.0]]
        elif kind == "input":  # returns its own input (aliasing)
            out = theta_b
        elif kind == "object":
            out = np.array([object()] * arr.shape[-1])
        else:
            raise KeyError(kind)
        if isinstance(theta_b, torch.Tensor) and isinstance(out, np.ndarray) and out.dtype.kind in "biuf":
            out = torch.from_numpy(np.ascontiguousarray(out)).to(theta_b.device)
        return out

    return fn


def solver_function(case):
    from discreteopt.solvers import from_function

    n = case["n"]
    kind = case["returns"]
    solver = from_function(_user_fn(kind, n), batched=case["batched"], backend=case["backend"],
                           sense=case.get("sense", "max"))
    x = _solver_input(case, (n,))
    y = _solve_entry(solver, x, case.get("entry", "solve"))
    check_tensor_out(y, tuple(x.shape), x.dtype)
    if y.shape[0] and kind != "input":
        theta = as64(x)
        ref = np.zeros_like(theta)
        ref[np.arange(theta.shape[0]), np.argmax(theta, -1)] = 1.0
        check(np.array_equal(y.double().numpy(), ref), f"from_function result {y} != {ref}")
    if kind == "input" and y.shape[0]:
        check(np.array_equal(y.double().numpy(), as64(x)), "from_function lost the returned values")


# ===================================================================== layers, estimators
EXTREME_KINDS = ("subnormal", "tiny", "huge", "max", "mixed", "f32edge")


def extreme(case) -> bool:
    """True when some input or hyperparameter of ``case`` is extreme enough that an exact result may overflow the
    float range (then +-inf is IEEE's answer; NaN never is): extreme scale kinds, injected values beyond 1e20 or
    below 1e-300, half precision, estimator/loss hyperparameters outside [1e-100, 1e100]."""
    def walk(v):
        if isinstance(v, dict):
            if v.get("kind") in EXTREME_KINDS or v.get("dtype") in ("float16", "bfloat16"):
                return True
            if any(math.isfinite(val) and (abs(val) >= 1e20 or 0 < abs(val) <= 1e-300) for _, val in v.get("inject", ())):
                return True
            return any(walk(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return any(walk(x) for x in v)
        if isinstance(v, float) and not isinstance(v, bool):
            return math.isfinite(v) and v != 0 and not 1e-100 <= abs(v) <= 1e100
        return False

    return walk(case)
def _layer_solver(name: str):
    from discreteopt import solvers

    if name == "topk":
        return solvers.TopK(2), (5,)
    if name == "argmax":
        return solvers.Argmax(), (4,)
    if name == "grid":
        return solvers.GridShortestPath(), (3, 3)
    if name == "grid_torch":
        return solvers.GridShortestPath(backend="torch"), (3, 3)
    if name == "graph":
        return solvers.GraphShortestPath.grid(3, 3), (12,)
    if name == "knapsack":
        return solvers.Knapsack([2.0, 3.0, 1.0, 4.0], 5.0), (4,)
    if name == "assignment":
        return solvers.Assignment(), (3, 3)
    if name == "ilp":
        return solvers.ILP(A_ub=[[1.0, 1.0, 1.0]], b_ub=[2.0]), (3,)
    raise KeyError(name)


def _estimator(spec: dict):
    from discreteopt import estimators, noise

    name = spec["name"]
    kw = dict(spec.get("kwargs", {}))
    if "noise" in kw and isinstance(kw["noise"], dict):
        nk = kw["noise"]
        kw["noise"] = getattr(noise, nk["cls"])(**nk.get("kwargs", {}))
    if name == "StraightThrough" and kw.pop("sigmoid", False):
        import torch

        kw["surrogate"] = torch.sigmoid
    if name == "ScoreFunction" and kw.pop("no_baseline", False):
        kw["baseline"] = None
    return getattr(estimators, name)(**kw)


def layer_case(case):
    import torch

    from discreteopt import DiscreteLayer
    from discreteopt.executors import Inline, Threads

    solver, event = _layer_solver(case["solver"])
    est = _estimator(case["estimator"])
    executor = Threads(2) if case.get("threads") else Inline()
    try:
        layer = DiscreteLayer(solver, est, executor, seed=case.get("seed", 0),
                              return_samples=case.get("return_samples", False))
        if case.get("eval"):
            layer.eval()
        spec = shaped(case["x"], case.get("batch", 2), event)
        leaf, x = make_tensor(spec, requires_grad=True)
        if case.get("score_loss") and case["estimator"]["name"] == "ScoreFunction":
            _score_function_loss_case(layer, leaf, x)
            return
        y = layer(x)
        out_event = tuple(solver.output_shape(tuple(x.shape[1:])))
        s = 1 if case.get("eval") else getattr(est, "samples", 1)
        shape = (x.shape[0], s, *out_event) if case.get("return_samples") else (x.shape[0], *out_event)
        check_tensor_out(y, shape, x.dtype)
        yv = y.detach().double()
        check(bool(((yv >= -1e-3) & (yv <= 1 + 1e-3)).all()), f"layer output outside [0, 1]: {y}")
        if not y.requires_grad:
            check(case.get("eval") or not leaf.requires_grad, "training forward lost the autograd graph")
            return
        g = make_tensor(shaped(case["grad"], 1, ()) | {"shape": list(y.shape)})
        g = g.to(y.dtype) if g.is_floating_point() else g  # (a loss gives dL/dy in y's dtype)
        if x is not leaf:
            x.retain_grad()
        y.backward(g)
        check(leaf.grad is not None and x.grad is not None, "no gradient reached theta")
        # a NaN/inf dL/dy gives NaN dL/dtheta for those instances only (with a warning), or a ValueError
        bad = ~torch.isfinite(g.double()).flatten(1).all(1)  # [B]
        check_tensor_out(x.grad, tuple(x.shape), x.dtype, "dL/dtheta", finite=False)
        good = x.grad[~bad].double()
        check(not bool(torch.isnan(good).any()), f"dL/dtheta has NaN for instances with a finite dL/dy: {x.grad}")
        check(extreme(case) or bool(torch.isfinite(good).all()),
              f"dL/dtheta not finite for moderate inputs with a finite dL/dy: {x.grad}")
        # a second forward/backward on the same layer works (state, executor, generator)
        spec2 = dict(spec, kind="normal", seed=1, inject=[], view="none", dtype="float64", positive=True)
        x2 = make_tensor(shaped(spec2, 2, event)).requires_grad_(True)
        y2 = layer(x2)
        (y2 * torch.ones_like(y2)).sum().backward()
        check(x2.grad is not None and bool(torch.isfinite(x2.grad).all()), "layer broken after the fuzzed call")
    finally:
        executor.close() if hasattr(executor, "close") else None


def _score_function_loss_case(layer, leaf, x) -> None:
    """``score_function_loss`` (a black-box per-sample loss of the layer's sampled solutions): finite scalar, a
    finite gradient of ``x``'s shape."""
    import torch

    from discreteopt import score_function_loss

    value = score_function_loss(layer, x, lambda y: (y.flatten(2) - 0.5).square().sum(-1))  # [B, S] -> scalar
    check(isinstance(value, torch.Tensor) and value.shape == () and bool(torch.isfinite(value.detach())),
          f"score_function_loss value {value}")
    check(value.dtype == x.dtype, f"score_function_loss dtype {value.dtype} != {x.dtype}")
    if x is not leaf:
        x.retain_grad()
    value.backward()
    check(x.grad is not None and x.grad.shape == x.shape, "no gradient of theta's shape")
    check(not bool(torch.isnan(x.grad).any()), f"score_function_loss gradient has NaN: {x.grad}")


# ===================================================================== losses
def _loss_solver(name: str):
    return _layer_solver(name)


def loss_case(case):
    import torch

    from discreteopt import losses
    from discreteopt.solution_cache import SolutionCache

    solver, event = _loss_solver(case["solver"])
    name = case["loss"]
    red = case.get("reduction", "mean")
    pred_spec = shaped(case["pred"], case.get("batch", 2), event)
    true_spec = shaped(case["true"], case.get("batch", 2), event) if case.get("true_shape_ok", True) else \
        shaped(dict(case["true"], shape_variant="wrong_event"), case.get("batch", 2), event)
    leaf, pred = make_tensor(pred_spec, requires_grad=True)
    true = make_tensor(true_spec)

    def y_of(t):
        return solver.solve(t.detach().double().abs() if solver.min_cost is not None else t.detach().double())

    extra = {}
    if name == "FenchelYoungLoss":
        loss = losses.FenchelYoungLoss(solver, samples=2, seed=0, reduction=red, **case.get("kwargs", {}))
        value = loss(pred, y_of(true).to(true.dtype) if case.get("y_from_true", True) else true)
    elif name == "SPOPlus":
        loss = losses.SPOPlus(solver, reduction=red)
        value = loss(pred, true)
    elif name == "HammingLoss":
        loss = losses.HammingLoss(reduction=red)
        value = loss(pred, true)
    elif name == "regret":
        value = losses.regret(solver, true, pred, normalized=case.get("normalized", False), reduction=red)
    elif name in ("NCE", "ContrastiveMAP", "PointwiseLTR", "PairwiseLTR", "ListwiseLTR"):
        cache = SolutionCache(case.get("solve_ratio", 1.0), seed=0)
        loss = getattr(losses, name)(solver, cache, reduction=red, **case.get("kwargs", {}))
        other = y_of(true).to(true.dtype) if name in ("NCE", "ContrastiveMAP") and case.get("y_from_true", True) \
            else true
        value = loss(pred, other)
        extra["pool"] = cache
    elif name == "PerturbationGradient":
        loss = losses.PerturbationGradient(solver, reduction=red, **case.get("kwargs", {}))
        value = loss(pred, true)
    else:
        raise KeyError(name)
    b = pred.shape[0]
    shape = (b,) if red == "none" else ()
    check(isinstance(value, torch.Tensor), f"loss returned {type(value).__name__}")
    check(tuple(value.shape) == shape, f"loss shape {tuple(value.shape)}, expected {shape}")
    check(value.is_floating_point(), f"loss dtype {value.dtype}")
    big = float(np.abs(as64(pred)).max(initial=0.0)) if pred.numel() else 0.0
    big = max(big, float(np.abs(as64(true).astype(np.float64)).max(initial=0.0)) if true.numel() else 0.0)
    overflow_ok = big > 1e150 or extreme(case)  # an exact value beyond the float range: +-inf (never NaN)
    v = value.detach().double()
    check(not bool(torch.isnan(v).any()), f"loss is NaN: {value}")
    check(overflow_ok or bool(torch.isfinite(v).all()), f"loss not finite for inputs up to {big:.3g}: {value}")
    # SPO+ >= 0 needs an exact inner maximisation: not for the grid (Dijkstra), whose guard clamps 2 pred - true
    exact = solver.min_cost is None
    if name in ("SPOPlus", "ContrastiveMAP") and bool(torch.isfinite(v).all()) and (exact or name != "SPOPlus"):
        tol = 1e-6 * max(1.0, big) * pred[0].numel() if pred.numel() else 0.0
        check(bool((v >= -tol).all()), f"{name} negative: {value}")
    if value.requires_grad:
        value.sum().backward()
        if leaf.grad is not None:
            gr = leaf.grad.double()
            check(not bool(torch.isnan(gr).any()), f"gradient has NaN: {leaf.grad}")
            check(overflow_ok or bool(torch.isfinite(gr).all()), f"gradient not finite: {leaf.grad}")
            check(leaf.grad.dtype == leaf.dtype, f"gradient dtype {leaf.grad.dtype} != {leaf.dtype}")


# ===================================================================== solution cache
def cache_case(case):
    import torch

    from discreteopt import DiscreteLayer, SolutionCache
    from discreteopt.estimators import Interpolation
    from discreteopt.solvers import TopK

    sols = make_tensor(shaped(case["solutions"], case.get("m", 3), (4,)))
    theta = make_tensor(shaped(case["theta"], 2, (4,)))
    cache = SolutionCache(case.get("solve_ratio", 0.5), max_size=case.get("max_size", 100), seed=0)
    op = case["op"]
    if op == "from_solutions":
        cache = SolutionCache.from_solutions(sols, case.get("solve_ratio", 0.5), seed=0)
        check(len(cache) <= sols.shape[0], "pool larger than its input")
        return
    cache.add(sols)
    check(len(cache) <= min(sols.shape[0], case.get("max_size", 100)), "pool too large")
    if op == "add":
        return
    if op == "scores":
        s = cache.scores(theta)
        check_tensor_out(s, (theta.shape[0], len(cache)), theta.dtype, finite=False)
        return
    if op == "best":
        sense = case.get("sense", "max")
        y, idx = cache.best(theta, sense)
        check_tensor_out(y, tuple(theta.shape), theta.dtype, finite=False)
        if theta.shape[0] and len(cache):
            with np.errstate(all="ignore"):
                s = as64(theta).reshape(theta.shape[0], -1) @ cache.pool.double().numpy().reshape(len(cache), -1).T
            s = s if sense == "max" else -s
            ok = np.isfinite(s).all(1)
            picked = s[np.arange(len(s)), idx.numpy()]
            check(np.all(~ok | (picked == s.max(1, initial=-np.inf))), f"best: not the best pooled solution: {idx}")
        return
    if op == "layer":  # a pool of feasible solutions (the caller vouches for them), in the fuzzed dtype
        cache = SolutionCache(case.get("solve_ratio", 0.5), max_size=case.get("max_size", 100), seed=0)
        m = min(max(sols.shape[0] if sols.ndim else 1, 1), 8)
        feasible = TopK(2).solve(torch.from_numpy(values("normal", (m, 4), 5)))
        cache.add(feasible.to(sols.dtype) if sols.is_floating_point() else feasible)
        layer = cache.attach(DiscreteLayer(TopK(2), Interpolation(lam=1.0)))
        x = theta.clone().requires_grad_(True) if theta.is_floating_point() else theta
        y = layer(x)
        check_tensor_out(y, tuple(theta.shape), theta.dtype)
        y.sum().backward()
        check(x.grad is not None and bool(torch.isfinite(x.grad).all()), "no finite gradient through the cache")
        return
    raise KeyError(op)


# ===================================================================== metrics
def metrics_case(case):
    from discreteopt import metrics

    fn = case["fn"]
    a = make_tensor(shaped(case["a"], case.get("batch", 2), (4,)))
    b = make_tensor(shaped(case["b"], case.get("batch", 2), (4,)))
    c = make_tensor(shaped(case["c"], case.get("batch", 2), (4,)))
    if fn == "path_cost":
        out = metrics.path_cost(a, b)
        check_tensor_out(out, (a.shape[0],), out.dtype, finite=False)
        ref = (as64(a) * as64(b)).reshape(a.shape[0], -1).sum(1)
        check(np.allclose(out.numpy(), ref, equal_nan=True, rtol=1e-12), f"path_cost {out} != {ref}")
    elif fn == "shortest_path_metrics":
        out = metrics.shortest_path_metrics(a, b, c)
        check(isinstance(out, dict), "not a dict")
        for k, v in out.items():
            check(isinstance(v, float) and math.isfinite(v), f"{k} = {v!r} for finite inputs")
    elif fn == "normalized_regret":
        out = metrics.normalized_regret(a, b, c, sense=case.get("sense", "min"))
        check(isinstance(out, float) and math.isfinite(out), f"normalized_regret = {out!r}")
    elif fn == "subset_precision":
        out = metrics.subset_precision(a, b)
        check(isinstance(out, float) and 0.0 <= out <= 1.0, f"subset_precision = {out!r}")
    elif fn == "accuracy":
        labels = make_tensor(shaped(case["b"], case.get("batch", 2), ())).long() \
            if case.get("long_labels", True) else b
        out = metrics.accuracy(a, labels)
        check(isinstance(out, float) and 0.0 <= out <= 1.0, f"accuracy = {out!r}")
    else:
        raise KeyError(fn)


# ===================================================================== stochastic estimators
def _f(kind: str, w_seed: int = 0):
    """``f``: samples ``[S, B, *E]`` -> values ``[S, B]``."""
    import torch

    def linear(z):
        zz = z.reshape(*z.shape[:2], math.prod(z.shape[2:]))  # [S, B, prod(E)] (1-d params: E = ())
        w = torch.linspace(-1.0, 1.0, zz.shape[-1], dtype=z.dtype if z.is_floating_point() else torch.float32)
        v = (zz.to(w.dtype) * w).sum(-1)
        return v**2 if kind == "square" else v

    if kind in ("linear", "square"):
        return linear
    def flat(z):  # [S, B, prod(E)] (1-d params: E = ())
        return z.reshape(*z.shape[:2], math.prod(z.shape[2:]))

    if kind == "int":
        return lambda z: (flat(z) > 0.5).sum(-1)
    if kind == "bool":
        return lambda z: flat(z).sum(-1) > 0.5
    if kind == "nan":
        return lambda z: linear(z) * float("nan")
    if kind == "wrong_shape":
        return lambda z: flat(z).sum(-1)[..., None]
    if kind == "huge":
        return lambda z: linear(z) * 1e300
    raise KeyError(kind)


def stochastic_case(case):
    import torch
    from torch import distributions as D

    import discreteopt.stochastic as st

    fn = case["fn"]
    fam_name = case.get("family", "bernoulli")
    event = {"bernoulli": (3,), "categorical": (2, 3), "ksubset": (4,)}[fam_name]
    family = {"bernoulli": st.Bernoulli, "categorical": st.Categorical, "ksubset": lambda: st.KSubset(2)}[fam_name]()
    spec = shaped(case["x"], case.get("batch", 2), event)
    leaf, x = make_tensor(spec, requires_grad=True)
    f = _f(case.get("f", "linear"))
    s = case.get("samples", 2)
    g = torch.Generator().manual_seed(0)
    common = {"samples": s, "generator": g}
    out = None
    if fn == "reinforce":
        base = {"none": None, "loo": st.LeaveOneOut(), "opt": st.OptimalConstant(), "ma": st.MovingAverage(),
                "no": st.NoBaseline()}[case.get("baseline", "none")]
        out = st.reinforce(f, x, family=family, baseline=base, **common)
    elif fn in ("rao_blackwell", "rloo", "vimco", "arm", "disarm", "measure_valued"):
        out = getattr(st, fn)(f, x, family=family, **common)
    elif fn == "rebar":
        out = st.rebar(f, x, family=family, **common)
    elif fn == "relax":
        dim = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
        cv = st.NeuralControlVariate.mlp(min(max(dim, 1), 4096))  # (empty inputs of 10**7 entries: no 2 GB net)
        out = st.relax(f, x, cv.to(x.dtype) if x.is_floating_point() else cv, family=family, **common)
    elif fn == "concrete":
        out = st.concrete(f, x, family=family, tau=case.get("tau", 0.5), hard=case.get("hard", False), **common)
    elif fn in ("l2x_subset", "softsub"):
        out = getattr(st, fn)(f, x, k=case.get("k", 2), tau=case.get("tau", 0.5), hard=case.get("hard", False),
                              **common)
    elif fn == "evolution_strategies":
        out = st.evolution_strategies(f, x, scale=case.get("tau", 0.5), antithetic=case.get("hard", True), **common)
    elif fn == "pathwise":
        # validate_args=False: torch's own constructor check (NotImplementedError for complex loc) would run before
        # the entry point; the case tests pathwise's check of the distribution's parameters
        dist = D.Normal(x, torch.ones_like(x.detach()) * case.get("tau", 0.5), validate_args=False)
        out = st.pathwise(f, dist, **common)
    elif fn == "measure_valued_gaussian":
        ests = st.measure_valued_gaussian(f, x, torch.zeros_like(x.detach()) + math.log(case.get("tau", 0.5)),
                                          **common)
        out = ests[0]
    elif fn in ("gumbel_softmax", "straight_through_gumbel", "gumbel_sigmoid"):
        kw = {"tau": case.get("tau", 1.0), "generator": g}
        if fn != "straight_through_gumbel":
            kw["hard"] = case.get("hard", False)
        y = getattr(st, fn)(x, **kw)
        check_tensor_out(y, tuple(x.shape), x.dtype)  # (a relaxed sample in [0, 1]: never inf)
        y.sum().backward() if y.requires_grad else None
        _check_grad(leaf, allow_inf=extreme(case))
        return
    elif fn in ("relaxed_topk_l2x", "relaxed_topk_softsub"):
        y = getattr(st, fn)(x, case.get("k", 2), tau=case.get("tau", 0.5), samples=s, generator=g,
                            hard=case.get("hard", False))
        check(isinstance(y, torch.Tensor) and bool(torch.isfinite(y.detach()).all()), f"{fn} output {y}")
        check(y.dtype == x.dtype, f"{fn} dtype {y.dtype} != {x.dtype}")
        (y * torch.linspace(0, 1, y.shape[-1], dtype=y.dtype)).sum().backward() if y.requires_grad else None
        _check_grad(leaf, allow_inf=extreme(case))
        return
    elif fn == "stick_breaking_logits":
        y = st.stick_breaking_logits(x)
        check(bool(torch.isfinite(y.detach()).all()) or True, "")
        return
    elif fn in ("loo_sum", "loo_mean"):
        y = getattr(st, fn)(x, dim=case.get("dim", 0))
        ints = not (x.is_floating_point() or x.is_complex())  # integer sums and means may widen the dtype
        check_tensor_out(y, tuple(x.shape), y.dtype if ints else x.dtype, finite=False)
        xv = as64(x)
        d = case.get("dim", 0) % max(x.ndim, 1)
        tot = np.sum(xv, axis=d, keepdims=True)
        if np.isfinite(xv).all() and np.abs(xv).max(initial=0) < (1e150 if not ints else 2.0**50):
            ref = tot - xv if fn == "loo_sum" else (tot - xv) / (x.shape[d] - 1)
            tol = 1e-2 if x.dtype in (torch.float16, torch.bfloat16) else 1e-5
            fits = np.abs(ref) <= (torch.finfo(y.dtype).max if y.is_floating_point() else np.inf) * (1 - tol)
            got = y.detach().double().numpy()
            check(np.allclose(got[fits], ref[fits], rtol=tol, atol=tol * np.abs(xv).max(initial=1)),
                  f"{fn} {y} != {ref}")
        return
    elif fn == "group_advantages":
        y = st.group_advantages(x)
        check_tensor_out(y, tuple(x.shape), x.dtype)  # z-scores: |A| <= sqrt(G) for any finite rewards
        return
    elif fn in ("ppo_surrogate", "grpo_surrogate"):
        # x: log-probs [S, B] (bernoulli/ksubset: [batch, n]) or [S, B, T] (categorical); x2: advantages or
        # rewards [S, B]
        old = x.detach() + 0.1
        adv = make_tensor(shaped(case.get("x2", case["x"]), case.get("batch", 2), event[:1]))
        if fn == "ppo_surrogate":
            out = st.ppo_surrogate(x, old, adv)
        else:
            out = st.grpo_surrogate(x, old, adv)
    elif fn == "kl_k3":
        y = st.kl_k3(x, x.detach() + 0.5)
        check(y.is_floating_point(), f"kl_k3 of a {x.dtype} input returned {y.dtype}")
        check(bool((y.detach() >= -1e-6).all()) or not bool(torch.isfinite(y.detach()).all()), f"kl_k3 < 0: {y}")
        return
    else:
        raise KeyError(fn)
    check(out is not None and isinstance(out, st.Estimate), f"{fn} returned {type(out).__name__}")
    sur = out.surrogate
    check(isinstance(sur, torch.Tensor) and sur.shape == (), f"surrogate shape {getattr(sur, 'shape', None)}")
    check(not bool(torch.isnan(sur.detach()).any()), f"surrogate is NaN: {sur}")
    check(extreme(case) or bool(torch.isfinite(sur.detach()).all()), f"surrogate not finite: {sur}")
    check(out.per_item.shape[0] == (x.shape[1] if fn in ("ppo_surrogate", "grpo_surrogate") else x.shape[0]),
          f"per_item shape {tuple(out.per_item.shape)}")
    if sur.requires_grad:
        sur.backward()
        _check_grad(leaf, allow_inf=extreme(case))


def _check_grad(leaf, allow_inf: bool = False) -> None:
    import torch

    if leaf.grad is None:
        return
    gr = leaf.grad.detach().double()
    check(leaf.grad.shape == leaf.shape, f"gradient shape {tuple(leaf.grad.shape)} != {tuple(leaf.shape)}")
    check(not bool(torch.isnan(gr).any()), f"gradient has NaN: {leaf.grad}")
    check(allow_inf or bool(torch.isfinite(gr).all()), f"gradient not finite: {leaf.grad}")


# ===================================================================== dispatch
def selftest_case(case):
    """The harness's own check: a case that aborts the process, hangs, or answers."""
    if case["mode"] == "abort":
        os.abort()  # what an OR-Tools CHECK failure does
    if case["mode"] == "hang":
        time.sleep(3600)
    if case["mode"] == "value_error":
        raise ValueError("refused")


ENTRIES = {
    "_selftest": selftest_case,
    "TopK": solver_topk, "Argmax": solver_argmax, "Knapsack": solver_knapsack, "ILP": solver_ilp,
    "Assignment": solver_assignment, "TSP": solver_tsp, "GridShortestPath": solver_grid,
    "GraphShortestPath": solver_graph, "from_function": solver_function, "layer": layer_case, "loss": loss_case,
    "SolutionCache": cache_case, "metrics": metrics_case, "stochastic": stochastic_case,
}


def run_case(case: dict) -> dict:
    """Run one case in this process -> ``{"outcome", "detail"}`` (see the module docstring)."""
    if case.get("entry_point") == "_selftest":  # no library import: the self-test worker starts in milliseconds
        InstanceError = type("NeverRaised", (Exception,), {})  # noqa: N806
    else:
        from discreteopt.solvers.base import InstanceError

    try:
        fn = ENTRIES[case["entry_point"]]
    except KeyError:
        return {"outcome": "harness", "detail": f"unknown entry point {case.get('entry_point')!r}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn(case)
        except Wrong as exc:
            return {"outcome": "wrong", "detail": str(exc)[:4000]}
        except InstanceError as exc:
            return {"outcome": "instance_error", "detail": str(exc)[:2000]}
        except ValueError as exc:
            return {"outcome": "value_error", "detail": f"{type(exc).__name__}: {exc}"[:2000]}
        except BaseException as exc:  # noqa: BLE001 -- every other outcome is a finding (or a bug of this file)
            frames = traceback.extract_tb(exc.__traceback__)
            here = bool(frames) and frames[-1].filename == os.path.abspath(__file__)
            return {"outcome": "harness" if here else "error", "detail": traceback.format_exc()[-4000:]}
    return {"outcome": "ok", "detail": ""}


# ===================================================================== worker process
def _serve() -> None:
    """Worker loop: length-prefixed pickles on stdin -> length-prefixed pickles on the protocol fd."""
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    if not os.environ.get("FUZZ_WORKER_LIGHT"):  # import before the first case (its timeout covers the case only)
        import torch  # noqa: F401

        import discreteopt  # noqa: F401

    src = sys.stdin.buffer
    proto.write(struct.pack("<I", 0))  # ready
    while True:
        head = src.read(4)
        if len(head) < 4:
            return
        case = pickle.loads(src.read(struct.unpack("<I", head)[0]))
        res = run_case(case)
        blob = pickle.dumps(res)
        proto.write(struct.pack("<I", len(blob)) + blob)


_EOF = object()  # _read: the worker closed its end (it died)


class Worker:
    """Parent side: a persistent worker process, restarted after a crash or a hang."""

    def __init__(self, start_timeout: float = 300.0, light: bool = False):
        self.proc: subprocess.Popen | None = None
        self.start_timeout = start_timeout
        self.light = light  # no torch/discreteopt preloading (the harness's self-test)
        self.restarts = 0
        self.cases = 0

    def _start(self) -> None:
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
        if self.light:
            env["FUZZ_WORKER_LIGHT"] = "1"
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env)
        if self._read(self.start_timeout) in (None, _EOF):
            tail = self._stderr_tail()
            self.close()
            raise RuntimeError(f"the fuzz worker did not start:\n{tail}")

    def _read(self, timeout: float):
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        need = 4
        size = None
        while len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, need - len(buf))
            if not chunk:
                return _EOF  # the worker died
            buf += chunk
            if size is None and len(buf) == 4:
                size = struct.unpack("<I", buf)[0]
                if size == 0:
                    return {}
                need = 4 + size
        return pickle.loads(buf[4:])

    def _stderr_tail(self, n: int = 3000) -> str:
        try:
            self.log.seek(0)
            return self.log.read().decode(errors="replace")[-n:]
        except Exception:  # noqa: BLE001
            return ""

    def run(self, case: dict, timeout: float = 60.0) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.cases += 1
        blob = pickle.dumps(case)
        try:
            self.proc.stdin.write(struct.pack("<I", len(blob)) + blob)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        res = self._read(timeout)
        if res is None or res is _EOF:
            alive = res is None  # no answer in time: a hang (killed here); EOF: the worker died by itself
            if alive:
                self.proc.kill()
            self.proc.wait()
            code = self.proc.returncode
            tail = self._stderr_tail()
            self.proc = None
            self.restarts += 1
            if alive:
                return {"outcome": "hang", "detail": f"no answer within {timeout} s; stderr tail:\n{tail}"}
            return {"outcome": "crash", "detail": f"worker died with return code {code}; stderr tail:\n{tail}"}
        return res

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
            self.proc = None


if __name__ == "__main__":
    _serve()
