"""Learning-to-rank losses over a pool of solutions.

Mandi, Bucarey, Mulamba & Guns, ICML 2022, "Decision-Focused Learning: Through the Lens of Learning to Rank"
(PyEPO's ``pointwiseLTR``, ``pairwiseLTR``, ``listwiseLTR``). The prediction should rank the solutions of a pool
``P`` (a :class:`~discreteopt.solution_cache.SolutionCache`) as the true costs do. Every loss takes the true
natural arguments (costs ``c`` or scores ``r``), not the true solutions. Notation: ``theta = sign * pred`` and
``theta_true = sign * true`` in the max convention (``sign = -1`` for costs, ``+1`` for scores), ``M = |P|``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..solution_cache import _first_argmax
from ._pool import PoolLoss


class PointwiseLTR(PoolLoss):
    """Pointwise ranking loss: regress the objective of every pooled solution (Mandi et al., 2022).

    ::

        L = 1/M sum_{y in P} ( <true - pred, y> )^2
        gradient = -2/M sum_{y in P} <true - pred, y> y

    The same for both senses (objectives are compared, not ordered). Smooth in ``pred``.

    Shapes: ``forward(pred [B, *E], true [B, *E]) -> []`` (``reduction="none"``: ``[B]``).

    Example::

        loss = PointwiseLTR(solver)(model(x), c_true)
    """

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        self._check(pred, true, "true")
        pool = self._refresh(pred)  # [M, *E], compute dtype
        diff = true.detach().to(pool.dtype) - pred.to(pool.dtype)  # [B, *E]
        loss = self._scores(diff, pool, "true - pred").square().mean(dim=1)  # [B]
        return self._output(loss, pred)


class PairwiseLTR(PoolLoss):
    """Pairwise ranking loss: the truly best pooled solution against each other one (Mandi et al., 2022;
    PyEPO's ``pairwiseLTR``).

    With ``b = argmax_{y in P} <theta_true, y>`` (the best pooled solution under the true costs; ties to the lowest
    pool index)::

        L = 1/max(M-1, 1) sum_{y in P, y != b} relu( margin + <theta, y> - <theta, b> )
        min sense:  relu( margin + <c_hat, b> - <c_hat, y> ),   max sense:  relu( margin + <r_hat, y> - <r_hat, b> )
        gradient = sign/max(M-1, 1) sum_{y: active} ( y - b )

    ``margin`` (Mandi et al.'s ``tau``) is 0 by default, as in PyEPO. Piecewise linear in ``pred``.

    Shapes: ``forward(pred [B, *E], true [B, *E]) -> []`` (``reduction="none"``: ``[B]``).

    Example::

        loss = PairwiseLTR(solver, margin=0.1)(model(x), c_true)
    """

    def __init__(self, solver, cache=None, *, margin: float = 0.0, **kwargs):
        super().__init__(solver, cache, **kwargs)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
                or margin < 0:
            raise ValueError(f"margin must be a finite number >= 0; got {margin!r}")
        self.margin = float(margin)

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        self._check(pred, true, "true")
        pool = self._refresh(pred)  # [M, *E], compute dtype
        sign = self._sign()
        best = _first_argmax(self._scores(sign * true.detach().to(pool.dtype), pool, "true"))  # [B]
        scores = self._scores(sign * pred.to(pool.dtype), pool, "pred")  # [B, M]
        diff = scores - scores.gather(1, best.unsqueeze(1))  # [B, M]
        others = torch.ones_like(diff, dtype=torch.bool).scatter_(1, best.unsqueeze(1), False)  # [B, M]
        loss = (F.relu(self.margin + diff) * others).sum(dim=1) / max(pool.shape[0] - 1, 1)  # [B]
        return self._output(loss, pred)


class ListwiseLTR(PoolLoss):
    """Listwise ranking loss: cross entropy of the top-one probabilities over the pool (Mandi et al., 2022,
    ListNet form; PyEPO's ``listwiseLTR``).

    ::

        p_true(y) = softmax_{y in P}( <theta_true, y> / tau ),   p_pred(y) = softmax_{y in P}( <theta, y> / tau )
        L = - sum_{y in P} p_true(y) log p_pred(y)
        gradient = sign / tau * sum_{y in P} ( p_pred(y) - p_true(y) ) y

    The best solution (lowest cost, highest score) gets the highest probability. Smooth in ``pred``. Both softmaxes
    are taken of scores shifted by their maximum (``softmax`` is shift-invariant), so large scores or a small
    ``tau`` cannot overflow them; pooled solutions without true probability (``p_true(y) = 0`` after underflow)
    add nothing. This
    follows the paper's code (and PyEPO's JAX version) where PyEPO's torch ``listwiseLTR`` differs in two points:
    the cross entropy is summed over the pool per instance (PyEPO's torch version averages over the pool, so its
    loss shrinks as the pool grows), and for min-sense problems the softmax is over ``-cost`` (PyEPO's torch
    version uses ``+cost`` there, which gives the *worst* solution the highest probability).

    Args:
        tau: temperature ``> 0`` of both softmaxes (1: PyEPO's); ``1 / tau`` must be finite in the compute dtype
            (float64: ``tau > 5.6e-309``; float32, also for half precision: ``tau > 2.9e-39``), else the gradient
            ``(p_pred - p_true) / tau`` would be ``0 * inf = NaN`` (``ValueError``).

    Shapes: ``forward(pred [B, *E], true [B, *E]) -> []`` (``reduction="none"``: ``[B]``).

    Example::

        loss = ListwiseLTR(solver, tau=0.5)(model(x), c_true)
    """

    def __init__(self, solver, cache=None, *, tau: float = 1.0, **kwargs):
        super().__init__(solver, cache, **kwargs)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
            raise ValueError(f"tau must be a positive finite number; got {tau!r}")
        if not math.isfinite(1.0 / tau):
            raise ValueError(f"tau must be a positive number whose inverse is finite (tau > 5.6e-309); got {tau!r}")
        self.tau = float(tau)

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        self._check(pred, true, "true")
        pool = self._refresh(pred)  # [M, *E], compute dtype
        if 1.0 / self.tau > torch.finfo(pool.dtype).max:
            raise ValueError(f"tau={self.tau!r} is too small for {pool.dtype} (1 / tau overflows it); use a larger tau "
                             "or float64 predictions")
        sign = self._sign()
        s_true = self._scores(sign * true.detach().to(pool.dtype), pool, "true")  # [B, M]
        s_pred = self._scores(sign * pred.to(pool.dtype), pool, "pred")  # [B, M]
        # shifted by the row maximum (no gradient: softmax is shift-invariant): (s - max) / tau <= 0, never +inf
        p_true = F.softmax((s_true - s_true.amax(dim=1, keepdim=True)) / self.tau, dim=1)  # [B, M]
        log_p = F.log_softmax((s_pred - s_pred.detach().amax(dim=1, keepdim=True)) / self.tau, dim=1)  # [B, M]
        loss = -torch.where(p_true > 0, p_true * log_p, torch.zeros_like(log_p)).sum(dim=1)  # [B]
        return self._output(loss, pred)
