"""Batched shortest paths in pure torch (Bellman-Ford on an arc list); runs on any device.

This is the fallback when numba is missing and the GPU-native back-end: one ``scatter_reduce(amin)``
sweep per iteration relaxes every arc of every instance at once. It returns the same canonical path as
the compiled kernels in :mod:`._dijkstra_numba` (see that module's docstring): float path sums ``d``,
fewest-hop tight paths ``h``, read back from the target taking the first tight predecessor by arc id.

Cost: O(L * B * A) for L = number of sweeps until nothing changes (<= number of vertices; about the hop
length of the longest shortest path in practice).
"""

from __future__ import annotations

import torch


def shortest_path_arcs(
    tail: torch.Tensor,  # [A] long, arc origins
    head: torch.Tensor,  # [A] long, arc ends
    arc_cost: torch.Tensor,  # [B, A] float64, >= 0
    num_nodes: int,
    source: int,
    target: int,
    source_cost: torch.Tensor | None = None,  # [B] cost counted at the source (vertex-weighted graphs)
) -> torch.Tensor:
    """Indicator ``[B, A]`` of the arcs on the canonical shortest ``source -> target`` path per instance."""
    B, A = arc_cost.shape
    device = arc_cost.device
    head_b = head.expand(B, A)  # [B, A]
    inf = torch.tensor(float("inf"), dtype=arc_cost.dtype, device=device)

    dist = torch.full((B, num_nodes), float("inf"), dtype=arc_cost.dtype, device=device)
    dist[:, source] = 0.0 if source_cost is None else source_cost
    for _ in range(num_nodes):
        cand = dist[:, tail] + arc_cost  # [B, A]
        new = dist.scatter_reduce(1, head_b, cand, reduce="amin", include_self=True)
        if torch.equal(new, dist):
            break
        dist = new

    d_tail = dist[:, tail]  # [B, A]
    tight = (d_tail + arc_cost == dist[:, head]) & torch.isfinite(d_tail)  # [B, A]
    hops = torch.full_like(dist, float("inf"))
    hops[:, source] = 0.0
    for _ in range(num_nodes):
        cand = torch.where(tight, hops[:, tail] + 1.0, inf)  # [B, A]
        new = hops.scatter_reduce(1, head_b, cand, reduce="amin", include_self=True)
        if torch.equal(new, hops):
            break
        hops = new

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
