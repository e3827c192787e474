"""Discrete VAE with categorical latents on binarised scikit-learn digits.

The model of Jang, Gu & Poole (ICLR 2017, "Categorical reparameterization with Gumbel-softmax") and Niepert,
Minervini & Franceschi (NeurIPS 2021, "Implicit MLE", Sec. 6.3): an encoder maps a binary image ``x [B, 64]`` to
the logits ``theta [B, V, K]`` of ``V`` independent categorical variables with ``K`` classes,
``q(z | x) = prod_v softmax(theta_v)``; a decoder maps the one-hot code ``z [B, V, K]`` to Bernoulli logits of the
64 pixels. The prior is uniform, ``p(z) = K^-V``. Training minimises the negative ELBO

    -ELBO(x) = E_{z ~ q(z|x)} [ -log p(x | z) ] + KL(q(z|x) || p(z)),
    KL = sum_v sum_k q_vk (log q_vk + log K)                       (closed form, differentiated exactly)

and the estimators differ only in how the gradient of the reconstruction term reaches ``theta``:

* ``imle``   -- :class:`~discreteopt.solvers.Argmax` per latent variable in a :class:`~discreteopt.DiscreteLayer`
  with :class:`~discreteopt.estimators.IMLE` and Gumbel noise: the forward ``argmax(theta_v + g)`` is an exact sample
  of ``q``; the layer sees the ``[B*V, K]`` rows;
* ``aimle``  -- the same with :class:`~discreteopt.estimators.AIMLE` (adaptive ``lambda``, central differences);
* ``gumbel`` -- Gumbel-softmax relaxation at temperature ``tau`` (:func:`discreteopt.stochastic.concrete`); the
  decoder sees relaxed codes during training;
* ``st``     -- straight-through Gumbel (one-hot forward, relaxed backward);
* ``rloo``   -- REINFORCE with the leave-one-out baseline (:func:`discreteopt.stochastic.rloo`, Kool et al. 2019),
  unbiased, needs ``samples >= 2``.

Every estimator draws ``samples`` codes per image per step (the same number of decoder evaluations); the loss is the
batch mean, so I-MLE's ``lam`` acts on ``dL/dz`` of that mean. The KL weight rises linearly from 0 to 1 over the first
``kl_warmup`` steps (Bowman et al., 2016; the decoder otherwise settles on the pixel marginals before the codes carry
information). Evaluation is identical for all: the negative ELBO on the test split with ``eval_samples`` *exact*
categorical samples per image (relaxed codes are never used there), in nats per image.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.digits import load_digits_data
from ..models import MLP
from .common import (
    batches,
    format_table,
    plot_curves,
    progress,
    pyplot,
    resolve_device,
    save_figure,
    save_json,
    seed_everything,
)

ESTIMATORS = ("imle", "aimle", "gumbel", "st", "rloo")
N_PIXELS = 64


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclasses.dataclass
class VAEConfig:
    """Settings of ``discreteopt vae`` (one training run per estimator)."""

    estimators: tuple[str, ...] = field(default=ESTIMATORS, metadata=_help(
        f"gradient estimators to compare, among {', '.join(ESTIMATORS)}"))
    latents: int = field(default=20, metadata=_help("number V of categorical latent variables"))
    classes: int = field(default=10, metadata=_help("number K of classes of each latent variable"))
    hidden: int = field(default=128, metadata=_help(
        "width h of the MLPs: encoder 64-2h-h-VK, decoder VK-h-2h-64"))
    epochs: int = field(default=100, metadata=_help("training epochs per estimator"))
    batch_size: int = field(default=50, metadata=_help("images per training step"))
    lr: float = field(default=1e-3, metadata=_help("Adam learning rate"))
    samples: int = field(default=2, metadata=_help(
        "latent samples per image and step, for every estimator (rloo needs >= 2)"))
    lam: float = field(default=30.0, metadata=_help(
        "I-MLE finite-difference step lambda (on the gradient of the batch-mean loss); AIMLE's initial lambda"))
    aimle_target: float = field(default=1.0, metadata=_help(
        "AIMLE: target number of non-zero gradient entries per latent variable and sample"))
    tau: float = field(default=1.0, metadata=_help("initial Gumbel-softmax / ST temperature"))
    tau_min: float = field(default=0.5, metadata=_help("lowest temperature of the annealing schedule"))
    tau_rate: float = field(default=2e-3, metadata=_help(
        "annealing rate r: tau_t = max(tau_min, tau * exp(-r t)), t = training step (0: constant tau)"))
    kl_warmup: int = field(default=1500, metadata=_help(
        "steps over which the KL weight rises linearly from 0 to 1 (0: full KL from the start)"))
    eval_samples: int = field(default=10, metadata=_help("exact latent samples per test image for the ELBO"))
    seed: int = field(default=0, metadata=_help("random seed (data split, initialisation, noise)"))
    device: str = field(default="cpu", metadata=_help("torch device: cpu, cuda, cuda:N or auto"))
    out: str | None = field(default="runs/vae", metadata=_help(
        "folder for vae.json and the PNG figures (None: do not save)"))
    progress: bool = field(default=True, metadata=_help("show progress bars"))
    max_steps: int | None = field(default=None, metadata=_help(
        "stop each epoch after this many steps (smoke runs); None = full epochs"))

    def validate(self) -> None:
        bad = [e for e in self.estimators if e not in ESTIMATORS]
        if bad or not self.estimators:
            raise ValueError(f"estimators must be a non-empty subset of {', '.join(ESTIMATORS)}; "
                             f"got {list(self.estimators)}")
        if len(set(self.estimators)) != len(self.estimators):
            raise ValueError(f"estimators must not repeat a name; got {list(self.estimators)}")
        for name in ("latents", "epochs", "batch_size", "samples", "eval_samples", "hidden"):
            _check_int(getattr(self, name), name, 1)
        _check_int(self.classes, "classes", 2)
        _check_int(self.kl_warmup, "kl_warmup", 0)
        if self.max_steps is not None:
            _check_int(self.max_steps, "max_steps", 1)
        for name in ("lr", "lam", "aimle_target", "tau", "tau_min"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"{name} must be a positive finite number; got {value!r}")
        if not (isinstance(self.tau_rate, (int, float)) and math.isfinite(self.tau_rate) and self.tau_rate >= 0):
            raise ValueError(f"tau_rate must be a non-negative finite number; got {self.tau_rate!r}")
        if self.tau_min > self.tau:
            raise ValueError(f"tau_min must be <= tau; got tau_min={self.tau_min}, tau={self.tau}")
        if "rloo" in self.estimators and self.samples < 2:
            raise ValueError(f"samples must be >= 2 when rloo is among the estimators (the leave-one-out baseline "
                             f"uses the other samples); got samples={self.samples}")


def _check_int(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


#: ``--preset quick``: every estimator for 20 epochs (well under a minute each on 2 CPU cores)
PRESETS = {"quick": {"epochs": 20, "kl_warmup": 300}}


# ------------------------------------------------------------------------------------------------ model
class CategoricalVAE(nn.Module):
    """Encoder ``x [B, 64] -> theta [B, V, K]`` and decoder ``z [*, V, K] -> pixel logits [*, 64]`` (MLPs)."""

    def __init__(self, latents: int = 20, classes: int = 10, hidden: int = 256, n_pixels: int = N_PIXELS):
        super().__init__()
        self.latents, self.classes = int(latents), int(classes)
        self.encoder = MLP([n_pixels, 2 * hidden, hidden, latents * classes])
        self.decoder = MLP([latents * classes, hidden, 2 * hidden, n_pixels])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).reshape(x.shape[0], self.latents, self.classes)  # [B, V*K] -> [B, V, K]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.flatten(-2))  # [*, V, K] -> [*, V*K] -> [*, 64]

    def reconstruction(self, x: torch.Tensor):
        """``f(z [S, B, V, K]) -> [S, B]``: ``-log p(x | z)`` in nats, summed over pixels."""
        def f(z: torch.Tensor) -> torch.Tensor:
            logits = self.decode(z)  # [S, B, 64]
            return F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        return f


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """``KL(prod_v softmax(theta_v) || Uniform(K)^V) = sum_v sum_k q_vk (log q_vk + log K)``: ``[B, V, K] -> [B]``."""
    logq = torch.log_softmax(logits, dim=-1)  # [B, V, K]
    return (logq.exp() * (logq + math.log(logits.shape[-1]))).sum(dim=(-2, -1))


# ------------------------------------------------------------------------------------------------ estimators
class LatentSampler:
    """One estimator: ``loss(theta [B, V, K], f, step) -> scalar``, the batch mean of the reconstruction term.

    ``f`` maps codes ``[S, B, V, K]`` to ``-log p(x | z)`` ``[S, B]``; the KL term is added by the caller.
    """

    def __init__(self, name: str, cfg: VAEConfig):
        from .. import estimators, noise, stochastic
        from ..layers import DiscreteLayer
        from ..solvers import Argmax

        if name not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {name!r}")
        self.name, self.cfg = name, cfg
        self.family = stochastic.Categorical()
        self.estimator = None
        if name in ("imle", "aimle"):
            if name == "imle":
                self.estimator = estimators.IMLE(lam=cfg.lam, samples=cfg.samples, noise=noise.Gumbel())
            else:
                self.estimator = estimators.AIMLE(target=cfg.aimle_target, samples=cfg.samples,
                                                  noise=noise.Gumbel(), initial_lam=cfg.lam, two_sided=True)
            self.layer = DiscreteLayer(Argmax(), self.estimator, return_samples=True)
        self.schedule = stochastic.TemperatureSchedule(tau0=cfg.tau, rate=float(cfg.tau_rate), tau_min=cfg.tau_min)

    def tau(self, step: int) -> float:
        return self.schedule(step)

    def loss(self, theta: torch.Tensor, f, step: int) -> torch.Tensor:
        from .. import stochastic

        b, v, k = theta.shape
        s = self.cfg.samples
        if self.estimator is not None:
            y = self.layer(theta.reshape(b * v, k))  # [B*V, K] -> [B*V, S, K]
            z = y.reshape(b, v, s, k).permute(2, 0, 1, 3)  # [B*V, S, K] -> [B, V, S, K] -> [S, B, V, K]
            return f(z).mean()
        if self.name == "rloo":
            est = stochastic.rloo(f, theta, family=self.family, samples=s)
        else:
            est = stochastic.concrete(f, theta, family=self.family, tau=self.tau(step), hard=self.name == "st",
                                      samples=s)
        return est.surrogate / b  # sum over the batch of per-image estimates -> mean

    @property
    def lam(self) -> float | None:
        return None if self.estimator is None else float(self.estimator.lam)


# ------------------------------------------------------------------------------------------------ loop
@torch.no_grad()
def negative_elbo(model: CategoricalVAE, x: torch.Tensor, samples: int, generator: torch.Generator | None = None,
                  chunk: int = 512) -> dict[str, float]:
    """Mean over images of ``-ELBO`` (nats) and its two terms, with ``samples`` exact codes ``z ~ q(z|x)``."""
    from ..stochastic import Categorical

    model.eval()
    family = Categorical()
    recon, kl = [], []
    for xb in x.split(chunk):
        theta = model.encode(xb)  # [b, V, K]
        z = family.sample(theta, samples, generator)  # [S, b, V, K]
        recon.append(model.reconstruction(xb)(z).mean(0))  # [b]
        kl.append(kl_to_uniform(theta))  # [b]
    r, k = torch.cat(recon), torch.cat(kl)
    return {"nelbo": float((r + k).mean()), "recon": float(r.mean()), "kl": float(k.mean())}


def load_binary_digits(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Binarised digits (threshold 0.5), train and test pixels ``[N, 64]``."""
    xtr, _, xte, _ = load_digits_data(seed=seed, binarize=True)
    return torch.from_numpy(xtr), torch.from_numpy(xte)


def train_one(name: str, cfg: VAEConfig, x_train: torch.Tensor, x_test: torch.Tensor,
              device: torch.device) -> dict[str, Any]:
    """Train one VAE with estimator ``name``; per-epoch train loss and test ``-ELBO`` curves, final metrics."""
    gen = seed_everything(cfg.seed)
    model = CategoricalVAE(cfg.latents, cfg.classes, cfg.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sampler = LatentSampler(name, cfg)
    eval_gen = torch.Generator(device=device)
    train_curve, test_curve = [], []
    step = 0
    t0 = time.perf_counter()
    for _ in progress(range(cfg.epochs), cfg.progress, desc=f"vae[{name}]"):
        model.train()
        losses = []
        steps = batches(len(x_train), cfg.batch_size, gen)
        for idx in steps[: cfg.max_steps] if cfg.max_steps else steps:
            x = x_train[idx].to(device)  # [b, 64]
            theta = model.encode(x)  # [b, V, K]
            beta = min(1.0, (step + 1) / cfg.kl_warmup) if cfg.kl_warmup else 1.0
            loss = sampler.loss(theta, model.reconstruction(x), step) + beta * kl_to_uniform(theta).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        train_curve.append(float(np.mean(losses)))
        eval_gen.manual_seed(cfg.seed + 1)
        test_curve.append(negative_elbo(model, x_test, cfg.eval_samples, eval_gen)["nelbo"])
    seconds = time.perf_counter() - t0
    eval_gen.manual_seed(cfg.seed + 2)
    test = negative_elbo(model, x_test, cfg.eval_samples, eval_gen)
    train = negative_elbo(model, x_train.to(device), cfg.eval_samples, eval_gen)
    row = {"estimator": name, "test_nelbo": test["nelbo"], "test_recon": test["recon"], "test_kl": test["kl"],
           "train_nelbo": train["nelbo"], "steps": step, "seconds": round(seconds, 2)}
    if sampler.lam is not None:
        row["final_lam"] = sampler.lam
    if name in ("gumbel", "st"):
        row["final_tau"] = sampler.tau(step)
    return {"row": row, "train_curve": train_curve, "test_curve": test_curve, "model": model}


def run_vae(cfg: VAEConfig) -> dict[str, Any]:
    """Train one VAE per estimator; ``-ELBO`` table, curves (JSON + PNG under ``cfg.out``)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    x_train, x_test = load_binary_digits(cfg.seed)
    x_train, x_test = x_train.to(device), x_test.to(device)
    rows, train_curves, test_curves, models = [], {}, {}, {}
    for name in cfg.estimators:
        r = train_one(name, cfg, x_train, x_test, device)
        rows.append(r["row"])
        train_curves[name], test_curves[name] = r["train_curve"], r["test_curve"]
        models[name] = r["model"]
    result: dict[str, Any] = {
        "task": "discrete_vae", "data": f"sklearn digits binarised (train {len(x_train)}, test {len(x_test)})",
        "config": dataclasses.asdict(cfg), "rows": rows,
        "curves": {"train_loss": train_curves, "test_nelbo": test_curves}}
    if cfg.out:
        out = Path(cfg.out)
        files = {"json": str(out / "vae.json"),
                 "curves": str(plot_curves(test_curves, out / "vae_curves.png", "epoch", "test -ELBO (nats)",
                                           f"Discrete VAE on digits: {cfg.latents} x {cfg.classes}-way latents")),
                 "reconstructions": str(plot_reconstructions(models, x_test, out / "vae_reconstructions.png",
                                                             seed=cfg.seed))}
        result["files"] = files
        save_json(result, files["json"])
    return result


def results_table(result: dict[str, Any]) -> str:
    cols = [c for c in ("estimator", "test_nelbo", "test_recon", "test_kl", "train_nelbo", "final_lam",
                        "final_tau", "steps", "seconds") if any(c in r for r in result["rows"])]
    return format_table(result["rows"], cols, floatfmt=".2f")


@torch.no_grad()
def plot_reconstructions(models: dict[str, CategoricalVAE], x: torch.Tensor, path: str | Path, n: int = 8,
                         seed: int = 0) -> Path:
    """First row: test digits; one row per estimator: the decoder's mean image for an exact code ``z ~ q(z|x)``."""
    from ..stochastic import Categorical

    plt = pyplot()
    xs = x[:n]
    rows = [("data", xs.cpu())]
    for name, model in models.items():
        model.eval()
        gen = torch.Generator(device=xs.device).manual_seed(seed)
        z = Categorical().sample(model.encode(xs), 1, gen)[0]  # [n, V, K]
        rows.append((name, torch.sigmoid(model.decode(z)).cpu()))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.2 * len(rows)), squeeze=False)
    for i, (label, imgs) in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(imgs[j].reshape(8, 8).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle("Test digits and reconstructions (one exact latent sample)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
