"""Conformance checks and brute-force oracles for solvers -- public, so users can check their own solvers.

A built-in solver, checked against all its feasible points:

>>> import torch
>>> from discreteopt.solvers import TopK
>>> from discreteopt.testing import check_solver, enumerate_solutions
>>> solver, theta = TopK(2), torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
>>> check_solver(solver, theta, solutions=enumerate_solutions(solver, (5,)))["checked_optimal"]
4

Your own solver, with your own brute force (a function of one instance returning all its feasible points, or an
``oracle`` returning the optimal value or an optimal solution):

>>> import itertools, numpy as np
>>> from discreteopt.solvers import from_function
>>> def best_pair(theta_b):                      # the two largest entries
...     y = np.zeros_like(theta_b)
...     y[np.argsort(-theta_b, kind="stable")[:2]] = 1
...     return y
>>> def all_pairs(theta_b):                      # [M, n]: every 0/1 vector with two ones
...     n = theta_b.shape[0]
...     return np.array([np.isin(np.arange(n), c) for c in itertools.combinations(range(n), 2)], dtype=float)
>>> report = check_solver(from_function(best_pair), theta, solutions=all_pairs)
>>> report["checked_optimal"]
4

``report["recipe"]`` is ``"ok"`` when worker processes can rebuild the solver (here ``best_pair`` would have to
live in an importable module), else the reason it runs in-process only.

:func:`check_solver` verifies the :class:`~discreteopt.solvers.base.Solver` contract on a batch:

* output shape ``[B, *output_shape(E)]``, device and dtype of the input, no autograd graph;
* dtypes: float32 gives a solution of the same objective; float16 and bfloat16 give the solution of the rounded
  input (computed in a wider float) in the input's dtype;
* determinism (two calls agree) and batch independence (each instance solved alone gives the same answer);
* ``solve_numpy`` agrees with ``solve``; ``maximize`` flips the sign once for ``sense="min"``;
* the recipe: when ``spec()`` can be shipped to worker processes, the solver rebuilt from it agrees (the report's
  ``"recipe"`` says ``"ok"`` or why the solver can only run in-process: ``Inline``/``Threads``);
* feasibility (``solver.is_feasible`` where the solver defines it, or membership in ``solutions``);
* optimality: the objective equals the best over ``solutions`` (all feasible points) or ``oracle(theta_b)``;
* bad input: NaN, inf, a wrong rank and an integer dtype raise ``ValueError`` naming the argument.

A failed check raises ``AssertionError`` saying which property broke and for which instance.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .solvers.base import RecipeError, Solver, verified_spec

if TYPE_CHECKING:
    from .solvers.ilp import ILP

#: all feasible points ``[M, *Y]``, or a function of one instance ``theta_b [*E]`` returning them
Solutions = np.ndarray | Callable[[np.ndarray], np.ndarray]
#: ``oracle(theta_b [*E])`` -> the optimal objective (a number) or an optimal solution ``[*Y]``
Oracle = Callable[[np.ndarray], Any]


def check_solver(
    solver: Solver,
    theta: torch.Tensor,
    solutions: Solutions | None = None,
    oracle: Oracle | None = None,
    atol: float = 1e-6,
    devices: Sequence[str] | None = None,
) -> dict:
    """Run every contract check on ``theta [B, *E]`` (valid input of ``solver``); returns a small report.

    Args:
        solver: any :class:`~discreteopt.solvers.base.Solver` (built-in, subclass or ``from_function``).
        theta: a batch ``[B, *E]`` of valid instances (checked in ``float64``).
        solutions: brute force: all feasible points ``[M, *Y]`` of every instance, or a function
            ``solutions(theta_b [*E] float64) -> [M, *Y]`` of one instance (your own enumerator).
            Optimality and membership are checked against them.
        oracle: alternatively, ``oracle(theta_b) ->`` the optimal objective in the solver's natural sense (a
            number), or an optimal solution ``[*Y]`` (its objective ``solver.objective`` is used).
        atol: tolerance of objective comparisons, relative to ``max(1, |optimum|)``.
        devices: devices to check on besides the CPU (default: ``cuda`` when available).

    Returns:
        ``{"batch": B, "checked_optimal": number of instances checked optimal, "devices": [...],
        "recipe": "ok" or why the solver cannot run on worker processes}``.

    Raises:
        AssertionError: a property of the contract does not hold (the message says which, for which instance).
        ValueError: ``theta`` has the wrong rank for the solver.
    """
    if not isinstance(solver, Solver):
        raise ValueError(f"solver must be a discreteopt Solver; got {type(solver).__name__}")
    if not isinstance(theta, torch.Tensor) or theta.ndim != 1 + solver.event_ndim:
        raise ValueError(f"theta must be a tensor of shape {solver.theta_layout}; got "
                         f"{tuple(getattr(theta, 'shape', ()))}")
    if solutions is not None and oracle is not None:
        raise ValueError("pass solutions or oracle, not both")
    theta = theta.detach().to(torch.float64).cpu()
    B = theta.shape[0]
    y = solver.solve(theta)
    expected_shape = (B, *solver.output_shape(tuple(theta.shape[1:])))
    _require(tuple(y.shape) == expected_shape, f"output shape {tuple(y.shape)} != expected {expected_shape}")
    _require(y.dtype == torch.float64 and y.device == theta.device, "output must keep the input's dtype and device")

    # dtypes, autograd
    y32 = solver.solve(theta.float().requires_grad_(True))
    _require(y32.dtype == torch.float32, f"float32 input gave {y32.dtype}")
    _require(not y32.requires_grad, "solve() must not build an autograd graph")
    _require(_objective_close(solver, theta, y32.double(), y, max(atol, 1e-5)),
             "float32 input gave a solution of another objective value")
    for half in (torch.float16, torch.bfloat16):
        rounded = theta.to(half)
        if not bool(torch.isfinite(rounded).all()):
            continue  # not representable in this dtype
        yh = solver.solve(rounded)
        _require(yh.dtype == half, f"{half} input gave {yh.dtype}")
        ref = solver.solve(rounded.double())  # the same (rounded) values, solved in float64
        _require(_objective_close(solver, rounded.double(), yh.double(), ref, max(atol, 1e-5)),
                 f"{half} input gave another solution than its values in float64")

    # determinism and batch independence
    _require(torch.equal(y, solver.solve(theta)), "two calls on the same input disagree")
    for b in range(B):
        yb = solver.solve(theta[b : b + 1])
        _require(torch.equal(yb[0], y[b]), f"instance {b} solved alone differs from the batched solution")

    # numpy entry point, maximize, recipe round trip
    y_np = solver.solve_numpy(theta.numpy())
    _require(np.array_equal(y_np, y.numpy()), "solve_numpy disagrees with solve")
    _require(torch.equal(solver.maximize(-theta if solver.sense == "min" else theta), y),
             "maximize() must solve the natural problem after flipping the sign once")
    try:
        spec, _ = verified_spec(solver)
        recipe = "ok"
    except RecipeError as exc:
        recipe = f"in-process only (Inline, Threads): {exc}"
    else:
        _require(torch.equal(spec.build().solve(theta), y), "solver rebuilt from spec() disagrees")

    # feasibility
    feas = solver.is_feasible(y.numpy())
    if feas is not None:
        bad = np.nonzero(~np.asarray(feas, dtype=bool))[0]
        _require(bad.size == 0, f"infeasible solution for instance {bad[:5].tolist()}")
    points = [_points(solutions, theta[b].numpy(), b) for b in range(B)] if solutions is not None else None
    if points is not None:
        for b in range(B):
            flat = points[b].reshape(len(points[b]), -1)  # [M, prod(Y)]
            _require(bool((np.abs(flat - y[b].numpy().reshape(1, -1)).max(1, initial=0.0) < 1e-9).any()),
                     f"instance {b}: solution is not among the feasible points")

    # optimality
    n_opt = 0
    if points is not None or oracle is not None:
        got = solver.objective(theta, y).numpy()
        for b in range(B):
            if points is not None:
                best = brute_force_value(solver, theta[b].numpy(), points[b])
            else:
                best = _oracle_value(solver, oracle, theta[b].numpy(), b)
            _require(abs(got[b] - best) <= atol * max(1.0, abs(best)),
                     f"instance {b}: objective {got[b]:.9g} but the optimum is {best:.9g}")
            n_opt += 1

    # bad input
    for name, bad_theta in (("NaN", _poison(theta, float("nan"))), ("inf", _poison(theta, float("inf"))),
                            ("rank", theta[0] if theta.ndim > 1 else theta[None]),
                            ("integer dtype", theta.to(torch.int64))):
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

    return {"batch": B, "checked_optimal": n_opt, "devices": ["cpu", *devices], "recipe": recipe}


def brute_force_value(solver: Solver, theta_b: np.ndarray, solutions: np.ndarray) -> float:
    """Optimal objective of one instance ``theta_b [*E]`` over all its feasible points ``[M, *Y]`` in the solver's
    natural sense (through ``solver.objective``, so ``Y`` may differ from ``E``)."""
    sols = torch.as_tensor(np.asarray(solutions, dtype=np.float64))
    if len(sols) == 0:
        raise AssertionError("no feasible point was given for this instance (solutions is empty)")
    t = torch.as_tensor(np.asarray(theta_b, dtype=np.float64))
    values = solver.objective(t.expand(len(sols), *t.shape), sols)  # [M]
    return float(values.min() if solver.sense == "min" else values.max())


def enumerate_solutions(solver: Solver, event_shape: Sequence[int]) -> np.ndarray:
    """All feasible points ``[M, *Y]`` of a small instance of shape ``event_shape``, for the built-in solvers.

    Supports ``TopK`` and ``Argmax`` (any n), ``GridShortestPath`` (grids up to about 4x4),
    ``GraphShortestPath`` (all simple paths; small graphs), ``Knapsack`` (up to ~16 items), ``Assignment``
    (all injective row -> column maps) and pure-integer ``ILP`` with finite bounds (up to 2^16 candidate
    points). The enumeration is built from the problem's definition, independently of the solver's algorithm.

    Raises:
        ValueError: for any other solver (your own included): pass your own enumerator to :func:`check_solver`
            instead (``solutions=`` all points, or a function of one instance, or ``oracle=``).

    Example::

        >>> from discreteopt.solvers import TopK
        >>> enumerate_solutions(TopK(1), (3,))
        array([[1., 0., 0.],
               [0., 1., 0.],
               [0., 0., 1.]])
    """
    from .solvers import ILP, Argmax, Assignment, GraphShortestPath, GridShortestPath, Knapsack, TopK

    if isinstance(solver, TopK):
        (n,) = event_shape
        rows = [np.isin(np.arange(n), idx).astype(np.float64) for idx in itertools.combinations(range(n), solver.k)]
        return np.stack(rows) if rows else np.zeros((0, n))
    if isinstance(solver, Argmax):
        (n,) = event_shape
        return np.eye(n)
    if isinstance(solver, GridShortestPath):
        return _grid_paths(solver, *event_shape)
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
    raise ValueError(f"enumerate_solutions cannot enumerate {type(solver).__name__} (it knows the built-in "
                     "solvers only); pass your own brute force to check_solver: solutions=<all feasible points "
                     "[M, *Y]> or solutions=<function theta_b -> [M, *Y]>, or oracle=<function theta_b -> optimal "
                     "value or solution>")


def _grid_paths(solver, h: int, w: int) -> np.ndarray:
    """Vertex masks ``[M, H, W]`` of all simple paths between the grid's corners, from the problem's definition
    (king or rook moves), not from the solver's internals."""
    import networkx as nx

    def cell(rc: tuple[int, int], name: str) -> tuple[int, int]:
        r, c = rc[0] % h if -h <= rc[0] < h else None, rc[1] % w if -w <= rc[1] < w else None
        if r is None or c is None:
            raise ValueError(f"{name}={rc} is outside the {h}x{w} grid")
        return r, c

    moves = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    if solver.neighbourhood == 4:
        moves = [(dr, dc) for dr, dc in moves if abs(dr) + abs(dc) == 1]
    g = nx.Graph()
    g.add_nodes_from((r, c) for r in range(h) for c in range(w))
    g.add_edges_from(((r, c), (r + dr, c + dc)) for r in range(h) for c in range(w) for dr, dc in moves
                     if 0 <= r + dr < h and 0 <= c + dc < w)
    s, t = cell(solver.source, "source"), cell(solver.target, "target")
    masks = []
    for path in ([[s]] if s == t else nx.all_simple_paths(g, s, t)):
        m = np.zeros((h, w))
        for r, c in path:
            m[r, c] = 1.0
        masks.append(m)
    return np.unique(np.stack(masks), axis=0)


def _binary_cube(n: int) -> np.ndarray:
    """All ``2^n`` 0/1 vectors ``[2^n, n]``."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float64)


def _ilp_points(solver: ILP, limit: int = 1 << 16) -> np.ndarray:
    """Feasible points of a pure integer program with finite bounds (at most ``limit`` candidates)."""
    if not np.all(solver.integrality) or not (np.isfinite(solver.lb).all() and np.isfinite(solver.ub).all()):
        raise ValueError("enumerate_solutions needs an ILP whose variables are all integer with finite bounds; "
                         "pass your own solutions= or oracle= to check_solver")
    ranges = [np.arange(lo, hi + 1) for lo, hi in zip(solver.lb, solver.ub, strict=True)]
    if np.prod([float(len(r)) for r in ranges]) > limit:
        raise ValueError(f"enumerate_solutions: more than {limit} candidate points; pass your own solutions= or "
                         "oracle= to check_solver")
    pts = np.array(list(itertools.product(*ranges)), dtype=np.float64).reshape(-1, solver.n)  # [M, n]
    ok = np.ones(len(pts), dtype=bool)
    if solver.A_ub is not None:
        ok &= np.all(pts @ solver.A_ub.T <= solver.b_ub + 1e-9, axis=1)
    if solver.A_eq is not None:
        ok &= np.all(np.abs(pts @ solver.A_eq.T - solver.b_eq) <= 1e-9, axis=1)
    return pts[ok]


def _points(solutions: Solutions, theta_b: np.ndarray, b: int) -> np.ndarray:
    """The feasible points of instance ``b`` as a float64 array ``[M, *Y]``."""
    pts = solutions(theta_b.copy()) if callable(solutions) else solutions
    try:
        return np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"solutions must be an array [M, *Y] of feasible points (or a function of one instance "
                         f"returning one); got {type(pts).__name__} for instance {b} ({exc})") from exc


def _oracle_value(solver: Solver, oracle: Oracle, theta_b: np.ndarray, b: int) -> float:
    """``oracle(theta_b)`` as an optimal value: a number, or the objective of the optimal solution it returned."""
    out = oracle(theta_b.copy())
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    return brute_force_value(solver, theta_b, arr[None])


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
