"""The common calling convention: surrogate.backward() yields the estimate, n_evals counts f's evaluations,
aux_loss trains only auxiliary parameters; learned baselines and control variates actually learn; bad inputs raise
ValueError naming the argument."""

from __future__ import annotations

import math

import pytest
import torch
from st_problems import bernoulli, categorical, ksubset
from torch import distributions as D
from torch import nn

import discreteopt.stochastic as st


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


B3, C23 = bernoulli(3), categorical(2, 3)

# name -> (problem, call(f, logits, generator), expected n_evals per problem)
CALLS = {
    "reinforce": (B3, lambda f, x, g: st.reinforce(f, x, samples=3, generator=g), 3),
    "rloo": (C23, lambda f, x, g: st.rloo(f, x, family=C23.family, samples=4, generator=g), 4),
    "rao_blackwell": (C23, lambda f, x, g: st.rao_blackwell(f, x, family=C23.family, samples=2, generator=g),
                      2 * (1 + 2 * 2)),
    "measure_valued": (B3, lambda f, x, g: st.measure_valued(f, x, samples=2, generator=g), 2 * (1 + 3)),
    "arm": (C23, lambda f, x, g: st.arm(f, x, family=C23.family, samples=3, generator=g), 6),
    "disarm": (B3, lambda f, x, g: st.disarm(f, x, samples=3, generator=g), 6),
    "rebar": (B3, lambda f, x, g: st.rebar(f, x, samples=2, generator=g), 6),
    "relax": (C23, lambda f, x, g: st.relax(f, x, st.NeuralControlVariate.mlp(6), family=C23.family, samples=2,
                                            generator=g), 6),
    "vimco": (B3, lambda f, x, g: st.vimco(f, x, samples=3, generator=g), 3),
    "concrete": (C23, lambda f, x, g: st.concrete(f, x, family=C23.family, tau=0.5, samples=2, generator=g), 2),
    "evolution_strategies": (B3, lambda f, x, g: st.evolution_strategies(f, x, samples=3, generator=g), 6),
}


class Counter:
    def __init__(self, f):
        self.f, self.points = f, 0

    def __call__(self, z):
        self.points += z.shape[0]
        return self.f(z)


@pytest.mark.parametrize("name", list(CALLS))
def test_surrogate_backward_gives_the_estimate_through_an_upstream_module(name):
    prob, call, n_evals = CALLS[name]
    b = 5
    torch.manual_seed(0)
    net = nn.Linear(4, prob.logits[0].numel())
    x = torch.randn(b, 4)
    logits = net(x).reshape(b, *prob.logits.shape[1:])  # [B, *E], produced by a module
    logits.retain_grad()
    f = Counter(prob.f)
    est = call(f, logits, gen(1))
    assert est.n_evals == n_evals and f.points == n_evals  # per problem: f sees [S, B, *E] tensors
    assert est.surrogate.shape == () and est.per_item.shape == (b,)
    assert torch.allclose(est.surrogate, est.per_item.sum())
    est.surrogate.backward()
    if est.grad is not None:
        assert torch.allclose(logits.grad, est.grad, atol=1e-6)
    assert net.weight.grad is not None and float(net.weight.grad.abs().sum()) > 0


def test_surrogate_value_estimates_the_expectation():
    prob = C23
    value = float(st.exact.expectation(prob.f, prob.logits, prob.family))
    for est in (st.reinforce(prob.f, prob.replicas(20000), family=prob.family, generator=gen(2)),
                st.disarm(prob.f, prob.replicas(20000), family=prob.family, generator=gen(3))):
        v = est.per_item.detach()
        assert abs(float(v.mean()) - value) < 4.5 * float(v.std()) / math.sqrt(v.numel())


def test_aux_loss_never_reaches_the_parameters():
    prob = B3
    x = prob.replicas(8).requires_grad_(True)
    cv = st.ConcreteControlVariate()
    est = st.rebar(prob.f, x, cv, generator=gen(4))
    est.aux_loss.backward()
    assert x.grad is None and cv.eta.grad is not None and cv.log_tau.grad is not None
    lin = nn.Linear(3, 1)
    est = st.reinforce(prob.f, x, samples=2, baseline=st.LearnedBaseline(lambda p: lin(p)[:, 0]), generator=gen(5))
    est.aux_loss.backward()
    assert x.grad is None and lin.weight.grad is not None


def test_rebar_training_eta_and_tau_reduces_variance():
    """150 Adam steps on aux_loss (the gradient of the estimate's second moment) cut REBAR's variance by >= 30%
    (measured ~50% on this problem)."""
    prob = bernoulli(5)
    cv = st.ConcreteControlVariate(eta=1.0, tau=0.5)
    g = gen(6)

    def variance():
        return float(st.rebar(prob.f, prob.replicas(20000), cv, generator=g).grad.var(0).sum())

    before = variance()
    opt = torch.optim.Adam(cv.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        st.rebar(prob.f, prob.replicas(128), cv, generator=g).aux_loss.backward()
        opt.step()
    after = variance()
    assert after < 0.7 * before, (before, after)


def test_relax_network_learns_a_control_variate():
    """RELAX with a network-only control variate (zero-initialised output: it starts as plain REINFORCE) must cut
    the variance by >= 30% after 60 steps on aux_loss."""
    prob = bernoulli(3)
    torch.manual_seed(1)
    cv = st.NeuralControlVariate.mlp(3, hidden=16, concrete=False)
    g = gen(7)

    def variance():
        return float(st.relax(prob.f, prob.replicas(20000), cv, generator=g).grad.var(0).sum())

    before = variance()
    opt = torch.optim.Adam(cv.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        st.relax(prob.f, prob.replicas(128), cv, generator=g).aux_loss.backward()
        opt.step()
    after = variance()
    assert after < 0.7 * before, (before, after)


def test_learned_and_moving_average_baselines_track_the_expectation():
    prob = B3
    value = float(st.exact.expectation(prob.f, prob.logits))
    bias = nn.Parameter(torch.zeros(()))
    learned = st.LearnedBaseline(lambda p: bias.expand(p.shape[0]))
    ma = st.MovingAverage(decay=0.9)
    opt = torch.optim.SGD([bias], lr=0.002)  # aux_loss sums over the 64 problems
    g = gen(8)
    for _ in range(200):
        est = st.reinforce(prob.f, prob.replicas(64), samples=2, baseline=learned, generator=g)
        opt.zero_grad()
        est.aux_loss.backward()
        opt.step()
        st.reinforce(prob.f, prob.replicas(64), samples=2, baseline=ma, generator=g)
    assert abs(float(bias.detach()) - value) < 0.05 and abs(ma.value - value) < 0.05


def test_ksubset_estimators_run_under_the_convention():
    prob = ksubset(6, 3)
    z = st.KSubset(3).sample(prob.replicas(4), 5, gen(9))
    assert torch.equal(z.sum(-1), torch.full((5, 4), 3.0))
    est = st.rloo(prob.f, prob.replicas(4), family=prob.family, samples=5, generator=gen(9))
    assert est.n_evals == 5 and torch.equal(est.samples, z)  # same generator state -> same samples


# ------------------------------------------------------------------------------------------------ bad inputs
def f3(z):
    return z.flatten(2).sum(-1)


GOOD = torch.zeros(2, 3)
BAD_CALLS = [
    (lambda: st.reinforce(f3, torch.tensor([[float("nan"), 0, 0]])), "logits must be finite"),
    (lambda: st.reinforce(f3, torch.zeros(3)), r"logits must have shape"),
    (lambda: st.reinforce(f3, torch.zeros(2, 3, dtype=torch.long)), "floating-point"),
    (lambda: st.reinforce(f3, GOOD, samples=0), "samples must be an integer >= 1"),
    (lambda: st.reinforce(f3, GOOD, samples=2.0), "samples"),
    (lambda: st.reinforce(f3, GOOD, samples=True), "samples"),
    (lambda: st.rloo(f3, GOOD, samples=1), "samples must be an integer >= 2"),
    (lambda: st.reinforce(f3, GOOD, samples=1, baseline=st.LeaveOneOut()), "samples must be >= 2"),
    (lambda: st.reinforce(f3, GOOD, family="bernoulli"), "family must be"),
    (lambda: st.reinforce(f3, GOOD, baseline=3), "baseline must be"),
    (lambda: st.reinforce(lambda z: z.sum(-1)[..., None], GOOD), r"f must map samples"),
    (lambda: st.reinforce(lambda z: z.sum(-1) / 0.0, GOOD), "f returned NaN or inf"),
    (lambda: st.reinforce(lambda z: 1.0, GOOD), "f must return a tensor"),
    (lambda: st.reinforce(3, GOOD), "f must be callable"),
    (lambda: st.reinforce(f3, GOOD, generator=3), "generator must be a torch.Generator"),
    (lambda: st.reinforce(f3, torch.zeros(2, 1, 1), family=st.Categorical()), "K >= 2"),
    (lambda: st.arm(f3, GOOD, family=st.KSubset(1)), "family must be Bernoulli or Categorical for arm"),
    (lambda: st.rao_blackwell(f3, GOOD, family=st.KSubset(1)), "not factorised"),
    (lambda: st.rebar(f3, GOOD, family=st.KSubset(1)), "family must be Bernoulli or Categorical"),
    (lambda: st.relax(f3, GOOD, "net"), "control_variate must be callable"),
    (lambda: st.relax(f3, GOOD, lambda z, fam, f: z.sum(-1)[..., None]), r"control_variate must return \[S, B\]"),
    (lambda: st.ConcreteControlVariate(tau=0.0), "tau must be a positive"),
    (lambda: st.MovingAverage(decay=1.0), "decay must be in"),
    (lambda: st.ControlVariate(f3, f3, c=float("nan")), "c must be None"),
    (lambda: st.concrete(f3, GOOD, tau=-1.0), "tau must be a positive"),
    (lambda: st.concrete(f3, GOOD, family=st.KSubset(1)), "family must be Bernoulli or Categorical for concrete"),
    (lambda: st.gumbel_softmax(GOOD, tau=0), "tau must be a positive"),
    (lambda: st.gumbel_softmax(GOOD, dim=2), "dim must be an integer"),
    (lambda: st.gumbel_softmax(torch.zeros(3, 1)), "at least 2 classes"),
    (lambda: st.gumbel_sigmoid(torch.tensor([float("inf")])), "logits must be finite"),
    (lambda: st.l2x_subset(f3, GOOD, k=4), r"k must be an integer in \[1, n=3\]"),
    (lambda: st.softsub(f3, torch.zeros(2, 3, 1), k=1), r"scores must have shape \[B, n\]"),
    (lambda: st.relaxed_topk_softsub(GOOD, 1, tau=float("nan")), "tau must be a positive"),
    (lambda: st.anneal_tau(-1), "step must be a non-negative integer"),
    (lambda: st.anneal_tau(0, rate=-1.0), "rate must be"),
    (lambda: st.TemperatureSchedule(every=0), "every must be a positive integer"),
    (lambda: st.evolution_strategies(f3, GOOD, scale=0.0), "scale must be a positive"),
    (lambda: st.evolution_strategies(f3, GOOD, baseline=st.LeaveOneOut()), "baseline must be None with antithetic"),
    (lambda: st.pathwise(f3, D.Bernoulli(probs=torch.full((2, 3), 0.5))), "has no rsample"),
    (lambda: st.pathwise(f3, D.Normal(0.0, 1.0)), "batch dim first"),
    (lambda: st.pathwise(f3, "normal"), "distribution must be a torch.distributions.Distribution"),
    (lambda: st.measure_valued_gaussian(f3, GOOD, torch.zeros(2, 4)), "mean and log_std must both be"),
    (lambda: st.vimco(f3, GOOD, samples=1), "samples must be an integer >= 2"),
]


@pytest.mark.parametrize(("call", "match"), BAD_CALLS, ids=[m for _, m in BAD_CALLS])
def test_bad_inputs_raise_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_check_unbiased_rejects_bad_shapes():
    with pytest.raises(ValueError, match="N >= 2"):
        st.check_unbiased(torch.zeros(1, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="target must have shape"):
        st.check_unbiased(torch.zeros(5, 3), torch.zeros(4))


# ------------------------------------------------------------------------------------------------ f's output dtype
def _count_ones(z):  # integer-valued f on discrete samples: [S, B, *E] -> [S, B] (int64)
    return (z.flatten(2) > 0.5).sum(-1)


def _positive(x):  # integer-valued f on continuous points
    return (x > 0).sum(-1)


def _reached_two(z):  # bool-valued f
    return z.flatten(2).sum(-1) >= 2


MU3 = torch.tensor([[0.3, -0.5, 1.0], [0.1, 0.2, -0.3]])
VALUE_ONLY = {  # estimators that use f's values only: integer and bool outputs are cast to the logits' dtype
    "reinforce": lambda f, x, g: st.reinforce(f, x, samples=3, baseline=st.OptimalConstant(), generator=g),
    "rloo": lambda f, x, g: st.rloo(f, x, samples=3, generator=g),
    "vimco": lambda f, x, g: st.vimco(f, x, samples=3, generator=g),
    "rao_blackwell": lambda f, x, g: st.rao_blackwell(f, x, samples=2, generator=g),
    "measure_valued": lambda f, x, g: st.measure_valued(f, x, samples=2, generator=g),
    "arm": lambda f, x, g: st.arm(f, x, samples=2, generator=g),
    "disarm": lambda f, x, g: st.disarm(f, x, family=st.Categorical(), samples=2, generator=g),
    "relax_net": lambda f, x, g: st.relax(f, x, st.NeuralControlVariate.mlp(3, concrete=False).to(x.dtype),
                                          generator=g),
    "evolution_strategies": lambda f, x, g: st.evolution_strategies(f, x, samples=2, generator=g),
    "measure_valued_gaussian": lambda f, x, g: st.measure_valued_gaussian(f, x, torch.zeros_like(x), generator=g)[0],
}
CONTINUOUS = {"evolution_strategies", "measure_valued_gaussian"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("out", ["int64", "bool"])
@pytest.mark.parametrize("name", list(VALUE_ONLY))
def test_integer_and_bool_outputs_are_cast_to_the_parameters_dtype(name, out, dtype):
    """One rule: an estimator that needs only f's values accepts integer/bool outputs (counts, indicators) as if f
    had returned them as floats of the logits' dtype -- same samples, same estimate (the old code raised a raw torch
    error in reinforce, rao_blackwell and measure_valued, and accepted them in arm and vimco)."""
    torch.manual_seed(0)
    x = (MU3 if name in CONTINUOUS else torch.tensor([[0.4, -0.8, 1.2], [0.0, 2.0, -1.0]])).to(dtype)
    if name == "disarm":
        x = x.reshape(2, 1, 3)
    f = _positive if name in CONTINUOUS else (_count_ones if out == "int64" else _reached_two)
    if name in CONTINUOUS and out == "bool":
        f = lambda x: x[..., 0] > 0  # noqa: E731
    est = VALUE_ONLY[name](f, x, gen(3))
    torch.manual_seed(0)
    ref = VALUE_ONLY[name](lambda z: f(z).to(dtype), x, gen(3))
    assert est.grad.dtype == dtype and est.surrogate.dtype == dtype
    assert torch.equal(est.grad, ref.grad) and torch.equal(est.per_item, ref.per_item)


THROUGH_F = {  # estimators that differentiate through f: an integer/bool output would give a zero gradient
    "pathwise": lambda f: st.pathwise(f, D.Normal(MU3.clone().requires_grad_(True), 1.0)),
    "concrete": lambda f: st.concrete(f, torch.zeros(2, 3), tau=0.5, generator=gen()),
    "concrete_hard": lambda f: st.concrete(f, torch.zeros(2, 3), hard=True, generator=gen()),
    "l2x_subset": lambda f: st.l2x_subset(f, torch.zeros(2, 3), k=2, generator=gen()),
    "softsub": lambda f: st.softsub(f, torch.zeros(2, 3), k=2, generator=gen()),
    "rebar": lambda f: st.rebar(f, torch.zeros(2, 3), generator=gen()),
}


@pytest.mark.parametrize("out", ["int64", "bool"])
@pytest.mark.parametrize("name", list(THROUGH_F))
def test_integer_outputs_are_rejected_where_the_estimator_differentiates_through_f(name, out):
    f = _positive if out == "int64" else (lambda x: x[..., 0] > 0.5)
    with pytest.raises(ValueError, match=r"differentiates through f and an integer or bool output carries no grad"):
        THROUGH_F[name](f)


def test_complex_outputs_are_rejected():
    with pytest.raises(ValueError, match="f must return real values"):
        st.reinforce(lambda z: z.sum(-1).to(torch.complex64), GOOD)


def test_pathwise_names_the_distribution_when_its_samples_are_not_finite():
    """A NaN produced by the distribution (here a NaN location, with argument validation off) is reported as the
    distribution's, not as f's; f is not even called."""
    calls = []

    def f(x):
        calls.append(1)
        return x.sum(-1)

    dist = D.Normal(torch.tensor([[0.0, float("nan")]]), 1.0, validate_args=False)
    with pytest.raises(ValueError, match=r"distribution Normal.rsample returned 1 NaN or inf values"):
        st.pathwise(f, dist)
    assert not calls
    with pytest.raises(ValueError, match="f returned NaN or inf values"):  # and a NaN from f is still f's
        st.pathwise(lambda x: x.sum(-1) / 0.0, D.Normal(torch.zeros(2, 3), 1.0))


def test_pathwise_is_not_unbiased_for_a_step_function():
    """The docstring's condition is "differentiable or Lipschitz along the path", not "differentiable almost
    everywhere": a step function is the latter, and its pathwise estimate is exactly 0 while
    d/dmu P(x > 0) = 1/sqrt(2 pi) ~ 0.399."""
    mu = torch.zeros(1000, 1, requires_grad=True)
    est = st.pathwise(lambda x: (x[..., 0] > 0).to(x.dtype) + 0.0 * x[..., 0], D.Normal(mu, 1.0), generator=gen(5))
    est.surrogate.backward()
    assert torch.equal(mu.grad, torch.zeros_like(mu))
    doc = st.pathwise.__doc__ + __import__("discreteopt.stochastic.pathwise", fromlist=["pathwise"]).__doc__
    assert "almost everywhere\" is *not* enough" in doc and "Lipschitz" in doc
