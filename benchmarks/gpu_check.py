"""The GPU check: one command that measures everything that needs a device, within a hard time budget.

Sections (each one guarded: an error is recorded in the JSON and the next section runs; a global budget stops
a section that would overrun, keeping what it measured so far):

1. ``gpu_tests``: the ``gpu``-marked tests (``pytest -m gpu``), summarised from their junit XML.
2. ``train_step``: Warcraft 12x12 ``CombResNet`` + I-MLE (S=10) with the solver on ``Processes(workers)``, at
   batch 70 (5 micro-batches of 14) and 256 (4 of 64): synchronous vs ``forward_async`` overlap (the
   ``--train-step`` benchmark of ``bench_executors.py``): seconds per step; *wait %*, the share of the step
   the training thread waits on solver results; *GPU idle %*, one untimed (last warm-up) step under the torch
   profiler: ``1 - (union of the device's kernel and copy intervals) / step wall time``.
3. ``grid``: grid shortest path throughput at sizes 12 and 30, B = 256 / 4096 / 65536: the torch (Bellman-Ford)
   back-end on the device vs numba on ``Processes(workers)`` vs numba on ``Threads(workers)``; costs start and
   end on the device. Break-even batch size of the device back-end against the worker pool.
4. ``topk``: ``TopK(10)`` over ``n = 100`` on the device at large B (vs the CPU).
5. ``pdhg``: the batched PDHG LP (``ILP(backend="pdhg")``) on the device (float32 and float64) vs GLOP on
   ``Processes(workers)``, at B = 1, 256, 4096, on the 5x5 shortest-path LP of the predict-then-optimise
   benchmarks and a random LP (n=60); accuracy against GLOP and break-even batch sizes.

Everything goes to ``<out>/<timestamp>/``: ``results.json`` (rewritten after every section), ``summary.md``
(also printed), ``gpu_tests.xml`` / ``gpu_tests.log``. Exit status 0 when every section succeeded.

Run::

    python benchmarks/gpu_check.py                      # CUDA device, 15 workers, 420 s budget (make gpu-check)
    python benchmarks/gpu_check.py --device cpu --quick # the same code paths in well under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


# ===================================================================== budget and section runner
class BudgetExceeded(Exception):
    """Raised (by SIGALRM, in the main thread) when a section reaches its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`BudgetExceeded` in the main thread after ``seconds`` (wall clock)."""
    if seconds <= 0:
        raise BudgetExceeded("no time left")

    def on_alarm(signum, frame):
        raise BudgetExceeded(f"section stopped by the time budget after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_sections(sections: list[tuple[str, Callable[[dict], None], float]], budget_s: float,
                 results: dict, save: Callable[[dict], None]) -> dict:
    """Run ``(name, fn, cap_s)`` sections one after the other within ``budget_s`` seconds in all.

    ``fn(record)`` fills ``record["result"]`` as it goes, so an interrupted section keeps what it measured. Each
    section gets ``cap_s`` plus the time earlier sections left unused, never more than the budget left. A section
    that raises gets ``status = "error"`` (message and traceback), one stopped by the budget ``"timeout"``, one
    never started ``"skipped"``. ``save(results)`` runs after every section.
    """
    deadline = time.monotonic() + budget_s
    carry = 0.0
    results.setdefault("sections", {})
    for name, fn, cap in sections:
        left = deadline - time.monotonic()
        limit = min(cap + carry, left)
        record: dict = {"status": "running", "limit_s": round(limit, 1), "result": {}}
        results["sections"][name] = record
        t0 = time.monotonic()
        if limit < 1.0:
            record.update(status="skipped", error="the global time budget is spent")
        else:
            try:
                with time_limit(limit):
                    fn(record)
                record["status"] = "ok"
            except BudgetExceeded as exc:
                record.update(status="timeout", error=str(exc))
            except Exception as exc:  # noqa: BLE001 -- recorded, the next section runs
                record.update(status="error", error=f"{type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc(limit=8))
        record["seconds"] = round(time.monotonic() - t0, 2)
        carry = max(0.0, limit - record["seconds"])
        print(f"[gpu_check] {name}: {record['status']} in {record['seconds']:.1f} s"
              + (f" ({record['error']})" if record.get("error") else ""), flush=True)
        save(results)
    return results


# ===================================================================== timing helpers
def make_sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def time_call(fn: Callable[[], object], sync: Callable[[], None], repeats: int, max_s: float) -> float:
    """Median seconds of ``fn()`` (synchronised) after one warm-up call; fewer repeats when one call is slow."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(1, min(repeats, int(max_s / max(first, 1e-9))))):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def break_even(batches: list[int], t_a: list[float], t_b: list[float]) -> float | None:
    """Batch size where method A (``t_a`` seconds per call) starts to beat method B, from straight-line fits
    ``t = fixed + per_instance * B`` of both; ``None`` when A never wins, 0 when it always does."""
    if len(batches) < 2:
        return None
    fa, fb = np.polyfit(batches, t_a, 1), np.polyfit(batches, t_b, 1)  # [slope, intercept]
    ds, di = fa[0] - fb[0], fa[1] - fb[1]
    if ds >= 0:  # A is no cheaper per instance: wins only if cheaper at B = 0
        return 0.0 if di < 0 and ds == 0 else None
    return max(0.0, float(-di / ds))


def first_win(batches: list[int], t_a: list[float], t_b: list[float]) -> int | None:
    """Smallest measured batch size where A was faster than B."""
    return next((b for b, a, o in zip(batches, t_a, t_b, strict=True) if a < o), None)


# ===================================================================== sections
def section_gpu_tests(cfg: argparse.Namespace, record: dict) -> None:
    xml = cfg.run_dir / "gpu_tests.xml"
    log = cfg.run_dir / "gpu_tests.log"
    per_test = max(10, int(min(120.0, record["limit_s"] / 2)))  # pytest-timeout: one hung test cannot eat it all
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rfE", "-p", "no:cacheprovider", "-o",
           f"timeout={per_test}", f"--junitxml={xml}", *cfg.gpu_test_paths]
    res = record["result"]
    res["command"] = " ".join(cmd[1:])
    try:
        with open(log, "w") as fh:  # streamed: a run stopped by the budget still leaves its log
            proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True,
                                  timeout=max(5.0, record["limit_s"] - 3.0))
    finally:
        res["log_tail"] = log.read_text()[-2000:] if log.exists() else ""
    res["exit_code"] = proc.returncode
    lines = [line for line in res["log_tail"].strip().splitlines() if line.strip()]
    res["summary"] = lines[-1] if lines else ""
    if xml.exists():
        root = ET.parse(xml).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        for key in ("tests", "failures", "errors", "skipped"):
            res[key] = int(suite.get(key, 0))
        res["passed"] = res["tests"] - res["failures"] - res["errors"] - res["skipped"]
        res["failed"] = [
            {"test": f"{case.get('classname')}::{case.get('name')}",
             "message": (bad.get("message") or "")[:500]}
            for case in suite.iter("testcase") for bad in list(case) if bad.tag in ("failure", "error")]
    if proc.returncode not in (0, 5):  # 5: no test collected
        raise RuntimeError(f"pytest -m gpu exited with {proc.returncode}: {res['summary']}")


class StepProfiler:
    """``step_context`` for ``train_step_bench``: profiles one step per mode (an untimed warm-up step).

    On CUDA the step runs under ``torch.profiler`` (CPU + CUDA activities); the device's busy time is the union
    of the kernel / memcpy / memset intervals of the exported trace, and ``GPU idle % = 1 - busy / wall``.
    """

    def __init__(self, device: torch.device, step: int, trace_dir: Path | None):
        self.device, self.step, self.trace_dir = device, step, trace_dir
        self.records: dict[str, dict] = {}

    def __call__(self, mode: str, step: int):
        if step != self.step:
            return contextlib.nullcontext()
        return self._profile(mode)

    @contextlib.contextmanager
    def _profile(self, mode: str):
        if self.device.type != "cuda":
            t0 = time.perf_counter()
            yield
            self.records[mode] = {"wall_ms": 1e3 * (time.perf_counter() - t0), "gpu_idle_pct": None,
                                  "note": "no CUDA device: the profiler's GPU idle share needs one"}
            return
        from torch.profiler import ProfilerActivity, profile

        torch.cuda.synchronize(self.device)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            yield
            torch.cuda.synchronize(self.device)
            wall = time.perf_counter() - t0
        rec: dict = {"wall_ms": 1e3 * wall}
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "trace.json"
                prof.export_chrome_trace(str(path))
                busy_us, n = device_busy_us(json.loads(path.read_text()))
                if self.trace_dir is not None:
                    (self.trace_dir / f"trace_{mode.replace(' ', '_')}.json").write_text(path.read_text())
            rec.update(gpu_busy_ms=busy_us / 1e3, kernels=n, gpu_idle_pct=100.0 * max(0.0, 1 - busy_us / (wall * 1e6)))
        except Exception as exc:  # noqa: BLE001 -- the timing numbers stay valid without it
            rec["error"] = f"{type(exc).__name__}: {exc}"
        self.records[mode] = rec


def device_busy_us(trace: dict) -> tuple[float, int]:
    """Union length (us) of the device intervals (kernels, copies, sets) of a chrome trace, and their count."""
    events = trace.get("traceEvents", trace) if isinstance(trace, dict) else trace
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in events
                   if e.get("ph") == "X" and str(e.get("cat", "")).lower() in ("kernel", "gpu_memcpy", "gpu_memset"))
    busy, end = 0.0, -math.inf
    for a, b in spans:
        if b <= end:
            continue
        busy += b - max(a, end)
        end = b
    return busy, len(spans)


def section_train_step(cfg: argparse.Namespace, record: dict) -> None:
    from bench_executors import train_step_bench

    rows = record["result"].setdefault("rows", [])
    headers = record["result"].setdefault("headers", {})
    for batch, micro in cfg.train_batches:
        prof = StepProfiler(cfg.device, cfg.train_warmup - 1, cfg.run_dir if cfg.keep_traces else None)
        header, bench_rows = train_step_bench(str(cfg.device), cfg.workers, batch, micro, cfg.samples, 12,
                                              cfg.train_steps, cfg.train_warmup, modes=("processes", "overlap"),
                                              step_context=prof)
        headers[str(batch)] = header
        for r in bench_rows:
            key = "overlap" if "overlap" in r["mode"] else "sync"
            p = prof.records.get(r["mode"], {})
            rows.append({"batch": batch, "micro": micro, "mode": key, "s_per_step": r["step_ms"] / 1e3,
                         "wait_pct": r["idle_pct"], "gpu_idle_pct": p.get("gpu_idle_pct"),
                         "profiled_step_ms": p.get("wall_ms"), "profiler_error": p.get("error")})
        sync_t = next(r["s_per_step"] for r in rows if r["batch"] == batch and r["mode"] == "sync")
        for r in rows:
            if r["batch"] == batch:
                r["speedup_vs_sync"] = sync_t / r["s_per_step"]


def section_grid(cfg: argparse.Namespace, record: dict) -> None:
    from discreteopt.executors import Threads
    from discreteopt.solvers import GridShortestPath

    dev, sync = cfg.device, make_sync(cfg.device)
    rows = record["result"].setdefault("rows", [])
    numba_solver, torch_solver = GridShortestPath(backend="numba"), GridShortestPath(backend="torch")
    pool = cfg.pool()
    threads = Threads(cfg.workers)
    try:
        for k in cfg.grid_sizes:
            for b in cfg.grid_batches:
                g = torch.Generator().manual_seed(k * 100003 + b)
                costs = (torch.rand(b, k, k, generator=g) * 8.4 + 0.8).to(dev)  # float32, on the device
                methods = {f"torch on {dev.type}": lambda c=costs: torch_solver.solve(c),
                           f"numba Processes({cfg.workers})": lambda c=costs: pool.solve(numba_solver, c),
                           f"numba Threads({cfg.workers})": lambda c=costs: threads.solve(numba_solver, c)}
                head = costs[:64]
                ref = (head * numba_solver.solve(head.cpu()).to(dev)).sum((1, 2))
                same = bool(torch.allclose((head * torch_solver.solve(head)).sum((1, 2)), ref, rtol=1e-5))
                for name, fn in methods.items():
                    t = time_call(fn, sync, cfg.repeats, cfg.cell_s)
                    rows.append({"k": k, "batch": b, "method": name, "s_per_call": t, "us_per_instance": 1e6 * t / b,
                                 "instances_per_s": b / t, "torch_matches_numba": same})
            out = record["result"].setdefault("break_even", {})  # per size, so a stopped section keeps them
            for against in (f"numba Processes({cfg.workers})", f"numba Threads({cfg.workers})"):
                for key, v in _break_evens(rows, "k", f"torch on {dev.type}", against).items():
                    out[f"{key}x{key} vs {against}"] = v
    finally:
        threads.close()


def _break_evens(rows: list[dict], group: str, a: str, b: str) -> dict:
    out = {}
    for key in sorted({r[group] for r in rows}):
        ra = {r["batch"]: r["s_per_call"] for r in rows if r[group] == key and r["method"] == a}
        rb = {r["batch"]: r["s_per_call"] for r in rows if r[group] == key and r["method"] == b}
        bs = sorted(set(ra) & set(rb))
        if bs:
            ta, tb = [ra[x] for x in bs], [rb[x] for x in bs]
            out[str(key)] = {"method": a, "against": b, "fit_batch": break_even(bs, ta, tb),
                             "first_measured_win": first_win(bs, ta, tb)}
    return out


def section_topk(cfg: argparse.Namespace, record: dict) -> None:
    from discreteopt.solvers import TopK

    dev = cfg.device
    rows = record["result"].setdefault("rows", [])
    solver = TopK(10)
    for b in cfg.topk_batches:
        theta = torch.randn(b, 100, generator=torch.Generator().manual_seed(b))
        places = [dev] + ([torch.device("cpu")] if dev.type != "cpu" and b <= cfg.topk_cpu_max else [])
        for where in places:
            x = theta.to(where)
            t = time_call(lambda s=solver, x=x: s.solve(x), make_sync(where), cfg.repeats, cfg.cell_s)
            rows.append({"batch": b, "n": 100, "k": 10, "device": where.type, "s_per_call": t,
                         "us_per_instance": 1e6 * t / b, "instances_per_s": b / t})


def section_pdhg(cfg: argparse.Namespace, record: dict) -> None:
    from bench_solvers import lp_problems

    from discreteopt.solvers import ILP
    from discreteopt.solvers.pdhg import PDHG

    dev, sync = cfg.device, make_sync(cfg.device)
    rows = record["result"].setdefault("rows", [])
    pool = cfg.pool()
    variants = {f"PDHG {dev.type} float64": PDHG(dtype=torch.float64)}
    if dev.type == "cuda":
        variants = {f"PDHG {dev.type} float32": PDHG(dtype=torch.float32), **variants,
                    f"PDHG {dev.type} float32 graphs": PDHG(dtype=torch.float32, cuda_graphs=True)}
    for name, args, make_costs in lp_problems():
        glop = ILP(**args, sense="min", backend="glop")
        pdhg = {label: ILP(**args, sense="min", backend=opts) for label, opts in variants.items()}
        for b in cfg.lp_batches:
            costs = make_costs(b, 7 + b)
            ref = glop.solve(costs) if b <= 256 else pool.solve(glop, costs)
            ref_obj = (costs * ref).sum(1)
            t = time_call(lambda g=glop, c=costs: pool.solve(g, c), lambda: None, cfg.repeats, cfg.cell_s)
            rows.append({"problem": name, "batch": b, "method": f"GLOP Processes({cfg.workers})",
                         "s_per_call": t, "us_per_instance": 1e6 * t / b, "max_rel_obj_err": 0.0})
            if b == 1:
                t = time_call(lambda g=glop, c=costs: g.solve(c), lambda: None, cfg.repeats, cfg.cell_s)
                rows.append({"problem": name, "batch": b, "method": "GLOP inline", "s_per_call": t,
                             "us_per_instance": 1e6 * t / b, "max_rel_obj_err": 0.0})
            for label, solver in pdhg.items():
                x_dev = costs.to(dev, solver.pdhg.dtype)  # as a network would hand them over
                t = time_call(lambda s=solver, c=x_dev: s.solve(c), sync, cfg.repeats, cfg.cell_s)
                x = solver.solve(x_dev).double().cpu()
                err = float((((costs * x).sum(1) - ref_obj).abs() / (1 + ref_obj.abs())).max())
                rows.append({"problem": name, "batch": b, "method": label, "s_per_call": t,
                             "us_per_instance": 1e6 * t / b, "max_rel_obj_err": err})
        out = record["result"].setdefault("break_even", {})  # per problem, so a stopped section keeps them
        sub = [dict(r, key=name) for r in rows if r["problem"] == name]
        for label in variants:
            out[f"{name} / {label}"] = _break_evens(sub, "key", label, f"GLOP Processes({cfg.workers})").get(name)


class SharedPool:
    """One ``Processes(workers)`` pool for the sections that need one, started on first use."""

    def __init__(self, workers: int):
        self.workers, self.pool = workers, None

    def get(self):
        from discreteopt.executors import Processes

        if self.pool is None:
            self.pool = Processes(self.workers).start()
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.close()


#: each section's share of the budget (unused time passes on to the next sections)
SHARES = {"gpu_tests": 0.22, "train_step": 0.36, "grid": 0.18, "topk": 0.03, "pdhg": 0.2}
SECTIONS = [("gpu_tests", section_gpu_tests), ("train_step", section_train_step), ("grid", section_grid),
            ("topk", section_topk), ("pdhg", section_pdhg)]


# ===================================================================== report
def markdown(results: dict) -> str:
    meta = results["meta"]
    out = [f"# GPU check {meta['timestamp']}", "",
           f"device **{meta['device_name']}**, {meta['cpus']} CPUs, {meta['workers']} workers, torch "
           f"{meta['torch']}, commit {meta['commit']}, budget {meta['budget_s']} s"
           + (" (quick)" if meta["quick"] else ""), "",
           "| section | status | seconds | note |", "|---|---|---|---|"]
    for name, rec in results["sections"].items():
        out.append(f"| {name} | {rec['status']} | {rec.get('seconds', '')} | {rec.get('error', '')[:120]} |")
    s = results["sections"]
    t = s.get("gpu_tests", {}).get("result", {})
    if "tests" in t:
        out += ["", f"gpu tests: {t['passed']} passed, {t['failures']} failed, {t['errors']} errors, "
                f"{t['skipped']} skipped"] + [f"- FAILED {f['test']}: {f['message'][:200]}" for f in t["failed"]]
    out += _table("Training step (network on the device, solver on CPU workers)",
                  s.get("train_step", {}).get("result", {}).get("rows", []),
                  [("batch", "B", "d"), ("micro", "micro", "d"), ("mode", "mode", ""), ("s_per_step", "s/step", ".4f"),
                   ("wait_pct", "wait %", ".1f"), ("gpu_idle_pct", "GPU idle %", ".1f"),
                   ("speedup_vs_sync", "vs sync", ".2f")])
    out += _table("Grid shortest path", s.get("grid", {}).get("result", {}).get("rows", []),
                  [("k", "k", "d"), ("batch", "B", "d"), ("method", "method", ""), ("s_per_call", "s/call", ".4f"),
                   ("us_per_instance", "us/inst", ".2f"), ("torch_matches_numba", "same", "")])
    out += _break_even_lines(s.get("grid", {}).get("result", {}).get("break_even", {}))
    out += _table("Top-k (n=100, k=10)", s.get("topk", {}).get("result", {}).get("rows", []),
                  [("batch", "B", "d"), ("device", "device", ""), ("s_per_call", "s/call", ".5f"),
                   ("us_per_instance", "us/inst", ".4f")])
    out += _table("LP: PDHG vs GLOP", s.get("pdhg", {}).get("result", {}).get("rows", []),
                  [("problem", "problem", ""), ("batch", "B", "d"), ("method", "method", ""),
                   ("s_per_call", "s/call", ".4f"), ("us_per_instance", "us/inst", ".1f"),
                   ("max_rel_obj_err", "max rel obj err", ".1e")])
    out += _break_even_lines(s.get("pdhg", {}).get("result", {}).get("break_even", {}))
    return "\n".join(out) + "\n"


def _table(title: str, rows: list[dict], cols: list[tuple[str, str, str]]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"## {title}", "", "| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            cells.append("-" if v is None else format(v, fmt) if fmt else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _break_even_lines(be: dict) -> list[str]:
    lines = []
    for key, v in be.items():
        if v:
            fit = "never (per-instance cost not lower)" if v["fit_batch"] is None else f"B ~ {v['fit_batch']:.0f}"
            lines.append(f"- break-even {key}: {v['method']} beats {v['against']} from {fit} (straight-line fit); "
                         f"first measured win at B = {v['first_measured_win']}")
    return [""] + lines if lines else []


# ===================================================================== main
def configure(args: argparse.Namespace) -> argparse.Namespace:
    cfg = argparse.Namespace(**vars(args))
    cfg.device = torch.device(args.device)
    cpus = os.cpu_count() or 1
    if args.quick:
        cfg.workers = args.workers or min(2, cpus)
        cfg.gpu_test_paths = ["tests/solvers/test_sv_pdhg.py"]
        cfg.train_batches, cfg.samples, cfg.train_steps, cfg.train_warmup = [(4, 2)], 2, 1, 1
        cfg.grid_sizes, cfg.grid_batches = [12], [16, 64]
        cfg.topk_batches, cfg.topk_cpu_max = [4096], 4096
        cfg.lp_batches = [1, 8, 32]
        cfg.repeats, cfg.cell_s = 1, 0.2
    else:
        cfg.workers = args.workers or min(15, max(1, cpus - 1))
        cfg.gpu_test_paths = ["tests"]
        cfg.train_batches, cfg.samples, cfg.train_steps, cfg.train_warmup = [(70, 5), (256, 4)], 10, 10, 3
        cfg.grid_sizes, cfg.grid_batches = [12, 30], [256, 4096, 65536]
        cfg.topk_batches, cfg.topk_cpu_max = [4096, 65536, 1048576], 65536
        cfg.lp_batches = [1, 256, 4096]
        cfg.repeats, cfg.cell_s = 5, 3.0
    if args.sections:
        wanted = args.sections.split(",")
        unknown = sorted(set(wanted) - {n for n, _ in SECTIONS})
        if unknown:
            raise SystemExit(f"--sections: unknown section(s) {unknown}; known: {[n for n, _ in SECTIONS]}")
        cfg.section_names = wanted
    else:
        cfg.section_names = [n for n, _ in SECTIONS]
    return cfg


def meta_info(cfg: argparse.Namespace) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        commit = "unknown"
    cuda = cfg.device.type == "cuda"
    return {"timestamp": cfg.timestamp, "argv": sys.argv[1:], "device": str(cfg.device),
            "device_name": torch.cuda.get_device_name(cfg.device) if cuda else platform.processor() or "cpu",
            "cpus": os.cpu_count(), "workers": cfg.workers, "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": sys.version.split()[0], "commit": commit,
            "budget_s": cfg.budget, "quick": cfg.quick, "load_average": os.getloadavg()[0],
            "sections": cfg.section_names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --quick: the CPU smoke run)")
    ap.add_argument("--quick", action="store_true", help="reduced sizes and worker counts (well under a minute)")
    ap.add_argument("--workers", type=int, default=0, help="CPU workers (default min(15, cpus - 1); quick: 2)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all sections (default 420; quick 55)")
    ap.add_argument("--out", default="runs/gpu_check", help="parent folder of the timestamped result folder")
    ap.add_argument("--sections", default="", help="comma-separated subset of the sections (default: all)")
    ap.add_argument("--keep-traces", action="store_true", help="keep the profiler traces of the training step")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run `python benchmarks/gpu_check.py --device cpu --quick` for the "
              "CPU smoke run", file=sys.stderr)
        return 2
    args.budget = args.budget if args.budget is not None else (55.0 if args.quick else 420.0)
    cfg = configure(args)
    cfg.timestamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    cfg.run_dir = (ROOT / args.out / cfg.timestamp) if not Path(args.out).is_absolute() else Path(args.out) / cfg.timestamp
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    # the workers need the other cores; on the CPU device the kernels here are small (threads only contend)
    torch.set_num_threads(1 if cfg.device.type == "cpu" else max(1, min(torch.get_num_threads(), 4)))
    results = {"meta": meta_info(cfg)}

    def save(res: dict) -> None:
        (cfg.run_dir / "results.json").write_text(json.dumps(res, indent=1, default=str))

    shared = SharedPool(cfg.workers)
    cfg.pool = shared.get

    def section(fn):
        def run(rec: dict) -> None:
            try:
                fn(cfg, rec)
            except BaseException:
                shared.close()  # a section that failed may leave the pool busy or broken: the next one starts anew
                raise
        return run

    chosen = [(name, section(fn), SHARES[name] * cfg.budget) for name, fn in SECTIONS if name in cfg.section_names]
    print(f"[gpu_check] writing to {cfg.run_dir} (budget {cfg.budget:.0f} s, {cfg.workers} workers)", flush=True)
    try:
        run_sections(chosen, cfg.budget, results, save)
    finally:
        shared.close()
    results["meta"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    save(results)
    md = markdown(results)
    (cfg.run_dir / "summary.md").write_text(md)
    print(md)
    print(f"[gpu_check] results: {cfg.run_dir / 'results.json'}")
    return 0 if all(r["status"] == "ok" for r in results["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
