"""DiscreteLayer and the losses as citizens of PyTorch: torch.func (grad, vmap, jacrev), torch.compile
(fullgraph, custom operators), TorchScript refusal, half precision, second-order gradients and the NaN
upstream-gradient message (issue 9.3, issue 10.5)."""

from __future__ import annotations

import copy
import doctest
import gc
import shutil

import pytest
import torch

import discreteopt as do
from discreteopt import _ops
from discreteopt.estimators import (
    AIMLE,
    IMLE,
    Clamp,
    Interpolation,
    MAPBaseline,
    PerturbedOptimizer,
    ScoreFunction,
    StraightThrough,
)
from discreteopt.losses import FenchelYoungLoss, HammingLoss, SPOPlus, regret
from discreteopt.solvers import GraphShortestPath, GridShortestPath, TopK

# fresh estimator instances (AIMLE adapts its lam: two layers must not share one)
ESTIMATORS = {
    "imle": lambda: IMLE(lam=1.0, samples=3),
    "aimle": lambda: AIMLE(samples=2, two_sided=True),
    "interpolation": lambda: Interpolation(lam=1.0),
    "perturbed": lambda: PerturbedOptimizer(samples=4),
    "perturbed_map_baseline": lambda: PerturbedOptimizer(samples=3, baseline=MAPBaseline()),
    "score_function": lambda: ScoreFunction(samples=3),
    "straight_through": lambda: StraightThrough(),
}
DETERMINISTIC = {
    "interpolation": lambda: Interpolation(lam=1.0),
    "straight_through": lambda: StraightThrough(),
    "imle_no_noise": lambda: IMLE(lam=1.0, noise=None),
}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _problem(kind, b=3, seed=0):
    """(solver, natural argument [B, *E], upstream weights [B, *Y]) in float64."""
    if kind == "topk":
        return TopK(2), torch.randn(b, 5, generator=_gen(seed), dtype=torch.float64), \
            torch.randn(b, 5, generator=_gen(seed + 1), dtype=torch.float64)
    costs = 1 + 3 * torch.rand(b, 4, 4, generator=_gen(seed), dtype=torch.float64)  # min sense, costs >= 1
    return GridShortestPath(), costs, torch.randn(b, 4, 4, generator=_gen(seed + 1), dtype=torch.float64)


def _layer(solver, make, seed=3, **kw):
    return do.DiscreteLayer(solver, make(), seed=seed, guard=Clamp(), **kw)


# ------------------------------------------------------------------------------------------------ torch.func
@pytest.mark.parametrize("kind", ["topk", "grid"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_func_grad_equals_backward_for_the_same_seed(name, kind):
    # old code: "Cannot access data pointer of Tensor that doesn't have storage"
    solver, theta, w = _problem(kind)
    for samples in (False, True):
        def loss(y, samples=samples):
            return (y * (w.unsqueeze(1) if samples else w)).sum()

        x = theta.clone().requires_grad_(True)
        loss(_layer(solver, ESTIMATORS[name])(x, return_samples=samples)).backward()
        layer = _layer(solver, ESTIMATORS[name])
        grad = torch.func.grad(lambda t, layer=layer, samples=samples: loss(layer(t, return_samples=samples)))(theta)
        assert torch.equal(grad, x.grad), (name, samples)
        assert grad.abs().sum() > 0 or name not in ("imle", "straight_through")


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_vmap_folds_the_vmapped_dim_into_one_solver_call(name):
    # vmap(layer)(x [V, B, *E]) == layer(x [V*B, *E]) reshaped, same seed: one noise draw, one executor call
    solver, _, _ = _problem("grid")
    x = 1 + 3 * torch.rand(4, 3, 4, 4, generator=_gen(5), dtype=torch.float64)  # V=4, B=3
    layer = _layer(solver, ESTIMATORS[name])
    y = torch.func.vmap(layer, randomness="different")(x)
    ref = _layer(solver, ESTIMATORS[name])(x.flatten(0, 1)).reshape(x.shape)
    assert torch.equal(y, ref)
    assert layer.stats.forward_calls == 1
    s = layer.estimator.samples
    extra = 12 if name == "perturbed_map_baseline" else 0
    assert layer.stats.forward_instances == 12 * s + extra
    # the vmapped dim may sit anywhere: in_dims=1 gives the same as moving it to the front
    y1 = torch.func.vmap(_layer(solver, ESTIMATORS[name]), in_dims=1, randomness="different")(x.transpose(0, 1))
    assert torch.equal(y1, y)


@pytest.mark.parametrize("kind", ["topk", "grid"])
@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_vmap_of_deterministic_forwards_equals_a_python_loop_with_gradients(name, kind):
    solver, theta, w = _problem(kind, b=2)
    x = torch.stack([theta, theta.flip(0) + 0.5, theta * 1.5])  # [V=3, B=2, *E]
    layer = _layer(solver, DETERMINISTIC[name])

    def loss(t):
        return (layer(t) * w).sum()

    y = torch.func.vmap(layer)(x)  # default randomness="error": nothing is drawn
    assert torch.equal(y, torch.stack([layer(x[v]) for v in range(3)]))
    per_v = torch.func.vmap(torch.func.grad(loss))(x)  # per-element gradients, one solver call per phase
    for v in range(3):
        assert torch.equal(per_v[v], torch.func.grad(loss)(x[v]))


def test_vmap_in_eval_map_mode_equals_a_loop_for_every_estimator():
    solver, theta, _ = _problem("grid", b=2)
    x = torch.stack([theta, theta + 1.0, theta.flip(-1)])
    for name, make in ESTIMATORS.items():
        layer = _layer(solver, make).eval()
        y = torch.func.vmap(layer)(x)  # MAP: deterministic, allowed under randomness="error"
        assert torch.equal(y, torch.stack([solver.solve(x[v]) for v in range(3)])), name
        assert torch.equal(torch.func.vmap(lambda t, layer=layer: layer(t, return_samples=True))(x),
                           y.unsqueeze(2)), name


def test_vmap_randomness_error_and_same_are_enforced():
    x = torch.randn(2, 3, 5)
    with pytest.raises(RuntimeError, match="randomness='different'"):
        torch.func.vmap(do.DiscreteLayer(TopK(2), IMLE(samples=2), seed=0))(x)
    with pytest.raises(RuntimeError, match="randomness='same'"):
        torch.func.vmap(do.DiscreteLayer(TopK(2), IMLE(samples=2)), randomness="same")(x)
    with pytest.raises(RuntimeError, match="randomness='different'"):  # the default generator is watched too
        torch.func.vmap(FenchelYoungLoss(TopK(2), samples=2), in_dims=(0, None))(x, TopK(2).solve(x[0]))


@pytest.mark.parametrize("name", ["imle", "perturbed", "aimle", "score_function"])
def test_vmap_of_grad_gives_the_gradient_of_the_folded_batch(name):
    solver, _, _ = _problem("topk")
    x = torch.randn(3, 2, 5, generator=_gen(7), dtype=torch.float64)
    w = torch.randn(3, 2, 5, generator=_gen(8), dtype=torch.float64)
    layer = _layer(solver, ESTIMATORS[name])
    per_v = torch.func.vmap(torch.func.grad(lambda t, wv: (layer(t) * wv).sum()), randomness="different")(x, w)
    flat = x.flatten(0, 1).clone().requires_grad_(True)
    (_layer(solver, ESTIMATORS[name])(flat) * w.flatten(0, 1)).sum().backward()
    assert torch.equal(per_v, flat.grad.reshape(x.shape))


@pytest.mark.parametrize("kind", ["topk", "grid"])
def test_jacrev_rows_equal_one_backward_per_basis_cotangent(kind):
    solver, theta, _ = _problem(kind, b=2)
    layer = _layer(solver, lambda: Interpolation(lam=0.7))
    jac = torch.func.jacrev(layer)(theta)  # [B, *Y, B, *E]: vmap over the backward, forward not vmapped
    x = theta.clone().requires_grad_(True)
    y = layer(x)
    for i in range(y.numel()):
        e = torch.zeros(y.numel(), dtype=y.dtype)
        e[i] = 1.0
        (row,) = torch.autograd.grad(y, x, e.reshape(y.shape), retain_graph=True)
        assert torch.equal(jac.reshape(y.numel(), -1)[i], row.flatten())


def test_plain_inputs_inside_a_transform_and_validation_of_wrapped_inputs():
    # inside torch.func.grad no tensor's data can be read directly, not even a plain one's: the layer must not
    # take its eager path for a theta that does not depend on the differentiated argument
    solver, theta, w = _problem("grid")
    layer = _layer(solver, ESTIMATORS["imle"])
    grad_w = torch.func.grad(lambda wv: (layer(theta) * wv).sum())(w)
    torch.testing.assert_close(grad_w, _layer(solver, ESTIMATORS["imle"])(theta))  # d<y, w>/dw = y
    bad = theta.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="theta must be finite"):
        torch.func.grad(lambda t: layer(t).sum())(bad)
    with pytest.raises(ValueError, match="theta must be finite"):
        torch.func.vmap(layer, randomness="different")(torch.stack([theta, bad]))
    with pytest.raises(ValueError, match="theta must have shape"):
        torch.func.grad(lambda t: layer(t).sum())(theta[0])


def test_forward_mode_is_refused_with_a_clear_error():
    with pytest.raises(NotImplementedError, match="reverse-mode"):
        torch.func.jacfwd(do.DiscreteLayer(TopK(2), Interpolation()))(torch.randn(2, 4))


def test_forward_async_under_a_transform_returns_a_finished_handle():
    layer = do.DiscreteLayer(TopK(2), IMLE(lam=1.0, samples=2), seed=0)

    def f(t):
        handle = layer.forward_async(t)
        assert handle.done()
        return handle.result().sum()

    torch.testing.assert_close(torch.func.grad(f)(torch.randn(3, 5)).shape, torch.Size([3, 5]))


# ------------------------------------------------------------------------------------------------ losses
def _loss_cases():
    solver = GraphShortestPath.grid(3, 3)
    c = 1 + torch.rand(4, 12, generator=_gen(1), dtype=torch.float64)
    y_true, y_opt = solver.solve(c.flip(0)), solver.solve(c)
    return {  # name -> (make(rep) -> f(x), x): rep repeats the targets for the folded batch
        "fenchel_young": (lambda rep: lambda t: FenchelYoungLoss(solver, seed=2, samples=4, reduction="sum")(
            t, y_true.repeat(rep, 1)), c),
        "fenchel_young_mult": (lambda rep: lambda t: FenchelYoungLoss(solver, seed=2, samples=4, multiplicative=True,
                                                                      reduction="sum")(t, y_true.repeat(rep, 1)), c),
        "spo_plus": (lambda rep: lambda t: SPOPlus(solver, reduction="sum")(t, c.repeat(rep, 1)), c + 0.4),
        "spo_plus_y_true": (lambda rep: lambda t: SPOPlus(solver, reduction="sum")(
            t, c.repeat(rep, 1), y_true=y_opt.repeat(rep, 1)), c - 0.3),
        "hamming": (lambda rep: lambda t: HammingLoss(reduction="sum")(t, y_true.repeat(rep, 1)),
                    torch.rand(4, 12, generator=_gen(3), dtype=torch.float64)),
        "regret": (lambda rep: lambda t: regret(solver, t, y_true.repeat(rep, 1), reduction="sum"), c),
        "regret_normalized": (lambda rep: lambda t: regret(solver, t, y_true.repeat(rep, 1), normalized=True,
                                                           reduction="none").sum(), c),
        "regret_plain_theta": (lambda rep: lambda t: regret(solver, c.repeat(rep, 1), t, reduction="sum"),
                               torch.rand(4, 12, generator=_gen(4), dtype=torch.float64)),
    }


@pytest.mark.parametrize("name", list(_loss_cases()))
def test_losses_under_func_grad_and_vmap_equal_backward(name):
    make, x = _loss_cases()[name]
    x1 = x.clone().requires_grad_(True)
    make(1)(x1).backward()
    assert torch.equal(torch.func.grad(make(1))(x), x1.grad)
    xv = x.unsqueeze(0) + 0.1 * torch.rand(3, *x.shape, generator=_gen(9), dtype=x.dtype)  # [V=3, B, *E]
    per_v = torch.func.vmap(torch.func.grad(make(1)), randomness="different")(xv)
    flat = xv.flatten(0, 1).clone().requires_grad_(True)
    make(3)(flat).backward()
    assert torch.equal(per_v, flat.grad.reshape(xv.shape))


# ------------------------------------------------------------------------------------------------ torch.compile
class _Model(torch.nn.Module):
    def __init__(self, solver, est, n, samples=False):
        super().__init__()
        self.lin = torch.nn.Linear(n, n, dtype=torch.float64)
        self.layer = do.DiscreteLayer(solver, est, seed=3, guard=Clamp())
        self.samples = samples

    def forward(self, x):
        theta = self.lin(x).reshape(x.shape[0], *self.shape) + self.offset
        y = self.layer(theta, return_samples=self.samples)
        return y, (y * theta.detach().unsqueeze(1) if self.samples else y * theta.detach()).sum()


def _models(kind, make, samples=False):
    solver, theta, _ = _problem(kind)
    n = theta[0].numel()
    torch.manual_seed(0)
    pair = [_Model(solver, make(), n, samples) for _ in range(2)]
    pair[1].load_state_dict(pair[0].state_dict())
    for m in pair:
        m.shape, m.offset = theta.shape[1:], (4.0 if kind == "grid" else 0.0)
    return pair, theta.flatten(1)


def _compare_compiled(kind, make, backend, samples=False, steps=2):
    torch._dynamo.reset()
    (eager, model), x = _models(kind, make, samples)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    for _ in range(steps):  # the second step checks that the generator advances identically
        for m in (eager, model):
            m.zero_grad()
        y_e, l_e = eager(x)
        y_c, l_c = compiled(x)
        l_e.backward()
        l_c.backward()
        assert torch.equal(y_e, y_c)
        torch.testing.assert_close(l_e, l_c)
        assert torch.equal(eager.lin.weight.grad, model.lin.weight.grad)
    assert eager.layer.stats == model.layer.stats
    assert eager.layer.estimator.state_dict() == model.layer.estimator.state_dict()  # AIMLE's lam adapted alike
    eager.eval()
    model.eval()
    assert torch.equal(eager(x)[0], compiled(x)[0])  # MAP mode: discreteopt::layer_map


@pytest.mark.parametrize("name", ["imle", "aimle", "interpolation", "perturbed_map_baseline", "straight_through"])
def test_compile_fullgraph_aot_eager_equals_eager(name):
    _compare_compiled("grid" if name in ("imle", "interpolation") else "topk", ESTIMATORS[name], "aot_eager")


def test_compile_fullgraph_with_return_samples_and_forward_async():
    _compare_compiled("topk", ESTIMATORS["perturbed"], "aot_eager", samples=True)
    torch._dynamo.reset()
    layer = do.DiscreteLayer(TopK(2), IMLE(lam=1.0, samples=2), seed=0)
    fn = torch.compile(lambda t: layer.forward_async(t * 2).result(), fullgraph=True, backend="aot_eager",
                       dynamic=True)
    for b in (2, 5):  # dynamic batch: the fake implementations work on symbolic shapes
        x = torch.randn(b, 6, requires_grad=True)
        fn(x).sum().backward()
        assert x.grad.shape == (b, 6)


def test_compile_fullgraph_losses_equal_eager():
    solver = GraphShortestPath.grid(3, 3)
    c = 1 + torch.rand(4, 12, generator=_gen(1))
    y_true = solver.solve(c.flip(0))
    lin = torch.nn.Linear(12, 12)
    for make in (lambda: FenchelYoungLoss(solver, seed=0, samples=4), lambda: SPOPlus(solver)):
        torch._dynamo.reset()
        results = []
        for compiled in (False, True):
            loss = make()

            def f(x, loss=loss):
                p = lin(x)
                main = loss(p, y_true) if isinstance(loss, FenchelYoungLoss) else loss(p, c)
                return main + HammingLoss()(torch.sigmoid(p), y_true) + \
                    regret(solver, c, torch.sigmoid(p), y_opt=y_true).mean()

            fn = torch.compile(f, fullgraph=True, backend="aot_eager") if compiled else f
            lin.zero_grad()
            value = fn(c)
            value.backward()
            results.append((value.detach(), lin.weight.grad.clone()))
        assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    with pytest.raises(Exception, match="y_opt"):
        torch.compile(lambda t: regret(solver, t, y_true), fullgraph=True, backend="aot_eager")(c)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("gcc") is None, reason="needs a C++ compiler")
def test_compile_fullgraph_inductor_equals_eager():  # ~25 s of C++ compilation on 2 cores
    _compare_compiled("topk", ESTIMATORS["imle"], "inductor", steps=1)


def test_operators_name_a_garbage_collected_layer():
    layer = do.DiscreteLayer(TopK(1), StraightThrough())
    op_id = layer._op_id
    assert torch.equal(torch.ops.discreteopt.layer_map(torch.tensor([[1.0, 2.0]]), op_id, False),
                       torch.tensor([[0.0, 1.0]]))
    del layer
    gc.collect()
    with pytest.raises(RuntimeError, match="no longer exists"):
        torch.ops.discreteopt.layer_forward(torch.zeros(1, 2), op_id, False)


def test_copies_get_their_own_operator_id():
    layer = do.DiscreteLayer(TopK(1), StraightThrough())
    twin = copy.deepcopy(layer)
    assert twin._op_id != layer._op_id
    assert _ops.lookup(twin._op_id, "layer") is twin and _ops.lookup(layer._op_id, "layer") is layer


def test_torchscript_fails_with_a_clear_error_naming_torch_compile():
    model = torch.nn.Sequential(torch.nn.Linear(5, 5), do.DiscreteLayer(TopK(2), IMLE()))
    with pytest.raises(RuntimeError, match=r"torch\.jit\.script.*torch\.compile"):
        torch.jit.script(model)
    with pytest.raises(RuntimeError, match=r"torch\.jit\.script.*torch\.compile"):
        torch.jit.script(SPOPlus(TopK(2)))
    with pytest.raises(RuntimeError, match=r"torch\.jit\.trace.*constant"):
        torch.jit.trace(model, torch.randn(2, 5))


# ------------------------------------------------------------------------------------------------ second order
@pytest.mark.parametrize("name", ["imle", "aimle", "interpolation", "perturbed", "score_function"])
def test_double_backward_is_refused_for_piecewise_constant_backwards(name):
    solver, theta, w = _problem("topk")
    layer = _layer(solver, ESTIMATORS[name])
    x = theta.clone().requires_grad_(True)
    loss = (layer(x) * w).sum()
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    ref = _layer(solver, ESTIMATORS[name])
    x2 = theta.clone().requires_grad_(True)
    (ref(x2) * w).sum().backward()
    assert torch.equal(g.detach(), x2.grad)  # the first-order gradient is unaffected by create_graph
    est = type(layer.estimator).__name__
    # old code: the penalty silently added nothing (the gradient had no graph)
    with pytest.raises(RuntimeError, match=rf"double backward.*estimator={est}.*StraightThrough"):
        (loss + (g**2).sum()).backward()
    layer2 = _layer(solver, ESTIMATORS[name])
    with pytest.raises(RuntimeError, match="double backward"):
        torch.func.grad(lambda t: torch.func.grad(lambda u: (layer2(u) * w).sum())(t).pow(2).sum())(theta)


@pytest.mark.parametrize("samples", [False, True])
@pytest.mark.parametrize("kind", ["topk", "grid"])
def test_straight_through_second_order_equals_the_surrogate_s(kind, samples):
    # L = <w, y>: dL/dtheta = sign * J_r(sign theta)^T w, exactly the gradient of <w, r(sign theta)>; so the
    # gradient penalty ||dL/dtheta||^2 and its derivatives (in theta and in w) equal the smooth surrogate's
    solver, theta, w0 = _problem(kind)
    sign = -1.0 if solver.sense == "min" else 1.0

    def r(t):
        return torch.sigmoid(2 * t) if kind == "grid" else torch.softmax(t / 0.7, -1)

    layer = do.DiscreteLayer(solver, StraightThrough(surrogate=r))
    x, w = theta.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    y = layer(x, return_samples=samples)
    (g,) = torch.autograd.grad((y * (w.unsqueeze(1) if samples else w)).sum(), x, create_graph=True)
    (g**2).sum().backward()
    xr, wr = theta.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    (gr,) = torch.autograd.grad((r(sign * xr) * wr).sum(), xr, create_graph=True)
    (gr**2).sum().backward()
    torch.testing.assert_close(g, gr)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(w.grad, wr.grad)
    assert x.grad.abs().sum() > 0
    # identity straight-through: dL/dtheta = sign * dL/dy; with L = ||y - t||^2 the penalty is 4 ||y - t||^2
    target = torch.ones_like(theta)
    plain = do.DiscreteLayer(solver, StraightThrough())
    x3 = theta.clone().requires_grad_(True)
    y3 = plain(x3)
    (g3,) = torch.autograd.grad(((y3 - target) ** 2).sum(), x3, create_graph=True)
    (g3**2).sum().backward()
    torch.testing.assert_close(x3.grad, 8 * sign * (y3.detach() - target))
    # nested torch.func.grad agrees
    nested = torch.func.grad(lambda t: torch.func.grad(lambda u: (layer(u) * w0).sum())(t).pow(2).sum())(theta)
    torch.testing.assert_close(nested, torch.func.grad(
        lambda t: torch.func.grad(lambda u: (r(sign * u) * w0).sum())(t).pow(2).sum())(theta))


def test_loss_second_order_spo_plus_exact_fenchel_young_refused():
    solver, c = GraphShortestPath.grid(3, 3), 1 + torch.rand(3, 12, generator=_gen(2), dtype=torch.float64)
    pred = (c + 0.5 * torch.randn(c.shape, generator=_gen(3), dtype=c.dtype)).requires_grad_(True)
    scale = torch.tensor(2.0, dtype=c.dtype, requires_grad=True)
    # SPO+ is piecewise linear in pred: Hessian 0 (a.e.); the penalty's derivative flows through dL/dloss only
    loss = SPOPlus(solver)(pred, c) * scale
    (g,) = torch.autograd.grad(loss, pred, create_graph=True)
    (g**2).sum().backward()
    torch.testing.assert_close(scale.grad, 2 * (g.detach() ** 2).sum() / scale.detach())  # d/ds of s^2 |d|^2
    assert pred.grad is None or not pred.grad.any()
    fy = FenchelYoungLoss(solver, seed=0, samples=3)
    x = c.clone().requires_grad_(True)
    loss = fy(x, solver.solve(c))
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward.*FenchelYoungLoss"):
        (loss + (g**2).sum()).backward()


# ------------------------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["imle", "perturbed", "interpolation", "straight_through"])
def test_half_precision_is_computed_in_float32_and_returned_in_the_input_dtype(name, dtype):
    # old code: bfloat16 on a host solver -> TypeError "Got unsupported ScalarType BFloat16"
    costs = (1 + 3 * torch.rand(3, 4, 4, generator=_gen(0))).to(dtype)
    w = torch.randn(3, 4, 4, generator=_gen(1))
    x = costs.clone().requires_grad_(True)
    y = _layer(GridShortestPath(), ESTIMATORS[name])(x)
    (y * w.to(dtype)).sum().backward()
    assert y.dtype == dtype and x.grad.dtype == dtype
    x32 = costs.float().requires_grad_(True)  # the same float32 computation, cast at the end
    y32 = _layer(GridShortestPath(), ESTIMATORS[name])(x32)
    (y32 * w.to(dtype).float()).sum().backward()
    assert torch.equal(y, y32.to(dtype)) and torch.equal(x.grad, x32.grad.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_losses(dtype):
    solver = GraphShortestPath.grid(3, 3)
    c = (1 + torch.rand(3, 12, generator=_gen(4))).to(dtype)
    y_true = solver.solve(c.float().flip(0))
    for loss in (FenchelYoungLoss(solver, seed=0, samples=3), SPOPlus(solver)):
        x = c.clone().requires_grad_(True)
        target = y_true.to(dtype) if isinstance(loss, FenchelYoungLoss) else c
        value = loss(x, target)
        value.backward()
        assert value.dtype == dtype and x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
    assert regret(solver, c, y_true.to(dtype)).dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.complex64, torch.int32])
def test_unsupported_dtypes_are_value_errors_naming_the_argument(dtype):
    theta = torch.zeros(2, 3).to(dtype)
    with pytest.raises(ValueError, match="theta must have"):
        do.DiscreteLayer(TopK(1), IMLE())(theta)
    with pytest.raises(ValueError, match="theta must have"):
        FenchelYoungLoss(TopK(1))(theta, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="pred must have"):
        SPOPlus(TopK(1))(theta, torch.zeros(2, 3))


# ------------------------------------------------------------------------------------------------ NaN in dL/dy
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_nan_upstream_gradient_propagates_to_its_instance_only(name):
    # old code (I-MLE): ValueError "theta must be finite" -- theta was fine, the loss was not. Now the instances
    # whose dL/dy is non-finite get a NaN gradient (as any torch op; a float16 GradScaler then skips the step),
    # the other instances get exactly the gradient they get alone, and the first time says so once.
    x = torch.randn(3, 5)
    bad = torch.ones(3, 5)
    bad[1, 2] = float("nan")
    bad[0, 0] = float("inf")
    clean = bad.clone()
    clean[:2] = 1.0

    def grad_of(weights, **kw):
        t = x.clone().requires_grad_(True)
        (_layer(TopK(2), ESTIMATORS[name])(t) * weights).sum().backward()
        return t.grad

    with pytest.warns(RuntimeWarning, match=r"incoming gradient \(dL/dy\) of DiscreteLayer.*2 of 3 instances"):
        g = grad_of(bad)
    assert torch.isnan(g[:2]).all()
    assert torch.equal(g[2], grad_of(clean)[2])
    f = torch.func.grad(lambda t: (_layer(TopK(2), ESTIMATORS[name])(t) * bad).sum())(x)
    assert torch.isnan(f[:2]).all() and torch.equal(f[2], g[2])


def test_nan_upstream_gradient_of_the_losses_propagates_to_its_instance():
    solver = GraphShortestPath.grid(3, 3)
    c = 1 + torch.rand(2, 12, generator=_gen(5))
    for loss in (FenchelYoungLoss(solver, seed=0, samples=2, reduction="none"), SPOPlus(solver, reduction="none")):
        x = c.clone().requires_grad_(True)
        value = loss(x, solver.solve(c) if isinstance(loss, FenchelYoungLoss) else c)
        (value * torch.tensor([1.0, float("nan")])).sum().backward()
        assert torch.isfinite(x.grad[0]).all() and torch.isnan(x.grad[1]).all(), type(loss).__name__


# ------------------------------------------------------------------------------------------------ extreme values
@pytest.mark.parametrize("name", ["perturbed", "score_function"])
def test_func_grad_and_vmap_with_a_huge_upstream_gradient_equal_the_scaled_eager_gradient(name):
    """dL/dy near 1.8e308 under torch.func: the per-sample terms overflowed (NaN); the layer's recomputation on
    scaled dL/dy works on functorch's tensors too and gives exactly 2**1023 times the gradient for dL/dy / 2**1023."""
    make = {"perturbed": lambda: PerturbedOptimizer(scale=64.0, samples=4),
            "score_function": lambda: ScoreFunction(scale=64.0, samples=4)}[name]
    theta = torch.rand(3, 5, generator=_gen(0), dtype=torch.float64) + 100.0
    g = torch.tensor([1.5, 1.25, -0.5, 1.0, -1.75], dtype=torch.float64).expand(3, 5) * 2.0**1023

    def grad_of(gg, transform):
        layer = do.DiscreteLayer(TopK(2), make(), seed=1)
        if transform == "grad":
            return torch.func.grad(lambda t: (layer(t) * gg).sum())(theta)
        if transform == "vmap":  # one vmapped element: the same noise as the plain forward
            fn = torch.func.vmap(torch.func.grad(lambda t: (layer(t) * gg).sum()), randomness="different")
            return fn(theta.unsqueeze(0))[0]
        x = theta.clone().requires_grad_(True)
        layer(x).backward(gg)
        return x.grad

    ref = grad_of(g / 2.0**1023, "eager") * 2.0**1023
    assert torch.isfinite(ref).all() and bool((ref != 0).any())
    for transform in ("eager", "grad", "vmap"):
        torch.testing.assert_close(grad_of(g, transform), ref, rtol=0, atol=0)


def test_half_precision_gradient_beyond_float16_is_inf_for_grad_scaler():
    """The layer's finiteness check looks at the float32 estimate: a finite float32 gradient that exceeds float16
    comes back as inf (what GradScaler detects and skips), not as a ValueError."""
    x = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float16, requires_grad=True)
    y = do.DiscreteLayer(TopK(2), Interpolation(lam=1e-5))(x)
    y.backward(torch.tensor([[6e4, -6e4, 6e4, -6e4]], dtype=torch.float16))  # (y - y') / 1e-5 = 1e5 > 65504
    assert x.grad.dtype == torch.float16 and torch.isinf(x.grad).any() and not torch.isnan(x.grad).any()
    with pytest.raises(ValueError, match="lam=1e-300 does not fit float32"):  # what cannot work in float32
        do.DiscreteLayer(TopK(2), IMLE(lam=1e-300))(x)


# ------------------------------------------------------------------------------------------------ docstrings
@pytest.mark.parametrize("obj", [do.DiscreteLayer, do.discrete_layer, do.score_function_loss, HammingLoss, regret,
                                 FenchelYoungLoss, SPOPlus])
def test_docstring_examples_run(obj):
    assert len(obj.__doc__) > 400 and "Example" in obj.__doc__
    tests = doctest.DocTestFinder(recurse=False).find(obj, globs={"torch": torch, "do": do, **vars(do.losses)})
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0 and runner.tries > 0
