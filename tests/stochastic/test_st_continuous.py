"""Continuous parameters: evolution strategies (on the Gaussian-smoothed objective), pathwise, measure-valued Gaussian.

Targets are exact: Gauss-Hermite quadrature (exact for these polynomial f) of E[f(mu + scale eps)], differentiated
with autograd; R estimates are drawn in one batched call and checked with ``assert_unbiased`` (4.5 standard errors).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

import discreteopt.stochastic as st
from discreteopt.stochastic import exact

R = 20000
MU = torch.tensor([[0.3, -0.5, 1.0]])
COEF = torch.tensor([1.0, -2.0, 0.5])


def poly(x):
    """A non-quadratic polynomial (degree 3 and a coupling term): smoothing changes its gradient."""
    return (COEF * x**3).sum(-1) + x[..., 0] * x[..., 1] - (x**2).sum(-1)


def smoothed_grad(mean, log_std):
    m = mean.clone().requires_grad_(True)
    s = log_std.clone().requires_grad_(True)
    gm, gs = torch.autograd.grad(exact.gaussian_expectation(poly, m, s).sum(), (m, s))
    return gm[0], gs[0]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("antithetic", [True, False])
@pytest.mark.parametrize("scale", [0.1, 0.5])
def test_evolution_strategies_is_unbiased_for_the_smoothed_objective(antithetic, scale):
    target, _ = smoothed_grad(MU, torch.full_like(MU, math.log(scale)))
    x = MU.expand(R, 3).clone()
    est = st.evolution_strategies(poly, x, scale=scale, samples=2, antithetic=antithetic, generator=gen(int(scale * 10)))
    assert est.n_evals == (4 if antithetic else 2)
    st.assert_unbiased(est.grad, target)
    grad_f = (3 * COEF * MU**2 - 2 * MU + torch.stack([MU[:, 1], MU[:, 0], torch.zeros(1)], -1))[0]
    if scale == 0.5:  # and the smoothed gradient really differs from grad f (3 c scale^2 for the cubic terms)
        assert (target - grad_f).abs().max() > 0.3


@pytest.mark.parametrize("baseline", [st.LeaveOneOut(), st.OptimalConstant(), st.MovingAverage(init=0.0)],
                         ids=["loo", "optimal", "moving_average"])
def test_evolution_strategies_with_baselines(baseline):
    target, _ = smoothed_grad(MU, torch.full_like(MU, math.log(0.3)))
    est = st.evolution_strategies(poly, MU.expand(R, 3).clone(), scale=0.3, samples=4, antithetic=False,
                                  baseline=baseline, generator=gen(3))
    st.assert_unbiased(est.grad, target)


def test_antithetic_es_has_lower_variance_than_plain_es():
    x = MU.expand(R, 3).clone()
    v_anti = est_var(st.evolution_strategies(poly, x, scale=0.2, samples=1, generator=gen(1)))
    v_plain = est_var(st.evolution_strategies(poly, x, scale=0.2, samples=2, antithetic=False, generator=gen(1)))
    assert v_anti < 0.5 * v_plain  # same 2 evaluations: the mirrored pair cancels the even part of f (3.6x here)


def est_var(est):
    return float(est.grad.var(0).sum())


def test_pathwise_normal_matches_quadrature():
    log_std = torch.tensor([[-0.5, 0.0, -1.0]])
    tm, ts = smoothed_grad(MU, log_std)
    mu = MU.expand(R, 3).clone().requires_grad_(True)
    ls = log_std.expand(R, 3).clone().requires_grad_(True)
    est = st.pathwise(poly, D.Normal(mu, ls.exp()), samples=1, generator=gen(4))
    est.surrogate.backward()
    assert est.n_evals == 1
    st.assert_unbiased(mu.grad, tm)
    st.assert_unbiased(ls.grad, ts)


def test_pathwise_generator_is_reproducible_and_leaves_the_global_rng_alone():
    dist = D.Normal(torch.zeros(2, 3), torch.ones(2, 3))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = st.pathwise(lambda x: x.sum(-1), dist, samples=3, generator=gen(9))
    after = torch.rand(1)
    b = st.pathwise(lambda x: x.sum(-1), dist, samples=3, generator=gen(9))
    assert torch.equal(a.samples, b.samples)
    assert torch.equal(before, after)


def test_measure_valued_gaussian_matches_quadrature():
    log_std = torch.tensor([[-0.5, 0.0, -1.0]])
    tm, ts = smoothed_grad(MU, log_std)
    em, es = st.measure_valued_gaussian(poly, MU.expand(R, 3).clone(), log_std.expand(R, 3).clone(), generator=gen(5))
    assert em.n_evals == 1 + 3 * 3
    st.assert_unbiased(em.grad, tm)
    st.assert_unbiased(es.grad, ts)


def test_evolution_strategies_sigma_is_a_deprecated_alias_of_scale():
    x = MU.expand(8, 3).clone()
    with pytest.warns(DeprecationWarning, match="scale="):
        old = st.evolution_strategies(poly, x, sigma=0.3, samples=2, generator=gen(4))
    new = st.evolution_strategies(poly, x, scale=0.3, samples=2, generator=gen(4))
    assert torch.equal(old.grad, new.grad) and new.info["scale"] == 0.3
    with pytest.raises(ValueError, match="pass scale= only"):
        st.evolution_strategies(poly, x, scale=0.3, sigma=0.3)
