"""Symmetric travelling salesman: the cheapest Hamiltonian cycle, solved exactly with OR-Tools CP-SAT.

For every instance ``b`` with symmetric edge costs ``c_b [E]`` on ``n`` nodes (``E = n (n - 1) / 2``)::

    y*_b = argmin_{y in T} <c_b, y>,     T = {edge indicators of the Hamiltonian cycles of K_n}

Edge order (the columns of ``c`` and ``y``): ``itertools.combinations(range(n), 2)``, i.e. ``(0,1), (0,2), ...,
(0,n-1), (1,2), ...`` -- the condensed upper triangle of the cost matrix (``scipy.spatial.distance.pdist``), the
order of PyEPO's TSP models and of :func:`discreteopt.data.generate_tsp`. :meth:`TSP.edge_costs` turns a
``[B, n, n]`` matrix into this vector.

**Model.** CP-SAT's ``add_circuit`` over the ``n (n - 1)`` directed arcs, edge ``{u, v}`` used when ``u -> v`` or
``v -> u`` is (``y_uv = a_uv + a_vu``, the same for both orientations of a tour). CP-SAT proves optimality, so
the answer is exact for any ``n``; the time grows quickly with ``n``: on one core, PyEPO's TSP data take ~13 ms
per instance at ``n = 10``, ~0.1 s at ``n = 20`` (the size of PyEPO's experiments) and ~0.3-0.5 s at ``n = 30``.
``time_limit`` bounds one instance; an instance that stops before proving optimality raises
:class:`~discreteopt.solvers.base.InstanceError` with status ``"TIME_LIMIT"``.

**Integer costs and precision.** CP-SAT needs integer objective coefficients. Each instance is normalised by its
largest magnitude and rounded::

    k_b,e = round(10**digits * c_b,e / max_e |c_b,e|)         (|k_b,e| <= 10**digits; all zero when c_b == 0)

Dividing first keeps every input -- subnormal, huge, negative -- in range (no overflow, never an abort in native
code). Rounding moves each cost by at most ``0.5 max|c_b| 10**-digits``, so the returned tour is optimal for
``c_b`` up to ``n max|c_b| 10**-digits`` (default ``digits = 9``: relative precision ``n 1e-9``); tours closer
than that are treated as ties.

**Negative costs** are solved exactly: every tour has ``n`` edges, so adding a constant to all edge costs of an
instance keeps its optimal tours (``shift_invariant = True``, no ``min_cost``), and CP-SAT takes signed
coefficients anyway.

**Ties are broken deterministically.** One CP-SAT worker, a fixed seed, no solution hints, and an objective
rebuilt from the instance's integer costs alone: the tour returned is a function of ``k_b`` only -- the same
for an instance solved alone, in any batch, after any other instance, in any thread or worker process.
Which of several tied tours is returned is not otherwise specified.

Reference: Dantzig, Fulkerson & Johnson (1954) for the problem; the OR-Tools CP-SAT ``AddCircuit`` constraint.
"""

from __future__ import annotations

import itertools

import numpy as np

from .._validation import check_int_in_range, check_positive
from .base import InstanceError, Solver, ThreadLocalBackend

_EXACT_IN_DOUBLE = 2.0**53


class _CircuitModel:
    """One CP-SAT model per thread: arc literals and the circuit; the objective is replaced per instance."""

    def __init__(self, n: int, time_limit: float | None):
        from ortools.sat.python import cp_model

        self.cp_model = cp_model
        self.model = cp_model.CpModel()
        self.arc = {(u, v): self.model.new_bool_var(f"a{u}_{v}") for u in range(n) for v in range(n) if u != v}
        # both orientations of a tour stay feasible: an orientation constraint (node 0's successor < its
        # predecessor) made n = 20 instances ~1.5x slower to prove
        self.model.add_circuit([(u, v, lit) for (u, v), lit in self.arc.items()])
        self.edges = list(itertools.combinations(range(n), 2))
        self.lits = [self.arc[e] for e in self.edges] + [self.arc[v, u] for u, v in self.edges]  # [2E]
        self.solver = cp_model.CpSolver()
        self.solver.parameters.num_workers = 1
        self.solver.parameters.random_seed = 0
        if time_limit is not None:
            self.solver.parameters.max_time_in_seconds = time_limit
        self.time_limit = time_limit

    def solve(self, k: np.ndarray) -> tuple[str, np.ndarray | None, str]:
        coefs = k.tolist() * 2  # both directions of an edge cost the same
        self.model.minimize(self.cp_model.LinearExpr.weighted_sum(self.lits, coefs))
        status = self.solver.status_name(self.solver.solve(self.model))
        if status != "OPTIMAL":
            detail = f"CP-SAT status {status} after {self.solver.wall_time:.3g} s"
            if self.time_limit is not None and status in ("FEASIBLE", "UNKNOWN"):
                return "TIME_LIMIT", None, detail + f" (time_limit={self.time_limit})"
            return status, None, detail
        e = len(self.edges)
        used = np.fromiter((self.solver.boolean_value(lit) for lit in self.lits), dtype=np.float64, count=2 * e)
        return status, used[:e] + used[e:], ""


class TSP(ThreadLocalBackend, Solver):
    """Exact symmetric TSP: edge costs ``[B, n(n-1)/2] -> tour edge indicators [B, n(n-1)/2]`` (module docstring).

    Args:
        num_nodes: number of nodes ``n >= 3``.
        digits: decimal digits of the integer costs given to CP-SAT (precision note in the module docstring).
        time_limit: seconds per instance (``None``: no limit); reaching it raises ``InstanceError``.

    Shapes: ``costs [B, E]`` with ``E = n (n - 1) / 2`` in ``itertools.combinations`` order; output ``[B, E]``
    0/1, exactly ``n`` ones per row forming one cycle through every node.

    Example::

        solver = TSP(20)
        data = discreteopt.data.generate_tsp(100, num_nodes=20, deg=4)
        y = solver.solve(torch.from_numpy(data.c))          # [100, 190]
        order = solver.tours(y)                              # [100, 20] node sequences from node 0
    """

    sense = "min"
    event_ndim = 1
    theta_layout = "[B, n(n-1)/2]"
    arg_name = "costs"
    min_cost = None
    shift_invariant = True  # every tour has n edges

    def __init__(self, num_nodes: int, digits: int = 9, time_limit: float | None = None):
        self.num_nodes = check_int_in_range(num_nodes, "num_nodes", 3, 10_000)
        self.num_edges = self.num_nodes * (self.num_nodes - 1) // 2
        self.digits = check_int_in_range(digits, "digits", 1, 15)
        if self.num_nodes * 10.0**self.digits >= _EXACT_IN_DOUBLE:
            raise ValueError(f"digits={self.digits} with num_nodes={self.num_nodes} overflows the exact integer "
                             "range of a tour's cost; lower digits")
        self.time_limit = None if time_limit is None else check_positive(time_limit, "time_limit")
        self._spec_kwargs = {"num_nodes": self.num_nodes, "digits": self.digits, "time_limit": self.time_limit}
        self._init_local()

    @property
    def edges(self) -> list[tuple[int, int]]:
        """The undirected edges ``(u, v)``, ``u < v``, in column order."""
        return list(itertools.combinations(range(self.num_nodes), 2))

    def event_shape(self) -> tuple[int, ...]:
        return (self.num_edges,)

    def integer_costs(self, costs: np.ndarray) -> np.ndarray:
        """The integer costs ``k [B, E]`` (int64) CP-SAT optimises for ``costs [B, E]`` (module docstring)."""
        c = np.asarray(costs, dtype=np.float64)
        top = np.abs(c).max(axis=-1, keepdims=True)  # [B, 1]
        unit = np.divide(c, top, out=np.zeros_like(c), where=top > 0)  # in [-1, 1], never overflows
        return np.rint(unit * 10.0**self.digits).astype(np.int64)

    def _model(self) -> _CircuitModel:
        model = getattr(self._local, "model", None)
        if model is None:
            model = self._local.model = _CircuitModel(self.num_nodes, self.time_limit)
        return model

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        model = self._model()
        k = self.integer_costs(theta)  # [B, E]
        out = np.empty_like(theta)  # [B, E]
        for b in range(theta.shape[0]):
            status, y, detail = model.solve(k[b])
            if y is None:
                raise InstanceError("TSP", b, status, detail)
            out[b] = y
        return out

    # ----------------------------------------------------------------- helpers
    def edge_costs(self, matrix) -> np.ndarray:
        """Symmetric cost matrices ``[B, n, n]`` (or ``[n, n]``) -> edge cost vectors ``[B, E]`` in column order.

        Raises ``ValueError`` when a matrix is not symmetric (the diagonal is ignored).
        """
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim == 2:
            m = m[None]
        n = self.num_nodes
        if m.ndim != 3 or m.shape[1:] != (n, n):
            raise ValueError(f"matrix must have shape [B, {n}, {n}] or [{n}, {n}]; got {np.shape(matrix)}")
        if not np.allclose(m, np.swapaxes(m, 1, 2), rtol=0, atol=0, equal_nan=True):
            raise ValueError("matrix must be symmetric (TSP solves the symmetric problem)")
        iu, ju = np.triu_indices(n, k=1)
        return m[:, iu, ju]

    def tours(self, y) -> np.ndarray:
        """Edge indicators ``[B, E]`` of tours -> node sequences ``[B, n]`` starting at node 0, continuing to the
        smaller-index neighbour. Raises ``ValueError`` for rows that are not a tour."""
        y = np.asarray(y, dtype=np.float64).reshape(-1, self.num_edges)
        ok = self.is_feasible(y)
        if not ok.all():
            raise ValueError(f"y row {int(np.flatnonzero(~ok)[0])} is not a Hamiltonian cycle")
        n = self.num_nodes
        iu, ju = np.triu_indices(n, k=1)
        out = np.empty((y.shape[0], n), dtype=np.int64)
        for b in range(y.shape[0]):
            adj = np.zeros((n, n), dtype=bool)
            on = y[b] > 0.5
            adj[iu[on], ju[on]] = adj[ju[on], iu[on]] = True
            prev, cur = -1, 0
            for i in range(n):
                out[b, i] = cur
                nxt = [int(v) for v in np.flatnonzero(adj[cur]) if v != prev]
                prev, cur = cur, min(nxt)
        return out

    def is_feasible(self, y) -> np.ndarray:
        """Per row of ``y [B, E]``: 0/1 entries, every node of degree 2, and one connected cycle -> bool ``[B]``."""
        y = np.asarray(y, dtype=np.float64).reshape(-1, self.num_edges)
        n = self.num_nodes
        iu, ju = np.triu_indices(n, k=1)
        ok = np.all((y == 0) | (y == 1), axis=1)
        for b in np.flatnonzero(ok):
            on = y[b] == 1
            deg = np.bincount(iu[on], minlength=n) + np.bincount(ju[on], minlength=n)
            if not (deg == 2).all():
                ok[b] = False
                continue
            adj = [[] for _ in range(n)]
            for u, v in zip(iu[on], ju[on], strict=True):
                adj[u].append(v)
                adj[v].append(u)
            seen, stack = {0}, [0]
            while stack:
                for v in adj[stack.pop()]:
                    if v not in seen:
                        seen.add(v)
                        stack.append(v)
            ok[b] = len(seen) == n
        return ok
