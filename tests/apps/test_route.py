"""Learning to route end to end: every estimator trains (the loss falls), metrics, files, workers, real files."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest
import torch

from discreteopt.apps.route import (
    ESTIMATORS,
    PRESETS,
    RouteConfig,
    load_data,
    results_table,
    run_route,
    train_route,
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
    return train_route(RouteConfig(estimator=estimator, **TINY))


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
    cfg = RouteConfig(estimator="imle", **TINY)
    data = load_data(cfg)  # the same seeded maps as tiny_run's
    trained = tiny_run("imle")
    torch.manual_seed(cfg.seed)
    init = CombResNet(grid_size=6, width=8).eval()
    with torch.no_grad():
        x = torch.from_numpy(data.test.maps).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, 48, 48]
        pred = GridShortestPath().solve(init(x).double())
    untrained = shortest_path_metrics(pred, data.test.weights, data.test.paths)
    assert trained["test"]["cost_ratio"] < untrained["cost_ratio"] - 0.05


def test_run_writes_json_and_figures(tmp_path):
    cfg = RouteConfig(**{**TINY, "epochs": 2, "out": str(tmp_path)}, estimator="imle,fy")
    result = run_route(cfg)
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
    assert "cost_optimal_accuracy" in table and "| fy" in table
    single = results_table(result["runs"][0])
    assert "| train" in single and "| test" in single


def test_solver_workers_give_the_same_training_run():
    """Solving on a process pool changes where the solver runs, not the result (same seed -> same history)."""
    base = {**TINY, "epochs": 1, "max_steps": 2}
    inline = train_route(RouteConfig(estimator="imle", workers=0, **base))
    pooled = train_route(RouteConfig(estimator="imle", workers=2, **base))
    assert pooled["history"]["train_loss"] == pytest.approx(inline["history"]["train_loss"], rel=1e-6)
    assert pooled["test"] == pytest.approx(inline["test"])


def test_training_on_real_file_layout(tmp_path):
    """--data-dir reads the published .npy files (written here from generated maps)."""
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        generate_warcraft(30, 6, seed=seed).save(tmp_path / "6x6", split)
    r = train_route(RouteConfig(estimator="blackbox", data_dir=str(tmp_path), **{**TINY, "epochs": 1}))
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
    ({"estimator": "adam"}, "estimator must be one of"),
    ({"estimator": "imle,nope"}, "estimator"),
    ({"map_style": "pixelart"}, "map_style"),
    ({"n_train": 0}, "n_train"),
    ({"size": 1}, "size"),
    ({"sigma": -1.0}, "sigma"),
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
    assert RouteConfig(estimator="all").estimators() == list(ESTIMATORS)
    assert RouteConfig(estimator="fy, imle,fy").estimators() == ["fy", "imle"]
    with pytest.raises(ValueError, match="one estimator"):
        train_route(RouteConfig(estimator="imle,fy", **TINY))
    fields = {f.name for f in dataclasses.fields(RouteConfig)}
    for preset in PRESETS.values():
        assert set(preset) <= fields
        RouteConfig(**preset).validate()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_network_on_gpu_solver_on_cpu_workers():
    r = train_route(RouteConfig(estimator="imle", device="cuda", workers=2, **{**TINY, "epochs": 2}))
    assert r["device"].startswith("cuda") and r["history"]["train_loss"][-1] < r["history"]["train_loss"][0]


@pytest.mark.slow
def test_demo_defaults_learn_to_route():
    """The ``make demo`` run (12x12 maps, CPU): far better than chance after a few minutes."""
    r = train_route(RouteConfig(out=None, progress=False))
    assert r["test"]["cost_optimal_accuracy"] > 0.6 and r["test"]["cost_ratio"] < 1.03
