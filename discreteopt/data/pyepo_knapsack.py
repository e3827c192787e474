"""PyEPO's multi-dimensional knapsack data (item values predicted from features, fixed item weights).

For ``n`` instances with ``p`` features, ``m`` items and ``dim`` capacity dimensions::

    W   = U{300, ..., 799} / 100          [dim, m]   item weights (2 decimals), fixed for the data set
    B   ~ Bernoulli(0.5)                  [m, p]     fixed for the data set
    x_i ~ N(0, I_p)                       [n, p]
    c_i = ceil( 5 ((B x_i / sqrt(p) + 3)^deg + 1) / 3.5^deg * eps_i ),   eps_i ~ U(1 - e, 1 + e)^m

The values ``c`` are positive integers (stored as float32); the problem is
``max_y <c_i, y>  s.t.  W y <= capacity,  y in {0, 1}^m`` (PyEPO leaves the capacity to the user; its examples
use 20 per dimension). The draws come from one ``numpy.random.RandomState(seed)`` in the published order
(W, B, x, then the noise), so for a seed the arrays coincide with PyEPO's ``pyepo.data.knapsack.genData``.

Solving it with :class:`~discreteopt.solvers.Knapsack`: the weights have two decimals, so
``Knapsack(np.round(100 * data.weights), 100 * capacity)`` is the same problem with integer weights
(:attr:`KnapsackData.weights_int`).

Reference: Tang & Khalil, "PyEPO: A PyTorch-based End-to-End Predict-then-Optimize Library" (2022).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._validation import check_int_in_range
from .pyepo_shortest_path import PtOData, check_generator_args


@dataclasses.dataclass
class KnapsackData(PtOData):
    """Features ``x [n, p]`` (float32), item values ``c [n, m]`` (float32 integers) and weights ``[dim, m]``."""

    #: item weights ``[dim, m]`` (float64 with two decimals, as PyEPO returns them)
    weights: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 0)))

    @property
    def weights_int(self) -> np.ndarray:
        """``100 * weights`` as exact integers ``[dim, m]`` (int64): the weights in hundredths."""
        return np.round(self.weights * 100).astype(np.int64)


def generate_knapsack(n: int, p: int = 5, num_items: int = 32, dim: int = 2, deg: int = 1,
                      noise_width: float = 0.0, seed: int = 135) -> KnapsackData:
    """Generate ``n`` feature/value pairs with PyEPO's knapsack generator (formula in the module docstring).

    Args:
        n: number of instances.
        p: number of features.
        num_items: number of items ``m``.
        dim: number of capacity dimensions (rows of the weight matrix).
        deg: polynomial degree of the feature-to-value map (1 = linear).
        noise_width: half-width ``e`` of the multiplicative noise ``U(1-e, 1+e)``, in ``[0, 1)``.
        seed: seed of the ``RandomState`` (PyEPO's default 135).

    Example::

        data = generate_knapsack(1000, p=5, num_items=32, dim=2, deg=4, noise_width=0.5)
        solver = Knapsack(data.weights_int, capacity=[2000, 2000])   # capacity 20 per dimension, in hundredths
    """
    n, p, deg, noise_width = check_generator_args(n, p, deg, noise_width)
    m = check_int_in_range(num_items, "num_items", 1, 10**6)
    dim = check_int_in_range(dim, "dim", 1, 10**4)
    rnd = np.random.RandomState(seed)
    weights = rnd.choice(range(300, 800), size=(dim, m)) / 100  # [dim, m]
    B = rnd.binomial(1, 0.5, (m, p))  # [m, p]
    x = rnd.normal(0, 1, (n, p))  # [n, p]
    c = (x @ B.T / np.sqrt(p) + 3) ** deg + 1  # [n, m]
    c *= 5
    c /= 3.5**deg
    c *= rnd.uniform(1 - noise_width, 1 + noise_width, (n, m))
    c = np.ceil(c).astype(np.float32)
    return KnapsackData(x.astype(np.float32), c, deg, noise_width, weights=weights)
