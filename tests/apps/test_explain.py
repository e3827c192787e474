"""Subset selection for explanations: exact subset precision, selectors, short end-to-end runs, bad settings."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from discreteopt.apps import explain
from discreteopt.apps.explain import ExplainConfig, Explainer, evaluate, load_task, make_selector, run_explain

ROOT = Path(__file__).resolve().parents[2]
ASPECT0, DECOY0 = 201, 241  # id layout of the synthetic text task (defaults of generate_synthetic_text)
FAST = {"n_train": 600, "n_test": 100, "batch_size": 50, "progress": False}


class _TokenRule(torch.nn.Module):
    """A scorer that ranks tokens by a fixed rule on their ids (an oracle or an anti-oracle)."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, tokens):
        return self.rule(tokens).float() + 1e-3 * torch.rand(tokens.shape)  # random order inside a class


@pytest.mark.parametrize("k, expected", [(5, 1.0), (10, 1.0), (15, 1.0), (20, 0.75), (30, 0.5)])
def test_subset_precision_of_an_oracle_explainer_is_exact(k, expected):
    """15 relevant tokens among 50: the oracle's top-k precision is min(k, 15) / k exactly."""
    task = load_task(ExplainConfig(n_test=200, **{k_: v for k_, v in FAST.items() if k_ != "n_test"}))
    model = Explainer(task)
    model.scorer = _TokenRule(lambda t: (t >= ASPECT0) & (t < DECOY0))
    res = evaluate(model, task, k, torch.device("cpu"))
    assert res["subset_precision"] == pytest.approx(expected, abs=1e-12)
    assert math.isfinite(res["mse"])


def test_subset_precision_of_an_anti_oracle_is_zero_and_random_is_chance():
    task = load_task(ExplainConfig(**FAST))
    model = Explainer(task)
    model.scorer = _TokenRule(lambda t: t < ASPECT0)  # neutral tokens first: never a relevant one for k <= 25
    assert evaluate(model, task, 10, torch.device("cpu"))["subset_precision"] == 0.0
    model.scorer = _TokenRule(lambda t: torch.zeros_like(t))  # uniformly random ranking
    prec = evaluate(model, task, 10, torch.device("cpu"))["subset_precision"]
    se = math.sqrt(0.3 * 0.7 / 10 / 100)  # hypergeometric is narrower than this binomial bound
    assert abs(prec - 0.3) < 4.5 * se


@pytest.mark.parametrize("method", explain.METHODS)
def test_selectors_produce_subsets_and_gradients(method):
    torch.manual_seed(0)
    scores = torch.randn(4, 12, requires_grad=True)
    target = torch.zeros(4, 12)
    target[:, :3] = 1.0
    seen = []

    def f(mask):  # [S, B, n] -> [S, B]
        seen.append(mask.detach())
        return ((mask - target) ** 2).sum(-1)

    cfg = ExplainConfig(samples=3, lam=10.0)
    loss = make_selector(method, 3, cfg)(scores, f)
    loss.backward()
    mask = seen[0]
    assert mask.shape == (3, 4, 12) and loss.ndim == 0
    if method in ("imle", "aimle"):  # exact k-hot subsets in training
        assert bool(((mask == 0) | (mask == 1)).all()) and bool((mask.sum(-1) == 3).all())
    else:  # relaxed masks: L2X's max of k softmaxes lies in [0, 1]; SoftSub's k softmax rounds sum to k
        assert float(mask.min()) >= 0 and not bool(((mask == 0) | (mask == 1)).all())
        if method == "l2x":
            assert float(mask.max()) <= 1 + 1e-6
        else:
            torch.testing.assert_close(mask.sum(-1), torch.full((3, 4), 3.0))
    assert scores.grad is not None and bool(torch.isfinite(scores.grad).all())
    assert float(scores.grad.abs().sum()) > 0


def test_imle_selector_moves_scores_towards_the_better_subset():
    """Gradient descent on the I-MLE selector loss raises the scores of the items that lower the loss."""
    torch.manual_seed(0)
    scores = torch.zeros(64, 10, requires_grad=True)
    good = torch.zeros(10)
    good[:2] = 1.0  # loss = number of selected items outside the first two
    select = make_selector("imle", 2, ExplainConfig(lam=1000.0, samples=4))  # lam * dL/dy >> noise
    select(scores, lambda m: (m * (1 - good)).sum(-1)).backward()
    g = scores.grad.mean(0)
    assert float(g[:2].max()) < 0 < float(g[2:].min())  # descent raises the good items, lowers the others


@pytest.mark.parametrize("kwargs, name", [
    ({"task": "images"}, "task"), ({"estimators": ("imle", "gumbel")}, "estimators"),
    ({"estimators": ()}, "estimators"), ({"estimators": ("l2x", "l2x")}, "estimators"), ({"ks": (0,)}, "ks"), ({"ks": ()}, "ks"), ({"ks": (2.5,)}, "ks"),
    ({"task": "digits", "ks": (65,)}, "ks"), ({"ks": (51,)}, "ks"), ({"lr": 0.0}, "lr"),
    ({"lam": -1.0}, "lam"), ({"tau": float("inf")}, "tau"), ({"scale": float("nan")}, "scale"),
    ({"samples": 0}, "samples"), ({"epochs": 0}, "epochs"), ({"max_steps": 0}, "max_steps"), ({"repeats": 0}, "repeats"),
    ({"beer_annotations": "a.json"}, "beer_reviews"), ({"task": "digits", "beer_reviews": "r.txt"}, "beer_reviews"),
])
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        run_explain(ExplainConfig(out=None, **{**FAST, **kwargs}))


def test_short_text_run_learns_and_saves(tmp_path):
    cfg = ExplainConfig(ks=(5,), epochs=4, out=str(tmp_path), **FAST)
    res = run_explain(cfg)
    assert [(r["estimator"], r["k"]) for r in res["rows"]] == [(m, 5) for m in explain.DEFAULT_METHODS]
    label_var = float(load_task(cfg).y_test.var())
    for r in res["rows"]:
        curve = res["curves"][f"{r['estimator']},k=5"]
        assert len(curve) == 4 and curve[-1] < 0.5 * curve[0], r
        assert 0.0 <= r["subset_precision"] <= 1.0 and r["mse"] < label_var, r
    saved = json.loads((tmp_path / "explain_text.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"]))
    assert saved["config"]["ks"] == [5]
    assert Path(res["files"]["curves"]).stat().st_size > 1000
    table = explain.results_table(res)
    assert "subset precision" in table and "softsub" in table and "100·MSE" in table


def test_short_digits_run_with_repeats_draws_the_selected_pixels(tmp_path):
    res = run_explain(ExplainConfig(task="digits", estimators=("imle", "l2x"), ks=(10,), epochs=2, max_steps=6,
                                    repeats=2, seed=5, out=str(tmp_path), **FAST))
    assert [(r["estimator"], r["seed"]) for r in res["runs"]] == [("imle", 5), ("l2x", 5), ("imle", 6), ("l2x", 6)]
    for r in res["rows"]:
        assert "accuracy" in r and "subset_precision" not in r and r["repeats"] == 2
        accs = [x["accuracy"] for x in res["runs"] if x["estimator"] == r["estimator"]]
        assert r["accuracy"] == pytest.approx(np.mean(accs)) and r["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
        assert accs[0] != accs[1]  # independent runs (different data split, initialisation and noise)
        assert 0.2 < r["accuracy"] <= 1.0, r  # 10 classes: chance is 0.1
        curve = res["curves"][f"{r['estimator']},k=10"]
        assert curve[-1] < curve[0]
    table = explain.results_table(res)
    row = res["rows"][0]
    assert f"{100 * row['accuracy']:.1f} ± {100 * row['accuracy_std']:.1f}%" in table, table
    fig = Path(res["files"]["figure"])
    assert fig.name == "explain_digits.png" and fig.stat().st_size > 2000


def test_table_reports_100_mse_precision_and_seconds_like_the_readme():
    """The README's unit: 100·MSE (the papers' too); mean ± std with repeats; seconds with their unit."""
    rows = [{"task": "text", "estimator": "imle", "k": 10, "mse": 0.0034, "mse_std": 0.0002,
             "subset_precision": 0.8934, "subset_precision_std": 0.0131, "seconds": 4.56, "repeats": 3},
            {"task": "text", "estimator": "aimle", "k": 10, "mse": 0.0021, "subset_precision": 0.82,
             "final_lam": 812.3456, "seconds": 5.0}]
    table = explain.results_table({"rows": rows})
    lines = table.splitlines()
    assert "100·MSE" in lines[0] and "subset precision" in lines[0] and "final lambda" in lines[0]
    assert "| 0.34 ± 0.02 | 0.893 ± 0.013" in lines[2] and "4.56 s" in lines[2], table
    assert "| 0.21 " in lines[3] and "812" in lines[3] and "| -" in lines[3], table
    assert "0.0034" not in table  # never the raw MSE
    assert ExplainConfig(estimators="imle, l2x").estimators == ("imle", "l2x")
    assert ExplainConfig(estimators="all").estimators == explain.METHODS
    assert list(explain.PRESETS) == ["quick", "default", "large", "paper"]
    for preset in explain.PRESETS.values():
        ExplainConfig(**preset).validate()


# --------------------------------------------------------------------------------------------- BeerAdvocate files
def _write_fake_beer(tmp_path, n=80, annotated=True):
    """Reviews whose aroma score is carried by 'aroma-word' tokens; annotations mark those tokens."""
    rng = np.random.default_rng(0)
    reviews, ann = [], []
    for i in range(n):
        aroma = rng.uniform()
        level = min(int(aroma * 4), 3)
        words = [f"w{j}" for j in rng.integers(0, 30, 12)]
        pos = rng.choice(12, 3, replace=False)
        for p in pos:
            words[p] = f"aroma{level}"
        scores = f"{rng.uniform():.2f} {aroma:.3f} 0.5 0.5 0.5"
        reviews.append(f"{scores}\t{' '.join(words)}\n")
        if i < 20:
            spans = [[int(p), int(p) + 1] for p in sorted(pos)]
            ann.append(json.dumps({"x": words, "y": [0.5, aroma, 0.5], "1": spans}) + "\n")
    (tmp_path / "reviews.aspect1.train.txt").write_text("".join(reviews))
    if annotated:
        (tmp_path / "annotations.json").write_text("".join(ann))
    return tmp_path / "reviews.aspect1.train.txt", tmp_path / "annotations.json"


def test_beer_files_feed_the_text_task(tmp_path):
    reviews, annotations = _write_fake_beer(tmp_path)
    cfg = ExplainConfig(estimators=("imle",), ks=(3,), epochs=1, beer_reviews=str(reviews),
                        beer_annotations=str(annotations), beer_max_len=16, out=None, **FAST)
    task = load_task(cfg)
    assert task.x_train.shape == (80, 16) and task.x_test.shape == (20, 16) and task.n_features == 16
    assert int(task.relevant_test.sum()) == 60  # three annotated tokens per test review
    res = run_explain(cfg)
    row = res["rows"][0]
    assert "BeerAdvocate" in res["data"] and 0.0 <= row["subset_precision"] <= 1.0 and math.isfinite(row["mse"])


def test_beer_reviews_without_annotations_hold_out_a_test_split(tmp_path):
    reviews, _ = _write_fake_beer(tmp_path, annotated=False)
    task = load_task(ExplainConfig(beer_reviews=str(reviews), n_train=1000, n_test=30, out=None))
    assert len(task.x_train) == 50 and len(task.x_test) == 30 and task.relevant_test is None
    with pytest.raises(ValueError, match="n_test"):
        load_task(ExplainConfig(beer_reviews=str(reviews), n_test=80, out=None))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task(ExplainConfig(beer_reviews=str(tmp_path / "missing.txt"), out=None))


def test_example_script_runs(tmp_path, capsys):
    mod = runpy.run_path(str(ROOT / "examples" / "l2x_explain.py"))
    mod["main"](["--estimators", "imle", "softsub", "--ks", "5", "--n-train", "300", "--n-test", "50", "--epochs", "1",
                 "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert "imle" in out and "softsub" in out and "subset precision" in out
    assert (tmp_path / "explain_text.json").exists() and (tmp_path / "explain_text_curves.png").exists()


@pytest.mark.slow
def test_all_selectors_find_the_rationale_on_synthetic_text():
    """With the default settings every method beats chance (0.3) by a wide margin at k = 10."""
    res = run_explain(ExplainConfig(ks=(10,), out=None, progress=False))
    for r in res["rows"]:
        assert r["subset_precision"] > 0.55, r
        assert r["mse"] < 0.01, r


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("task", explain.TASKS)
def test_every_method_trains_on_cuda(task, tmp_path):
    res = run_explain(ExplainConfig(task=task, estimators=explain.METHODS, ks=(5,), epochs=1, max_steps=3, device="cuda",
                                    out=str(tmp_path), **FAST))
    assert len(res["rows"]) == len(explain.METHODS)
    assert all(math.isfinite(r.get("mse", r.get("accuracy"))) for r in res["rows"])
