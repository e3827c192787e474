"""Choice of the compiled (numba) or pure-torch back-end for the shortest-path solvers."""

from __future__ import annotations

import functools
import importlib.util

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


def numba_kernels():
    """The compiled kernels module (imported on first use: numba's import and compile are lazy)."""
    from . import _dijkstra_numba

    return _dijkstra_numba
