"""Small test problems with exact gradients by enumeration, shared by the tests in this directory."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from discreteopt.stochastic import Bernoulli, Categorical, Family, KSubset, exact


@dataclass
class Problem:
    """One problem, replicated ``R`` times along the batch dim so that one call draws ``R`` independent estimates."""

    name: str
    family: Family
    logits: torch.Tensor  # [1, *E]
    f: object  # [S, B, *E] -> [S, B]

    def exact_grad(self) -> torch.Tensor:
        return exact.gradient(self.f, self.logits, self.family)[1][0]  # [*E]

    def replicas(self, r: int) -> torch.Tensor:
        return self.logits.expand(r, *self.logits.shape[1:]).clone()  # [R, *E]


def _coef(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64).float()


def bernoulli(d: int, seed: int = 0) -> Problem:
    """``f(z) = sum_j w_j (z_j - t_j)^2 + (a . z)^2 / d``: separable plus a coupling term (so no estimator is exact)."""
    t, w, a = _coef(d, seed), 0.5 + _coef(d, seed + 1), _coef(d, seed + 2) * 2 - 1
    logits = torch.linspace(-1.5, 1.5, d)[None]

    def f(z):
        return ((z - t) ** 2 * w).sum(-1) + (z * a).sum(-1) ** 2 / d

    return Problem(f"bernoulli{d}", Bernoulli(), logits, f)


def categorical(v: int, k: int, seed: int = 0) -> Problem:
    t, w, a = _coef((v, k), seed), 0.5 + _coef((v, k), seed + 1), _coef((v, k), seed + 2) * 2 - 1
    logits = (torch.linspace(-1.0, 1.0, v * k).reshape(v, k) * torch.tensor([1.0, -1.0])[torch.arange(v) % 2, None])[None]

    def f(z):
        return ((z - t) ** 2 * w).sum((-1, -2)) + (z * a).sum((-1, -2)) ** 2 / v

    return Problem(f"categorical{v}x{k}", Categorical(), logits, f)


def ksubset(n: int, k: int, seed: int = 0) -> Problem:
    t, w, a = _coef(n, seed), 0.5 + _coef(n, seed + 1), _coef(n, seed + 2) * 2 - 1
    logits = torch.linspace(-1.0, 1.0, n)[None]

    def f(z):
        return ((z - t) ** 2 * w).sum(-1) + (z * a).sum(-1) ** 2 / math.sqrt(n)

    return Problem(f"ksubset{n}c{k}", KSubset(k), logits, f)
