"""Linear assignment (bipartite matching) with ``scipy.optimize.linear_sum_assignment``.

For every instance ``b`` with a score matrix ``theta_b [n, m]`` (``n <= m``)::

    Y*_b = argmax_Y <theta_b, Y>   over 0/1 matrices Y [n, m] with one 1 per row, at most one per column

(``argmin`` with ``Assignment(maximize=False)``, e.g. for costs). With ``n == m``, ``Y`` is a permutation
matrix. scipy's Jonker-Volgenant solver is exact on floats and deterministic; among tied optima it returns
one fixed choice for a given input.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Solver

#: instances whose largest |entry| exceeds this are scaled down by a power of two (exact up to underflow of
#: entries below 2**-1074 of the largest) so that the solver's sums of up to ``2 n`` entries cannot overflow
_SCALE_ABOVE = 2.0**512


class Assignment(Solver):
    """Assignment of rows to distinct columns: ``theta [B, n, m] -> Y [B, n, m]`` (``1 <= n <= m``).

    Formula: ``Y*_b = argmax_Y sum_ij theta_b,ij Y_ij`` over 0/1 matrices with exactly one 1 per row and at most
    one per column (``argmin`` for ``maximize=False``); with ``n == m`` the permutation matrices. Back-end:
    ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant; Crouse 2016), exact on floats, deterministic
    (one fixed optimum among ties for a given input), one instance at a time on the host. Every finite input is
    accepted: an instance whose largest ``|entry|`` exceeds ``2**512`` is first multiplied by a power of two
    (the same optimum; exact except for entries below ``2**-1074`` of the largest, which are ties), so sums
    inside the solver cannot overflow. Shift-invariant per instance (every feasible ``Y`` has ``n`` ones).

    Args:
        maximize: ``True`` (default) maximises the total score, ``False`` minimises a total cost
            (``sense == "min"``; :meth:`maximize` then flips the sign once).

    ``theta`` must be a floating tensor ``[B, n, m]`` with ``1 <= n <= m`` and finite entries (``ValueError``
    naming ``theta`` otherwise).

    Example::

        >>> import torch
        >>> Assignment().solve(torch.tensor([[[1.0, 5.0], [4.0, 2.0]]]))
        tensor([[[0., 1.],
                 [1., 0.]]])
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
            scores = theta[b]  # [n, m]
            top = float(np.abs(scores).max())
            if top > _SCALE_ABOVE:
                scores = np.ldexp(scores, -math.frexp(top)[1])
            rows, cols = linear_sum_assignment(scores, maximize=self.sense == "max")
            out[b, rows, cols] = 1.0
        return out

    def is_feasible(self, y) -> np.ndarray:
        """Per-instance check that ``y [B, n, m]`` is 0/1 with one 1 per row and at most one per column."""
        y = np.asarray(y, dtype=np.float64)
        binary = np.all((y == 0) | (y == 1), axis=(1, 2))
        return binary & np.all(y.sum(2) == 1, axis=1) & np.all(y.sum(1) <= 1, axis=1)
