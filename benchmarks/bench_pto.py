"""Predict-then-optimise benchmark: PyEPO's shortest path and knapsack, linear model, normalised test regret per
method -- side by side with PyEPO itself when the optional ``pyepo`` package is installed (``pip install
'discreteopt[bench]'``).

Data: :func:`discreteopt.data.generate_shortest_path` and :func:`discreteopt.data.generate_knapsack` (the same draws
as PyEPO's ``genData`` for a seed); 5 features, degree 1/2/4/6 of misspecification, noise half-width 0.5, 3 seeds
(data and torch seed 135 + s). Methods: every entry of :data:`discreteopt.apps.pto.METHOD_TABLE` (2s, spo+,
dbb, nid, dpo, pfyl, imle, aimle, nce, cmap, ltr-point/pair/list, pg); with PyEPO installed, each method PyEPO
also has is trained again with PyEPO's implementation from the same initial weights, batch order, optimiser and
hyper-parameters (PyEPO's OR-Tools models: GLOP for the shortest path, SCIP for the knapsack), and both are scored
by the same exact evaluation (:func:`discreteopt.evaluation.evaluate_regret`). Torch runs on one thread for both.

Printed (and written as ``bench_pto.md`` next to the JSON and the PNG): the normalised-regret table of this library,
and the side-by-side table (regret mean ± sd over seeds for both libraries, whether they agree within seed noise
-- two standard errors of the difference --, seconds per training epoch and the speed-up). Targets: regret within
seed noise of PyEPO's for every shared method, at least 5x faster per epoch. Last, the Sum-of-Gamma noise sampler
against the previous one (``n_iter`` Gamma draws per entry) on ``[256, 10, 144]``.

Run: ``python benchmarks/bench_pto.py [--quick] [--no-pyepo] [--epochs 10] [--out runs/bench]`` (plus every option
of ``discreteopt bench``). ``--quick``: all four degrees, both problems, 3 seeds, 64 training instances, 2 epochs
(measured: 28 min for two of the degrees with PyEPO on a loaded shared 2-core machine, most of it the knapsack's
perturbed methods, which solve 10 knapsacks per instance). The full run (1000 instances, 10 epochs) takes many hours
with PyEPO; rows are appended to ``bench_pto_rows.jsonl`` as runs finish.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from pathlib import Path

import torch

from discreteopt.apps import pto
from discreteopt.cli import add_config_arguments, config_from_args

#: the benchmark's defaults (the CLI's ``discreteopt bench`` keeps PtOConfig's) and its quick preset
BENCH_DEFAULTS = {"problems": ("shortest_path", "knapsack"), "noises": (0.5,), "seeds": (0, 1, 2)}
BENCH_PRESETS = {
    "quick": {**BENCH_DEFAULTS, "degrees": (1, 2, 4, 6), "n_train": 64, "n_test": 200, "epochs": 2},
    "full": {**BENCH_DEFAULTS, "degrees": (1, 2, 4, 6)},
}


def reference_sum_of_gamma(shape, k: int, n_iter: int, generator: torch.Generator) -> torch.Tensor:
    """The previous Sum-of-Gamma sampler: ``n_iter`` Gamma(1/k) draws per entry, one call per term."""
    total = torch.zeros(shape)
    conc = torch.full(shape, 1.0 / k)
    for i in range(1, n_iter + 1):
        total += torch._standard_gamma(conc, generator=generator) * (k / i)
    return (total - math.log(n_iter)) / k


def sog_speedup(shape=(256, 10, 144), k: int = 10, n_iter: int = 10, repeats: int = 7) -> dict[str, float]:
    """Best-of-``repeats`` seconds of the previous and the current Sum-of-Gamma sampler, and their ratio."""
    from discreteopt.noise import SumOfGamma

    gen = torch.Generator().manual_seed(0)
    noise = SumOfGamma(k, n_iter)
    noise.sample((2,), gen)  # builds the mixture table once

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    old = best(lambda: reference_sum_of_gamma(shape, k, n_iter, gen))
    new = best(lambda: noise.sample(shape, gen))
    return {"old_s": old, "new_s": new, "speedup": old / new}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(BENCH_PRESETS), default=None)
    parser.add_argument("--quick", dest="preset", action="store_const", const="quick",
                        help="all degrees, both problems, 3 seeds, 64 training instances, 2 epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both libraries (default: 1)")
    add_config_arguments(parser, pto.PtOConfig)
    args = parser.parse_args(argv)
    presets = {name: dict(values) for name, values in BENCH_PRESETS.items()}
    cfg = config_from_args(pto.PtOConfig, args, presets)
    if args.preset is None:  # the benchmark's own defaults where no option was given
        for key, value in BENCH_DEFAULTS.items():
            if key not in vars(args):
                setattr(cfg, key, value)
    if "pyepo" not in vars(args):
        cfg.pyepo = importlib.util.find_spec("pyepo") is not None
    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    result = pto.run_benchmark(cfg)
    wall = time.perf_counter() - t0
    header = (f"PyEPO problems {', '.join(cfg.problems)}, linear model: n_train={cfg.n_train}, n_test={cfg.n_test}, "
              f"epochs={cfg.epochs}, batch={cfg.batch_size}, lr={cfg.lr}, lam={cfg.lam}, sigma={cfg.sigma}, "
              f"samples={cfg.samples}, seeds={list(cfg.seeds)}, torch threads={torch.get_num_threads()}")
    parts = [header, "", "Normalised test regret of discreteopt (mean over seeds; lower is better)", "",
             pto.results_table(result)]
    comp = pto.comparison_rows(result["rows"])
    if cfg.pyepo:
        parts += ["", "Side by side with PyEPO (regret mean ± sd over seeds; seconds per training epoch)", "",
                  pto.comparison_table(result["rows"])]
        if comp:
            agree = sum(c["within_noise"] for c in comp)
            fast = sum(c["speedup"] >= 5 for c in comp)
            speed = sorted(c["speedup"] for c in comp)
            parts += ["", f"Regret within seed noise of PyEPO's: {agree}/{len(comp)} settings x methods; "
                          f"at least 5x faster per epoch: {fast}/{len(comp)} (speed-up median "
                          f"{speed[len(speed) // 2]:.1f}x, min {speed[0]:.1f}x, max {speed[-1]:.1f}x)"]
    else:
        parts += ["", "(PyEPO not installed or --no-pyepo: no side-by-side table)"]
    sog = sog_speedup()
    parts += ["", f"Sum-of-Gamma noise [256, 10, 144], k=10, n_iter=10: previous sampler {sog['old_s'] * 1e3:.1f} ms, "
                  f"current {sog['new_s'] * 1e3:.1f} ms: {sog['speedup']:.1f}x faster"]
    text = "\n".join(parts)
    print(text)
    print(f"\nwall time {wall:.1f} s; files: {result.get('files', {})}")
    result["sog"] = sog
    if cfg.out:
        md = Path(cfg.out) / "bench_pto.md"
        md.write_text(text + "\n")
        result.setdefault("files", {})["markdown"] = str(md)
    return result


if __name__ == "__main__":
    main()
