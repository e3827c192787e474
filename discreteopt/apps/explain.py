"""Subset selection for explanations (L2X: Chen, Song, Wainwright & Jordan, ICML 2018).

An *explainer* scores the ``n`` features of an input (``[B, n]``), a selector picks ``k`` of them (a mask
``[B, n]``), and a *predictor* sees only the selected features; both are trained end to end on the prediction
loss. Selectors compared:

* ``imle``    -- exact top-k in the forward pass (:class:`~discreteopt.solvers.TopK`), Sum-of-Gamma noise and
  I-MLE gradients (Niepert et al., NeurIPS 2021);
* ``l2x``     -- L2X's relaxed subset: the element-wise max of ``k`` Gumbel-softmax samples (Chen et al., 2018);
* ``softsub`` -- SoftSub, the continuous relaxation of weighted reservoir sampling: ``k`` rounds of a
  softmax with the chosen mass removed after each round (Xie & Ermon, IJCAI 2019).

At test time every method selects the deterministic top-k of the explainer scores. Tasks:

* ``text``   -- :func:`~discreteopt.data.generate_synthetic_text` (relevant tokens known: subset precision is
  exact), or BeerAdvocate aroma files (:func:`~discreteopt.data.load_beer`) where the user has them;
  regression, reported as test MSE;
* ``digits`` -- scikit-learn's 8x8 digits, classification, reported as test accuracy, with a picture of the
  selected pixels.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.digits import load_digits_data
from ..data.synthetic_text import generate_synthetic_text
from ..metrics import accuracy, subset_precision
from ..models import MLP, TextExplainer, TextPredictor
from .common import batches, format_table, progress, pyplot, resolve_device, save_json, seed_everything

METHODS = ("imle", "l2x", "softsub")
TASKS = ("text", "digits")
#: added to the scores of padding tokens so that they are never selected (finite: solvers reject inf)
PAD_SCORE = -1e4


@dataclasses.dataclass
class ExplainConfig:
    """Settings of ``discreteopt explain``."""

    task: str = "text"
    methods: tuple[str, ...] = METHODS
    ks: tuple[int, ...] = (5, 10, 15)
    n_train: int = 3000
    n_test: int = 500
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    #: I-MLE step and samples; Sum-of-Gamma temperature
    lam: float = 10.0
    samples: int = 1
    noise_scale: float = 1.0
    #: temperature of the L2X / SoftSub relaxations
    tau: float = 0.5
    device: str = "cpu"
    #: BeerAdvocate files (text task): reviews file and optional annotations file
    beer_reviews: str | None = None
    beer_annotations: str | None = None
    seed: int = 0
    out: str | None = "runs/explain"
    progress: bool = True
    max_steps: int | None = None

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}; got {list(self.methods)}")
        if not self.ks or any(int(k) < 1 for k in self.ks):
            raise ValueError(f"ks must be positive integers; got {list(self.ks)}")
        for name in ("n_train", "n_test", "epochs", "batch_size", "samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.beer_annotations and not self.beer_reviews:
            raise ValueError("beer_annotations needs beer_reviews (the training file)")


# ------------------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class Task:
    """Inputs/targets of one task as tensors plus the models' factory."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    relevant_test: torch.Tensor | None
    n_features: int
    vocab_size: int = 0
    source: str = ""

    @property
    def regression(self) -> bool:
        return self.name == "text"


def load_task(cfg: ExplainConfig) -> Task:
    if cfg.task == "digits":
        xtr, ytr, xte, yte = load_digits_data(seed=cfg.seed)
        return Task("digits", torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte),
                    torch.from_numpy(yte), None, 64, source="sklearn digits (8x8)")
    if cfg.beer_reviews:
        from ..data.beer import load_beer

        train, annotated, vocab = load_beer(cfg.beer_reviews, cfg.beer_annotations, aspect=1)
        test = annotated if annotated is not None else train.subset(slice(len(train) - cfg.n_test, None))
        train = train.subset(slice(0, cfg.n_train))
        source = f"BeerAdvocate aroma ({cfg.beer_reviews})"
    else:
        train = generate_synthetic_text(cfg.n_train, seed=cfg.seed)
        test = generate_synthetic_text(cfg.n_test, seed=cfg.seed + 10_007)
        source = "synthetic text (discreteopt.data.synthetic_text)"
    rel = None if test.relevant is None else torch.from_numpy(test.relevant)
    return Task("text", torch.from_numpy(train.tokens), torch.from_numpy(train.labels),
                torch.from_numpy(test.tokens), torch.from_numpy(test.labels), rel, train.tokens.shape[1],
                vocab_size=max(train.vocab_size, test.vocab_size), source=source)


class Explainer(torch.nn.Module):
    """Explainer + predictor pair of a task (``scores(x) [B, n]``, ``predict(x, mask) [B, out]``)."""

    def __init__(self, task: Task):
        super().__init__()
        self.task = task.name
        if task.name == "text":
            self.scorer = TextExplainer(task.vocab_size)
            self.predictor = TextPredictor(task.vocab_size, out=1)
        else:
            self.scorer = MLP([64, 128, 64])
            self.predictor = MLP([64, 128, 10])

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scorer(x)  # [B, n]
        return s.masked_fill(x == 0, PAD_SCORE) if self.task == "text" else s

    def predict(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, n]``, ``mask [S, B, n]`` or ``[B, n]`` -> outputs ``[S, B, out]`` / ``[B, out]``."""
        lead = mask.shape[:-2]
        m = mask.reshape(-1, mask.shape[-1])  # [S*B, n]
        xx = x.expand(*lead, *x.shape).reshape(-1, x.shape[-1])  # [S*B, n]
        out = self.predictor(xx, m) if self.task == "text" else self.predictor(xx * m)
        return out.reshape(*lead, x.shape[0], -1)  # [S*B, out] -> [S, B, out]


def per_sample_loss(model: Explainer, x: torch.Tensor, y: torch.Tensor, regression: bool):
    """``f(mask [S, B, n]) -> [S, B]``: the predictor's loss on the selected features."""
    def f(mask: torch.Tensor) -> torch.Tensor:
        out = model.predict(x, mask)  # [S, B, out]
        if regression:
            return (out.squeeze(-1) - y) ** 2
        return F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]), reduction="none").reshape(out.shape[:2])
    return f


# ------------------------------------------------------------------------------------------------ selectors
def make_selector(method: str, k: int, cfg: ExplainConfig):
    """``select(scores [B, n], f) -> scalar loss`` estimating ``E[f(mask)]`` with the method's gradient."""
    if method == "imle":
        from .. import estimators, noise
        from ..layers import DiscreteLayer
        from ..solvers import TopK

        layer = DiscreteLayer(TopK(k), estimators.IMLE(lam=cfg.lam, samples=cfg.samples,
                                                       noise=noise.SumOfGamma(k=k, n_iter=10, scale=cfg.noise_scale)))

        def select(scores, f):
            return f(layer(scores).unsqueeze(0)).mean()  # mask [B, n] -> [1, B, n]
        return select

    from .. import stochastic

    fn = stochastic.l2x_subset if method == "l2x" else stochastic.softsub

    def select(scores, f):
        est = fn(f, scores, k=k, tau=cfg.tau, samples=cfg.samples)
        return est.surrogate / scores.shape[0]
    return select


# ------------------------------------------------------------------------------------------------ loop
@torch.no_grad()
def evaluate(model: Explainer, task: Task, k: int, device: torch.device) -> dict[str, float]:
    from ..solvers import TopK

    model.eval()
    x, y = task.x_test.to(device), task.y_test.to(device)
    mask = TopK(k).solve(model.scores(x).float())  # [B, n] deterministic top-k
    out = model.predict(x, mask)
    res: dict[str, float] = {}
    if task.regression:
        res["mse"] = float(((out.squeeze(-1) - y) ** 2).mean())
    else:
        res["accuracy"] = accuracy(out, y)
    if task.relevant_test is not None:
        res["subset_precision"] = subset_precision(mask.cpu(), task.relevant_test)
    return res


def train_one(task: Task, method: str, k: int, cfg: ExplainConfig, device: torch.device) -> dict[str, Any]:
    if k > task.n_features:
        raise ValueError(f"k={k} exceeds the number of features {task.n_features}")
    gen = seed_everything(cfg.seed)
    model = Explainer(task).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    select = make_selector(method, k, cfg)
    curve = []
    t0 = time.perf_counter()
    for _ in progress(range(cfg.epochs), cfg.progress, desc=f"explain[{task.name},{method},k={k}]"):
        model.train()
        ep = []
        steps = batches(len(task.x_train), cfg.batch_size, gen)
        for idx in steps[: cfg.max_steps] if cfg.max_steps else steps:
            x, y = task.x_train[idx].to(device), task.y_train[idx].to(device)
            loss = select(model.scores(x), per_sample_loss(model, x, y, task.regression))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ep.append(float(loss.detach()))
        curve.append(float(np.mean(ep)))
    return {"model": model, "curve": curve, "seconds": round(time.perf_counter() - t0, 2),
            **evaluate(model, task, k, device)}


def run_explain(cfg: ExplainConfig) -> dict[str, Any]:
    """All (method, k) runs of one task; JSON + PNG under ``cfg.out``."""
    cfg.validate()
    device = resolve_device(cfg.device)
    task = load_task(cfg)
    rows, curves, models = [], {}, {}
    for k in cfg.ks:
        for method in cfg.methods:
            r = train_one(task, method, int(k), cfg, device)
            models[(method, int(k))] = r.pop("model")
            curves[f"{method},k={k}"] = r.pop("curve")
            rows.append({"task": task.name, "method": method, "k": int(k), **r})
    result = {"task": f"l2x_{task.name}", "data": task.source, "config": dataclasses.asdict(cfg),
              "rows": rows, "curves": curves}
    if cfg.out:
        out = Path(cfg.out)
        files = {"json": str(out / f"explain_{task.name}.json")}
        if task.name == "digits":
            files["figure"] = str(plot_digits(task, models, device, out / "explain_digits.png"))
        save_json({**result, "files": files}, out / f"explain_{task.name}.json")
        result["files"] = files
    return result


def results_table(result: dict[str, Any]) -> str:
    cols = [c for c in ("task", "method", "k", "mse", "accuracy", "subset_precision", "seconds")
            if c in result["rows"][0]]
    return format_table(result["rows"], cols)


@torch.no_grad()
def plot_digits(task: Task, models: dict, device: torch.device, path: str | Path, n: int = 6) -> Path:
    """Rows: (method, k); columns: test digits with the selected pixels outlined in red."""
    from ..solvers import TopK

    plt = pyplot()
    keys = sorted(models, key=lambda mk: (mk[1], mk[0]))
    fig, axes = plt.subplots(len(keys), n, figsize=(1.6 * n, 1.7 * len(keys)), squeeze=False)
    x = task.x_test[:n].to(device)
    for row, (method, k) in enumerate(keys):
        models[(method, k)].eval()
        mask = TopK(k).solve(models[(method, k)].scores(x).float()).cpu().numpy().reshape(n, 8, 8)
        for j in range(n):
            ax = axes[row, j]
            ax.imshow(task.x_test[j].numpy().reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            r, c = np.nonzero(mask[j])
            ax.scatter(c, r, s=40, facecolors="none", edgecolors="red", linewidths=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{method}\nk={k}", fontsize=8)
    fig.suptitle("Selected pixels (red) on test digits")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
