"""REBAR and RELAX: score-function estimators with a reparameterised, conditionally-coupled control variate.

With ``z = theta + noise`` (Logistic for Bernoulli, Gumbel for Categorical), ``b = H(z)`` and ``z~ ~ p(z | b)``
sampled by a reparameterisation of the conditional (:meth:`Family.conditional`), RELAX (Grathwohl et al., 2018,
"Backpropagation through the void", eq. 8) is

    g = [f(b) - c_phi(z~)] grad log p(b) + grad c_phi(z) - grad c_phi(z~),

unbiased for any ``c_phi`` because ``E[c(z~) grad log p(b)] + E[grad c(z~)] = grad E[c(z)]``. REBAR (Tucker et al.,
2017, "REBAR: low-variance, unbiased gradient estimates for discrete latent variable models") is the special case
``c_phi(z) = eta f(sigma_lambda(z))`` with the concrete relaxation at a learnable temperature ``lambda``
(:class:`ConcreteControlVariate`).

The control-variate parameters ``phi`` are trained to minimise the variance, whose gradient is
``d/d phi E[g^2]`` (``E[g]`` does not depend on ``phi``); :func:`relax` returns it as ``Estimate.aux_loss``, built so
that it only reaches the control variate's parameters.

Protocol of a control variate: ``cv(z [S, B, *E], family, f) -> [S, B]``; it must act on every sample and problem
separately (the pathwise terms are taken with one autograd call over the whole batch).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from ._types import (
    CountingF,
    Estimate,
    SampleFn,
    check_generator,
    check_positive,
    check_samples,
    finish,
    inject,
    safe_mean,
)
from .families import Family, as_family


class ControlVariateFn(Protocol):
    def __call__(self, z: Tensor, family: Family, f: SampleFn) -> Tensor: ...


class ConcreteControlVariate(nn.Module):
    """REBAR's control variate ``c(z) = eta * f(relax(z, tau))`` with learnable ``eta`` and ``log tau``."""

    def __init__(self, eta: float = 1.0, tau: float = 0.5):
        super().__init__()
        check_positive(tau, "tau")
        if not math.isfinite(eta):
            raise ValueError(f"eta must be finite; got {eta!r}")
        self.eta = nn.Parameter(torch.tensor(float(eta)))
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau)))

    @property
    def tau(self) -> float:
        return float(self.log_tau.exp())

    def forward(self, z: Tensor, family: Family, f: SampleFn) -> Tensor:
        eta = self.eta.to(z.dtype)
        return eta * f(family.relax(z, self.log_tau.to(z.dtype).exp()))


class NeuralControlVariate(nn.Module):
    """RELAX's control variate ``c(z) = net(relax(z, 1)) [+ eta f(relax(z, tau))]``.

    ``net`` maps the flattened relaxed sample ``[S, B, prod(E)]`` to ``[S, B, 1]`` (or ``[S, B]``);
    ``concrete`` adds REBAR's term (as in the paper's experiments). :meth:`mlp` builds a small default.
    """

    def __init__(self, net: nn.Module, concrete: ConcreteControlVariate | None = None):
        super().__init__()
        self.net = net
        self.concrete = concrete

    @classmethod
    def mlp(cls, dim: int, hidden: int = 32, concrete: bool = True) -> NeuralControlVariate:
        net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(net[2].weight)
        nn.init.zeros_(net[2].bias)
        return cls(net, ConcreteControlVariate() if concrete else None)

    def forward(self, z: Tensor, family: Family, f: SampleFn) -> Tensor:
        x = family.relax(z, 1.0).flatten(2)  # [S, B, prod(E)]
        out = self.net(x)
        if out.ndim == 3:
            out = out[..., 0]  # [S, B]
        if self.concrete is not None:
            out = out + self.concrete(z, family, f)
        return out


def relax(
    f: SampleFn,
    logits: Tensor,
    control_variate: ControlVariateFn,
    *,
    family: Family | None = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """RELAX estimator (Bernoulli or Categorical ``family``); ``n_evals = samples * (1 + evaluations of f by cv)``.

    Returns ``Estimate.grad`` (the estimate) and ``Estimate.aux_loss`` (its gradient w.r.t. the control variate's
    parameters is ``d/d phi sum_b ||g_b||^2``; ``None`` when ``control_variate`` has no trainable parameters).
    """
    family = as_family(family)
    family.check(logits, "logits")
    if not family.reparameterisable:
        raise ValueError(f"family must be Bernoulli or Categorical for RELAX/REBAR; got {family!r}")
    if not callable(control_variate):
        raise ValueError(f"control_variate must be callable (z, family, f) -> [S, B]; got {control_variate!r}")
    s = check_samples(samples)
    check_generator(generator, logits.device)
    cf = CountingF(f, logits.shape[0], logits.dtype)
    with torch.enable_grad():
        th = logits.detach().clone().requires_grad_(True)  # private leaf: the estimate is d/d th
        z = family.perturb(th, s, generator)  # [S, B, *E]
        b = family.hard(z)
        zt = family.conditional(th, b, generator)  # [S, B, *E], z~ | b
        fb = cf(b)  # [S, B]
        f_cv = cf.through("the control variate of rebar/relax")  # c(z) is differentiated: no integer f there
        cz = control_variate(z, family, f_cv)
        czt = control_variate(zt, family, f_cv)
        for name, c in (("c(z)", cz), ("c(z~)", czt)):
            if tuple(c.shape) != tuple(fb.shape):
                raise ValueError(f"control_variate must return [S, B] = {list(fb.shape)}; {name} has {list(c.shape)}")
        score = family.score(th, b)  # [S, B, *E]
        (path,) = torch.autograd.grad((cz - czt).sum(), th, create_graph=True)  # [B, *E], summed over S
        extra = [1] * (score.ndim - 2)
        g = ((fb.detach() - czt).reshape(*fb.shape, *extra) * score).mean(0) + path / s  # [B, *E]
        cv_loss = (g * g).sum()
        aux = None
        params = [p for p in getattr(control_variate, "parameters", lambda: [])() if p.requires_grad]
        if params and cv_loss.requires_grad:
            grads = torch.autograd.grad(cv_loss, params, allow_unused=True)
            aux = cv_loss.detach()
            for p, gp in zip(params, grads, strict=True):
                if gp is not None:  # value cv_loss, gradient d cv_loss / d phi only
                    aux = inject(aux, p, gp)
    return finish(safe_mean(fb, 0), logits, g.detach(), cf.count, samples=b.detach(), f_values=fb.detach(),
                  aux_loss=aux, info={"cv_loss": float(cv_loss.detach())})


def rebar(
    f: SampleFn,
    logits: Tensor,
    control_variate: ConcreteControlVariate | None = None,
    *,
    family: Family | None = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """REBAR: :func:`relax` with ``c(z) = eta f(relax(z, tau))``; ``n_evals = 3 * samples``.

    Pass one :class:`ConcreteControlVariate` across calls to learn ``eta`` and ``tau`` (train on ``aux_loss``);
    ``None`` uses a fixed ``eta = 1``, ``tau = 0.5``.
    """
    cv = ConcreteControlVariate() if control_variate is None else control_variate
    return relax(f, logits, cv, family=family, samples=samples, generator=generator)
