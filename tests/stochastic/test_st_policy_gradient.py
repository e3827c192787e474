"""PPO and GRPO surrogates: importance-weighted REINFORCE when unclipped, no gradient where clipped, GRPO advantages."""

from __future__ import annotations

import math

import pytest
import torch
from st_problems import categorical

import discreteopt.stochastic as st


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def categorical_policy(b=16, k=5, s=1, seed=0, shift=0.05):
    """Current logits (leaf), old logits nearby, actions [S, B] drawn from the old policy, their log-probs."""
    g = gen(seed)
    theta = torch.randn(b, k, generator=g).requires_grad_(True)
    old = theta.detach() + shift * torch.randn(b, k, generator=g)
    a = torch.multinomial(torch.softmax(old, -1), s, replacement=True, generator=g).T  # [S, B]
    lp = torch.log_softmax(theta, -1).gather(-1, a.T).T  # [S, B]
    old_lp = torch.log_softmax(old, -1).gather(-1, a.T).T
    return theta, old, a, lp, old_lp


def iw_reinforce_grad(theta, a, lp, old_lp, adv):
    """Sum over problems of mean_i r_i A_i grad log pi(a_i): explicit, without autograd through the surrogate."""
    r = (lp - old_lp).exp().detach()  # [S, B]
    onehot = torch.nn.functional.one_hot(a, theta.shape[-1]).float()  # [S, B, K]
    score = onehot - torch.softmax(theta.detach(), -1)[None]
    return ((r * adv)[..., None] * score).mean(0)  # [B, K]


def test_ppo_unclipped_equals_importance_weighted_reinforce():
    theta, old, a, lp, old_lp = categorical_policy(s=4)
    adv = torch.randn(4, 16, generator=gen(1))
    est = st.ppo_surrogate(lp, old_lp, adv, clip_eps=0.5)
    assert est.info["clip_fraction"] == 0.0
    (g,) = torch.autograd.grad(est.surrogate, theta)
    assert torch.allclose(g, iw_reinforce_grad(theta, a, lp, old_lp, adv), atol=1e-6)
    # its value is the importance-weighted estimate of E_theta[A]
    r = (lp - old_lp).exp()
    assert torch.allclose(est.per_item, (r * adv).mean(0))


def test_ppo_clipped_samples_have_zero_gradient():
    theta, old, a, lp, old_lp = categorical_policy(b=400, s=1, shift=0.6, seed=2)
    adv = torch.randn(1, 400, generator=gen(3))
    eps = 0.2
    est = st.ppo_surrogate(lp, old_lp, adv, clip_eps=eps)
    (g,) = torch.autograd.grad(est.surrogate, theta)  # problem b has one sample: row b is that sample's gradient
    r = (lp - old_lp).exp().detach()[0]
    clipped = ((r > 1 + eps) & (adv[0] > 0)) | ((r < 1 - eps) & (adv[0] < 0))
    assert 20 < int(clipped.sum()) < 380  # both cases occur
    assert torch.equal(g[clipped], torch.zeros_like(g[clipped]))
    expected = iw_reinforce_grad(theta, a, lp, old_lp, adv)
    assert torch.allclose(g[~clipped], expected[~clipped], atol=1e-6)
    assert (g[~clipped].abs().sum(-1) > 0).all()
    assert math.isclose(est.info["clip_fraction"], float(clipped.float().mean()), rel_tol=1e-6)


def test_ppo_on_policy_is_an_unbiased_reinforce_estimator():
    """With old = current (ratio 1) and advantages f(z), the PPO gradient is REINFORCE's: unbiased by enumeration."""
    prob = categorical(2, 3)
    r = 8000
    x = prob.replicas(r).requires_grad_(True)
    z = prob.family.sample(x, 2, gen(4))  # [2, R, V, K]
    lp = prob.family.log_prob(x, z)  # [2, R]
    est = st.ppo_surrogate(lp, None, prob.f(z))
    est.surrogate.backward()
    st.assert_unbiased(x.grad, prob.exact_grad())


def test_asymmetric_clip_range():
    theta, old, a, lp, old_lp = categorical_policy(b=400, s=1, shift=0.6, seed=2)
    adv = torch.ones(1, 400)
    est = st.ppo_surrogate(lp, old_lp, adv, clip_eps=(0.1, 0.3))
    r = (lp - old_lp).exp().detach()
    assert math.isclose(est.info["clip_fraction"], float((r > 1.3).float().mean()), rel_tol=1e-6)


def test_per_token_masking_and_aggregation():
    g = gen(5)
    s, b, t = 3, 2, 4
    lp = (-torch.rand(s, b, t, generator=g)).requires_grad_(True)
    old = lp.detach() + 0.01 * torch.randn(s, b, t, generator=g)
    adv = torch.randn(s, b, generator=g)
    mask = torch.ones(s, b, t)
    mask[0, 0, 2:] = 0
    mask[1, 1, 1:] = 0
    lp_pad = torch.where(mask > 0, lp, torch.zeros(()))  # padded tokens hold anything finite
    per_token = (lp_pad - old).exp() * adv[..., None]
    seq = st.ppo_surrogate(lp_pad, old, adv, mask=mask)
    manual_seq = ((per_token * mask).sum(-1) / mask.sum(-1)).mean(0)
    assert torch.allclose(seq.per_item, manual_seq, atol=1e-6)
    tok = st.ppo_surrogate(lp_pad, old, adv, mask=mask, aggregation="token")
    manual_tok = (per_token * mask).sum((0, 2)) / mask.sum((0, 2))
    assert torch.allclose(tok.per_item, manual_tok, atol=1e-6)
    (grad,) = torch.autograd.grad(seq.surrogate, lp)
    assert torch.equal(grad[mask == 0], torch.zeros(int((mask == 0).sum())))


# ------------------------------------------------------------------------------------------------ GRPO
def test_group_advantages_zero_mean_unit_std_per_group():
    rewards = torch.randn(8, 5, generator=gen(6)) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0]) + 4.0
    rewards[:, 4] = 2.0  # a group with equal rewards
    adv = st.group_advantages(rewards)
    assert torch.allclose(adv[:, :4].mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(adv[:, :4].std(0), torch.ones(4), atol=1e-4)  # std with Bessel's correction
    assert torch.equal(adv[:, 4], torch.zeros(8))
    centred = st.group_advantages(rewards, scale=False)
    assert torch.allclose(centred, rewards - rewards.mean(0), atol=1e-6)


def test_grpo_without_kl_is_ppo_with_group_advantages():
    theta, old, a, lp, old_lp = categorical_policy(s=6, seed=7, shift=0.3)
    rewards = torch.randn(6, 16, generator=gen(8))
    est = st.grpo_surrogate(lp, old_lp, rewards, clip_eps=0.2)
    ref = st.ppo_surrogate(lp, old_lp, st.group_advantages(rewards), clip_eps=0.2)
    assert torch.allclose(est.per_item, ref.per_item)
    g1, = torch.autograd.grad(est.surrogate, theta, retain_graph=True)
    g2, = torch.autograd.grad(ref.surrogate, theta)
    assert torch.allclose(g1, g2)
    assert est.n_evals == 6 and torch.equal(est.info["advantages"], st.group_advantages(rewards))


def test_grpo_kl_penalty_uses_the_k3_estimator():
    """k3 is unbiased for KL(pi || pi_ref) under a ~ pi, and the penalty enters as -beta * mean k3."""
    theta, old, a, lp, _ = categorical_policy(b=4, k=5, s=20000, seed=9, shift=0.0)
    ref_logits = theta.detach() + torch.randn(4, 5, generator=gen(10))
    ref_lp = torch.log_softmax(ref_logits, -1).gather(-1, a.T).T
    k3 = st.kl_k3(lp.detach(), ref_lp)
    assert bool((k3 >= 0).all())
    p = torch.softmax(theta.detach(), -1)
    kl = (p * (p.log() - torch.log_softmax(ref_logits, -1))).sum(-1)  # exact, [B]
    assert ((k3.mean(0) - kl).abs() < 4.5 * k3.std(0) / math.sqrt(k3.shape[0])).all()
    rewards = torch.randn(20000, 4, generator=gen(11))
    with_kl = st.grpo_surrogate(lp, None, rewards, ref_log_prob=ref_lp, beta=0.1)
    without = st.grpo_surrogate(lp, None, rewards)
    assert torch.allclose(with_kl.per_item, without.per_item - 0.1 * k3.mean(0), atol=1e-5)
    assert math.isclose(with_kl.info["kl_ref"], float(k3.mean()), rel_tol=1e-4)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"clip_eps": 0.0}, "clip_eps"), ({"clip_eps": 1.5}, "clip_eps"), ({"clip_eps": (0.2, -1.0)}, "clip_eps"),
    ({"aggregation": "mean"}, "aggregation"), ({"mask": torch.ones(3)}, "mask"),
    ({"mask": torch.full((4, 2), 0.5)}, "mask"),
])
def test_ppo_rejects_bad_arguments(kwargs, match):
    lp = -torch.rand(4, 2)
    with pytest.raises(ValueError, match=match):
        st.ppo_surrogate(lp, lp, torch.randn(4, 2), **kwargs)


def test_policy_surrogates_reject_bad_tensors():
    lp = -torch.rand(4, 2)
    with pytest.raises(ValueError, match="log_prob"):
        st.ppo_surrogate(torch.tensor([float("nan"), 0.0])[None].expand(4, 2), None, torch.randn(4, 2))
    with pytest.raises(ValueError, match="old_log_prob"):
        st.ppo_surrogate(lp, -torch.rand(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="advantages"):
        st.ppo_surrogate(lp, None, torch.randn(3, 2))
    with pytest.raises(ValueError, match="rewards"):
        st.grpo_surrogate(lp, None, torch.randn(4, 3))
    with pytest.raises(ValueError, match="G >= 2"):
        st.group_advantages(torch.randn(1, 3))
    with pytest.raises(ValueError, match="beta"):
        st.grpo_surrogate(lp, None, torch.randn(4, 2), beta=-0.1)
    with pytest.raises(ValueError, match="ref_log_prob"):
        st.grpo_surrogate(lp, None, torch.randn(4, 2), ref_log_prob=torch.full((4, 2), float("inf")))
