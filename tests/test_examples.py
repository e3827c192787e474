"""The examples in ``examples/`` run end to end (short settings) and print their results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_quickstart_learns_the_cost_model():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import quickstart
    finally:
        sys.path.remove(str(EXAMPLES))
    untrained = quickstart.main(steps=1)
    trained = quickstart.main(steps=60)
    assert trained["cost_ratio"] < untrained["cost_ratio"] - 0.05
    assert trained["hamming"] < untrained["hamming"]


def test_warcraft_route_example_runs():
    out = _run("warcraft_route.py", "--n-train", "64", "--n-test", "32", "--epochs", "1")
    assert "cost" in out.lower()


def test_own_solver_example_checks_trains_and_matches_on_processes():
    import re

    out = _run("own_solver.py", "--steps", "20")
    assert out.count("instances optimal among 130 spanning trees; worker recipe: ok") == 3, out
    before, after = map(float, re.search(r"trees ([\d.]+) -> ([\d.]+)", out).groups())
    assert after < before, out
    assert "same trees and gradients as inline: True" in out, out


def test_overlap_example_runs_with_a_process_pool():
    out = _run("overlap_training.py", "--device", "cpu", "--workers", "1", "--steps", "2", "--batch", "8",
               "--micro", "2", "--samples", "2")
    assert out.strip()


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_has_a_docstring_and_a_main_guard(script):
    text = (EXAMPLES / script).read_text()
    assert text.lstrip().startswith('"""') and 'if __name__ == "__main__":' in text
