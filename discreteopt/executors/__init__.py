"""Executors: where batched solver calls run (see :mod:`discreteopt.executors.base` for the contract).

* :class:`Inline` -- the calling thread;
* :class:`Threads` -- a thread pool (solvers that release the GIL);
* :class:`Processes` -- a persistent pool of worker processes (spawn/forkserver, shared memory, fault handling);
* :class:`Ray` -- Ray actors on this machine or a cluster (``pip install 'discreteopt[ray]'``, imported lazily);
* :class:`Auto` -- inline below a measured break-even batch size, a pool above it.

All give the same results as ``solver.solve(theta)`` for the same input.
"""

from .auto import Auto, Calibration
from .base import Executor, Inline
from .errors import WorkerCrashed
from .processes import Processes
from .ray_executor import Ray
from .threads import Threads

__all__ = ["Auto", "Calibration", "Executor", "Inline", "Processes", "Ray", "Threads", "WorkerCrashed"]
