"""Base of the losses over a pool of solutions (NCE, contrastive MAP, learning to rank)."""

from __future__ import annotations

import torch
from torch import nn

from .. import _ops
from .._validation import check_real
from ..estimators.guards import Guard
from ..executors.base import Executor
from ..maximizer import Maximizer, validate_input
from ..solution_cache import SolutionCache
from ..solvers.base import Solver
from ._common import _check_like, _reduce


class PoolLoss(nn.Module):
    """A loss that scores a pool of feasible solutions ``[M, *E]`` kept by a :class:`SolutionCache`.

    Every forward first sends the batch's predictions through the solver (:class:`Maximizer`, with its guard,
    executor and the cache): ``solve_ratio`` of the instances are solved and their solutions join the pool (the
    rest are answered from the pool and add nothing), as PyEPO's pool losses do with ``solve_ratio``. The loss is
    then computed over the whole pool, in the solver's natural arguments, differentiable by autograd (the pool is
    a constant). Half-precision predictions are computed in float32 and the loss is returned in ``pred``'s dtype;
    objectives or a loss that overflow (finite inputs of extreme scale, or a ``pred`` dtype too narrow for them)
    raise ``ValueError`` instead of returning inf or NaN. ``cache=None`` makes a fresh ``SolutionCache(solve_ratio=1.0)`` (every instance solved, the pool
    grows with every new solution); PyEPO seeds its pool with the training solutions:
    ``cache=SolutionCache.from_solutions(train_solutions, solve_ratio=...)``.

    ``self.maximizer.stats`` / ``self.stats`` count the solver calls; ``self.cache`` is the pool.
    """

    def __init__(self, solver: Solver, cache: SolutionCache | None = None, *, executor: Executor | None = None,
                 guard: Guard | None = None, reduction: str = "mean"):
        super().__init__()
        if cache is None:
            cache = SolutionCache(1.0)
        if not isinstance(cache, SolutionCache):
            raise ValueError(f"cache must be a SolutionCache or None; got {type(cache).__name__}")
        _reduce(torch.zeros(1), reduction)
        self.solver = solver
        self.maximizer = Maximizer(solver, executor, guard)
        self.cache = cache
        cache.attach(self)
        self.reduction = reduction

    @property
    def stats(self):
        return self.maximizer.stats

    def _sign(self) -> float:
        """``theta_max = sign * natural``: -1 for costs (min sense), +1 for scores."""
        return -1.0 if self.solver.sense == "min" else 1.0

    def _refresh(self, pred: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        """Solve (part of) the batch so that new solutions join the pool, add ``extra`` feasible solutions
        (``[B, *E]``, e.g. the true ones), and return the pool ``[M, *E]`` on ``pred``'s device in the compute dtype
        (``pred``'s; float32 for half precision)."""
        y = self.maximizer(self._sign() * pred.detach())  # [B, *E]
        if len(self.cache) == 0:  # the cache was bypassed (eval mode) before it had any solution
            self.cache.add(y)
        for e in extra:
            self.cache.add(e)
        pool = self.cache.solutions(pred.device, _ops.compute_dtype(pred.dtype))
        if pool.shape[1:] != pred.shape[1:]:
            raise ValueError(f"pred must have event shape {tuple(pool.shape[1:])} like the pool's solutions; "
                             f"got {tuple(pred.shape)}")
        return pool

    def _check(self, pred: torch.Tensor, other: torch.Tensor, other_name: str) -> None:
        validate_input(self.solver, pred, "pred")
        _check_like(other, pred, other_name, "pred")
        check_real(other, other_name)

    def _finite(self, x: torch.Tensor, what: str) -> torch.Tensor:
        """``x`` if every entry is finite, else ``ValueError``: finite inputs whose ``what`` overflows."""
        if not bool(torch.isfinite(x.detach()).all()):
            raise ValueError(f"{type(self).__name__}: {what} overflows {x.dtype} for these (finite) inputs; "
                             "rescale pred and the targets (or compute in float64)")
        return x

    def _scores(self, theta: torch.Tensor, pool: torch.Tensor, what: str) -> torch.Tensor:
        """``<theta_i, y_m>`` ``[B, M]`` (:func:`pool_scores`), checked finite (``what`` names ``theta``)."""
        return self._finite(pool_scores(theta, pool), f"the objectives <{what}, y> of the pooled solutions")

    def _output(self, loss: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Per-instance ``loss [B]`` reduced and returned in ``pred``'s dtype, checked finite."""
        return self._finite(_reduce(loss, self.reduction).to(pred.dtype), "the loss")


def pool_scores(theta: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """``<theta_i, y_m>``: ``[B, *E], [M, *E] -> [B, M]`` (differentiable in ``theta``)."""
    return theta.flatten(1) @ pool.flatten(1).T
