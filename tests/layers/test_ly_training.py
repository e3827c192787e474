"""Learning through solver layers: one gradient step lowers the loss for every estimator, and a linear cost
model trained through a layer reproduces target top-k sets and target shortest paths.

Short versions run in CI; the ``slow`` ones train with every estimator for longer.
"""

from __future__ import annotations

import pytest
import torch

import discreteopt as do
from discreteopt.data import generate_shortest_path
from discreteopt.estimators import (
    AIMLE,
    IMLE,
    Interpolation,
    PerturbedOptimizer,
    ScoreFunction,
    StraightThrough,
)
from discreteopt.losses import FenchelYoungLoss, SPOPlus, regret
from discreteopt.noise import Gumbel
from discreteopt.solvers import GraphShortestPath, GridShortestPath, TopK


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def l1(y, y_true):
    """Sum of absolute differences (Hamming distance for 0/1 vectors); gradient +-1 on wrong entries."""
    return (y - y_true).abs().sum()


# --------------------------------------------------------------------------- one gradient step
def step_problem(name):
    """(solver, true natural argument, starting point) for 8 instances; the start's MAP is wrong."""
    if name == "topk":
        t = torch.randn(8, 8, generator=_gen(0), dtype=torch.float64)
        return TopK(3), t, t + torch.randn(t.shape, generator=_gen(100), dtype=torch.float64)
    k = {"grid3x3": 3, "grid5x5": 5}[name]
    t = 1 + 4 * torch.rand(8, k, k, generator=_gen(0), dtype=torch.float64)
    return GridShortestPath(), t, t * torch.exp(0.7 * torch.randn(t.shape, generator=_gen(100), dtype=torch.float64))


def smoothed_hamming(solver, theta, y_true, sigma=0.5, m=256):
    """Task loss ``E_Z[ |y*(theta_max + sigma Z) - y_true|_1 ]`` with fixed Z (common random numbers)."""
    sign = -1.0 if solver.sense == "min" else 1.0
    t = sign * theta
    z = torch.randn((m, *t.shape), generator=_gen(999), dtype=t.dtype)
    th = (t.unsqueeze(0) + sigma * z).reshape(-1, *t.shape[1:])  # [M*B, *E]
    w = -th if solver.sense == "min" else th
    y = solver.solve(w if solver.min_cost is None else w.clamp_min(solver.min_cost))
    return float((y.reshape(m, *t.shape) - y_true).abs().mean())


STEP_ESTIMATORS = {
    "imle": lambda: IMLE(lam=1.0, samples=4),
    "aimle": lambda: AIMLE(samples=4),
    "aimle_two_sided": lambda: AIMLE(samples=4, two_sided=True),
    "interpolation": lambda: Interpolation(lam=1.0),
    "perturbed": lambda: PerturbedOptimizer(scale=0.5, samples=16),
    "perturbed_multiplicative": lambda: PerturbedOptimizer(scale=0.3, samples=16, multiplicative=True),
    "score_function": lambda: ScoreFunction(scale=0.5, samples=16),
    "straight_through": lambda: StraightThrough(),
    "fenchel_young": None,
    "spo_plus": None,
}


# the multiplicative perturbation keeps signs: it is meant for positive costs, not for mixed-sign top-k scores
STEP_CASES = [(p, e) for p in ("topk", "grid3x3", "grid5x5") for e in STEP_ESTIMATORS
              if not (p == "topk" and e == "perturbed_multiplicative")]


@pytest.mark.parametrize("problem, est_name", STEP_CASES)
def test_a_normalised_gradient_step_lowers_the_smoothed_task_loss(problem, est_name):
    solver, t_true, t0 = step_problem(problem)
    y_true = solver.solve(t_true)
    x = t0.clone().requires_grad_(True)
    if est_name == "fenchel_young":
        loss = FenchelYoungLoss(solver, scale=0.5, samples=16, seed=1)(x, y_true)
    elif est_name == "spo_plus":
        loss = SPOPlus(solver)(x, t_true)
    else:
        loss = l1(do.DiscreteLayer(solver, STEP_ESTIMATORS[est_name](), seed=1)(x), y_true)
    (g,) = torch.autograd.grad(loss, x)
    assert float(g.abs().sum()) > 0
    t1 = t0 - 0.1 * g / g.pow(2).mean().sqrt()  # every entry moves by 0.1 on average (costs are 1..5)
    before, after = smoothed_hamming(solver, t0, y_true), smoothed_hamming(solver, t1, y_true)
    assert before > 0.02
    assert after < before, (before, after)


# --------------------------------------------------------------------------- training a linear model
def topk_data(n_train, n_test, p=5, n=10, k=3, seed=0):
    """Features ``x [N, p]``, scores ``x W`` with a fixed random ``W``, targets ``top-k(x W)``."""
    w = torch.randn(p, n, generator=_gen(seed), dtype=torch.float64)
    x = torch.randn(n_train + n_test, p, generator=_gen(seed + 1), dtype=torch.float64)
    y = TopK(k).solve(x @ w)
    return (x[:n_train], y[:n_train], None), (x[n_train:], y[n_train:], None)


def path_data(n_train, n_test):
    """PyEPO's 5x5 shortest path (degree 1: costs linear in the features), true paths as targets."""
    d = generate_shortest_path(n_train + n_test, p=5, deg=1, noise_width=0.0, seed=135)
    x, c = torch.tensor(d.x, dtype=torch.float64), torch.tensor(d.c, dtype=torch.float64)
    y = GraphShortestPath.grid(5, 5).solve(c)
    return (x[:n_train], y[:n_train], c[:n_train]), (x[n_train:], y[n_train:], c[n_train:])


def train_linear(solver, loss_fn, data, epochs, lr=0.05, batch=32, bias=False, seed=0):
    """Adam on a linear model ``theta = x W (+ b)``; returns (exact-match accuracy, normalised regret) of the
    MAP decisions on the test split, before and after training."""
    (xtr, ytr, ctr), (xte, yte, cte) = data
    torch.manual_seed(seed)
    model = torch.nn.Linear(xtr.shape[1], ytr[0].numel(), bias=bias).double()
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def evaluate():
        with torch.no_grad():
            th = model(xte).reshape(yte.shape)
            pred = solver.solve(th if solver.min_cost is None else th.clamp_min(solver.min_cost))
            acc = float((pred == yte).flatten(1).all(1).double().mean())
            reg = None if cte is None else float(regret(solver, cte, pred, yte, normalized=True, reduction="mean"))
        return acc, reg

    start = evaluate()
    g = _gen(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            th = model(xtr[idx]).reshape(len(idx), *ytr.shape[1:])
            loss = loss_fn(th, ytr[idx], None if ctr is None else ctr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return start, evaluate()


def layer_loss(solver, est):
    layer = do.DiscreteLayer(solver, est, seed=0)
    return lambda th, y, c: l1(layer(th), y) / len(th)


def fy_loss(solver):
    fy = FenchelYoungLoss(solver, scale=0.5, samples=4, seed=0)
    return lambda th, y, c: fy(th, y)


def spo_loss(solver):
    spo = SPOPlus(solver)
    return lambda th, y, c: spo(th, c, y_true=y)


def test_short_training_reproduces_target_topk_sets():
    solver = TopK(3)
    (acc0, _), (acc, _) = train_linear(solver, layer_loss(solver, AIMLE(noise=Gumbel(0.3))), topk_data(400, 200),
                                       epochs=10)
    assert acc0 < 0.2 and acc >= 0.8, (acc0, acc)


def test_short_training_reproduces_target_paths():
    solver = GraphShortestPath.grid(5, 5)
    (acc0, reg0), (acc, reg) = train_linear(solver, layer_loss(solver, Interpolation(lam=10.0)), path_data(300, 200),
                                            epochs=8, bias=True)
    assert reg <= 0.25 * reg0 and reg <= 0.03 and acc >= acc0 + 0.2, (acc0, reg0, acc, reg)


LONG_TOPK = {  # estimator -> minimum test accuracy after 25 epochs (untrained: < 0.05)
    "imle": (lambda s: layer_loss(s, IMLE(lam=3.0, noise=Gumbel(0.3))), 0.7),
    "aimle": (lambda s: layer_loss(s, AIMLE(noise=Gumbel(0.3))), 0.9),
    "aimle_relative": (lambda s: layer_loss(s, AIMLE(noise=Gumbel(0.3), relative=True, initial_lam=0.1)), 0.9),
    "interpolation": (lambda s: layer_loss(s, Interpolation(lam=3.0)), 0.8),
    "perturbed": (lambda s: layer_loss(s, PerturbedOptimizer(scale=0.5, samples=8)), 0.85),
    "score_function": (lambda s: layer_loss(s, ScoreFunction(scale=0.5, samples=8)), 0.85),
    "straight_through": (lambda s: layer_loss(s, StraightThrough()), 0.85),
    "fenchel_young": (fy_loss, 0.9),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LONG_TOPK))
def test_long_training_reproduces_target_topk_sets(name):
    solver = TopK(3)
    make, threshold = LONG_TOPK[name]
    (_, _), (acc, _) = train_linear(solver, make(solver), topk_data(400, 200), epochs=25)
    assert acc >= threshold, acc


LONG_PATHS = {  # estimator -> maximum normalised test regret after 25 epochs (untrained: ~0.09)
    "imle": (lambda s: layer_loss(s, IMLE(lam=3.0, noise=Gumbel(0.1))), 0.02),
    "aimle": (lambda s: layer_loss(s, AIMLE(noise=Gumbel(0.1))), 0.02),
    "interpolation": (lambda s: layer_loss(s, Interpolation(lam=10.0)), 0.02),
    "perturbed": (lambda s: layer_loss(s, PerturbedOptimizer(scale=0.5, samples=8)), 0.02),
    "score_function": (lambda s: layer_loss(s, ScoreFunction(scale=0.5, samples=8)), 0.02),
    "straight_through": (lambda s: layer_loss(s, StraightThrough()), 0.02),
    "fenchel_young": (fy_loss, 0.02),
    "spo_plus": (spo_loss, 0.02),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LONG_PATHS))
def test_long_training_reproduces_target_paths(name):
    solver = GraphShortestPath.grid(5, 5)
    make, threshold = LONG_PATHS[name]
    (_, reg0), (_, reg) = train_linear(solver, make(solver), path_data(400, 200), epochs=25, bias=True)
    assert reg <= threshold and reg < 0.25 * reg0, (reg0, reg)
