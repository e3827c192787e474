"""Shortest paths on a fixed graph with per-instance edge costs.

Given non-negative edge costs ``c [B, E]``, returns the edge indicator ``y [B, E]`` of a ``source -> target``
path minimising ``<c, y>`` (``sense = "min"``). The graph is fixed at construction; only costs change per
instance, which is the predict-then-optimise setting (Elmachtoub & Grigas, "Smart Predict, then Optimize",
2022; PyEPO, Tang & Khalil 2022). Undirected graphs are traversed both ways at the edge's cost.

Same back-ends and canonical tie-breaking as :class:`~discreteopt.solvers.GridShortestPath`
(numba heap Dijkstra / torch Bellman-Ford, identical paths). ``GraphShortestPath.grid(5, 5)`` builds the
5x5 right/down grid (40 arcs) used by the shortest-path benchmarks of the predict-then-optimise literature.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from ._backend import NumbaOrTorch, numba_kernels, resolve_backend
from ._dijkstra_torch import shortest_path_arcs
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

    Args:
        graph: a networkx ``DiGraph``/``Graph`` (edges numbered in ``graph.edges`` order, nodes in
            ``graph.nodes`` order) or an integer edge list ``[E, 2]`` of ``(tail, head)`` node ids.
        source, target: node labels (networkx) or ids (edge list).
        num_nodes: number of nodes for an edge list (default: ``max id + 1``).
        directed: for an edge list, whether edges are one-way (default) or usable both ways.
        backend: ``"auto"`` (numba if installed), ``"numba"`` or ``"torch"`` (runs on the input's device).
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
        numba_kernels().graph_paths(self._indptr, self._head, self._edge, self._rev_indptr, self._rev_arc,
                                    self._tail, np.ascontiguousarray(theta, dtype=np.float64),
                                    self.source, self.target, out)
        return out

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        dev = theta.device
        tail, head, edge = (torch.from_numpy(a).to(dev) for a in (self._tail, self._head, self._edge))
        costs = theta.to(torch.float64)
        on_path = shortest_path_arcs(tail, head, costs[:, edge], self.num_nodes, self.source, self.target)  # [B, A]
        y = torch.zeros_like(costs)
        rows, arcs = on_path.nonzero(as_tuple=True)
        y[rows, edge[arcs]] = 1.0
        return y

    def is_feasible(self, y) -> np.ndarray:
        """Feasible: the chosen edges form one simple ``source -> target`` path (no extra edges)."""
        y = np.asarray(y)
        return np.array([self._is_path(row) for row in y])

    def _is_path(self, row: np.ndarray) -> bool:
        if not np.all((row == 0) | (row == 1)):
            return False
        chosen = set(np.nonzero(row)[0].tolist())
        if self.source == self.target:
            return not chosen
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
