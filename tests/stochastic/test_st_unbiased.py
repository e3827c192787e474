"""Unbiased estimators: the mean of R independent estimates matches the exact gradient (enumeration).

Every estimate is drawn in one batched call (the batch dim holds R replicas of the same problem), and
``assert_unbiased`` checks ``|mean - exact| <= 4.5 * stderr + 1e-6`` for every coordinate, with ``stderr`` the sample
std of the R estimates over sqrt(R) (a correct estimator fails one coordinate with probability ~7e-6; seeds are fixed).
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch
from st_problems import bernoulli, categorical, ksubset
from torch import nn

import discreteopt.stochastic as st
from discreteopt.stochastic import exact

R = 6000
PROBLEMS = {p.name: p for p in (bernoulli(3), bernoulli(7), categorical(2, 3), categorical(2, 5), ksubset(6, 3))}
FACTORISED = ["bernoulli3", "bernoulli7", "categorical2x3", "categorical2x5"]


def _taylor_cv(problem, c=None):
    """Control variate ``h(z) = <grad f(E z), z>`` (first-order Taylor expansion of f around the mean, up to a const)."""
    with torch.enable_grad():
        mu = problem.family.mean(problem.logits)[None].clone().requires_grad_(True)  # [1, 1, *E]
        (slope,) = torch.autograd.grad(problem.f(mu).sum(), mu)
    slope = slope[0, 0]  # [*E]
    fam = problem.family

    def h(z):
        return (z * slope).flatten(2).sum(-1)  # [S, B]

    def h_mean(p):
        return (fam.mean(p) * slope).flatten(1).sum(-1)  # [B]

    return st.ControlVariate(h, h_mean, c=c)


def _learned(problem):
    dim = problem.logits[0].numel()
    lin = nn.Linear(dim, 1)
    with torch.no_grad():
        lin.bias.fill_(1.0)
    return st.LearnedBaseline(lambda p: lin(p.flatten(1))[:, 0])


def _relax_net(problem, concrete):
    dim = problem.logits[0].numel()
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 1))  # random (non-zero) weights
    return st.NeuralControlVariate(net, st.ConcreteControlVariate(eta=0.7, tau=0.4) if concrete else None)


ESTIMATORS = {
    # name: (families it supports, call(problem, logits, generator) -> Estimate)
    "reinforce": (None, lambda p, x, g: st.reinforce(p.f, x, family=p.family, samples=1, generator=g)),
    "reinforce+moving_average": (None, lambda p, x, g: st.reinforce(
        p.f, x, family=p.family, samples=2, baseline=st.MovingAverage(init=2.0), generator=g)),
    "reinforce+leave_one_out": (None, lambda p, x, g: st.reinforce(
        p.f, x, family=p.family, samples=3, baseline=st.LeaveOneOut(), generator=g)),
    "reinforce+optimal_constant": (None, lambda p, x, g: st.reinforce(
        p.f, x, family=p.family, samples=3, baseline=st.OptimalConstant(), generator=g)),
    "reinforce+learned": (None, lambda p, x, g: st.reinforce(
        p.f, x, family=p.family, samples=2, baseline=_learned(p), generator=g)),
    "reinforce+control_variate": (None, lambda p, x, g: st.reinforce(
        p.f, x, family=p.family, samples=4, baseline=_taylor_cv(p), generator=g)),
    "reinforce+control_variate_fixed_c": (None, lambda p, x, g: st.reinforce(
        p.f, x, family=p.family, samples=1, baseline=_taylor_cv(p, c=0.8), generator=g)),
    "rloo": (None, lambda p, x, g: st.rloo(p.f, x, family=p.family, samples=4, generator=g)),
    "rao_blackwell": (FACTORISED, lambda p, x, g: st.rao_blackwell(p.f, x, family=p.family, generator=g)),
    "measure_valued": (FACTORISED, lambda p, x, g: st.measure_valued(p.f, x, family=p.family, generator=g)),
    "arm": (FACTORISED, lambda p, x, g: st.arm(p.f, x, family=p.family, samples=1, generator=g)),
    "disarm": (FACTORISED, lambda p, x, g: st.disarm(p.f, x, family=p.family, samples=1, generator=g)),
    "rebar": (FACTORISED, lambda p, x, g: st.rebar(p.f, x, family=p.family, generator=g)),
    "rebar_tuned": (FACTORISED, lambda p, x, g: st.rebar(
        p.f, x, st.ConcreteControlVariate(eta=0.6, tau=0.2), family=p.family, generator=g)),
    "relax_net": (FACTORISED, lambda p, x, g: st.relax(p.f, x, _relax_net(p, False), family=p.family, generator=g)),
    "relax_net+concrete": (FACTORISED, lambda p, x, g: st.relax(
        p.f, x, _relax_net(p, True), family=p.family, generator=g)),
}

CASES = [(e, p) for e, (fams, _) in ESTIMATORS.items() for p in PROBLEMS if fams is None or p in fams]


@pytest.mark.parametrize(("estimator", "problem"), CASES, ids=[f"{e}-{p}" for e, p in CASES])
def test_mean_matches_exact_gradient(estimator, problem):
    prob = PROBLEMS[problem]
    gen = torch.Generator().manual_seed(zlib.crc32(f"{estimator}-{problem}".encode()))
    est = ESTIMATORS[estimator][1](prob, prob.replicas(R), gen)
    assert est.grad.shape == (R, *prob.logits.shape[1:])
    st.assert_unbiased(est.grad, prob.exact_grad())


@pytest.mark.parametrize("k", [2, 4])
def test_vimco_matches_exact_multisample_gradient(k):
    logits = torch.tensor([[0.4, -0.8, 1.2]])

    def log_w(z):
        return -2.0 * ((z - torch.tensor([0.2, 0.9, 0.5])) ** 2).sum(-1) + z[..., 0] * z[..., 2]

    th = logits.clone().requires_grad_(True)
    bound = exact.multisample_expectation(log_w, th, None, k, lambda v: v.logsumexp(0) - math.log(k))
    (target,) = torch.autograd.grad(bound.sum(), th)
    est = st.vimco(log_w, logits.expand(20000, 3).clone(), samples=k, generator=torch.Generator().manual_seed(k))
    st.assert_unbiased(est.grad, target[0])
    # the surrogate's value is the bound itself: its mean matches E[L] within the standard error
    assert abs(float(est.per_item.detach().mean()) - float(bound.detach())) < 4.5 * float(est.per_item.detach().std()) / math.sqrt(20000)


def test_check_unbiased_detects_a_biased_estimator():
    """The statistical check has power: a baseline that uses the sample's own value (biased) is rejected."""

    class OwnValue:  # b_i = f(z_i) / 2: depends on z_i, halves the gradient
        def __call__(self, f_values, scores, params, z):
            return st.BaselineOutput(f_values / 2)

    prob = PROBLEMS["bernoulli3"]
    est = st.reinforce(prob.f, prob.replicas(R), samples=1, baseline=OwnValue(),
                       generator=torch.Generator().manual_seed(0))
    res = st.check_unbiased(est.grad, prob.exact_grad())
    assert not res.ok and res.max_z > 10


def test_variance_orderings_on_the_bernoulli_problem():
    """The literature's orderings at equal evaluations (4 per estimate): RLOO < REINFORCE, DisARM <= ARM."""
    prob = PROBLEMS["bernoulli7"]
    x = prob.replicas(R)

    def var(est):
        return float(est.grad.var(0).sum())

    g = torch.Generator().manual_seed(1)
    v_reinforce = var(st.reinforce(prob.f, x, samples=4, generator=g))
    v_rloo = var(st.rloo(prob.f, x, samples=4, generator=g))
    v_arm = var(st.arm(prob.f, x, samples=2, generator=g))
    v_disarm = var(st.disarm(prob.f, x, samples=2, generator=g))
    assert v_rloo < 0.5 * v_reinforce
    assert v_disarm < v_arm
