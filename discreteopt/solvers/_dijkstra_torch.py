"""Batched shortest paths in pure torch on an arc list; runs on any device.

This is the fallback when numba is missing and the GPU-native back-end. It returns the same canonical path as
the compiled kernels in :mod:`._dijkstra_numba` (see that module's docstring): float path sums ``d``,
fewest-hop tight paths ``h``, read back from the target taking the first tight predecessor by arc id.

Labels ``d`` and ``h`` come from one of two passes, then :func:`read_back` extracts the path:

* :func:`bellman_ford` (any graph, costs ``>= 0``): one ``scatter_reduce(amin)`` sweep per iteration relaxes every
  arc of every instance at once; ``O(L * B * A)`` for ``L`` sweeps until nothing changes (``<=`` number of vertices;
  about the hop length of the longest shortest path in practice);
* :func:`dag_labels` (acyclic source -> target walks, any sign of cost): the arcs grouped by the topological level of
  their head (:func:`topological_levels`), one ``scatter_reduce`` per level, every arc relaxed once: ``O(B * A)``.
  On non-negative costs its labels are Bellman-Ford's bit for bit (both are the smallest left-to-right float sums).

``d[target]`` not finite means every path sum overflowed: :func:`overflowed` flags those instances, and the solvers
raise :class:`~discreteopt.solvers.base.InstanceError` with status ``"OVERFLOW"`` for them.
"""

from __future__ import annotations

import numpy as np
import torch


def bellman_ford(
    tail: torch.Tensor,  # [A] long, arc origins
    head: torch.Tensor,  # [A] long, arc ends
    arc_cost: torch.Tensor,  # [B, A] float64, >= 0
    num_nodes: int,
    source: int,
    source_cost: torch.Tensor | None = None,  # [B] cost counted at the source (vertex-weighted graphs)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``(d [B, N], h [B, N])`` by Jacobi sweeps: distances until stable, then hop counts on tight arcs."""
    B, A = arc_cost.shape
    head_b = head.expand(B, A)  # [B, A]
    dist = torch.full((B, num_nodes), float("inf"), dtype=arc_cost.dtype, device=arc_cost.device)
    dist[:, source] = 0.0 if source_cost is None else source_cost
    for _ in range(num_nodes):
        cand = dist[:, tail] + arc_cost  # [B, A]
        new = dist.scatter_reduce(1, head_b, cand, reduce="amin", include_self=True)
        if torch.equal(new, dist):
            break
        dist = new

    inf = torch.tensor(float("inf"), dtype=arc_cost.dtype, device=arc_cost.device)
    tight = _tight(tail, head, arc_cost, dist)  # [B, A]
    hops = torch.full_like(dist, float("inf"))
    hops[:, source] = 0.0
    for _ in range(num_nodes):
        cand = torch.where(tight, hops[:, tail] + 1.0, inf)  # [B, A]
        new = hops.scatter_reduce(1, head_b, cand, reduce="amin", include_self=True)
        if torch.equal(new, hops):
            break
        hops = new
    return dist, hops


def topological_levels(order: np.ndarray, tail: np.ndarray, head: np.ndarray, useful: np.ndarray
                       ) -> list[np.ndarray]:
    """Arc ids of the ``useful`` arcs grouped by the level of their head, in increasing level.

    ``order`` lists the nodes of the useful (acyclic) subgraph in topological order, source first; the level of a
    node is the largest number of useful arcs on a path from the source to it, so every useful arc goes from a
    lower level to a higher one and each group only reads labels that are final.
    """
    level = np.zeros(int(max(tail.max(initial=0), head.max(initial=0), order.max(initial=0))) + 1, dtype=np.int64)
    arcs = np.nonzero(useful)[0]
    into = {}
    for a in arcs:
        into.setdefault(int(head[a]), []).append(int(a))
    for v in order[1:]:
        level[v] = 1 + max(level[tail[a]] for a in into[int(v)])
    groups: dict[int, list[int]] = {}
    for a in arcs:
        groups.setdefault(int(level[head[a]]), []).append(int(a))
    return [np.asarray(groups[k], dtype=np.int64) for k in sorted(groups)]


def dag_labels(
    levels: list[torch.Tensor],  # arc ids per level (see topological_levels), on the costs' device
    tail: torch.Tensor,  # [A] long
    head: torch.Tensor,  # [A] long
    arc_cost: torch.Tensor,  # [B, A] float64, any sign
    num_nodes: int,
    source: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``(d [B, N], h [B, N])`` by dynamic programming over the topological levels (module docstring)."""
    B = arc_cost.shape[0]
    dist = torch.full((B, num_nodes), float("inf"), dtype=arc_cost.dtype, device=arc_cost.device)
    hops = torch.full_like(dist, float("inf"))
    dist[:, source] = 0.0
    hops[:, source] = 0.0
    inf = torch.tensor(float("inf"), dtype=arc_cost.dtype, device=arc_cost.device)
    for arcs in levels:
        t, h = tail[arcs], head[arcs]  # [A_L]
        h_b = h.expand(B, len(arcs))  # [B, A_L]
        cand = dist[:, t] + arc_cost[:, arcs]  # [B, A_L]
        dist.scatter_reduce_(1, h_b, cand, reduce="amin", include_self=True)
        hop = torch.where(cand == dist[:, h], hops[:, t] + 1.0, inf)  # [B, A_L]: tight arcs only
        hops.scatter_reduce_(1, h_b, hop, reduce="amin", include_self=True)
    return dist, hops


def overflowed(dist: torch.Tensor, target: int, negative: torch.Tensor | None = None,
               nodes: torch.Tensor | None = None) -> torch.Tensor:
    """``[B]`` bool: the target label is not finite, or (where ``negative [B]``) a label of ``nodes`` is not."""
    bad = ~torch.isfinite(dist[:, target])
    if negative is not None:
        bad |= negative & ~torch.isfinite(dist[:, nodes]).all(dim=1)
    return bad


def _tight(tail: torch.Tensor, head: torch.Tensor, arc_cost: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    d_tail = dist[:, tail]  # [B, A]
    return (d_tail + arc_cost == dist[:, head]) & torch.isfinite(d_tail)  # [B, A]


def read_back(tail: torch.Tensor, head: torch.Tensor, arc_cost: torch.Tensor, dist: torch.Tensor,
              hops: torch.Tensor, source: int, target: int) -> torch.Tensor:
    """Indicator ``[B, A]`` of the arcs on the canonical path (``d[target]`` must be finite for every instance)."""
    B, A = arc_cost.shape
    device = arc_cost.device
    tight = _tight(tail, head, arc_cost, dist)  # [B, A]
    on_path = torch.zeros((B, A), dtype=torch.bool, device=device)
    v = torch.full((B,), target, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device)
    arc_ids = torch.arange(A, device=device)
    h_tail = hops[:, tail]  # [B, A]
    n_steps = int(hops[:, target].max().item()) if B else 0
    for _ in range(n_steps):
        active = v != source  # [B]
        h_v = hops[rows, v]  # [B]
        ok = tight & (head == v[:, None]) & (h_tail == (h_v - 1.0)[:, None]) & active[:, None]  # [B, A]
        # first tight predecessor by arc id: smallest index among the True entries
        first = torch.where(ok, arc_ids, A).amin(dim=1)  # [B]
        found = first < A
        if bool((active & ~found).any()):
            raise RuntimeError("shortest path: no predecessor found while reading the path back")
        safe = first.clamp(max=A - 1)
        on_path[rows[found], safe[found]] = True
        v = torch.where(found, tail[safe], v)
    return on_path
