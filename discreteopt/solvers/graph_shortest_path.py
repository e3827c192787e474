"""Shortest paths on a fixed graph with per-instance edge costs.

Given edge costs ``c [B, E]``, returns the edge indicator ``y [B, E]`` of a ``source -> target`` path minimising
``<c, y>`` (``sense = "min"``). The graph is fixed at construction; only costs change per instance, which is the
predict-then-optimise setting (Elmachtoub & Grigas, "Smart Predict, then Optimize", 2022; PyEPO, Tang & Khalil
2022). Undirected graphs are traversed both ways at the edge's cost.

Two algorithms, chosen once from the graph at construction:

* **acyclic** (``solver.acyclic``: directed, and no cycle lies on a ``source -> target`` walk -- PyEPO's grid, any
  DAG): dynamic programming in topological order. Exact for costs of **any sign** (``min_cost = None``), so
  negative predicted or perturbed costs need no guard and ``solve`` accepts them.
* otherwise (a cycle, or an undirected graph): Dijkstra (numba) / Bellman-Ford (torch); costs must be ``>= 0``
  (``min_cost = 0``), a negative cost raises ``ValueError`` (a negative cycle would make the problem unbounded).

Both back-ends (numba, torch) return the same canonical path, bit for bit, ties included; on non-negative costs
the acyclic algorithm returns exactly Dijkstra's path (see :mod:`discreteopt.solvers._dijkstra_numba`). Costs
whose path sums overflow float64 (every path, or with negative costs any path) raise
:class:`~discreteopt.solvers.base.InstanceError` with status ``"OVERFLOW"`` and the instance's index.
``GraphShortestPath.grid(5, 5)`` builds the 5x5 right/down grid (40 arcs) used by the shortest-path benchmarks
of the predict-then-optimise literature.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from ._backend import NumbaOrTorch, numba_kernels, raise_overflow, resolve_backend
from ._dijkstra_torch import bellman_ford, dag_labels, overflowed, read_back, topological_levels
from .base import Solver


def _as_edge_array(graph: Any) -> tuple[np.ndarray, int, bool, list | None]:
    """(edges [E, 2] int64, num_nodes, directed, node labels or None) from a networkx graph or edge list."""
    try:
        import networkx as nx
    except ImportError:  # pragma: no cover - networkx is a dependency
        nx = None
    if nx is not None and isinstance(graph, nx.Graph):
        if graph.is_multigraph():
            raise ValueError("graph must be a simple networkx Graph/DiGraph; multigraphs are not supported")
        labels = list(graph.nodes)
        index = {n: i for i, n in enumerate(labels)}
        edges = np.asarray([(index[u], index[v]) for u, v in graph.edges], dtype=np.int64).reshape(-1, 2)
        return edges, len(labels), graph.is_directed(), labels
    edges = np.asarray(graph)
    if edges.ndim != 2 or edges.shape[1] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise ValueError(f"graph must be a networkx graph or an integer edge list of shape [E, 2]; "
                         f"got an array of shape {edges.shape} and dtype {edges.dtype}")
    if edges.size and edges.min() < 0:
        raise ValueError("graph edge list must hold non-negative node ids")
    n = int(edges.max()) + 1 if edges.size else 0
    return edges.astype(np.int64), n, True, None


class GraphShortestPath(NumbaOrTorch, Solver):
    """Edge-weighted shortest path on a fixed graph: costs ``[B, E]`` -> edge indicator ``[B, E]``.

    ``y*(c) = argmin_{y in P(s, t)} <c, y>`` over the edge indicators of the simple ``source -> target`` paths.

    Args:
        graph: a networkx ``DiGraph``/``Graph`` (edges numbered in ``graph.edges`` order, nodes in
            ``graph.nodes`` order) or an integer edge list ``[E, 2]`` of ``(tail, head)`` node ids.
        source, target: node labels (networkx) or ids (edge list).
        num_nodes: number of nodes for an edge list (default: ``max id + 1``).
        directed: for an edge list, whether edges are one-way (default) or usable both ways.
        backend: ``"auto"`` (numba if installed), ``"numba"`` or ``"torch"`` (runs on the input's device).

    Attributes:
        acyclic: True when the graph is directed and no cycle lies on a ``source -> target`` walk; costs of any
            sign are then solved exactly (``min_cost is None``), otherwise they must be ``>= 0`` (``min_cost = 0``).
        shift_invariant: True when every ``source -> target`` path has the same number of edges.

    Example::

        >>> solver = GraphShortestPath.grid(5, 5)             # PyEPO's 5x5 grid, 40 arcs, acyclic
        >>> y = solver.solve(torch.randn(8, 40))               # negative costs are fine here
        >>> y.shape, bool((y.sum(1) == 8).all())
        (torch.Size([8, 40]), True)
    """

    sense = "min"
    event_ndim = 1
    theta_layout = "[B, E]"
    min_cost = 0.0
    arg_name = "costs"

    def __init__(self, graph: Any, source: Any, target: Any, num_nodes: int | None = None,
                 directed: bool | None = None, backend: str = "auto"):
        edges, n, is_directed, labels = _as_edge_array(graph)
        if labels is not None:
            index = {lab: i for i, lab in enumerate(labels)}
            for name, node in (("source", source), ("target", target)):
                if node not in index:
                    raise ValueError(f"{name}={node!r} is not a node of the graph")
            source, target = index[source], index[target]
        if num_nodes is not None:
            if num_nodes < n:
                raise ValueError(f"num_nodes={num_nodes} is smaller than the largest node id + 1 = {n}")
            n = int(num_nodes)
        directed = is_directed if directed is None else bool(directed)
        for name, node in (("source", source), ("target", target)):
            if isinstance(node, bool) or not isinstance(node, (int, np.integer)) or not 0 <= node < n:
                raise ValueError(f"{name} must be a node id in [0, {n}); got {node!r}")
        self.edges, self.num_nodes, self.directed = edges, n, directed
        self.source, self.target = int(source), int(target)
        self.node_labels = labels
        self.backend = resolve_backend(backend)
        self._requested_backend = backend
        self._build_arcs()
        if not self._reachable():
            raise ValueError(f"target={target!r} is not reachable from source={source!r} in the graph")
        self.shift_invariant = self._graded()
        self._find_order()
        self.min_cost = None if self.acyclic else 0.0
        self._spec_kwargs = {"graph": self.edges, "source": self.source, "target": self.target,
                             "num_nodes": self.num_nodes, "directed": self.directed, "backend": backend}

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def grid(cls, height: int = 5, width: int = 5, backend: str = "auto") -> GraphShortestPath:
        """The right/down grid of the predict-then-optimise benchmarks (PyEPO's shortest path).

        Nodes are numbered row-major; edges are listed row by row: first the ``width - 1`` rightward edges
        of the row, then the ``width`` downward edges to the next row (none after the last row). For 5x5
        that is 40 edges; the path runs from node 0 (top-left) to node ``height * width - 1``.
        """
        edges = []
        for i in range(height):
            for j in range(width - 1):
                v = i * width + j
                edges.append((v, v + 1))
            if i < height - 1:
                for j in range(width):
                    v = i * width + j
                    edges.append((v, v + width))
        return cls(np.asarray(edges, dtype=np.int64), 0, height * width - 1, num_nodes=height * width,
                   backend=backend)

    def _build_arcs(self) -> None:
        """Arcs sorted by (tail, edge id): arc ids are CSR positions, the order ties are broken in."""
        e = np.arange(len(self.edges), dtype=np.int64)
        tail, head, edge = self.edges[:, 0], self.edges[:, 1], e
        if not self.directed:
            tail = np.concatenate([self.edges[:, 0], self.edges[:, 1]])
            head = np.concatenate([self.edges[:, 1], self.edges[:, 0]])
            edge = np.concatenate([e, e])
        order = np.lexsort((edge, tail))
        self._tail, self._head, self._edge = tail[order], head[order], edge[order]
        self._indptr = np.searchsorted(self._tail, np.arange(self.num_nodes + 1)).astype(np.int64)
        self._rev_arc = np.lexsort((np.arange(len(self._head)), self._head)).astype(np.int64)
        self._rev_indptr = np.searchsorted(self._head[self._rev_arc], np.arange(self.num_nodes + 1)).astype(np.int64)

    def _reachable(self) -> bool:
        seen, todo = {self.source}, deque([self.source])
        while todo:
            u = todo.popleft()
            for a in range(self._indptr[u], self._indptr[u + 1]):
                v = int(self._head[a])
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return self.target in seen

    def _hops(self, start: int, tails: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """Fewest arcs from ``start`` along ``tails -> heads`` to every node (-1: unreachable)."""
        hops = np.full(self.num_nodes, -1, dtype=np.int64)
        hops[start] = 0
        todo = deque([start])
        order = np.argsort(tails, kind="stable")
        ptr = np.searchsorted(tails[order], np.arange(self.num_nodes + 1))
        while todo:
            u = todo.popleft()
            for a in order[ptr[u]:ptr[u + 1]]:
                v = int(heads[a])
                if hops[v] < 0:
                    hops[v] = hops[u] + 1
                    todo.append(v)
        return hops

    def _useful_arcs(self) -> np.ndarray:
        """``[A]`` bool: the arcs that lie on some ``source -> target`` walk."""
        from_s = self._hops(self.source, self._tail, self._head)
        to_t = self._hops(self.target, self._head, self._tail)
        return (from_s[self._tail] >= 0) & (to_t[self._head] >= 0)

    def _find_order(self) -> None:
        """Sets ``acyclic``, and for acyclic graphs the topological order of the nodes on ``source -> target``
        walks (Kahn's algorithm on the useful arcs) and the arc groups of the torch back-end."""
        useful = self._useful_arcs()
        self.acyclic, self._order, self._useful, self._levels = False, None, useful, None
        if not self.directed:
            return
        nodes = np.unique(np.concatenate([[self.source], self._tail[useful], self._head[useful]]))
        indeg = np.bincount(self._head[useful], minlength=self.num_nodes)
        order, todo = [], deque([self.source]) if indeg[self.source] == 0 else deque()
        while todo:
            u = todo.popleft()
            order.append(u)
            for a in range(self._indptr[u], self._indptr[u + 1]):
                if useful[a]:
                    v = int(self._head[a])
                    indeg[v] -= 1
                    if indeg[v] == 0:
                        todo.append(v)
        if len(order) != len(nodes):  # a cycle among the useful arcs
            return
        self.acyclic = True
        self._order = np.asarray(order, dtype=np.int64)
        self._levels = topological_levels(self._order, self._tail, self._head, useful)

    def _graded(self) -> bool:
        """True when every source -> target path has the same number of edges (so ``Shift()`` is exact).

        Sufficient condition, checked on the arcs that lie on some source -> target walk: each one goes from
        hop level ``L`` to ``L + 1`` (levels = fewest arcs from the source) and the target sits at the level of
        its distance. Then every walk, hence every path, has exactly ``level(target)`` edges -- e.g. the
        right/down grid of :meth:`grid`. Undirected graphs are never graded (an edge can be walked backwards).
        """
        if not self.directed:
            return False
        from_s = self._hops(self.source, self._tail, self._head)
        to_t = self._hops(self.target, self._head, self._tail)
        useful = (from_s[self._tail] >= 0) & (to_t[self._head] >= 0)  # arcs on some source -> target walk
        t, h = self._tail[useful], self._head[useful]
        level = from_s[self.target]
        return bool(np.all(from_s[h] == from_s[t] + 1) and np.all(from_s[t] + 1 + to_t[h] == level))

    # ------------------------------------------------------------------ contract
    def event_shape(self) -> tuple[int | None, ...]:
        return (len(self.edges),)


    def _solve_numba(self, theta: np.ndarray) -> np.ndarray:
        out = np.zeros(theta.shape, dtype=np.float64)
        status = np.zeros(theta.shape[0], dtype=np.int64)
        costs = np.ascontiguousarray(theta, dtype=np.float64)
        kernels = numba_kernels()
        if self.acyclic:
            kernels.dag_paths(self._order, self._rev_indptr, self._rev_arc, self._tail, self._edge, self._useful,
                              costs, self.source, self.target, out, status)
        else:
            kernels.graph_paths(self._indptr, self._head, self._edge, self._rev_indptr, self._rev_arc,
                                self._tail, costs, self.source, self.target, out, status)
        raise_overflow(type(self).__name__, status != kernels.OK)
        return out

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        dev = theta.device
        tail, head, edge = (torch.from_numpy(a).to(dev) for a in (self._tail, self._head, self._edge))
        costs = theta.to(torch.float64)
        arc_cost = costs[:, edge]  # [B, A]
        if self.acyclic:
            levels = [torch.from_numpy(a).to(dev) for a in self._levels]
            dist, hops = dag_labels(levels, tail, head, arc_cost, self.num_nodes, self.source)  # [B, N] each
            useful = torch.from_numpy(self._useful).to(dev)
            negative = (arc_cost[:, useful] < 0).any(dim=1)  # [B]
            bad = overflowed(dist, self.target, negative, torch.from_numpy(self._order).to(dev))
        else:
            dist, hops = bellman_ford(tail, head, arc_cost, self.num_nodes, self.source)
            bad = overflowed(dist, self.target)
        raise_overflow(type(self).__name__, bad)
        on_path = read_back(tail, head, arc_cost, dist, hops, self.source, self.target)  # [B, A]
        y = torch.zeros_like(costs)
        rows, arcs = on_path.nonzero(as_tuple=True)
        y[rows, edge[arcs]] = 1.0
        return y

    def is_feasible(self, y) -> np.ndarray:
        """Feasible ``[B]`` bool for ``y [B, E]``: the chosen edges form one simple ``source -> target`` path (no
        extra edges); for ``source == target`` the empty path. Vectorised except for the walk along each path."""
        y = np.asarray(y)
        binary = np.all((y == 0) | (y == 1), axis=-1)  # [B]
        if self.source == self.target:
            return binary & ~np.any(y == 1, axis=-1)
        return np.array([bool(ok) and self._is_path(row) for ok, row in zip(binary, y, strict=True)], dtype=bool)

    def _is_path(self, row: np.ndarray) -> bool:
        """``row [E]`` (0/1) is one simple ``source -> target`` path, ``source != target``."""
        chosen = set(np.nonzero(row)[0].tolist())
        v, used, visited = self.source, set(), {self.source}
        while v != self.target:
            nxt = [a for a in range(self._indptr[v], self._indptr[v + 1])
                   if int(self._edge[a]) in chosen and int(self._edge[a]) not in used]
            if len(nxt) != 1:
                return False
            a = nxt[0]
            used.add(int(self._edge[a]))
            v = int(self._head[a])
            if v in visited:
                return False
            visited.add(v)
        return used == chosen
