"""Predict-then-optimise benchmark: PyEPO's 5x5 shortest path, linear model, normalised test regret per method.

Data: :func:`discreteopt.data.generate_shortest_path` (Elmachtoub & Grigas' generator as in PyEPO: 5 features,
40 arcs, polynomial degree 1/2/4/6 of misspecification, multiplicative noise U(1-e, 1+e) with e = 0 / 0.5,
1000 training and 1000 test instances). Methods (PyEPO's names): two-stage least squares ``2s``, ``spo+``,
blackbox ``dbb``, perturbed optimizer ``dpo``, perturbed Fenchel-Young ``pfyl``, ``imle``
(see :mod:`discreteopt.apps.pto`).

Printed: the normalised-regret table, the regret of every method relative to two-stage least squares in the same
setting (< 1: better than 2s), and the training seconds per method. What PyEPO reports (Tang & Khalil 2022):
two-stage least squares is competitive at degree 1 (the linear model is well specified) and falls behind as the
degree grows, where SPO+ and PFYL have the lowest regret.

Run: ``python benchmarks/bench_pto.py [--quick] [--epochs 10] [--out runs/bench]`` (the options of
``discreteopt bench``; ``--quick`` is a smoke run of every method on two settings).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from discreteopt.apps import pto
from discreteopt.apps.common import format_table
from discreteopt.cli import add_config_arguments, config_from_args


def relative_table(rows: list[dict]) -> str:
    """Regret of every method divided by the two-stage regret of the same (deg, noise) setting."""
    base = {(r["deg"], r["noise"]): r["normalized_regret"] for r in rows if r["method"] == "2s"}
    if not base:
        return "(2s not run: no relative table)"
    table: dict[tuple, dict] = {}
    for r in rows:
        key = (r["deg"], r["noise"])
        table.setdefault(key, {"deg": r["deg"], "noise": f"{r['noise']:g}"})[r["method"]] = \
            r["normalized_regret"] / max(base[key], 1e-12)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    return format_table(list(table.values()), ["deg", "noise", *methods], floatfmt=".2f")


def summary_table(rows: list[dict]) -> str:
    """Per method: mean regret, wins (lowest regret of a setting), mean rank and training seconds."""
    by_setting: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_setting[(r["deg"], r["noise"])].append(r)
    stats: dict[str, dict] = {}
    for group in by_setting.values():
        ranked = sorted(group, key=lambda r: r["normalized_regret"])
        for rank, r in enumerate(ranked, 1):
            s = stats.setdefault(r["method"], {"method": r["method"], "regret": [], "rank": [], "wins": 0,
                                               "seconds": 0.0})
            s["regret"].append(r["normalized_regret"])
            s["rank"].append(rank)
            s["wins"] += rank == 1
            s["seconds"] += r["seconds"]
    out = [{"method": s["method"], "mean_regret": sum(s["regret"]) / len(s["regret"]),
            "mean_rank": sum(s["rank"]) / len(s["rank"]), "wins": s["wins"], "train_seconds": round(s["seconds"], 1)}
           for s in stats.values()]
    out.sort(key=lambda r: r["mean_rank"])
    return format_table(out, ["method", "mean_regret", "mean_rank", "wins", "train_seconds"], floatfmt=".3f")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(pto.PRESETS), default=None)
    parser.add_argument("--quick", dest="preset", action="store_const", const="quick",
                        help="smoke run: every method on two settings, 200 instances, 3 epochs")
    add_config_arguments(parser, pto.PtOConfig)
    args = parser.parse_args(argv)
    cfg = config_from_args(pto.PtOConfig, args, pto.PRESETS)
    t0 = time.perf_counter()
    result = pto.run_benchmark(cfg)
    wall = time.perf_counter() - t0
    print(f"PyEPO 5x5 shortest path, linear model: n_train={cfg.n_train}, n_test={cfg.n_test}, epochs={cfg.epochs}, "
          f"batch={cfg.batch_size}, lr={cfg.lr}, lam={cfg.lam}, sigma={cfg.sigma}, samples={cfg.samples}\n")
    print("Normalised test regret (lower is better)")
    print(pto.results_table(result))
    print("\nRegret relative to two-stage least squares in the same setting (< 1: better than 2s)")
    print(relative_table(result["rows"]))
    print("\nPer method over all settings")
    print(summary_table(result["rows"]))
    print(f"\nwall time {wall:.1f} s; files: {result.get('files', {})}")
    return result


if __name__ == "__main__":
    main()
