"""Choice of the compiled (numba) or pure-torch back-end for the shortest-path solvers."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import torch

BACKENDS = ("auto", "numba", "torch")


@functools.cache
def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"numba"`` when numba is installed, else ``"torch"``; validates the name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "auto":
        return "numba" if numba_available() else "torch"
    if backend == "numba" and not numba_available():
        raise ValueError("backend='numba' needs numba (pip install 'discreteopt[fast]'); use backend='torch'")
    return backend


def raise_overflow(solver: str, bad) -> None:
    """Raise :class:`~discreteopt.solvers.base.InstanceError` (status ``"OVERFLOW"``) for the first instance flagged
    in ``bad [B]`` (numpy or torch bool): the same outcome for every back-end of the shortest-path solvers."""
    bad = bad.cpu().numpy() if isinstance(bad, torch.Tensor) else np.asarray(bad)
    if bad.any():
        from .base import InstanceError

        raise InstanceError(solver, int(np.argmax(bad)), "OVERFLOW",
                            "path sums overflow float64 (finite costs, but too large to add up); rescale the costs")


def numba_kernels():
    """The compiled kernels module (imported on first use: numba's import and compile are lazy)."""
    from . import _dijkstra_numba

    return _dijkstra_numba


class NumbaOrTorch:
    """Mixin of the solvers with a compiled (numba) and a pure-torch back-end (the shortest-path solvers).

    The subclass sets ``self.backend = resolve_backend(backend)`` and ``self._requested_backend = backend`` and
    implements ``_solve_numba`` (CPU, float64 arrays) and ``_solve_torch`` (any device). The solver is
    ``device_native`` when the torch back-end was chosen; with ``backend="auto"``, inputs already on a GPU are
    solved there by the torch back-end (no host round trip), CPU inputs by numba.
    """

    backend: str
    _requested_backend: str

    @property
    def device_native(self) -> bool:  # type: ignore[override]
        return self.backend == "torch"

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        if isinstance(theta, torch.Tensor) and theta.device.type != "cpu" and self._requested_backend == "auto":
            theta = theta.detach()
            self.validate(theta)  # type: ignore[attr-defined]
            return self._solve_torch(theta).to(theta.dtype)
        return super().solve(theta)  # type: ignore[misc]

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        if self.backend == "torch":
            return self._solve_torch(torch.from_numpy(theta)).numpy()
        return self._solve_numba(theta)

    def _solve_numba(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
