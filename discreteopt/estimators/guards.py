"""Guard policies: what the layer does when a solver needs bounded arguments (``solver.min_cost``).

Perturbations (noise, I-MLE targets ``theta - lam * dL/dy``, blackbox ``w + lam * g``) can push the
costs of a solver such as Dijkstra (``min_cost = 0``) below its bound, where it would return wrong
answers. The layer applies exactly one guard to the *natural* argument ``w`` right before every solver
call; solvers without ``min_cost`` are passed through unchanged by every guard.

* :class:`Clamp` (default) -- ``w = max(w, min_cost)`` element-wise. This is the blackbox-backprop rule
  ``w' = max(w + lam * g, 0)`` (Vlastelica et al., 2020). It changes the problem only where the bound is
  violated, which biases the estimate there; use positive (multiplicative) noise to avoid it.
* :class:`Shift` -- per instance, ``w = w - min(w) + min_cost`` when ``min(w) < min_cost``. A constant
  shift keeps the argmin only when every feasible ``y`` has the same ``sum(y)`` (k-subsets, one-hot,
  perfect assignments) -- **not** for shortest paths, whose lengths differ. The guard therefore refuses
  solvers that do not declare ``shift_invariant = True``.
* :class:`Raise` -- no change: the solver's validation raises ``ValueError``.
"""

from __future__ import annotations

import abc

import torch


class Guard(abc.ABC):
    """``guard(w, solver, inplace=False) -> w'`` applied to the natural argument before a solver call.

    ``inplace=True`` allows the guard to modify ``w`` (the layer passes it for tensors it just allocated).
    """

    def check(self, solver) -> None:
        """Raise ``ValueError`` if this policy is invalid for ``solver`` (called once by the layer)."""
        return None

    @abc.abstractmethod
    def __call__(self, w: torch.Tensor, solver, inplace: bool = False) -> torch.Tensor:
        ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Clamp(Guard):
    """``w = max(w, solver.min_cost)`` element-wise (no-op without ``min_cost``)."""

    def __call__(self, w, solver, inplace=False):
        if solver.min_cost is None:
            return w
        bound = float(solver.min_cost)
        return w.clamp_(min=bound) if inplace else torch.clamp(w, min=bound)


class Shift(Guard):
    """Per-instance shift so that ``min(w) >= min_cost``; only for ``shift_invariant`` solvers."""

    def check(self, solver) -> None:
        if solver.min_cost is not None and not getattr(solver, "shift_invariant", False):
            raise ValueError(f"guard Shift() changes the optimum of {type(solver).__name__} (its feasible "
                             "solutions do not all have the same sum); use Clamp() or positive noise")

    def __call__(self, w, solver, inplace=False):
        if solver.min_cost is None:
            return w
        low = w.flatten(1).min(dim=1).values  # [B]
        shift = torch.clamp(float(solver.min_cost) - low, min=0.0).reshape(-1, *([1] * (w.ndim - 1)))  # [B, 1, ...]
        return w.add_(shift) if inplace else w + shift


class Raise(Guard):
    """Pass ``w`` unchanged; the solver raises ``ValueError`` on a violated bound."""

    def __call__(self, w, solver, inplace=False):
        return w
