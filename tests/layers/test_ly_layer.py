"""DiscreteLayer mechanics: shapes, dtype, modes, seeds, sense flip, guards, stats, async, errors."""

from __future__ import annotations

import pytest
import torch

import discreteopt as do
from discreteopt.estimators import (
    AIMLE,
    IMLE,
    Clamp,
    Interpolation,
    PerturbedOptimizer,
    Raise,
    ScoreFunction,
    Shift,
    StraightThrough,
)
from discreteopt.solvers import Argmax, GridShortestPath, TopK


def _theta(b=3, n=5, seed=0, dtype=torch.float32):
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("est, s", [(IMLE(samples=4), 4), (PerturbedOptimizer(samples=6), 6), (Interpolation(), 1),
                                    (StraightThrough(), 1), (AIMLE(samples=2), 2), (ScoreFunction(samples=3), 3)])
def test_output_shapes_dtype_and_samples(est, s):
    theta = _theta(dtype=torch.float64).requires_grad_(True)
    layer = do.DiscreteLayer(TopK(2), est, seed=0)
    y = layer(theta)
    assert y.shape == (3, 5) and y.dtype == torch.float64 and y.device == theta.device
    ys = layer(theta, return_samples=True)
    assert ys.shape == (3, s, 5)
    assert torch.all(ys.sum(-1) == 2)  # every sample is a 2-subset
    torch.testing.assert_close(ys.sum(-1).mean(1), torch.full((3,), 2.0, dtype=torch.float64))


def test_single_sample_output_is_a_solution_and_mean_otherwise():
    theta = _theta()
    y = do.DiscreteLayer(TopK(2), IMLE(samples=1), seed=0)(theta)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    layer = do.DiscreteLayer(TopK(2), IMLE(samples=5), seed=3)
    ys = layer(theta, return_samples=True)
    layer2 = do.DiscreteLayer(TopK(2), IMLE(samples=5), seed=3)
    torch.testing.assert_close(layer2(theta), ys.mean(1))


def test_seed_and_generator_make_runs_reproducible():
    theta = _theta()
    a = do.DiscreteLayer(TopK(2), IMLE(samples=8), seed=5)(theta, return_samples=True)
    b = do.DiscreteLayer(TopK(2), IMLE(samples=8), seed=5)(theta, return_samples=True)
    g = torch.Generator().manual_seed(5)
    c = do.DiscreteLayer(TopK(2), IMLE(samples=8), generator=g)(theta, return_samples=True)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    torch.manual_seed(1)
    d = do.DiscreteLayer(TopK(2), IMLE(samples=8))(theta, return_samples=True)
    torch.manual_seed(1)
    e = do.DiscreteLayer(TopK(2), IMLE(samples=8))(theta, return_samples=True)
    torch.testing.assert_close(d, e)


def test_eval_mode_returns_map_without_noise_and_is_configurable():
    theta = _theta(b=4, n=6)
    layer = do.DiscreteLayer(TopK(3), IMLE(samples=5, noise=do.noise.Gumbel(scale=10.0)), seed=0).eval()
    torch.testing.assert_close(layer(theta), TopK(3).solve(theta))
    assert layer(theta, return_samples=True).shape == (4, 1, 6)
    noisy = do.DiscreteLayer(TopK(3), IMLE(samples=5, noise=do.noise.Gumbel(scale=10.0)), seed=0,
                             eval_mode="estimator").eval()
    assert not torch.equal(noisy(theta), TopK(3).solve(theta))


def test_works_under_no_grad_and_gradient_flows_otherwise():
    theta = _theta().requires_grad_(True)
    layer = do.DiscreteLayer(TopK(2), IMLE(lam=1.0, samples=2), seed=0)
    with torch.no_grad():
        y = layer(theta)
    assert not y.requires_grad
    y = layer(theta)
    assert y.requires_grad
    y.sum().backward()
    assert theta.grad is not None and theta.grad.shape == theta.shape


def test_min_sense_flip_straight_through_gives_minus_identity_in_cost_space():
    costs = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(0)).add(0.5).requires_grad_(True)
    layer = do.DiscreteLayer(GridShortestPath(), StraightThrough())
    y = layer(costs)
    torch.testing.assert_close(y, GridShortestPath().solve(costs.detach()))
    g = torch.randn(2, 4, 4)
    (y * g).sum().backward()
    torch.testing.assert_close(costs.grad, -g)


def test_guards_clamp_shift_raise_for_bounded_costs():
    costs = torch.tensor([[[1.0, -2.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])
    y = do.DiscreteLayer(GridShortestPath(), StraightThrough(), guard=Clamp())(costs)
    torch.testing.assert_close(y, GridShortestPath().solve(costs.clamp(min=0)))
    with pytest.raises(ValueError, match="non-negative"):
        do.DiscreteLayer(GridShortestPath(), StraightThrough(), guard=Raise())(costs)
    with pytest.raises(ValueError, match="Shift"):
        do.DiscreteLayer(GridShortestPath(), StraightThrough(), guard=Shift())
    # Shift is the identity for solvers without min_cost
    theta = _theta()
    torch.testing.assert_close(do.DiscreteLayer(TopK(2), StraightThrough(), guard=Shift())(theta),
                               TopK(2).solve(theta))


def test_shift_guard_moves_each_instance_to_the_bound():
    class ShiftableTopK(TopK):
        min_cost = 0.0
        sense = "min"
        shift_invariant = True

    w = torch.tensor([[-3.0, 1.0, 2.0], [4.0, 5.0, 6.0]])
    out = Shift()(w, ShiftableTopK(1))
    torch.testing.assert_close(out, torch.tensor([[0.0, 4.0, 5.0], [4.0, 5.0, 6.0]]))
    # the shift does not change the optimum of this (shift-invariant) solver, while Raise refuses the input
    y = do.DiscreteLayer(ShiftableTopK(1), StraightThrough(), guard=Shift())(w)
    torch.testing.assert_close(y, TopK(1).solve(w))
    with pytest.raises(ValueError, match="non-negative"):
        do.DiscreteLayer(ShiftableTopK(1), StraightThrough(), guard=Raise())(w)


def test_stats_count_one_executor_call_per_phase():
    theta = _theta(b=4).requires_grad_(True)
    cases = [(IMLE(samples=3), (1, 12, 1, 12)), (AIMLE(samples=3, two_sided=True), (1, 12, 1, 24)),
             (Interpolation(), (1, 4, 1, 4)), (PerturbedOptimizer(samples=5), (1, 20, 0, 0)),
             (PerturbedOptimizer(samples=5, baseline=do.estimators.MAPBaseline()), (1, 24, 0, 0)),
             (StraightThrough(), (1, 4, 0, 0))]
    for est, expected in cases:
        layer = do.DiscreteLayer(TopK(2), est, seed=0)
        layer(theta).sum().backward()
        s = layer.stats
        assert (s.forward_calls, s.forward_instances, s.backward_calls, s.backward_instances) == expected, est
        s.reset()
        assert s.calls == 0 and s.instances == 0


def test_forward_async_equals_forward_including_gradient():
    theta = _theta().requires_grad_(True)
    g = torch.randn(3, 5)
    a = do.DiscreteLayer(TopK(2), IMLE(lam=2.0, samples=4), seed=1)
    y1 = a(theta)
    (grad1,) = torch.autograd.grad((y1 * g).sum(), theta)
    b = do.DiscreteLayer(TopK(2), IMLE(lam=2.0, samples=4), seed=1)
    handle = b.forward_async(theta)
    y2 = handle.result()
    assert handle.done()
    (grad2,) = torch.autograd.grad((y2 * g).sum(), theta)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(grad1, grad2)


def test_functional_form_matches_module():
    theta = _theta()
    y = do.discrete_layer(theta, TopK(2), IMLE(samples=3), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, do.DiscreteLayer(TopK(2), IMLE(samples=3), seed=0)(theta))


def test_bad_inputs_raise_value_errors_naming_the_argument():
    layer = do.DiscreteLayer(TopK(2), IMLE())
    with pytest.raises(ValueError, match="theta must be finite"):
        layer(torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="theta must have shape"):
        layer(torch.zeros(5))
    with pytest.raises(ValueError, match="floating"):
        layer(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="theta must be a torch.Tensor"):
        layer([[1.0, 2.0]])
    with pytest.raises(ValueError, match="estimator"):
        do.DiscreteLayer(TopK(2), "imle")
    with pytest.raises(ValueError, match="solver"):
        do.DiscreteLayer(object(), IMLE())
    with pytest.raises(ValueError, match="seed"):
        do.DiscreteLayer(TopK(2), IMLE(), seed=1.5)
    with pytest.raises(ValueError, match="either generator or seed"):
        do.DiscreteLayer(TopK(2), IMLE(), seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="eval_mode"):
        do.DiscreteLayer(TopK(2), IMLE(), eval_mode="sample")
    with pytest.raises(ValueError, match="lam"):
        IMLE(lam=0.0)
    with pytest.raises(ValueError, match="samples"):
        IMLE(samples=0)
    with pytest.raises(ValueError, match="scale"):
        PerturbedOptimizer(scale=-1.0)
    with pytest.raises(ValueError, match="samples must be >= 2"):
        ScoreFunction(samples=1)
    with pytest.raises(ValueError, match="noise"):
        IMLE(noise="uniform")
    with pytest.raises(ValueError, match="no zero entry"):
        do.DiscreteLayer(TopK(1), PerturbedOptimizer(multiplicative=True))(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="target"):
        AIMLE(target=0.0)
    with pytest.raises(ValueError, match="tractable score"):
        PerturbedOptimizer(noise=do.noise.SumOfGamma(2))
    with pytest.raises(ValueError, match="samples must be even"):
        PerturbedOptimizer(samples=3, noise=do.noise.Antithetic(do.noise.Normal()))
    with pytest.raises(ValueError, match="momentum"):
        AIMLE(momentum=0.0)
    with pytest.raises(ValueError, match="initial_lam"):
        AIMLE(initial_lam=1e4)
    with pytest.raises(ValueError, match="AIMLE state"):
        AIMLE().load_state_dict({"lam": 1.0})
    with pytest.raises(ValueError, match="no training state"):
        IMLE().load_state_dict({"lam": 1.0})
    with pytest.raises(ValueError, match="alpha"):
        do.estimators.TargetDistribution(alpha=float("nan"))
    with pytest.raises(ValueError, match="surrogate"):
        StraightThrough(surrogate="softmax")
    with pytest.raises(ValueError, match="guard"):
        do.DiscreteLayer(TopK(2), IMLE(), guard="clamp")
    with pytest.raises(ValueError, match="executor"):
        do.DiscreteLayer(TopK(2), IMLE(), executor="inline")
    with pytest.raises(ValueError, match="k must be in"):
        do.DiscreteLayer(TopK(9), IMLE())(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-empty batch"):
        do.DiscreteLayer(TopK(1), IMLE())(torch.zeros(0, 3))


def test_output_cannot_be_edited_in_place_behind_the_backward_pass():
    theta = _theta().requires_grad_(True)
    y = do.DiscreteLayer(TopK(2), IMLE(lam=1.0, samples=1), seed=0)(theta)
    with pytest.raises(RuntimeError, match="inplace"):
        y.mul_(2.0)  # a view of the solutions the backward pass uses: autograd refuses
    layer = do.DiscreteLayer(TopK(2), IMLE(lam=1.0, samples=3), seed=0)
    ys = layer(theta, return_samples=True)
    g = torch.randn(ys.shape, generator=torch.Generator().manual_seed(1))
    (ref,) = torch.autograd.grad((ys * g).sum(), theta)
    ys2 = do.DiscreteLayer(TopK(2), IMLE(lam=1.0, samples=3), seed=0)(theta, return_samples=True)
    ys2.add_(1.0)  # a copy: editing it (identity Jacobian) leaves the backward context intact
    (grad,) = torch.autograd.grad((ys2 * g).sum(), theta)
    torch.testing.assert_close(grad, ref)


def test_guard_never_modifies_the_callers_tensor():
    costs = torch.tensor([[[1.0, -2.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])
    before = costs.clone()
    do.DiscreteLayer(GridShortestPath(), IMLE(lam=1.0), seed=0)(costs.requires_grad_(True)).sum().backward()
    torch.testing.assert_close(costs.detach(), before)
    theta = _theta()
    before = theta.clone()
    do.DiscreteLayer(TopK(2), StraightThrough(), guard=Shift())(theta)
    torch.testing.assert_close(theta, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_inference_mode_and_functional_seed(dtype):
    theta = _theta(dtype=torch.float64).to(dtype).requires_grad_(True)
    y = do.DiscreteLayer(TopK(2), IMLE(samples=2), seed=0)(theta)
    assert y.dtype == dtype
    y.sum().backward()
    assert theta.grad.dtype == dtype
    with torch.inference_mode():
        assert do.DiscreteLayer(TopK(2), PerturbedOptimizer(samples=2), seed=0)(theta).shape == theta.shape
    a = do.discrete_layer(theta, TopK(2), IMLE(samples=3), seed=7, return_samples=True)
    b = do.discrete_layer(theta, TopK(2), IMLE(samples=3), seed=7, return_samples=True)
    torch.testing.assert_close(a, b)


def test_threads_executor_gives_the_same_values_and_gradients_as_inline():
    costs = torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    g = torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    with do.executors.Threads(2) as pool:
        for executor in (None, pool):
            x = costs.clone().requires_grad_(True)
            layer = do.DiscreteLayer(GridShortestPath(), IMLE(lam=2.0, samples=3), executor, seed=3)
            y = layer(x)
            (grad,) = torch.autograd.grad((y * g).sum(), x)
            results.append((y, grad))
    torch.testing.assert_close(results[0], results[1])


def test_score_function_loss_input_errors():
    theta = _theta()
    layer = do.DiscreteLayer(TopK(2), ScoreFunction(samples=3), seed=0)
    with pytest.raises(ValueError, match="ScoreFunction"):
        do.score_function_loss(do.DiscreteLayer(TopK(2), IMLE()), theta, lambda y: y.sum(-1))
    with pytest.raises(ValueError, match=r"shape \[B, S\]"):
        do.score_function_loss(layer, theta, lambda y: y.sum((-1, -2)))
    with pytest.raises(ValueError, match=r"loss_fn\(y\) must be finite"):
        do.score_function_loss(layer, theta, lambda y: y.sum(-1) / 0.0)
    with pytest.raises(ValueError, match="reduction"):
        do.score_function_loss(layer, theta, lambda y: y.sum(-1), reduction="avg")
    value = do.score_function_loss(layer, theta.requires_grad_(True), lambda y: y[..., 0])
    assert value.requires_grad and value.shape == ()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_input_gives_cuda_output_and_gradient():
    theta = torch.randn(4, 6, device="cuda", requires_grad=True)
    for est in (IMLE(samples=2), PerturbedOptimizer(samples=3), AIMLE(two_sided=True), Interpolation(),
                StraightThrough(), ScoreFunction(samples=2)):
        y = do.DiscreteLayer(TopK(2), est, seed=0)(theta)
        assert y.device.type == "cuda"
        y.sum().backward()
        assert theta.grad.device.type == "cuda"
    # seeded runs are reproducible on the device; shortest paths on the GPU (torch back-end) and via the host
    a = do.DiscreteLayer(TopK(2), IMLE(samples=4), seed=3)(theta, return_samples=True)
    b = do.DiscreteLayer(TopK(2), IMLE(samples=4), seed=3)(theta, return_samples=True)
    torch.testing.assert_close(a, b)
    costs = torch.rand(3, 5, 5, device="cuda", dtype=torch.float64).add(0.5).requires_grad_(True)
    for solver in (GridShortestPath(), GridShortestPath(backend="numba")):
        layer = do.DiscreteLayer(solver, IMLE(lam=2.0, samples=2), seed=0)
        y = layer(costs)
        assert y.device.type == "cuda" and y.dtype == torch.float64
        (grad,) = torch.autograd.grad(y.sum(), costs)
        assert grad.device.type == "cuda"
    fy = do.losses.FenchelYoungLoss(GridShortestPath(), samples=3, seed=0)
    fy(costs, GridShortestPath().solve(costs.detach())).backward()
    assert costs.grad.device.type == "cuda"
    layer = do.DiscreteLayer(Argmax(), IMLE(), generator=torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        layer(theta)
