"""Regressions for the findings of the standing fuzz test (``tests/test_fuzz.py``, issue 10) in
``discreteopt.stochastic``: each test failed on the code before the fix (NaN, a raw torch error, or a wrong finite
value) and states the old outcome in its docstring.

The rules they pin down (module docstring of :mod:`discreteopt.stochastic._types`): a temperature or noise scale
must be at least ``finfo(dtype).tiny`` of the dtype it divides; integer, bool and complex parameters are refused
with a ``ValueError``; values near the float maximum give the exact (or limiting) finite answer, ``+-inf`` only
where the exact value leaves the float range, never NaN.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

import discreteopt.stochastic as st

F64 = torch.float64
BIG = 1.7e308


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _finite_grad(x: torch.Tensor) -> bool:
    return x.grad is not None and bool(torch.isfinite(x.grad).all())


# ------------------------------------------------------------------------------------------------ tau / scale
TAU_FNS = {
    "gumbel_softmax": lambda x, tau: st.gumbel_softmax(x, tau=tau, generator=gen()),
    "gumbel_sigmoid": lambda x, tau: st.gumbel_sigmoid(x, tau=tau, generator=gen()),
    "straight_through_gumbel": lambda x, tau: st.straight_through_gumbel(x, tau=tau, generator=gen()),
    "relaxed_topk_l2x": lambda x, tau: st.relaxed_topk_l2x(x, 2, tau=tau, generator=gen()),
    "relaxed_topk_softsub": lambda x, tau: st.relaxed_topk_softsub(x, 2, tau=tau, generator=gen()),
    "concrete": lambda x, tau: st.concrete(lambda y: y.sum(-1), x, tau=tau, generator=gen()),
    "l2x_subset": lambda x, tau: st.l2x_subset(lambda m: m.sum(-1), x, k=2, tau=tau, generator=gen()),
    "softsub": lambda x, tau: st.softsub(lambda m: m.sum(-1), x, k=2, tau=tau, generator=gen()),
}


@pytest.mark.parametrize("name", list(TAU_FNS))
@pytest.mark.parametrize("dtype, tau", [(torch.float32, 1e-300), (F64, 5e-324), (torch.float16, 1e-5)])
def test_tau_too_small_for_the_dtype_is_a_value_error(name, dtype, tau):
    """tau=1e-300 with float32 logits (1/tau = inf in float32) gave NaN samples and gradients."""
    x = torch.randn(2, 3).to(dtype).requires_grad_(True)
    with pytest.raises(ValueError, match="tau=.*too small"):
        TAU_FNS[name](x, tau)


def test_tiny_tau_in_float64_gives_the_one_hot_limit():
    """The same tau is fine where 1/tau is finite: the relaxed sample is the hard one (and stays finite)."""
    logits = torch.randn(4, 5, dtype=F64, requires_grad=True)
    soft = st.gumbel_softmax(logits, tau=1e-300, generator=gen(3))
    hard = st.gumbel_softmax(logits, tau=1.0, hard=True, generator=gen(3))  # same noise: its argmax
    assert torch.equal(soft.detach(), hard.detach())
    (soft * torch.arange(5.0, dtype=F64)).sum().backward()
    assert _finite_grad(logits)


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e-300), (F64, 5e-324)])
def test_evolution_strategies_scale_too_small_is_a_value_error(dtype, scale):
    """scale=1e-300 in float32: theta + scale eps == theta, (f+ - f-) / (2 scale) = 0 / 0 = NaN."""
    with pytest.raises(ValueError, match="scale=.*too small"):
        st.evolution_strategies(lambda x: x.sum(-1), torch.ones(2, 3, dtype=dtype), scale=scale, generator=gen())


def test_evolution_strategies_overflowing_points_blame_the_scale_not_f():
    """params + scale eps beyond float32: f(inf) raised "f returned NaN or inf", blaming f."""
    with pytest.raises(ValueError, match="params \\+ scale \\* eps overflows"):
        st.evolution_strategies(lambda x: x.sum(-1), torch.full((2, 3), 3e38), scale=1e38, generator=gen())


def test_measure_valued_gaussian_refuses_a_vanishing_std():
    """exp(log_std) = 0 in float32: (f+ - f-) / (0 sqrt(2 pi)) = 0 / 0 = NaN estimate."""
    with pytest.raises(ValueError, match="log_std"):
        st.measure_valued_gaussian(lambda x: x.sum(-1), torch.zeros(1, 2), torch.full((1, 2), math.log(1e-300)),
                                   generator=gen())


# ------------------------------------------------------------------------------------------------ huge logits
HUGE = torch.tensor([[BIG, -BIG, 0.0]], dtype=F64)


def test_gumbel_softmax_family_at_the_float_maximum_is_the_one_hot_limit():
    """(logits + g) / tau with logits +-1.7e308: softmax of +-inf gave NaN for l2x; softsub gave NaN too."""
    x = HUGE.clone().requires_grad_(True)
    y = st.gumbel_softmax(x, tau=0.5, generator=gen())
    assert torch.equal(y.detach(), torch.tensor([[1.0, 0.0, 0.0]], dtype=F64))
    (y * torch.tensor([1.0, 2.0, 3.0], dtype=F64)).sum().backward()
    assert _finite_grad(x)
    x = HUGE.clone().requires_grad_(True)
    m = st.relaxed_topk_l2x(x, 2, tau=0.5, samples=2, generator=gen())
    assert torch.equal(m.detach(), torch.tensor([[[1.0, 0.0, 0.0]]] * 2, dtype=F64))
    m.sum().backward()
    assert _finite_grad(x)
    x = HUGE.clone().requires_grad_(True)
    m = st.relaxed_topk_softsub(x, 2, tau=0.5, samples=2, generator=gen())  # top-2: items 0 and 2
    assert torch.equal(m.detach(), torch.tensor([[[1.0, 0.0, 1.0]]] * 2, dtype=F64))
    (m * torch.tensor([1.0, 2.0, 3.0], dtype=F64)).sum().backward()
    assert _finite_grad(x)
    est = st.concrete(lambda y: (y * torch.tensor([1.0, 2.0, 3.0], dtype=F64)).sum((-1, -2)), HUGE[:, None],
                      family=st.Categorical(), tau=1e-300, generator=gen())
    assert float(est.surrogate.detach()) == 1.0  # f(e_0)


def test_softsub_leading_item_with_a_large_gap_is_taken_once():
    """Keys 1000 apart at tau=0.5: 1 - a rounded to 0, log(clamp(0, tiny)) = -708 left the leader ahead and it won
    both rounds (mask [2, 0, 0] instead of the top-2 [1, 1, 0])."""
    m = st.relaxed_topk_softsub(torch.tensor([[1000.0, 0.0, -1000.0]], dtype=F64), 2, tau=0.5, generator=gen())
    torch.testing.assert_close(m, torch.tensor([[[1.0, 1.0, 0.0]]], dtype=F64), rtol=0, atol=1e-12)


def test_stick_breaking_logits_checks_input_and_never_gives_nan():
    """int64 logits raised NotImplementedError from log_softmax; two classes at -1.7e308 gave eta = -inf - -inf."""
    with pytest.raises(ValueError, match="floating"):
        st.stick_breaking_logits(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="floating"):
        st.stick_breaking_logits(torch.zeros(2, 3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="at least 1 dims|shape"):
        st.stick_breaking_logits(torch.tensor(1.0))
    eta = st.stick_breaking_logits(torch.tensor([BIG, -BIG, -BIG], dtype=F64))
    assert eta.tolist() == [math.inf, 0.0]  # pi_1 = pi_2: eta_1 = log pi_1 - log pi_2 = 0
    logits = torch.randn(3, 5, dtype=F64)
    pi = torch.softmax(logits, -1)
    ref = torch.log(pi[:, :-1]) - torch.log(pi.flip(-1).cumsum(-1).flip(-1)[:, 1:])
    torch.testing.assert_close(st.stick_breaking_logits(logits), ref)


# ------------------------------------------------------------------------------------------------ KSubset
def test_ksubset_in_half_precision():
    """torch.full(..., -1e30, dtype=float16) raised a raw RuntimeError; the recursions now run in float32."""
    logits = torch.randn(2, 4).half().requires_grad_(True)
    est = st.reinforce(lambda z: (z * torch.arange(4.0).half()).sum(-1), logits, family=st.KSubset(2), samples=3,
                       generator=gen())
    est.surrogate.backward()
    assert logits.grad.dtype == torch.float16 and _finite_grad(logits)
    fam = st.KSubset(2)
    ref = fam.mean(logits.detach().double())
    torch.testing.assert_close(fam.mean(logits.detach()).double(), ref, rtol=2e-3, atol=1e-3)
    assert bool((fam.sample(logits.detach(), 50, gen()).sum(-1) == 2).all())


def test_ksubset_logits_near_the_float_maximum():
    """log e_k summed two logits of 1e306 order to inf: inclusion probabilities NaN (and reinforce NaN)."""
    theta = torch.tensor([[1e306, 9e305, -1e306, 0.0]], dtype=F64)
    fam = st.KSubset(2)
    assert fam.mean(theta).tolist() == [[1.0, 1.0, 0.0, 0.0]]  # the top-2 has probability 1
    assert fam.complement(theta).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert bool((fam.sample(theta, 20, gen()) == torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64)).all())
    assert fam.log_prob(theta, torch.tensor([[[1.0, 1.0, 0.0, 0.0]]], dtype=F64)).tolist() == [[0.0]]
    shift = torch.tensor([[0.3, -1.2, 0.5, 2.0]], dtype=F64)  # the law is shift-invariant: logits + 1e6
    torch.testing.assert_close(fam.mean(shift + 1e6), fam.mean(shift), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="spread"):  # 3.4e308 apart: beyond what the recursions can hold
        fam.check(torch.tensor([[BIG, -BIG, 0.0, 0.0]], dtype=F64))


# ------------------------------------------------------------------------------------------------ pathwise
def test_pathwise_refuses_integer_and_complex_parameters():
    """Normal(int64 loc, ...) raised NotImplementedError from torch's sampler; complex ones another raw error."""
    with pytest.raises(ValueError, match="integer or bool parameter loc.*pass floats"):
        st.pathwise(lambda x: x.sum(-1).float(), D.Normal(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3)))
    cplx = D.Normal(torch.zeros(2, 3, dtype=torch.complex64), torch.ones(2, 3), validate_args=False)
    with pytest.raises(ValueError, match="complex parameter loc"):
        st.pathwise(lambda x: x.real.sum(-1), cplx)
    wrapped = D.Independent(D.Normal(torch.zeros(2, 3, dtype=torch.int32), torch.ones(2, 3)), 1)
    with pytest.raises(ValueError, match="loc"):
        st.pathwise(lambda x: x.sum(-1).float(), wrapped)


# ------------------------------------------------------------------------------------------------ loo
def test_loo_sum_empty_and_bad_dim():
    """S = 0 raised RuntimeError from narrow(); dim=5 an IndexError; a 0-d input IndexError."""
    out = st.loo_sum(torch.zeros(0, 3))
    assert out.shape == (0, 3)
    with pytest.raises(ValueError, match="dim must be an integer in \\[-2, 1\\]"):
        st.loo_sum(torch.zeros(2, 3), dim=5)
    with pytest.raises(ValueError, match="dim"):
        st.loo_mean(torch.zeros(2, 3), dim=-3)
    with pytest.raises(ValueError, match="at least one dim"):
        st.loo_sum(torch.tensor(2.0))


def test_loo_mean_does_not_overflow_where_the_mean_fits():
    """Three rows of 3e38 in float32: the sum of the other two is inf, the mean 3e38."""
    x = torch.full((3, 2), 3e38)
    assert torch.equal(st.loo_mean(x), x)
    y = torch.tensor([3e38, 2e38, -3e38, 1.0])
    torch.testing.assert_close(st.loo_mean(y).double(), (y.double().sum() - y.double()) / 3, rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------------------ policy gradient
def test_kl_k3_refuses_non_real_inputs_and_never_gives_nan():
    """Complex log-probs gave a complex 'KL', bool a raw RuntimeError, ref - lp = +inf gave inf - inf = NaN."""
    with pytest.raises(ValueError, match="real floating"):
        st.kl_k3(torch.zeros(2, dtype=torch.complex64), torch.zeros(2))
    with pytest.raises(ValueError, match="ref_log_prob.*real floating"):
        st.kl_k3(torch.zeros(2), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="broadcast"):
        st.kl_k3(torch.zeros(2), torch.zeros(3))
    assert st.kl_k3(torch.tensor([-BIG], dtype=F64), torch.tensor([BIG], dtype=F64)).tolist() == [math.inf]
    lp = torch.tensor([-0.3, -2.0], dtype=F64)
    ref = torch.tensor([-1.0, -0.5], dtype=F64)
    d = ref - lp
    torch.testing.assert_close(st.kl_k3(lp, ref), torch.exp(d) - d - 1)


def test_group_advantages_of_rewards_near_the_float_maximum():
    """Rewards +-1.7e308: the mean and std overflowed (NaN or zeros); the z-scores are exactly [1, -1, 0]."""
    r = torch.tensor([[BIG, 1.0], [-BIG, 2.0], [0.0, 3.0]], dtype=F64)
    adv = st.group_advantages(r)
    torch.testing.assert_close(adv, torch.tensor([[1.0, -1.0], [-1.0, 0.0], [0.0, 1.0]], dtype=F64), rtol=1e-6,
                               atol=0)
    small = torch.tensor([[3.0], [1.0], [2.0]], dtype=F64)  # eps (1e-6) is in reward units: negligible at 2^900
    torch.testing.assert_close(st.group_advantages(small * 2.0**900), st.group_advantages(small, eps=0.0),
                               rtol=1e-12, atol=0)
    r = torch.randn(5, 3, dtype=F64, generator=gen()) * 1e3  # the scaling by powers of two is exact
    torch.testing.assert_close(st.group_advantages(r), (r - r.mean(0)) / (r.std(0) + 1e-6), rtol=1e-15, atol=0)
    assert torch.equal(st.group_advantages(torch.full((3, 1), 1e300, dtype=F64)), torch.zeros(3, 1, dtype=F64))


def test_ppo_surrogate_with_huge_advantages_is_the_exact_mean():
    """Advantages of 1.7e308: their sum overflowed, J = inf (all positive) or NaN (mixed signs)."""
    lp = torch.zeros(4, 1, dtype=F64, requires_grad=True)
    est = st.ppo_surrogate(lp, None, torch.full((4, 1), BIG, dtype=F64))
    assert est.per_item.detach().tolist() == [BIG] and float(est.surrogate.detach()) == BIG
    mixed = torch.tensor([[BIG], [BIG], [-BIG], [-BIG]], dtype=F64)
    est = st.ppo_surrogate(lp, None, mixed)
    assert est.per_item.detach().tolist() == [0.0]
    est.surrogate.backward()
    torch.testing.assert_close(lp.grad, mixed / 4)  # d/d lp of mean(r A) at r = 1
    huge_lp = torch.full((4, 1), 1e308, dtype=F64, requires_grad=True)
    est = st.ppo_surrogate(huge_lp, huge_lp.detach() - 0.1, mixed)
    assert math.isfinite(float(est.surrogate.detach()))


def test_ppo_ratio_beyond_the_float_range():
    """log-ratio 1000: exp overflowed and the clipped sample's gradient was 0 * inf = NaN; with A > 0 the clipped
    term is the exact minimum (value (1 + eps) A, gradient 0)."""
    lp = torch.tensor([[1000.0], [0.0]], dtype=F64, requires_grad=True)
    est = st.ppo_surrogate(lp, torch.zeros(2, 1, dtype=F64), torch.ones(2, 1, dtype=F64), clip_eps=0.2)
    torch.testing.assert_close(est.per_item, torch.tensor([(1.2 + 1.0) / 2], dtype=F64))
    est.surrogate.backward()
    assert lp.grad.tolist() == [[0.0], [0.5]]


def test_grpo_with_rewards_near_the_float_maximum():
    lp = torch.zeros(3, 2, dtype=F64, requires_grad=True)
    r = torch.tensor([[BIG, 1.0], [-BIG, 2.0], [0.0, 3.0]], dtype=F64)
    est = st.grpo_surrogate(lp, None, r, ref_log_prob=torch.full((3, 2), -0.5, dtype=F64))
    est.surrogate.backward()
    assert math.isfinite(float(est.surrogate.detach())) and _finite_grad(lp)


# ------------------------------------------------------------------------------------------------ surrogates
def test_surrogate_does_not_form_params_dot_grad():
    """value + <params, g> - <params.detach(), g> overflowed for large params: inf - inf = NaN surrogate."""
    logits = torch.tensor([[1e308, 1e308]], dtype=F64, requires_grad=True)  # one Categorical, p = (1/2, 1/2)
    est = st.reinforce(lambda z: 4.0 * (z[..., 0] - z[..., 1]), logits, family=st.Categorical(), samples=3,
                       generator=gen())
    assert float(est.surrogate.detach()) == float(est.f_values.mean())
    est.surrogate.backward()
    torch.testing.assert_close(logits.grad, est.grad)  # the gradient is still exactly the estimate
    params = torch.tensor([[1e300, 1e300, 1e300]], dtype=F64, requires_grad=True)

    def f(x):  # 1e8 (x0 + (x1 - x2)) ~ 1e308, g ~ (1e8, 1e8, -1e8): <params, g> summed left to right is inf
        return 1e8 * x[..., 0] + (1e8 * x[..., 1] - 1e8 * x[..., 2])

    est = st.evolution_strategies(f, params, scale=1.0, samples=2, generator=gen())
    assert math.isfinite(float(est.surrogate.detach()))
    est.surrogate.backward()
    assert _finite_grad(params)


def test_surrogate_sum_over_problems_is_overflow_safe():
    """Per-problem values +-1.5e308: per_item.sum() overflowed (inf, or NaN in a vectorised sum); exact: 0."""
    mu = torch.zeros(4, 1, dtype=F64, requires_grad=True)
    sign = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=F64)
    est = st.pathwise(lambda x: 1.5e308 * sign + 0.0 * x[..., 0], D.Normal(mu, 1.0), samples=1, generator=gen())
    assert float(est.surrogate.detach()) == 0.0


def test_score_function_products_that_overflow_do_not_become_nan():
    """ES without antithetic pairs at scale=1e-300: (f - b) eps / scale overflowed to +inf in one sample and -inf in
    another, their mean NaN (now +-inf: the exact estimate leaves the float range); b* was inf / inf = NaN."""
    params = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 0.0], [-1e20, 1.0, 0.0]], dtype=F64, requires_grad=True)

    def f(x):
        return ((x * torch.linspace(-1.0, 1.0, 3, dtype=F64)).sum(-1)) ** 2

    est = st.evolution_strategies(f, params, scale=1e-300, antithetic=False, samples=2, generator=gen())
    assert not bool(torch.isnan(est.grad).any()) and math.isfinite(float(est.surrogate.detach()))
    est = st.evolution_strategies(lambda x: x.sum(-1), params[:1].detach(), scale=1e-200, antithetic=False,
                                  samples=3, baseline=st.OptimalConstant(), generator=gen())
    assert bool(torch.isfinite(est.grad).all())  # f is linear: (f - b*) eps / scale stays in range
    b = st.OptimalConstant()(torch.tensor([[1.0], [2.0], [4.0]], dtype=F64),
                             torch.tensor([[[1e200]], [[2e200]], [[-1e200]]], dtype=F64), None, None).value
    s2 = torch.tensor([1.0, 4.0, 1.0], dtype=F64)  # closed form sum_{k != i} f_k s_k^2 / sum_{k != i} s_k^2
    fv = torch.tensor([1.0, 2.0, 4.0], dtype=F64)
    ref = torch.stack([(fv * s2).sum() - fv[i] * s2[i] for i in range(3)]) / torch.stack(
        [s2.sum() - s2[i] for i in range(3)])
    torch.testing.assert_close(b.reshape(3), ref)


def test_measure_valued_gaussian_with_huge_f_values():
    """f = 1.5e308 tanh(1e3 x): f+ - f- = 3e308 overflowed, the estimate for the mean was inf; exact (about
    3e308 / sqrt(2 pi) = 1.2e308) it fits."""
    mean = torch.zeros(2, 1, dtype=F64, requires_grad=True)
    log_std = torch.zeros(2, 1, dtype=F64, requires_grad=True)
    est_m, est_s = st.measure_valued_gaussian(lambda x: 1.5e308 * torch.tanh(1e3 * x[..., 0]), mean, log_std,
                                              samples=4, generator=gen())
    (est_m.surrogate + est_s.surrogate).backward()
    assert bool(torch.isfinite(mean.grad).all()) and bool((mean.grad > 1e308).all())
    assert not bool(torch.isnan(log_std.grad).any())


def test_categorical_relax_uses_the_shifted_softmax():
    """Family.relax(z, tau) for Categorical: softmax(z / tau) of z = +-1.7e308 was NaN (REBAR/RELAX/concrete)."""
    z = torch.tensor([[[BIG, -BIG, 0.0]]], dtype=F64)
    assert torch.equal(st.Categorical().relax(z, 0.5), F.one_hot(torch.tensor([[0]]), 3).to(F64))


# ------------------------------------------------------------------------------------------------ formulas kept
# The rewrites above (shifted and rescaled forms) must leave the ordinary-range values unchanged: direct
# references, so that a slip in a scale factor or a unit (alpha vs alpha / tau) fails.
def test_softsub_matches_the_paper_recursion_in_the_ordinary_range():
    """Xie & Ermon's recursion written out: a = softmax(alpha / tau), alpha += log(1 - a), mask = sum a."""
    scores = torch.randn(3, 6, dtype=F64, generator=gen(5))
    for tau in (1.0, 0.3):
        m = st.relaxed_topk_softsub(scores, 3, tau=tau, samples=2, generator=gen(6))
        g = -torch.log(-torch.log(torch.rand((2, 3, 6), generator=gen(6), dtype=F64)))  # the same Gumbel draws
        alpha, ref = scores + g, torch.zeros(2, 3, 6, dtype=F64)
        for _ in range(3):
            a = torch.softmax(alpha / tau, -1)
            ref, alpha = ref + a, alpha + torch.log1p(-a)
        torch.testing.assert_close(m, ref, rtol=1e-9, atol=1e-12)


def test_ksubset_log_partition_and_log_prob_by_enumeration():
    theta = torch.tensor([[0.3, -1.2, 0.5, 2.0], [4.0, 4.0, -3.0, 1.0]], dtype=F64)
    fam = st.KSubset(2)
    subsets = fam.outcomes((4,), theta)  # [6, 4]
    ref = torch.logsumexp(theta @ subsets.T, dim=-1)  # log e_2(exp(theta))  [B]
    torch.testing.assert_close(fam.log_partition(theta), ref)
    torch.testing.assert_close(fam.log_partition(theta + 1e3), ref + 2e3)  # k c for a common shift c
    one = torch.tensor([[[1.0, 0.0, 0.0, 0.0]] * 2], dtype=F64)  # not a 2-subset: <theta, z> - A(theta) all the same
    torch.testing.assert_close(fam.log_prob(theta + 1e3, one)[0], theta[:, 0] + 1e3 - (ref + 2e3))


def test_grpo_kl_term_with_rescaled_advantages():
    """G = 8 with one outlier: max |A| = 7 / sqrt(8) > 2, so the objective is formed on A / 2 (and beta k3 / 2)."""
    lp = (torch.randn(8, 2, dtype=F64, generator=gen(7)) * 0.1 - 1.0).requires_grad_(True)
    old = lp.detach() + 0.05 * torch.randn(8, 2, dtype=F64, generator=gen(8))
    ref_lp = lp.detach() - 0.3
    rewards = torch.zeros(8, 2, dtype=F64)
    rewards[0] = 1.0
    est = st.grpo_surrogate(lp, old, rewards, ref_log_prob=ref_lp, beta=0.1, clip_eps=0.2)
    adv = (rewards - rewards.mean(0)) / (rewards.std(0) + 1e-6)
    assert float(adv.abs().max()) > 2.0
    r = torch.exp(lp - old)
    obj = torch.minimum(r * adv, r.clamp(0.8, 1.2) * adv) - 0.1 * st.kl_k3(lp, ref_lp)
    torch.testing.assert_close(est.per_item, obj.mean(0))
    (g1,) = torch.autograd.grad(est.surrogate, lp)
    (g2,) = torch.autograd.grad(obj.mean(0).sum(), lp)
    torch.testing.assert_close(g1, g2)
