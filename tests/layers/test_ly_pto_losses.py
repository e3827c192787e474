"""PyEPO's other methods: NCE, contrastive MAP, pointwise / pairwise / listwise LTR, perturbation gradient
(PGB, PGC) and negative identity. Values and gradients against hand computations on tiny instances (min and
max sense), finite differences, reductions, the solution pool they keep, and a short training run each on
PyEPO's 5x5 shortest path (the test regret drops)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import discreteopt as do
from discreteopt import SolutionCache
from discreteopt.apps.pto import lattice_solver, solve_exact
from discreteopt.data import generate_shortest_path
from discreteopt.estimators import NegativeIdentity
from discreteopt.losses import (
    NCE,
    ContrastiveMAP,
    ListwiseLTR,
    PairwiseLTR,
    PerturbationGradient,
    PointwiseLTR,
)
from discreteopt.metrics import normalized_regret
from discreteopt.solvers import GraphShortestPath, TopK

D64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def t(*row):
    """One instance ``[1, n]`` (float64)."""
    return torch.tensor([row], dtype=D64)


# 2x2 lattice (PyEPO arc order: right 0->1, down 0->2, down 1->3, right 2->3): two paths, A = right-down, B = down-right
GRID = GraphShortestPath.grid(2, 2)
A, B = t(1, 0, 1, 0)[0], t(0, 1, 0, 1)[0]
E = torch.eye(3, dtype=D64)  # the solutions of TopK(1) on 3 items


def test_the_tiny_instances_are_what_the_hand_computations_assume():
    assert torch.equal(GRID.solve(t(1, 2, 3, 0.5)), B.unsqueeze(0))  # <c, A> = 4, <c, B> = 2.5
    assert torch.equal(GRID.solve(t(1, 1, 1, 5)), A.unsqueeze(0))  # A = 2, B = 6
    assert GRID.sense == "min" and TopK(1).sense == "max"


def _grad(loss_fn, pred):
    x = pred.clone().requires_grad_(True)
    value = loss_fn(x)
    (g,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), g


# --------------------------------------------------------------------------- NCE and contrastive MAP
def test_nce_value_and_gradient_by_hand_min_and_max():
    # min: pool {A, B}, y* = A, c_hat = (1, 2, 3, .5): mean_P (<c_hat, A> - <c_hat, y>) = (0 + 1.5) / 2
    nce = NCE(GRID, SolutionCache.from_solutions(torch.stack([A, B])), reduction="none")
    value, g = _grad(lambda p: nce(p, A.unsqueeze(0)), t(1, 2, 3, 0.5))
    torch.testing.assert_close(value, t(0.75)[0])
    torch.testing.assert_close(g, (A - (A + B) / 2).unsqueeze(0))  # -(mean_P y - y*)
    # max: pool {e1, e2, e3}, y* = e1, r_hat = (1, 2, 4): mean_P (<r_hat, y> - 1) = (0 + 1 + 3) / 3
    nce = NCE(TopK(1), SolutionCache.from_solutions(E), reduction="none")
    value, g = _grad(lambda p: nce(p, E[:1]), t(1, 2, 4))
    torch.testing.assert_close(value, t(4 / 3)[0])
    torch.testing.assert_close(g, t(1 / 3 - 1, 1 / 3, 1 / 3))


def test_nce_adds_the_true_solutions_and_the_solved_ones_to_the_pool():
    nce = NCE(TopK(1))  # default cache: solve_ratio 1, empty pool
    pred, y_true = t(1, 2, 4), E[1:2]
    value, g = _grad(lambda p: nce(p, y_true), pred)
    assert len(nce.cache) == 2  # y*(r_hat) = e3 (solved) and y_true = e2
    torch.testing.assert_close(value, torch.tensor((4 - 2 + 0) / 2, dtype=D64))  # pool {e3, e2}
    torch.testing.assert_close(g, t(0, 0.5 - 1, 0.5))
    assert (nce.stats.forward_instances, nce.stats.cache_misses) == (1, 1)


def test_contrastive_map_value_and_gradient_by_hand_min_and_max():
    cmap = ContrastiveMAP(GRID, SolutionCache.from_solutions(torch.stack([A, B])), reduction="none")
    value, g = _grad(lambda p: cmap(p, A.unsqueeze(0)), t(1, 2, 3, 0.5))
    torch.testing.assert_close(value, t(1.5)[0])  # <c_hat, A> - min_P = 4 - 2.5
    torch.testing.assert_close(g, (A - B).unsqueeze(0))
    cmap = ContrastiveMAP(TopK(1), SolutionCache.from_solutions(E), reduction="none")
    value, g = _grad(lambda p: cmap(p, E[:1]), t(1, 2, 4))
    torch.testing.assert_close(value, t(3.0)[0])  # max_P - <r_hat, e1> = 4 - 1
    torch.testing.assert_close(g, t(-1, 0, 1))
    # at the truth the loss is 0; ties between pooled solutions go to the lowest index
    value, g = _grad(lambda p: cmap(p, E[:1]), t(5, 5, 1))
    torch.testing.assert_close(value, t(0.0)[0])
    torch.testing.assert_close(g, torch.zeros(1, 3, dtype=D64))


# --------------------------------------------------------------------------- learning to rank
def test_pointwise_ltr_value_and_gradient_by_hand():
    ltr = PointwiseLTR(GRID, SolutionCache.from_solutions(torch.stack([A, B])), reduction="none")
    pred, true = t(1, 2, 3, 0.5), t(1, 1, 1, 5)
    value, g = _grad(lambda p: ltr(p, true), pred)
    ra, rb = (2.0 - 4.0), (6.0 - 2.5)  # <true - pred, A>, <true - pred, B>
    torch.testing.assert_close(value, t((ra**2 + rb**2) / 2)[0])
    torch.testing.assert_close(g, (-(ra * A + rb * B)).unsqueeze(0))  # -2/M sum r_y y, M = 2


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_pairwise_ltr_value_and_gradient_by_hand(margin):
    # max: true r = (3, 1, 2) -> best e1; r_hat = (1, 2, 4): hinge(margin + 2 - 1) + hinge(margin + 4 - 1) over M-1
    ltr = PairwiseLTR(TopK(1), SolutionCache.from_solutions(E), margin=margin, reduction="none")
    value, g = _grad(lambda p: ltr(p, t(3, 1, 2)), t(1, 2, 4))
    torch.testing.assert_close(value, t((1 + margin + 3 + margin) / 2)[0])
    torch.testing.assert_close(g, t(-1, 0.5, 0.5))
    # r_hat = (3, 2, 1) ranks e1 first: only the margin can make a pair active, the best-vs-best slot never
    value, g = _grad(lambda p: ltr(p, t(3, 1, 2)), t(3, 2, 1))
    expected = {0.0: (0.0, t(0, 0, 0)), 0.5: (0.0, t(0, 0, 0))}[margin]
    torch.testing.assert_close(value, t(expected[0])[0])
    torch.testing.assert_close(g, expected[1])
    # min: true c = (1, 1, 1, 5) -> best A; c_hat prefers B: hinge(margin + <c_hat, A> - <c_hat, B>) / 1
    ltr = PairwiseLTR(GRID, SolutionCache.from_solutions(torch.stack([A, B])), margin=margin, reduction="none")
    value, g = _grad(lambda p: ltr(p, t(1, 1, 1, 5)), t(1, 2, 3, 0.5))
    torch.testing.assert_close(value, t(1.5 + margin)[0])
    torch.testing.assert_close(g, (A - B).unsqueeze(0))


def test_pairwise_ltr_margin_activates_close_pairs():
    ltr = PairwiseLTR(TopK(1), SolutionCache.from_solutions(E), margin=1.5, reduction="none")
    value, g = _grad(lambda p: ltr(p, t(3, 1, 2)), t(3, 2, 1))  # diffs -1, -2: only e2's pair within 1.5
    torch.testing.assert_close(value, t(0.5 / 2)[0])
    torch.testing.assert_close(g, t(-0.5, 0.5, 0))


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_listwise_ltr_value_and_gradient_by_hand(tau):
    # max: top-one probabilities over {e1, e2, e3} are softmax(r / tau)
    ltr = ListwiseLTR(TopK(1), SolutionCache.from_solutions(E), tau=tau, reduction="none")
    r, r_hat = t(3, 1, 2)[0], t(1, 2, 4)[0]
    value, g = _grad(lambda p: ltr(p, r.unsqueeze(0)), r_hat.unsqueeze(0))
    p_true = torch.exp(r / tau) / torch.exp(r / tau).sum()
    p_pred = torch.exp(r_hat / tau) / torch.exp(r_hat / tau).sum()
    torch.testing.assert_close(value, -(p_true * torch.log(p_pred)).sum().reshape(1))
    torch.testing.assert_close(g, ((p_pred - p_true) / tau).unsqueeze(0))
    # min: the cheaper path gets the higher probability: softmax(-<c, y> / tau)
    ltr = ListwiseLTR(GRID, SolutionCache.from_solutions(torch.stack([A, B])), tau=tau, reduction="none")
    c, c_hat = t(1, 1, 1, 5)[0], t(1, 2, 3, 0.5)[0]
    value, g = _grad(lambda p: ltr(p, c.unsqueeze(0)), c_hat.unsqueeze(0))
    obj_true, obj_pred = torch.stack([c @ A, c @ B]), torch.stack([c_hat @ A, c_hat @ B])  # (2, 6), (4, 2.5)
    q_true = torch.softmax(-obj_true / tau, 0)
    q_pred = torch.softmax(-obj_pred / tau, 0)
    assert q_true[0] > q_true[1]  # A, the true optimum, ranks first
    torch.testing.assert_close(value, -(q_true * torch.log(q_pred)).sum().reshape(1))
    torch.testing.assert_close(g, (-((q_pred - q_true) @ torch.stack([A, B])) / tau).unsqueeze(0))


# --------------------------------------------------------------------------- perturbation gradient
def test_perturbation_gradient_values_and_gradients_by_hand_max_sense():
    # r_hat = (1, 2, 2.5), r = (0, 0, 2), h = 0.5: z(r_hat) = 2.5 (e3), z(r_hat - h r) = z(1, 2, 1.5) = 2 (e2),
    # z(r_hat + h r) = z(1, 2, 3.5) = 3.5 (e3)
    r_hat, r = t(1, 2, 2.5), t(0, 0, 2)
    pgb = PerturbationGradient(TopK(1), h=0.5, reduction="none")
    value, g = _grad(lambda p: pgb(p, r), r_hat)
    torch.testing.assert_close(value, t(-(2.5 - 2.0) / 0.5)[0])
    torch.testing.assert_close(g, t(0, 2, -2))  # -(e3 - e2) / h
    pgc = PerturbationGradient(TopK(1), h=0.5, variant="central", reduction="none")
    value, g = _grad(lambda p: pgc(p, r), r_hat)
    torch.testing.assert_close(value, t(-(3.5 - 2.0) / 1.0)[0])
    torch.testing.assert_close(g, t(0, 1, -1))  # -(e3 - e2) / (2 h)
    assert (pgb.stats.forward_calls, pgb.stats.forward_instances) == (1, 2)  # both points in one call


def test_perturbation_gradient_values_and_gradients_by_hand_min_sense():
    # c_hat = (1, 2, 3, .5): y*(c_hat) = B (2.5); c = (5, 1, 1, 1), h = 0.6:
    # c_hat - h c = (-2, 1.4, 2.4, -.1) -> A (0.4 vs 1.3); c_hat + h c = (4, 2.6, 3.6, 1.1) -> B (3.7 vs 7.6)
    c_hat, c = t(1, 2, 3, 0.5), t(5, 1, 1, 1)
    value, g = _grad(lambda p: PerturbationGradient(GRID, h=0.6, variant="PGB", reduction="none")(p, c), c_hat)
    torch.testing.assert_close(value, t((2.5 - 0.4) / 0.6)[0])
    torch.testing.assert_close(g, ((B - A) / 0.6).unsqueeze(0))
    value, g = _grad(lambda p: PerturbationGradient(GRID, h=0.6, variant="pgc", reduction="none")(p, c), c_hat)
    torch.testing.assert_close(value, t((3.7 - 0.4) / 1.2)[0])
    torch.testing.assert_close(g, ((B - A) / 1.2).unsqueeze(0))


@pytest.mark.parametrize("variant", ["backward", "central"])
def test_perturbation_gradient_tends_to_the_decision_cost_for_small_h(variant):
    solver = GraphShortestPath.grid(3, 3)
    c = 1 + torch.rand(5, 12, generator=_gen(1), dtype=D64)
    c_hat = 1 + torch.rand(5, 12, generator=_gen(2), dtype=D64)
    loss = PerturbationGradient(solver, h=1e-7, variant=variant, reduction="none")(c_hat, c)
    torch.testing.assert_close(loss, (c * solver.solve(c_hat)).sum(1), rtol=1e-6, atol=1e-6)  # <c, y*(c_hat)>
    topk = TopK(2)
    r, r_hat = torch.randn(5, 6, generator=_gen(3), dtype=D64), torch.randn(5, 6, generator=_gen(4), dtype=D64)
    loss = PerturbationGradient(topk, h=1e-7, variant=variant, reduction="none")(r_hat, r)
    torch.testing.assert_close(loss, -(r * topk.solve(r_hat)).sum(1), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- generic checks over every loss
def _instances(solver, seed):
    if solver.sense == "max":
        true = torch.randn(4, 6, generator=_gen(seed), dtype=D64)
        pred = true + torch.randn(4, 6, generator=_gen(seed + 1), dtype=D64)
        pool = torch.stack([torch.zeros(6, dtype=D64).index_fill_(0, torch.tensor(s), 1.0)
                            for s in itertools.combinations(range(6), 2)])
    else:
        true = 1 + torch.rand(4, 12, generator=_gen(seed), dtype=D64)
        pred = 1 + torch.rand(4, 12, generator=_gen(seed + 1), dtype=D64)
        pool = solver.solve(torch.rand(40, 12, generator=_gen(seed + 2), dtype=D64)).unique(dim=0)
    return pred, true, solver.solve(true), pool


POOL_LOSSES = {
    "nce": (NCE, "sol"), "cmap": (ContrastiveMAP, "sol"), "pointwise": (PointwiseLTR, "cost"),
    "pairwise": (PairwiseLTR, "cost"), "listwise": (ListwiseLTR, "cost"),
}
SOLVERS = {"topk": TopK(2), "grid3x3": GraphShortestPath.grid(3, 3)}


def _reference(name, solver, pred, true, y_true, pool):
    """Loop-by-loop reference of each pool loss (max convention theta = sign * natural)."""
    sign = -1.0 if solver.sense == "min" else 1.0
    out = []
    for b in range(pred.shape[0]):
        th, tt = sign * pred[b], sign * true[b]
        s = [th @ y for y in pool]
        s_true = [tt @ y for y in pool]
        if name == "nce":
            out.append(sum(si - th @ y_true[b] for si in s) / len(pool))
        elif name == "cmap":
            out.append(max(s) - th @ y_true[b])
        elif name == "pointwise":
            out.append(sum(((true[b] - pred[b]) @ y) ** 2 for y in pool) / len(pool))
        elif name == "pairwise":
            best = max(range(len(pool)), key=lambda j: (float(s_true[j]), -j))
            out.append(sum(torch.relu(s[j] - s[best]) for j in range(len(pool)) if j != best) / (len(pool) - 1))
        else:
            p_true = torch.softmax(torch.stack(s_true), 0)
            out.append(-(p_true * torch.log_softmax(torch.stack(s), 0)).sum())
    return torch.stack(out)


@pytest.mark.parametrize("name", list(POOL_LOSSES))
@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_pool_losses_match_a_loop_reference_reductions_and_finite_differences(name, solver_name):
    solver = SOLVERS[solver_name]
    cls, target = POOL_LOSSES[name]
    pred, true, y_true, pool = _instances(solver, 10)
    full = torch.cat([pool, y_true, solver.solve(pred)]).unique(dim=0)  # everything the loss will pool
    loss = cls(solver, SolutionCache.from_solutions(full, 0.0), reduction="none")
    arg = y_true if target == "sol" else true
    per = loss(pred, arg)
    assert per.shape == (4,)
    torch.testing.assert_close(per, _reference(name, solver, pred, true, y_true, full))
    loss.reduction = "sum"
    torch.testing.assert_close(loss(pred, arg), per.sum())
    loss.reduction = "mean"
    torch.testing.assert_close(loss(pred, arg), per.mean())
    assert len(loss.cache) == len(full)  # nothing new joined: the pool is fixed for gradcheck
    # smooth (NCE, pointwise, listwise) or piecewise linear with no kink within eps (CMAP, pairwise)
    assert torch.autograd.gradcheck(lambda p: loss(p, arg), (pred.clone().requires_grad_(True),), eps=1e-6,
                                    atol=1e-6)


@pytest.mark.parametrize("variant", ["backward", "central"])
@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_perturbation_gradient_reductions_and_finite_differences(variant, solver_name):
    solver = SOLVERS[solver_name]
    pred, true, _, _ = _instances(solver, 20)
    pg = PerturbationGradient(solver, h=0.3, variant=variant, reduction="none")
    per = pg(pred, true)
    assert per.shape == (4,)
    pg.reduction = "sum"
    torch.testing.assert_close(pg(pred, true), per.sum())
    pg.reduction = "mean"
    torch.testing.assert_close(pg(pred, true), per.mean())
    assert torch.autograd.gradcheck(lambda p: pg(p, true), (pred.clone().requires_grad_(True),), eps=1e-6,
                                    atol=1e-6)


def test_pool_losses_use_the_solution_cache_and_float32():
    solver = GraphShortestPath.grid(3, 3)
    pred, true, y_true, pool = _instances(solver, 30)
    cache = SolutionCache.from_solutions(pool.float(), 0.25, seed=0)
    nce = NCE(solver, cache)
    value = nce(pred.float(), y_true.float())
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert nce.stats.forward_instances == 1 and nce.stats.cache_hits == 3  # 25% of 4 instances solved
    pg = PerturbationGradient(solver, cache=SolutionCache.from_solutions(pool, 0.0))
    pg(pred, true)
    assert pg.stats.forward_instances == 0 and pg.stats.cache_hits == 8  # 2B instances, all from the pool
    ltr = ListwiseLTR(solver)
    ltr.eval()  # the cache is bypassed but the loss still has its pool
    ltr(pred, true)
    assert len(ltr.cache) > 0 and ltr.stats.cache_hits == 0


# --------------------------------------------------------------------------- negative identity
def test_negative_identity_gradient_is_minus_dl_dy_for_costs_and_dl_dy_for_scores():
    solver = GraphShortestPath.grid(3, 3)
    costs = (1 + torch.rand(3, 12, generator=_gen(40), dtype=D64)).requires_grad_(True)
    layer = do.DiscreteLayer(solver, NegativeIdentity())
    y = layer(costs)
    assert torch.equal(y, solver.solve(costs.detach()))
    g = torch.randn(3, 12, generator=_gen(41), dtype=D64)
    y.backward(g)
    torch.testing.assert_close(costs.grad, -g)
    assert (layer.stats.forward_instances, layer.stats.backward_instances) == (3, 0)
    scores = torch.randn(3, 6, generator=_gen(42), dtype=D64).requires_grad_(True)
    do.DiscreteLayer(TopK(2), NegativeIdentity())(scores).backward(g[:, :6])
    torch.testing.assert_close(scores.grad, g[:, :6])


# extreme float32 scales (1e30, 1e-30) only for the norm: its squares are formed after division by max |theta|
@pytest.mark.parametrize("projection, dtype, scale", [
    *((p, d, s) for p in ("mean", "norm", "standardize") for d, s in
      [(D64, 1.0), (D64, 1e6), (torch.float32, 1.0), (torch.float32, 1e4)]),
    ("norm", torch.float32, 1e30), ("norm", torch.float32, 1e-30),
])
def test_negative_identity_projection_jacobian_matches_autograd(projection, dtype, scale):
    est = NegativeIdentity(projection)
    theta = (scale * torch.randn(4, 7, generator=_gen(50), dtype=D64)).to(dtype)
    g = torch.randn(4, 7, generator=_gen(51), dtype=D64).to(dtype)
    x = theta.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(est.project(x), x, g)  # J_P^T g by autograd
    got = est.backward(None, theta, theta, g.unsqueeze(1))
    torch.testing.assert_close(got, expected, rtol=1e-4 if dtype == torch.float32 else 1e-9,
                               atol=1e-6 / scale if dtype == torch.float32 else 1e-12 / scale)
    assert torch.isfinite(got).all()
    p = est.project(theta)
    if projection in ("norm", "standardize"):
        torch.testing.assert_close(torch.linalg.vector_norm(p.double(), dim=1), torch.ones(4, dtype=D64))
    if projection in ("mean", "standardize"):
        torch.testing.assert_close(p.double().mean(1), torch.zeros(4, dtype=D64), atol=1e-6 * max(scale, 1.0), rtol=0)


def test_negative_identity_projection_keeps_top_k_and_pulls_the_gradient_back():
    scores = torch.randn(5, 8, generator=_gen(60), dtype=D64)
    layer = do.DiscreteLayer(TopK(3), NegativeIdentity("standardize"))
    x = scores.clone().requires_grad_(True)
    y = layer(x)
    assert torch.equal(y, TopK(3).solve(scores))  # top-k is invariant to the projection
    g = torch.randn(5, 8, generator=_gen(61), dtype=D64)
    y.backward(g)
    u = scores - scores.mean(1, keepdim=True)
    p = u / u.norm(dim=1, keepdim=True)
    gc = g - g.mean(1, keepdim=True)
    torch.testing.assert_close(x.grad, (gc - p * (p * gc).sum(1, keepdim=True)) / u.norm(dim=1, keepdim=True))
    assert torch.allclose((x.grad * p).sum(1), torch.zeros(5, dtype=D64), atol=1e-12)  # orthogonal to the sphere
    zero = NegativeIdentity("standardize").project(torch.ones(2, 4))  # |u| = 0: passed unscaled, no NaN
    assert torch.equal(zero, torch.zeros(2, 4))


# --------------------------------------------------------------------------- errors
def test_bad_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="h must"):
        PerturbationGradient(TopK(1), h=0.0)
    with pytest.raises(ValueError, match="variant"):
        PerturbationGradient(TopK(1), variant="forward")
    with pytest.raises(ValueError, match="tau"):
        ListwiseLTR(TopK(1), tau=0)
    with pytest.raises(ValueError, match="margin"):
        PairwiseLTR(TopK(1), margin=-1.0)
    with pytest.raises(ValueError, match="cache"):
        NCE(TopK(1), cache="pool")
    with pytest.raises(ValueError, match="reduction"):
        NCE(TopK(1), reduction="max")
    with pytest.raises(ValueError, match="projection"):
        NegativeIdentity("sphere")
    nce = NCE(TopK(1))
    with pytest.raises(ValueError, match="y_true"):
        nce(t(1, 2, 3), t(1, 0))
    with pytest.raises(ValueError, match="pred"):
        nce(torch.tensor([[1.0, float("nan"), 0.0]]), t(1, 0, 0))
    with pytest.raises(ValueError, match="true"):
        PerturbationGradient(TopK(1))(t(1, 2, 3), t(1, 2))


# --------------------------------------------------------------------------- training on PyEPO's 5x5 shortest path
def _make(name, solver):
    if name == "nce":
        f = NCE(solver)
        return lambda p, c, w: f(p, w)
    if name == "cmap":
        f = ContrastiveMAP(solver)
        return lambda p, c, w: f(p, w)
    if name in ("pointwise", "pairwise", "listwise"):
        f = {"pointwise": PointwiseLTR, "pairwise": PairwiseLTR, "listwise": ListwiseLTR}[name](solver)
        return lambda p, c, w: f(p, c)
    if name in ("pgb", "pgc"):
        f = PerturbationGradient(solver, h=0.1, variant="backward" if name == "pgb" else "central")
        return lambda p, c, w: f(p, c)
    layer = do.DiscreteLayer(solver, NegativeIdentity())
    return lambda p, c, w: (layer(p) - w).abs().sum(-1).mean()  # Hamming loss of the decision


@pytest.fixture(scope="module")
def pto_data():
    data = generate_shortest_path(360, deg=4, noise_width=0.5, seed=135)
    tr, te = data.split(160)
    solver = lattice_solver()
    x_tr, c_tr, x_te, c_te = (torch.from_numpy(a) for a in (tr.x, tr.c, te.x, te.c))
    return solver, x_tr, c_tr, solve_exact(solver, c_tr), x_te, c_te, solve_exact(solver, c_te)


@pytest.mark.parametrize("name", ["nce", "cmap", "pointwise", "pairwise", "listwise", "pgb", "pgc", "nid"])
def test_each_method_trains_the_5x5_shortest_path(pto_data, name):
    solver, x_tr, c_tr, w_tr, x_te, c_te, w_te = pto_data
    torch.manual_seed(0)
    model = nn.Linear(5, 40)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = _make(name, solver)
    with torch.no_grad():
        before = normalized_regret(c_te, solve_exact(solver, model(x_te)), w_te)
    gen = _gen(0)
    for _ in range(3):
        for idx in torch.randperm(len(x_tr), generator=gen).split(32):
            loss = loss_fn(model(x_tr[idx]), c_tr[idx], w_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        after = normalized_regret(c_te, solve_exact(solver, model(x_te)), w_te)
    assert before > 0.4 and after < 0.75 * before, (name, before, after)
