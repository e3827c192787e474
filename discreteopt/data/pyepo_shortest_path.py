"""PyEPO's 5x5 shortest-path data (Elmachtoub & Grigas' "Smart Predict-then-Optimize" generator).

For ``n`` instances with ``p`` features on a ``g0 x g1`` grid with ``d = (g0-1) g1 + (g1-1) g0`` arcs::

    B   ~ Bernoulli(0.5)            [d, p]    (fixed for the whole data set)
    x_i ~ N(0, I_p)                 [n, p]
    c_i = ((B x_i / sqrt(p) + 3)^deg + 1) / 3.5^deg * eps_i,   eps_i ~ U(1 - e, 1 + e)^d

``deg`` controls how far the cost is from linear in ``x`` (model misspecification) and ``e`` (``noise_width``)
the multiplicative noise. The random draws are taken from one ``numpy.random.RandomState(seed)`` in the
published order (B, then x, then eps row by row), so for a given seed the numbers coincide with PyEPO's
``pyepo.data.shortestpath.genData`` (default seed 135).

Arc order (the columns of ``c``) follows PyEPO: row by row, first the right arcs of row ``i``, then its down arcs;
nodes are numbered ``v = i * g1 + j``. :func:`grid_arcs` returns that list.

Reference: Tang & Khalil, "PyEPO: A PyTorch-based End-to-End Predict-then-Optimize Library" (2022);
Elmachtoub & Grigas, "Smart 'Predict, then Optimize'" (Management Science, 2022).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._validation import check_int_in_range


def grid_arcs(grid: tuple[int, int] = (5, 5)) -> list[tuple[int, int]]:
    """Directed right/down arcs ``(u, v)`` of a ``grid[0] x grid[1]`` grid in PyEPO's column order.

    Node ``(i, j)`` has id ``i * grid[1] + j``; source is node 0, target the last node.
    """
    rows, cols = grid
    arcs: list[tuple[int, int]] = []
    for i in range(rows):
        arcs.extend((i * cols + j, i * cols + j + 1) for j in range(cols - 1))  # right arcs of row i
        if i < rows - 1:
            arcs.extend((i * cols + j, (i + 1) * cols + j) for j in range(cols))  # down arcs of row i
    return arcs


@dataclasses.dataclass
class PtOData:
    """Features ``x [n, p]`` (float32) and true arc costs ``c [n, d]`` (float32) of one data set."""

    x: np.ndarray
    c: np.ndarray
    deg: int
    noise_width: float

    def __len__(self) -> int:
        return len(self.x)

    def split(self, n_first: int) -> tuple[PtOData, PtOData]:
        """The first ``n_first`` instances and the rest (same ``B``: train/test of one generator call).

        Fields other than ``x`` and ``c`` (a subclass's item weights, say) are shared by both parts.
        """
        if not 0 < n_first < len(self):
            raise ValueError(f"n_first must be in (0, {len(self)}); got {n_first}")
        a = dataclasses.replace(self, x=self.x[:n_first], c=self.c[:n_first])
        b = dataclasses.replace(self, x=self.x[n_first:], c=self.c[n_first:])
        return a, b


def check_generator_args(n, p, deg, noise_width) -> tuple[int, int, int, float]:
    """Validate the arguments shared by the PyEPO generators; returns them normalised."""
    n = check_int_in_range(n, "n", 1, 10**9)
    p = check_int_in_range(p, "p", 1, 10**6)
    deg = check_int_in_range(deg, "deg", 1, 64)
    if isinstance(noise_width, bool) or not (isinstance(noise_width, (int, float)) and 0.0 <= noise_width < 1.0):
        raise ValueError(f"noise_width must be in [0, 1) (half-width of the U(1-e, 1+e) noise); got {noise_width!r}")
    return n, p, deg, float(noise_width)


def generate_shortest_path(n: int, p: int = 5, grid: tuple[int, int] = (5, 5), deg: int = 1,
                           noise_width: float = 0.0, seed: int = 135) -> PtOData:
    """Generate ``n`` feature/cost pairs with PyEPO's shortest-path generator (formula in the module docstring)."""
    n, p, deg, noise_width = check_generator_args(n, p, deg, noise_width)
    if len(grid) != 2 or min(grid) < 2:
        raise ValueError(f"grid must be a pair of sizes >= 2; got {grid!r}")
    d = len(grid_arcs(tuple(grid)))
    rnd = np.random.RandomState(seed)
    B = rnd.binomial(1, 0.5, (d, p))  # [d, p]
    x = rnd.normal(0.0, 1.0, (n, p))  # [n, p]
    c = ((x @ B.T) / np.sqrt(p) + 3.0) ** deg + 1.0  # [n, d]
    c /= 3.5**deg
    c *= rnd.uniform(1.0 - noise_width, 1.0 + noise_width, (n, d))  # drawn row by row, as published
    return PtOData(x.astype(np.float32), c.astype(np.float32), deg, float(noise_width))
