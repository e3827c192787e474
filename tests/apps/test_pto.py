"""Predict-then-optimise benchmark: PyEPO's generator, the 5x5 lattice, regret, and training with every method."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from discreteopt.apps.pto import (
    METHODS,
    PRESETS,
    PtOConfig,
    lattice_solver,
    regret_table,
    results_table,
    run_benchmark,
    solve_exact,
)
from discreteopt.data.pyepo_shortest_path import generate_shortest_path, grid_arcs
from discreteopt.losses import regret
from discreteopt.metrics import normalized_regret


def reference_costs(n: int, p: int, deg: int, e: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The published generator written out: B, then x, then the noise, from one RandomState."""
    rnd = np.random.RandomState(seed)
    B = rnd.binomial(1, 0.5, (40, p))
    x = rnd.normal(0, 1, (n, p))
    c = np.empty((n, 40))
    for i in range(n):
        ci = (B @ x[i].reshape(p, 1)).T / np.sqrt(p) + 3
        ci = (ci**deg + 1) / 3.5**deg
        ci *= rnd.uniform(1 - e, 1 + e, 40)
        c[i] = ci
    return x, c


@pytest.mark.parametrize("deg, e", [(1, 0.0), (2, 0.5), (6, 0.5)])
def test_generator_follows_the_published_formula_and_draw_order(deg, e):
    data = generate_shortest_path(50, p=5, deg=deg, noise_width=e, seed=11)
    x, c = reference_costs(50, 5, deg, e, 11)
    np.testing.assert_allclose(data.x, x, rtol=1e-6)
    np.testing.assert_allclose(data.c, c, rtol=1e-5)
    assert data.x.dtype == np.float32 and data.c.shape == (50, 40)


def test_degree_one_without_noise_is_affine_and_noise_is_bounded():
    lin = generate_shortest_path(200, deg=1, noise_width=0.0, seed=3)
    X = np.hstack([lin.x, np.ones((200, 1))]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(X, lin.c.astype(np.float64), rcond=None)
    assert np.abs(X @ coef - lin.c).max() < 1e-5  # the linear model is well specified at degree 1
    noisy = generate_shortest_path(200, deg=1, noise_width=0.5, seed=3)  # same B and x (drawn first)
    ratio = noisy.c / lin.c
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 1.5 + 1e-6 and ratio.std() > 0.2


def test_lattice_matches_pyepo_arc_order_and_solves_negative_costs_exactly():
    solver = lattice_solver()
    assert [tuple(e) for e in solver.edges.tolist()] == grid_arcs((5, 5)) and len(grid_arcs((5, 5))) == 40
    # all 70 monotone paths of the 5x5 lattice, by choosing which 4 of the 8 moves go down
    arc = {a: i for i, a in enumerate(grid_arcs((5, 5)))}
    paths = []
    for downs in itertools.combinations(range(8), 4):
        y, v = np.zeros(40), 0
        for step in range(8):
            nxt = v + 5 if step in downs else v + 1
            y[arc[(v, nxt)]] = 1
            v = nxt
        paths.append(y)
    paths = np.stack(paths)  # [70, 40]
    costs = torch.randn(20, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.3
    assert (costs < 0).any()  # negative costs: plain Dijkstra would refuse them
    y = solve_exact(solver, costs).double().numpy()
    best = (costs.numpy() @ paths.T).min(1)
    np.testing.assert_allclose((costs.numpy() * y).sum(1), best, rtol=1e-12)


def test_normalized_regret_matches_hand_computation_and_losses_regret():
    c = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 1.0]])
    opt = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pred = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert normalized_regret(c, pred, opt) == pytest.approx((2 - 1 + 0) / (1 + 1))
    assert normalized_regret(c, opt, opt) == 0.0
    costs = torch.rand(16, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    solver = lattice_solver()
    y_opt = solve_exact(solver, costs).double()
    y_hat = solve_exact(solver, costs.flip(0)).double()
    assert normalized_regret(costs, y_hat, y_opt) == pytest.approx(
        float(regret(solver, costs, y_hat, y_opt, normalized=True, reduction="mean")))


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = PtOConfig(degrees=(6,), noises=(0.5,), n_train=200, n_test=200, epochs=6, progress=False, out=str(out))
    return run_benchmark(cfg), out


@pytest.mark.parametrize("method", METHODS)
def test_every_method_lowers_its_loss_and_the_test_regret(quick_result, method):
    result, _ = quick_result
    (row,) = [r for r in result["rows"] if r["method"] == method]
    curve = result["curves"][f"deg=6,noise=0.5,{method}"]
    assert len(curve) == 6 and curve[-1] < curve[0], f"{method}: loss did not fall: {curve}"
    # degree 6 is far from linear: the untrained model has regret ~0.8; every method must cut it by a quarter
    # (SPO+ and PFYL by far more, see the next test)
    assert 0.0 <= row["normalized_regret"] < 0.75 * row["initial_regret"]


def test_decision_focused_methods_beat_two_stage_under_misspecification(quick_result):
    """PyEPO's finding at high degree: SPO+ and PFYL have lower regret than two-stage least squares."""
    result, _ = quick_result
    regrets = {r["method"]: r["normalized_regret"] for r in result["rows"]}
    assert regrets["spo+"] < 0.5 * regrets["2s"] and regrets["pfyl"] < 0.5 * regrets["2s"]


def test_benchmark_writes_json_table_and_figure(quick_result):
    result, out = quick_result
    saved = json.loads((out / "bench_pto.json").read_text())
    assert len(saved["rows"]) == len(METHODS) and saved["config"]["degrees"] == [6]
    assert (out / "bench_pto.png").read_bytes()[:4] == b"\x89PNG"
    table = results_table(result)
    assert table.splitlines()[0].split("|")[3].strip() == "2s" and "| 6 " in table
    assert regret_table(result["rows"]) == table


@pytest.mark.parametrize("bad, match", [
    ({"methods": ("spo+", "lbfgs")}, "methods"),
    ({"methods": ()}, "methods"),
    ({"degrees": (0,)}, "degrees"),
    ({"noises": (1.0,)}, "noises"),
    ({"n_train": 0}, "n_train"),
    ({"lr": -1.0}, "lr"),
    ({"samples": 0}, "samples"),
])
def test_config_rejects_bad_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        PtOConfig(**bad).validate()
    PtOConfig(**PRESETS["quick"]).validate()
