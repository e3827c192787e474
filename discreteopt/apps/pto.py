"""Predict-then-optimise benchmark: PyEPO's 5x5 shortest path with a linear cost model.

For every polynomial degree and noise width, a linear model ``c_hat = W x + b`` (``[p] -> [40]`` arc costs) is
trained on ``n_train`` instances with each method and scored by the normalised regret on ``n_test`` instances
(:func:`discreteopt.metrics.normalized_regret`). Methods (names as in PyEPO):

* ``2s``      -- two-stage: mean squared error on the costs (no solver in training);
* ``spo+``    -- SPO+ loss (Elmachtoub & Grigas, 2022);
* ``dbb``     -- blackbox interpolation (Vlastelica et al., 2020), loss = regret of the decision;
* ``dpo``     -- perturbed optimizer (Berthet et al., 2020), loss = squared error of the expected solution;
* ``pfyl``    -- perturbed Fenchel-Young loss (Berthet et al., 2020);
* ``imle``    -- I-MLE (Niepert et al., 2021), loss = regret of the decision.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.pyepo_shortest_path import generate_shortest_path
from ..metrics import normalized_regret
from ..noise import Gumbel
from .common import format_table, progress, pyplot, save_json, seed_everything

METHODS = ("2s", "spo+", "dbb", "dpo", "pfyl", "imle")


@dataclasses.dataclass
class PtOConfig:
    """Settings of the benchmark (the CLI's ``discreteopt bench`` options)."""

    #: methods to train: 2s, spo+, dbb, dpo, pfyl, imle
    methods: tuple[str, ...] = METHODS
    #: polynomial degrees of the cost model (1 = linear, the model is then well specified)
    degrees: tuple[int, ...] = (1, 2, 4, 6)
    #: half-widths e of the multiplicative noise U(1-e, 1+e)
    noises: tuple[float, ...] = (0.0, 0.5)
    n_train: int = 1000
    n_test: int = 1000
    #: number of features
    p: int = 5
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-2
    #: finite-difference step of blackbox (dbb) and I-MLE (the loss is the regret averaged over the batch)
    lam: float = 10.0
    #: noise scale of the perturbed methods (dpo, pfyl) and of I-MLE's Gumbel noise
    sigma: float = 1.0
    #: noise samples per instance of dpo, pfyl and imle
    samples: int = 10
    seed: int = 135
    #: output folder for JSON and PNG files (none: write nothing)
    out: str | None = "runs/bench"
    #: progress bars on stderr
    progress: bool = True

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}; got {list(self.methods)}")
        for name in ("n_train", "n_test", "p", "epochs", "batch_size", "samples"):
            if isinstance(getattr(self, name), bool) or int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not self.degrees or any(int(d) < 1 for d in self.degrees):
            raise ValueError(f"degrees must be positive integers; got {list(self.degrees)}")
        if not self.noises or any(not 0.0 <= e < 1.0 for e in self.noises):
            raise ValueError(f"noises must be in [0, 1); got {list(self.noises)}")
        for name in ("lr", "lam", "sigma"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number; got {getattr(self, name)}")


#: ``discreteopt bench --preset NAME`` (``--quick`` = ``--preset quick``: a smoke run of every method)
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"degrees": (1, 6), "noises": (0.5,), "n_train": 200, "n_test": 200, "epochs": 3},
}


def lattice_solver():
    """PyEPO's 5x5 right/down grid (40 arcs) as a :class:`~discreteopt.solvers.GraphShortestPath`.

    Every top-left -> bottom-right path of this grid has exactly 8 arcs, so adding a constant to all arc costs of
    an instance keeps its optimal paths: the solver detects that it is ``shift_invariant`` and is used with the
    :class:`~discreteopt.estimators.Shift` guard, which solves negative (true or predicted) costs exactly, as an LP
    solver would, instead of clamping them.
    """
    from ..solvers import GraphShortestPath

    solver = GraphShortestPath.grid(5, 5)
    assert solver.shift_invariant  # every path has 8 arcs
    return solver


def make_loss(method: str, solver, cfg: PtOConfig):
    """``loss(c_hat [B,40], c [B,40], w_opt [B,40]) -> scalar`` for one method (module docstring)."""
    from .. import estimators as est
    from .. import losses
    from ..layers import DiscreteLayer

    guard = est.Shift()
    if method == "2s":
        return lambda c_hat, c, w: ((c_hat - c) ** 2).mean()
    if method == "spo+":
        spo = losses.SPOPlus(solver, guard=guard)
        return lambda c_hat, c, w: spo(c_hat, c, w)
    if method == "pfyl":
        fy = losses.FenchelYoungLoss(DiscreteLayer(solver, est.PerturbedOptimizer(cfg.sigma, cfg.samples),
                                                   guard=guard))
        return lambda c_hat, c, w: fy(c_hat, w)
    if method == "dpo":
        layer = DiscreteLayer(solver, est.PerturbedOptimizer(cfg.sigma, cfg.samples), guard=guard)
        return lambda c_hat, c, w: ((layer(c_hat) - w) ** 2).sum(-1).mean()
    if method == "dbb":
        estimator = est.Interpolation(lam=cfg.lam)
    else:
        estimator = est.IMLE(lam=cfg.lam, samples=cfg.samples, noise=Gumbel(cfg.sigma))
    layer = DiscreteLayer(solver, estimator, guard=guard)
    # regret of the decision under the true costs: <c, y(c_hat)> - <c, w*>
    return lambda c_hat, c, w: ((layer(c_hat) - w) * c).sum(-1).mean()


def solve_exact(solver, costs: torch.Tensor) -> torch.Tensor:
    """Optimal paths ``[B, 40]`` of possibly negative costs ``[B, 40]`` (per-instance shift, see
    :func:`lattice_solver`)."""
    from ..estimators import Shift

    return solver.solve(Shift()(costs.detach().double(), solver)).float()


def run_one(method: str, x_tr, c_tr, w_tr, x_te, c_te, w_te, solver, cfg: PtOConfig, gen) -> dict[str, Any]:
    """Train the linear model with ``method``; return test regret and the loss curve."""
    model = nn.Linear(x_tr.shape[1], c_tr.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = make_loss(method, solver, cfg)
    curve = []
    with torch.no_grad():
        initial = normalized_regret(c_te, solve_exact(solver, model(x_te)), w_te)
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        ep = []
        for idx in torch.randperm(len(x_tr), generator=gen).split(cfg.batch_size):
            loss = loss_fn(model(x_tr[idx]), c_tr[idx], w_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ep.append(float(loss.detach()))
        curve.append(float(np.mean(ep)))
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        y_hat = solve_exact(solver, model(x_te))
    return {"regret": normalized_regret(c_te, y_hat, w_te), "initial_regret": initial, "loss_curve": curve,
            "seconds": round(seconds, 2)}


def run_benchmark(cfg: PtOConfig) -> dict[str, Any]:
    """All (degree, noise, method) runs; JSON + PNG under ``cfg.out``; returns rows and curves."""
    cfg.validate()
    solver = lattice_solver()
    rows, curves = [], {}
    grid = list(itertools.product(cfg.degrees, cfg.noises))
    bar = progress(grid, cfg.progress, desc="bench settings")
    for deg, e in bar:
        data = generate_shortest_path(cfg.n_train + cfg.n_test, p=cfg.p, deg=int(deg), noise_width=float(e),
                                      seed=cfg.seed)
        train, test = data.split(cfg.n_train)
        x_tr, c_tr = torch.from_numpy(train.x), torch.from_numpy(train.c)  # [n, p], [n, 40]
        x_te, c_te = torch.from_numpy(test.x), torch.from_numpy(test.c)
        w_tr, w_te = solve_exact(solver, c_tr), solve_exact(solver, c_te)  # optimal paths [n, 40]
        for method in cfg.methods:
            gen = seed_everything(cfg.seed)
            r = run_one(method, x_tr, c_tr, w_tr, x_te, c_te, w_te, solver, cfg, gen)
            rows.append({"deg": int(deg), "noise": float(e), "method": method, "normalized_regret": r["regret"],
                         "initial_regret": r["initial_regret"], "seconds": r["seconds"]})
            curves[f"deg={deg},noise={e},{method}"] = r["loss_curve"]
    result = {"task": "pyepo_shortest_path_5x5", "config": dataclasses.asdict(cfg), "rows": rows, "curves": curves}
    if cfg.out:
        out = Path(cfg.out)
        result["files"] = {"json": str(out / "bench_pto.json"), "figure": str(plot_regret(rows, out / "bench_pto.png"))}
        save_json(result, out / "bench_pto.json")
    return result


def results_table(result: dict[str, Any]) -> str:
    """The normalised-regret table of a :func:`run_benchmark` result."""
    return regret_table(result["rows"])


def regret_table(rows: list[dict[str, Any]]) -> str:
    """Normalised regret: one row per (deg, noise), one column per method."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table: dict[tuple[int, float], dict[str, Any]] = {}
    for r in rows:
        key = (r["deg"], r["noise"])
        table.setdefault(key, {"deg": r["deg"], "noise": f"{r['noise']:g}"})[r["method"]] = r["normalized_regret"]
    return format_table(list(table.values()), ["deg", "noise", *methods])


def plot_regret(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Grouped bars of normalised regret per (deg, noise) setting and method."""
    plt = pyplot()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    settings = list(dict.fromkeys((r["deg"], r["noise"]) for r in rows))
    val = {(r["deg"], r["noise"], r["method"]): r["normalized_regret"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(settings)), 4))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        ax.bar(np.arange(len(settings)) + j * width, [val.get((d, e, m), np.nan) for d, e in settings], width, label=m)
    ax.set_xticks(np.arange(len(settings)) + 0.4 - width / 2)
    ax.set_xticklabels([f"deg {d}\nnoise {e}" for d, e in settings])
    ax.set_ylabel("normalised regret (test)")
    ax.set_title("PyEPO 5x5 shortest path, linear model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p
