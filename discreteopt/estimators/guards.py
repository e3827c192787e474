"""Guard policies: what a layer or loss does when a solver needs bounded arguments (``solver.min_cost``).

Perturbations (noise, I-MLE targets ``theta - lam * dL/dy``, blackbox ``w + lam * g``, SPO+'s ``2 c_hat - c``) can
push the costs of a solver such as Dijkstra (``min_cost = 0``) below its bound, where it would return wrong
answers. Every solver call of a :class:`~discreteopt.layers.DiscreteLayer` or a loss goes through one guard,
applied to the *natural* argument ``w`` right before the call (:class:`~discreteopt.maximizer.Maximizer`).

**Default: :class:`Auto` -- no default changes the problem silently.** Per solver it picks

1. nothing to do when the solver has no bound (``min_cost is None``: ``TopK``, ``Knapsack``, ILPs, and
   :class:`~discreteopt.solvers.GraphShortestPath` on an acyclic graph such as PyEPO's grid, which solves negative
   costs exactly by dynamic programming);
2. the exact :class:`Shift` for solvers that declare ``shift_invariant`` (every feasible ``y`` has the same
   ``sum(y)``);
3. otherwise -- negative perturbed costs on a cyclic graph or the Warcraft grid, where no exact answer exists --
   blackbox backprop's clamp ``w = max(w, min_cost)``, **visibly**: a one-time :class:`GuardWarning` per layer or
   loss stating the fraction of clamped entries, and the counters ``stats.clamped_entries`` /
   ``stats.guarded_entries`` (:class:`~discreteopt.maximizer.SolverStats`) on every call.

Unperturbed (MAP) calls -- a layer in ``eval()`` mode -- behave like ``solver.solve``: :class:`Auto` never clamps
them; an argument below the bound raises the solver's ``ValueError`` (rule 3 becomes :class:`Raise`; rules 1 and 2
are exact and stay).

Explicit policies (``guard=`` of layers and losses):

* :class:`Clamp` -- ``w = max(w, min_cost)`` element-wise, in every call (MAP included), counted in the stats but
  without a warning: the user chose it. This is the blackbox-backprop rule ``w' = max(w + lam * g, 0)``
  (Vlastelica et al., 2020); it biases the estimate where the bound is violated.
* :class:`Shift` -- per instance, ``w = w - min(w) + min_cost`` when ``min(w) < min_cost``. A constant shift keeps
  the argmin only when every feasible ``y`` has the same ``sum(y)`` (k-subsets, one-hot, perfect assignments, the
  right/down grid) -- **not** for general shortest paths, whose lengths differ; the guard therefore refuses solvers
  that do not declare ``shift_invariant = True``. Counted in ``stats.shifted_instances``.
* :class:`Raise` -- no change: the solver's validation raises ``ValueError``.

Writing a guard: subclass :class:`Guard` and implement ``__call__(w, solver, inplace=False, stats=None)``
(``stats`` is the caller's :class:`~discreteopt.maximizer.SolverStats`, to count what the guard changed);
override :meth:`Guard.resolve` to pick another policy per solver or for unperturbed calls.

Example::

    layer = DiscreteLayer(GridShortestPath(), IMLE(lam=20.0))   # guard=Auto(): clamps visibly (cyclic grid)
    layer(costs).sum().backward()
    layer.stats.clamped_entries / max(layer.stats.guarded_entries, 1)   # fraction of perturbed costs clamped
"""

from __future__ import annotations

import abc

import torch


class GuardWarning(UserWarning):
    """A guard changed the problem (clamped perturbed costs) because no exact option exists for the solver."""


class Guard(abc.ABC):
    """``guard(w, solver, inplace=False, stats=None) -> w'`` applied to the natural argument before a solver call.

    ``inplace=True`` allows the guard to modify ``w`` (the caller passes it for tensors it just allocated);
    ``stats`` (a :class:`~discreteopt.maximizer.SolverStats` or ``None``) receives the guard's counters.
    """

    #: True when the caller should warn (once) the first time this guard clamps entries
    warns: bool = False

    def check(self, solver) -> None:
        """Raise ``ValueError`` if this policy is invalid for ``solver`` (called once by the layer)."""
        return None

    def resolve(self, solver, unperturbed: bool = False) -> Guard:
        """The concrete policy used for ``solver``'s calls; ``unperturbed=True`` for MAP (eval-mode) calls.
        Default: this guard itself."""
        return self

    @abc.abstractmethod
    def __call__(self, w: torch.Tensor, solver, inplace: bool = False, stats=None) -> torch.Tensor:
        ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Clamp(Guard):
    """``w = max(w, solver.min_cost)`` element-wise (no-op without ``min_cost``).

    Counts ``stats.guarded_entries`` (entries seen) and ``stats.clamped_entries`` (entries raised to the bound).

    Args:
        warn: emit a one-time :class:`GuardWarning` per layer/loss the first time entries are clamped (what
            :class:`Auto` uses); ``False`` (default) when the clamp is the user's explicit choice.
    """

    def __init__(self, warn: bool = False):
        if not isinstance(warn, bool):
            raise ValueError(f"warn must be True or False; got {warn!r}")
        self.warns = warn

    def __call__(self, w, solver, inplace=False, stats=None):
        if solver.min_cost is None:
            return w
        bound = float(solver.min_cost)
        if stats is not None:
            stats.guarded_entries += w.numel()
            stats.clamped_entries += int(torch.count_nonzero(w < bound))
        return w.clamp_(min=bound) if inplace else torch.clamp(w, min=bound)

    def __repr__(self) -> str:
        return "Clamp(warn=True)" if self.warns else "Clamp()"


class Shift(Guard):
    """Per-instance shift so that ``min(w) >= min_cost``; only for ``shift_invariant`` solvers (exact there)."""

    def check(self, solver) -> None:
        if solver.min_cost is not None and not getattr(solver, "shift_invariant", False):
            raise ValueError(f"guard Shift() changes the optimum of {type(solver).__name__} (its feasible "
                             "solutions do not all have the same sum); use Clamp() or positive noise")

    def __call__(self, w, solver, inplace=False, stats=None):
        if solver.min_cost is None:
            return w
        low = w.flatten(1).min(dim=1).values  # [B]
        shift = torch.clamp(float(solver.min_cost) - low, min=0.0)  # [B]
        if stats is not None:
            stats.shifted_instances += int(torch.count_nonzero(shift))
        shift = shift.reshape(-1, *([1] * (w.ndim - 1)))  # [B, 1, ...]
        return w.add_(shift) if inplace else w + shift


class Raise(Guard):
    """Pass ``w`` unchanged; the solver raises ``ValueError`` on a violated bound."""

    def __call__(self, w, solver, inplace=False, stats=None):
        return w


class Auto(Guard):
    """The default policy: exact where possible, a visible clamp where nothing exact exists (module docstring).

    ``resolve(solver)``: :class:`Raise` (pass-through) for solvers without ``min_cost``, :class:`Shift` for
    ``shift_invariant`` ones, else ``Clamp(warn=True)``; for unperturbed (MAP) calls the clamp becomes
    :class:`Raise`, so evaluation never solves a silently changed problem.
    """

    def resolve(self, solver, unperturbed: bool = False) -> Guard:
        if solver.min_cost is None:
            return Raise()
        if getattr(solver, "shift_invariant", False):
            return Shift()
        return Raise() if unperturbed else Clamp(warn=True)

    def __call__(self, w, solver, inplace=False, stats=None):
        return self.resolve(solver)(w, solver, inplace, stats)
