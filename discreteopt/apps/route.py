"""Learning to route: Warcraft shortest paths from map images (Vlastelica et al., ICLR 2020).

A :class:`~discreteopt.models.CombResNet` maps an image ``[B, 3, 8k, 8k]`` to vertex costs ``[B, k, k]``; a
:class:`~discreteopt.layers.DiscreteLayer` around :class:`~discreteopt.solvers.GridShortestPath` turns them into a
path mask ``[B, k, k]``; the loss compares it with the true path (Hamming loss), or -- for ``fy`` -- the
Fenchel-Young loss of the perturbed solver is used directly on the costs. The network runs on ``device``; the
solver runs on CPU workers through the executor (``workers > 0``: a process pool).

Evaluation solves the *predicted* costs without noise and scores the path with the *true* vertex weights:
cost-optimal accuracy (the number the papers report), exact match and cost ratio
(:func:`discreteopt.metrics.shortest_path_metrics`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.warcraft import WarcraftData, generate_warcraft, load_warcraft
from ..metrics import shortest_path_metrics
from ..models import CombResNet
from .common import (
    batches,
    format_table,
    plot_curves,
    progress,
    pyplot,
    resolve_device,
    save_json,
    seed_everything,
)

ESTIMATORS = ("imle", "aimle", "blackbox", "perturbed", "fy", "st", "score")
#: noise scale per estimator when ``--sigma`` is not given (additive scale for I-MLE and the score function,
#: log-normal ``sigma`` of the multiplicative perturbation for perturbed / Fenchel-Young)
DEFAULT_SIGMA = {"imle": 1.0, "aimle": 1.0, "blackbox": 1.0, "perturbed": 0.5, "fy": 0.5, "st": 1.0,
                 "score": 0.5}


@dataclasses.dataclass
class RouteConfig:
    """Settings of one Warcraft run (the CLI's ``discreteopt route`` options)."""

    estimator: str = "imle"
    size: int = 12
    n_train: int = 1000
    n_test: int = 200
    epochs: int = 8
    batch_size: int = 50
    lr: float = 1e-3
    #: I-MLE / AIMLE / blackbox finite-difference step
    lam: float = 20.0
    #: noise scale of I-MLE / perturbed / Fenchel-Young / score function (None: :data:`DEFAULT_SIGMA`)
    sigma: float | None = None
    #: noise samples per map (I-MLE, perturbed, Fenchel-Young, score function: at least 2 there)
    samples: int = 1
    width: int = 64
    workers: int = 0
    device: str = "cpu"
    data_dir: str | None = None
    out: str | None = "runs/route"
    seed: int = 0
    progress: bool = True
    #: stop each epoch after this many steps (tests / smoke runs); None = full epochs
    max_steps: int | None = None

    def validate(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {self.estimator!r}")
        for name in ("size", "n_train", "n_test", "epochs", "batch_size", "samples", "width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = solve in the main process); got {self.workers}")
        for name in ("lr", "lam", "sigma"):
            if getattr(self, name) is not None and not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")


# ------------------------------------------------------------------------------------------------ data
def load_data(cfg: RouteConfig) -> tuple[WarcraftData, WarcraftData, str]:
    """Train and test splits: the real files under ``cfg.data_dir``, else the seeded generator."""
    if cfg.data_dir:
        train = load_warcraft(cfg.data_dir, "train", cfg.size, n=cfg.n_train)
        test = load_warcraft(cfg.data_dir, "test", cfg.size, n=cfg.n_test)
        return train, test, f"real files in {cfg.data_dir}"
    train = generate_warcraft(cfg.n_train, cfg.size, seed=cfg.seed)
    test = generate_warcraft(cfg.n_test, cfg.size, seed=cfg.seed + 10_007)
    return train, test, "generated (discreteopt.data.warcraft)"


class ImageBatcher:
    """Keeps the maps as uint8 ``[N, 3, 8k, 8k]`` on ``device`` and yields standardised float batches."""

    def __init__(self, data: WarcraftData, device: torch.device, mean: torch.Tensor, std: torch.Tensor):
        maps = torch.from_numpy(np.ascontiguousarray(data.maps)).permute(0, 3, 1, 2)  # [N,8k,8k,3]->[N,3,8k,8k]
        self.maps = maps.contiguous().to(device)
        self.paths = torch.from_numpy(data.paths).to(device)
        self.weights = torch.from_numpy(data.weights)
        self.mean = mean.to(device).view(1, 3, 1, 1)
        self.std = std.to(device).view(1, 3, 1, 1)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.maps[idx.to(self.maps.device)].float().div_(255.0)  # [b, 3, 8k, 8k]
        return (x - self.mean) / self.std


def channel_stats(data: WarcraftData) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the training maps in ``[0, 1]`` units."""
    x = data.maps.reshape(-1, 3).astype(np.float64) / 255.0  # [N*8k*8k, 3]
    return torch.tensor(x.mean(0), dtype=torch.float32), torch.tensor(x.std(0) + 1e-6, dtype=torch.float32)


# ------------------------------------------------------------------------------------------------ model
def make_executor(workers: int):
    """``Inline()`` for ``workers == 0``, else a persistent process pool of ``workers`` solver processes."""
    from .. import executors

    if workers == 0:
        return executors.Inline()
    if not hasattr(executors, "Processes"):
        raise RuntimeError("workers > 0 needs discreteopt.executors.Processes, which this install lacks; "
                           "use workers=0")
    return executors.Processes(workers)


def make_objective(cfg: RouteConfig, solver, executor):
    """``objective(costs [B,k,k], true_paths [B,k,k]) -> scalar loss`` for the chosen estimator.

    * ``imle``: I-MLE, Sum-of-Gamma noise with ``k`` = grid side (paths have about ``k`` vertices), step ``lam``;
    * ``aimle``: adaptive I-MLE (lambda tracks a target gradient sparsity);
    * ``blackbox``: interpolation (Vlastelica et al.) with ``lam``;
    * ``perturbed``: perturbed optimizer (Berthet et al.), multiplicative log-normal noise ``sigma`` (costs stay
      positive), ``samples``;
    * ``st``: straight-through (identity backward);
    * ``score``: score function on the noise, leave-one-out baseline (``samples >= 2``);
    all of these with the Hamming loss to the true path; ``fy``: the Fenchel-Young loss of the perturbed solver.
    """
    from .. import estimators as est
    from .. import losses, noise
    from ..layers import DiscreteLayer, score_function_loss

    name = cfg.estimator
    sigma = cfg.sigma if cfg.sigma is not None else DEFAULT_SIGMA[name]
    if name in ("fy", "perturbed"):
        # multiplicative perturbation keeps the costs positive: no clamping, an exact smoothed map
        perturbed = est.PerturbedOptimizer(sigma=sigma, samples=cfg.samples, noise="normal", multiplicative=True)
        if name == "fy":
            fy = losses.FenchelYoungLoss(DiscreteLayer(solver, perturbed, executor=executor))
            return lambda costs, true: fy(costs, true)
        estimator = perturbed
    elif name == "imle":
        estimator = est.IMLE(lam=cfg.lam, samples=cfg.samples,
                             noise=noise.SumOfGamma(k=cfg.size, n_iter=10, scale=sigma))
    elif name == "aimle":
        estimator = est.AIMLE(samples=cfg.samples, noise=noise.SumOfGamma(k=cfg.size, n_iter=10, scale=sigma))
    elif name == "blackbox":
        estimator = est.Interpolation(lam=cfg.lam)
    elif name == "st":
        estimator = est.StraightThrough()
    else:  # score: REINFORCE on the per-sample Hamming loss (a black box), leave-one-out baseline
        layer = DiscreteLayer(solver, est.ScoreFunction(sigma=sigma, samples=max(cfg.samples, 2)), executor=executor)

        def score_loss(costs, true):
            per_sample = lambda y: (y != true.unsqueeze(1)).flatten(2).float().mean(2)  # noqa: E731 [B,S,k,k]->[B,S]
            return score_function_loss(layer, costs, per_sample)
        return score_loss
    layer = DiscreteLayer(solver, estimator, executor=executor)
    hamming = losses.HammingLoss()
    return lambda costs, true: hamming(layer(costs), true)


# ------------------------------------------------------------------------------------------------ loop
@torch.no_grad()
def predict(model: torch.nn.Module, batcher: ImageBatcher, solver, executor, batch_size: int):
    """Predicted costs and noise-free predicted paths for all maps (paths solved on CPU)."""
    model.eval()
    costs, paths = [], []
    for idx in batches(len(batcher.maps), batch_size):
        c = model(batcher.images(idx)).float().cpu()  # [b, k, k]
        costs.append(c)
        paths.append(executor.solve(solver, c.double()).float())
    return torch.cat(costs), torch.cat(paths)


def evaluate(model, batcher: ImageBatcher, solver, executor, batch_size: int) -> dict[str, float]:
    _, pred = predict(model, batcher, solver, executor, batch_size)
    return shortest_path_metrics(pred, batcher.weights, batcher.paths.cpu())


def train_route(cfg: RouteConfig) -> dict[str, Any]:
    """Train and evaluate; write ``route_<estimator>.json`` and PNG figures under ``cfg.out``; return results."""
    cfg.validate()
    from ..solvers import GridShortestPath

    device = resolve_device(cfg.device)
    gen = seed_everything(cfg.seed)
    t0 = time.perf_counter()
    train, test, source = load_data(cfg)
    t_data = time.perf_counter() - t0
    mean, std = channel_stats(train)
    tr, te = ImageBatcher(train, device, mean, std), ImageBatcher(test, device, mean, std)

    solver = GridShortestPath(neighbourhood=8)
    executor = make_executor(cfg.workers)
    model = CombResNet(grid_size=cfg.size, width=cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    milestones = [int(cfg.epochs * 0.6), int(cfg.epochs * 0.8)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[m for m in milestones if m > 0], gamma=0.1)
    objective = make_objective(cfg, solver, executor)

    history: dict[str, list[float]] = {"train_loss": [], "test_cost_optimal_accuracy": []}
    t1 = time.perf_counter()
    try:
        for epoch in progress(range(cfg.epochs), cfg.progress, desc=f"route[{cfg.estimator}] epochs"):
            model.train()
            losses = []
            steps = batches(len(train), cfg.batch_size, gen)
            if cfg.max_steps is not None:
                steps = steps[: cfg.max_steps]
            for idx in progress(steps, cfg.progress, desc=f"epoch {epoch + 1}"):
                costs = model(tr.images(idx))  # [b, k, k]
                loss = objective(costs, tr.paths[idx.to(device)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            sched.step()
            history["train_loss"].append(float(np.mean(losses)))
            metrics = evaluate(model, te, solver, executor, 4 * cfg.batch_size)
            history["test_cost_optimal_accuracy"].append(metrics["cost_optimal_accuracy"])
        t_train = time.perf_counter() - t1
        train_metrics = evaluate(model, ImageBatcher(train.subset(min(len(train), 1000)), device, mean, std),
                                 solver, executor, 4 * cfg.batch_size)
        costs, pred = predict(model, te, solver, executor, 4 * cfg.batch_size)
    finally:
        executor.close()
    test_metrics = shortest_path_metrics(pred, te.weights, te.paths.cpu())
    result = {
        "task": "warcraft_route", "estimator": cfg.estimator, "data": source, "grid": f"{cfg.size}x{cfg.size}",
        "n_train": len(train), "n_test": len(test), "device": str(device),
        "config": dataclasses.asdict(cfg), "train": train_metrics, "test": test_metrics, "history": history,
        "seconds": {"data": round(t_data, 2), "train": round(t_train, 2)},
    }
    if cfg.out:
        out = Path(cfg.out)
        result["files"] = {
            "json": str(out / f"route_{cfg.estimator}.json"),
            "figure": str(plot_paths(test, pred.numpy(), costs.numpy(), out / f"route_{cfg.estimator}.png")),
            "curves": str(plot_curves({"train Hamming/FY loss": history["train_loss"]}, out /
                                      f"route_{cfg.estimator}_loss.png", "epoch", "loss",
                                      f"Warcraft {cfg.size}x{cfg.size}, {cfg.estimator}")),
        }
        save_json(result, out / f"route_{cfg.estimator}.json")
    return result


def results_table(result: dict[str, Any]) -> str:
    """Train/test metrics of one run as a text table."""
    rows = [{"split": split, "estimator": result["estimator"], **result[split]} for split in ("train", "test")]
    return format_table(rows, ["split", "estimator", "cost_optimal_accuracy", "exact_match_accuracy", "cost_ratio"])


# ------------------------------------------------------------------------------------------------ figure
def plot_paths(data: WarcraftData, pred: np.ndarray, costs: np.ndarray, path: str | Path, n: int = 4) -> Path:
    """Figure: for ``n`` test maps, the map with the true (white) and predicted (red) paths, and the predicted
    costs next to the true ones."""
    plt = pyplot()
    n = min(n, len(data))
    k = data.size
    fig, axes = plt.subplots(3, n, figsize=(3.0 * n, 9.0), squeeze=False)
    centres = (np.arange(k) + 0.5) * 8 - 0.5  # tile centres in pixels

    def draw(ax, mask, colour, marker, size):
        r, c = np.nonzero(mask > 0.5)
        ax.scatter(centres[c], centres[r], s=size, c=colour, marker=marker, edgecolors="black", linewidths=0.5)

    for i in range(n):
        ok = abs(float((data.weights[i] * pred[i]).sum()) - float((data.weights[i] * data.paths[i]).sum())) <= 1e-5 * float((data.weights[i] * data.paths[i]).sum())
        ax = axes[0, i]
        ax.imshow(data.maps[i])
        draw(ax, data.paths[i], "white", "o", 60)
        draw(ax, pred[i], "red", "x", 30)
        ax.set_title(f"map {i}: {'cost-optimal' if ok else 'suboptimal'}", fontsize=9)
        axes[1, i].imshow(data.weights[i], cmap="viridis", vmin=0.0, vmax=9.5)
        axes[1, i].set_title("true costs", fontsize=9)
        axes[2, i].imshow(costs[i], cmap="viridis")
        axes[2, i].set_title("predicted costs", fontsize=9)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Warcraft shortest paths: true (white o) vs predicted (red x)")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
