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
    ignores_z_nelbo,
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


def _record_aimle(monkeypatch):
    """Record, for every AIMLE backward pass, the solver's up/down solutions (to count the non-zero entries of
    ``y*(.. + lam g) - y*(.. - lam g)`` independently) and the public state (``running_nonzero``, ``lam``) after it."""
    from discreteopt.estimators import AIMLE

    steps = []
    original = AIMLE.backward

    def backward(self, maximize, theta, ctx, grad_y):
        solved = []

        def recording(x):
            ys = maximize(x)
            solved.append(ys.detach().clone())
            return ys

        lam_before = self.lam
        out = original(self, recording, theta, ctx, grad_y)
        assert len(solved) == 1, "two-sided AIMLE solves up and down targets in one batch"
        ys = solved[0]
        half = ys.shape[0] // 2  # [up; down], B*S rows each
        n = float(torch.count_nonzero(ys[:half] - ys[half:])) / half  # mean non-zero count per sample
        steps.append({"n": n, "lam_before": lam_before, "running": self.running_nonzero, "lam": self.lam,
                      "eta": self.eta, "momentum": self.momentum, "target": self.target_nonzero,
                      "bounds": (self.lam_min, self.lam_max)})
        return out

    monkeypatch.setattr(AIMLE, "backward", backward)
    return steps


def _check_aimle_lambda(steps, initial_lam, final_lam):
    """Recompute lam from the recorded counts with the documented rule and compare with the run's final_lam:
    ``m_t = (1 - momentum) m_{t-1} + momentum n_t`` (``m_0 = n_0``), ``lam <- clip(lam exp(eta (target - m_t) /
    target))``. Catches swapped running-average weights, a sign slip, a missing clip; and lam must have moved from
    its initial value in the direction of ``sum_t (target - m_t)``."""
    m, lam = None, initial_lam
    for st_ in steps:
        m = st_["n"] if m is None else (1 - st_["momentum"]) * m + st_["momentum"] * st_["n"]
        assert st_["running"] == pytest.approx(m, rel=1e-12)
        lo, hi = st_["bounds"]
        lam = min(max(lam * math.exp(st_["eta"] * (st_["target"] - m) / st_["target"]), lo), hi)
        assert st_["lam"] == pytest.approx(lam, rel=1e-12)
    assert final_lam == pytest.approx(lam, rel=1e-12)
    drive = sum(st_["target"] - st_["running"] for st_ in steps)
    assert abs(drive) > 1e-6 and math.copysign(1.0, math.log(final_lam / initial_lam)) == math.copysign(1.0, drive)
    assert len({st_["n"] for st_ in steps}) > 1  # the counts vary, so the running average is really exercised


def test_ignores_z_reference_is_the_pixel_frequency_model():
    """The 24.49-nat line of the curves: -ELBO of a decoder that outputs the training pixel frequencies (KL 0)."""
    x_train, x_test = vae.load_binary_digits(0)
    ref = ignores_z_nelbo(x_train, x_test)
    assert ref == pytest.approx(24.49, abs=0.005)  # the number the README quotes
    # the same as negative_elbo of a model whose decoder ignores z and outputs logit(p), encoder uniform (KL 0)
    model = CategoricalVAE(latents=2, classes=3, hidden=8)
    p = x_train.mean(0).clamp(1e-3, 1 - 1e-3)
    with torch.no_grad():
        for layer in (model.encoder[-1], model.decoder[-1]):
            layer.weight.zero_()
            layer.bias.zero_()
        model.decoder[-1].bias.copy_(torch.logit(p))
    got = negative_elbo(model, x_test, 2, torch.Generator().manual_seed(0))
    assert got["kl"] == pytest.approx(0.0, abs=1e-6) and got["nelbo"] == pytest.approx(ref, rel=1e-5)
    tiny_train = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    expected = -(math.log(1 - 1e-3) + math.log(0.5))  # pixel 0 always on (clipped), pixel 1 half the time
    assert ignores_z_nelbo(tiny_train, torch.tensor([[1.0, 1.0]])) == pytest.approx(expected)


def test_table_units_and_presets():
    rows = [{"estimator": "imle", "test_nelbo": 21.614, "test_recon": 18.09, "test_kl": 3.524, "train_nelbo": 21.36,
             "final_lam": 30.0, "steps": 2900, "seconds": 12.345},
            {"estimator": "gumbel", "test_nelbo": 19.71, "test_recon": 15.31, "test_kl": 4.4, "train_nelbo": 19.03,
             "final_tau": 0.5, "steps": 2900, "seconds": 10.0}]
    table = results_table({"rows": rows, "ignores_z_nelbo": 24.4938})
    assert "| imle      | 21.61      | 18.09" in table and "12.3 s" in table and "10.0 s" in table, table
    assert table.splitlines()[-1] == "(-ELBO in nats per test image; a model that ignores z scores 24.49)"
    assert list(vae.PRESETS) == ["quick", "default", "large", "paper"]
    for preset in vae.PRESETS.values():
        VAEConfig(**preset).validate()
    assert VAEConfig(estimators="imle,st").estimators == ("imle", "st")
    assert VAEConfig(estimators="all").estimators == vae.ESTIMATORS


def test_short_training_improves_the_elbo_for_every_estimator(tmp_path, monkeypatch):
    cfg = VAEConfig(epochs=3, max_steps=8, batch_size=64, hidden=64, eval_samples=4, kl_warmup=0, out=str(tmp_path),
                    progress=False)
    aimle_steps = _record_aimle(monkeypatch)
    curves = []
    plot = vae.plot_curves
    monkeypatch.setattr(vae, "plot_curves", lambda *a, **k: curves.append(k) or plot(*a, **k))
    res = run_vae(cfg)
    assert res["ignores_z_nelbo"] == pytest.approx(ignores_z_nelbo(*vae.load_binary_digits(0)))
    assert curves[0]["references"] == {"model that ignores z (pixel frequencies)": res["ignores_z_nelbo"]}
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
    assert res["rows"][1]["estimator"] == "aimle" and len(aimle_steps) == res["rows"][1]["steps"]
    _check_aimle_lambda(aimle_steps, cfg.lam, res["rows"][1]["final_lam"])  # AIMLE adapted lambda by its rule
    saved = json.loads((tmp_path / "vae.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"]))
    for key in ("curves", "reconstructions"):
        assert Path(res["files"][key]).stat().st_size > 1000
    table = results_table(res)
    assert "test -ELBO" in table and "rloo" in table


def test_example_script_runs(tmp_path, capsys):
    mod = runpy.run_path(str(ROOT / "examples" / "discrete_vae.py"))
    mod["main"](["--estimators", "imle", "gumbel", "--epochs", "2", "--max-steps", "3", "--out", str(tmp_path),
                 "--no-progress"])
    out = capsys.readouterr().out
    assert "imle" in out and "gumbel" in out and "test -ELBO" in out
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
    marginal = res["ignores_z_nelbo"]
    for r in res["rows"]:
        assert r["test_nelbo"] < marginal - 1.0, (r, marginal)
        assert r["test_kl"] > 1.0, r


def test_unknown_estimator_name_is_rejected_by_the_sampler():
    with pytest.raises(ValueError, match="estimator"):
        LatentSampler("vimco", VAEConfig())
