"""Noise-contrastive estimation and contrastive MAP over a pool of solutions.

Mulamba, Mandi, Diligenti, Lombardi, Bucarey & Guns, IJCAI 2021, "Contrastive Losses and Solution Caching for
Predict-and-Optimize" (PyEPO's ``NCE`` and ``contrastiveMAP``). The non-optimal solutions of a pool ``P`` (a
:class:`~discreteopt.solution_cache.SolutionCache`) serve as negative examples: the predicted objective of the
true optimum ``y*`` should beat theirs.
"""

from __future__ import annotations

import torch

from ..estimators.base import inner
from ..solution_cache import _first_argmax
from ._pool import PoolLoss


class NCE(PoolLoss):
    """Noise-contrastive estimation loss over the pool (Mulamba et al., 2021; PyEPO's ``NCE``).

    For predicted costs ``c_hat`` of a min-sense solver, true optimal solutions ``y*`` and the pool ``P``::

        min sense:  L = 1/|P| sum_{y in P} ( <c_hat, y*> - <c_hat, y> )
        max sense:  L = 1/|P| sum_{y in P} ( <r_hat, y> - <r_hat, y*> )
        gradient    = sign * ( mean_P y - y* ),  sign = -1 (costs) or +1 (scores)

    i.e. ``L = mean_P <theta, y - y*>`` with ``theta = -c_hat`` or ``r_hat``: linear in the prediction for a
    fixed pool (no solver call in backward). ``y*`` of the batch also join the pool (they are feasible).

    Args:
        solver: the (min or max sense) solver; ``cache``, ``executor``, ``guard``, ``reduction``: see
            :class:`~discreteopt.losses._pool.PoolLoss`.

    Shapes: ``forward(pred [B, *E], y_true [B, *E]) -> []`` (``reduction="none"``: ``[B]``).

    Example::

        nce = NCE(solver, cache=SolutionCache.from_solutions(train_paths, solve_ratio=0.05))
        loss = nce(model(x), y_true); loss.backward()
    """

    def forward(self, pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        self._check(pred, y_true, "y_true")
        pool = self._refresh(pred, y_true)  # [M, *E], compute dtype
        y_true = y_true.to(pool.dtype)
        theta = self._sign() * pred.to(pool.dtype)  # [B, *E], max convention
        loss = self._scores(theta, pool, "pred").mean(dim=1) - inner(theta, y_true, pred.ndim - 1)  # [B]
        return self._output(loss, pred)


class ContrastiveMAP(PoolLoss):
    """Contrastive MAP loss: the best pooled solution is the only negative (Mulamba et al., 2021; PyEPO's
    ``contrastiveMAP``).

    ::

        min sense:  L = <c_hat, y*> - min_{y in P} <c_hat, y>
        max sense:  L = max_{y in P} <r_hat, y> - <r_hat, y*>
        gradient    = sign * ( y_P - y* ),  y_P = the best pooled solution under the prediction

    i.e. ``L = max_P <theta, y> - <theta, y*>`` (``>= 0`` since ``y*`` joins the pool); piecewise linear in the
    prediction, ties broken towards the lowest pool index.

    Shapes: ``forward(pred [B, *E], y_true [B, *E]) -> []`` (``reduction="none"``: ``[B]``).

    Example::

        cmap = ContrastiveMAP(solver, cache=SolutionCache.from_solutions(train_paths, solve_ratio=0.1))
        loss = cmap(model(x), y_true)
    """

    def forward(self, pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        self._check(pred, y_true, "y_true")
        pool = self._refresh(pred, y_true)  # [M, *E], compute dtype
        y_true = y_true.to(pool.dtype)
        theta = self._sign() * pred.to(pool.dtype)  # [B, *E]
        scores = self._scores(theta, pool, "pred")  # [B, M]
        best = _first_argmax(scores.detach())  # [B]
        loss = scores.gather(1, best.unsqueeze(1)).squeeze(1) - inner(theta, y_true, pred.ndim - 1)  # [B]
        return self._output(loss, pred)
