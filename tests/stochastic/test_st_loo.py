"""Round-off and unbiasedness: leave-one-out baselines and scores at extreme logits, in float32 and float64.

A leave-one-out quantity formed as ``sum_k x_k - x_i`` carries a rounding error that depends on ``x_i``, so the
"baseline independent of sample i" is not independent any more and the estimator is biased; at extreme logits the
bias is of the order of the gradient itself. These tests do not sample: the estimator's expectation is computed
*exactly* by enumerating every joint outcome of the ``S`` samples (each outcome one row of the batch, fed to the
estimator through a family whose ``sample`` returns them) and weighting with the exact probabilities in float64.
An unbiased estimator then matches the exact gradient up to the dtype's rounding (relative ~1e-7 in float32,
~1e-13 in float64); the old ``total - own`` forms missed by factors of order 1 (see the measured numbers below).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import discreteopt.stochastic as st
from discreteopt.stochastic import exact


# ------------------------------------------------------------------------------------------------ enumeration
class _FixedBernoulli(st.Bernoulli):
    """Bernoulli family whose ``sample`` returns given samples ``[S, N, *E]`` (row ``n`` = joint outcome ``n``)."""

    def __init__(self, z: torch.Tensor):
        self.z = z

    def sample(self, params, n, generator=None):
        assert n == self.z.shape[0]
        return self.z.to(params.dtype)


class _FixedCategorical(st.Categorical):
    def __init__(self, z: torch.Tensor):
        self.z = z

    def sample(self, params, n, generator=None):
        assert n == self.z.shape[0]
        return self.z.to(params.dtype)


def _joint_bernoulli(d: int, s: int) -> torch.Tensor:
    """Every joint outcome of ``s`` samples of ``d`` bits: ``[S, 2^(d s), d]`` (float64)."""
    n = 2 ** (d * s)
    bits = (torch.arange(n)[:, None] >> torch.arange(d * s)) & 1
    return bits.reshape(n, s, d).permute(1, 0, 2).double()


def _joint_categorical(k: int, s: int) -> torch.Tensor:
    """Every joint outcome of ``s`` one-hot samples over ``k`` classes: ``[S, k^s, 1, k]``."""
    idx = torch.cartesian_prod(*[torch.arange(k)] * s).reshape(-1, s).T  # [S, N]
    return F.one_hot(idx, k).double()[:, :, None, :]


def _outcomes(th: torch.Tensor, s: int, categorical: bool):
    """Joint outcomes ``z`` ``[S, N, *E]``, their log-probabilities ``[N]`` and scores ``[S, N, *E]``, all in float64
    from formulas written here (independent of the families): ``logsigmoid(+-theta)`` and, for the score,
    ``1 - p`` as ``sigmoid(-theta)`` or the masked sum of the other classes' probabilities."""
    if categorical:
        k = th.shape[-1]
        z = _joint_categorical(k, s)  # [S, N, 1, K]
        logp = (z * torch.log_softmax(th, -1)).sum((-1, -2)).sum(0)  # [N]
        pi = torch.softmax(th, -1)  # [1, K]
        others = (pi[..., None, :] * (1 - torch.eye(k, dtype=th.dtype))).sum(-1)  # [1, K]: sum_{j != k} pi_j
        score = z * others - (1 - z) * pi
    else:
        z = _joint_bernoulli(th.shape[-1], s)  # [S, N, d]
        logp = (z * F.logsigmoid(th) + (1 - z) * F.logsigmoid(-th)).sum(-1).sum(0)  # [N]
        score = z * torch.sigmoid(-th) - (1 - z) * torch.sigmoid(th)
    return z, logp, score


def _exact_gradient(objective, logits: torch.Tensor, s: int, categorical: bool = False) -> torch.Tensor:
    """``d/d theta E[objective(z_1..z_S)]`` ``[*E]`` by the score identity over every joint outcome, in float64:
    ``sum_n P_n objective_n sum_i s(z_in)`` (exact for a finite sum; no autograd through ``1 - sigmoid``)."""
    z, logp, score = _outcomes(logits.double()[0], s, categorical)
    obj = objective(z)  # [N]
    w = (logp.exp() * obj).reshape(-1, *([1] * (score.ndim - 2)))
    return (w * score.sum(0)).sum(0)


def _exact_mean_of_estimator(call, logits: torch.Tensor, s: int, dtype, categorical: bool = False) -> torch.Tensor:
    """``E[g_hat]`` ``[*E]`` in float64: sum over joint outcomes of ``P(z_1..z_S) g_hat(z_1..z_S)``."""
    z, logp, _ = _outcomes(logits.double()[0], s, categorical)
    fam = _FixedCategorical(z.to(dtype)) if categorical else _FixedBernoulli(z.to(dtype))
    x = logits.to(dtype).expand(z.shape[1], *logits.shape[1:]).clone()
    est = call(x, fam, s)
    assert est.grad.dtype == dtype
    weights = logp.exp().reshape(-1, *([1] * (est.grad.ndim - 1)))
    return (weights * est.grad.double()).sum(0)


T = torch.tensor([0.3, 0.6, 0.45])


def f_bern(z):
    """Quadratic with a coupling term, plus an offset (so a baseline matters)."""
    t = T[: z.shape[-1]].to(z.dtype)
    return 3 * ((z - t) ** 2).sum(-1) + z[..., 0] * z[..., 1] + 2.0


def f_cat(z):  # [S, B, 1, K] -> [S, B]
    w = torch.tensor([1.5, -2.0, 0.5], dtype=z.dtype)[: z.shape[-1]]
    return ((z[..., 0, :] * w).sum(-1) - 0.25) ** 2 + 1.0


SLOPE = torch.tensor([1.0, -2.0, 0.5])


def _taylor_cv():
    """``h(z) = <slope, z>`` with ``E[h] = <slope, sigmoid(theta)>`` written as ``exp(logsigmoid)``: torch's
    ``sigmoid`` backward ``y (1 - y)`` is 0 in float32 at ``|theta| >= 17``, so ``E[h]``'s gradient would be."""
    def h(z):
        return (z * SLOPE[: z.shape[-1]].to(z.dtype)).sum(-1)

    def h_mean(p):
        return (torch.exp(F.logsigmoid(p)) * SLOPE[: p.shape[-1]].to(p.dtype)).sum(-1)

    return st.ControlVariate(h, h_mean)


ESTIMATORS = {
    "reinforce": lambda x, fam, s: st.reinforce(f_bern, x, family=fam, samples=s),
    "rloo": lambda x, fam, s: st.rloo(f_bern, x, family=fam, samples=s),
    "optimal_constant": lambda x, fam, s: st.reinforce(f_bern, x, family=fam, samples=s,
                                                       baseline=st.OptimalConstant()),
    "control_variate": lambda x, fam, s: st.reinforce(f_bern, x, family=fam, samples=s, baseline=_taylor_cv()),
}
LOGITS = {"pm9": [9.0, -9.0], "9_and_2": [9.0, 2.0], "pm20": [20.0, -20.0], "moderate": [1.0, -0.5]}
RTOL = {torch.float32: 1e-5, torch.float64: 1e-11}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("logits", list(LOGITS))
@pytest.mark.parametrize("s", [2, 3])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_expectation_of_the_estimate_is_the_exact_gradient(name, s, logits, dtype):
    """Old code, measured max relative error: OptimalConstant 8.9 (float32 +-9, float64 +-20), ControlVariate
    7.1 (float32, moderate logits, S = 2) and 0.48 (float64 +-9), plain REINFORCE 3.0 (float32 +-20: the score
    ``z - sigmoid(theta)`` was 0 for z = 1). Now every case is within the dtype's rounding."""
    th = torch.tensor([LOGITS[logits]], dtype=torch.float64)
    target = _exact_gradient(lambda z: f_bern(z[0].to(dtype)).double(), th, 1)
    mean = _exact_mean_of_estimator(ESTIMATORS[name], th, s, dtype)
    rel = ((mean - target).abs() / target.abs()).max().item()
    assert rel < RTOL[dtype], (mean.tolist(), target.tolist(), rel)


@pytest.mark.parametrize("offset", [1e4, 1e5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("logits", ["pm9", "moderate"])
@pytest.mark.parametrize("name", ["rloo", "optimal_constant"])
def test_leave_one_out_baselines_cancel_a_large_offset_exactly(name, logits, dtype, offset):
    """``f = 1e4 + O(1)``: a sample's leave-one-out baseline must not carry the rounding of its own value. The old
    RLOO baseline ``(sum - f_i) / (S - 1)`` was biased by 5e-3 (1e4) and 4e-2 (1e5) relative in float32."""
    th = torch.tensor([LOGITS[logits]], dtype=torch.float64)

    def f(z):
        return f_bern(z) + offset

    call = {"rloo": lambda x, fam, s: st.rloo(f, x, family=fam, samples=s),
            "optimal_constant": lambda x, fam, s: st.reinforce(f, x, family=fam, samples=s,
                                                               baseline=st.OptimalConstant())}[name]
    target = _exact_gradient(lambda z: f(z[0].to(dtype)).double(), th, 1)
    for s in (2, 3):
        mean = _exact_mean_of_estimator(call, th, s, dtype)
        rel = ((mean - target).abs() / target.abs()).max().item()
        assert rel < (RTOL[dtype] if dtype == torch.float32 else RTOL[dtype] * offset), (s, rel)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["rloo", "optimal_constant", "control_variate"])
def test_categorical_leave_one_out_at_extreme_logits(name, dtype):
    """Categorical score ``e_k - softmax`` with one class at probability ~1 - 2e-9: ``1 - pi_k`` is formed as the
    sum of the other classes' probabilities, and the baselines leave-one-out without subtraction."""
    logits = torch.tensor([[[20.0, 0.0, -1.0]]], dtype=torch.float64)  # [1, V=1, K=3]
    target = _exact_gradient(lambda z: f_cat(z[0].to(dtype)).double(), logits, 1, categorical=True)

    def h(z):
        return z[..., 0, 0]

    def h_mean(p):  # pi_0 = sigmoid(theta_0 - logsumexp(theta_1:)): its gradient keeps full relative precision,
        # unlike softmax's backward, which forms 1 - pi_0 by subtraction
        return torch.exp(F.logsigmoid(p[..., 0, 0] - p[..., 0, 1:].logsumexp(-1)))

    base = {"rloo": st.LeaveOneOut(), "optimal_constant": st.OptimalConstant(),
            "control_variate": st.ControlVariate(h, h_mean)}[name]
    mean = _exact_mean_of_estimator(
        lambda x, fam, s: st.reinforce(f_cat, x, family=fam, samples=s, baseline=base), logits, 3, dtype,
        categorical=True)
    rel = ((mean - target).abs() / target.abs()).max().item()
    assert rel < RTOL[dtype], (mean.tolist(), target.tolist(), rel)


@pytest.mark.parametrize("offset", [0.0, 1e5], ids=["offset0", "offset1e5"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("logits", ["pm9", "pm20", "moderate"])
@pytest.mark.parametrize("k", [2, 3])
def test_vimco_expectation_is_the_exact_multisample_gradient(k, logits, dtype, offset):
    """VIMCO's coefficients ``L - L_{-j}`` are differences of log-sum-exps of the size of ``log_w``: with
    ``log_w = 1e5 + O(1)`` in float32 the old coefficients (float32, ``sum - own``) missed by 1e-3 to 3e-2
    relative; they are now formed in float64 from the other samples only."""
    th = torch.tensor([LOGITS[logits]], dtype=torch.float64)

    def log_w(z):
        return offset - 2.0 * ((z - T[: z.shape[-1]].to(z.dtype)) ** 2).sum(-1) + 4.0 * z[..., 0] * z[..., 1]

    target = _exact_gradient(lambda z: log_w(z.to(dtype)).double().logsumexp(0) - math.log(k), th, k)
    mean = _exact_mean_of_estimator(lambda x, fam, s: st.vimco(log_w, x, family=fam, samples=s), th, k, dtype)
    rel = ((mean - target).abs() / target.abs()).max().item()
    # float64: the target itself is exact only to eps * |log_w| in absolute terms
    assert rel < (RTOL[dtype] if dtype == torch.float32 else RTOL[dtype] * (1.0 + offset)), (
        mean.tolist(), target.tolist(), rel)
    if logits == "moderate" and offset == 0.0:  # the score-identity target agrees with autograd by enumeration
        thg = th.clone().requires_grad_(True)
        bound = exact.multisample_expectation(lambda z: log_w(z.to(dtype)).double(), thg, None, k,
                                              lambda v: v.logsumexp(0) - math.log(k))
        (ref,) = torch.autograd.grad(bound.sum(), thg)
        assert torch.allclose(target, ref[0], rtol=1e-12)


# ------------------------------------------------------------------------------------------------ properties
def _random(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(4 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)  # spans many magnitudes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_loo_sum_is_the_sum_of_the_others_and_ignores_ones_own_value(dtype):
    from discreteopt.stochastic.loo import loo_mean, loo_sum

    x = _random((6, 4, 3), dtype, 0)
    ref = torch.stack([torch.cat([x[:i], x[i + 1:]]).double().sum(0) for i in range(6)])
    assert torch.allclose(loo_sum(x).double(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12)
    assert torch.allclose(loo_sum(x.transpose(0, 1), dim=1).transpose(0, 1), loo_sum(x))
    assert torch.equal(loo_sum(x[:1]), torch.zeros_like(x[:1]))  # one sample: nothing left
    assert torch.allclose(loo_mean(x), loo_sum(x) / 5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        loo_mean(x[:1])
    # a dominant entry does not swallow the others: (1 + 1e-8 + 2e-8) - 1 is 0 in float32
    small = torch.tensor([1.0, 1e-8, 2e-8], dtype=dtype)
    assert loo_sum(small)[0] == small[1] + small[2] and float(small.sum() - small[0]) != float(small[1] + small[2])
    for i in range(6):  # changing x_i leaves entry i bit-for-bit unchanged
        y = x.clone()
        y[i] = y[i] * 3.7 + 1e3
        assert torch.equal(loo_sum(y)[i], loo_sum(x)[i])


def _const_cv():
    return st.ControlVariate(lambda z: torch.full(z.shape[:2], 2.0, dtype=z.dtype), lambda p: 2.0 + 0 * p.sum(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["leave_one_out", "optimal_constant", "control_variate"])
def test_baseline_of_sample_i_does_not_depend_on_sample_i_bit_for_bit(name, dtype):
    """The defining property of a leave-one-out baseline, checked exactly: changing sample i's value and score
    leaves b_i unchanged to the last bit (``total - own`` fails it: the rounding of the total depends on x_i)."""
    base = {"leave_one_out": st.LeaveOneOut(), "optimal_constant": st.OptimalConstant(),
            "control_variate": _const_cv()}[name]
    s, b, d = 5, 8, 3
    fv, sc = _random((s, b), dtype, 1), _random((s, b, d), dtype, 2) - 1.0
    params, z = torch.zeros(b, d, dtype=dtype), torch.zeros(s, b, d, dtype=dtype)
    ref = base(fv, sc, params, z).value
    changed = 0
    for i in range(s):
        fv2, sc2 = fv.clone(), sc.clone()
        fv2[i], sc2[i] = fv2[i] * 1e3 + 1.0, -sc2[i] * 7.0
        out = base(fv2, sc2, params, z).value
        assert torch.equal(out[i], ref[i]), f"b_{i} changed with sample {i}"
        changed += int(not torch.equal(out, ref))
    assert changed == s  # and the others' baselines do see sample i


@pytest.mark.parametrize("logits", [[1.0, -0.5, 0.3], [9.0, -9.0, 0.5]], ids=["moderate", "extreme"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_control_variate_scale_is_zero_at_two_samples(dtype, logits):
    """At S = 2 the leave-one-out variance is exactly 0, so ``c = 0``: the estimate is plain REINFORCE (the old
    moments ``sum - own`` left rounding noise, and c = noise / noise, of order 1 and dependent on the sample
    itself, moved the float32 estimate by up to 3.4 at moderate logits)."""
    x = torch.tensor([logits], dtype=dtype).expand(256, 3).clone()
    plain = st.reinforce(f_bern, x, samples=2, generator=torch.Generator().manual_seed(0))
    cv = st.reinforce(f_bern, x, samples=2, baseline=_taylor_cv(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(cv.grad, plain.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_family_scores_keep_full_relative_precision(dtype):
    """``1 - E[z]`` is formed without the subtraction: sigmoid(-theta), the other classes' probabilities, the
    exclusion probabilities of a k-subset."""
    th = torch.tensor([[20.0, -20.0, 9.0, 0.0]], dtype=dtype)
    ref = torch.sigmoid(-th.double())
    s1 = st.Bernoulli().score(th, torch.ones(1, 1, 4, dtype=dtype))[0]
    assert torch.allclose(s1.double(), ref, rtol=1e-6, atol=0)
    s0 = st.Bernoulli().score(th, torch.zeros(1, 1, 4, dtype=dtype))[0]
    assert torch.allclose(s0.double(), -torch.sigmoid(th.double()), rtol=1e-6, atol=0)
    cat = torch.tensor([[[20.0, 0.0, -1.0]]], dtype=dtype)
    sc = st.Categorical().score(cat, torch.tensor([[[[1.0, 0.0, 0.0]]]], dtype=dtype))[0, 0, 0, 0]
    p = torch.softmax(cat.double(), -1)[0, 0]
    assert math.isclose(float(sc), float(p[1] + p[2]), rel_tol=1e-6)
    ks = st.KSubset(2)
    sub = torch.tensor([[20.0, 18.0, -3.0, 0.0]], dtype=dtype)
    comp = ks.complement(sub)[0].double()
    z = ks.outcomes((4,), sub.double())  # [N, 4]
    prob = ks.log_prob(sub.double(), z[:, None])[:, 0].exp()  # [N]
    excl = (prob[:, None] * (1 - z)).sum(0)
    assert torch.allclose(comp, excl, rtol=1e-5, atol=0)
    # and the gradient of the factor probabilities (Rao-Blackwell) is p (1 - p) to full precision
    t = th.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(st.Bernoulli().factor_probs(t)[..., 1].sum(), t)
    assert torch.allclose(g.double(), (torch.sigmoid(th.double()) * torch.sigmoid(-th.double())), rtol=1e-5)


# ------------------------------------------------------------------------------------------------ closed forms
FV = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.5, 4.0], [2.0, 1.0]], dtype=torch.float64)  # [S=4, B=2]
SC = torch.tensor([[[0.5, -1.0, 2.0], [0.2, 0.3, -0.4]],
                   [[-1.5, 0.25, 1.0], [1.0, -2.0, 0.5]],
                   [[2.0, 0.75, -0.5], [-0.6, 0.1, 1.5]],
                   [[-0.3, -1.25, 0.1], [0.9, 1.1, -0.2]]], dtype=torch.float64)  # [S, B, E=3]


def _others(i):
    return [k for k in range(FV.shape[0]) if k != i]


def test_optimal_constant_matches_its_closed_form_per_parameter():
    """``b_ij = sum_{k != i} f_k s_kj^2 / sum_{k != i} s_kj^2`` (Greensmith et al., 2004), entry by entry: catches
    |s| for s^2, a missing leave-one-out, and the numerator and denominator swapped."""
    b = st.OptimalConstant()(FV, SC, torch.zeros(2, 3, dtype=torch.float64), SC).value
    assert b.shape == SC.shape
    for i in range(4):
        k = _others(i)
        num = (FV[k][..., None] * SC[k] ** 2).sum(0)
        den = (SC[k] ** 2).sum(0)
        assert torch.allclose(b[i], num / den, rtol=1e-14)


def test_leave_one_out_and_control_variate_scale_match_their_closed_forms():
    b = st.LeaveOneOut()(FV, SC, None, SC).value
    for i in range(4):
        assert torch.allclose(b[i], FV[_others(i)].mean(0), rtol=1e-14)
    hv = torch.tensor([[0.5, 1.0], [2.0, -1.0], [1.0, 0.5], [-0.5, 2.0]], dtype=torch.float64)  # h(z_i) [S, B]
    cv = st.ControlVariate(lambda z: hv, lambda p: (p * 0).sum(-1))  # E[h]'s gradient is 0 here
    out = cv(FV, SC, torch.zeros(2, 3, dtype=torch.float64), SC)
    for i in range(4):  # c_ij = Cov_{k != i}(f s_j, h s_j) / Var_{k != i}(h s_j) with the 1/n (population) moments
        k = _others(i)
        x, y = FV[k][..., None] * SC[k], hv[k][..., None] * SC[k]
        c = ((x - x.mean(0)) * (y - y.mean(0))).mean(0) / ((y - y.mean(0)) ** 2).mean(0)
        assert torch.allclose(out.value[i], c * hv[i][:, None], rtol=1e-12)


def test_exact_bernoulli_gradient_is_accurate_at_extreme_logits():
    """``exact.gradient`` differentiates ``log p`` by autograd; with ``log sigmoid(+-theta)`` it agrees with the
    score identity to float64 precision at +-20 and +-30 (torch.distributions' Bernoulli was off by 1e-7 at +-20
    and 1e-3 at 30)."""
    th = torch.tensor([[20.0, -30.0, 9.0]], dtype=torch.float64)
    got = exact.gradient(f_bern, th, st.Bernoulli())[1][0]
    ref = _exact_gradient(lambda z: f_bern(z[0]), th, 1)
    assert torch.allclose(got, ref, rtol=1e-12, atol=0)
