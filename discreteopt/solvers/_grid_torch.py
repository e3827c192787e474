"""Batched vertex-weighted grid shortest paths in pure torch, by shifted slices; runs on any device.

The torch back-end of :class:`~discreteopt.solvers.GridShortestPath`. It computes the canonical path of
:mod:`._dijkstra_numba` bit for bit (same float sums, same tie rule), but instead of gathering and scattering
over an arc list it relaxes all ``K`` neighbour directions of every cell with ``K`` shifted views of a padded
``[B, H+2, W+2]`` array -- dense, contiguous work that suits GPUs (and is ~10x faster than the arc-list
Bellman-Ford on CPU):

1. distances (Jacobi Bellman-Ford): ``d <- min(d, min_k shift_k(d) + w)`` until nothing changes,
   ``d[source] = w[source]`` (vertex costs: both end points count). ``fl(min_u d_u + w_v) = min_u fl(d_u + w_v)``
   because adding ``w_v >= 0`` is monotone in floating point, so these are exactly the compiled kernel's sums;
2. tight moves ``u -> v``: ``fl(d_u + w_v) == d_v``; hop counts ``h`` = fewest tight moves from the source
   (the same Jacobi sweep on ``h`` restricted to tight moves);
3. read-back from the target: at ``v`` take the first direction ``k`` (the solver's fixed offset order) whose
   predecessor ``u = v - offset_k`` is tight with ``h_u = h_v - 1``.

Cost per sweep: ``O(K B H W)``; sweeps: about the largest hop count of a shortest path (<= H W).
"""

from __future__ import annotations

import torch


def _shifted(padded: torch.Tensor, dr: int, dc: int, h: int, w: int) -> torch.Tensor:
    """``out[b, r, c] = padded[b, 1 + r - dr, 1 + c - dc]``: the value at the predecessor ``(r-dr, c-dc)``."""
    return padded[:, 1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w]  # [B, H, W] view


def _min_over_moves(padded: torch.Tensor, offsets, out: torch.Tensor, add: torch.Tensor | None = None) -> None:
    """``out = min_k (shift_k(padded) [+ add[k]])`` in place, without materialising the ``K`` shifts."""
    h, w = out.shape[1:]
    tmp = torch.empty_like(out) if add is not None else None
    for k, (dr, dc) in enumerate(offsets):
        view = _shifted(padded, dr, dc, h, w)  # [B, H, W]
        if add is not None:
            view = torch.add(view, add[k], out=tmp)
        if k == 0:
            out.copy_(view)
        else:
            torch.minimum(out, view, out=out)


def grid_path_masks(costs: torch.Tensor, source: tuple[int, int], target: tuple[int, int],
                    offsets: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(masks, overflow)``: 0/1 masks ``[B, H, W]`` of the canonical shortest ``source -> target`` paths for
    costs ``[B, H, W] >= 0``, and ``overflow [B]`` bool, the instances whose target distance is not finite (every
    path sum overflows float64). When any instance overflows, no path is read back and ``masks`` is ``None``."""
    b, h, w = costs.shape
    sr, sc = source
    tr, tc = target
    inf = float("inf")
    dist = torch.full_like(costs, inf)  # [B, H, W]
    dist[:, sr, sc] = costs[:, sr, sc]
    padded = torch.full((b, h + 2, w + 2), inf, dtype=costs.dtype, device=costs.device)  # [B, H+2, W+2]
    best = torch.empty_like(costs)  # [B, H, W] scratch
    for _ in range(h * w):
        padded[:, 1:-1, 1:-1] = dist
        _min_over_moves(padded, offsets, best)
        new = torch.minimum(dist, best.add_(costs))
        if torch.equal(new, dist):
            break
        dist = new
    overflow = ~torch.isfinite(dist[:, tr, tc])  # [B]
    if bool(overflow.any()):  # inf + w == inf would make every move "tight": no path to read back
        return None, overflow

    padded[:, 1:-1, 1:-1] = dist
    tight = torch.stack([(_shifted(padded, dr, dc, h, w) + costs == dist) for dr, dc in offsets])  # [K, B, H, W]
    step_cost = torch.where(tight, 1.0, inf).to(costs.dtype)  # [K, B, H, W]: 1 per tight move, inf otherwise
    hops = torch.full_like(costs, inf)
    hops[:, sr, sc] = 0.0
    hpad = torch.full_like(padded, inf)
    for _ in range(h * w):
        hpad[:, 1:-1, 1:-1] = hops
        _min_over_moves(hpad, offsets, best, step_cost)
        new = torch.minimum(hops, best)
        if torch.equal(new, hops):
            break
        hops = new

    hpad[:, 1:-1, 1:-1] = hops
    pred_hops = torch.stack([_shifted(hpad, dr, dc, h, w) for dr, dc in offsets])  # [K, B, H, W]
    step_back = tight & (pred_hops == hops - 1.0)  # [K, B, H, W]: usable predecessor directions
    k_ids = torch.arange(len(offsets), device=costs.device).view(-1, 1, 1, 1)
    first = torch.where(step_back, k_ids, len(offsets)).amin(0)  # [B, H, W]: first direction in order
    dr_t = torch.tensor([o[0] for o in offsets] + [0], device=costs.device)
    dc_t = torch.tensor([o[1] for o in offsets] + [0], device=costs.device)

    mask = torch.zeros_like(costs)
    rows = torch.arange(b, device=costs.device)
    r = torch.full((b,), tr, dtype=torch.long, device=costs.device)
    c = torch.full((b,), tc, dtype=torch.long, device=costs.device)
    mask[:, tr, tc] = 1.0
    steps = int(hops[:, tr, tc].max().item()) if b else 0
    for _ in range(steps):
        active = (r != sr) | (c != sc)  # [B]
        k = first[rows, r, c]  # [B]
        if bool((active & (k == len(offsets))).any()):
            raise RuntimeError("grid shortest path: no predecessor found while reading the path back")
        k = torch.where(active, k, len(offsets))
        r, c = r - dr_t[k], c - dc_t[k]
        mask[rows, r, c] = 1.0
    return mask, overflow
