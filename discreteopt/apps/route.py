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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.warcraft import STYLES, TILE, WarcraftData, generate_warcraft, load_warcraft
from ..metrics import path_cost, shortest_path_metrics
from ..models import CombResNet
from .common import (
    Column,
    Panel,
    batches,
    format_table,
    percent,
    plot_curves,
    plot_panels,
    progress,
    pyplot,
    resolve_device,
    save_figure,
    save_json,
    seconds,
    seed_everything,
)

ESTIMATORS = ("imle", "aimle", "blackbox", "perturbed", "fy", "st", "score")
#: noise scale per estimator when ``scale`` is not given (Sum-of-Gamma temperature for I-MLE / AIMLE, log-normal
#: ``scale`` of the multiplicative perturbation for perturbed / Fenchel-Young, additive normal for the score
#: function; blackbox and straight-through use no noise). The network's costs are of order 1; on generated 12x12
#: maps (10000, 50 epochs, H100) I-MLE reached 95.9 / 92.9 / 89.1 / 83.0 % test cost-optimal accuracy with
#: temperature 0.03 / 0.1 / 0.3 / 1.0.
DEFAULT_SCALE = {"imle": 0.03, "aimle": 0.03, "perturbed": 0.5, "fy": 0.5, "score": 0.5}
#: noise samples per map when ``samples`` is not given (Monte-Carlo estimators need several)
DEFAULT_SAMPLES = {"imle": 1, "aimle": 1, "blackbox": 1, "perturbed": 10, "fy": 10, "st": 1, "score": 10}
#: what each estimator's training loss is (the y-axis of the learning curve)
LOSS_NAMES = {"fy": "Fenchel-Young loss", "score": "Hamming distance (tiles, mean of samples)"}
#: the loss of every other estimator: tiles on exactly one of the predicted and the true path, per map
HAMMING = "Hamming distance (tiles)"


def _names(value: Any) -> tuple[str, ...]:
    """``"imle,fy"`` or ``("imle", "fy")`` -> ``("imle", "fy")`` (a string is split at commas)."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@dataclasses.dataclass
class RouteConfig:
    """Settings of one Warcraft run (the options of ``discreteopt route``).

    The defaults are a CPU demo (about a minute on 2 cores); :data:`PRESETS` holds the published protocol
    (``paper``), a larger GPU run (``large``) and a seconds-long check (``quick``).

    Example::

        cfg = RouteConfig(estimators=("imle", "blackbox"), epochs=2, out=None)
        result = run_route(cfg)          # result["rows"]: test metrics per estimator
    """

    #: estimators to train, one network each, on the same maps: imle, aimle, blackbox, perturbed, fy, st, score,
    #: or ``("all",)``; a comma-separated string is accepted too
    estimators: tuple[str, ...] = ("imle",)
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
    #: noise scale (None: the estimator's default, :data:`DEFAULT_SCALE`)
    scale: float | None = None
    #: noise samples per map (None: the estimator's default, :data:`DEFAULT_SAMPLES`; score function: >= 2)
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
    #: its {size}x{size} sub-folder); None: generated maps
    data_dir: str | None = None
    #: output folder for JSON and PNG files (None: write nothing)
    out: str | None = "runs/route"
    seed: int = 0
    #: progress bars on stderr
    progress: bool = True
    #: stop each epoch after this many steps (smoke runs); None = full epochs
    max_steps: int | None = None

    def __post_init__(self) -> None:
        self.estimators = _names(self.estimators)

    def names(self) -> list[str]:
        """The estimator names (``all`` expanded, repeats dropped), checked."""
        names = list(ESTIMATORS) if self.estimators == ("all",) else list(self.estimators)
        bad = [e for e in names if e not in ESTIMATORS]
        if bad or not names:
            raise ValueError(f"estimators must be among {', '.join(ESTIMATORS)} (or 'all'); got "
                             f"{', '.join(self.estimators) or 'none'}")
        return list(dict.fromkeys(names))

    def validate(self) -> None:
        self.names()
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
            raise ValueError(f"max_steps must be >= 1 or None; got {self.max_steps}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = solve in the main process); got {self.workers}")
        for name in ("lr", "lam", "scale"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(float(v)) and float(v) > 0):
                raise ValueError(f"{name} must be a positive finite number; got {v}")
        resolve_device(self.device)

    def for_estimator(self, name: str) -> RouteConfig:
        """A copy for one estimator."""
        return dataclasses.replace(self, estimators=(name,))


#: ``discreteopt route --preset NAME`` (options given explicitly override the preset):
#: ``quick`` = a check that everything runs (400 small maps, 2 epochs, a narrow network: seconds on a CPU);
#: ``default`` = the defaults above (the CPU demo, ``make demo``);
#: ``large`` = the same number of steps as ``paper`` over 30000 generated maps (17 epochs), 5000 test maps: I-MLE
#: reaches the published accuracy on generated maps (about 2 minutes of training on an H100);
#: ``paper`` = the published protocol (Vlastelica et al. 2020; Niepert et al. 2021: 10000 training maps, 50 epochs,
#: Adam 5e-4 with x0.1 at epochs 30 and 40, batch 70, lam 20, ResNet18 width 64), for a GPU
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"n_train": 400, "n_val": 50, "n_test": 100, "epochs": 2, "batch_size": 50, "width": 16},
    "default": {},
    "large": {"n_train": 30000, "n_val": 1000, "n_test": 5000, "epochs": 17, "batch_size": 70, "lr": 5e-4,
              "lam": 20.0, "width": 64},
    "paper": {"n_train": 10000, "n_val": 1000, "n_test": 1000, "epochs": 50, "batch_size": 70, "lr": 5e-4,
              "lam": 20.0, "width": 64},
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


def warm_up(executor, solver, size: int) -> float:
    """Start the executor's workers and load the solver in each of them; return the seconds it took.

    ``Processes`` starts its workers lazily, and each worker builds the solver (and loads its compiled kernel)
    on its first task: without this, all of that lands in the first training step. A pool is started and
    waited for (``start()``), then it solves two batches of one random ``size x size`` instance per worker, as
    :meth:`~discreteopt.executors.Auto.calibrate` does (the executors offer no public warm-up of a solver);
    in-process executors solve one instance (loads the compiled kernel in this process).
    """
    t0 = time.perf_counter()
    n = max(1, int(getattr(executor, "n_workers", 1) or 1))
    start = getattr(executor, "start", None)
    if callable(start):
        start()
    theta = torch.rand(n, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    for _ in range(2 if n > 1 else 1):
        executor.solve(solver, theta)  # [n, k, k] -> [n, k, k], one instance per worker
    return time.perf_counter() - t0


def hamming_sum(y: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Hamming distance summed over the ``k x k`` vertices: ``y [*L, k, k]``, ``true`` broadcastable -> ``[*L]``.

    ``k * k`` times :class:`~discreteopt.losses.HammingLoss` (which averages over vertices); linear in ``y``.
    """
    from ..losses import HammingLoss

    event = y.shape[-2:]
    flat = HammingLoss(reduction="none")(y.reshape(-1, *event), true.expand_as(y).reshape(-1, *event))  # [prod L]
    return flat.reshape(y.shape[:-2]) * (event[0] * event[1])


class Objective:
    """``objective(costs [B,k,k], true_paths [B,k,k]) -> scalar loss``, with ``stats``: the
    :class:`~discreteopt.maximizer.SolverStats` of the layer behind it (solver calls, clamped entries)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], layer) -> None:
        self.fn, self.layer = fn, layer

    def __call__(self, costs: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        return self.fn(costs, true)

    @property
    def stats(self):
        return self.layer.stats


def make_objective(name: str, cfg: RouteConfig, solver, executor) -> Objective:
    """``objective(costs [B,k,k], true_paths [B,k,k]) -> scalar loss`` for the estimator ``name``.

    * ``imle``: I-MLE (Niepert et al. 2021), Sum-of-Gamma noise with ``k`` = grid side (a path has about ``k``
      vertices) and temperature ``scale``, step ``lam``;
    * ``aimle``: adaptive I-MLE (Minervini et al. 2023), same noise, ``lam`` adapted from its initial value;
    * ``blackbox``: interpolation (Vlastelica et al. 2020) with ``lam``;
    * ``perturbed``: perturbed optimizer (Berthet et al. 2020) with multiplicative log-normal noise ``scale`` (costs
      stay positive, so the solver sees the exact perturbed problem), ``samples``;
    * ``st``: straight-through (identity backward);
    * ``score``: score function on additive normal noise ``scale``, leave-one-out baseline, ``samples >= 2``;

    all of these minimise the Hamming distance to the true path, summed over vertices and averaged over the batch
    (:func:`hamming_sum`); ``fy``: the Fenchel-Young loss of the multiplicatively perturbed solver.

    The grid needs costs >= 0 and has no exact guard for negative ones (not shift-invariant). The additive
    perturbations (``imle``, ``aimle``, ``score``) and blackbox's target ``theta + lam dL/dy`` can go below 0;
    those entries are clamped to 0, blackbox backprop's rule (``guard=Clamp()``, chosen here knowingly instead of
    the default's warning): the fraction is reported with the results (``clamped_fraction``), never hidden.
    """
    from .. import estimators as est
    from .. import losses, noise
    from ..estimators.guards import Clamp
    from ..layers import DiscreteLayer, score_function_loss

    def make_layer(estimator):
        return DiscreteLayer(solver, estimator, executor=executor, guard=Clamp())

    scale = cfg.scale if cfg.scale is not None else DEFAULT_SCALE.get(name)
    samples = cfg.samples if cfg.samples is not None else DEFAULT_SAMPLES[name]
    if name in ("fy", "perturbed"):
        perturbed = est.PerturbedOptimizer(scale=scale, samples=samples, noise="normal", multiplicative=True)
        if name == "fy":
            fy = losses.FenchelYoungLoss(make_layer(perturbed))
            return Objective(fy, fy.layer)
        estimator = perturbed
    elif name in ("imle", "aimle"):
        sog = noise.SumOfGamma(k=cfg.size, n_iter=10, scale=scale)
        estimator = est.IMLE(lam=cfg.lam, samples=samples, noise=sog) if name == "imle" else \
            est.AIMLE(samples=samples, noise=sog, initial_lam=cfg.lam)
    elif name == "blackbox":
        estimator = est.Interpolation(lam=cfg.lam)
    elif name == "st":
        estimator = est.StraightThrough()
    else:  # score: REINFORCE on the per-sample Hamming distance (a black box), leave-one-out baseline
        layer = make_layer(est.ScoreFunction(scale=scale, samples=max(samples, 2)))

        def score_loss(costs, true):
            return score_function_loss(layer, costs, lambda y: hamming_sum(y, true.unsqueeze(1)))  # y [B, S, k, k]
        return Objective(score_loss, layer)
    layer = make_layer(estimator)
    return Objective(lambda costs, true: hamming_sum(layer(costs), true).mean(), layer)


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
    can be shared between runs. The executor is warmed up (:func:`warm_up`) before the clock starts:
    ``seconds["train"]`` is training alone (epochs with their validation), ``seconds["pool_start"]`` the
    start-up of the solver workers (about 0 for a pool that is already warm or for ``workers=0``).
    """
    cfg.validate()
    names = cfg.names()
    if len(names) != 1:
        raise ValueError(f"train_route trains one estimator; got estimators={', '.join(names)} (run_route trains "
                         "several)")
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
    try:
        t_pool = warm_up(executor, solver, cfg.size)  # not part of train seconds
        t1 = time.perf_counter()
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
        "loss": LOSS_NAMES.get(name, HAMMING), "train": train_metrics, "test": test_metrics, "history": history,
        "seconds": {"data": round(data.seconds, 2), "pool_start": round(t_pool, 2), "train": round(t_train, 2),
                    "per_step": round(t_train / max(steps_done, 1), 4)},
        "steps": steps_done,
    }
    stats = getattr(objective, "stats", None)
    if stats is not None:  # negative perturbed costs clamped to 0 in training (see make_objective)
        result["guard"] = {"clamped_entries": stats.clamped_entries, "guarded_entries": stats.guarded_entries,
                           "clamped_fraction": stats.clamped_fraction}
    if cfg.out:
        out = Path(cfg.out)
        panels = [Panel({"train": history["train_loss"]}, f"train loss: {result['loss']}")]
        if history["val_cost_optimal_accuracy"]:
            panels.append(Panel({"validation": history["val_cost_optimal_accuracy"]},
                                "validation cost-optimal accuracy", percent=True))
        title = f"Warcraft {cfg.size}x{cfg.size}, {name}: {len(data.train)} training maps x {cfg.epochs} epochs"
        result["files"] = {
            "json": str(out / f"route_{name}.json"),
            "figure": str(plot_paths(data.test, pred.numpy(), costs.numpy(), out / f"route_{name}.png",
                                     title=title)),
            "curves": str(plot_panels(panels, out / f"route_{name}_curves.png", "epoch", title)),
        }
        save_json(result, out / f"route_{name}.json")
    return result


def run_route(cfg: RouteConfig) -> dict[str, Any]:
    """``discreteopt route``: :func:`train_route` for each estimator of ``cfg.estimators`` on the same data and
    solver workers. One estimator: its result; several: ``{"runs": [...], "rows": [...]}`` plus a summary JSON
    and a figure of the validation curves. The pool is started once, before the first estimator's clock
    (``pool_start_seconds``)."""
    cfg.validate()
    names = cfg.names()
    if len(names) == 1:
        return train_route(cfg)
    data = load_data(cfg)
    executor = make_executor(cfg.workers)
    try:
        from ..solvers import GridShortestPath

        t_pool = warm_up(executor, GridShortestPath(neighbourhood=8), cfg.size)
        runs = [train_route(cfg.for_estimator(n), data, executor) for n in names]
    finally:
        executor.close()
    rows = [{"estimator": r["estimator"], **r["test"], "train_seconds": r["seconds"]["train"],
             "clamped_fraction": r.get("guard", {}).get("clamped_fraction")} for r in runs]
    result: dict[str, Any] = {"task": "warcraft_route", "data": data.source, "grid": f"{cfg.size}x{cfg.size}",
                              "config": dataclasses.asdict(cfg), "pool_start_seconds": round(t_pool, 2),
                              "rows": rows, "runs": runs}
    if cfg.out:
        out = Path(cfg.out)
        curves = {r["estimator"]: r["history"]["val_cost_optimal_accuracy"] for r in runs}
        result["files"] = {"json": str(out / "route_summary.json")}
        if any(curves.values()):
            result["files"]["curves"] = str(plot_curves(
                curves, out / "route_summary_curves.png", "epoch", "validation cost-optimal accuracy",
                f"Warcraft {cfg.size}x{cfg.size}: {len(data.train)} training maps x {cfg.epochs} epochs", percent=True))
        save_json({k: v for k, v in result.items() if k != "runs"}, out / "route_summary.json")
    return result


#: the table's columns: metrics as percentages and the cost ratio, as in the README; seconds with their unit
COLUMNS = [Column("cost_optimal_accuracy", "cost-optimal", percent), Column("exact_match_accuracy", "exact match",
                                                                           percent),
           Column("cost_ratio", "cost ratio", ".4f")]


def results_table(result: dict[str, Any]) -> str:
    """Test metrics per estimator (several runs), or train/test metrics of one run, as a text table: accuracies
    in percent, the cost ratio, training seconds (pool start-up excluded; printed below the table)."""
    train_s = Column("train_seconds", "train time", seconds)
    if "runs" in result:
        table = format_table(result["rows"], [Column("estimator"), *COLUMNS, train_s])
        start = result.get("pool_start_seconds")
    else:
        rows = [{"split": split, "estimator": result["estimator"], **result[split],
                 "train_seconds": result["seconds"]["train"] if split == "train" else None}
                for split in ("train", "test")]
        table = format_table(rows, [Column("split"), Column("estimator"), *COLUMNS, train_s])
        start = result["seconds"].get("pool_start")
        workers = result.get("workers", 0)
        if not workers:
            start = None
    if start is not None:
        table += f"\nsolver pool start-up (not in train time): {seconds(start)}"
    return table + clamped_note(result)


def clamped_note(result: dict[str, Any]) -> str:
    """A line below the table for the runs whose training clamped negative perturbed costs to 0 (empty if none)."""
    runs = result["runs"] if "runs" in result else [result]
    parts = [f"{r['estimator']} {r['guard']['clamped_fraction']:.2%}" for r in runs
             if r.get("guard", {}).get("clamped_entries")]
    if not parts:
        return ""
    return ("\ntraining solver arguments below 0 clamped to 0 (blackbox backprop's rule; share of the entries "
            "the solver saw): " + ", ".join(parts))


# ------------------------------------------------------------------------------------------------ figure
def plot_paths(data: WarcraftData, pred: np.ndarray, costs: np.ndarray, path: str | Path, n: int = 4,
               title: str = "") -> Path:
    """Figure: for ``n`` test maps, the map with the optimal (white circles) and predicted (red crosses) paths,
    the true vertex costs and the predicted costs on one colour scale (with a colour bar).

    The panel title gives the true cost of the predicted path and the optimal cost. The network's costs have an
    arbitrary scale (a shortest path does not change when all costs are multiplied by ``s > 0``), so they are
    drawn as ``s * costs`` with the least-squares ``s = <costs, true> / <costs, costs>`` over the ``n`` maps shown.
    """
    plt = pyplot()
    n = min(n, len(data))
    k = data.size
    fig, axes = plt.subplots(3, n, figsize=(3.0 * n + 1.0, 9.4), squeeze=False)
    centres = (np.arange(k) + 0.5) * TILE - 0.5  # tile centres in pixels
    c_true = path_cost(data.weights[:n], data.paths[:n])  # [n]
    c_pred = path_cost(data.weights[:n], pred[:n])  # [n]
    shown = np.asarray(costs[:n], dtype=np.float64)  # [n, k, k]
    true = np.asarray(data.weights[:n], dtype=np.float64)
    s = float((shown * true).sum() / max((shown * shown).sum(), 1e-12))
    vmax = float(max(true.max(), (s * shown).max()))
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(data.maps[i])
        r, c = np.nonzero(data.paths[i] > 0.5)
        ax.scatter(centres[c], centres[r], s=60, c="white", marker="o", edgecolors="black", linewidths=0.5)
        r, c = np.nonzero(pred[i] > 0.5)
        ax.scatter(centres[c], centres[r], s=30, c="red", marker="x")
        p, o = float(c_pred[i]), float(c_true[i])
        verdict = "optimal" if abs(p - o) <= 1e-5 * o else f"+{100 * (p - o) / o:.1f}%"
        ax.set_title(f"map {i}: predicted path cost {p:.1f}\noptimal {o:.1f} ({verdict})", fontsize=8)
        im = axes[1, i].imshow(true[i], cmap="viridis", vmin=0.0, vmax=vmax)
        axes[1, i].set_title("true costs", fontsize=9)
        axes[2, i].imshow(s * shown[i], cmap="viridis", vmin=0.0, vmax=vmax)
        axes[2, i].set_title(f"predicted costs (x {s:.3g})", fontsize=9)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle((title + "\n" if title else "") + "test maps; optimal path: white o, predicted path: red x; "
                 "a path's cost is the sum of the true costs of its tiles", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    cax = fig.add_axes((0.93, 0.05, 0.015, 0.58))
    fig.colorbar(im, cax=cax, label="vertex cost (true scale)")
    return save_figure(fig, path, dpi=100)
