"""Perturbation-gradient (PG) losses."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _ops
from .._validation import check_real
from ..estimators.base import inner
from ..estimators.guards import Guard
from ..executors.base import Executor
from ..maximizer import Maximizer, validate_input
from ..solution_cache import SolutionCache
from ..solvers.base import Solver
from ._common import _check_like, _reduce

_VARIANTS = {"backward": "backward", "pgb": "backward", "central": "central", "pgc": "central"}


class PerturbationGradient(nn.Module):
    """Perturbation-gradient loss (Huang & Gupta, 2024, "Learning Best-in-Class Policies for the
    Predict-then-Optimize Framework"; PyEPO's ``perturbationGradient``).

    A zeroth-order (finite-difference) surrogate of the decision cost ``<c, y*(c_hat)>`` along the true costs
    ``c``. With ``z(v) = min_y <v, y> = <v, y*(v)>`` (min sense) and step ``h``::

        PGB (variant="backward"):  L = ( z(c_hat) - z(c_hat - h c) ) / h
        PGC (variant="central"):   L = ( z(c_hat + h c) - z(c_hat - h c) ) / (2 h)
        gradient (Danskin)       = ( y*(c_hat) - y*(c_hat - h c) ) / h          (PGB)
                                 = ( y*(c_hat + h c) - y*(c_hat - h c) ) / (2 h)  (PGC)

    For max-sense solvers (scores ``r``, ``z(v) = max_y <v, y>``) the loss is the negative of the same
    difference quotient (maximising ``<r, y*(r_hat)>``). As ``h -> 0`` the quotient tends to ``<c, y*(c_hat)>``.
    The two solutions are solved in one executor call of ``2B`` instances; the value is differentiated by
    autograd with them held fixed. The guard (default ``Auto()``) applies to the perturbed arguments, e.g.
    ``c_hat - h c < 0`` for Dijkstra; the loss is then computed for the solutions of the guarded problems.
    Half-precision predictions are computed in float32 and the loss is returned in ``pred``'s dtype. ``h`` must be
    usable in that compute dtype (``h`` and ``1 / h`` finite and non-zero there, else the quotient is ``0 / 0``) and
    ``pred +- h true``, the quotient and the loss must not overflow it: ``ValueError`` otherwise, never NaN.

    Args:
        solver: the (min or max sense) solver.
        h: finite-difference step ``> 0`` (PyEPO's ``sigma``, default 0.1).
        variant: ``"backward"`` (PGB, PyEPO's ``two_sides=False``) or ``"central"`` (PGC); ``"pgb"``/``"pgc"``
            are accepted too.
        cache: optional :class:`~discreteopt.solution_cache.SolutionCache` for the ``2B`` solver instances.
        executor, guard: those of the :class:`~discreteopt.maximizer.Maximizer`; ``reduction``: ``"mean"``,
            ``"sum"`` or ``"none"``.

    Shapes: ``forward(pred [B, *E], true [B, *E]) -> []`` (``reduction="none"``: ``[B]``).

    Example::

        pg = PerturbationGradient(GraphShortestPath.grid(5, 5), h=0.1, variant="central", guard=Shift())
        loss = pg(model(x), c_true); loss.backward()
    """

    def __init__(self, solver: Solver, h: float = 0.1, variant: str = "backward", *,
                 cache: SolutionCache | None = None, executor: Executor | None = None, guard: Guard | None = None,
                 reduction: str = "mean"):
        super().__init__()
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h <= 0:
            raise ValueError(f"h must be a positive finite number; got {h!r}")
        key = variant.lower() if isinstance(variant, str) else variant
        if key not in _VARIANTS:
            raise ValueError(f"variant must be 'backward' (PGB) or 'central' (PGC); got {variant!r}")
        _reduce(torch.zeros(1), reduction)
        self.solver = solver
        self.maximizer = Maximizer(solver, executor, guard)
        self.h = float(h)
        self.variant = _VARIANTS[key]
        self.reduction = reduction
        if cache is not None:
            if not isinstance(cache, SolutionCache):
                raise ValueError(f"cache must be a SolutionCache or None; got {type(cache).__name__}")
            cache.attach(self)
        self.cache = cache

    @property
    def stats(self):
        return self.maximizer.stats

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        validate_input(self.solver, pred, "pred")
        _check_like(true, pred, "true", "pred")
        check_real(true, "true")
        dtype = _ops.compute_dtype(pred.dtype)  # float32 for half precision
        h = self.h
        info = torch.finfo(dtype)
        if not (info.tiny <= h and 1.0 / h <= info.max and h <= info.max):
            raise ValueError(f"h={h!r} is not usable in {dtype}: h and 1 / h must be finite normal numbers there "
                             "(the difference quotient would be 0 / 0 or overflow); choose h nearer 1")
        true = true.detach().to(dtype)
        pred_c = pred.to(dtype)  # differentiable cast
        detached = pred_c.detach()
        a = h if self.variant == "central" else 0.0  # first point: pred + a * true
        denom = 2 * h if self.variant == "central" else h
        v1 = torch.add(detached, true, alpha=a)  # [B, *E]
        v2 = torch.add(detached, true, alpha=-h)  # [B, *E]
        self._finite(torch.cat([v1, v2]), "pred +- h * true")
        sign = -1.0 if self.solver.sense == "min" else 1.0  # natural -> max convention
        ys = self.maximizer(sign * torch.cat([v1, v2]))  # [2B, *E], one executor call
        y1, y2 = ys[: pred.shape[0]].to(dtype), ys[pred.shape[0]:].to(dtype)
        ndim = pred.ndim - 1
        z1, z2 = inner(pred_c + a * true, y1, ndim), inner(pred_c - h * true, y2, ndim)  # [B] each
        self._finite(torch.cat([z1, z2]), "the objectives <pred +- h * true, y>")
        quotient = (z1 - z2) / denom  # [B]
        loss = quotient if self.solver.sense == "min" else -quotient
        return self._finite(_reduce(loss, self.reduction).to(pred.dtype), "the loss")

    def _finite(self, x: torch.Tensor, what: str) -> torch.Tensor:
        """``x`` if every entry is finite, else ``ValueError``: finite inputs whose ``what`` overflows."""
        if not bool(torch.isfinite(x.detach()).all()):
            raise ValueError(f"PerturbationGradient: {what} overflows {x.dtype} for these (finite) inputs "
                             f"(h={self.h!r}); rescale pred and true or choose a smaller h")
        return x

    def extra_repr(self) -> str:
        return f"solver={self.solver!r}, h={self.h}, variant={self.variant!r}"
