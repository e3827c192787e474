"""Linear assignment (bipartite matching) with ``scipy.optimize.linear_sum_assignment``.

For every instance ``b`` with a score matrix ``theta_b [n, m]`` (``n <= m``)::

    Y*_b = argmax_Y <theta_b, Y>   over 0/1 matrices Y [n, m] with one 1 per row, at most one per column

(``argmin`` with ``Assignment(maximize=False)``, e.g. for costs). With ``n == m``, ``Y`` is a permutation
matrix. scipy's Jonker-Volgenant solver is exact on floats and deterministic; among tied optima it returns
one fixed choice for a given input.
"""

from __future__ import annotations

import numpy as np

from .base import Solver


class Assignment(Solver):
    """Assignment of rows to distinct columns: ``theta [B, n, m] -> Y [B, n, m]`` (see module docstring).

    Args:
        maximize: ``True`` (default) maximises the total score, ``False`` minimises a total cost
            (``sense == "min"``; :meth:`maximize` then flips the sign once).
    """

    shift_invariant = True  # every feasible y has the same sum
    event_ndim = 2
    theta_layout = "[B, n, m] with n <= m"

    def __init__(self, maximize: bool = True):
        if not isinstance(maximize, (bool, np.bool_)):
            raise ValueError(f"maximize must be True or False; got {maximize!r}")
        # stored as `sense`, not as `self.maximize`, which would shadow Solver.maximize()
        self.sense = "max" if maximize else "min"
        self._spec_kwargs = {"maximize": bool(maximize)}

    def validate(self, theta) -> None:
        super().validate(theta)
        n, m = theta.shape[1:]
        if n == 0 or n > m:
            raise ValueError(f"theta must have shape [B, n, m] with 1 <= n <= m (every row gets its own "
                             f"column); got shape {tuple(theta.shape)}")

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        from scipy.optimize import linear_sum_assignment  # lazy: keeps `import discreteopt` light

        out = np.zeros_like(theta)  # [B, n, m]
        for b in range(theta.shape[0]):
            rows, cols = linear_sum_assignment(theta[b], maximize=self.sense == "max")
            out[b, rows, cols] = 1.0
        return out

    def is_feasible(self, y) -> np.ndarray:
        """Per-instance check that ``y [B, n, m]`` is 0/1 with one 1 per row and at most one per column."""
        y = np.asarray(y, dtype=np.float64)
        binary = np.all((y == 0) | (y == 1), axis=(1, 2))
        return binary & np.all(y.sum(2) == 1, axis=1) & np.all(y.sum(1) <= 1, axis=1)
