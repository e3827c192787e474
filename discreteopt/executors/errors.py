"""Errors raised by pool executors (:class:`~discreteopt.executors.processes.Processes`,
:class:`~discreteopt.executors.ray_executor.Ray`).

Errors raised *by the solver* for one instance are not wrapped: they reach the caller as
:class:`~discreteopt.solvers.base.InstanceError` (index in the full batch) or ``ValueError``.
"""

from __future__ import annotations

import signal


def describe_exit(code: int | None) -> str:
    """``"killed by SIGKILL"``, ``"exit code 3"`` or ``"exit status unknown"`` for a process exit code."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class WorkerCrashed(RuntimeError):
    """A worker (process or Ray actor) died while solving instances ``start..stop-1`` of the batch, on every
    attempt (the first one and ``retries`` retries, each retry solving one instance per task).

    Attributes: ``label`` (the solver's class name), ``start``, ``stop`` (global rows), ``pid`` and ``exitcode``
    of the last worker that died (``exitcode`` is ``None`` where unknown, e.g. for Ray actors), ``attempts``.
    """

    def __init__(self, label: str, start: int, stop: int, pid: int | None, exitcode: int | None, attempts: int):
        self.label, self.start, self.stop, self.pid, self.exitcode = label, start, stop, pid, exitcode
        self.attempts = attempts
        what = f"instance {start}" if stop - start == 1 else f"instances {start}..{stop - 1}"
        super().__init__(
            f"{label}: worker process {pid} died ({describe_exit(exitcode)}) while solving {what} of the "
            f"batch, {attempts} time(s) in a row; the crash is reproducible on that input. Solve it with "
            "Inline() to see the error in this process.")

    def __reduce__(self):
        return (WorkerCrashed, (self.label, self.start, self.stop, self.pid, self.exitcode, self.attempts))
