"""Subset selection for explanations (L2X: Chen, Song, Wainwright & Jordan, ICML 2018).

An *explainer* scores the ``n`` features of an input (``[B, n]``), a selector picks ``k`` of them (a mask
``[B, n]``), and a *predictor* sees only the selected features; both are trained end to end on the prediction
loss ``E_mask[loss(predictor(x, mask), y)]``. Selectors compared:

* ``imle``    -- exact top-k in the forward pass (:class:`~discreteopt.solvers.TopK` in a
  :class:`~discreteopt.DiscreteLayer`), Sum-of-Gamma noise and I-MLE gradients (Niepert, Minervini & Franceschi,
  NeurIPS 2021): ``mask = topk(s + eps)``, ``dL/ds = (mask - topk(s + eps - lam dL/dmask)) / lam``;
* ``aimle``   -- the same with the adaptive ``lam`` of AIMLE (Minervini et al., AAAI 2023);
* ``l2x``     -- L2X's relaxed subset: the element-wise max of ``k`` Gumbel-softmax samples (Chen et al., 2018);
* ``softsub`` -- SoftSub, the continuous relaxation of weighted reservoir sampling: ``k`` rounds of a
  softmax with the chosen mass removed after each round (Xie & Ermon, IJCAI 2019).

The relaxed selectors train the predictor on soft masks; I-MLE trains it on the k-subsets it will see at test time.
At test time every method selects the deterministic top-k of the explainer scores. Tasks:

* ``text``   -- :func:`~discreteopt.data.generate_synthetic_text` (relevant tokens known: subset precision is
  exact), or BeerAdvocate aroma files (:func:`~discreteopt.data.load_beer`) where the user has them;
  regression, reported as test MSE (the papers print ``100 * MSE``);
* ``digits`` -- scikit-learn's 8x8 digits, classification, reported as test accuracy, with a picture of the
  selected pixels. There is no ground-truth rationale, and an instance-wise selector can also pass label
  information through *which* pixels it picks (Jethani et al., AISTATS 2021), so accuracy measures both.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int_in_range, check_positive
from ..data.digits import load_digits_data
from ..data.synthetic_text import generate_synthetic_text
from ..metrics import accuracy, subset_precision
from ..models import MLP, TextExplainer, TextPredictor
from .common import (
    Column,
    RowColumn,
    batches,
    format_table,
    mean_std,
    plot_curves,
    progress,
    pyplot,
    resolve_device,
    save_figure,
    save_json,
    seconds,
    seed_everything,
)

METHODS = ("imle", "l2x", "softsub", "aimle")
DEFAULT_METHODS = ("imle", "l2x", "softsub")
TASKS = ("text", "digits")
N_PIXELS = 64
#: added to the scores of padding tokens so that they are never selected (finite: solvers reject inf)
PAD_SCORE = -1e4


def _names(value: Any) -> tuple[str, ...]:
    """``"imle,l2x"`` or ``("imle", "l2x")`` -> ``("imle", "l2x")`` (a string is split at commas)."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@dataclasses.dataclass
class ExplainConfig:
    """Settings of ``discreteopt explain`` (one training run per estimator, k and repeat).

    Example::

        cfg = ExplainConfig(task="digits", estimators=("imle", "l2x"), ks=(10,), out=None)
        result = run_explain(cfg)        # result["rows"]: accuracy per (estimator, k)
    """

    #: text (synthetic, or BeerAdvocate files) or digits
    task: str = "text"
    #: subset selectors to compare, among imle, l2x, softsub, aimle (``("all",)``: every one)
    estimators: tuple[str, ...] = DEFAULT_METHODS
    #: subset sizes k
    ks: tuple[int, ...] = (5, 10, 15)
    #: training examples (text task)
    n_train: int = 3000
    #: test examples (text task)
    n_test: int = 500
    #: training epochs per (estimator, k)
    epochs: int = 6
    #: examples per training step
    batch_size: int = 25
    #: Adam learning rate
    lr: float = 5e-3
    #: I-MLE finite-difference step lambda (on the gradient of the batch-mean loss); AIMLE's initial lambda
    lam: float = 1000.0
    #: noise samples / relaxed samples per example and step
    samples: int = 1
    #: scale (temperature) of the I-MLE / AIMLE Sum-of-Gamma noise
    scale: float = 0.5
    #: AIMLE: target number of changed entries per example and sample (2 = one swap)
    aimle_target: float = 2.0
    #: temperature of the L2X / SoftSub relaxations
    tau: float = 0.5
    #: BeerAdvocate reviews file (SCORES<TAB>TOKENS per line) for the text task instead of synthetic data
    beer_reviews: str | None = None
    #: BeerAdvocate annotations.json (rationale spans): test set with subset precision
    beer_annotations: str | None = None
    #: BeerAdvocate reviews are truncated/padded to this many tokens
    beer_max_len: int = 100
    #: random seed (data, initialisation, noise)
    seed: int = 0
    #: independent runs per (estimator, k) with seeds seed, seed+1, ...; the table shows mean ± sample std
    repeats: int = 1
    #: torch device: cpu, cuda, cuda:N or auto
    device: str = "cpu"
    #: folder for explain_TASK.json and the PNG figures (None: do not save)
    out: str | None = "runs/explain"
    #: progress bars on stderr
    progress: bool = True
    #: stop each epoch after this many steps (smoke runs); None = full epochs
    max_steps: int | None = None

    def __post_init__(self) -> None:
        self.estimators = _names(self.estimators)
        if self.estimators == ("all",):
            self.estimators = METHODS

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}")
        bad = [m for m in self.estimators if m not in METHODS]
        if bad or not self.estimators:
            raise ValueError(f"estimators must be a non-empty subset of {', '.join(METHODS)}; got "
                             f"{list(self.estimators)}")
        if len(set(self.estimators)) != len(self.estimators):
            raise ValueError(f"estimators must not repeat a name; got {list(self.estimators)}")
        if not self.ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in self.ks):
            raise ValueError(f"ks must be positive integers; got {list(self.ks)}")
        if self.task == "digits" and max(self.ks) > N_PIXELS:
            raise ValueError(f"ks must be <= {N_PIXELS} (the pixels of a digit) for task digits; got {list(self.ks)}")
        for name in ("n_train", "n_test", "epochs", "batch_size", "samples", "beer_max_len", "repeats"):
            check_int_in_range(getattr(self, name), name, 1, 2**62)
        if self.max_steps is not None:
            check_int_in_range(self.max_steps, "max_steps", 1, 2**62)
        for name in ("lr", "lam", "scale", "aimle_target", "tau"):
            check_positive(getattr(self, name), name)
        if self.beer_annotations and not self.beer_reviews:
            raise ValueError("beer_annotations needs beer_reviews (the training file)")
        if self.beer_reviews and self.task != "text":
            raise ValueError(f"beer_reviews needs task 'text'; got task {self.task!r}")


#: ``discreteopt explain --preset NAME`` (options given explicitly override the preset):
#: ``quick`` = every selector at k = 10 on 1000 texts, 3 epochs (about a minute on 2 CPU cores);
#: ``default`` = the defaults above (k = 5, 10, 15, one seed);
#: ``large`` = 10000 training and 2000 test texts, 3 seeds (tighter numbers; tens of minutes on a CPU);
#: ``paper`` = the protocol of the published table (README): the defaults over seeds 0, 1, 2 (mean ± std)
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"ks": (10,), "n_train": 1000, "n_test": 200, "epochs": 3},
    "default": {},
    "large": {"n_train": 10000, "n_test": 2000, "repeats": 3},
    "paper": {"ks": (5, 10, 15), "repeats": 3},
}


# ------------------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class Task:
    """Inputs/targets of one task as tensors (``relevant_test [N, n]`` bool where the rationale is known)."""

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
    """Digits, BeerAdvocate files (``cfg.beer_reviews``) or the synthetic text task, as tensors."""
    if cfg.task == "digits":
        xtr, ytr, xte, yte = load_digits_data(seed=cfg.seed)
        return Task("digits", torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte),
                    torch.from_numpy(yte), None, N_PIXELS, source="sklearn digits (8x8)")
    if cfg.beer_reviews:
        from ..data.beer import load_beer

        train, annotated, _ = load_beer(cfg.beer_reviews, cfg.beer_annotations, aspect=1, max_len=cfg.beer_max_len)
        if annotated is not None:
            test = annotated
            train = train.subset(slice(0, cfg.n_train))
        else:  # no rationales: hold out the last n_test reviews (MSE only)
            if len(train) <= cfg.n_test:
                raise ValueError(f"n_test must be smaller than the {len(train)} reviews of {cfg.beer_reviews} "
                                 f"when no annotations file is given; got n_test={cfg.n_test}")
            test = train.subset(slice(len(train) - cfg.n_test, None))
            train = train.subset(slice(0, min(cfg.n_train, len(train) - cfg.n_test)))
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
            self.scorer = MLP([N_PIXELS, 128, N_PIXELS])
            self.predictor = MLP([N_PIXELS, 128, 10])

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scorer(x)  # [B, n]
        return s.masked_fill(x == 0, PAD_SCORE) if self.task == "text" else s

    def predict(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, n]``, ``mask [S, B, n]`` or ``[B, n]`` -> outputs ``[S, B, out]`` / ``[B, out]``."""
        lead = mask.shape[:-2]
        m = mask.reshape(-1, mask.shape[-1])  # [S, B, n] -> [S*B, n]
        xx = x.expand(*lead, *x.shape).reshape(-1, x.shape[-1])  # [S, B, n] -> [S*B, n]
        out = self.predictor(xx, m) if self.task == "text" else self.predictor(xx * m)
        return out.reshape(*lead, x.shape[0], -1)  # [S*B, out] -> [S, B, out]


def per_sample_loss(model: Explainer, x: torch.Tensor, y: torch.Tensor, regression: bool):
    """``f(mask [S, B, n]) -> [S, B]``: the predictor's loss on the selected features (squared error or
    cross-entropy)."""
    def f(mask: torch.Tensor) -> torch.Tensor:
        out = model.predict(x, mask)  # [S, B, out]
        if regression:
            return (out.squeeze(-1) - y) ** 2
        return F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]), reduction="none").reshape(out.shape[:2])
    return f


# ------------------------------------------------------------------------------------------------ selectors
def make_selector(method: str, k: int, cfg: ExplainConfig):
    """``select(scores [B, n], f) -> scalar``: the batch mean of ``E[f(mask)]`` with the method's gradient.

    ``imle`` / ``aimle``: ``S`` exact k-hot masks ``topk(scores + eps_s)`` (Sum-of-Gamma ``eps``) from a
    :class:`~discreteopt.DiscreteLayer`, loss ``mean_s f(mask_s)``; ``l2x`` / ``softsub``: the relaxed masks of
    :func:`discreteopt.stochastic.l2x_subset` / :func:`~discreteopt.stochastic.softsub`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if method in ("imle", "aimle"):
        from .. import estimators, noise
        from ..layers import DiscreteLayer
        from ..solvers import TopK

        sog = noise.SumOfGamma(k=k, n_iter=10, scale=cfg.scale)
        if method == "imle":
            est = estimators.IMLE(lam=cfg.lam, samples=cfg.samples, noise=sog)
        else:
            est = estimators.AIMLE(target=cfg.aimle_target, samples=cfg.samples, noise=sog, initial_lam=cfg.lam,
                                   lam_max=max(1e3, 100 * cfg.lam))
        layer = DiscreteLayer(TopK(k), est, return_samples=True)

        def select(scores, f):
            masks = layer(scores).transpose(0, 1)  # [B, S, n] -> [S, B, n]
            return f(masks).mean()
        select.estimator = est
        return select

    from .. import stochastic

    fn = stochastic.l2x_subset if method == "l2x" else stochastic.softsub

    def select(scores, f):
        est = fn(f, scores, k=k, tau=cfg.tau, samples=cfg.samples)
        return est.surrogate / scores.shape[0]  # sum over the batch of per-example means -> batch mean
    select.estimator = None
    return select


# ------------------------------------------------------------------------------------------------ loop
@torch.no_grad()
def evaluate(model: Explainer, task: Task, k: int, device: torch.device) -> dict[str, float]:
    """Test metrics of the deterministic top-k of the explainer scores: MSE or accuracy, subset precision."""
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
    """Train one explainer/predictor pair; per-epoch train loss curve and the test metrics."""
    if k > task.n_features:
        raise ValueError(f"k must be <= the number of features {task.n_features}; got k={k}")
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
    row: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 2), **evaluate(model, task, k, device)}
    if method == "aimle":
        row["final_lam"] = float(select.estimator.lam)
    return {"model": model, "curve": curve, **row}


def run_explain(cfg: ExplainConfig) -> dict[str, Any]:
    """All (estimator, k) runs of one task, ``cfg.repeats`` times; JSON + PNG under ``cfg.out``.

    ``result["runs"]`` lists every run (with its seed), ``result["rows"]`` their mean (and ``*_std`` when
    ``repeats > 1``) per (estimator, k). Curves and figures show the first repeat. ``mse`` is the raw mean
    squared error; the printed table shows ``100 * MSE`` as the papers (and the README) do.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    runs, curves, models = [], {}, {}
    first_task = None
    for rep in range(cfg.repeats):
        rcfg = dataclasses.replace(cfg, seed=cfg.seed + rep)
        task = load_task(rcfg)
        if max(cfg.ks) > task.n_features:
            raise ValueError(f"ks must be <= the number of features {task.n_features}; got {list(cfg.ks)}")
        first_task = first_task or task
        for k in cfg.ks:
            for method in cfg.estimators:
                r = train_one(task, method, int(k), rcfg, device)
                model, curve = r.pop("model"), r.pop("curve")
                if rep == 0:
                    models[(method, int(k))] = model
                    curves[f"{method},k={k}"] = curve
                runs.append({"task": task.name, "estimator": method, "k": int(k), "seed": rcfg.seed, **r})
    result: dict[str, Any] = {"task": f"l2x_{first_task.name}", "data": first_task.source,
                              "config": dataclasses.asdict(cfg), "rows": summarise(runs, cfg.repeats),
                              "runs": runs, "curves": curves}
    if cfg.out:
        out = Path(cfg.out)
        name = first_task.name
        files = {"json": str(out / f"explain_{name}.json"),
                 "curves": str(plot_curves(curves, out / f"explain_{name}_curves.png", "epoch",
                                           "train loss: squared error of the rating" if first_task.regression
                                           else "train loss: cross-entropy",
                                           f"Subset selection ({name}): training loss, seed {cfg.seed}"))}
        if name == "digits":
            files["figure"] = str(plot_digits(first_task, models, device, out / "explain_digits.png"))
        result["files"] = files
        save_json(result, files["json"])
    return result


METRICS = ("mse", "accuracy", "subset_precision")


def summarise(runs: list[dict[str, Any]], repeats: int) -> list[dict[str, Any]]:
    """One row per (estimator, k) in first-seen order: the mean of every numeric field over the runs and, when
    ``repeats > 1``, the sample standard deviation of the metrics (``mse_std`` ...)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["estimator"], r["k"]), []).append(r)
    rows = []
    for (method, k), rs in groups.items():
        row: dict[str, Any] = {"task": rs[0]["task"], "estimator": method, "k": k}
        for key in rs[0]:
            if key in row or key == "seed":
                continue
            values = np.array([r[key] for r in rs], dtype=np.float64)
            row[key] = float(values.mean())
            if repeats > 1 and key in METRICS:
                row[f"{key}_std"] = float(values.std(ddof=1))
        if repeats > 1:
            row["repeats"] = len(rs)
        rows.append(row)
    return rows


def results_table(result: dict[str, Any]) -> str:
    """Mean (± sample std over repeats) per (estimator, k): ``100·MSE`` (as in the papers and the README),
    subset precision, accuracy in percent, AIMLE's final lambda and the seconds of one run."""
    rows = result["rows"]
    cols: list[Column] = [Column("task"), Column("estimator"), Column("k")]
    if any("mse" in r for r in rows):
        cols.append(RowColumn("mse", "100·MSE", mean_std("mse", 2, factor=100.0)))
    if any("subset_precision" in r for r in rows):
        cols.append(RowColumn("subset_precision", "subset precision", mean_std("subset_precision", 3)))
    if any("accuracy" in r for r in rows):
        cols.append(RowColumn("accuracy", "accuracy", mean_std("accuracy", 1, factor=100.0, suffix="%")))
    if any("final_lam" in r for r in rows):
        cols.append(Column("final_lam", "final lambda", ".3g"))
    if any("repeats" in r for r in rows):
        cols.append(Column("repeats"))
    cols.append(Column("seconds", "time per run", seconds))
    return format_table(rows, cols)


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
    return save_figure(fig, path, dpi=100)
