"""The ``Executor`` contract: where solver calls run.

An executor takes a solver and a batch ``theta [B, *E]`` and returns ``y [B, *Y]`` exactly as
``solver.solve(theta)`` would (same values, device, dtype), possibly computed elsewhere:

* :meth:`Executor.solve` -- blocking;
* :meth:`Executor.submit` -- returns a :class:`concurrent.futures.Future` resolving to the tensor, so a
  training loop can run GPU work while CPU workers solve;
* :meth:`Executor.map` -- the low-level primitive on numpy chunks and a picklable :class:`SolverSpec`.

Estimators and layers never know which executor they use. Errors raised by the solver for one instance
(:class:`~discreteopt.solvers.base.InstanceError`) carry the index in the *full* batch.
"""

from __future__ import annotations

import abc
from concurrent.futures import Future

import numpy as np
import torch

from ..solvers.base import Solver, SolverSpec


class Executor(abc.ABC):
    """Runs batched solver calls. Subclasses implement :meth:`map` (and usually :meth:`submit`)."""

    @abc.abstractmethod
    def map(self, spec: SolverSpec, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Solve each ``float64`` chunk ``[b_i, *E]`` with the solver built from ``spec`` -> ``[b_i, *Y]``."""

    def submit(self, solver: Solver, theta: torch.Tensor) -> Future:
        """Start solving ``theta`` and return a future of the result tensor (default: run now)."""
        fut: Future = Future()
        try:
            fut.set_result(self.solve(solver, theta))
        except BaseException as exc:  # noqa: BLE001 -- delivered through the future
            fut.set_exception(exc)
        return fut

    def solve(self, solver: Solver, theta: torch.Tensor) -> torch.Tensor:
        """Blocking ``solver.solve(theta)`` through this executor."""
        return self.submit(solver, theta).result()

    def close(self) -> None:
        """Release workers (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Inline(Executor):
    """Solve in the calling thread (no workers). Always correct; best for tiny batches and GPU solvers."""

    def map(self, spec: SolverSpec, chunks: list[np.ndarray]) -> list[np.ndarray]:
        solver = spec.build()
        return [solver.solve_numpy(c) for c in chunks]

    def solve(self, solver: Solver, theta: torch.Tensor) -> torch.Tensor:
        return solver.solve(theta)

    def __repr__(self) -> str:
        return "Inline()"
