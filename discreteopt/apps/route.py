"""Learning to route: Warcraft shortest paths from map images (Vlastelica et al., ICLR 2020).

A :class:`~discreteopt.models.CombResNet` maps an image ``[B, 3, 8k, 8k]`` to vertex costs ``[B, k, k]``; a
:class:`~discreteopt.layers.DiscreteLayer` around :class:`~discreteopt.solvers.GridShortestPath` turns them into a
path mask ``[B, k, k]``; the loss compares it with the true path (Hamming loss), or -- for ``fy`` -- the
Fenchel-Young loss of the perturbed solver is used directly on the costs. The network runs on ``device``; the
solver runs on CPU workers through the executor (``workers > 0``: a process pool).

Evaluation solves the *predicted* costs without noise and scores the path with the *true* vertex weights:
cost-optimal accuracy (the number the papers report), exact match and cost ratio
(:func:`discreteopt.metrics.shortest_path_metrics`).

Entry points: :func:`train_route` (one estimator), :func:`run_route` (``discreteopt route``: one or several
estimators on the same data), :func:`results_table`; :data:`PRESETS` holds the published protocol (``paper``)
and the setting that reaches the published I-MLE accuracy on generated maps (``large``); measured numbers are in
the README (section "Learning to route").
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.warcraft import STYLES, TILE, WarcraftData, generate_warcraft, load_warcraft
from ..metrics import path_cost, shortest_path_metrics
from ..models import CombResNet
from .common import (
    batches,
    format_table,
    plot_curves,
    plot_panels,
    progress,
    pyplot,
    resolve_device,
    save_figure,
    save_json,
    seed_everything,
)

ESTIMATORS = ("imle", "aimle", "blackbox", "perturbed", "fy", "st", "score")
#: noise scale per estimator when ``--sigma`` is not given (Sum-of-Gamma temperature for I-MLE / AIMLE, log-normal
#: ``sigma`` of the multiplicative perturbation for perturbed / Fenchel-Young, additive normal for the score function).
#: The network's costs are of order 1; on generated 12x12 maps (10000, 50 epochs, H100) I-MLE reached
#: 95.9 / 92.9 / 89.1 / 83.0 % test cost-optimal accuracy with temperature 0.03 / 0.1 / 0.3 / 1.0.
DEFAULT_SIGMA = {"imle": 0.03, "aimle": 0.03, "blackbox": 1.0, "perturbed": 0.5, "fy": 0.5, "st": 1.0,
                 "score": 0.5}
#: noise samples per map when ``--samples`` is not given (Monte-Carlo estimators need several)
DEFAULT_SAMPLES = {"imle": 1, "aimle": 1, "blackbox": 1, "perturbed": 10, "fy": 10, "st": 1, "score": 10}


@dataclasses.dataclass
class RouteConfig:
    """Settings of one Warcraft run (the CLI's ``discreteopt route`` options).

    The defaults are a CPU demo (a few minutes on 2 cores); ``PRESETS["paper"]`` holds the published protocol.
    """

    #: estimator: imle, aimle, blackbox, perturbed, fy, st or score; the CLI also takes a comma-separated list
    #: or 'all' and trains one network per estimator
    estimator: str = "imle"
    #: grid side k (maps are 8k x 8k pixels; the published sizes are 12, 18, 24, 30)
    size: int = 12
    n_train: int = 2000
    #: validation maps, scored after every epoch (learning curve)
    n_val: int = 200
    n_test: int = 500
    epochs: int = 6
    batch_size: int = 70
    lr: float = 1e-3
    #: finite-difference step of I-MLE / blackbox (initial step of AIMLE); the loss is the Hamming distance
    #: summed over vertices and averaged over the batch, as in the blackbox-backprop code, so that the
    #: published lam = 20 at batch size 70 keeps its meaning
    lam: float = 20.0
    #: noise scale (none: the estimator's default, see DEFAULT_SIGMA)
    sigma: float | None = None
    #: noise samples per map (none: the estimator's default, see DEFAULT_SAMPLES; score function: >= 2)
    samples: int | None = None
    #: channels of the CombResNet (ResNet18's first stage has 64)
    width: int = 32
    #: solver worker processes (0: solve in the main process)
    workers: int = 0
    #: device of the network: cpu, cuda, cuda:N or auto (solvers always run on CPU)
    device: str = "cpu"
    #: look of generated maps: tileset (fixed tile variants per terrain, like the published maps) or
    #: procedural (every tile textured independently: harder)
    map_style: str = "tileset"
    #: folder with the real {train,val,test}_maps.npy, _vertex_weights.npy, _shortest_paths.npy files (or
    #: its {size}x{size} sub-folder); none: generated maps
    data_dir: str | None = None
    #: output folder for JSON and PNG files (none: write nothing)
    out: str | None = "runs/route"
    seed: int = 0
    #: progress bars on stderr
    progress: bool = True
    #: stop each epoch after this many steps (smoke runs); none = full epochs
    max_steps: int | None = None

    def estimators(self) -> list[str]:
        """The estimator names of ``estimator`` (a name, a comma-separated list or ``all``)."""
        names = list(ESTIMATORS) if self.estimator == "all" else [e.strip() for e in self.estimator.split(",")]
        bad = [e for e in names if e not in ESTIMATORS]
        if bad or not names:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, a comma-separated list of "
                             f"them or 'all'; got {self.estimator!r}")
        return list(dict.fromkeys(names))

    def validate(self) -> None:
        self.estimators()
        if self.map_style not in STYLES:
            raise ValueError(f"map_style must be one of {', '.join(STYLES)}; got {self.map_style!r}")
        for name in ("size", "n_train", "n_test", "epochs", "batch_size", "width"):
            if isinstance(getattr(self, name), bool) or int(getattr(self, name)) < (2 if name == "size" else 1):
                raise ValueError(f"{name} must be >= {2 if name == 'size' else 1}; got {getattr(self, name)}")
        if self.n_val < 0:
            raise ValueError(f"n_val must be >= 0 (0: no learning curve); got {self.n_val}")
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"samples must be >= 1; got {self.samples}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or none; got {self.max_steps}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = solve in the main process); got {self.workers}")
        for name in ("lr", "lam", "sigma"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(float(v)) and float(v) > 0):
                raise ValueError(f"{name} must be a positive finite number; got {v}")
        resolve_device(self.device)

    def for_estimator(self, name: str) -> RouteConfig:
        """A copy for one estimator."""
        return dataclasses.replace(self, estimator=name)


#: ``discreteopt route --preset NAME``:
#: ``paper`` = the published protocol (Vlastelica et al. 2020; Niepert et al. 2021: 10000 training maps, 50 epochs,
#: Adam 5e-4 with x0.1 at epochs 30 and 40, batch 70, lam 20, ResNet18 width 64), for a GPU;
#: ``large`` = the same number of steps over 30000 generated maps (17 epochs), 5000 test maps: I-MLE reaches the
#: published accuracy on generated maps (about 2 minutes of training on an H100);
#: ``smoke`` = a few steps on tiny data (tests)
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"n_train": 10000, "n_val": 1000, "n_test": 1000, "epochs": 50, "batch_size": 70, "lr": 5e-4,
              "lam": 20.0, "width": 64},
    "large": {"n_train": 30000, "n_val": 1000, "n_test": 5000, "epochs": 17, "batch_size": 70, "lr": 5e-4,
              "lam": 20.0, "width": 64},
    "smoke": {"n_train": 40, "n_val": 20, "n_test": 20, "epochs": 2, "batch_size": 10, "width": 8,
              "max_steps": 3, "progress": False},
}


# ------------------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class RouteData:
    """The three splits of a run and where they come from."""

    train: WarcraftData
    val: WarcraftData | None
    test: WarcraftData
    source: str
    seconds: float


def load_data(cfg: RouteConfig) -> RouteData:
    """Train, validation and test splits: the real files under ``cfg.data_dir``, else the seeded generator
    (three disjoint seeds)."""
    t0 = time.perf_counter()
    if cfg.data_dir:
        train = load_warcraft(cfg.data_dir, "train", cfg.size, n=cfg.n_train)
        val = load_warcraft(cfg.data_dir, "val", cfg.size, n=cfg.n_val) if cfg.n_val else None
        test = load_warcraft(cfg.data_dir, "test", cfg.size, n=cfg.n_test)
        source = f"real files in {cfg.data_dir}"
    else:
        gen = functools.partial(generate_warcraft, size=cfg.size, style=cfg.map_style)
        train = gen(cfg.n_train, seed=cfg.seed)
        val = gen(cfg.n_val, seed=cfg.seed + 20_011) if cfg.n_val else None
        test = gen(cfg.n_test, seed=cfg.seed + 10_007)
        source = f"generated (discreteopt.data.warcraft, {cfg.map_style} style)"
    return RouteData(train, val, test, source, time.perf_counter() - t0)


class ImageBatcher:
    """Keeps the maps as uint8 ``[N, 3, 8k, 8k]`` on ``device`` and yields standardised float batches."""

    def __init__(self, data: WarcraftData, device: torch.device, mean: torch.Tensor, std: torch.Tensor):
        maps = torch.from_numpy(np.ascontiguousarray(data.maps)).permute(0, 3, 1, 2)  # [N,8k,8k,3]->[N,3,8k,8k]
        self.maps = maps.contiguous().to(device)
        self.paths = torch.from_numpy(data.paths).to(device)  # [N, k, k]
        self.weights = torch.from_numpy(data.weights)  # [N, k, k] (CPU: scoring only)
        self.mean = mean.to(device).view(1, 3, 1, 1)
        self.std = std.to(device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.maps)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.maps[idx.to(self.maps.device)].float().div_(255.0)  # [b, 3, 8k, 8k]
        return (x - self.mean) / self.std


def channel_stats(data: WarcraftData) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the training maps in ``[0, 1]`` units."""
    x = data.maps.reshape(-1, 3).astype(np.float64) / 255.0  # [N, 8k, 8k, 3] -> [N*8k*8k, 3]
    return torch.tensor(x.mean(0), dtype=torch.float32), torch.tensor(x.std(0) + 1e-6, dtype=torch.float32)


# ------------------------------------------------------------------------------------------------ model
def make_executor(workers: int):
    """``Inline()`` for ``workers == 0``, else a persistent pool of ``workers`` solver processes."""
    from ..executors.base import Inline

    if workers == 0:
        return Inline()
    from ..executors.processes import Processes

    return Processes(workers)


def hamming_sum(y: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Hamming distance summed over the ``k x k`` vertices: ``y [*L, k, k]``, ``true`` broadcastable -> ``[*L]``.

    ``k * k`` times :class:`~discreteopt.losses.HammingLoss` (which averages over vertices); linear in ``y``.
    """
    from ..losses import HammingLoss

    event = y.shape[-2:]
    flat = HammingLoss(reduction="none")(y.reshape(-1, *event), true.expand_as(y).reshape(-1, *event))  # [prod L]
    return flat.reshape(y.shape[:-2]) * (event[0] * event[1])


def make_objective(name: str, cfg: RouteConfig, solver, executor):
    """``objective(costs [B,k,k], true_paths [B,k,k]) -> scalar loss`` for the estimator ``name``.

    * ``imle``: I-MLE (Niepert et al. 2021), Sum-of-Gamma noise with ``k`` = grid side (a path has about ``k``
      vertices) and temperature ``sigma``, step ``lam``;
    * ``aimle``: adaptive I-MLE (Minervini et al. 2023), same noise, ``lam`` adapted from its initial value;
    * ``blackbox``: interpolation (Vlastelica et al. 2020) with ``lam``;
    * ``perturbed``: perturbed optimizer (Berthet et al. 2020) with multiplicative log-normal noise ``sigma`` (costs
      stay positive, so the solver sees the exact perturbed problem), ``samples``;
    * ``st``: straight-through (identity backward);
    * ``score``: score function on additive normal noise ``sigma``, leave-one-out baseline, ``samples >= 2``;

    all of these minimise the Hamming distance to the true path, summed over vertices and averaged over the batch
    (:func:`hamming_sum`); ``fy``: the Fenchel-Young loss of the multiplicatively perturbed solver.
    """
    from .. import estimators as est
    from .. import losses, noise
    from ..layers import DiscreteLayer, score_function_loss

    sigma = cfg.sigma if cfg.sigma is not None else DEFAULT_SIGMA[name]
    samples = cfg.samples if cfg.samples is not None else DEFAULT_SAMPLES[name]
    if name in ("fy", "perturbed"):
        perturbed = est.PerturbedOptimizer(sigma=sigma, samples=samples, noise="normal", multiplicative=True)
        if name == "fy":
            fy = losses.FenchelYoungLoss(DiscreteLayer(solver, perturbed, executor=executor))
            return lambda costs, true: fy(costs, true)
        estimator = perturbed
    elif name in ("imle", "aimle"):
        sog = noise.SumOfGamma(k=cfg.size, n_iter=10, scale=sigma)
        estimator = est.IMLE(lam=cfg.lam, samples=samples, noise=sog) if name == "imle" else \
            est.AIMLE(samples=samples, noise=sog, initial_lam=cfg.lam)
    elif name == "blackbox":
        estimator = est.Interpolation(lam=cfg.lam)
    elif name == "st":
        estimator = est.StraightThrough()
    else:  # score: REINFORCE on the per-sample Hamming distance (a black box), leave-one-out baseline
        layer = DiscreteLayer(solver, est.ScoreFunction(sigma=sigma, samples=max(samples, 2)), executor=executor)

        def score_loss(costs, true):
            return score_function_loss(layer, costs, lambda y: hamming_sum(y, true.unsqueeze(1)))  # y [B, S, k, k]
        return score_loss
    layer = DiscreteLayer(solver, estimator, executor=executor)
    return lambda costs, true: hamming_sum(layer(costs), true).mean()


# ------------------------------------------------------------------------------------------------ loop
@torch.no_grad()
def predict(model: torch.nn.Module, batcher: ImageBatcher, solver, executor, batch_size: int):
    """Predicted costs ``[N, k, k]`` and noise-free predicted paths ``[N, k, k]`` (solved on CPU)."""
    model.eval()
    costs, paths = [], []
    for idx in batches(len(batcher), batch_size):
        c = model(batcher.images(idx)).float().cpu()  # [b, k, k]
        costs.append(c)
        paths.append(executor.solve(solver, c.double()).float())
    return torch.cat(costs), torch.cat(paths)


def evaluate(model, batcher: ImageBatcher, solver, executor, batch_size: int) -> dict[str, float]:
    """Cost-optimal accuracy, exact match and cost ratio of the noise-free predicted paths."""
    _, pred = predict(model, batcher, solver, executor, batch_size)
    return shortest_path_metrics(pred, batcher.weights, batcher.paths.cpu())


def train_route(cfg: RouteConfig, data: RouteData | None = None, executor=None) -> dict[str, Any]:
    """Train and evaluate one estimator; write ``route_<estimator>.json`` and PNG figures under ``cfg.out``.

    ``data`` (default: :func:`load_data`) and ``executor`` (default: :func:`make_executor`, closed at the end)
    can be shared between runs.
    """
    cfg.validate()
    names = cfg.estimators()
    if len(names) != 1:
        raise ValueError(f"train_route trains one estimator; got {cfg.estimator!r} (run_route trains several)")
    name = names[0]
    from ..solvers import GridShortestPath

    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = load_data(cfg) if data is None else data
    gen = seed_everything(cfg.seed)
    mean, std = channel_stats(data.train)
    tr = ImageBatcher(data.train, device, mean, std)
    va = ImageBatcher(data.val, device, mean, std) if data.val is not None else None
    te = ImageBatcher(data.test, device, mean, std)

    solver = GridShortestPath(neighbourhood=8)
    own_executor = executor is None
    executor = make_executor(cfg.workers) if own_executor else executor
    model = CombResNet(grid_size=cfg.size, width=cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # x0.1 at 60% and 80% of training (epochs 30 and 40 of 50 in the published protocol)
    milestones = sorted({m for m in (int(cfg.epochs * 0.6), int(cfg.epochs * 0.8)) if m > 0})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    objective = make_objective(name, cfg, solver, executor)
    eval_batch = 4 * cfg.batch_size

    history: dict[str, list[float]] = {"train_loss": [], "val_cost_optimal_accuracy": [], "epoch_seconds": []}
    steps_done = 0
    t1 = time.perf_counter()
    try:
        epoch_bar = progress(range(cfg.epochs), cfg.progress, desc=f"route[{name}] epochs")
        for epoch in epoch_bar:
            t_epoch = time.perf_counter()
            model.train()
            losses = []
            steps = batches(len(tr), cfg.batch_size, gen)
            if cfg.max_steps is not None:
                steps = steps[: cfg.max_steps]
            for idx in progress(steps, cfg.progress, desc=f"epoch {epoch + 1}/{cfg.epochs}"):
                costs = model(tr.images(idx))  # [b, k, k]
                loss = objective(costs, tr.paths[idx.to(device)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            steps_done += len(steps)
            sched.step()
            history["train_loss"].append(float(np.mean(losses)))
            if va is not None:
                history["val_cost_optimal_accuracy"].append(
                    evaluate(model, va, solver, executor, eval_batch)["cost_optimal_accuracy"])
            history["epoch_seconds"].append(round(time.perf_counter() - t_epoch, 3))
            if hasattr(epoch_bar, "set_postfix"):
                val = history["val_cost_optimal_accuracy"][-1:] or [float("nan")]
                epoch_bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", val_acc=f"{val[0]:.3f}")
        t_train = time.perf_counter() - t1
        train_metrics = evaluate(model, ImageBatcher(data.train.subset(min(len(tr), 1000)), device, mean, std),
                                 solver, executor, eval_batch)
        costs, pred = predict(model, te, solver, executor, eval_batch)
    finally:
        if own_executor:
            executor.close()
    test_metrics = shortest_path_metrics(pred, te.weights, te.paths.cpu())
    result = {
        "task": "warcraft_route", "estimator": name, "data": data.source, "grid": f"{cfg.size}x{cfg.size}",
        "n_train": len(data.train), "n_val": 0 if data.val is None else len(data.val), "n_test": len(data.test),
        "device": str(device), "workers": cfg.workers, "config": dataclasses.asdict(cfg),
        "train": train_metrics, "test": test_metrics, "history": history,
        "seconds": {"data": round(data.seconds, 2), "train": round(t_train, 2),
                    "per_step": round(t_train / max(steps_done, 1), 4)},
        "steps": steps_done,
    }
    if cfg.out:
        out = Path(cfg.out)
        panels = [({"train": history["train_loss"]}, "loss (Hamming or Fenchel-Young)")]
        if history["val_cost_optimal_accuracy"]:
            panels.append(({"validation": history["val_cost_optimal_accuracy"]}, "cost-optimal accuracy"))
        result["files"] = {
            "json": str(out / f"route_{name}.json"),
            "figure": str(plot_paths(data.test, pred.numpy(), costs.numpy(), out / f"route_{name}.png")),
            "curves": str(plot_panels(panels, out / f"route_{name}_curves.png", "epoch",
                                      f"Warcraft {cfg.size}x{cfg.size}, {name}")),
        }
        save_json(result, out / f"route_{name}.json")
    return result


def run_route(cfg: RouteConfig) -> dict[str, Any]:
    """``discreteopt route``: :func:`train_route` for each estimator of ``cfg.estimator`` on the same data and
    solver workers. One estimator: its result; several: ``{"runs": [...], "rows": [...]}`` plus a summary JSON
    and a figure of the validation curves."""
    cfg.validate()
    names = cfg.estimators()
    if len(names) == 1:
        return train_route(cfg)
    data = load_data(cfg)
    executor = make_executor(cfg.workers)
    try:
        runs = [train_route(cfg.for_estimator(n), data, executor) for n in names]
    finally:
        executor.close()
    rows = [{"estimator": r["estimator"], **r["test"], "train_seconds": r["seconds"]["train"]} for r in runs]
    result: dict[str, Any] = {"task": "warcraft_route", "data": data.source, "grid": f"{cfg.size}x{cfg.size}",
                              "config": dataclasses.asdict(cfg), "rows": rows, "runs": runs}
    if cfg.out:
        out = Path(cfg.out)
        curves = {r["estimator"]: r["history"]["val_cost_optimal_accuracy"] for r in runs}
        result["files"] = {"json": str(out / "route_summary.json")}
        if any(curves.values()):
            result["files"]["curves"] = str(plot_curves(curves, out / "route_summary_curves.png", "epoch",
                                                        "validation cost-optimal accuracy",
                                                        f"Warcraft {cfg.size}x{cfg.size}"))
        save_json({k: v for k, v in result.items() if k != "runs"}, out / "route_summary.json")
    return result


COLUMNS = ["cost_optimal_accuracy", "exact_match_accuracy", "cost_ratio"]


def results_table(result: dict[str, Any]) -> str:
    """Test metrics per estimator (several runs), or train/test metrics of one run, as a text table."""
    if "runs" in result:
        return format_table(result["rows"], ["estimator", *COLUMNS, "train_seconds"])
    rows = [{"split": split, "estimator": result["estimator"], **result[split]} for split in ("train", "test")]
    return format_table(rows, ["split", "estimator", *COLUMNS])


# ------------------------------------------------------------------------------------------------ figure
def plot_paths(data: WarcraftData, pred: np.ndarray, costs: np.ndarray, path: str | Path, n: int = 4) -> Path:
    """Figure: for ``n`` test maps, the map with the true (white circles) and predicted (red crosses) paths,
    the true vertex costs and the predicted costs."""
    plt = pyplot()
    n = min(n, len(data))
    k = data.size
    fig, axes = plt.subplots(3, n, figsize=(3.0 * n, 9.0), squeeze=False)
    centres = (np.arange(k) + 0.5) * TILE - 0.5  # tile centres in pixels
    c_true = path_cost(data.weights[:n], data.paths[:n])  # [n]
    c_pred = path_cost(data.weights[:n], pred[:n])  # [n]
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(data.maps[i])
        r, c = np.nonzero(data.paths[i] > 0.5)
        ax.scatter(centres[c], centres[r], s=60, c="white", marker="o", edgecolors="black", linewidths=0.5)
        r, c = np.nonzero(pred[i] > 0.5)
        ax.scatter(centres[c], centres[r], s=30, c="red", marker="x")
        ok = abs(float(c_pred[i] - c_true[i])) <= 1e-5 * float(c_true[i])
        ax.set_title(f"map {i}: cost {float(c_pred[i]):.1f} vs {float(c_true[i]):.1f}"
                     f"{'' if ok else ' (suboptimal)'}", fontsize=8)
        axes[1, i].imshow(data.weights[i], cmap="viridis", vmin=0.0, vmax=9.5)
        axes[1, i].set_title("true costs", fontsize=9)
        axes[2, i].imshow(costs[i], cmap="viridis")
        axes[2, i].set_title("predicted costs", fontsize=9)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Warcraft shortest paths: true (white o) vs predicted (red x)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
