"""Solution caching on PyEPO's 5x5 shortest path: solver calls per epoch and test regret against ``solve_ratio``.

Setting: :func:`discreteopt.data.generate_shortest_path` (deg 4 by default, noise half-width 0.5, 1000 training and
1000 test instances), a linear model ``[5] -> [40]`` trained with Adam, as in :mod:`discreteopt.apps.pto`. For
every method and ``solve_ratio`` the training loss gets a :class:`discreteopt.SolutionCache` seeded with the
training set's optimal paths (as PyEPO seeds its pool) and answering ``1 - solve_ratio`` of every solver batch
from the pool (Mulamba et al., IJCAI 2021). Methods:

* ``spo+`` -- SPO+ (true paths given: one solver instance per training instance and step);
* ``dbb``  -- blackbox interpolation with the regret loss (one forward and one backward instance);
* ``nce``  -- noise-contrastive estimation over the pool (the pool *is* the cache);
* ``cmap`` -- contrastive MAP over the pool.

Printed per (method, solve_ratio): solver instances and executor calls per epoch (what caching saves), pool
answers per epoch, final pool size, normalised test regret (exact solver at test time) and training seconds per
epoch. The machine may be shared: seconds are noisy, solver counts and regrets are not (fixed seeds).

Note on semantics: PyEPO draws one Bernoulli(``solve_ratio``) per *batch* (the whole batch is solved or none of
it); here a seeded ``solve_ratio`` fraction of *every* batch is solved (stochastic rounding), so the expected
count is the same and the pool grows smoothly.

On PyEPO's 5x5 lattice the 1000 training paths already cover nearly all 70 feasible paths, so pooled answers are
almost always optimal; ``--grid 10 10`` (48620 paths) shows caching as the approximation it is in general.

Run: ``python benchmarks/bench_cache.py [--grid 5 5] [--deg 4] [--epochs 10] [--ratios 1 0.3 0.1 0.05]
[--seeds 135 136 137]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from discreteopt import DiscreteLayer, SolutionCache, losses
from discreteopt.apps.common import format_table, seed_everything
from discreteopt.apps.pto import lattice_solver, solve_exact, train_epoch
from discreteopt.data import generate_shortest_path
from discreteopt.estimators import Interpolation, Shift
from discreteopt.metrics import normalized_regret
from discreteopt.solvers import GraphShortestPath

METHODS = ("spo+", "dbb", "nce", "cmap")


def make_cached_loss(method: str, solver, cache: SolutionCache, lam: float):
    """``(loss(c_hat, c, w) -> scalar, module whose .stats count the solver calls)`` with ``cache`` attached."""
    guard = Shift()  # exact for the lattice (every path has 8 arcs), as in apps.pto
    if method == "spo+":
        spo = cache.attach(losses.SPOPlus(solver, guard=guard))
        return (lambda c_hat, c, w: spo(c_hat, c, w)), spo
    if method == "dbb":
        layer = cache.attach(DiscreteLayer(solver, Interpolation(lam=lam), guard=guard))
        return (lambda c_hat, c, w: ((layer(c_hat) - w) * c).sum(-1).mean()), layer
    if method in ("nce", "cmap"):
        cls = losses.NCE if method == "nce" else losses.ContrastiveMAP
        f = cls(solver, cache, guard=guard)
        return (lambda c_hat, c, w: f(c_hat, w)), f
    raise ValueError(f"method must be one of {METHODS}; got {method!r}")


def run(method: str, ratio: float, seed: int, data, solver, args) -> dict:
    x_tr, c_tr, w_tr, x_te, c_te, w_te = data
    gen = seed_everything(seed)
    model = nn.Linear(x_tr.shape[1], c_tr.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    cache = SolutionCache.from_solutions(w_tr, solve_ratio=ratio, seed=seed)
    loss_fn, owner = make_cached_loss(method, solver, cache, args.lam)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        train_epoch(model, opt, loss_fn, x_tr, c_tr, w_tr, args.batch_size, gen)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        regret = normalized_regret(c_te, solve_exact(solver, model(x_te)), w_te)
    st = owner.stats
    return {"method": method, "solve_ratio": ratio, "seed": seed,
            "solver_instances_per_epoch": st.instances / args.epochs, "solver_calls_per_epoch": st.calls / args.epochs,
            "pool_answers_per_epoch": st.cache_hits / args.epochs, "pool_size": len(cache),
            "regret": regret, "seconds_per_epoch": seconds / args.epochs}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--ratios", nargs="+", type=float, default=[1.0, 0.3, 0.1, 0.05])
    p.add_argument("--seeds", nargs="+", type=int, default=[135])
    p.add_argument("--grid", nargs=2, type=int, default=[5, 5],
                   help="lattice size (5 5: PyEPO's, 70 paths; 10 10 has 48620 paths, so the pool covers a fraction)")
    p.add_argument("--deg", type=int, default=4)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--lam", type=float, default=10.0, help="interpolation step of dbb")
    p.add_argument("--data-seed", type=int, default=135)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: fastest for 40 arcs)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    solver = lattice_solver() if tuple(args.grid) == (5, 5) else GraphShortestPath.grid(*args.grid)
    ds = generate_shortest_path(args.n_train + args.n_test, grid=tuple(args.grid), deg=args.deg,
                                noise_width=args.noise, seed=args.data_seed)
    train, test = ds.split(args.n_train)
    x_tr, c_tr = torch.from_numpy(train.x), torch.from_numpy(train.c)
    x_te, c_te = torch.from_numpy(test.x), torch.from_numpy(test.c)
    data = (x_tr, c_tr, solve_exact(solver, c_tr), x_te, c_te, solve_exact(solver, c_te))
    runs = [run(m, r, s, data, solver, args) for m in args.methods for r in args.ratios for s in args.seeds]

    rows = []
    for m in args.methods:
        for r in args.ratios:
            group = [x for x in runs if x["method"] == m and x["solve_ratio"] == r]
            regrets = [x["regret"] for x in group]
            rows.append({
                "method": m, "solve_ratio": r,
                "solver_inst/epoch": statistics.mean(x["solver_instances_per_epoch"] for x in group),
                "calls/epoch": statistics.mean(x["solver_calls_per_epoch"] for x in group),
                "pool_answers/epoch": statistics.mean(x["pool_answers_per_epoch"] for x in group),
                "pool": int(statistics.mean(x["pool_size"] for x in group)),
                "regret": statistics.mean(regrets),
                "regret_sd": statistics.stdev(regrets) if len(regrets) > 1 else float("nan"),
                "s/epoch": statistics.mean(x["seconds_per_epoch"] for x in group),
            })
    print(f"PyEPO {args.grid[0]}x{args.grid[1]} shortest path, deg={args.deg}, noise={args.noise}, n_train={args.n_train}, "
          f"n_test={args.n_test}, epochs={args.epochs}, batch={args.batch_size}, lr={args.lr}, seeds={args.seeds}, "
          f"threads={args.threads}; "
          f"pool seeded with the {args.n_train} training paths\n")
    print(format_table(rows, floatfmt=".4f"))
    return runs


if __name__ == "__main__":
    main()
