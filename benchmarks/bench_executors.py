"""Executor throughput: solver calls inline vs on worker pools, with speedups and overheads from one run.

Sections (default: 0, 1 and 2; ``--first-call``: 0 only; ``--train-step``: 3 only):

0. **First-call latency** of a fresh ``Processes(2)``: construction + first ``solve`` of 64 12x12 grids, in a new
   interpreter, with the numba kernels cached on disk (now) and with an empty cache folder (``NUMBA_CACHE_DIR``:
   every worker compiles them, as before the cache); the split row calls ``start()`` first to separate worker
   start-up (spawn, import torch) from the first solve (solver built, kernels loaded). Applications warm a pool
   before timing anything (``discreteopt route`` reports it as ``pool_start``).
1. **Throughput vs workers.** For each worker count ``w`` a fresh ``Processes(w)`` pool (started and warmed up
   before timing) solves one batch of

   * an *expensive* solver: a 0/1 knapsack ILP (20 variables, one constraint) solved by SCIP, ~1 ms/instance;
   * a *cheap* solver: 12x12 grid shortest path (numba Dijkstra, ~10-30 us/instance).

   Inline and pool calls alternate in each timing round (robust to load that changes during the run).
   ``speedup = t_inline / t_pool``; target for the expensive solver: ``speedup >= 0.8 w``.
   ``overhead/call = t_pool - t_inline / w``: what the pool adds to an ideal ``w``-way split (pickling,
   pipes, waking workers, assembling the result); ``round trip`` is one call of one instance per worker.
   ``Threads(w)`` is shown for the largest ``w`` (OR-Tools and numba release the GIL).
2. **Auto vs inline** for the cheap solver at several batch sizes: ``Auto(Processes(w_max))`` is calibrated
   once (table printed, time reported), then each batch size is timed inline and through ``Auto`` (best of
   alternating rounds). Target: ``auto / inline <= 1.05`` at every size. Auto's own routing cost per call
   is printed too.
3. **Training step** (``--train-step``): ``CombResNet`` on ``--device`` (CUDA if available) -> costs
   ``[B, k, k]`` -> ``DiscreteLayer(GridShortestPath(), IMLE(samples=S))`` with the solver on ``--workers``
   CPU processes; a step is ``--micro`` micro-batches with gradient accumulation. Modes: inline, pool, auto,
   and pool with overlap (``forward_async``: the network forward of micro-batch ``j+1`` runs while the
   workers solve micro-batch ``j``). *GPU idle* = time the training thread waits on solver results
   (after a device synchronize, so nothing else is queued on the GPU).

Run::

    python benchmarks/bench_executors.py                       # sections 1-2, workers 1, 2, 4, ... cpu_count
    python benchmarks/bench_executors.py --workers 1,2 --quick
    python benchmarks/bench_executors.py --first-call                # section 0 only (about a minute)
    python benchmarks/bench_executors.py --train-step --device cuda --workers 15
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
from _timing import time_rounds as _time_rounds

from discreteopt.executors import Auto, Executor, Inline, Processes, Threads
from discreteopt.solvers import ILP, GridShortestPath


# ===================================================================== timing helpers
def time_rounds(fns: dict, repeats: int, min_time: float, stat=statistics.median) -> dict:
    """:func:`_timing.time_rounds` without the warm-up call (the callers warm up themselves)."""
    return _time_rounds(fns, repeats, min_time, stat, warmup=False)


def expensive_problem(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, 30, size=(1, 20)).astype(float)
    solver = ILP(A_ub=weights, b_ub=np.floor(weights.sum(1) / 3), backend="scip")
    theta = torch.from_numpy(rng.uniform(0.0, 1.0, size=(batch, 20)))
    return "ILP knapsack n=20 (SCIP)", solver, theta


def cheap_problem(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return "grid 12x12 shortest path", GridShortestPath(), torch.rand(batch, 12, 12, generator=g) * 9 + 0.8


def fmt_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    """``cols``: (key, header, format)."""
    widths = [max(len(h), *(len(format(r[k], f)) if r.get(k) is not None else 1 for r in rows)) for k, h, f in cols]
    lines = ["  ".join(h.rjust(w) for (_, h, _), w in zip(cols, widths, strict=True))]
    for r in rows:
        lines.append("  ".join((format(r[k], f) if r.get(k) is not None else "-").rjust(w)
                               for (k, _, f), w in zip(cols, widths, strict=True)))
    return "\n".join(lines)


# ===================================================================== section 1
def throughput(workers: list[int], repeats: int, min_time: float, exp_batch: int, cheap_batch: int) -> list[dict]:
    problems = [expensive_problem(exp_batch), cheap_problem(cheap_batch)]
    rows = []
    for w in workers:
        pool = Processes(w).start()
        try:
            for label, solver, theta in problems:
                expected = solver.solve(theta)
                assert torch.equal(pool.solve(solver, theta), expected), "pool result differs from inline"
                one_each = theta[:w]
                t = time_rounds({"inline": lambda s=solver, x=theta: s.solve(x),
                                 "pool": lambda s=solver, x=theta, p=pool: p.solve(s, x),
                                 "rt": lambda s=solver, x=one_each, p=pool: p.solve(s, x)}, repeats, min_time)
                rows.append(_row(label, "processes", w, theta.shape[0], t["inline"], t["pool"], t["rt"]))
        finally:
            pool.close()
    w = max(workers)
    with Threads(w) as threads:
        for label, solver, theta in problems:
            threads.solve(solver, theta)
            t = time_rounds({"inline": lambda s=solver, x=theta: s.solve(x),
                             "pool": lambda s=solver, x=theta: threads.solve(s, x),
                             "rt": lambda s=solver, x=theta[:w]: threads.solve(s, x)}, repeats, min_time)
            rows.append(_row(label, "threads", w, theta.shape[0], t["inline"], t["pool"], t["rt"]))
    return rows


def _row(label: str, kind: str, w: int, batch: int, t_in: float, t_pool: float, t_rt: float) -> dict:
    speedup = t_in / t_pool
    return {"solver": label, "executor": kind, "workers": w, "batch": batch, "inline_ms": t_in * 1e3,
            "pool_ms": t_pool * 1e3, "speedup": speedup, "target": 0.8 * w if "ILP" in label else None,
            "inst_per_s": batch / t_pool, "overhead_ms": (t_pool - t_in / w) * 1e3, "roundtrip_ms": t_rt * 1e3,
            "ok": (speedup >= 0.8 * w) if "ILP" in label else None}


THROUGHPUT_COLS = [("solver", "solver", ""), ("executor", "executor", ""), ("workers", "w", "d"),
                   ("batch", "B", "d"), ("inline_ms", "inline ms", ".2f"), ("pool_ms", "pool ms", ".2f"),
                   ("speedup", "speedup", ".2f"), ("target", ">= 0.8w", ".1f"), ("inst_per_s", "inst/s", ".0f"),
                   ("overhead_ms", "overhead/call ms", ".3f"), ("roundtrip_ms", "round trip ms", ".3f")]


# ===================================================================== section 2
def auto_vs_inline(w: int, sizes: list[int], repeats: int, min_time: float) -> tuple[str, list[dict]]:
    _, solver, theta = cheap_problem(max(sizes))
    auto = Auto(Processes(w))
    try:
        auto.pool.start()
        t0 = time.perf_counter()
        cal = auto.calibrate(solver, theta[:64])
        header = (f"calibration: {time.perf_counter() - t0:.2f} s (pool start-up excluded)\n{cal.table()}")
        x1 = theta[:1]
        route = time_rounds({"route": lambda: auto._route(solver, x1)}, 3, 0.05, min)["route"]
        header += f"\nAuto's routing cost: {route * 1e6:.2f} us per call"
        rows = []
        for b in sizes:
            x = theta[:b]
            assert torch.equal(auto.solve(solver, x), solver.solve(x))
            # best of 3x more, shorter rounds: both sides run the same kernel when Auto picks inline, so the
            # minimum (least disturbed by other load) compares their intrinsic cost
            t = time_rounds({"inline": lambda x=x: solver.solve(x), "auto": lambda x=x: auto.solve(solver, x)},
                            3 * repeats, min_time, min)
            ratio = t["auto"] / t["inline"]
            rows.append({"batch": b, "choice": "pool" if b >= cal.break_even else "inline",
                         "inline_ms": t["inline"] * 1e3, "auto_ms": t["auto"] * 1e3, "ratio": ratio,
                         "ok": ratio <= 1.05})
        return header, rows
    finally:
        auto.close()


AUTO_COLS = [("batch", "B", "d"), ("choice", "auto runs", ""), ("inline_ms", "inline ms", ".3f"),
             ("auto_ms", "auto ms", ".3f"), ("ratio", "auto/inline", ".3f"), ("ok", "<= 1.05", "")]


# ===================================================================== section 3
class TimedExecutor(Executor):
    """Wraps an executor and adds up the seconds the caller spends inside ``solve`` and ``submit``."""

    def __init__(self, inner: Executor):
        self.inner, self.seconds = inner, 0.0

    @property
    def n_workers(self) -> int:
        return self.inner.n_workers

    def map(self, spec, chunks):
        return self.inner.map(spec, chunks)

    def submit(self, solver, theta, **kw):
        t0 = time.perf_counter()
        try:
            return self.inner.submit(solver, theta, **kw)
        finally:
            self.seconds += time.perf_counter() - t0

    def solve(self, solver, theta, **kw):
        t0 = time.perf_counter()
        try:
            return self.inner.solve(solver, theta, **kw)
        finally:
            self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        self.inner.close()


def train_step_bench(device: str, workers: int, batch: int, micro: int, samples: int, grid: int, steps: int,
                     warmup: int, modes: tuple[str, ...] = ("inline", "processes", "auto", "overlap"),
                     step_context=None) -> tuple[str, list[dict]]:
    """Section 3. ``modes``: any of inline, processes, auto, overlap (speedups are against the first one).

    ``step_context(mode, step)``, when given, returns a context manager entered around every step (warm-up steps
    included, e.g. to profile one untimed step); ``benchmarks/gpu_check.py`` uses it.
    """
    from discreteopt.estimators import IMLE
    from discreteopt.layers import DiscreteLayer
    from discreteopt.models import CombResNet

    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    net = CombResNet(grid_size=grid).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    mb = batch // micro
    images = torch.rand(micro, mb, 3, 8 * grid, 8 * grid, device=dev)  # [M, b, 3, 8k, 8k]
    true_paths = GridShortestPath().solve(torch.rand(micro * mb, grid, grid) + 0.5).reshape(micro, mb, grid, grid)
    true_paths = true_paths.to(dev)
    solver = GridShortestPath()
    pool = Processes(workers).start()
    auto = Auto(pool, budget=1.0)
    if "auto" in modes:
        auto.calibrate(solver, torch.rand(mb * samples, grid, grid) + 0.5)
    table = {"inline": ("inline", Inline(), False), "processes": (f"processes({workers})", pool, False),
             "auto": (f"auto({workers})", auto, False), "overlap": (f"processes({workers}) + overlap", pool, True)}
    rows = []
    try:
        for name, ex, overlap in (table[m] for m in modes):
            timed = TimedExecutor(ex)
            layer = DiscreteLayer(solver, IMLE(lam=20.0, samples=samples), executor=timed, seed=0)
            times, waits = [], []
            for step in range(warmup + steps):
                with step_context(name, step) if step_context is not None else contextlib.nullcontext():
                    sync()
                    timed.seconds, wait = 0.0, 0.0
                    t0 = time.perf_counter()
                    opt.zero_grad(set_to_none=True)
                    handle = None
                    for j in range(micro):
                        # the device finishes the network before each submit (sync), so the executor's time is the
                        # solver's alone; with overlap the forward of j+1 runs while the workers solve j
                        if handle is None:
                            costs = net(images[j])
                            sync()
                            handle = layer.forward_async(costs)
                        current, handle = handle, None
                        if overlap and j + 1 < micro:
                            costs = net(images[j + 1])
                            sync()
                            handle = layer.forward_async(costs)
                        tw = time.perf_counter()
                        y = current.result()  # [b, k, k]
                        wait += time.perf_counter() - tw
                        loss = (y - true_paths[j]).abs().mean() / micro
                        loss.backward()  # IMLE's backward solves through the executor (timed)
                    opt.step()
                    sync()
                    if step >= warmup:
                        times.append(time.perf_counter() - t0)
                        waits.append(wait + timed.seconds)
            t, w_ = statistics.median(times), statistics.median(waits)
            rows.append({"mode": name, "step_ms": t * 1e3, "idle_ms": w_ * 1e3, "idle_pct": 100 * w_ / t,
                         "steps_per_s": 1 / t})
    finally:
        auto.close()
    base = rows[0]["step_ms"]
    for r in rows:
        r["vs_inline"] = base / r["step_ms"]
    header = (f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), "
              f"{workers} workers, batch {batch} = {micro} x {mb}, IMLE samples {samples}, grid {grid}x{grid}, "
              f"{mb * samples} solves per micro-batch forward and as many in backward; median of {steps} steps"
              + (f"; auto break-even {auto.break_even(solver):g}" if "auto" in modes else ""))
    return header, rows


TRAIN_COLS = [("mode", "mode", ""), ("step_ms", "step ms", ".1f"), ("idle_ms", "GPU idle ms", ".1f"),
              ("idle_pct", "idle %", ".1f"), ("steps_per_s", "steps/s", ".2f"), ("vs_inline", "speedup", ".2f")]


# ===================================================================== section 0: first-call latency
_FIRST_CALL = """
import json, sys, time
t0 = time.perf_counter()
import torch
from discreteopt.executors import Processes
from discreteopt.solvers import GridShortestPath
t_import = time.perf_counter() - t0
theta = torch.rand(64, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
solver = GridShortestPath()
split = sys.argv[1] == "split"
t0 = time.perf_counter()
pool = Processes(2)                        # lazy: nothing starts yet
if split:
    pool.start()                           # spawn both workers, each imports torch and discreteopt
t1 = time.perf_counter()
y = pool.solve(solver, theta)              # each worker builds the solver and loads (or compiles) its kernel
t2 = time.perf_counter()
pool.solve(solver, theta)
t3 = time.perf_counter()
assert torch.equal(y, solver.solve(theta))
pool.close()
print(json.dumps({"import_s": t_import, "start_s": t1 - t0 if split else None,
                  "first_solve_s": t2 - t1 if split else None, "first_call_s": t2 - t0, "next_call_s": t3 - t2}))
"""


def first_call_latency(split: bool, numba_cache_dir: str | None) -> dict:
    """Seconds from ``Processes(2)`` (a fresh pool in a fresh interpreter) to the answer of its first
    ``solve`` on a batch of 64 12x12 grids (``first_call_s``), and the next call for comparison. ``split``:
    ``start()`` first, so ``start_s`` (workers up) and ``first_solve_s`` (solver built, kernel loaded) are apart.
    ``numba_cache_dir``: an empty folder makes every worker compile the kernels (the behaviour before they were
    cached on disk); ``None`` uses the cache next to the package (filled by a first run)."""
    import subprocess

    env = dict(os.environ)
    if numba_cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = numba_cache_dir
    proc = subprocess.run([sys.executable, "-c", _FIRST_CALL, "split" if split else "lazy"], capture_output=True,
                          text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"first-call measurement failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def first_call_rows(repeats: int = 1) -> list[dict]:
    """Section 0: first-call latency of ``Processes(2)`` with a warm on-disk kernel cache and with an empty one
    (compiling in every worker, as before the cache), each ``repeats`` times (lazy) plus once split."""
    import tempfile

    first_call_latency(False, None)  # fills the package's cache (if this interpreter has not compiled yet)
    rows = []
    for label, cold in (("kernel cache on disk (now)", False), ("empty kernel cache (compiles: before)", True)):
        for rep in range(repeats + 1):
            with tempfile.TemporaryDirectory() as tmp:
                r = first_call_latency(split=rep == repeats, numba_cache_dir=tmp if cold else None)
            rows.append({"cache": label, "mode": "start() then solve" if rep == repeats else "lazy (first solve)",
                         **r})
    return rows


FIRST_CALL_COLS = [("cache", "numba kernels", ""), ("mode", "first call", ""), ("first_call_s", "first call s", ".2f"),
                   ("start_s", "start() s", ".2f"), ("first_solve_s", "first solve s", ".2f"),
                   ("next_call_s", "next call s", ".4f")]


# ===================================================================== main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default=None,
                    help="comma-separated worker counts (default 1, 2, 4, ... and cpu_count); with --train-step "
                         "one number (default cpu_count - 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per measurement")
    ap.add_argument("--exp-batch", type=int, default=0, help="ILP batch (default 16 x max workers, >= 64)")
    ap.add_argument("--cheap-batch", type=int, default=2048)
    ap.add_argument("--auto-sizes", default="1,4,16,64,256,1024,4096")
    ap.add_argument("--quick", action="store_true", help="short run to check the script works")
    ap.add_argument("--train-step", action="store_true", help="run the GPU training-step benchmark only")
    ap.add_argument("--first-call", action="store_true",
                    help="run section 0 only: first-call latency of a fresh Processes(2) (also run before sections "
                         "1-2 by default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=64, help="training batch (--train-step)")
    ap.add_argument("--micro", type=int, default=4, help="micro-batches per step (--train-step)")
    ap.add_argument("--samples", type=int, default=10, help="IMLE samples (--train-step)")
    ap.add_argument("--grid", type=int, default=12, help="grid size k (--train-step)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per mode (--train-step)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    print(f"# {cpus} CPUs, torch {torch.__version__}, python {sys.version.split()[0]}; load average "
          f"{os.getloadavg()[0]:.1f} (a shared machine makes pool speedups lower and noisier)")
    out: dict = {}
    if args.first_call or not args.train_step:
        rows = first_call_rows()
        print("\n## First call of a fresh Processes(2): construction + first solve of 64 12x12 grids, each in a new "
              "interpreter (start() = workers up; first solve = solver built and kernels loaded in each worker)\n")
        print(fmt_table(rows, FIRST_CALL_COLS))
        out["first_call"] = rows
    if args.first_call:
        pass
    elif args.train_step:
        w = int(args.workers) if args.workers else max(1, cpus - 1)
        steps, warmup = (3, 1) if args.quick else (args.steps, 3)
        header, rows = train_step_bench(args.device, w, args.batch, args.micro, args.samples, args.grid, steps,
                                        warmup)
        print(f"\n## Training step: network on {args.device}, solver on CPU workers\n{header}\n")
        print(fmt_table(rows, TRAIN_COLS))
        out["train_step"] = rows
    else:
        if args.workers:
            workers = [int(x) for x in args.workers.split(",")]
        else:
            workers = sorted({2**i for i in range(cpus.bit_length()) if 2**i <= cpus} | {cpus})
        repeats, min_time = (2, 0.1) if args.quick else (args.repeats, args.min_time)
        exp_batch = args.exp_batch or max(64, 16 * max(workers))
        if args.quick:
            exp_batch = min(exp_batch, 32)
        rows = throughput(workers, repeats, min_time, exp_batch, 256 if args.quick else args.cheap_batch)
        print("\n## Throughput vs workers (Processes; Threads at the largest count)\n")
        print(fmt_table(rows, THROUGHPUT_COLS))
        for r in rows:
            if r["ok"] is False:
                print(f"  below target: {r['solver']} {r['executor']}({r['workers']}): speedup {r['speedup']:.2f} "
                      f"< {r['target']:.1f}")
        sizes = [int(x) for x in args.auto_sizes.split(",")]
        if args.quick:
            sizes = [s for s in sizes if s <= 256]
        header, arows = auto_vs_inline(max(workers), sizes, repeats, min_time)
        print(f"\n## Auto vs Inline, cheap solver (Auto(Processes({max(workers)})))\n{header}\n")
        print(fmt_table(arows, AUTO_COLS))
        out["throughput"], out["auto"] = rows, arows
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
