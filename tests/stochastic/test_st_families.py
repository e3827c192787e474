"""Families: samplers, log-probabilities, means, and the reparameterised conditional z~ | b used by REBAR/RELAX."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import discreteopt.stochastic as st

FAMILIES = {
    "bernoulli": (st.Bernoulli(), torch.tensor([[-1.2, 0.3, 2.0]])),
    "categorical": (st.Categorical(), torch.tensor([[[0.5, -1.0, 1.5, 0.0], [2.0, 0.1, -0.3, 0.4]]])),
    "ksubset": (st.KSubset(2), torch.tensor([[0.3, -0.7, 1.1, 0.0, -0.2]])),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_log_prob_normalised_and_mean_matches_enumeration(name):
    fam, logits = FAMILIES[name]
    outs = fam.outcomes(tuple(logits.shape[1:]), logits)  # [N, *E]
    lp = fam.log_prob(logits, outs[:, None])  # [N, 1]
    assert torch.allclose(lp.exp().sum(0), torch.ones(1), atol=1e-5)
    mean = (lp.exp().reshape(-1, *([1] * (outs.ndim - 1))) * outs).sum(0)
    assert torch.allclose(fam.mean(logits)[0], mean, atol=1e-5)
    # the score z - E[z] is the gradient of log p(z)
    th = logits.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fam.log_prob(th, outs[3:4, None]).sum(), th)
    assert torch.allclose(g[0], fam.score(logits, outs[3:4, None])[0, 0], atol=1e-5)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_sampler_matches_probabilities(name):
    """Chi-square goodness of fit of 40000 samples against the enumerated probabilities (p-value > 1e-3)."""
    fam, logits = FAMILIES[name]
    n = 40000
    z = fam.sample(logits, n, torch.Generator().manual_seed(0))  # [n, 1, *E]
    outs = fam.outcomes(tuple(logits.shape[1:]), logits)  # [N, *E]
    probs = fam.log_prob(logits, outs[:, None])[:, 0].exp()
    match = (z[:, 0, None] == outs[None]).flatten(2).all(-1)  # [n, N]
    assert bool(match.any(1).all()), "every sample is a valid outcome"
    counts = match.sum(0).double().numpy()
    expected = probs.double().numpy()
    p = stats.chisquare(counts, expected / expected.sum() * n).pvalue
    assert p > 1e-3, p


@pytest.mark.parametrize("name", ["bernoulli", "categorical"])
def test_perturb_then_hard_is_an_exact_sample(name):
    fam, logits = FAMILIES[name]
    z = fam.hard(fam.perturb(logits, 60000, torch.Generator().manual_seed(1)))
    assert torch.allclose(z.mean(0), fam.mean(logits), atol=0.01)


@pytest.mark.parametrize("name", ["bernoulli", "categorical"])
def test_conditional_sample_has_the_right_law(name):
    """b = H(z), z~ ~ p(z | b): then H(z~) = b and z~ has the law of z (two-sample KS test per coordinate)."""
    fam, logits = FAMILIES[name]
    n = 40000
    gen = torch.Generator().manual_seed(2)
    z = fam.perturb(logits, n, gen)
    b = fam.hard(z)
    zt = fam.conditional(logits, b, gen)
    assert torch.equal(fam.hard(zt), b)
    z2 = fam.perturb(logits, n, gen)  # independent reference sample
    for a, c in zip(zt.reshape(n, -1).T, z2.reshape(n, -1).T, strict=True):
        assert stats.ks_2samp(a.numpy(), c.numpy()).pvalue > 1e-3


def test_bernoulli_conditional_matches_truncated_logistic_cdf():
    """z~ | b = 1 is Logistic(theta) truncated to (0, inf): P(z~ > x) = sigmoid(theta - x) / sigmoid(theta)."""
    theta = torch.tensor([[0.7]])
    n = 50000
    zt = st.Bernoulli().conditional(theta, torch.ones(n, 1, 1), torch.Generator().manual_seed(3))[:, 0, 0]
    for x in (0.5, 1.0, 2.0, 4.0):
        expected = float(torch.sigmoid(theta - x) / torch.sigmoid(theta))
        got = float((zt > x).double().mean())
        assert abs(got - expected) < 4.5 * math.sqrt(expected * (1 - expected) / n) + 1e-4


def test_ksubset_rejects_bad_k_and_shapes():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        st.KSubset(0)
    with pytest.raises(ValueError, match="k=4 must be at most"):
        st.KSubset(4).check(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"logits must have shape \[B, n\]"):
        st.KSubset(1).check(torch.zeros(1, 3, 2))
