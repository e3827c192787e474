"""Test solvers for the executor tests: importable by worker processes and Ray actors (by module name).

They follow the :class:`~discreteopt.solvers.base.Solver` contract: ``theta [B, n] -> one-hot argmax [B, n]``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from discreteopt.solvers.base import Solver

#: an instance whose first entry equals this kills the worker solving it (CrashSolver)
POISON = 666.0


def _argmax_one_hot(theta: np.ndarray) -> np.ndarray:
    out = np.zeros_like(theta)  # [B, n]
    out[np.arange(theta.shape[0]), theta.argmax(axis=1)] = 1.0
    return out


class SleepSolver(Solver):
    """Argmax after sleeping ``seconds`` per call (``per_instance=True``: per instance)."""

    theta_layout = "[B, n]"

    def __init__(self, seconds: float, per_instance: bool = False):
        self.seconds, self.per_instance = float(seconds), bool(per_instance)
        self._spec_kwargs = {"seconds": self.seconds, "per_instance": self.per_instance}

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds * (theta.shape[0] if self.per_instance else 1))
        return _argmax_one_hot(theta)


class CrashSolver(Solver):
    """Argmax, but the process dies (``os._exit``) on an instance whose first entry is :data:`POISON`."""

    theta_layout = "[B, n]"

    def __init__(self):
        self._spec_kwargs = {}

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        if (theta[:, 0] == POISON).any():
            os._exit(17)
        return _argmax_one_hot(theta)


class ProbeSolver(Solver):
    """Reports, per instance, ``[pid, CUDA hidden (0/1), CUDA initialised (0/1), torch threads]`` of the process
    that solved it (input ``[B, 4]``, values ignored)."""

    theta_layout = "[B, 4]"

    def __init__(self):
        self._spec_kwargs = {}

    def event_shape(self):
        return (4,)

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        import torch

        hidden = float(os.environ.get("CUDA_VISIBLE_DEVICES", None) == "")
        row = [float(os.getpid()), hidden, float(torch.cuda.is_initialized()), float(torch.get_num_threads())]
        return np.tile(np.asarray(row, dtype=np.float64), (theta.shape[0], 1))  # [B, 4]
