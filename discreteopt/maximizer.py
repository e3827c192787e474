"""``Maximizer``: the one entry point of every solver call made by layers and losses.

``theta [N, *E]`` in the max convention -> ``argmax_y <theta, y>``: the sign is flipped once for min-sense
solvers, the :class:`~discreteopt.estimators.guards.Guard` is applied to the natural argument, the call goes
to the :class:`~discreteopt.executors.base.Executor`, and :class:`SolverStats` counts it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import torch

from ._validation import validate_input  # noqa: F401 -- re-exported: layers and losses import it from here
from .estimators.guards import Auto, Guard, GuardWarning
from .executors.base import Executor, Inline
from .solvers.base import Solver


@dataclasses.dataclass
class SolverStats:
    """Executor calls and solved instances, per phase, since the last :meth:`reset`."""

    forward_calls: int = 0
    forward_instances: int = 0
    backward_calls: int = 0
    backward_instances: int = 0
    #: instances answered from an attached :class:`~discreteopt.solution_cache.SolutionCache`'s pool (no solver)
    cache_hits: int = 0
    #: instances sent to the solver while a cache was attached (they join its pool)
    cache_misses: int = 0
    #: entries of natural arguments that went through a clamping guard (``Clamp``, or ``Auto`` where it clamps)
    guarded_entries: int = 0
    #: of those, entries below ``solver.min_cost`` that the clamp raised to it (each one changes a problem)
    clamped_entries: int = 0
    #: instances moved by the exact ``Shift`` guard (``shift_invariant`` solvers; the optimum is unchanged)
    shifted_instances: int = 0

    def reset(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, 0)

    @property
    def calls(self) -> int:
        return self.forward_calls + self.backward_calls

    @property
    def instances(self) -> int:
        return self.forward_instances + self.backward_instances

    @property
    def clamped_fraction(self) -> float:
        """``clamped_entries / guarded_entries`` (0 when nothing was guarded)."""
        return self.clamped_entries / self.guarded_entries if self.guarded_entries else 0.0

    def record(self, phase: str, n: int) -> None:
        setattr(self, f"{phase}_calls", getattr(self, f"{phase}_calls") + 1)
        setattr(self, f"{phase}_instances", getattr(self, f"{phase}_instances") + int(n))


class Maximizer:
    """``theta [N, *E] -> argmax_y <theta, y>`` through ``solver``, ``guard`` and ``executor``.

    The single place where the sign is flipped for min-sense solvers: the natural argument is
    ``w = guard(-theta)`` (``sense == "min"``) or ``guard(theta)``. ``guard`` defaults to
    :class:`~discreteopt.estimators.guards.Auto`; calls made inside ``with maximizer.unperturbed():`` (a layer's
    eval-mode MAP forward) use the guard's policy for unperturbed arguments (``Auto``: never a clamp). A guard that
    clamps with ``warns`` set gives one :class:`~discreteopt.estimators.guards.GuardWarning` per maximizer.
    """

    def __init__(self, solver: Solver, executor: Executor | None = None, guard: Guard | None = None,
                 stats: SolverStats | None = None):
        if not isinstance(solver, Solver):
            raise ValueError(f"solver must be a discreteopt Solver; got {type(solver).__name__}")
        executor = Inline() if executor is None else executor
        if not isinstance(executor, Executor):
            raise ValueError(f"executor must be an Executor; got {type(executor).__name__}")
        guard = Auto() if guard is None else guard
        if not isinstance(guard, Guard):
            raise ValueError(f"guard must be a Guard (Auto(), Clamp(), Shift(), Raise()); got {type(guard).__name__}")
        guard.check(solver)
        self.solver, self.executor, self.guard = solver, executor, guard
        self.stats = SolverStats() if stats is None else stats
        # concrete policies for perturbed (training) and unperturbed (MAP) calls, chosen once per solver
        self._guards = {k: (g, _takes_stats(g)) for k, g in
                        ((False, guard.resolve(solver)), (True, guard.resolve(solver, unperturbed=True)))}
        self._warned = False

    @contextlib.contextmanager
    def unperturbed(self) -> Iterator[None]:
        """Calls made in this block solve unperturbed (MAP) arguments: the guard's ``unperturbed`` policy applies."""
        token = _UNPERTURBED.set(self)
        try:
            yield
        finally:
            _UNPERTURBED.reset(token)

    def natural(self, theta: torch.Tensor) -> torch.Tensor:
        """Max-convention ``theta`` -> guarded natural argument of the solver."""
        guard, takes_stats = self._guards[_UNPERTURBED.get() is self]
        before = (self.stats.clamped_entries, self.stats.guarded_entries)
        # the negation is a fresh tensor: the guard may work in place on it (one allocation in all)
        w, inplace = (torch.neg(theta.detach()), True) if self.solver.sense == "min" else (theta.detach(), False)
        w = guard(w, self.solver, inplace=inplace, stats=self.stats) if takes_stats else \
            guard(w, self.solver, inplace=inplace)
        clamped = self.stats.clamped_entries - before[0]
        if clamped and guard.warns and not self._warned:
            self._warned = True
            seen = max(self.stats.guarded_entries - before[1], 1)
            warnings.warn(
                f"{type(self.solver).__name__} needs arguments >= {self.solver.min_cost} and no exact guard exists "
                f"for it (not shift-invariant): {clamped} of {seen} entries ({clamped / seen:.2%}) of the "
                f"arguments of this training call were below it and clamped to {self.solver.min_cost} (blackbox "
                "backprop's rule), which changes those problems. Running totals: .stats.clamped_entries / "
                ".stats.guarded_entries. "
                "Pass guard=Clamp() to accept this without a warning, guard=Raise() to refuse it, or keep costs "
                "positive (e.g. PerturbedOptimizer(multiplicative=True)). Warned once per layer/loss.",
                GuardWarning, stacklevel=2)
        return w

    #: optional :class:`~discreteopt.solution_cache.SolutionCache` (set by ``SolutionCache.attach``): answers
    #: part of every batch from its pool; ``use_cache=False`` bypasses it for one call
    cache = None

    def submit(self, theta: torch.Tensor, phase: str = "forward", use_cache: bool = True) -> Future:
        if self.cache is not None and use_cache:
            return self.cache.submit(self, theta, phase)
        self.stats.record(phase, theta.shape[0])
        return self.executor.submit(self.solver, self.natural(theta))

    def __call__(self, theta: torch.Tensor, phase: str = "forward", use_cache: bool = True) -> torch.Tensor:
        if self.cache is not None and use_cache:
            return self.cache.submit(self, theta, phase).result()
        self.stats.record(phase, theta.shape[0])
        return self.executor.solve(self.solver, self.natural(theta))

    def backward_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda t: self(t, "backward")


#: the maximizer whose calls currently solve unperturbed arguments (see ``Maximizer.unperturbed``)
_UNPERTURBED: contextvars.ContextVar[Maximizer | None] = contextvars.ContextVar("discreteopt_unperturbed",
                                                                                default=None)


def _takes_stats(guard: Guard) -> bool:
    """True unless ``guard`` is a user guard written before guards received ``stats=``."""
    try:
        return "stats" in inspect.signature(guard.__call__).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
