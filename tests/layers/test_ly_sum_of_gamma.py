"""Sum-of-Gamma noise: the Gamma-mixture sampler has the law of the published n_iter-term sum.

Checked: the mixing law against a brute-force convolution of negative binomials, the mean and variance against
the closed form, a two-sample Kolmogorov-Smirnov test against the previous sampler (n_iter Gamma draws, copied
below as the reference), the exact law at k = 1 (max of n Exp(1)), the direct path for large n_iter, dtypes,
devices and seeding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from discreteopt.noise import SumOfGamma
from discreteopt.noise import sum_of_gamma as sog_module
from discreteopt.noise.sum_of_gamma import mixture_weights


def reference_sum_of_gamma(shape, k, n_iter, scale, generator, dtype=torch.float64):
    """The previous sampler: ``(scale / k) (sum_i Gamma(1/k, rate i/k) - log n_iter)``, one call per term."""
    kk = float(k)
    total = torch.zeros(shape, dtype=dtype)
    conc = torch.full(shape, 1.0 / kk, dtype=dtype)
    for i in range(1, n_iter + 1):
        total += torch._standard_gamma(conc, generator=generator) * (kk / i)
    return (scale / kk) * (total - math.log(n_iter))


def closed_form_moments(k, n_iter, scale):
    mean = scale / k * (sum(1.0 / i for i in range(1, n_iter + 1)) - math.log(n_iter))
    var = scale**2 / k * sum(1.0 / i**2 for i in range(1, n_iter + 1))
    return mean, var


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("k, n_iter", [(1, 10), (3, 10), (10, 5), (144, 10), (2, 2), (5, 1)])
def test_mixing_law_equals_the_convolution_of_negative_binomials(k, n_iter):
    p = mixture_weights(k, n_iter)
    assert p.sum() == pytest.approx(1.0, abs=1e-14) and (p >= 0).all()
    size = len(p) + 50
    conv = np.zeros(size)
    conv[0] = 1.0
    for i in range(1, n_iter):  # K_i ~ NegBin(1/k, success i/n), failures counted
        conv = np.convolve(conv, stats.nbinom.pmf(np.arange(size), 1.0 / k, i / n_iter))[:size]
    np.testing.assert_allclose(p, conv[: len(p)], rtol=1e-9, atol=1e-18)
    assert conv[len(p):].sum() < 1e-17  # the truncated tail is negligible


@pytest.mark.parametrize("k, n_iter, scale", [(10, 10, 1.0), (1, 10, 1.0), (3, 7, 2.5), (144, 10, 0.5),
                                              (4, 100, 1.0)])
def test_mean_and_variance_match_the_closed_form(k, n_iter, scale):
    n = 200_000
    x = SumOfGamma(k, n_iter, scale).sample((n,), _gen(1), dtype=torch.float64)
    mean, var = closed_form_moments(k, n_iter, scale)
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / n)
    m4 = float(((x - x.mean()) ** 4).mean())
    assert abs(float(x.var()) - var) < 5 * math.sqrt((m4 - var**2) / n)


@pytest.mark.parametrize("k, n_iter, seed", [(10, 10, 0), (1, 10, 1), (144, 10, 2), (3, 20, 3), (50, 3, 4)])
def test_two_sample_ks_against_the_previous_sampler(k, n_iter, seed):
    n = 40_000
    new = SumOfGamma(k, n_iter, scale=1.3).sample((n,), _gen(seed), dtype=torch.float64).numpy()
    old = reference_sum_of_gamma((n,), k, n_iter, 1.3, _gen(seed + 100)).numpy()
    assert stats.ks_2samp(new, old).pvalue > 0.01


def test_ks_has_power_against_a_wrong_mixing_scale():
    """The two-sample test above would notice a slip in the scale of the mixture (k/n -> k/(n+1))."""
    n = 40_000
    old = reference_sum_of_gamma((n,), 10, 10, 1.0, _gen(5)).numpy()
    x = SumOfGamma(10, 10).sample((n,), _gen(6), dtype=torch.float64).numpy()
    wrong = (x + math.log(10) / 10) * 10 / 11 - math.log(10) / 10  # S scaled by n/(n+1)
    assert stats.ks_2samp(wrong, old).pvalue < 1e-6


def test_k_equal_one_is_the_max_of_exponentials_exactly():
    n_iter, scale = 10, 2.0
    x = SumOfGamma(1, n_iter, scale).sample((50_000,), _gen(7), dtype=torch.float64).numpy()
    s = x / scale + math.log(n_iter)  # max of n_iter Exp(1): CDF (1 - e^-s)^n
    assert stats.kstest(s, lambda t: (-np.expm1(-np.maximum(t, 0))) ** n_iter).pvalue > 0.01


def test_large_n_iter_draws_the_terms_directly_with_the_same_law(monkeypatch):
    monkeypatch.setattr(sog_module, "MIXTURE_MAX_N_ITER", 0)  # force the direct path at a small n_iter
    noise = SumOfGamma(4, 10, 1.0)
    x = noise.sample((100_000,), _gen(8), dtype=torch.float64)
    assert not noise._cdf  # no mixture table built
    mean, var = closed_form_moments(4, 10, 1.0)
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / 1e5)
    assert abs(float(x.var()) - var) < 0.03 * var
    old = reference_sum_of_gamma((40_000,), 4, 10, 1.0, _gen(9)).numpy()
    assert stats.ks_2samp(x[:40_000].numpy(), old).pvalue > 0.01


def test_k_sum_of_copies_tends_to_the_max_of_exponentials():
    k, n_iter, n = 5, 10, 100_000
    x = SumOfGamma(k, n_iter).sample((n, k), _gen(10), dtype=torch.float64).sum(-1).numpy() + math.log(n_iter)
    assert stats.kstest(x, lambda t: (-np.expm1(-np.maximum(t, 0))) ** n_iter).pvalue > 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtype_shape_seed_and_finiteness(dtype):
    noise = SumOfGamma(10, 10)
    a = noise.sample((4, 3, 5), _gen(11), dtype=dtype)
    b = noise.sample((4, 3, 5), _gen(11), dtype=dtype)
    c = noise.sample((4, 3, 5), _gen(12), dtype=dtype)
    assert a.dtype == dtype and a.shape == (4, 3, 5) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert noise.sample((0, 3), _gen(1), dtype=dtype).shape == (0, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_on_the_device_with_the_same_moments():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = SumOfGamma(10, 10).sample((200_000,), g, device="cuda", dtype=torch.float64)
    assert x.device.type == "cuda"
    mean, var = closed_form_moments(10, 10, 1.0)
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / 2e5)
