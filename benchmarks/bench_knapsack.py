"""Knapsack: ms per instance of ``discreteopt.solvers.Knapsack`` (auto, CP-SAT, pure branch and bound) against
``scipy.optimize.milp`` (HiGHS), in one run, interleaved.

Issue #11 targets: at ``n = 80`` items and 3 capacity rows, ``Knapsack`` is no slower per instance than
``scipy.optimize.milp``; on PyEPO's knapsack (32 items, 2 rows, capacity 20) it keeps the per-epoch lead.
Cases (each a batch of instances solved one after the other; weights in ``[3, 8)`` with 2 decimals unless
"int"):

* ``pyepo 32x2 deg=d``   -- :func:`discreteopt.data.generate_knapsack` with the PtO benchmark's settings
  (32 items, 2 rows of capacity 20, noise 0.5), ``theta`` = its values ``c`` (integers: ties) ...
* ``... pred``            -- ... or ``c + N(0, 1)``, real-valued like a model's predictions (some negative);
* ``pyepo 80x3 deg=2``    -- the same generator with 80 items and 3 rows of capacity 20 (few items fit);
* ``rows=3 n=80 int``     -- integer weights in [1, 50), capacity = 1/3 of each row's total, theta ~ N(1, 1)
  (the data of ``tests/solvers/test_sv_knapsack.py::test_many_items_match_scipy_milp``);
* ``rows=3 n=80 pyepo``   -- PyEPO-style 2-decimal weights, capacity = 1/4 of each row's total, integer
  values in [1, 10] (ties);
* ``rows=3 n=80 corr``    -- the same weights, values correlated with them (``mean_k W_ki + 1 + N(0, 0.5)``):
  hard for every solver (~0.6 s per instance for CP-SAT, ~1.5 s for HiGHS), so fewer instances;
* ``rows=1 n=50 int``     -- one row: the 64-item solver;
* ``rows=1 n=100 corr``   -- one row, more than 64 items, values ``w_i + 0.5``: the branch and bound's bad
  case.

Columns, ms per instance (median over rounds that alternate between the methods, so load on a shared machine
disturbs all alike): ``auto`` (``Knapsack()``, its back-end in ``(...)``), ``cpsat`` (``backend="cpsat"``),
``bnb`` (``backend="bnb", bnb_budget=None``: the branch and bound alone, each instance capped at ``--bnb-cap``
seconds; ``>=`` marks a mean that includes capped instances), ``milp``; ``fallback`` is the share of
instances ``auto`` handed to CP-SAT after its 5 ms of branch and bound, over all rounds (the time box is wall
time: a loaded machine adds fallbacks); ``auto/milp`` and ``auto/cpsat`` the ratios (< 1: faster). Every
answer is checked against milp's optimal value (up to the documented profit precision).

Run: ``python benchmarks/bench_knapsack.py [--instances 10] [--rounds 3] [--bnb-cap 1.0] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

from discreteopt.data import generate_knapsack
from discreteopt.solvers import InstanceError, Knapsack


def make_case(kind: str, rows: int, n: int, instances: int, seed: int = 0):
    """``(weights [rows, n], capacity [rows], theta [instances, n])`` of one benchmark case."""
    rng = np.random.default_rng(seed)
    if kind.startswith("gen"):  # PyEPO's generator, the PtO settings: "gen<deg>" or "gen<deg>pred"
        deg = int(kind[3])
        data = generate_knapsack(instances, p=5, num_items=n, dim=rows, deg=deg, noise_width=0.5, seed=seed)
        theta = np.asarray(data.c, dtype=np.float64)
        if kind.endswith("pred"):
            theta = theta + rng.normal(0.0, 1.0, theta.shape)
        return np.asarray(data.weights, dtype=np.float64), np.full(rows, 20.0), theta
    if kind == "int":
        weights = rng.integers(1, 50, (rows, n)).astype(float)
        return weights, np.floor(weights.sum(1) / 3), rng.normal(1.0, 1.0, (instances, n))
    weights = rng.integers(300, 800, (rows, n)) / 100  # PyEPO's weights: 3.00..7.99
    capacity = np.floor(weights.sum(1) / 4)
    if kind == "pyepo":
        theta = rng.integers(1, 11, (instances, n)).astype(float)
    elif kind == "corr" and rows > 1:
        theta = weights.mean(0) + 1.0 + rng.normal(0.0, 0.5, (instances, n))
    else:  # one-row "corr": strongly correlated
        capacity = np.floor(weights.sum(1) / 2)
        theta = np.tile(weights[0] + 0.5, (instances, 1)) + rng.uniform(0.0, 1e-3, (instances, n))
    return weights, capacity, theta


CASES = (  # name, kind, rows, n, share of --instances
    ("pyepo 32x2 deg=1", "gen1", 2, 32, 1.0), ("pyepo 32x2 deg=4", "gen4", 2, 32, 1.0),
    ("pyepo 32x2 deg=6", "gen6", 2, 32, 1.0), ("pyepo 32x2 deg=4 pred", "gen4pred", 2, 32, 1.0),
    ("pyepo 80x3 deg=2", "gen2", 3, 80, 1.0),
    ("rows=3 n=80 int", "int", 3, 80, 1.0), ("rows=3 n=80 pyepo", "pyepo", 3, 80, 1.0),
    ("rows=3 n=80 corr", "corr", 3, 80, 0.3), ("rows=1 n=50 int", "int", 1, 50, 1.0),
    ("rows=1 n=100 corr", "corr", 1, 100, 1.0),
)


def milp_solve(weights, capacity, theta):
    n = theta.shape[1]
    out = np.empty_like(theta)
    cons = LinearConstraint(weights, -np.inf, capacity)
    for b in range(len(theta)):
        res = milp(-theta[b], constraints=cons, integrality=np.ones(n), bounds=Bounds(0, 1))
        assert res.status == 0, res.message
        out[b] = np.round(res.x)
    return out


def capped_bnb(solver: Knapsack, theta: torch.Tensor, capped: list[int]):
    """The pure branch and bound, instance by instance; one past the cap counts the cap (``capped``)."""
    out = np.full(tuple(theta.shape), np.nan)
    for b in range(theta.shape[0]):
        try:
            out[b] = solver.solve(theta[b:b + 1]).numpy()[0]
        except InstanceError as err:
            assert err.status == "TIME_LIMIT", err
            capped.append(b)
    return out


def run(instances: int, rounds: int, bnb_cap: float, only: str | None = None) -> list[dict]:
    rows_out = []
    for name, kind, m, n, share in CASES:
        if only and only not in name:
            continue
        count = max(2, round(instances * share))
        weights, capacity, theta = make_case(kind, m, n, count)
        w = weights if m > 1 else weights[0]
        auto = Knapsack(w, capacity)
        cpsat = Knapsack(w, capacity, backend="cpsat")
        bnb = Knapsack(w, capacity, backend="bnb", bnb_budget=None, time_limit=bnb_cap)
        t = torch.from_numpy(theta)
        capped: list[int] = []
        methods = {
            "auto": lambda auto=auto, t=t: auto.solve(t).numpy(),
            "cpsat": lambda cpsat=cpsat, t=t: cpsat.solve(t).numpy(),
            "bnb": lambda bnb=bnb, t=t, capped=capped: capped_bnb(bnb, t, capped),
            "milp": lambda w=weights, c=capacity, th=theta: milp_solve(w, c, th),
        }
        times: dict[str, list[float]] = {k: [] for k in methods}
        answers = {}
        for r in range(rounds + 1):  # round 0: warm-up and correctness, not timed
            for k, f in methods.items():
                if k == "bnb":
                    capped.clear()  # the capped instances of the latest round
                t0 = time.perf_counter()
                x = f()
                if r == 0:
                    answers[k] = x
                else:
                    times[k].append((time.perf_counter() - t0) / count)
        fallback = auto.fallbacks / (count * (rounds + 1))  # all rounds: load makes spurious fallbacks
        ref = (theta * answers["milp"]).sum(1)
        for k, x in answers.items():
            done = ~np.isnan(x).any(1)
            assert np.all(x[done] @ weights.T <= capacity + 1e-9), k
            gap = ref[done] - (theta[done] * x[done]).sum(1)
            assert np.all(gap <= n * np.abs(theta[done]).max(1) * 1e-9 + 1e-9), (name, k, gap.max())
        med = {k: statistics.median(v) for k, v in times.items()}
        rows_out.append({"case": name, "instances": count, "backend": auto.backend,
                         **{f"{k}_ms": v * 1e3 for k, v in med.items()}, "bnb_capped": len(capped),
                         "fallback": fallback, "auto_vs_milp": med["auto"] / med["milp"],
                         "auto_vs_cpsat": med["auto"] / med["cpsat"]})
    return rows_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bnb-cap", type=float, default=1.0, help="seconds per instance for the pure B&B column")
    ap.add_argument("--only", default=None, help="run the cases whose name contains this text")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results = run(args.instances, args.rounds, args.bnb_cap, args.only)
    print(f"{'case':<24} {'B':>3} {'auto ms':>9} {'(backend)':>9} {'fallback':>8} {'cpsat ms':>9} "
          f"{'bnb ms':>10} {'milp ms':>9} {'auto/milp':>9} {'auto/cpsat':>10}")
    for r in results:
        bnb = ("" if r["bnb_capped"] == 0 else ">=") + f"{r['bnb_ms']:.2f}"
        print(f"{r['case']:<24} {r['instances']:>3} {r['auto_ms']:>9.2f} {r['backend']:>9} "
              f"{r['fallback']:>8.0%} {r['cpsat_ms']:>9.2f} {bnb:>10} {r['milp_ms']:>9.2f} "
              f"{r['auto_vs_milp']:>9.3f} {r['auto_vs_cpsat']:>10.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
