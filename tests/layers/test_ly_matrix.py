"""Every estimator with every solver through ``DiscreteLayer``: shapes, feasibility, and forward/backward
equal to each estimator's formula recomputed by hand from the same noise (reproduced from the seed).

The reference implementations below call ``solver.solve`` directly on the (guarded) natural argument, so the
layer's plumbing -- sign flip for min-sense solvers, guard, flattening of the sample dimension, executor,
autograd -- is checked exactly for every solver, not only for the one an estimator was developed on.
"""

from __future__ import annotations

import pytest
import torch

import discreteopt as do
from discreteopt.estimators import (
    AIMLE,
    IMLE,
    Interpolation,
    MAPBaseline,
    PerturbedOptimizer,
    ScoreFunction,
    StraightThrough,
)
from discreteopt.losses import FenchelYoungLoss, SPOPlus
from discreteopt.noise import Antithetic, Gumbel, Normal
from discreteopt.solvers import ILP, Argmax, Assignment, GraphShortestPath, GridShortestPath, Knapsack, TopK

SEED = 11
B = 3


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def make_problem(name):
    """(solver, natural argument theta [B, *E] float64). Costs of min-sense solvers lie in [2, 6], so the
    unit-size perturbations used below never reach the guard's bound (the formulas then hold exactly)."""
    g = _gen(PROBLEMS.index(name))
    if name == "topk":
        return TopK(2), torch.randn(B, 5, generator=g, dtype=torch.float64)
    if name == "argmax":
        return Argmax(), torch.randn(B, 4, generator=g, dtype=torch.float64)
    if name == "grid":
        return GridShortestPath(), 2 + 4 * torch.rand(B, 3, 3, generator=g, dtype=torch.float64)
    if name == "graph":
        return GraphShortestPath.grid(3, 3), 2 + 4 * torch.rand(B, 12, generator=g, dtype=torch.float64)
    if name == "ilp":
        return (ILP(A_ub=[[1, 1, 1, 1], [1, 0, 1, 0]], b_ub=[2, 1]),
                torch.randn(B, 4, generator=g, dtype=torch.float64))
    if name == "knapsack":
        return Knapsack([3, 4, 5, 2], 7), torch.randn(B, 4, generator=g, dtype=torch.float64) + 0.5
    if name == "assignment":
        return Assignment(), torch.randn(B, 3, 3, generator=g, dtype=torch.float64)
    raise KeyError(name)


PROBLEMS = ["topk", "argmax", "grid", "graph", "ilp", "knapsack", "assignment"]


def maximize(solver, theta_max):
    """Reference MAP in the max convention, with the default Clamp guard: ``theta [N, *E] -> y [N, *Y]``."""
    w = -theta_max if solver.sense == "min" else theta_max
    return solver.solve(w if solver.min_cost is None else torch.clamp(w, min=solver.min_cost))


def solve_samples(solver, thetas):
    """``[B, S, *E] -> [B, S, *Y]`` through :func:`maximize`."""
    b, s = thetas.shape[:2]
    return maximize(solver, thetas.reshape(b * s, *thetas.shape[2:])).reshape(b, s, *thetas.shape[2:])


def draw(noise, theta, s, seed=SEED):
    return noise.sample((theta.shape[0], s, *theta.shape[1:]), _gen(seed), dtype=theta.dtype)


def inner(a, b):
    return (a * b).flatten(2).sum(-1)  # [B, S, *E] -> [B, S]


# --------------------------------------------------------------------------- reference formulas (max convention)
def ref_imle(solver, t, g, lam=1.0, s=3, scale=0.5):
    eps = draw(Gumbel(scale), t, s)
    y = solve_samples(solver, t.unsqueeze(1) + eps)
    y_target = solve_samples(solver, (t.unsqueeze(1) - lam * g.unsqueeze(1)) + eps)
    return y.mean(1), ((y - y_target) / lam).mean(1)


def ref_aimle_two_sided(solver, t, g, lam=1.0, s=2, scale=0.5):
    eps = draw(Gumbel(scale), t, s)
    y = solve_samples(solver, t.unsqueeze(1) + eps)
    up = solve_samples(solver, (t.unsqueeze(1) + lam * g.unsqueeze(1)) + eps)
    down = solve_samples(solver, (t.unsqueeze(1) - lam * g.unsqueeze(1)) + eps)
    return y.mean(1), ((up - down) / (2 * lam)).mean(1)


def ref_interpolation(solver, t, g, lam=1.0):
    y = maximize(solver, t)
    return y, (y - maximize(solver, t - lam * g)) / lam


def ref_perturbed(solver, t, g, sigma=0.7, s=8, multiplicative=False, baseline=None, noise=None):
    z = draw(noise or Normal(), t, s)
    if multiplicative:
        thetas = t.unsqueeze(1) * torch.exp(sigma * z - sigma**2 / 2)
    else:
        thetas = t.unsqueeze(1) + sigma * z
    y = solve_samples(solver, thetas)
    v = inner(g.unsqueeze(1), y)  # [B, S]
    if baseline == "loo":
        v = v - (v.sum(1, keepdim=True) - v) / (s - 1)
    elif baseline == "map":
        v = v - inner(g.unsqueeze(1), maximize(solver, t).unsqueeze(1))
    w = z / sigma  # grad nu(Z) / sigma for N(0, 1)
    if multiplicative:
        w = w / t.unsqueeze(1)
    grad = (v.reshape(*v.shape, *([1] * (t.ndim - 1))) * w).mean(1)
    return y.mean(1), grad


ESTIMATORS = {
    "imle": (lambda: IMLE(lam=1.0, samples=3, noise=Gumbel(0.5)), ref_imle),
    "aimle": (lambda: AIMLE(samples=3, noise=Gumbel(0.5), initial_lam=1.0), ref_imle),
    "aimle_two_sided": (lambda: AIMLE(samples=2, noise=Gumbel(0.5), initial_lam=1.0, two_sided=True),
                        ref_aimle_two_sided),
    "interpolation": (lambda: Interpolation(lam=1.0), ref_interpolation),
    "perturbed": (lambda: PerturbedOptimizer(scale=0.7, samples=8), ref_perturbed),
    "perturbed_mult": (lambda: PerturbedOptimizer(scale=0.7, samples=8, multiplicative=True),
                       lambda *a: ref_perturbed(*a, multiplicative=True)),
    "perturbed_antithetic": (lambda: PerturbedOptimizer(scale=0.7, samples=8, noise=Antithetic(Normal())),
                             lambda *a: ref_perturbed(*a, noise=Antithetic(Normal()))),
    "perturbed_map_baseline": (lambda: PerturbedOptimizer(scale=0.7, samples=8, baseline=MAPBaseline()),
                               lambda *a: ref_perturbed(*a, baseline="map")),
    "score_function": (lambda: ScoreFunction(scale=0.7, samples=8), lambda *a: ref_perturbed(*a, baseline="loo")),
    "straight_through": (lambda: StraightThrough(), lambda solver, t, g: (maximize(solver, t), g)),
}
#: estimators whose per-sample estimate never points uphill for a linear loss: <grad_max, g> >= 0
MONOTONE = {"imle", "aimle", "aimle_two_sided", "interpolation", "straight_through"}


@pytest.mark.parametrize("est_name", list(ESTIMATORS))
@pytest.mark.parametrize("problem", PROBLEMS)
def test_layer_equals_the_estimator_formula_for_every_solver(problem, est_name):
    solver, theta = make_problem(problem)
    make_est, ref = ESTIMATORS[est_name]
    sign = -1.0 if solver.sense == "min" else 1.0
    g = torch.rand(theta.shape, generator=_gen(5), dtype=theta.dtype) * 2 - 1  # dL/dy in [-1, 1]

    layer = do.DiscreteLayer(solver, make_est(), seed=SEED)
    x = theta.clone().requires_grad_(True)
    y = layer(x)
    assert y.shape == theta.shape and y.dtype == theta.dtype and y.requires_grad
    (grad,) = torch.autograd.grad((y * g).sum(), x)

    y_ref, grad_max_ref = ref(solver, sign * theta, g)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(grad, sign * grad_max_ref)  # back to the natural argument's space
    assert torch.isfinite(grad).all()
    if est_name in MONOTONE:  # <dL/dtheta_max, g> >= 0 per instance, and not all zero
        along = (sign * grad * g).flatten(1).sum(1)
        assert bool((along >= -1e-9).all()), along

    # every sample is a feasible solution; samples keep the batch dimension
    ys = do.DiscreteLayer(solver, make_est(), seed=SEED)(theta, return_samples=True)
    s = ys.shape[1]
    assert ys.shape == (B, s, *theta.shape[1:])
    feasible = solver.is_feasible(ys.reshape(B * s, *theta.shape[1:]).numpy())
    assert feasible is None or bool(feasible.all())


@pytest.mark.parametrize("problem", PROBLEMS)
def test_losses_equal_their_gradient_formulas_for_every_solver(problem):
    solver, theta = make_problem(problem)
    sign = -1.0 if solver.sense == "min" else 1.0
    y_true = maximize(solver, sign * theta.flip(0))  # the solution of another instance

    # Fenchel-Young: gradient w.r.t. the natural argument = sign * (E[y*(theta_max + sigma Z)] - y_true)
    fy = FenchelYoungLoss(solver, scale=0.7, samples=8, seed=SEED, reduction="sum")
    x = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fy(x, y_true), x)
    y_mean, _ = ref_perturbed(solver, sign * theta, torch.zeros_like(theta))
    torch.testing.assert_close(grad, sign * (y_mean - y_true))

    # SPO+: in cost space (c = -theta_max = -sign * natural), d l / d c_hat = 2 (y*(c) - y*(2 c_hat - c));
    # the loss is >= 0
    true = theta.flip(0)
    pred = theta.clone().requires_grad_(True)
    loss = SPOPlus(solver, reduction="none")(pred, true)
    (grad,) = torch.autograd.grad(loss.sum(), pred)
    c_hat, c = -sign * theta, -sign * true
    y_star = maximize(solver, -c)  # argmin <c, y>
    y_tilde = maximize(solver, c - 2 * c_hat)  # argmin <2 c_hat - c, y>
    torch.testing.assert_close(grad, -sign * 2 * (y_star - y_tilde))
    assert bool((loss >= -1e-9).all())
