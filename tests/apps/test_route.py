"""Learning to route end to end: every estimator trains (the loss falls), metrics, files, workers, real files."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest
import torch

from discreteopt.apps import common, route
from discreteopt.apps.route import (
    ESTIMATORS,
    PRESETS,
    RouteConfig,
    load_data,
    plot_paths,
    results_table,
    run_route,
    train_route,
    warm_up,
)
from discreteopt.data.warcraft import generate_warcraft
from discreteopt.metrics import path_cost, shortest_path_metrics
from discreteopt.models import CombResNet
from discreteopt.solvers import GridShortestPath

#: 6x6 maps (48x48 pixels), a narrow network: 5 epochs of 5 steps take about a second per estimator
TINY = dict(size=6, n_train=100, n_val=20, n_test=20, epochs=5, batch_size=20, width=8, lr=1e-2, out=None,
            progress=False)


@functools.cache
def tiny_run(estimator: str) -> dict:
    return train_route(RouteConfig(estimators=(estimator,), **TINY))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_trains_and_reports_metrics(estimator):
    r = tiny_run(estimator)
    loss = r["history"]["train_loss"]
    assert len(loss) == 5 and all(np.isfinite(loss))
    assert loss[-1] < loss[0], f"{estimator}: training loss did not fall: {loss}"
    if estimator in ("imle", "aimle", "blackbox", "fy"):
        assert loss[-1] < 0.8 * loss[0], f"{estimator}: training loss fell too little: {loss}"
    for split in ("train", "test"):
        m = r[split]
        assert 0.0 <= m["exact_match_accuracy"] <= m["cost_optimal_accuracy"] <= 1.0
        assert m["cost_ratio"] >= 1.0 - 1e-9
    assert len(r["history"]["val_cost_optimal_accuracy"]) == 5
    assert r["steps"] == 25 and r["estimator"] == estimator


def test_trained_network_beats_the_untrained_one():
    """After a short I-MLE run the predicted paths are much closer to optimal than those of the initial network."""
    cfg = RouteConfig(estimators="imle", **TINY)
    data = load_data(cfg)  # the same seeded maps as tiny_run's
    trained = tiny_run("imle")
    torch.manual_seed(cfg.seed)
    init = CombResNet(grid_size=6, width=8).eval()
    with torch.no_grad():
        x = torch.from_numpy(data.test.maps).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, 48, 48]
        pred = GridShortestPath().solve(init(x).double())
    untrained = shortest_path_metrics(pred, data.test.weights, data.test.paths)
    assert trained["test"]["cost_ratio"] < untrained["cost_ratio"] - 0.05


def test_run_writes_json_and_figures(tmp_path, monkeypatch):
    cfg = RouteConfig(**{**TINY, "epochs": 2, "out": str(tmp_path)}, estimators=("imle", "fy"))
    panels = []
    plot = route.plot_panels
    monkeypatch.setattr(route, "plot_panels", lambda p, *a, **k: panels.append(p) or plot(p, *a, **k))
    result = run_route(cfg)
    # the learning curve's loss axis names the loss this estimator trained on (not "Hamming or Fenchel-Young")
    assert [p[0].ylabel for p in panels] == ["train loss: Hamming distance (tiles)", "train loss: Fenchel-Young loss"]
    assert [p[1].percent for p in panels] == [True, True]
    assert [r["estimator"] for r in result["runs"]] == ["imle", "fy"]
    for name in ("imle", "fy"):
        saved = json.loads((tmp_path / f"route_{name}.json").read_text())
        assert saved["test"] == pytest.approx(result["runs"][["imle", "fy"].index(name)]["test"])
        for png in (f"route_{name}.png", f"route_{name}_curves.png"):
            assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "route_summary.json").read_text())
    assert [row["estimator"] for row in summary["rows"]] == ["imle", "fy"]
    assert (tmp_path / "route_summary_curves.png").stat().st_size > 1000
    table = results_table(result)
    assert "cost-optimal" in table and "| fy" in table and "solver pool start-up" in table
    single = results_table(result["runs"][0])
    assert "| train" in single and "| test" in single


def test_results_table_prints_percentages_and_seconds_with_units():
    rows = [{"estimator": "imle", "cost_optimal_accuracy": 0.8, "exact_match_accuracy": 0.568, "cost_ratio": 1.00771,
             "train_seconds": 35.61}]
    table = results_table({"runs": [], "rows": rows, "pool_start_seconds": 12.34})
    assert "| imle      | 80.0%        | 56.8%       | 1.0077     | 35.6 s     |" in table, table
    assert table.splitlines()[-1] == "solver pool start-up (not in train time): 12.3 s"
    one = {"estimator": "fy", "workers": 0, "train": rows[0], "test": rows[0],
           "seconds": {"train": 104.4, "pool_start": 0.01}}
    assert "104 s" in results_table(one) and "start-up" not in results_table(one)  # no pool, no start-up line


def test_warm_up_starts_every_worker_and_builds_the_solver():
    from discreteopt.executors import Inline, Processes

    assert warm_up(Inline(), GridShortestPath(), 6) >= 0.0
    with Processes(2) as pool:
        assert pool.worker_pids() == []  # lazy: nothing started yet
        assert warm_up(pool, GridShortestPath(), 6) > 0.0
        assert len(pool.worker_pids()) == 2 and pool.stats["started"] == 2
        assert pool.stats["tasks"] >= 4  # two batches of one instance per worker


def test_pool_start_up_is_timed_before_and_apart_from_training(monkeypatch):
    """train_route warms the executor before its clock starts and reports that time as pool_start, not train."""
    calls = {"objective": 0, "warm": []}
    make = route.make_objective

    def counting_objective(*args):
        objective = make(*args)

        def wrapped(*a):
            calls["objective"] += 1
            return objective(*a)
        return wrapped

    def fake_warm_up(executor, solver, size):
        calls["warm"].append((calls["objective"], size))  # no training step may have run yet
        return 123.456

    monkeypatch.setattr(route, "make_objective", counting_objective)
    monkeypatch.setattr(route, "warm_up", fake_warm_up)
    r = train_route(RouteConfig(estimators="blackbox", **{**TINY, "epochs": 1, "max_steps": 2}))
    assert calls["warm"] == [(0, 6)] and calls["objective"] == 2
    assert r["seconds"]["pool_start"] == 123.46 and r["seconds"]["train"] < 100
    calls["warm"].clear()
    calls["objective"] = 0
    several = run_route(RouteConfig(estimators=("st", "blackbox"), **{**TINY, "epochs": 1, "max_steps": 1}))
    assert calls["warm"][0] == (0, 6) and several["pool_start_seconds"] == 123.46  # shared pool: warmed first


def test_route_figure_says_which_cost_is_which_and_shares_one_colour_scale(monkeypatch, tmp_path):
    data = generate_warcraft(3, 6, seed=0)
    solver = GridShortestPath()
    costs = data.weights / 4.0  # predicted costs on another scale: the same paths
    pred = solver.solve(torch.from_numpy(costs)).numpy()
    pred[1] = data.paths[1]  # the true path (optimal)
    pred[2] = solver.solve(torch.from_numpy(data.weights[::-1, ::-1].copy())).numpy()[2]  # some other path
    figs = []
    monkeypatch.setattr(route, "save_figure", lambda fig, path, dpi=100: figs.append(fig) or path)
    plot_paths(data, pred, costs, tmp_path / "f.png", n=3)
    fig = figs[0]
    titles = [ax.get_title() for ax in fig.axes[:12]]
    c_opt = path_cost(data.weights, data.paths)
    c_pred = path_cost(data.weights, pred)
    top = [t for t in titles if t.startswith("map")]
    assert len(top) == 3
    for i, t in enumerate(top):
        assert f"predicted path cost {float(c_pred[i]):.1f}" in t and f"optimal {float(c_opt[i]):.1f}" in t
    assert "(optimal)" in top[1]
    images = [ax.images[0] for ax in fig.axes if ax.images and ax.images[0].get_array().ndim == 2]
    assert len(images) == 6  # true and predicted costs of three maps
    assert len({im.get_clim() for im in images}) == 1  # one colour scale
    predicted = [im for im in images if "predicted costs" in im.axes.get_title()]
    assert len(predicted) == 3 and "x 4" in predicted[0].axes.get_title()
    np.testing.assert_allclose(np.asarray(predicted[0].get_array()), data.weights[0], rtol=1e-9)  # rescaled by s=4
    assert any(ax.get_ylabel() == "vertex cost (true scale)" for ax in fig.axes)  # the colour bar


def test_curves_have_integer_epoch_ticks_and_reference_lines(monkeypatch, tmp_path):
    figs = []
    monkeypatch.setattr(common, "save_figure", lambda fig, path, dpi=120: figs.append(fig) or path)
    common.plot_curves({"a": [0.5, 0.7, 0.8]}, tmp_path / "c.png", "epoch", "accuracy", percent=True,
                       references={"chance": 0.1})
    ax = figs[0].axes[0]
    figs[0].canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert [label.get_text() for label in ax.get_legend().get_texts()] == ["a", "chance: 10.0%"]
    assert ax.yaxis.get_major_formatter()(0.8, 0).endswith("%")


def test_solver_workers_give_the_same_training_run():
    """Solving on a process pool changes where the solver runs, not the result (same seed -> same history)."""
    base = {**TINY, "epochs": 1, "max_steps": 2}
    inline = train_route(RouteConfig(estimators="imle", workers=0, **base))
    pooled = train_route(RouteConfig(estimators="imle", workers=2, **base))
    assert pooled["history"]["train_loss"] == pytest.approx(inline["history"]["train_loss"], rel=1e-6)
    assert pooled["test"] == pytest.approx(inline["test"])


def test_training_on_real_file_layout(tmp_path):
    """--data-dir reads the published .npy files (written here from generated maps)."""
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        generate_warcraft(30, 6, seed=seed).save(tmp_path / "6x6", split)
    r = train_route(RouteConfig(estimators="blackbox", data_dir=str(tmp_path), **{**TINY, "epochs": 1}))
    assert r["data"].startswith("real files") and r["n_train"] == 30 and r["n_test"] == 20 and r["n_val"] == 20


def test_metrics_count_ties_as_cost_optimal():
    """Uniform costs on a 3x4 grid: every 4-vertex path from (0,0) to (2,3) is optimal."""
    w = torch.ones(3, 3, 4, dtype=torch.float64)

    def mask(cells):
        m = torch.zeros(3, 4, dtype=torch.float64)
        for r, c in cells:
            m[r, c] = 1.0
        return m

    a = mask([(0, 0), (1, 1), (2, 2), (2, 3)])
    b = mask([(0, 0), (0, 1), (1, 2), (2, 3)])
    detour = mask([(0, 0), (1, 0), (2, 1), (2, 2), (2, 3)])
    m = shortest_path_metrics(torch.stack([a, b, detour]), w, torch.stack([a, a, a]))
    assert m["cost_optimal_accuracy"] == pytest.approx(2 / 3)  # the tie counts, the detour does not
    assert m["exact_match_accuracy"] == pytest.approx(1 / 3)
    assert m["cost_ratio"] == pytest.approx((1 + 1 + 5 / 4) / 3)
    np.testing.assert_allclose(path_cost(w, torch.stack([a, b, detour])).numpy(), [4.0, 4.0, 5.0])
    optimal = GridShortestPath().solve(w)
    assert shortest_path_metrics(optimal, w, torch.stack([b, b, b]))["cost_optimal_accuracy"] == 1.0


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("bad, match", [
    ({"estimators": "adam"}, "estimators must be among"),
    ({"estimators": ("imle", "nope")}, "estimators"),
    ({"estimators": ()}, "estimators"),
    ({"map_style": "pixelart"}, "map_style"),
    ({"n_train": 0}, "n_train"),
    ({"size": 1}, "size"),
    ({"scale": -1.0}, "scale"),
    ({"lam": float("nan")}, "lam"),
    ({"workers": -1}, "workers"),
    ({"samples": 0}, "samples"),
    ({"max_steps": 0}, "max_steps"),
    ({"device": "tpu"}, "device"),
])
def test_config_rejects_bad_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        RouteConfig(**bad).validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        RouteConfig(device="cuda").validate()


def test_estimator_lists_and_presets():
    assert RouteConfig(estimators="all").names() == list(ESTIMATORS)
    assert RouteConfig(estimators="fy, imle,fy").names() == ["fy", "imle"]  # a string is split at commas
    assert RouteConfig(estimators=("fy", "imle")).estimators == ("fy", "imle")
    with pytest.raises(ValueError, match="one estimator"):
        train_route(RouteConfig(estimators="imle,fy", **TINY))
    fields = {f.name for f in dataclasses.fields(RouteConfig)}
    assert list(PRESETS) == ["quick", "default", "large", "paper"] and PRESETS["default"] == {}
    for preset in PRESETS.values():
        assert set(preset) <= fields
        RouteConfig(**preset).validate()
    assert PRESETS["quick"]["n_train"] < RouteConfig().n_train < PRESETS["paper"]["n_train"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_network_on_gpu_solver_on_cpu_workers():
    r = train_route(RouteConfig(estimators="imle", device="cuda", workers=2, **{**TINY, "epochs": 2}))
    assert r["device"].startswith("cuda") and r["history"]["train_loss"][-1] < r["history"]["train_loss"][0]


@pytest.mark.slow
def test_demo_defaults_learn_to_route():
    """The ``make demo`` run (12x12 maps, CPU): far better than chance after a few minutes."""
    r = train_route(RouteConfig(out=None, progress=False))
    assert r["test"]["cost_optimal_accuracy"] > 0.6 and r["test"]["cost_ratio"] < 1.03


def test_clamped_perturbed_costs_are_reported_not_warned():
    """The grid has no exact guard: the app clamps negative perturbed costs knowingly (guard=Clamp(), no
    GuardWarning) and reports the share with the results, in the JSON and below the table; multiplicative noise
    never clamps and gets no line."""
    import warnings

    from discreteopt.maximizer import GuardWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", GuardWarning)
        r = train_route(RouteConfig(estimators=("blackbox",), **{**TINY, "epochs": 1, "lam": 1e3}))
        p = tiny_run("perturbed")
    g = r["guard"]
    assert 0 < g["clamped_entries"] <= g["guarded_entries"]
    assert g["clamped_fraction"] == g["clamped_entries"] / g["guarded_entries"]
    # guarded: every entry of every training solve (forward B and backward B per step), none at evaluation
    assert g["guarded_entries"] == 36 * r["steps"] * 2 * TINY["batch_size"]
    assert f"blackbox {g['clamped_fraction']:.2%}" in results_table(r)
    assert p["guard"]["clamped_entries"] == 0 and "clamped" not in results_table(p)
    several = {"runs": [r, p], "rows": [], "pool_start_seconds": None}
    assert "clamped to 0" in results_table(several) and "perturbed" not in results_table(several)
