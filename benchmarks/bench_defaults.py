"""Default arguments vs the exact path on PyEPO's 5x5 shortest path: does a default change the problem?

Data: :func:`discreteopt.data.generate_shortest_path` (PyEPO's generator, seed 135), 5 features, noise half-width
0.5, degree 1/2/4/6, 1000 training / 1000 test instances; a linear model ``c_hat = W x + b`` trained with Adam
(lr 0.01, batch 32, 10 epochs) from the same initial weights and batch order for every column. Methods, with the
hyper-parameters of ``discreteopt bench`` (``apps/pto.py``):

* ``spo+``: ``SPOPlus(solver)``;
* ``dbb``:  ``DiscreteLayer(solver, Interpolation(lam=10))``, loss = regret ``<c, y - w*>`` of the decision;
* ``pfyl``: ``FenchelYoungLoss(solver, scale=1, samples=10)``;
* ``imle``: ``DiscreteLayer(solver, IMLE(lam=10, samples=10))`` (Gumbel noise, scale 1), regret loss.

Columns (``guard`` of the loss/layer; the linear model's predictions and SPO+'s ``2 c_hat - c`` are often negative):

* ``default``: no ``guard`` argument. The grid is acyclic, so ``GraphShortestPath`` solves negative costs exactly
  by dynamic programming and the default ``Auto()`` guard has nothing to do;
* ``shift``: the exact path used before this change: the same grid solved by Dijkstra (``min_cost = 0``) with the
  explicit ``guard=Shift()`` (exact: every path has 8 arcs);
* ``clamp``: the previous default, Dijkstra with ``guard=Clamp()``: negative costs raised to 0, which changes the
  problem (for reference; the new default never does this silently on a problem with an exact answer).

Test regret (normalised, PyEPO's definition) is evaluated exactly (``solver.solve`` on the predictions) for every
column. Target: ``default`` within 10% of ``shift`` for SPO+. Printed: a markdown table (mean ± sd over seeds);
written: ``runs/bench_defaults/bench_defaults.json``.

Run: ``python benchmarks/bench_defaults.py [--seeds 0 1 2] [--degrees 1 2 4 6] [--epochs 10] [--sweep]``
(``--degrees`` with no value: only the sweep).
``--sweep`` adds the hyper-parameter sweeps quoted in the estimators' docstrings (PFYL ``scale``, I-MLE ``lam``;
deg 4, default guard). About 1-2 s per training run on a 2-core machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import discreteopt as do
from discreteopt.apps.pto import train_epoch
from discreteopt.data import generate_shortest_path
from discreteopt.metrics import normalized_regret
from discreteopt.solvers import GraphShortestPath

METHODS = ("spo+", "dbb", "pfyl", "imle")
COLUMNS = ("default", "shift", "clamp")


def dijkstra_twin(solver: GraphShortestPath) -> GraphShortestPath:
    """The same grid solved as before this change: Dijkstra / Bellman-Ford, costs must be >= 0 (``min_cost = 0``)."""
    twin = copy.copy(solver)
    twin.acyclic, twin.min_cost = False, 0.0
    return twin


def make_loss(method: str, column: str, seed: int, lam: float = 10.0, scale: float = 1.0, samples: int = 10):
    """``loss(c_hat [B,40], c [B,40], w [B,40]) -> scalar`` for ``method`` under the guard of ``column``."""
    from discreteopt.estimators import IMLE, Clamp, Interpolation, Shift

    solver = GraphShortestPath.grid(5, 5)
    kw = {}
    if column != "default":
        solver = dijkstra_twin(solver)
        kw = {"guard": Shift() if column == "shift" else Clamp()}
    if method == "spo+":
        spo = do.SPOPlus(solver, **kw)
        return lambda c_hat, c, w: spo(c_hat, c, w)
    if method == "pfyl":
        fy = do.FenchelYoungLoss(solver, scale=scale, samples=samples, seed=seed, **kw)
        return lambda c_hat, c, w: fy(c_hat, w)
    est = Interpolation(lam=lam) if method == "dbb" else IMLE(lam=lam, samples=samples, scale=scale)
    layer = do.DiscreteLayer(solver, est, seed=seed, **kw)
    return lambda c_hat, c, w: ((layer(c_hat) - w) * c).sum(-1).mean()  # regret of the decision


def train(method: str, column: str, data, seed: int, epochs: int, **hyper) -> dict:
    (x_tr, c_tr, w_tr), (x_te, c_te, w_te) = data
    torch.manual_seed(seed)
    model = nn.Linear(x_tr.shape[1], c_tr.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = make_loss(method, column, seed, **hyper)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        train_epoch(model, opt, loss_fn, x_tr, c_tr, w_tr, 32, gen)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        y_hat = GraphShortestPath.grid(5, 5).solve(model(x_te))  # exact for negative predictions too
    return {"regret": normalized_regret(c_te, y_hat, w_te), "seconds": seconds}


def load(deg: int, n_train: int = 1000, n_test: int = 1000):
    data = generate_shortest_path(n_train + n_test, p=5, deg=deg, noise_width=0.5, seed=135)
    solver = GraphShortestPath.grid(5, 5)
    out = []
    for part in data.split(n_train):
        x, c = torch.from_numpy(part.x).float(), torch.from_numpy(part.c).float()  # as PyEPO: float32
        out.append((x, c, solver.solve(c)))
    return out


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--degrees", type=int, nargs="*", default=[1, 2, 4, 6], help="none: only the sweep")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--sweep", action="store_true", help="also sweep PFYL's scale and I-MLE's lam (deg 4)")
    p.add_argument("--out", default="runs/bench_defaults")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows, t_start = [], time.perf_counter()
    for deg in args.degrees:
        data = load(deg)
        for method in args.methods:
            for column in COLUMNS:
                for seed in args.seeds:
                    r = train(method, column, data, seed, args.epochs)
                    rows.append({"deg": deg, "method": method, "column": column, "seed": seed, **r})
                    print(f"deg {deg} {method:5s} {column:8s} seed {seed}: regret {r['regret']:.4f} "
                          f"({r['seconds']:.1f} s)", flush=True)
    sweep = []
    if args.sweep:
        data = load(4)
        for method, name, values in (("pfyl", "scale", (0.1, 0.5, 1.0, 2.0, 5.0)),
                                     ("imle", "lam", (0.5, 2.0, 10.0, 50.0, 200.0))):
            for v in values:
                regrets = [train(method, "default", data, s, args.epochs, **{name: v})["regret"] for s in args.seeds]
                sweep.append({"method": method, name: v, "regret": regrets})
                print(f"sweep deg 4 {method} {name}={v}: {fmt(regrets)}", flush=True)

    lines = ["| deg | method | default | shift (exact, before) | clamp (old default) | default / shift |",
             "|---:|---|---:|---:|---:|---:|"]
    for deg in args.degrees:
        for method in args.methods:
            vals = {c: [r["regret"] for r in rows if (r["deg"], r["method"], r["column"]) == (deg, method, c)]
                    for c in COLUMNS}
            ratio = statistics.mean(vals["default"]) / statistics.mean(vals["shift"])
            lines.append(f"| {deg} | {method} | {fmt(vals['default'])} | {fmt(vals['shift'])} | "
                         f"{fmt(vals['clamp'])} | {ratio:.3f} |")
    table = "\n".join(lines)
    print("\nNormalised test regret, PyEPO 5x5 shortest path, noise 0.5, linear model "
          f"(mean ± sd over seeds {args.seeds}); {time.perf_counter() - t_start:.0f} s in all\n")
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"task": "pyepo_shortest_path_5x5_defaults", "seeds": args.seeds, "epochs": args.epochs,
              "rows": rows, "sweep": sweep, "table": table,
              "spo_default_over_shift": {deg: float(np.mean([r["regret"] for r in rows if r["deg"] == deg
                                                              and r["method"] == "spo+" and r["column"] == "default"])
                                                     / np.mean([r["regret"] for r in rows if r["deg"] == deg
                                                                and r["method"] == "spo+" and r["column"] == "shift"]))
                                         for deg in args.degrees if "spo+" in args.methods}}
    path = out / ("bench_defaults.json" if args.degrees else "bench_defaults_sweep.json")
    path.write_text(json.dumps(result, indent=1))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
