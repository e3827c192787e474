"""Conformance checks and brute-force oracles for solvers -- public, so users can check their own solvers.

>>> from discreteopt.testing import check_solver, enumerate_solutions
>>> report = check_solver(my_solver, theta, solutions=enumerate_solutions(my_solver, theta.shape[1:]))

:func:`check_solver` verifies the :class:`~discreteopt.solvers.base.Solver` contract on a batch:

* output shape ``[B, *output_shape(E)]``, device and dtype of the input (float32 and float64), no autograd graph;
* determinism (two calls agree) and batch independence (each instance solved alone gives the same answer);
* ``solve_numpy`` agrees with ``solve``; ``spec()`` pickles and rebuilds a solver that agrees too;
* feasibility (``solver.is_feasible`` where the solver defines it, or membership in ``solutions``);
* optimality: the objective equals the best over ``solutions`` (all feasible points) or ``oracle(theta_b)``;
* bad input: NaN, inf and a wrong rank raise ``ValueError`` naming the argument.

A failed check raises ``AssertionError`` saying which property broke and for which instance.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .solvers.base import Solver

if TYPE_CHECKING:
    from .solvers.ilp import ILP


def check_solver(
    solver: Solver,
    theta: torch.Tensor,
    solutions: np.ndarray | None = None,
    oracle: Callable[[np.ndarray], float] | None = None,
    atol: float = 1e-6,
    devices: Sequence[str] | None = None,
) -> dict:
    """Run every contract check on ``theta [B, *E]``; returns a small report dict (see module docstring).

    Args:
        solutions: all feasible points ``[M, *Y]`` (brute force); optimality is checked against them.
        oracle: alternatively, ``oracle(theta_b) -> optimal objective`` in the solver's natural sense.
        devices: devices to check on (default: ``cpu`` and ``cuda`` when available).
    """
    if theta.ndim != 1 + solver.event_ndim:
        raise ValueError(f"theta must have shape {solver.theta_layout}; got {tuple(theta.shape)}")
    theta = theta.detach().to(torch.float64).cpu()
    B = theta.shape[0]
    y = solver.solve(theta)
    expected_shape = (B, *solver.output_shape(tuple(theta.shape[1:])))
    _require(tuple(y.shape) == expected_shape, f"output shape {tuple(y.shape)} != expected {expected_shape}")
    _require(y.dtype == torch.float64 and y.device == theta.device, "output must keep the input's dtype and device")

    # dtype, autograd
    y32 = solver.solve(theta.float().requires_grad_(True))
    _require(y32.dtype == torch.float32, f"float32 input gave {y32.dtype}")
    _require(not y32.requires_grad, "solve() must not build an autograd graph")
    _require(_objective_close(solver, theta, y32.double(), y, max(atol, 1e-5)),
             "float32 input gave a solution of another objective value")

    # determinism and batch independence
    _require(torch.equal(y, solver.solve(theta)), "two calls on the same input disagree")
    for b in range(B):
        yb = solver.solve(theta[b : b + 1])
        _require(torch.equal(yb[0], y[b]), f"instance {b} solved alone differs from the batched solution")

    # numpy kernel and spec round trip
    y_np = solver.solve_numpy(theta.numpy())
    _require(np.array_equal(y_np, y.numpy()), "solve_numpy disagrees with solve")
    rebuilt = pickle.loads(pickle.dumps(solver.spec())).build()
    _require(torch.equal(rebuilt.solve(theta), y), "solver rebuilt from spec() disagrees")
    _require(torch.equal(solver.maximize(-theta if solver.sense == "min" else theta), y),
             "maximize() must solve the natural problem after flipping the sign once")

    # feasibility
    feas = solver.is_feasible(y.numpy())
    if feas is not None:
        bad = np.nonzero(~np.asarray(feas))[0]
        _require(bad.size == 0, f"infeasible solution for instance {bad[:5].tolist()}")
    if solutions is not None:
        flat = solutions.reshape(len(solutions), -1)  # [M, prod(Y)]
        for b in range(B):
            _require(bool((np.abs(flat - y[b].numpy().reshape(1, -1)).max(1) < 1e-9).any()),
                     f"instance {b}: solution is not among the feasible points")

    # optimality
    n_opt = 0
    if solutions is not None or oracle is not None:
        got = solver.objective(theta, y).numpy()
        for b in range(B):
            best = oracle(theta[b].numpy()) if oracle is not None else brute_force_value(solver, theta[b].numpy(), solutions)
            _require(abs(got[b] - best) <= atol * max(1.0, abs(best)),
                     f"instance {b}: objective {got[b]:.9g} but the optimum is {best:.9g}")
            n_opt += 1

    # bad input
    for name, bad_theta in (("NaN", _poison(theta, float("nan"))), ("inf", _poison(theta, float("inf"))),
                            ("rank", theta[0]) if theta.ndim > 1 else ("rank", theta[None])):
        try:
            solver.solve(bad_theta)
        except ValueError as exc:
            _require(solver.arg_name in str(exc), f"{name} input: error must name '{solver.arg_name}': {exc}")
        else:
            raise AssertionError(f"{name} input was accepted; expected a ValueError naming '{solver.arg_name}'")

    # other devices
    devices = list(devices) if devices is not None else (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        yd = solver.solve(theta.to(dev))
        _require(yd.device.type == torch.device(dev).type, f"output left {dev}")
        _require(_objective_close(solver, theta, yd.cpu(), y, atol), f"solution on {dev} has another objective")

    return {"batch": B, "checked_optimal": n_opt, "devices": ["cpu", *devices]}


def brute_force_value(solver: Solver, theta_b: np.ndarray, solutions: np.ndarray) -> float:
    """Optimal objective of one instance over all feasible points ``[M, *Y]`` in the natural sense."""
    values = (solutions.reshape(len(solutions), -1) * theta_b.reshape(1, -1)).sum(1)  # [M]
    return float(values.min() if solver.sense == "min" else values.max())


def enumerate_solutions(solver: Solver, event_shape: Sequence[int]) -> np.ndarray:
    """All feasible points ``[M, *Y]`` of a small instance, for the built-in combinatorial solvers.

    Supports ``TopK`` and ``Argmax`` (any n), ``GridShortestPath`` (grids up to about 4x4),
    ``GraphShortestPath`` (all simple paths; small graphs), ``Knapsack`` (up to ~16 items), ``Assignment``
    (all injective row -> column maps) and pure-integer ``ILP`` with finite bounds (up to 2^16 candidate
    points). Other solvers: pass your own list.
    """
    from .solvers import ILP, Argmax, Assignment, GraphShortestPath, GridShortestPath, Knapsack, TopK

    if isinstance(solver, TopK):
        (n,) = event_shape
        out = np.zeros((0, n))
        rows = []
        for idx in itertools.combinations(range(n), solver.k):
            r = np.zeros(n)
            r[list(idx)] = 1.0
            rows.append(r)
        return np.stack(rows) if rows else out
    if isinstance(solver, Argmax):
        (n,) = event_shape
        return np.eye(n)
    if isinstance(solver, GridShortestPath):
        import networkx as nx

        h, w = event_shape
        sr, sc, tr, tc = solver._cells(h, w)
        g = nx.Graph()
        g.add_nodes_from((r, c) for r in range(h) for c in range(w))
        for r in range(h):
            for c in range(w):
                for dr, dc in solver._neighbour_offsets():
                    if 0 <= r + dr < h and 0 <= c + dc < w:
                        g.add_edge((r, c), (r + dr, c + dc))
        masks = []
        for path in ([[(sr, sc)]] if (sr, sc) == (tr, tc) else nx.all_simple_paths(g, (sr, sc), (tr, tc))):
            m = np.zeros((h, w))
            for r, c in path:
                m[r, c] = 1.0
            masks.append(m)
        return np.unique(np.stack(masks), axis=0)
    if isinstance(solver, GraphShortestPath):
        import networkx as nx

        g = nx.MultiDiGraph()
        g.add_nodes_from(range(solver.num_nodes))
        for e, (u, v) in enumerate(solver.edges):
            g.add_edge(int(u), int(v), key=e)
            if not solver.directed:
                g.add_edge(int(v), int(u), key=e)
        rows = []
        for path in nx.all_simple_edge_paths(g, solver.source, solver.target):
            r = np.zeros(len(solver.edges))
            for _, _, e in path:
                r[e] = 1.0
            rows.append(r)
        return np.unique(np.stack(rows), axis=0)
    if isinstance(solver, Knapsack):
        (n,) = event_shape
        cube = _binary_cube(n)  # [2^n, n]
        return cube[np.all(cube @ solver.weights.T <= solver.capacity[None, :] + 1e-9, axis=1)]
    if isinstance(solver, Assignment):
        n, m = event_shape
        rows = []
        for cols in itertools.permutations(range(m), n):
            r = np.zeros((n, m))
            r[np.arange(n), list(cols)] = 1.0
            rows.append(r)
        return np.stack(rows)
    if isinstance(solver, ILP):
        return _ilp_points(solver)
    raise TypeError(f"enumerate_solutions does not know {type(solver).__name__}; pass solutions yourself")


def _binary_cube(n: int) -> np.ndarray:
    """All ``2^n`` 0/1 vectors ``[2^n, n]``."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float64)


def _ilp_points(solver: ILP, limit: int = 1 << 16) -> np.ndarray:
    """Feasible points of a pure integer program with finite bounds (at most ``limit`` candidates)."""
    if not np.all(solver.integrality) or not (np.isfinite(solver.lb).all() and np.isfinite(solver.ub).all()):
        raise TypeError("enumerate_solutions needs an ILP whose variables are all integer with finite bounds")
    ranges = [np.arange(lo, hi + 1) for lo, hi in zip(solver.lb, solver.ub, strict=True)]
    if np.prod([float(len(r)) for r in ranges]) > limit:
        raise TypeError(f"enumerate_solutions: more than {limit} candidate points; pass solutions yourself")
    pts = np.array(list(itertools.product(*ranges)), dtype=np.float64).reshape(-1, solver.n)  # [M, n]
    ok = np.ones(len(pts), dtype=bool)
    if solver.A_ub is not None:
        ok &= np.all(pts @ solver.A_ub.T <= solver.b_ub + 1e-9, axis=1)
    if solver.A_eq is not None:
        ok &= np.all(np.abs(pts @ solver.A_eq.T - solver.b_eq) <= 1e-9, axis=1)
    return pts[ok]


def _poison(theta: torch.Tensor, value: float) -> torch.Tensor:
    bad = theta.clone()
    bad.view(-1)[0] = value
    return bad


def _objective_close(solver: Solver, theta: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, atol: float) -> bool:
    a, b = solver.objective(theta, y1), solver.objective(theta, y2)
    return bool(torch.allclose(a, b, atol=atol * max(1.0, float(b.abs().max())), rtol=0))


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)
