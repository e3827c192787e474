"""Estimators against exact values: closed forms by enumeration, finite differences, hand-checked cases.

Statistical checks replicate one instance ``R`` times in the batch: every row gets independent noise, so the
rows are i.i.d. estimates and the tolerance is a multiple of their standard error (fixed seeds: deterministic).
"""

from __future__ import annotations

import itertools
import math

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
    TargetDistribution,
)
from discreteopt.losses import FenchelYoungLoss
from discreteopt.noise import Antithetic, Gumbel, Normal
from discreteopt.solvers import Argmax, GridShortestPath, TopK

Z = 4.5  # tolerance in standard errors (two-sided p ~ 7e-6 per entry)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rows(theta, r):
    """``theta [n]`` -> ``[r, n]`` replicated rows (float64)."""
    return theta.to(torch.float64).unsqueeze(0).repeat(r, *([1] * theta.ndim))


def assert_mean_close(samples, exact, z=Z, atol=1e-12):
    """Row mean of i.i.d. ``samples [R, ...]`` within ``z`` standard errors of ``exact``."""
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    err = (mean - exact).abs()
    assert bool((err <= z * se + atol).all()), f"mean {mean}\nexact {exact}\nerr/se {err / (se + 1e-300)}"


def layer_grad(layer, theta, g):
    """(y, dL/dtheta) for the linear loss ``L = sum(y * g)``."""
    x = theta.clone().requires_grad_(True)
    y = layer(x)
    (grad,) = torch.autograd.grad((y * g).sum(), x)
    return y.detach(), grad


# --------------------------------------------------------------------------- exact marginals by enumeration
def topk_marginals(theta, k):
    """Inclusion probabilities of ``top-k(theta + Gumbel)``: Plackett-Luce sampling without replacement,
    enumerated over ordered k-prefixes (differentiable in ``theta``)."""
    n = theta.shape[-1]
    w = torch.exp(theta - theta.max())
    marg = torch.zeros_like(theta)
    for prefix in itertools.permutations(range(n), k):
        p, left = 1.0, w.sum()
        for i in prefix:
            p = p * w[i] / left
            left = left - w[i]
        marg = marg + p * torch.zeros_like(theta).index_fill(0, torch.tensor(prefix), 1.0)
    return marg


def jvp_exact(fn, theta, g):
    """``J^T g`` of ``fn`` at ``theta`` (J is symmetric for the gradient maps used here)."""
    t = theta.clone().requires_grad_(True)
    (out,) = torch.autograd.grad((fn(t) * g).sum(), t)
    return out


THETA4 = torch.tensor([0.3, -0.4, 1.1, 0.2], dtype=torch.float64)
G4 = torch.tensor([0.7, -1.2, 0.4, 0.9], dtype=torch.float64)

EXACT_CASES = [  # (solver, exact marginal map of Gumbel perturb-and-MAP)
    (Argmax(), lambda t: torch.softmax(t, -1)),
    (TopK(2), lambda t: topk_marginals(t, 2)),
]


@pytest.mark.parametrize("solver, marginals", EXACT_CASES, ids=["argmax", "topk"])
def test_perturbed_optimizer_with_gumbel_noise_matches_the_exact_marginals_and_jacobian(solver, marginals):
    r = 3000
    layer = do.DiscreteLayer(solver, PerturbedOptimizer(scale=1.0, samples=4, noise=Gumbel()), seed=1)
    y, grad = layer_grad(layer, rows(THETA4, r), rows(G4, r))
    assert_mean_close(y, marginals(THETA4))  # E[y*(theta + Z)] = softmax / Plackett-Luce marginals
    assert_mean_close(grad, jvp_exact(marginals, THETA4, G4))  # J^T g of the smoothed map


@pytest.mark.parametrize("solver, marginals", EXACT_CASES, ids=["argmax", "topk"])
def test_score_function_with_leave_one_out_is_unbiased_for_the_jacobian(solver, marginals):
    r = 3000
    layer = do.DiscreteLayer(solver, ScoreFunction(scale=1.0, samples=4, noise=Gumbel()), seed=2)
    _, grad = layer_grad(layer, rows(THETA4, r), rows(G4, r))
    assert_mean_close(grad, jvp_exact(marginals, THETA4, G4))


@pytest.mark.parametrize("solver, marginals", EXACT_CASES, ids=["argmax", "topk"])
def test_imle_expectation_is_the_finite_difference_of_exact_marginals(solver, marginals):
    # same noise in both terms: E[y*(theta + eps) - y*(theta - lam g + eps)] / lam = (m(theta) - m(theta - lam g)) / lam
    r, lam = 3000, 0.8
    layer = do.DiscreteLayer(solver, IMLE(lam=lam, samples=2, noise=Gumbel()), seed=3)
    y, grad = layer_grad(layer, rows(THETA4, r), rows(G4, r))
    assert_mean_close(y, marginals(THETA4))
    assert_mean_close(grad, (marginals(THETA4) - marginals(THETA4 - lam * G4)) / lam)


def test_score_function_loss_is_unbiased_for_a_black_box_loss():
    # L(y) = (<v, y> - 0.5)^2 on Argmax + Gumbel: E[L] = sum_i softmax_i (v_i - 0.5)^2, exact gradient by autograd
    v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)

    def loss_fn(y):  # [B, S, n] -> [B, S]
        return ((y * v).sum(-1) - 0.5) ** 2

    exact_value = (torch.softmax(THETA4, -1) * (v - 0.5) ** 2).sum()
    exact_grad = jvp_exact(lambda t: torch.softmax(t, -1), THETA4, (v - 0.5) ** 2)
    r = 3000
    for baseline in (None, MAPBaseline()):
        kw = {} if baseline is None else {"baseline": baseline}
        layer = do.DiscreteLayer(Argmax(), ScoreFunction(scale=1.0, samples=4, noise=Gumbel(), **kw), seed=4)
        x = rows(THETA4, r).requires_grad_(True)
        per_row = do.score_function_loss(layer, x, loss_fn, reduction="none")  # [R]
        (grad,) = torch.autograd.grad(per_row.sum(), x)
        assert_mean_close(per_row.detach().unsqueeze(1), exact_value.reshape(1))
        assert_mean_close(grad, exact_grad)


# --------------------------------------------------------------------------- finite differences (Normal noise)
def _fd_case(solver, theta, sigma, multiplicative, r, h_value, h_jac, seed):
    """Per-row estimates (i.i.d. over R rows) of, along a random direction d:
    F'(theta; d) by central differences of the FY value with common random numbers, <grad F, d> with
    grad F = E[y*] (additive) or E[exp(sigma Z - sigma^2/2) y*] (multiplicative) from autograd of the FY loss,
    g^T J d by central differences of the smoothed map, and <J^T g, d> from the layer's backward."""
    d = torch.randn(theta.shape, generator=_gen(seed), dtype=torch.float64)
    g = torch.randn(theta.shape, generator=_gen(seed + 1), dtype=torch.float64)
    th, dd, gg = rows(theta, r), rows(d, r), rows(g, r)
    ndim = theta.ndim

    def est():
        return PerturbedOptimizer(scale=sigma, samples=4, multiplicative=multiplicative)

    def smoothed(t):  # y_sigma(t) with common random numbers (same seed -> same Z)
        return do.DiscreteLayer(solver, est(), seed=seed + 2)(t)

    def f_value(t):  # F(t) = E[max <t_Z, y>]: the FY loss with y_true = 0
        return FenchelYoungLoss(do.DiscreteLayer(solver, est(), seed=seed + 2), reduction="none")(t, torch.zeros_like(t))

    dims = tuple(range(1, ndim + 1))
    fd_value = (f_value(th + h_value * dd) - f_value(th - h_value * dd)) / (2 * h_value)  # [R]
    x = th.clone().requires_grad_(True)
    (grad_f,) = torch.autograd.grad(f_value(x).sum(), x)
    dot_f = (grad_f * dd).sum(dims)
    y, grad = layer_grad(do.DiscreteLayer(solver, est(), seed=seed + 2), th, gg)
    if not multiplicative:  # grad F = E[y*] (cost space: -E[y*]), the layer's forward with the same noise
        torch.testing.assert_close(grad_f, (-1.0 if solver.sense == "min" else 1.0) * y)
    fd_jac = ((smoothed(th + h_jac * dd) - smoothed(th - h_jac * dd)) * gg).sum(dims) / (2 * h_jac)  # [R]
    dot_grad = (grad * dd).sum(dims)
    return fd_value, dot_f, fd_jac, dot_grad


@pytest.mark.parametrize("case", ["topk", "grid", "grid_multiplicative"])
def test_finite_differences_along_random_directions_agree_with_the_perturbed_optimizer(case):
    if case == "topk":
        solver, theta, sigma = TopK(2), torch.randn(6, generator=_gen(7), dtype=torch.float64), 0.5
    else:
        solver = GridShortestPath()
        theta = 1 + 2 * torch.rand(3, 3, generator=_gen(8), dtype=torch.float64)
        sigma = 0.3 if case == "grid_multiplicative" else 0.5
    r = 6000
    fd_value, dot_f, fd_jac, dot_grad = _fd_case(solver, theta, sigma, case.endswith("multiplicative"), r,
                                                 h_value=0.05, h_jac=0.25, seed=20)
    # the smoothed objective's gradient (with common random numbers F is piecewise linear: FD = gradient
    # except where a kink lies within h)
    diff = fd_value - dot_f
    assert abs(float(diff.mean())) <= Z * float(diff.std()) / math.sqrt(r) + 1e-3
    # Jacobian: finite differences of y_sigma vs the score-function estimate of the backward pass
    # (y_sigma is smooth: the O(h^2) bias of the central difference is covered by 5% of the value)
    a, b = float(fd_jac.mean()), float(dot_grad.mean())
    se = math.sqrt(float(fd_jac.var()) / r + float(dot_grad.var()) / r)
    assert abs(a - b) <= Z * se + 0.05 * abs(b), (a, b, se)
    assert Z * se < 0.6 * abs(b)  # the test resolves a factor-2 or sign error
    assert abs(b) > 3 * float(dot_grad.std()) / math.sqrt(r)  # a non-trivial direction


# --------------------------------------------------------------------------- hand-checked cases
def test_interpolation_and_deterministic_imle_on_a_hand_checked_argmax():
    theta = torch.tensor([[1.0, 2.0, 0.0]])
    g = torch.tensor([[0.0, 1.0, 0.0]])
    # theta' = theta - 2 g = [1, 0, 0]: y = e2, y' = e1, grad = (e2 - e1) / 2
    expected = torch.tensor([[-0.5, 0.5, 0.0]])
    for est in (Interpolation(lam=2.0), IMLE(lam=2.0, noise=None)):
        y, grad = layer_grad(do.DiscreteLayer(Argmax(), est), theta, g)
        torch.testing.assert_close(y, torch.tensor([[0.0, 1.0, 0.0]]))
        torch.testing.assert_close(grad, expected)
    _, grad = layer_grad(do.DiscreteLayer(Argmax(), IMLE(lam=2.0, noise=None, divide_by_lam=False)), theta, g)
    torch.testing.assert_close(grad, 2.0 * expected)  # torch-imle's convention: no 1/lam
    # target distribution: theta' = 0.5 theta - 2 * 1 * g = [0.5, -1, 0] -> y' = e1
    est = IMLE(lam=1.0, noise=None, target=TargetDistribution(alpha=0.5, beta=2.0))
    _, grad = layer_grad(do.DiscreteLayer(Argmax(), est), theta, g)
    torch.testing.assert_close(grad, torch.tensor([[-1.0, 1.0, 0.0]]))


def test_blackbox_backward_on_a_hand_checked_shortest_path():
    # 8-neighbour 3x3 grid, top-left -> bottom-right. Path costs (both ends counted):
    # top-right route (0,0)(0,1)(1,2)(2,2) = 4; left-bottom (0,0)(1,0)(2,1)(2,2) = 6; diagonal = 7.
    w = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 5.0, 1.0], [2.0, 2.0, 1.0]]])
    top = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]])
    left = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
    g = torch.zeros(1, 3, 3)
    g[0, 0, 1] = 3.0  # the loss dislikes cell (0,1): w' = w + g makes the top route cost 7 > 6
    y, grad = layer_grad(do.DiscreteLayer(GridShortestPath(), Interpolation(lam=1.0)), w, g)
    torch.testing.assert_close(y, top)
    torch.testing.assert_close(grad, -(top - left))  # dL/dw = -(y - y') / lam
    _, grad_imle = layer_grad(do.DiscreteLayer(GridShortestPath(), IMLE(lam=1.0, noise=None)), w, g)
    torch.testing.assert_close(grad_imle, grad)


def test_aimle_relative_step_is_a_fraction_of_theta_norm():
    # ||theta|| = 5, ||g|| = 10, lam = 0.5 -> step 0.25: theta' = theta - 0.25 g = [3, 1.5] -> y' = e1
    theta, g = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 10.0]])
    est = AIMLE(noise=None, initial_lam=0.5, relative=True)
    _, grad = layer_grad(do.DiscreteLayer(Argmax(), est), theta, g)
    torch.testing.assert_close(grad, torch.tensor([[-4.0, 4.0]]))  # (e2 - e1) / 0.25
    est = AIMLE(noise=None, initial_lam=0.5, relative=True, two_sided=True)
    _, grad = layer_grad(do.DiscreteLayer(Argmax(), est), theta, g)
    # up: theta + 0.25 g = [3, 6.5] -> e2; down -> e1; (e2 - e1) / (2 * 0.25)
    torch.testing.assert_close(grad, torch.tensor([[-2.0, 2.0]]))


def test_straight_through_identity_and_softmax_surrogate():
    theta = torch.randn(4, 5, generator=_gen(9), dtype=torch.float64)
    g = torch.randn(4, 5, generator=_gen(10), dtype=torch.float64)
    y, grad = layer_grad(do.DiscreteLayer(Argmax(), StraightThrough()), theta, g)
    torch.testing.assert_close(y, Argmax().solve(theta))
    torch.testing.assert_close(grad, g)
    tau = 0.5
    est = StraightThrough(surrogate=lambda t: torch.softmax(t / tau, -1))
    _, grad = layer_grad(do.DiscreteLayer(Argmax(), est), theta, g)
    torch.testing.assert_close(grad, jvp_exact(lambda t: torch.softmax(t / tau, -1), theta, g))
    with pytest.raises(ValueError, match="surrogate must map theta"):
        layer_grad(do.DiscreteLayer(Argmax(), StraightThrough(surrogate=lambda t: t.sum(-1))), theta, g)


# --------------------------------------------------------------------------- AIMLE adaptation
@pytest.mark.parametrize("initial_lam, direction", [(1e-3, "up"), (50.0, "down")])
def test_aimle_adapts_lam_until_the_running_count_tracks_the_target(initial_lam, direction):
    solver, n, target = TopK(3), 20, 2.0
    theta = torch.randn(16, n, generator=_gen(11), dtype=torch.float64)
    est = AIMLE(target=target, samples=2, initial_lam=initial_lam, eta=0.5, momentum=0.3)
    layer = do.DiscreteLayer(solver, est, seed=12)
    g = torch.randn(16, n, generator=_gen(13), dtype=torch.float64)
    for _ in range(150):
        layer_grad(layer, theta, g)
    assert (est.lam > initial_lam) if direction == "up" else (est.lam < initial_lam)
    assert target / 2 <= est.running_nonzero <= target * 2, (est.running_nonzero, est.lam)
    # the adapted state is saved with the layer
    fresh = do.DiscreteLayer(solver, AIMLE(target=target, samples=2), seed=12)
    fresh.load_state_dict(layer.state_dict())
    assert fresh.estimator.lam == est.lam and fresh.estimator.running_nonzero == est.running_nonzero


# --------------------------------------------------------------------------- variance reduction
def test_antithetic_noise_and_baselines_reduce_the_variance_of_the_perturbed_jacobian():
    solver, r = TopK(2), 2000
    theta = torch.tensor([0.5, 0.1, -0.3, 0.9, 0.0], dtype=torch.float64)
    g = torch.tensor([1.0, 0.8, 1.2, 0.9, 1.1], dtype=torch.float64)  # large common part: a baseline helps
    variances = {}
    for name, est in [("plain", PerturbedOptimizer(samples=4)),
                      ("antithetic", PerturbedOptimizer(samples=4, noise=Antithetic(Normal()))),
                      ("map", PerturbedOptimizer(samples=4, baseline=MAPBaseline())),
                      ("loo", ScoreFunction(samples=4))]:
        _, grad = layer_grad(do.DiscreteLayer(solver, est, seed=14), rows(theta, r), rows(g, r))
        variances[name] = float(grad.var(0).sum())
        means = grad.mean(0)
        if name == "plain":
            reference = means
        else:  # still unbiased: same mean as the plain estimator
            se = (grad.var(0) / r + variances["plain"] / 5 / r).sqrt()
            assert bool(((means - reference).abs() <= Z * se + 1e-12).all())
    for name in ("antithetic", "map", "loo"):
        assert variances[name] < 0.5 * variances["plain"], variances


# --------------------------------------------------------------------------- the noise scale: one name, one place
@pytest.mark.parametrize("solver, marginals", EXACT_CASES, ids=["argmax", "topk"])
@pytest.mark.parametrize("where", ["estimator", "noise"])
def test_scale_other_than_one_divides_by_the_effective_scale(solver, marginals, where):
    # Gumbel perturbation of scale 2 = Gumbel-max at temperature 2: E[y] = m(theta / 2), J^T g of that map
    r, scale = 3000, 2.0
    kw = {"scale": scale, "noise": Gumbel()} if where == "estimator" else {"noise": Gumbel(scale=scale)}
    smoothed = lambda t: marginals(t / scale)  # noqa: E731
    layer = do.DiscreteLayer(solver, PerturbedOptimizer(samples=4, **kw), seed=21)
    y, grad = layer_grad(layer, rows(THETA4, r), rows(G4, r))
    assert_mean_close(y, smoothed(THETA4))
    assert_mean_close(grad, jvp_exact(smoothed, THETA4, G4))
    layer = do.DiscreteLayer(solver, ScoreFunction(samples=4, **kw), seed=22)
    _, grad = layer_grad(layer, rows(THETA4, r), rows(G4, r))
    assert_mean_close(grad, jvp_exact(smoothed, THETA4, G4))


@pytest.mark.parametrize("multiplicative", [False, True])
def test_estimator_scale_and_noise_scale_give_the_same_perturbation(multiplicative):
    """``scale=s`` with a unit noise and ``noise=Normal(scale=s)`` are one perturbation: same samples (same seed),
    same forward, same gradient (the multiplicative mean correction uses the effective scale)."""
    theta = 1.0 + torch.rand(4, 6, generator=_gen(30), dtype=torch.float64)
    g = torch.randn(4, 6, generator=_gen(31), dtype=torch.float64)
    out = []
    for est in (PerturbedOptimizer(scale=0.3, samples=6, multiplicative=multiplicative),
                PerturbedOptimizer(samples=6, noise=Normal(scale=0.3), multiplicative=multiplicative)):
        out.append(layer_grad(do.DiscreteLayer(TopK(2), est, seed=5), theta, g))
        if multiplicative:  # the log-normal factor has mean 1 whatever carries the scale
            z = Normal(scale=est.noise.scale).sample((200_000,), _gen(9), dtype=torch.float64)
            assert abs(float(est.factor(z).mean()) - 1.0) < 5e-3
    torch.testing.assert_close(out[0][0], out[1][0])
    torch.testing.assert_close(out[0][1], out[1][1])
    # I-MLE: perturbation scale * eps, the target reuses it
    a = layer_grad(do.DiscreteLayer(TopK(2), IMLE(lam=0.5, samples=3, scale=2.0), seed=6), theta, g)
    b = layer_grad(do.DiscreteLayer(TopK(2), IMLE(lam=0.5, samples=3, noise=Gumbel(scale=2.0)), seed=6), theta, g)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    c = layer_grad(do.DiscreteLayer(TopK(2), IMLE(lam=0.5, samples=3), seed=6), theta, g)
    assert not torch.equal(a[0], c[0])  # the scale is used


def test_scale_given_twice_or_without_noise_is_rejected():
    for make in (lambda: PerturbedOptimizer(scale=2.0, noise=Normal(scale=0.5)),
                 lambda: ScoreFunction(scale=2.0, noise=Normal(scale=0.5)),
                 lambda: IMLE(scale=2.0, noise=Gumbel(scale=2.0)),
                 lambda: AIMLE(scale=0.5, noise=Gumbel(scale=3.0)),
                 lambda: FenchelYoungLoss(TopK(2), scale=2.0, noise=Normal(scale=0.5))):
        with pytest.raises(ValueError, match="scale is given twice"):
            make()
    with pytest.raises(ValueError, match="noise is None"):
        IMLE(noise=None, scale=2.0)
    # one place is fine: a unit estimator scale with a scaled noise, or the reverse
    assert PerturbedOptimizer(noise=Normal(scale=0.5)).effective_scale == 0.5
    assert PerturbedOptimizer(scale=0.5).effective_scale == 0.5


def test_sigma_is_a_deprecated_alias_of_scale():
    theta = torch.randn(3, 5, generator=_gen(40), dtype=torch.float64)
    g = torch.randn(3, 5, generator=_gen(41), dtype=torch.float64)
    for cls in (PerturbedOptimizer, ScoreFunction):
        with pytest.warns(DeprecationWarning, match="scale"):
            old = cls(sigma=0.7, samples=4)
        assert old.scale == 0.7 and old.sigma == 0.7
        a = layer_grad(do.DiscreteLayer(TopK(2), old, seed=1), theta, g)
        b = layer_grad(do.DiscreteLayer(TopK(2), cls(scale=0.7, samples=4), seed=1), theta, g)
        torch.testing.assert_close(a, b)
        with pytest.raises(ValueError, match="scale= only"):
            cls(scale=0.7, sigma=0.7)
    with pytest.warns(DeprecationWarning):
        fy = FenchelYoungLoss(TopK(2), sigma=0.4)
    assert fy.layer.estimator.scale == 0.4
    with pytest.raises(ValueError, match="scale= only"):
        FenchelYoungLoss(TopK(2), scale=0.4, sigma=0.4)


def test_fenchel_young_with_a_layer_rejects_estimator_arguments_and_with_a_solver_uses_them():
    layer = do.DiscreteLayer(TopK(2), PerturbedOptimizer(scale=1.0, samples=4))
    for kw in ({"sigma": 5.0, "samples": 100}, {"scale": 5.0}, {"noise": "gumbel"}, {"multiplicative": True},
               {"seed": 0}, {"guard": do.estimators.Clamp()}, {"executor": do.executors.Inline()}):
        with pytest.raises(ValueError, match="layer's estimator") as exc:
            FenchelYoungLoss(layer, **kw)
        assert all(k in str(exc.value) for k in kw)
    fy = FenchelYoungLoss(TopK(2), scale=0.3, samples=7, noise="gumbel", multiplicative=True, seed=3,
                          guard=do.estimators.Raise())
    est = fy.layer.estimator
    assert (est.scale, est.samples, type(est.noise).__name__, est.multiplicative) == (0.3, 7, "Gumbel", True)
    assert isinstance(fy.layer.maximizer.guard, do.estimators.Raise) and fy.layer._seed == 3
    assert FenchelYoungLoss(layer).layer is layer


# --------------------------------------------------------------------------- constructor audit
NAN, INF = float("nan"), float("inf")
POSITIVE = [True, False, NAN, INF, -1.0, 0.0, "1", None]  # a positive finite number is expected
COUNT = [True, 1.5, 0, -1, "2", NAN, None]  # an integer >= 1
FLAG = ["yes", 1, 0.0, None]  # True or False, nothing truthy
NOISE = ["cauchy", 3, 1.0]


def _audit_cases():
    from discreteopt.estimators import Auto, Clamp, Raise, Shift
    from discreteopt.losses import HammingLoss, SPOPlus
    from discreteopt.noise import Logistic

    return {
        IMLE: ({}, {"lam": POSITIVE, "samples": COUNT, "noise": NOISE, "target": ["x", 1.0],
                    "divide_by_lam": FLAG, "scale": POSITIVE}),
        AIMLE: ({}, {"target": POSITIVE, "samples": COUNT, "noise": NOISE, "initial_lam": POSITIVE, "eta": POSITIVE,
                     "momentum": [True, NAN, INF, -0.1, 0.0, 1.5, "0.1", None], "two_sided": FLAG, "relative": FLAG,
                     "lam_min": POSITIVE, "lam_max": POSITIVE + [1e-4], "divide_by_lam": FLAG,
                     "target_distribution": ["x", 1.0], "scale": POSITIVE}),
        TargetDistribution: ({}, {"alpha": [True, NAN, INF, "1", None], "beta": POSITIVE}),
        Interpolation: ({}, {"lam": POSITIVE}),
        PerturbedOptimizer: ({}, {"scale": POSITIVE[:-1], "samples": COUNT, "noise": NOISE + [None],
                                  "multiplicative": FLAG, "baseline": ["loo", 1], "sigma": POSITIVE[:-1]}),
        ScoreFunction: ({}, {"scale": POSITIVE[:-1], "samples": COUNT + [1], "noise": NOISE + [None],
                             "baseline": ["loo", 1], "sigma": POSITIVE[:-1]}),
        StraightThrough: ({}, {"surrogate": ["softmax", 3]}),
        Gumbel: ({}, {"scale": POSITIVE}),
        Normal: ({}, {"scale": POSITIVE}),
        Logistic: ({}, {"scale": POSITIVE}),
        Antithetic: ({"base": Normal()}, {"base": ["normal", Gumbel(), None]}),
        Clamp: ({}, {"warn": FLAG}),
        Shift: ({}, {}), Raise: ({}, {}), Auto: ({}, {}),
        FenchelYoungLoss: ({"layer_or_solver": TopK(2)}, {
            "layer_or_solver": ["topk", None, do.DiscreteLayer(TopK(2), IMLE())],
            "scale": POSITIVE[:-1], "samples": COUNT[:-1], "noise": NOISE, "multiplicative": FLAG[:-1],
            "reduction": ["avg", None], "executor": ["inline"], "guard": ["clamp"], "generator": [3],
            "seed": [True, 1.5, "0"], "sigma": POSITIVE[:-1]}),
        SPOPlus: ({"solver": TopK(2)}, {"solver": ["topk", None], "executor": ["inline"], "guard": ["clamp"],
                                        "reduction": ["avg", None]}),
        HammingLoss: ({}, {"reduction": ["avg", None]}),
    }


def test_every_constructor_argument_is_used_or_rejected_with_a_value_error_naming_it():
    import inspect
    import warnings

    for cls, (required, bad) in _audit_cases().items():
        params = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert set(bad) == set(params), f"{cls.__name__}: audit table misses {set(params) - set(bad)}"
        for name, values in bad.items():
            for value in values:
                kw = {**required, name: value}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    with pytest.raises(ValueError) as exc:
                        cls(**kw)
                assert name in str(exc.value), (cls.__name__, name, value, str(exc.value))


def test_bool_is_not_a_number_for_any_numeric_argument():
    # the reported inconsistency: IMLE(lam=True) was accepted while samples=True was rejected
    for make in (lambda: IMLE(lam=True), lambda: Interpolation(lam=True), lambda: AIMLE(eta=True),
                 lambda: PerturbedOptimizer(scale=True), lambda: Normal(scale=True),
                 lambda: IMLE(divide_by_lam="no"), lambda: PerturbedOptimizer(multiplicative="no")):
        with pytest.raises(ValueError):
            make()


# --------------------------------------------------------------------------- AIMLE running count, deterministic
def test_aimle_running_count_and_lam_follow_the_update_rule_exactly():
    """m_t = (1 - momentum) m_{t-1} + momentum n_t (m_0 = n_0), lam <- lam exp(eta (target - m_t) / target): a
    deterministic run (no noise) on a hand-checked argmax where n_t is 2 or 0."""
    momentum, eta, target = 0.25, 0.5, 1.0
    est = AIMLE(target=target, noise=None, initial_lam=1.0, eta=eta, momentum=momentum)
    layer = do.DiscreteLayer(Argmax(), est)
    theta = torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)
    flip = torch.tensor([[0.0, 3.0, 0.0]], dtype=torch.float64)  # theta - lam * g moves the argmax: 2 entries
    still = torch.zeros(1, 3, dtype=torch.float64)  # no change: 0 entries
    m, lam = None, 1.0
    for g, n in [(flip, 2.0), (still, 0.0), (flip, 2.0), (flip, 2.0), (still, 0.0)]:
        assert float(theta[0, 1] - lam * g[0, 1]) < 1.0 or n == 0.0  # the flip really flips at this lam
        layer_grad(layer, theta, g)
        m = n if m is None else (1 - momentum) * m + momentum * n
        lam = lam * math.exp(eta * (target - m) / target)
        assert est.running_nonzero == pytest.approx(m, rel=1e-12)
        assert est.lam == pytest.approx(lam, rel=1e-12)
    assert est.lam_history == pytest.approx([h for h in est.lam_history])
    assert len(est.lam_history) == 5


# --------------------------------------------------------------------------- extreme values (issue 10, fuzz findings)
def _moderate_theta(dtype=torch.float64, seed=0):
    return torch.randn(3, 5, generator=_gen(seed), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("make", [lambda: IMLE(lam=5e-324), lambda: IMLE(scale=1e-310),
                                  lambda: AIMLE(initial_lam=5e-324, lam_min=5e-324),
                                  lambda: PerturbedOptimizer(scale=5e-324), lambda: ScoreFunction(scale=5e-324),
                                  lambda: FenchelYoungLoss(TopK(2), scale=5e-324)],
                         ids=["imle_lam", "imle_scale", "aimle", "perturbed", "score_function", "fenchel_young"])
def test_steps_and_scales_whose_reciprocal_overflows_are_rejected(make):
    """lam / scale = 5e-324: 1 / lam = inf gave NaN (0 * inf) or +-inf gradients in any dtype."""
    with pytest.raises(ValueError, match="smallest normal float64"):
        make()


@pytest.mark.parametrize("make, name", [
    (lambda: IMLE(lam=1.7e308), "lam"), (lambda: IMLE(lam=1e-40), "lam"), (lambda: IMLE(scale=1e300), "scale"),
    (lambda: ScoreFunction(scale=1e300), "scale"), (lambda: PerturbedOptimizer(scale=1e-300), "scale"),
    (lambda: IMLE(lam=1e30, target=TargetDistribution(beta=1e10)), "beta \\* lam"),
    (lambda: PerturbedOptimizer(scale=20.0, multiplicative=True), "multiplicative"),
    (lambda: AIMLE(lam_max=1e300), "lam_max")])
def test_hyperparameters_that_do_not_fit_the_compute_dtype_are_value_errors(make, name):
    """float32 theta: lam=1.7e308 or scale=1e300 raised a raw RuntimeError from torch.add(alpha=...), scale=1e-300
    gave NaN gradients (the estimate divides by scale), scale=20 multiplicative made every factor 0; float64 works."""
    layer = do.DiscreteLayer(TopK(2), make(), seed=0)
    with pytest.raises(ValueError, match=f"{name}.*float32"):
        layer(_moderate_theta(torch.float32).requires_grad_(True))
    for dtype in (torch.float16, torch.bfloat16):  # computed in float32: the same check
        with pytest.raises(ValueError, match="float32"):
            layer(_moderate_theta(dtype).requires_grad_(True))
    y, grad = layer_grad(layer, _moderate_theta(), torch.full((3, 5), 1e-3, dtype=torch.float64))
    assert torch.isfinite(grad).all()


def test_imle_step_that_overflows_is_a_value_error_naming_lam():
    """lam * dL/dy beyond float64: the solver reported 'theta must be finite', which blames the wrong tensor."""
    layer = do.DiscreteLayer(TopK(2), IMLE(lam=1e308), seed=0)
    _, grad = layer_grad(layer, _moderate_theta(), torch.full((3, 5), 0.5, dtype=torch.float64))
    assert torch.isfinite(grad).all()
    with pytest.raises(ValueError, match="lam \\* dL/dy overflows float64.*IMLE\\(lam=1e\\+308"):
        layer_grad(layer, _moderate_theta(), torch.full((3, 5), 2.0, dtype=torch.float64))


def test_multiplicative_scale_whose_square_overflows_is_a_value_error():
    """scale=1e300, multiplicative: scale**2 / 2 raised a Python OverflowError (also through FenchelYoungLoss)."""
    with pytest.raises(ValueError, match="multiplicative"):
        PerturbedOptimizer(scale=1e300, multiplicative=True)
    with pytest.raises(ValueError, match="multiplicative"):
        FenchelYoungLoss(TopK(2), scale=1e300, multiplicative=True)
    PerturbedOptimizer(scale=30.0, multiplicative=True)  # fine in float64 (exp(-450) is a normal number)


@pytest.mark.parametrize("return_samples", [False, True])
@pytest.mark.parametrize("make", [lambda: PerturbedOptimizer(scale=64.0, samples=4),
                                  lambda: PerturbedOptimizer(scale=0.5, samples=4, multiplicative=True),
                                  lambda: PerturbedOptimizer(scale=64.0, samples=3, baseline=MAPBaseline()),
                                  lambda: ScoreFunction(scale=64.0, samples=4),
                                  lambda: ScoreFunction(scale=64.0, samples=3, baseline=None)],
                         ids=["additive", "multiplicative", "map_baseline", "loo", "no_baseline"])
def test_perturbed_estimate_with_huge_finite_upstream_gradient_is_exact(make, return_samples):
    """dL/dy near 1.8e308: the per-sample terms <dL/dy, y_s> overflowed to +inf and -inf and their mean was NaN,
    although the estimate itself is finite. It is now the estimate for dL/dy / 2**1023 times 2**1023, exactly."""
    theta = _moderate_theta().abs() + 100.0  # (large scales keep the exact estimate within float64)
    g = torch.tensor([1.5, 1.25, -0.5, 1.0, -1.75], dtype=torch.float64).expand(3, 5) * 2.0**1023
    grads = []
    for gg in (g, g / 2.0**1023):
        layer = do.DiscreteLayer(TopK(2), make(), seed=3, return_samples=return_samples)
        x = theta.clone().requires_grad_(True)
        y = layer(x)
        y.backward(gg.unsqueeze(1).expand(y.shape) if return_samples else gg)
        grads.append(x.grad)
    assert torch.isfinite(grads[0]).all() and bool((grads[1] != 0).any())
    torch.testing.assert_close(grads[0], grads[1] * 2.0**1023, rtol=0, atol=0)


def test_estimate_that_overflows_is_a_value_error_naming_the_estimator():
    """An estimate whose exact value leaves float64 came back as +-inf, or NaN (inf - inf); multiplicative with
    a subnormal theta entry (the estimate divides by theta) gave +-inf and NaN."""
    layer = do.DiscreteLayer(TopK(2), PerturbedOptimizer(scale=1e-300, samples=4), seed=0)
    with pytest.raises(ValueError, match="not finite.*PerturbedOptimizer\\(scale=1e-300"):
        layer_grad(layer, _moderate_theta(), torch.full((3, 5), 1e10, dtype=torch.float64))
    theta = _moderate_theta().abs() + 0.5
    theta[0, 0] = 5e-324
    layer = do.DiscreteLayer(TopK(2), PerturbedOptimizer(samples=4, multiplicative=True), seed=0)
    with pytest.raises(ValueError, match="not finite.*multiplicative=True.*divides by theta"):
        layer_grad(layer, theta, torch.randn(3, 5, generator=_gen(1), dtype=torch.float64))


def test_interpolation_step_below_the_float_range_is_a_value_error():
    """Interpolation(lam=1e-46) on float32 theta: lam is 0 in float32, (y - y') / lam = 0 / 0 = NaN gradients; the
    layer refuses the step for the compute dtype, naming it (5e-324 is refused by the constructor for any dtype)."""
    with pytest.raises(ValueError, match="lam must be at least"):
        Interpolation(lam=5e-324)
    layer = do.DiscreteLayer(TopK(2), Interpolation(lam=1e-46))
    with pytest.raises(ValueError, match="lam=1e-46 does not fit float32"):
        layer_grad(layer, _moderate_theta(torch.float32), torch.randn(3, 5, generator=_gen(1)))


def test_multiplicative_perturbation_that_overflows_is_a_value_error_naming_it():
    """theta near the float max times exp(scale eps) overflowed: the solver said 'theta must be finite'."""
    theta = _moderate_theta().abs() + 0.5
    theta[1, 2] = 1.7976931348623157e308  # any factor above 1 overflows
    layer = do.DiscreteLayer(TopK(2), PerturbedOptimizer(samples=10, multiplicative=True), seed=0)
    with pytest.raises(ValueError, match="perturbation of PerturbedOptimizer overflows float64"):
        layer(theta)


@pytest.mark.parametrize("path", ["layer", "fenchel_young", "score_function_loss"])
def test_every_perturbed_solve_names_an_overflowing_perturbation(path):
    """The three places that solve perturbed arguments (the layer's forward, FenchelYoungLoss, score_function_loss)
    turn the solver's 'theta must be finite' into an error naming the perturbation, and let other solver errors
    through unchanged."""
    from discreteopt.layers import score_function_loss

    if path == "score_function_loss":  # additive: 1.7e308 + 1e308 * eps overflows for most eps > 0
        layer = do.DiscreteLayer(TopK(2), ScoreFunction(samples=10, scale=1e308), seed=0)
        theta = _moderate_theta()
        theta[1, 2] = 1.7e308
    else:  # multiplicative: the float maximum times any factor above 1 overflows
        layer = do.DiscreteLayer(TopK(2), PerturbedOptimizer(samples=10, multiplicative=True), seed=0)
        theta = _moderate_theta().abs() + 0.5
        theta[1, 2] = 1.7976931348623157e308
    run = {"layer": lambda t: layer(t),
           "fenchel_young": lambda t: FenchelYoungLoss(layer)(t, torch.zeros_like(t)),
           "score_function_loss": lambda t: score_function_loss(layer, t, lambda y: y.sum((-1,)))}[path]
    with pytest.raises(ValueError, match=r"the perturbation of \w+ overflows float64") as info:
        run(theta.clone().requires_grad_(True))
    assert "must be finite" in str(info.value.__cause__)  # the solver's own refusal, kept as the cause
    with pytest.raises(ValueError, match="theta must have shape") as info:  # not an overflow: unchanged
        run(torch.ones(3, 4, 5, dtype=torch.float64, requires_grad=True))
    assert "perturbation" not in str(info.value)


def test_score_function_loss_with_theta_near_the_float32_max_is_finite():
    """The surrogate added and subtracted <theta, coef>: inf - inf = NaN value for float32 theta near 3.4e38."""
    seen = []

    def loss_fn(y):  # [B, S, *Y] -> [B, S]
        out = (y - 0.5).square().sum(-1) * torch.arange(1.0, 1.0 + y.shape[1])
        seen.append(out)
        return out

    theta = torch.randn(2, 5, generator=_gen(0))
    theta[0, 0], theta[1, 3] = 3.4e38, -3.4e38
    x = theta.clone().requires_grad_(True)
    layer = do.DiscreteLayer(TopK(2), ScoreFunction(samples=4), seed=0)
    value = do.score_function_loss(layer, x, loss_fn)
    assert value.dtype == torch.float32 and float(value.detach()) == pytest.approx(float(seen[0].mean()), rel=1e-6)
    value.backward()
    assert torch.isfinite(x.grad).all()


def test_score_function_loss_with_huge_losses_is_exact():
    """Losses near the float max: L_s - b_s and the score average overflowed; they are now computed on losses scaled
    by a power of two per instance, exactly."""
    theta = torch.randn(3, 5, generator=_gen(0), dtype=torch.float64)
    out = []
    for factor in (2.0**1020, 1.0):
        layer = do.DiscreteLayer(TopK(2), ScoreFunction(samples=4), seed=1)
        x = theta.clone().requires_grad_(True)
        value = do.score_function_loss(layer, x, lambda y, f=factor: (y[..., 0] * 1.5 - y[..., 3] * 1.75) * f)
        value.backward()
        out.append((value.detach(), x.grad))
    assert torch.isfinite(out[0][1]).all() and bool((out[1][1] != 0).any())
    torch.testing.assert_close(out[0][1], out[1][1] * 2.0**1020, rtol=0, atol=0)
    torch.testing.assert_close(out[0][0], out[1][0] * 2.0**1020, rtol=0, atol=0)
    layer = do.DiscreteLayer(TopK(2), ScoreFunction(samples=4, scale=1e-300), seed=1)
    with pytest.raises(ValueError, match="overflows float64"):  # the exact estimate leaves the float range
        do.score_function_loss(layer, torch.zeros(3, 5, dtype=torch.float64, requires_grad=True),
                               lambda y: y[..., 0] * 1e300)  # (theta = 0: the tiny noise decides, L_s differ)


def test_aimle_with_a_large_eta_clips_lam_instead_of_overflowing():
    """eta=1e3 with no non-zero entry: math.exp(1e3) raised OverflowError in the backward."""
    est = AIMLE(noise=None, eta=1e3)
    layer = do.DiscreteLayer(Argmax(), est)
    layer_grad(layer, torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    assert est.lam == est.lam_max


def test_interpolation_lam_must_work_in_the_compute_dtype():
    # lam = 5e-324 gave a silent zero or NaN gradient (1 / lam overflows); lam beyond float32 overflowed the target
    from discreteopt import DiscreteLayer
    from discreteopt.estimators import Interpolation
    from discreteopt.solvers import TopK

    with pytest.raises(ValueError, match="lam"):
        Interpolation(lam=5e-324)
    layer = DiscreteLayer(TopK(2), Interpolation(lam=1e39))
    with pytest.raises(ValueError, match="lam=1e\\+39 does not fit float32"):
        layer(torch.randn(2, 5, requires_grad=True))
    assert DiscreteLayer(TopK(2), Interpolation(lam=1e39))(torch.randn(2, 5, dtype=torch.float64)).shape == (2, 5)
