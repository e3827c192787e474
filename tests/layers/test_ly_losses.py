"""Losses: Fenchel-Young (gradient formula, value, gradcheck), SPO+ (formula, zero at the truth, gradcheck),
Hamming, regret, and their input errors."""

from __future__ import annotations

import pytest
import torch

import discreteopt as do
from discreteopt.estimators import IMLE, PerturbedOptimizer
from discreteopt.losses import FenchelYoungLoss, HammingLoss, SPOPlus, regret
from discreteopt.noise import Normal
from discreteopt.solvers import GraphShortestPath, GridShortestPath, Knapsack, TopK


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _fy(solver, seed=0, **kw):
    return FenchelYoungLoss(solver, seed=seed, **kw)


CASES = {  # natural arguments (costs >= 1 for shortest paths)
    "topk": (TopK(2), torch.randn(3, 5, generator=_gen(1), dtype=torch.float64)),
    "grid": (GridShortestPath(), 1 + 3 * torch.rand(2, 3, 3, generator=_gen(2), dtype=torch.float64)),
    "graph": (GraphShortestPath.grid(3, 3), 1 + 3 * torch.rand(2, 12, generator=_gen(3), dtype=torch.float64)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("multiplicative", [False, True])
def test_fenchel_young_value_and_gradient_equal_their_formulas(name, multiplicative):
    solver, theta = CASES[name]
    sign = -1.0 if solver.sense == "min" else 1.0
    sigma, s = 0.5, 6
    y_true = solver.solve(theta.flip(0))
    fy = _fy(solver, seed=4, scale=sigma, samples=s, multiplicative=multiplicative, reduction="none")
    x = theta.clone().requires_grad_(True)
    loss = fy(x, y_true)  # [B]
    (grad,) = torch.autograd.grad(loss.sum(), x)
    # by hand, with the same noise: theta_Z = theta_max + sigma Z (or theta_max * exp(sigma Z - sigma^2 / 2))
    t = sign * theta
    z = Normal().sample((t.shape[0], s, *t.shape[1:]), _gen(4), dtype=t.dtype)
    factor = torch.exp(sigma * z - sigma**2 / 2) if multiplicative else None
    thetas = t.unsqueeze(1) * factor if multiplicative else t.unsqueeze(1) + sigma * z
    ys = solver.maximize(thetas.reshape(-1, *t.shape[1:])).reshape(thetas.shape)  # costs stay >= 0 here
    value = (thetas * ys).flatten(2).sum(-1).mean(1) - (t * y_true).flatten(1).sum(1)
    torch.testing.assert_close(loss.detach(), value)
    mean_y = (ys * factor).mean(1) if multiplicative else ys.mean(1)
    torch.testing.assert_close(grad, sign * (mean_y - y_true))  # E[y_perturbed] - y_true (max convention)


@pytest.mark.parametrize("name", list(CASES))
def test_fenchel_young_passes_gradcheck_with_fixed_noise(name):
    # with the noise held fixed the MC objective is piecewise linear in theta: autograd's gradient is exact
    # away from kinks, and finite differences of step 1e-6 cross none
    solver, theta = CASES[name]
    y_true = solver.solve(theta.flip(0))
    for multiplicative in (False, True):
        def fn(t, multiplicative=multiplicative):
            return _fy(solver, seed=5, scale=0.5, samples=4, multiplicative=multiplicative)(t, y_true)

        assert torch.autograd.gradcheck(fn, (theta.clone().requires_grad_(True),), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_spo_plus_is_zero_at_the_truth_nonnegative_and_passes_gradcheck(name):
    solver, true = CASES[name]
    spo = SPOPlus(solver, reduction="none")
    torch.testing.assert_close(spo(true, true), torch.zeros(true.shape[0], dtype=true.dtype))  # l(c, c) = 0
    pred = true + 0.8 * torch.randn(true.shape, generator=_gen(6), dtype=true.dtype)
    loss = spo(pred, true)
    assert bool((loss >= 0).all()) and bool((loss > 0).any())
    # y_true given: same value, one solver call of B instances instead of 2B
    spo.stats.reset()
    torch.testing.assert_close(spo(pred, true, y_true=solver.solve(true)), loss)
    assert (spo.stats.forward_calls, spo.stats.forward_instances) == (1, true.shape[0])
    assert torch.autograd.gradcheck(lambda p: SPOPlus(solver)(p, true), (pred.clone().requires_grad_(True),),
                                    eps=1e-6, atol=1e-6)


def test_spo_plus_gradient_formula_on_a_hand_checked_shortest_path():
    # 8-neighbour 3x3 grid; true costs favour the top-right route, the prediction the left-bottom one
    true = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 5.0, 1.0], [2.0, 2.0, 1.0]]])
    pred = torch.tensor([[[1.0, 3.0, 3.0], [1.0, 5.0, 3.0], [1.0, 1.0, 1.0]]], requires_grad=True)
    top = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]])
    solver = GridShortestPath()
    torch.testing.assert_close(solver.solve(true), top)
    y_tilde = solver.solve((2 * pred - true).detach().clamp_min(0))
    loss = SPOPlus(solver)(pred, true)
    loss.backward()
    torch.testing.assert_close(pred.grad, 2 * (top - y_tilde))  # 2 (y*(c) - y*(2 c_hat - c))
    expected = ((true - 2 * pred) * y_tilde).sum() + 2 * (pred * top).sum() - (true * top).sum()
    torch.testing.assert_close(loss, expected.detach())


def test_hamming_loss_values_gradient_and_reductions():
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.0, 1.0]], requires_grad=True)
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    per = HammingLoss(reduction="none")(y, t)
    torch.testing.assert_close(per.detach(), torch.tensor([0.5, 0.25]))
    HammingLoss()(y, t).backward()
    torch.testing.assert_close(y.grad, (1 - 2 * t) / 8)  # mean over 2 instances of mean over 4 entries
    torch.testing.assert_close(HammingLoss(reduction="sum")(y, t).detach(), torch.tensor(0.75))


def test_regret_min_and_max_sense_and_normalisation():
    solver = GridShortestPath()
    costs = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 5.0, 1.0], [2.0, 2.0, 1.0]]])
    left = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
    torch.testing.assert_close(regret(solver, costs, left), torch.tensor([2.0]))  # 6 - 4
    torch.testing.assert_close(regret(solver, costs, left, normalized=True), torch.tensor([0.5]))
    torch.testing.assert_close(regret(solver, costs, solver.solve(costs)), torch.tensor([0.0]))
    scores = torch.tensor([[3.0, 1.0, 2.0]])
    torch.testing.assert_close(regret(TopK(1), scores, torch.tensor([[0.0, 0.0, 1.0]])), torch.tensor([1.0]))
    ks = Knapsack([1, 1, 1], 2)
    r = regret(ks, torch.tensor([[3.0, 2.0, 1.0], [1.0, 1.0, 5.0]]),
               torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]), reduction="mean", normalized=True)
    torch.testing.assert_close(r, torch.tensor((2.0 + 4.0) / (5.0 + 6.0)))  # PyEPO: sum of regrets / sum of optima


def test_loss_input_errors_name_the_argument():
    solver, theta = CASES["topk"]
    y_true = solver.solve(theta)
    with pytest.raises(ValueError, match="PerturbedOptimizer"):
        FenchelYoungLoss(do.DiscreteLayer(solver, IMLE()))
    with pytest.raises(ValueError, match="layer_or_solver"):
        FenchelYoungLoss("topk")
    with pytest.raises(ValueError, match="y_true must have the shape"):
        _fy(solver)(theta, y_true[:, :3])
    with pytest.raises(ValueError, match="theta must be finite"):
        _fy(solver)(torch.full_like(theta, float("nan")), y_true)
    with pytest.raises(ValueError, match="reduction"):
        FenchelYoungLoss(solver, reduction="avg")
    with pytest.raises(ValueError, match="true must be finite"):
        SPOPlus(solver)(theta, torch.full_like(theta, float("inf")))
    with pytest.raises(ValueError, match="pred must have shape"):
        SPOPlus(solver)(theta[0], theta[0])
    with pytest.raises(ValueError, match="y_hat must have the shape"):
        regret(solver, theta, y_true[:1])
    with pytest.raises(ValueError, match="y_true must have the shape"):
        HammingLoss()(y_true, y_true[:, :2])
    with pytest.raises(ValueError, match="scale"):
        FenchelYoungLoss(solver, scale=0.0)
    with pytest.raises(ValueError, match="no zero entry"):
        FenchelYoungLoss(solver, multiplicative=True)(torch.zeros_like(theta), y_true)
    layer = do.DiscreteLayer(solver, PerturbedOptimizer())
    assert FenchelYoungLoss(layer).layer is layer
