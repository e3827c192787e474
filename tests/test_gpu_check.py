"""``benchmarks/gpu_check.py``: its CPU smoke run (so the device script cannot rot) and its section runner."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ["gpu_tests", "train_step", "grid", "topk", "pdhg"]


def load_module():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_module()


def test_quick_cpu_run_fills_every_section(tmp_path):
    """The same code paths as the device run, on the CPU with reduced sizes: every section must succeed."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--budget", "150",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert list(results["sections"]) == SECTIONS
    for name, rec in results["sections"].items():
        assert rec["status"] == "ok", (name, rec.get("error"), rec.get("traceback"))
        assert rec["result"], name
    meta = results["meta"]
    assert meta["device"] == "cpu" and meta["quick"] and meta["workers"] == 2 and meta["finished"]
    sec = results["sections"]
    assert sec["gpu_tests"]["result"]["exit_code"] in (0, 5) and (run_dir / "gpu_tests.xml").exists()
    train = sec["train_step"]["result"]["rows"]
    assert {r["mode"] for r in train} == {"sync", "overlap"}
    assert all(r["s_per_step"] > 0 and 0 <= r["wait_pct"] <= 100 for r in train)
    grid = sec["grid"]["result"]["rows"]
    assert {r["method"] for r in grid} == {"torch on cpu", "numba Processes(2)", "numba Threads(2)"}
    assert all(r["torch_matches_numba"] for r in grid)
    assert sec["topk"]["result"]["rows"][0]["device"] == "cpu"
    lp = sec["pdhg"]["result"]["rows"]
    assert {r["batch"] for r in lp} == {1, 8, 32}
    assert max(r["max_rel_obj_err"] for r in lp) <= 1e-4  # PDHG agrees with GLOP
    assert set(sec["pdhg"]["result"]["break_even"]) == {"shortest path 5x5 (40 arcs) / PDHG cpu float64",
                                                        "random LP n=60 (30 ub, 10 eq rows) / PDHG cpu float64"}
    summary = (run_dir / "summary.md").read_text()
    for title in ("| gpu_tests | ok", "Training step", "Grid shortest path", "Top-k", "PDHG vs GLOP"):
        assert title in summary
    assert summary in proc.stdout  # the table is printed too


def test_a_failing_section_is_recorded_and_the_next_one_runs():
    saved = []

    def bad(rec):
        rec["result"]["partial"] = 1
        raise RuntimeError("boom")

    def good(rec):
        rec["result"]["value"] = 42

    results = gpu_check.run_sections([("bad", bad, 5.0), ("good", good, 5.0)], 20.0, {},
                                     lambda r: saved.append(json.dumps(r)))
    bad_rec, good_rec = results["sections"]["bad"], results["sections"]["good"]
    assert bad_rec["status"] == "error" and "RuntimeError: boom" in bad_rec["error"] and "traceback" in bad_rec
    assert bad_rec["result"] == {"partial": 1}  # what it measured before failing is kept
    assert good_rec["status"] == "ok" and good_rec["result"] == {"value": 42}
    assert len(saved) == 2 and json.loads(saved[0])["sections"]["bad"]["status"] == "error"


def test_the_budget_stops_an_overrunning_section_and_skips_when_spent():
    def forever(rec):
        while True:
            rec["result"]["ticks"] = rec["result"].get("ticks", 0) + 1
            time.sleep(0.01)

    t0 = time.monotonic()
    results = gpu_check.run_sections([("slow", forever, 1.0), ("after", lambda rec: None, 1.0),
                                      ("late", forever, 5.0), ("never", lambda rec: None, 1.0)], 3.0, {},
                                     lambda r: None)
    sec = results["sections"]
    assert sec["slow"]["status"] == "timeout" and sec["slow"]["result"]["ticks"] > 0
    assert sec["after"]["status"] == "ok"
    assert sec["late"]["status"] == "timeout"  # gets what is left of the 3 s, not its 5 s share
    assert sec["never"]["status"] == "skipped"
    assert time.monotonic() - t0 < 4.5


def test_break_even_estimates():
    batches = [1, 256, 4096]
    gpu = [0.05 + 1e-6 * b for b in batches]  # high fixed cost, cheap per instance
    cpu = [1e-4 * b for b in batches]
    assert gpu_check.break_even(batches, gpu, cpu) == pytest.approx(0.05 / (1e-4 - 1e-6), rel=1e-6)
    assert gpu_check.first_win(batches, gpu, cpu) == 4096
    assert gpu_check.break_even(batches, cpu, [2 * t for t in cpu]) == pytest.approx(0.0, abs=1e-9)  # always wins
    assert gpu_check.break_even(batches, [2 * t for t in cpu], cpu) is None  # never
    assert gpu_check.first_win(batches, [2 * t for t in cpu], cpu) is None


def test_device_busy_time_is_the_union_of_kernel_intervals():
    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "ts": 0, "dur": 10},
        {"ph": "X", "cat": "kernel", "ts": 5, "dur": 10},  # overlaps the first: union [0, 15]
        {"ph": "X", "cat": "gpu_memcpy", "ts": 20, "dur": 5},
        {"ph": "X", "cat": "kernel", "ts": 21, "dur": 1},  # inside the copy
        {"ph": "X", "cat": "cpu_op", "ts": 0, "dur": 100},  # host work does not count
    ]}
    assert gpu_check.device_busy_us(trace) == (20.0, 4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_no_cuda_device_is_a_clear_error(capsys):
    assert gpu_check.main(["--device", "cuda"]) == 2
    assert "--device cpu --quick" in capsys.readouterr().err
