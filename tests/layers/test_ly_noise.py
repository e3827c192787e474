"""Noise distributions: moments, scores, reproducibility, device/dtype, Sum-of-Gamma law."""

from __future__ import annotations

import math

import pytest
import torch

from discreteopt.noise import Antithetic, Gumbel, Logistic, Normal, SumOfGamma

EULER = 0.5772156649015329
N = 200_000


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("noise, mean, var", [
    (Gumbel(), EULER, math.pi**2 / 6),
    (Gumbel(scale=2.0), 2 * EULER, 4 * math.pi**2 / 6),
    (Normal(scale=0.5), 0.0, 0.25),
    (Logistic(scale=1.5), 0.0, math.pi**2 * 2.25 / 3),
])
def test_moments_match_theory_within_standard_errors(noise, mean, var):
    x = noise.sample((N,), _gen(), dtype=torch.float64)
    se_mean = math.sqrt(var / N)
    assert abs(float(x.mean()) - mean) < 5 * se_mean
    # variance: SE of the sample variance <= sqrt((m4 - var^2)/N); use the sample fourth moment
    m4 = float(((x - x.mean()) ** 4).mean())
    assert abs(float(x.var()) - var) < 5 * math.sqrt((m4 - var**2) / N)


@pytest.mark.parametrize("noise", [Gumbel(scale=0.7), Normal(scale=1.3), Logistic(scale=0.4)])
def test_score_is_derivative_of_log_prob_and_density_integrates_to_one(noise):
    eps = noise.sample((50,), _gen(1), dtype=torch.float64).requires_grad_(True)
    (auto,) = torch.autograd.grad(noise.log_prob(eps).sum(), eps)
    torch.testing.assert_close(noise.score(eps.detach()), auto)
    grid = torch.linspace(-60, 60, 400_001, dtype=torch.float64)
    mass = torch.trapezoid(noise.log_prob(grid).exp(), grid)
    assert abs(float(mass) - 1.0) < 1e-6


def test_sum_of_gamma_k_sum_is_max_of_exponentials_minus_log():
    # sum of k SoG draws = max of n_iter Exp(1) - log n_iter: mean H_n - log n, variance sum 1/i^2
    k, n_iter = 3, 10
    x = SumOfGamma(k, n_iter).sample((N, k), _gen(2), dtype=torch.float64).sum(-1)
    mean = sum(1 / i for i in range(1, n_iter + 1)) - math.log(n_iter)
    var = sum(1 / i**2 for i in range(1, n_iter + 1))
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / N)
    assert abs(float(x.var()) - var) < 0.05 * var
    with pytest.raises(NotImplementedError):
        SumOfGamma(k).score(x)


@pytest.mark.parametrize("noise", [Gumbel(), Normal(), Logistic(), SumOfGamma(2)])
def test_seeded_generator_reproduces_and_dtype_is_kept(noise):
    a = noise.sample((3, 4), _gen(7), dtype=torch.float64)
    b = noise.sample((3, 4), _gen(7), dtype=torch.float64)
    c = noise.sample((3, 4), _gen(8), dtype=torch.float64)
    assert a.dtype == torch.float64 and a.shape == (3, 4)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert torch.isfinite(noise.sample((10_000,), _gen(3), dtype=torch.float32)).all()


def test_antithetic_pairs_and_errors():
    z = Antithetic(Normal()).sample((2, 4, 3), _gen(), dtype=torch.float64)
    torch.testing.assert_close(z[:, 2:], -z[:, :2])
    with pytest.raises(ValueError, match="even number of samples"):
        Antithetic(Normal()).sample((2, 3, 3), _gen())
    with pytest.raises(ValueError, match="symmetric"):
        Antithetic(Gumbel())


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="scale"):
        Normal(scale=0.0)
    with pytest.raises(ValueError, match="k"):
        SumOfGamma(0)
    with pytest.raises(ValueError, match="n_iter"):
        SumOfGamma(2, n_iter=0)
    with pytest.raises(ValueError, match="dtype"):
        Normal().sample((2,), dtype=torch.int64)
    for cls in (Gumbel, Normal, Logistic):  # a bool is not a scale (True == 1 used to pass)
        for bad in (True, float("nan"), float("inf"), -1.0, "1"):
            with pytest.raises(ValueError, match="scale"):
                cls(scale=bad)
    with pytest.raises(ValueError, match="base"):
        Antithetic("normal")
    assert Antithetic(Normal(scale=0.3)).scale == 0.3  # the estimator's scale check sees the base's scale


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_noise_is_drawn_on_the_requested_device():
    g = torch.Generator(device="cuda").manual_seed(0)
    for noise in (Gumbel(), Normal(), Logistic(), SumOfGamma(2)):
        assert noise.sample((4,), g, device="cuda").device.type == "cuda"
    with pytest.raises(ValueError, match="generator"):
        Normal().sample((4,), torch.Generator(), device="cuda")
