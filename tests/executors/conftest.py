"""Shared fixtures of the executor tests: one spawn pool for the whole session (workers take seconds to start
on a shared 2-core machine), helpers to inspect processes through /proc (psutil is not a dependency)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from discreteopt.executors import Processes, Threads

HERE = Path(__file__).resolve().parent


def proc_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def descendants(pid: int | None = None) -> set[int]:
    """Live descendants of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    kids, out, todo = _children_map(), set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out and proc_alive(c):
                out.add(c)
                todo.append(c)
    return out


def helper_processes() -> set[int]:
    """Long-lived multiprocessing helpers (resource tracker, forkserver) and Ray's processes: not workers."""
    keep = set()
    for p in descendants():
        cmd = cmdline(p)
        if "resource_tracker" in cmd or "forkserver" in cmd and "main(" in cmd or "ray" in cmd.lower():
            keep.add(p)
    return keep


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="session")
def proc_pool():
    """A started 2-worker spawn pool shared by the tests (faults replace its workers, it stays usable)."""
    pool = Processes(2, start_method="spawn").start()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def thread_pool():
    pool = Threads(2)
    yield pool
    pool.close()
