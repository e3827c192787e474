"""Executors: where batched solver calls run (see :mod:`discreteopt.executors.base`)."""

from .base import Executor, Inline

__all__ = ["Executor", "Inline"]
