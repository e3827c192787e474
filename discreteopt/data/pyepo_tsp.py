"""PyEPO's travelling-salesman data: symmetric edge costs = Euclidean distance + a feature-driven term.

For ``n`` instances with ``p`` features on ``m`` nodes (``E = m (m - 1) / 2`` undirected edges)::

    z_v ~ U(-2, 2)^2 for the first m // 2 nodes,  N(0, I_2) for the others     (node coordinates, fixed)
    D_e = || z_u - z_v ||_2                                 [E]        for e = (u, v), u < v
    B   = Bernoulli(0.5) * U(-2, 2)                         [E, p]     (element-wise; fixed)
    x_i ~ N(0, I_p)                                         [n, p]
    c_i = round_4( D + (B x_i / sqrt(p) + 3)^deg / 3^(deg - 1) * eps_i ),   eps_i ~ U(1 - e, 1 + e)^E

``round_4`` rounds to 4 decimals (then float32). The feature term can be negative (``B`` has signed entries), so
edge costs can be too; a TSP tour has exactly ``m`` edges, so a constant shift does not change the optimal tour
and :class:`~discreteopt.solvers.TSP` solves such costs exactly. The columns of ``c`` follow
``itertools.combinations(range(m), 2)``: ``(0,1), (0,2), ..., (0,m-1), (1,2), ...`` (:func:`tsp_edges`), the
order of PyEPO's TSP models and of ``scipy.spatial.distance.pdist``. The draws come from one
``numpy.random.RandomState(seed)`` in the published order (uniform coordinates, normal coordinates, the
Bernoulli mask, the uniform factors, x, then the noise), so for a seed the arrays coincide with PyEPO's
``pyepo.data.tsp.genData``.

Reference: Tang & Khalil, "PyEPO: A PyTorch-based End-to-End Predict-then-Optimize Library" (2022).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial.distance import pdist

from .._validation import check_int_in_range
from .pyepo_shortest_path import PtOData, check_generator_args


def tsp_edges(num_nodes: int) -> list[tuple[int, int]]:
    """Undirected edges ``(u, v)``, ``u < v``, of the complete graph on ``num_nodes`` nodes in column order."""
    return list(itertools.combinations(range(num_nodes), 2))


def generate_tsp(n: int, p: int = 5, num_nodes: int = 20, deg: int = 1, noise_width: float = 0.0,
                 seed: int = 135) -> PtOData:
    """Generate ``n`` feature/edge-cost pairs with PyEPO's TSP generator (formula in the module docstring).

    Returns :class:`PtOData` with ``x [n, p]`` and ``c [n, num_nodes (num_nodes - 1) / 2]`` (float32).

    Example::

        data = generate_tsp(1000, p=5, num_nodes=20, deg=4, noise_width=0.5)
        tours = TSP(20).solve(torch.from_numpy(data.c))   # [1000, 190] edge indicators
    """
    n, p, deg, noise_width = check_generator_args(n, p, deg, noise_width)
    m = check_int_in_range(num_nodes, "num_nodes", 3, 10**4)
    edges = m * (m - 1) // 2
    rnd = np.random.RandomState(seed)
    coords = np.concatenate((rnd.uniform(-2, 2, (m // 2, 2)), rnd.normal(0, 1, (m - m // 2, 2))))  # [m, 2]
    dist = pdist(coords, "euclidean")  # [E], row-major upper triangle = combinations order
    B = rnd.binomial(1, 0.5, (edges, p)) * rnd.uniform(-2, 2, (edges, p))  # [E, p]
    x = rnd.normal(0, 1, (n, p))  # [n, p]
    feature_cost = (x @ B.T / np.sqrt(p) + 3) ** deg / 3 ** (deg - 1)  # [n, E]
    noise = rnd.uniform(1 - noise_width, 1 + noise_width, (n, edges))
    c = np.around(dist + feature_cost * noise, decimals=4).astype(np.float32)
    return PtOData(x.astype(np.float32), c, deg, noise_width)
