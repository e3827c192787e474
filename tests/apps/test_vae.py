"""Discrete VAE use case: exact checks of its pieces (KL, ELBO, estimator wiring) and short training runs."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest
import torch

from discreteopt.apps import vae
from discreteopt.apps.vae import (
    CategoricalVAE,
    LatentSampler,
    VAEConfig,
    kl_to_uniform,
    negative_elbo,
    results_table,
    run_vae,
)
from discreteopt.stochastic import Categorical, exact
from discreteopt.stochastic.exact import assert_unbiased

ROOT = Path(__file__).resolve().parents[2]


def test_kl_to_uniform_matches_torch_distributions():
    logits = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0)) * 2
    q = torch.distributions.Categorical(logits=logits)
    p = torch.distributions.Categorical(logits=torch.zeros(4, 3, 5))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)  # [4, 3] -> [4]
    torch.testing.assert_close(kl_to_uniform(logits), expected)
    assert kl_to_uniform(torch.zeros(2, 3, 5)).abs().max() < 1e-6  # q uniform
    peaked = torch.full((1, 3, 5), -50.0)
    peaked[..., 0] = 50.0
    torch.testing.assert_close(kl_to_uniform(peaked), torch.tensor([3 * math.log(5)]))  # max: V log K


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    model = CategoricalVAE(latents=2, classes=3, hidden=8)
    with torch.no_grad():  # spread the encoder's logits so that q is far from uniform
        model.encoder[-1].weight.mul_(5.0)
    return model


def test_negative_elbo_matches_enumeration():
    """Monte Carlo -ELBO with exact samples vs the exact value over all 3^2 codes (tolerance: 4.5 exact SE)."""
    model = _tiny_model()
    x = (torch.rand(6, 64, generator=torch.Generator().manual_seed(1)) > 0.6).float()
    samples = 400
    got = negative_elbo(model, x, samples, torch.Generator().manual_seed(2))
    with torch.no_grad():
        theta = model.encode(x)  # [6, 2, 3]
        f = model.reconstruction(x)
        mean = exact.expectation(f, theta, Categorical())  # [6]
        second = exact.expectation(lambda z: f(z) ** 2, theta, Categorical())
        kl = kl_to_uniform(theta)
    se = math.sqrt(float((second - mean**2).clamp_min(0).mean()) / samples / len(x))
    assert se > 0
    assert abs(got["recon"] - float(mean.mean())) <= 4.5 * se
    assert got["kl"] == pytest.approx(float(kl.mean()), rel=1e-6)
    assert got["nelbo"] == pytest.approx(got["recon"] + got["kl"], rel=1e-6)


def _linear_f(c):
    """``f(z [S, B, V, K]) = <c, z>`` summed per problem -> [S, B]."""
    return lambda z: (z * c).sum(dim=(-2, -1))


def test_rloo_sampler_gradient_is_unbiased():
    """The app's REINFORCE+RLOO loss (batch mean) has the exact gradient of mean_b E[f_b] in expectation.

    ``R`` independent replicas of the ``[2, 2, 3]`` problem run as one batch of ``2R`` problems (``f`` acts on each
    problem separately), so one backward gives ``R`` independent estimates.
    """
    gen = torch.Generator().manual_seed(0)
    b, r = 2, 4000
    theta0 = torch.randn(b, 2, 3, generator=gen)
    c = torch.randn(b, 2, 3, generator=gen)

    def f_for(cc):
        return lambda z: torch.sin(_linear_f(cc)(z)) + (z[..., 0] * z[..., 1].flip(-1)).sum(-1)  # non-linear in z

    _, g_exact = exact.gradient(f_for(c), theta0, Categorical())
    sampler = LatentSampler("rloo", VAEConfig(samples=3))
    torch.manual_seed(1)
    theta = theta0.repeat(r, 1, 1).requires_grad_(True)  # [R*B, V, K], replica-major
    sampler.loss(theta, f_for(c.repeat(r, 1, 1)), 0).backward()
    ests = theta.grad.reshape(r, b, 2, 3) * (r * b)  # undo the batch mean over R*B problems
    assert_unbiased(ests, g_exact)


def test_imle_sampler_draws_exact_samples_with_the_closed_form_mean_gradient():
    """I-MLE on [B*V, K] rows, reshaped to [S, B, V, K]: the forward codes are exact samples of q, and for a linear
    f the mean gradient is exactly ``(softmax(theta) - softmax(theta - lam * c / B)) / lam`` (Gumbel noise).

    ``R`` replicas run as one batch of ``R*B`` problems with ``c`` scaled by ``R`` (same per-problem target).
    """
    gen = torch.Generator().manual_seed(0)
    b, v, k, s, lam, r = 2, 3, 4, 2, 0.7, 3000
    theta0 = torch.randn(b, v, k, generator=gen)
    c = torch.randn(b, v, k, generator=gen) * 2
    sampler = LatentSampler("imle", VAEConfig(samples=s, lam=lam))
    torch.manual_seed(1)
    codes = []

    def f(z):  # [S, R*B, V, K] -> [S, R*B]
        codes.append(z.detach())
        return _linear_f(c.repeat(r, 1, 1) * r)(z)

    theta = theta0.repeat(r, 1, 1).requires_grad_(True)
    sampler.loss(theta, f, 0).backward()
    z = codes[0].reshape(s * r, b, v, k)  # [S, R*B, V, K] -> [S*R, B, V, K]
    assert bool((z.sum(-1) == 1).all()) and bool(((z == 0) | (z == 1)).all())
    assert_unbiased(z, torch.softmax(theta0, -1))  # the code of (b, v) follows softmax(theta[b, v])
    target = (torch.softmax(theta0, -1) - torch.softmax(theta0 - lam * c / b, -1)) / lam
    # I-MLE's estimate is a finite difference over lam, not scaled by the loss: no factor to undo
    assert_unbiased(theta.grad.reshape(r, b, v, k), target)


@pytest.mark.parametrize("kwargs, name", [
    ({"estimators": ("imle", "nope")}, "estimators"), ({"estimators": ()}, "estimators"),
    ({"estimators": ("st", "st")}, "estimators"), ({"latents": 0}, "latents"), ({"classes": 1}, "classes"),
    ({"samples": 1}, "samples"), ({"lr": -1.0}, "lr"), ({"lam": float("nan")}, "lam"),
    ({"tau": 0.4, "tau_min": 0.5}, "tau_min"), ({"tau_rate": -1.0}, "tau_rate"), ({"epochs": 2.5}, "epochs"),
    ({"max_steps": 0}, "max_steps"), ({"kl_warmup": -1}, "kl_warmup"), ({"eval_samples": 0}, "eval_samples"),
])
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        run_vae(VAEConfig(out=None, progress=False, **kwargs))


def test_samples_one_is_fine_without_rloo():
    VAEConfig(estimators=("imle", "gumbel"), samples=1).validate()


def test_device_must_exist():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="device"):
        run_vae(VAEConfig(device="cuda", out=None, progress=False))


def test_short_training_improves_the_elbo_for_every_estimator(tmp_path):
    cfg = VAEConfig(epochs=3, max_steps=8, batch_size=64, hidden=64, eval_samples=4, kl_warmup=0, out=str(tmp_path),
                    progress=False)
    res = run_vae(cfg)
    assert [r["estimator"] for r in res["rows"]] == list(vae.ESTIMATORS)
    x_train, x_test = vae.load_binary_digits(0)
    torch.manual_seed(0)
    untrained = negative_elbo(CategoricalVAE(cfg.latents, cfg.classes, cfg.hidden), x_test, 4)["nelbo"]
    for r in res["rows"]:
        curve = res["curves"]["test_nelbo"][r["estimator"]]
        train = res["curves"]["train_loss"][r["estimator"]]
        assert len(curve) == 3 and all(math.isfinite(v) for v in curve + train)
        assert curve[-1] < untrained - 5.0, r  # 43 nats untrained; the pixel marginals alone give ~25
        assert train[-1] < train[0], r
        assert r["test_nelbo"] == pytest.approx(r["test_recon"] + r["test_kl"], rel=1e-5)
        assert r["steps"] == 24
    assert 0 < res["rows"][1]["final_lam"] <= 1e3  # AIMLE adapted lambda
    saved = json.loads((tmp_path / "vae.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"]))
    for key in ("curves", "reconstructions"):
        assert Path(res["files"][key]).stat().st_size > 1000
    table = results_table(res)
    assert "test_nelbo" in table and "rloo" in table


def test_example_script_runs(tmp_path, capsys):
    mod = runpy.run_path(str(ROOT / "examples" / "discrete_vae.py"))
    mod["main"](["--estimators", "imle", "gumbel", "--epochs", "2", "--max-steps", "3", "--out", str(tmp_path),
                 "--no-progress"])
    out = capsys.readouterr().out
    assert "imle" in out and "gumbel" in out and "test_nelbo" in out
    assert (tmp_path / "vae.json").exists() and (tmp_path / "vae_curves.png").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_estimator_trains_on_cuda(tmp_path):
    res = run_vae(VAEConfig(device="cuda", epochs=1, max_steps=3, eval_samples=2, out=str(tmp_path), progress=False))
    assert all(math.isfinite(r["test_nelbo"]) for r in res["rows"])
    assert (tmp_path / "vae_reconstructions.png").exists()


@pytest.mark.slow
def test_default_run_uses_the_latents():
    """Default settings: every estimator beats the best code-free model (the pixel marginals, ~24.6 nats) by more
    than a nat on test -ELBO, with a non-trivial KL (the latents carry information)."""
    res = run_vae(VAEConfig(out=None, progress=False))
    x_train, x_test = vae.load_binary_digits(0)
    p = x_train.mean(0).clamp(1e-3, 1 - 1e-3)
    marginal = float(-(x_test * p.log() + (1 - x_test) * (1 - p).log()).sum(-1).mean())
    for r in res["rows"]:
        assert r["test_nelbo"] < marginal - 1.0, (r, marginal)
        assert r["test_kl"] > 1.0, r


def test_unknown_estimator_name_is_rejected_by_the_sampler():
    with pytest.raises(ValueError, match="estimator"):
        LatentSampler("vimco", VAEConfig())
