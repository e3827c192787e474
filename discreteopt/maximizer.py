"""``Maximizer``: the one entry point of every solver call made by layers and losses.

``theta [N, *E]`` in the max convention -> ``argmax_y <theta, y>``: the sign is flipped once for min-sense
solvers, the :class:`~discreteopt.estimators.guards.Guard` is applied to the natural argument, the call goes
to the :class:`~discreteopt.executors.base.Executor`, and :class:`SolverStats` counts it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Future

import torch

from ._validation import validate_input  # noqa: F401 -- re-exported: layers and losses import it from here
from .estimators.guards import Clamp, Guard
from .executors.base import Executor, Inline
from .solvers.base import Solver


@dataclasses.dataclass
class SolverStats:
    """Executor calls and solved instances, per phase, since the last :meth:`reset`."""

    forward_calls: int = 0
    forward_instances: int = 0
    backward_calls: int = 0
    backward_instances: int = 0

    def reset(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, 0)

    @property
    def calls(self) -> int:
        return self.forward_calls + self.backward_calls

    @property
    def instances(self) -> int:
        return self.forward_instances + self.backward_instances

    def record(self, phase: str, n: int) -> None:
        setattr(self, f"{phase}_calls", getattr(self, f"{phase}_calls") + 1)
        setattr(self, f"{phase}_instances", getattr(self, f"{phase}_instances") + int(n))


class Maximizer:
    """``theta [N, *E] -> argmax_y <theta, y>`` through ``solver``, ``guard`` and ``executor``.

    The single place where the sign is flipped for min-sense solvers: the natural argument is
    ``w = guard(-theta)`` (``sense == "min"``) or ``guard(theta)``.
    """

    def __init__(self, solver: Solver, executor: Executor | None = None, guard: Guard | None = None,
                 stats: SolverStats | None = None):
        if not isinstance(solver, Solver):
            raise ValueError(f"solver must be a discreteopt Solver; got {type(solver).__name__}")
        executor = Inline() if executor is None else executor
        if not isinstance(executor, Executor):
            raise ValueError(f"executor must be an Executor; got {type(executor).__name__}")
        guard = Clamp() if guard is None else guard
        if not isinstance(guard, Guard):
            raise ValueError(f"guard must be a Guard (Clamp(), Shift(), Raise()); got {type(guard).__name__}")
        guard.check(solver)
        self.solver, self.executor, self.guard = solver, executor, guard
        self.stats = SolverStats() if stats is None else stats

    def natural(self, theta: torch.Tensor) -> torch.Tensor:
        """Max-convention ``theta`` -> guarded natural argument of the solver."""
        if self.solver.sense == "min":
            # the negation is a fresh tensor: the guard may work in place on it (one allocation in all)
            return self.guard(torch.neg(theta.detach()), self.solver, inplace=True)
        return self.guard(theta.detach(), self.solver)

    def submit(self, theta: torch.Tensor, phase: str = "forward") -> Future:
        self.stats.record(phase, theta.shape[0])
        return self.executor.submit(self.solver, self.natural(theta))

    def __call__(self, theta: torch.Tensor, phase: str = "forward") -> torch.Tensor:
        self.stats.record(phase, theta.shape[0])
        return self.executor.solve(self.solver, self.natural(theta))

    def backward_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda t: self(t, "backward")
