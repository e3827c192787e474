"""Losses: Fenchel-Young (gradient formula, value, gradcheck), SPO+ (formula, zero at the truth, gradcheck),
Hamming, regret, and their input errors."""

from __future__ import annotations

import warnings

import pytest
import torch

import discreteopt as do
from discreteopt.estimators import IMLE, GuardWarning, PerturbedOptimizer
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


# ------------------------------------------------------------------------------------------------ fuzz findings
# Regressions of the standing fuzz test (issue 10, item 9): each failed on the code before the fix.
@pytest.mark.parametrize("bad, match", [
    (torch.ones(2, 3, dtype=torch.complex64), "y must have a floating dtype"),  # was a complex "loss"
    (torch.ones(2, 3, dtype=torch.int64), "y must have a floating dtype"),  # was a raw RuntimeError from mean()
    (torch.ones(2, 3, dtype=torch.bool), "y must have a floating dtype"),  # was a raw RuntimeError (bool minus)
    (torch.zeros(0, 3), "non-empty batch"),  # was NaN under "mean"
    (torch.zeros(2, 0), "non-empty event"),  # was NaN (a mean over no entries)
    (torch.tensor([[float("inf"), 0.0]]), "y must be finite"),  # was NaN (inf * 0)
])
def test_hamming_loss_refuses_bad_y(bad, match):
    with pytest.raises(ValueError, match=match):
        HammingLoss()(bad, torch.zeros(bad.shape))


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[2.0, 0.0]]), r"0/1 targets .* \[0, 2\]"),  # was a negative "distance" (-0.5)
    (torch.tensor([[-1, 0]]), r"0/1 targets"),
    (torch.ones(1, 2, dtype=torch.complex128), "y_true must have a real dtype"),
])
def test_hamming_loss_refuses_targets_outside_0_1(bad, match):
    with pytest.raises(ValueError, match=match):
        HammingLoss()(torch.full((1, 2), 0.5), bad)


def test_hamming_loss_soft_and_integer_targets_and_no_spurious_overflow():
    y = torch.tensor([[0.25, 1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[0.5, 0.0, 1.0]], dtype=torch.float64)  # expected distance to Bernoulli(t) targets
    expected = (0.25 * 0.5 + 0.75 * 0.5 + 1.0 + 1.0) / 3
    torch.testing.assert_close(HammingLoss()(y, t), torch.tensor(expected, dtype=torch.float64))
    ints = torch.tensor([[1, 0, 1]])
    assert HammingLoss()(y, ints).item() == pytest.approx((0.75 + 1.0 + 1.0) / 3)  # int / bool targets: fine
    assert HammingLoss()(y, ints.bool()).item() == pytest.approx((0.75 + 1.0 + 1.0) / 3)
    # the exact means fit float64: summing first overflowed to inf (1.5e308 * 4 > 1.8e308)
    big = torch.full((2, 4), 1.5e308, dtype=torch.float64)
    for red, want in (("none", [1.5e308, 1.5e308]), ("mean", 1.5e308), ("sum", float("inf"))):
        torch.testing.assert_close(HammingLoss(reduction=red)(big, torch.zeros(2, 4)),
                                   torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0.0)


def test_regret_accepts_integer_decisions():
    """y_hat int64/bool: was a TypeError from torch.finfo; the regret is in theta_true's dtype."""
    solver, theta = TopK(1), torch.tensor([[3.0, 1.0, 2.0]])
    for y in (torch.tensor([[0, 0, 1]]), torch.tensor([[False, False, True]])):
        r = regret(solver, theta, y)
        assert r.dtype == torch.float32 and r.tolist() == [1.0]
    with pytest.raises(ValueError, match="y_hat must have a real dtype"):
        regret(solver, theta, torch.tensor([[0, 0, 1]], dtype=torch.complex64))
    with pytest.raises(ValueError, match="y_opt must have a real dtype"):
        regret(solver, theta, theta, y_opt=torch.tensor([[1, 0, 0]], dtype=torch.complex64))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_regret_normalized_refuses_a_zero_optimal_objective(reduction):
    """The zero denominator was clamped to finfo.tiny: a regret of 1 became 8.5e37."""
    theta = torch.tensor([[0.0, -1.0, -2.0]])  # max sense: y* = e_0, objective 0; y_hat = e_1 has regret 1
    with pytest.raises(ValueError, match="optimal objective <theta_true, y\\*> is 0"):
        regret(TopK(1), theta, torch.tensor([[0.0, 1.0, 0.0]]), normalized=True, reduction=reduction)
    both = torch.tensor([[0.0, -1.0, -2.0], [4.0, 1.0, 2.0]])  # summed denominators: 0 + 4
    r = regret(TopK(1), both, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), normalized=True, reduction="sum")
    torch.testing.assert_close(r, torch.tensor((1.0 + 2.0) / 4.0))


def test_regret_computes_in_float64_and_returns_the_promoted_dtype():
    """float16 y_hat under costs of 1e5: theta_true.to(float16) = inf and inf * 0 = NaN."""
    theta = torch.tensor([[1e5, 2e5, 3e5]])
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float16, requires_grad=True)
    r = regret(TopK(1), theta, y)  # max sense: 3e5 - 1e5
    assert r.dtype == torch.float32 and r.tolist() == [2e5]
    y2 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float16, requires_grad=True)
    regret(TopK(1), theta / 1e4, y2).sum().backward()  # gradient -theta / 1e4, in y_hat's dtype
    assert y2.grad.dtype == torch.float16 and y2.grad.tolist() == [[-10.0, -20.0, -30.0]]
    # float64 accuracy: 1 + 1e-8 is lost in float32 arithmetic
    c = torch.tensor([[1.0 + 1e-7, 1.0]], dtype=torch.float64)
    r = regret(TopK(1), c, torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    assert r.item() == pytest.approx(1e-7, rel=1e-9)
    with pytest.raises(ValueError, match="regret .*overflows float16"):  # both float16: the regret exceeds 65504
        regret(TopK(1), torch.tensor([[6e4, -6e4]], dtype=torch.float16),
               torch.tensor([[0.0, 1.0]], dtype=torch.float16))


def test_regret_of_huge_objectives():
    """Objectives near 1.8e308: <c, y_hat> - <c, y*> was inf - inf = NaN; the regret is one inner product."""
    theta = torch.tensor([[1e308, 1e308, 1.0]], dtype=torch.float64)
    y_star = TopK(2).solve(theta)
    assert regret(TopK(2), theta, y_star).tolist() == [0.0]
    assert regret(TopK(2), theta, torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)).tolist() == [1e308 - 1.0]
    with pytest.raises(ValueError, match="optimal objective <theta_true, y\\*> overflows float64"):
        regret(TopK(2), theta, y_star, normalized=True)
    with pytest.raises(ValueError, match="overflows float64"):  # the regret itself is beyond float64
        regret(TopK(1), torch.tensor([[1e308, -1e308]], dtype=torch.float64),
               torch.tensor([[-1.0, 1.0]], dtype=torch.float64))


# --------------------------------------------------------------------------- extreme values (issue 10, fuzz findings)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("y_true_given", [False, True])
def test_spo_plus_where_2_pred_minus_true_overflows_is_computed_on_scaled_costs(name, y_true_given):
    """A prediction of -6 * 2**1021: 2 c_hat - c overflowed (NaN loss on the cyclic grid, 'theta must be finite'
    elsewhere). SPO+ is positively homogeneous, so the loss of the scaled costs times 2**1021 is exact."""
    solver, true = CASES[name]
    pred = true + 0.8 * torch.randn(true.shape, generator=_gen(6), dtype=true.dtype)
    pred.view(pred.shape[0], -1)[:, 1] = -6.0  # 2 * pred overflows once scaled by 2**1021
    s = 2.0**1021
    assert pred.abs().max() < 8 and true.abs().max() < 8  # (the scaled inputs themselves are finite)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GuardWarning)  # the cyclic grid clamps 2 c_hat - c (both scales alike)
        extra = (solver.solve(true),) if y_true_given else ()
        out = []
        for p, t in ((pred * s, true * s), (pred, true)):
            x = p.clone().requires_grad_(True)
            value = SPOPlus(solver, reduction="none")(x, t, *extra)
            value.sum().backward()
            out.append((value.detach(), x.grad))
    (value, grad), (ref, ref_grad) = out
    assert not torch.isnan(value).any() and bool((ref != 0).any())
    torch.testing.assert_close(value, ref * s, rtol=0, atol=0)  # (inf where the exact loss leaves float64)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0)


def test_fenchel_young_scale_beyond_float32_is_a_value_error():
    """scale=1e300 with float32 theta: a raw RuntimeError from torch.add(alpha=scale)."""
    theta = torch.randn(2, 5, generator=_gen(0))
    with pytest.raises(ValueError, match="scale=1e\\+300 does not fit float32"):
        _fy(TopK(2), scale=1e300)(theta, TopK(2).solve(theta))
    value = _fy(TopK(2), scale=1e300)(theta.double(), TopK(2).solve(theta).double())  # float64: fine
    assert torch.isfinite(value)


def test_fenchel_young_with_huge_y_true_entries_is_never_nan():
    """y_true with entries near 1.8e308 (not a solution; only finiteness is checked): theta * (ybar - y_true)
    overflowed to +inf and -inf, and the loss was NaN although its exact value is finite."""
    theta = torch.tensor([[2.0, 2.0, 0.5, -1.0, 0.25], [2.0, 2.0, -0.5, 1.0, 0.75]], dtype=torch.float64)
    y_small = TopK(2).solve(theta.flip(0))
    big = torch.tensor([1.5e308, -1.5e308, 0.0, 0.0, 0.0], dtype=torch.float64)
    fy = _fy(TopK(2), seed=1, scale=0.5, samples=4, reduction="none")
    ref = fy(theta, y_small)
    x = theta.clone().requires_grad_(True)
    value = _fy(TopK(2), seed=1, scale=0.5, samples=4, reduction="none")(x, y_small + big)  # <theta, big> = 0
    assert torch.isfinite(value).all()
    # ybar - y_true rounds ybar away next to 1.5e308 (|ybar| <= 1 and |theta| = 2 in those entries): |error| <= 4
    assert bool(((value.detach() - ref).abs() <= 4.0).all())
    value.sum().backward()
    assert torch.isfinite(x.grad).all()
    # exact values beyond float64: +-inf per instance, and an undefined mean when the signs differ
    over = torch.stack([big.abs(), -big.abs()]) * torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    per = _fy(TopK(2), seed=1, reduction="none")(theta, over)
    assert per[0].item() == -float("inf") and per[1].item() == float("inf")
    with pytest.raises(ValueError, match="mean of the per-instance losses is undefined"):
        _fy(TopK(2), seed=1)(theta, over)


def test_spo_plus_mean_of_huge_finite_losses_is_finite():
    """Per-instance SPO+ losses of 1.6e308 and 1.7e308: their sum overflowed, so the mean was inf although it is
    1.65e308; the reduction is now recomputed on the losses scaled by a power of two (exact)."""
    true = torch.tensor([[0.0, 1.0e308], [0.0, 1.0e308]], dtype=torch.float64)
    pred = torch.tensor([[0.3e308, 0.0], [0.35e308, 0.0]], dtype=torch.float64, requires_grad=True)
    per = SPOPlus(TopK(1), reduction="none")(pred, true)  # <2 pred - true, e0 - e1>
    assert per.tolist() == [0.6e308 + 1.0e308, 0.7e308 + 1.0e308]
    mean = SPOPlus(TopK(1))(pred, true)
    assert float(mean.detach()) == per[0].item() / 2 + per[1].item() / 2
    mean.backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[1.0, -1.0], [1.0, -1.0]], dtype=torch.float64))


@pytest.mark.parametrize("loss, arg", [("fy", "y_true"), ("spo", "true"), ("spo", "y_true")])
def test_targets_beyond_the_prediction_dtype_are_named(loss, arg):
    """float64 targets beyond float32's range with a float32 prediction: the cast made them inf, and the loss was
    NaN (Fenchel-Young: ybar - inf, then inf - inf; found by the long fuzz run) or the solver said 'theta must be
    finite' (SPO+: 2 c_hat - c). A ValueError names the target and the dtype; float64 predictions still work."""
    pred = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    huge = torch.rand(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1e300
    fine = torch.rand(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    if loss == "fy":
        fn = FenchelYoungLoss(TopK(2), samples=3, seed=0)
        args = (huge,)
    else:
        fn = SPOPlus(TopK(2))
        args = (huge,) if arg == "true" else (fine, huge)
    with pytest.raises(ValueError, match=rf"{arg} does not fit float32.*max \|{arg}\| = "):
        fn(pred.clone().requires_grad_(True), *args)
    value = fn(pred.double().requires_grad_(True), *args)  # in float64 they fit: a finite loss
    assert torch.isfinite(value)
