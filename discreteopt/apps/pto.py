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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.pyepo_shortest_path import generate_shortest_path
from ..metrics import normalized_regret
from .common import format_table, progress, pyplot, save_json, seed_everything

METHODS = ("2s", "spo+", "dbb", "dpo", "pfyl", "imle")


@dataclasses.dataclass
class PtOConfig:
    """Settings of the benchmark (the CLI's ``discreteopt bench`` options)."""

    methods: tuple[str, ...] = METHODS
    degrees: tuple[int, ...] = (1, 2, 4, 6)
    noises: tuple[float, ...] = (0.0, 0.5)
    n_train: int = 1000
    n_test: int = 1000
    p: int = 5
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-2
    seed: int = 135
    out: str | None = "runs/bench"
    progress: bool = True

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}; got {list(self.methods)}")
        for name in ("n_train", "n_test", "p", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if any(int(d) < 1 for d in self.degrees) or not self.degrees:
            raise ValueError(f"degrees must be positive integers; got {list(self.degrees)}")
        if any(not 0.0 <= e < 1.0 for e in self.noises) or not self.noises:
            raise ValueError(f"noises must be in [0, 1); got {list(self.noises)}")


def make_loss(method: str, solver):
    """``loss(c_hat [B,40], c [B,40], w_opt [B,40]) -> scalar`` for one method (module docstring)."""
    from .. import estimators as est
    from .. import losses
    from ..layers import DiscreteLayer

    if method == "2s":
        return lambda c_hat, c, w: ((c_hat - c) ** 2).mean()
    if method == "spo+":
        spo = losses.SPOPlus(solver)
        return lambda c_hat, c, w: spo(c_hat, c, w)
    if method == "pfyl":
        fy = losses.FenchelYoungLoss(DiscreteLayer(solver, est.PerturbedOptimizer(sigma=1.0, samples=10)))
        return lambda c_hat, c, w: fy(c_hat, w)
    if method == "dpo":
        layer = DiscreteLayer(solver, est.PerturbedOptimizer(sigma=1.0, samples=10))
        return lambda c_hat, c, w: ((layer(c_hat) - w) ** 2).sum(-1).mean()
    layer = DiscreteLayer(solver, est.Interpolation(lam=20.0) if method == "dbb" else est.IMLE(lam=1.0, samples=1))
    # regret of the decision under the true costs: <c, y(c_hat)> - <c, w*>
    return lambda c_hat, c, w: ((layer(c_hat) - w) * c).sum(-1).mean()


def run_one(method: str, x_tr, c_tr, w_tr, x_te, c_te, w_te, solver, cfg: PtOConfig, gen) -> dict[str, Any]:
    """Train the linear model with ``method``; return test regret and the loss curve."""
    model = nn.Linear(x_tr.shape[1], c_tr.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = make_loss(method, solver)
    curve = []
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
    with torch.no_grad():
        c_hat = model(x_te)
        # the solver needs non-negative costs: a prediction below 0 is clamped (the decision is that of max(c_hat, 0))
        y_hat = solver.solve(c_hat.clamp_min(0.0).double())
    return {"regret": normalized_regret(c_te, y_hat, w_te), "loss_curve": curve,
            "seconds": round(time.perf_counter() - t0, 2)}


def run_benchmark(cfg: PtOConfig) -> dict[str, Any]:
    """All (degree, noise, method) runs; JSON + PNG under ``cfg.out``; returns rows and curves."""
    cfg.validate()
    from ..solvers import GraphShortestPath

    solver = GraphShortestPath.grid(5, 5)
    rows, curves = [], {}
    grid = list(itertools.product(cfg.degrees, cfg.noises))
    for deg, e in progress(grid, cfg.progress, desc="bench settings"):
        data = generate_shortest_path(cfg.n_train + cfg.n_test, p=cfg.p, deg=int(deg), noise_width=float(e),
                                      seed=cfg.seed)
        train, test = data.split(cfg.n_train)
        x_tr, c_tr = torch.from_numpy(train.x), torch.from_numpy(train.c)
        x_te, c_te = torch.from_numpy(test.x), torch.from_numpy(test.c)
        w_tr = solver.solve(c_tr.double()).float()
        w_te = solver.solve(c_te.double()).float()
        for method in cfg.methods:
            gen = seed_everything(cfg.seed)
            r = run_one(method, x_tr, c_tr, w_tr, x_te, c_te, w_te, solver, cfg, gen)
            rows.append({"deg": int(deg), "noise": float(e), "method": method,
                         "normalized_regret": r["regret"], "seconds": r["seconds"]})
            curves[f"deg={deg},noise={e},{method}"] = r["loss_curve"]
    result = {"task": "pyepo_shortest_path_5x5", "config": dataclasses.asdict(cfg), "rows": rows, "curves": curves}
    if cfg.out:
        out = Path(cfg.out)
        result["files"] = {"json": str(out / "bench_pto.json"), "figure": str(plot_regret(rows, out / "bench_pto.png"))}
        save_json(result, out / "bench_pto.json")
    return result


def regret_table(rows: list[dict[str, Any]]) -> str:
    """Normalised regret: one row per (deg, noise), one column per method."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table: dict[tuple[int, float], dict[str, Any]] = {}
    for r in rows:
        table.setdefault((r["deg"], r["noise"]), {"deg": r["deg"], "noise": r["noise"]})[r["method"]] = r["normalized_regret"]
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
