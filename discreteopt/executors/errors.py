"""Errors raised by pool executors (:class:`~discreteopt.executors.processes.Processes`,
:class:`~discreteopt.executors.ray_executor.Ray`).

Errors raised *by the solver* for one instance are not wrapped: they reach the caller as
:class:`~discreteopt.solvers.base.InstanceError` (index in the full batch) or ``ValueError``.
"""

from __future__ import annotations

import signal

#: signals a process gets from its own code crashing (as opposed to being sent from outside, like SIGKILL)
_NATIVE_CRASHES = {signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL}


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


def _likely_cause(code: int | None, attempts: int) -> str:
    """What the exit status says about the cause, and no more."""
    every = "dying on every attempt" if attempts > 1 else "dying on its only attempt"
    if code is None:
        return "The exit status is unknown (Ray does not report it), so the cause may be the input or outside it."
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"Signal {-code} may come from the solver's native code or from outside the process."
        if sig in _NATIVE_CRASHES:
            return (f"{sig.name} is what a native crash inside the solver raises (an abort such as an OR-Tools "
                    f"CHECK failure, or a segfault); {every} on this input points to the input, "
                    "though something outside the process cannot be ruled out.")
        if sig == signal.SIGKILL:
            return ("SIGKILL is sent from outside the process (the kernel's out-of-memory killer, a user, a job "
                    "scheduler), so the input is not necessarily at fault; check memory use and the system log.")
        return f"{sig.name} is usually sent from outside the process; the input is not necessarily at fault."
    return (f"The worker exited with code {code} (os._exit or a native library ending the process); {every} "
            "on this input points to the input.")


class WorkerCrashed(RuntimeError):
    """A worker process or Ray actor died while solving instances ``start..stop-1`` of the batch, on every attempt.

    The pool retries a chunk whose worker died ``retries`` times, one instance per task in a fresh worker, so the
    error names the instance that was being solved when the last worker died. What is known is only that: the
    message says what the exit status suggests (a native crash inside the solver, a signal from outside such as
    the out-of-memory killer's SIGKILL, an exit code) without calling the crash reproducible, and it never
    suggests re-running the input in this process (``Inline()``/``Threads()``), where a native abort would end
    the interpreter. The worker's own messages (e.g. a native library's abort text) went to this process's
    stderr.

    Args:
        label: the solver's class name.
        start, stop: the global rows ``[start, stop)`` the last worker was solving.
        pid: process id of the last worker that died (``None`` where unknown).
        exitcode: its exit code, negative for a signal (``None`` where unknown, e.g. for Ray actors).
        attempts: how many workers died on these rows in a row.

    Example::

        >>> err = WorkerCrashed("Knapsack", 4, 5, pid=1234, exitcode=-6, attempts=2)
        >>> err.start, err.exitcode
        (4, -6)
        >>> "SIGABRT" in str(err) and "Do not re-run this input with Inline()" in str(err)
        True
    """

    def __init__(self, label: str, start: int, stop: int, pid: int | None, exitcode: int | None, attempts: int):
        self.label, self.start, self.stop, self.pid, self.exitcode = label, start, stop, pid, exitcode
        self.attempts = attempts
        what = f"instance {start}" if stop - start == 1 else f"instances {start}..{stop - 1}"
        tries = f"{attempts} time(s) in a row" if attempts > 1 else "1 time(s) (not retried: retries=0)"
        who = f"worker process {pid}" if pid is not None else "a worker process (pid unknown)"
        super().__init__(
            f"{label}: {who} died ({describe_exit(exitcode)}) while solving {what} of the batch, "
            f"{tries}. {_likely_cause(exitcode, attempts)} The worker's own output (e.g. a native library's abort "
            "message) went to this process's stderr. Do not re-run this input with Inline() or Threads() to see "
            "more: a native crash would end this interpreter too; investigate it in a separate process (e.g. a "
            "script that solves only that row of theta).")

    def __reduce__(self):
        return (WorkerCrashed, (self.label, self.start, self.stop, self.pid, self.exitcode, self.attempts))
