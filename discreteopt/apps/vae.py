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
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.digits import load_digits_data
from ..models import MLP
from .common import (
    Column,
    batches,
    format_table,
    plot_curves,
    progress,
    pyplot,
    resolve_device,
    save_figure,
    save_json,
    seconds,
    seed_everything,
)

ESTIMATORS = ("imle", "aimle", "gumbel", "st", "rloo")
N_PIXELS = 64


def _names(value: Any) -> tuple[str, ...]:
    """``"imle,st"`` or ``("imle", "st")`` -> ``("imle", "st")`` (a string is split at commas)."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@dataclasses.dataclass
class VAEConfig:
    """Settings of ``discreteopt vae`` (one training run per estimator).

    Example::

        cfg = VAEConfig(estimators=("imle", "st"), epochs=20, out=None)
        result = run_vae(cfg)            # result["rows"]: test -ELBO per estimator
    """

    #: gradient estimators to compare, among imle, aimle, gumbel, st, rloo (``("all",)``: every one)
    estimators: tuple[str, ...] = ESTIMATORS
    #: number V of categorical latent variables
    latents: int = 20
    #: number K of classes of each latent variable
    classes: int = 10
    #: width h of the MLPs: encoder 64-2h-h-VK, decoder VK-h-2h-64
    hidden: int = 128
    #: training epochs per estimator
    epochs: int = 100
    #: images per training step
    batch_size: int = 50
    #: Adam learning rate
    lr: float = 1e-3
    #: latent samples per image and step, for every estimator (rloo needs >= 2)
    samples: int = 2
    #: I-MLE finite-difference step lambda (on the gradient of the batch-mean loss); AIMLE's initial lambda
    lam: float = 30.0
    #: AIMLE: target number of non-zero gradient entries per latent variable and sample
    aimle_target: float = 1.0
    #: initial Gumbel-softmax / ST temperature
    tau: float = 1.0
    #: lowest temperature of the annealing schedule
    tau_min: float = 0.5
    #: annealing rate r: tau_t = max(tau_min, tau * exp(-r t)), t = training step (0: constant tau)
    tau_rate: float = 2e-3
    #: steps over which the KL weight rises linearly from 0 to 1 (0: full KL from the start)
    kl_warmup: int = 1500
    #: exact latent samples per test image for the ELBO
    eval_samples: int = 10
    #: random seed (data split, initialisation, noise)
    seed: int = 0
    #: torch device: cpu, cuda, cuda:N or auto
    device: str = "cpu"
    #: folder for vae.json and the PNG figures (None: do not save)
    out: str | None = "runs/vae"
    #: progress bars on stderr
    progress: bool = True
    #: stop each epoch after this many steps (smoke runs); None = full epochs
    max_steps: int | None = None

    def __post_init__(self) -> None:
        self.estimators = _names(self.estimators)
        if self.estimators == ("all",):
            self.estimators = ESTIMATORS

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


#: ``discreteopt vae --preset NAME`` (options given explicitly override the preset):
#: ``quick`` = every estimator for 20 epochs (well under a minute each on 2 CPU cores);
#: ``default`` = the defaults above (100 epochs);
#: ``large`` = 300 epochs and 100 exact samples per test image for the -ELBO (a tighter estimate);
#: ``paper`` = the protocol of the published table (README): the defaults, 20 x 10-way latents as in Jang et
#: al. (2017) and Niepert et al. (2021); run it with ``--seed 0``, ``1`` and ``2`` for the mean ± std
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 20, "kl_warmup": 300},
    "default": {},
    "large": {"epochs": 300, "eval_samples": 100},
    "paper": {"latents": 20, "classes": 10, "epochs": 100, "kl_warmup": 1500},
}


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


def ignores_z_nelbo(x_train: torch.Tensor, x_test: torch.Tensor, eps: float = 1e-3) -> float:
    """The test ``-ELBO`` (nats per image) of a model that ignores ``z``: a decoder that outputs the training
    pixel frequencies ``p_j`` (clipped to ``[eps, 1 - eps]``: some pixels are never on in training) and a
    posterior equal to the prior (KL = 0)::

        -ELBO = mean_x sum_j -(x_j log p_j + (1 - x_j) log(1 - p_j))

    The reference line of the learning curves (24.49 nats on seed 0's split): a VAE whose latents carry
    information must end below it. ``x_train [N, 64]``, ``x_test [M, 64]`` binary.
    """
    p = x_train.float().mean(0).clamp(eps, 1 - eps)  # [64]
    x = x_test.float()
    return float(-(x * p.log() + (1 - x) * (1 - p).log()).sum(-1).mean())


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
    elapsed = time.perf_counter() - t0
    eval_gen.manual_seed(cfg.seed + 2)
    test = negative_elbo(model, x_test, cfg.eval_samples, eval_gen)
    train = negative_elbo(model, x_train.to(device), cfg.eval_samples, eval_gen)
    row = {"estimator": name, "test_nelbo": test["nelbo"], "test_recon": test["recon"], "test_kl": test["kl"],
           "train_nelbo": train["nelbo"], "steps": step, "seconds": round(elapsed, 2)}
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
    reference = ignores_z_nelbo(x_train, x_test)
    result: dict[str, Any] = {
        "task": "discrete_vae", "data": f"sklearn digits binarised (train {len(x_train)}, test {len(x_test)})",
        "config": dataclasses.asdict(cfg), "rows": rows, "ignores_z_nelbo": reference,
        "curves": {"train_loss": train_curves, "test_nelbo": test_curves}}
    if cfg.out:
        out = Path(cfg.out)
        files = {"json": str(out / "vae.json"),
                 "curves": str(plot_vae_curves(result, out / "vae_curves.png")),
                 "reconstructions": str(plot_reconstructions(models, x_test, out / "vae_reconstructions.png",
                                                             seed=cfg.seed))}
        result["files"] = files
        save_json(result, files["json"])
    return result


def plot_vae_curves(result: dict[str, Any], path: str | Path) -> Path:
    """Test ``-ELBO`` per epoch for every estimator of a :func:`run_vae` result (or its saved JSON), with the
    reference line of a model that ignores ``z`` (:func:`ignores_z_nelbo`)."""
    cfg = result["config"]
    return plot_curves(result["curves"]["test_nelbo"], path, "epoch", "test -ELBO (nats per image, lower is better)",
                       f"Discrete VAE on digits: {cfg['latents']} x {cfg['classes']}-way latents, seed {cfg['seed']}",
                       references={"model that ignores z (pixel frequencies)": result["ignores_z_nelbo"]})


def results_table(result: dict[str, Any]) -> str:
    """Test and train ``-ELBO`` and its terms in nats per image (two decimals, as in the README), AIMLE's final
    lambda, the final temperature of the relaxations, steps and training seconds; below it, the ``-ELBO`` of a
    model that ignores ``z``."""
    rows = result["rows"]
    nats = [Column("test_nelbo", "test -ELBO", ".2f"), Column("test_recon", "reconstruction", ".2f"),
            Column("test_kl", "KL", ".2f"), Column("train_nelbo", "train -ELBO", ".2f")]
    extra = [Column("final_lam", "final lambda", ".3g"), Column("final_tau", "final tau", ".2f")]
    cols = [Column("estimator"), *nats, *(c for c in extra if any(c.key in r for r in rows)),
            Column("steps"), Column("seconds", "train time", seconds)]
    table = format_table(rows, cols) + "\n(-ELBO in nats per test image"
    if result.get("ignores_z_nelbo") is not None:
        table += f"; a model that ignores z scores {result['ignores_z_nelbo']:.2f}"
    return table + ")"


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
