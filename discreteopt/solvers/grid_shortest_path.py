"""Shortest paths on vertex-weighted grids (the Warcraft convention).

Given non-negative vertex costs ``w [B, H, W]``, returns the 0/1 mask ``y [B, H, W]`` of a path from
``source`` to ``target`` that minimises

    <w, y> = sum of the costs of every vertex on the path, both endpoints included,

moving to the 8 (or 4) neighbouring cells at each step (Vlastelica et al., "Differentiation of Blackbox
Combinatorial Solvers", ICLR 2020; Pogancic et al. Warcraft maps). ``sense = "min"``: layers flip the sign
once (``maximize(theta)`` solves with ``w = -theta``).

Back-ends (same canonical path, bit for bit, ties and zero costs included -- see
:mod:`discreteopt.solvers._dijkstra_numba`):

* ``"numba"``: compiled heap Dijkstra over the batch, GIL released (default when numba is installed);
* ``"torch"``: batched Bellman-Ford sweeps over shifted views of the grid in torch
  (:mod:`discreteopt.solvers._grid_torch`); runs on the input's device (GPU-native).

``"auto"`` picks numba on CPU inputs and torch for inputs already on a GPU.
Costs must be finite and ``>= 0`` (``min_cost = 0``): the grid graph has cycles, so a negative cost has no exact
answer here (negative cycles); a ``ValueError`` is raised. Perturbed costs are guarded by the layer (see
:mod:`discreteopt.estimators.guards`: the default clamps them visibly, with a warning and counters), not here.
Costs whose every path sum overflows float64 raise :class:`~discreteopt.solvers.base.InstanceError` with status
``"OVERFLOW"`` in both back-ends.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .._validation import check_int_in_range
from ._backend import NumbaOrTorch, numba_kernels, raise_overflow, resolve_backend
from ._grid_torch import grid_path_masks
from .base import Solver

#: neighbour offsets in the fixed order used to break ties when the path is read back
_OFFSETS = {
    8: ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)),
    4: ((-1, 0), (0, -1), (0, 1), (1, 0)),
}


@functools.lru_cache(maxsize=64)
def grid_arcs(h: int, w: int, neighbourhood: int) -> tuple[np.ndarray, np.ndarray]:
    """Arcs ``(tail, head)`` of the grid graph, numbered by head vertex then neighbour order.

    That numbering makes "first tight predecessor by arc id" equal to "first neighbour in the fixed offset
    order", the rule of the compiled kernel.
    """
    tails, heads = [], []
    for v in range(h * w):
        vr, vc = divmod(v, w)
        for dr, dc in _OFFSETS[neighbourhood]:
            ur, uc = vr - dr, vc - dc
            if 0 <= ur < h and 0 <= uc < w:
                tails.append(ur * w + uc)
                heads.append(v)
    return np.asarray(tails, dtype=np.int64), np.asarray(heads, dtype=np.int64)


class GridShortestPath(NumbaOrTorch, Solver):
    """Vertex-weighted grid shortest path: costs ``[B, H, W]`` -> 0/1 path mask ``[B, H, W]``.

    Args:
        neighbourhood: 8 (king moves, Warcraft) or 4.
        source, target: ``(row, col)`` cells; negative indices count from the end, so the default is
            top-left to bottom-right for any grid size.
        backend: ``"auto"``, ``"numba"`` or ``"torch"`` (see module docstring).
    """

    sense = "min"
    event_ndim = 2
    theta_layout = "[B, H, W]"
    min_cost = 0.0
    arg_name = "costs"

    def __init__(self, neighbourhood: int = 8, source: tuple[int, int] = (0, 0),
                 target: tuple[int, int] = (-1, -1), backend: str = "auto"):
        if neighbourhood not in _OFFSETS:
            raise ValueError(f"neighbourhood must be 8 or 4; got {neighbourhood!r}")
        for name, cell in (("source", source), ("target", target)):
            if not (isinstance(cell, (tuple, list)) and len(cell) == 2):
                raise ValueError(f"{name} must be a (row, col) pair; got {cell!r}")
            for i in cell:
                check_int_in_range(i, name, -(2**31), 2**31)
        self.neighbourhood = int(neighbourhood)
        self.source = (int(source[0]), int(source[1]))
        self.target = (int(target[0]), int(target[1]))
        self.backend = resolve_backend(backend)
        self._requested_backend = backend
        offsets = np.asarray(_OFFSETS[self.neighbourhood], dtype=np.int64)
        self._dr, self._dc = offsets[:, 0].copy(), offsets[:, 1].copy()
        self._spec_kwargs = {"neighbourhood": self.neighbourhood, "source": self.source,
                             "target": self.target, "backend": backend}


    def _neighbour_offsets(self) -> tuple[tuple[int, int], ...]:
        return _OFFSETS[self.neighbourhood]

    def _cells(self, h: int, w: int) -> tuple[int, int, int, int]:
        cells = []
        for name, (r, c) in (("source", self.source), ("target", self.target)):
            rr, cc = r + h if r < 0 else r, c + w if c < 0 else c
            if not (0 <= rr < h and 0 <= cc < w):
                raise ValueError(f"{name}={(r, c)} is outside the {h}x{w} grid of costs")
            cells += [rr, cc]
        return tuple(cells)  # type: ignore[return-value]

    def validate(self, theta) -> None:
        super().validate(theta)
        self._cells(theta.shape[1], theta.shape[2])

    def _solve_numba(self, theta: np.ndarray) -> np.ndarray:
        b, h, w = theta.shape
        sr, sc, tr, tc = self._cells(h, w)
        out = np.zeros((b, h, w), dtype=np.float64)
        status = np.zeros(b, dtype=np.int64)
        kernels = numba_kernels()
        kernels.grid_paths(np.ascontiguousarray(theta, dtype=np.float64), sr, sc, tr, tc,
                           self._dr, self._dc, out, status)
        raise_overflow(type(self).__name__, status != kernels.OK)
        return out

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        sr, sc, tr, tc = self._cells(theta.shape[1], theta.shape[2])
        mask, overflow = grid_path_masks(theta.to(torch.float64), (sr, sc), (tr, tc), _OFFSETS[self.neighbourhood])
        raise_overflow(type(self).__name__, overflow)
        return mask

    def is_feasible(self, y) -> np.ndarray:
        """A mask is feasible when it is a simple ``source -> target`` path in the grid graph."""
        y = np.asarray(y)
        return np.array([_is_grid_path(m, self._cells(*m.shape), self.neighbourhood) for m in y])


def _is_grid_path(mask: np.ndarray, cells: tuple[int, int, int, int], neighbourhood: int) -> bool:
    """True when the set cells of ``mask`` are exactly the cells of one simple source -> target path.

    Depth-first search for a path through the induced neighbour graph that visits every set cell once;
    the set cells of a near-path have few branches, so the search is quick.
    """
    if not np.all((mask == 0) | (mask == 1)):
        return False
    sr, sc, tr, tc = cells
    on = {(int(r), int(c)) for r, c in zip(*np.nonzero(mask), strict=True)}
    if (sr, sc) not in on or (tr, tc) not in on:
        return False
    offsets = _OFFSETS[neighbourhood]
    stack = [((sr, sc), frozenset([(sr, sc)]))]
    budget = 100_000
    while stack and budget:
        budget -= 1
        cur, seen = stack.pop()
        if cur == (tr, tc):
            if len(seen) == len(on):
                return True
            continue
        for dr, dc in offsets:
            nxt = (cur[0] + dr, cur[1] + dc)
            if nxt in on and nxt not in seen:
                stack.append((nxt, seen | {nxt}))
    return False
