"""Bias, variance and cost of the discrete gradient estimators of ``discreteopt.stochastic``.

Two problems, exact gradients by enumeration:

* ``bernoulli``: Tucker et al.'s toy ``f(z) = sum_j (z_j - 0.499)^2`` over ``d = 5`` Bernoulli variables with
  logits ``[-2, -1, 0, 1, 2]`` (REBAR, 2017; RELAX, 2018, fig. 1) -- nearly constant f, so the whole difficulty is
  variance;
* ``categorical``: ``V = 3`` categorical variables with ``K = 4`` classes, ``f(z) = sum (z - t)^2 w +
  (sum a z)^2 / V`` (a separable part plus a coupling term; fixed random ``t, w, a``).

Every estimator gets the same budget of function evaluations per estimate (``--budget``, default 12; estimators
whose per-sample cost does not divide it use the largest multiple below it, shown in the ``evals`` column).
``R`` estimates are drawn in one batched call (the batch dim holds ``R`` replicas of the problem); the table shows

* ``bias``: ``||mean - exact||`` and, in brackets, its size in standard errors (< ~4 means "no detectable bias");
* ``std``: ``sqrt(sum_j Var[g_j])`` of one estimate, and ``var/RF``: variance relative to plain REINFORCE with the
  same number of evaluations;
* ``us/est``: wall time of one batched call for 2000 replicas divided by 2000 (amortised time per estimate; the
  fastest of 3 calls, since the machine may be shared).

Learned control variates (REBAR's eta and temperature, RELAX's network, the learned and moving-average baselines)
are first trained at the same parameters (Adam on ``Estimate.aux_loss``), as they would be during training.

Run: ``python benchmarks/bench_estimators.py`` (about a minute on 2 cores; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import discreteopt.stochastic as st
from discreteopt.stochastic import exact


@dataclass
class Problem:
    name: str
    family: st.Family
    logits: torch.Tensor  # [1, *E]
    f: Callable[[torch.Tensor], torch.Tensor]

    @property
    def dim(self) -> int:
        return self.logits[0].numel()

    def cost_rb(self) -> int:
        """Evaluations per sample of the Rao-Blackwellised / measure-valued estimators: ``1 + V (C - 1)``."""
        v, c = self.family.n_factors(tuple(self.logits.shape[1:]))
        return 1 + v * (c - 1)


def bernoulli_toy(d: int = 5) -> Problem:
    def f(z):
        return ((z - 0.499) ** 2).sum(-1)

    return Problem("bernoulli", st.Bernoulli(), torch.linspace(-2.0, 2.0, d)[None], f)


def categorical_problem(v: int = 3, k: int = 4) -> Problem:
    g = torch.Generator().manual_seed(0)
    t, w = torch.rand(v, k, generator=g), 0.5 + torch.rand(v, k, generator=g)
    a = 2 * torch.rand(v, k, generator=g) - 1

    def f(z):
        return ((z - t) ** 2 * w).sum((-1, -2)) + (z * a).sum((-1, -2)) ** 2 / v

    return Problem("categorical", st.Categorical(), torch.randn(1, v, k, generator=g), f)


# ------------------------------------------------------------------------------------------------ estimators
@dataclass
class Entry:
    name: str
    cost: int  # evaluations per sample (pair, ...)
    make: Callable  # (problem, samples) -> call(logits, generator) -> Estimate
    biased: bool = False
    train: Callable | None = None  # (problem, generator) -> None: fits the learned parts


def muprop_cv(p: Problem, c: float | None) -> st.ControlVariate:
    """MuProp's control variate: ``h(z) = f(mu) + <grad f(mu), z - mu>`` around the mean ``mu`` (Gu et al., 2016)."""
    with torch.enable_grad():
        mu = p.family.mean(p.logits)[None].clone().requires_grad_(True)  # [1, 1, *E]
        f0 = p.f(mu)
        (grad,) = torch.autograd.grad(f0.sum(), mu)
    mu, grad, f0 = mu.detach()[0, 0], grad[0, 0], float(f0.detach())
    return st.ControlVariate(lambda z: f0 + ((z - mu) * grad).flatten(2).sum(-1),
                             lambda q: f0 + ((p.family.mean(q) - mu) * grad).flatten(1).sum(-1), c=c)


def build_entries(p: Problem, steps: int) -> list[Entry]:
    fam = p.family
    ma = st.MovingAverage(decay=0.95)
    lin = nn.Linear(p.dim, 1)
    learned = st.LearnedBaseline(lambda q: lin(q.flatten(1))[:, 0])
    rebar_cv = st.ConcreteControlVariate(eta=1.0, tau=0.5)
    torch.manual_seed(0)
    relax_cv = st.NeuralControlVariate.mlp(p.dim, hidden=32, concrete=True)

    def rf(baseline=None):
        return lambda q, s: lambda x, g: st.reinforce(q.f, x, family=fam, samples=s, baseline=baseline, generator=g)

    def fit(params, lr, estimator, n):
        def train(q, g):
            opt = torch.optim.Adam(params, lr=lr)
            for _ in range(n):
                est = estimator(q.f, q.logits.expand(256, *q.logits.shape[1:]), g)
                opt.zero_grad()
                est.aux_loss.backward()
                opt.step()
        return train

    def warm_ma(q, g):  # 400 calls: decay^400 ~ 1e-9 of the initial value is left
        for _ in range(400):
            st.reinforce(q.f, q.logits.expand(64, *q.logits.shape[1:]), family=fam, samples=1, baseline=ma, generator=g)

    return [
        Entry("reinforce", 1, rf()),
        Entry("reinforce + moving average", 1, rf(ma), train=warm_ma),
        Entry("reinforce + learned (NVIL)", 1, rf(learned), train=fit(
            list(lin.parameters()), 0.05, lambda f, x, g: st.reinforce(f, x, family=fam, samples=1,
                                                                       baseline=learned, generator=g), steps)),
        Entry("reinforce + optimal b* (per param)", 1, rf(st.OptimalConstant())),
        Entry("reinforce + MuProp CV, c = 1", 1, rf(muprop_cv(p, 1.0))),
        Entry("reinforce + MuProp CV, c* (loo)", 1, rf(muprop_cv(p, None))),
        Entry("rloo", 1, lambda q, s: lambda x, g: st.rloo(q.f, x, family=fam, samples=s, generator=g)),
        Entry("rao-blackwell (local expectation)", p.cost_rb(),
              lambda q, s: lambda x, g: st.rao_blackwell(q.f, x, family=fam, samples=s, generator=g)),
        Entry("measure-valued", p.cost_rb(),
              lambda q, s: lambda x, g: st.measure_valued(q.f, x, family=fam, samples=s, generator=g)),
        Entry("arm", 2, lambda q, s: lambda x, g: st.arm(q.f, x, family=fam, samples=s, generator=g)),
        Entry("disarm", 2, lambda q, s: lambda x, g: st.disarm(q.f, x, family=fam, samples=s, generator=g)),
        Entry("rebar (eta, tau trained)", 3,
              lambda q, s: lambda x, g: st.rebar(q.f, x, rebar_cv, family=fam, samples=s, generator=g),
              train=fit(list(rebar_cv.parameters()), 0.02,
                        lambda f, x, g: st.rebar(f, x, rebar_cv, family=fam, generator=g), steps)),
        Entry("relax (net + concrete, trained)", 3,
              lambda q, s: lambda x, g: st.relax(q.f, x, relax_cv, family=fam, samples=s, generator=g),
              train=fit(list(relax_cv.parameters()), 0.01,
                        lambda f, x, g: st.relax(f, x, relax_cv, family=fam, generator=g), steps // 2)),
        Entry("gumbel-softmax tau=0.5", 1, biased=True, make=lambda q, s: lambda x, g: st.concrete(
            q.f, x, family=fam, tau=0.5, samples=s, generator=g)),
        Entry("straight-through gumbel tau=0.5", 1, biased=True, make=lambda q, s: lambda x, g: st.concrete(
            q.f, x, family=fam, tau=0.5, hard=True, samples=s, generator=g)),
    ]


# ------------------------------------------------------------------------------------------------ measurement
@dataclass
class Row:
    name: str
    evals: int
    bias: float
    bias_z: float
    var: float
    us: float
    biased: bool


def measure(p: Problem, entry: Entry, samples: int, replicas: int, target: torch.Tensor, seed: int) -> Row:
    g = torch.Generator().manual_seed(seed)
    call = entry.make(p, samples)
    x = p.logits.expand(replicas, *p.logits.shape[1:])
    def estimate(xs: torch.Tensor) -> tuple[st.Estimate, torch.Tensor]:
        if not entry.biased:
            est = call(xs, g)
            return est, est.grad
        xx = xs.clone().requires_grad_(True)  # pathwise: the gradient comes from backward
        est = call(xx, g)
        est.surrogate.backward()
        return est, xx.grad

    est, grads = estimate(x)
    n_time = min(replicas, 2000)
    times = []
    for _ in range(3):  # the machine may be shared: keep the fastest of 3 timed calls
        t0 = time.perf_counter()
        estimate(x[:n_time])
        times.append(time.perf_counter() - t0)
    mean, var = grads.mean(0), grads.var(0).sum()
    bias = float((mean - target).norm())
    return Row(entry.name, est.n_evals, bias, bias / math.sqrt(float(var) / replicas + 1e-300), float(var),
               min(times) / n_time * 1e6, entry.biased)


def run(p: Problem, budget: int, replicas: int, steps: int) -> tuple[list[Row], list[Row]]:
    """Rows at ``budget`` evaluations per estimate, and rows at one sample (pair) per estimate."""
    _, target = exact.gradient(p.f, p.logits, p.family)
    target = target[0]
    equal, single = [], []
    for i, entry in enumerate(build_entries(p, steps)):
        if entry.train is not None:
            t0 = time.perf_counter()
            entry.train(p, torch.Generator().manual_seed(100 + i))
            TRAIN_SECONDS[f"{p.name}/{entry.name}"] = time.perf_counter() - t0
        equal.append(measure(p, entry, max(1, budget // entry.cost), replicas, target, seed=i))
        if entry.name in ONE_SAMPLE:
            single.append(measure(p, entry, 1, replicas, target, seed=50 + i))
    return equal, single


TRAIN_SECONDS: dict[str, float] = {}
ONE_SAMPLE = ("reinforce", "reinforce + moving average", "reinforce + learned (NVIL)", "reinforce + MuProp CV, c = 1",
              "arm", "disarm", "rebar (eta, tau trained)", "relax (net + concrete, trained)")


def print_table(title: str, rows: list[Row], target_norm: float) -> None:
    ref = next(r.var for r in rows if r.name == "reinforce")
    print(f"\n### {title} (|exact grad| = {target_norm:.4g})\n")
    print("| estimator | evals | bias (in s.e.) | std | var / reinforce | us/est |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        flag = " (biased)" if r.biased else ""
        exact_ = math.sqrt(r.var) < 1e-4 * target_norm  # zero variance up to float32 rounding: exact
        bias = f"{r.bias:.1e} (exact*)" if exact_ else f"{r.bias:.1e} ({r.bias_z:.1f})"
        print(f"| {r.name}{flag} | {r.evals} | {bias} | {math.sqrt(r.var):.2e} | {r.var / ref:.3g} | {r.us:.1f} |")


def orderings(equal: list[Row], single: list[Row]) -> list[str]:
    v = {r.name: r.var for r in equal}
    one = {r.name: r.var for r in single}
    baselines = ("reinforce + moving average", "reinforce + learned (NVIL)", "reinforce + optimal b* (per param)")
    rebar, relax = "rebar (eta, tau trained)", "relax (net + concrete, trained)"
    checks = [
        ("baselines (moving average, learned, optimal b*) below plain REINFORCE", all(v[n] < v["reinforce"]
                                                                                      for n in baselines)),
        ("RLOO below plain REINFORCE", v["rloo"] < v["reinforce"]),
        ("DisARM below ARM", v["disarm"] < v["arm"]),
        ("one sample each: REBAR below REINFORCE + moving average", one[rebar] < one["reinforce + moving average"]),
        ("one sample each: RELAX below REINFORCE + moving average", one[relax] < one["reinforce + moving average"]),
        ("one sample each: RELAX below REBAR", one[relax] < one[rebar]),
        ("equal evaluations: REBAR below REINFORCE + moving average", v[rebar] < v["reinforce + moving average"]),
        ("equal evaluations: RELAX below REINFORCE + moving average", v[relax] < v["reinforce + moving average"]),
        ("equal evaluations: REBAR below RLOO", v[rebar] < v["rloo"]),
        ("equal evaluations: RELAX below RLOO", v[relax] < v["rloo"]),
    ]
    return [f"- {'yes' if ok else 'NO '}: {text}" for text, ok in checks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=12, help="function evaluations per estimate")
    ap.add_argument("--replicas", type=int, default=20000, help="estimates drawn per estimator")
    ap.add_argument("--steps", type=int, default=300, help="training steps of the learned control variates")
    ap.add_argument("--quick", action="store_true", help="smoke run (2000 replicas, 20 steps)")
    args = ap.parse_args()
    if args.quick:
        args.replicas, args.steps = 2000, 20
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    print(f"discreteopt.stochastic estimators: budget {args.budget} evaluations/estimate, {args.replicas} estimates "
          f"each, control variates trained {args.steps} steps; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    for p in (bernoulli_toy(), categorical_problem()):
        equal, single = run(p, args.budget, args.replicas, args.steps)
        norm = float(exact.gradient(p.f, p.logits, p.family)[1].norm())
        print_table(f"{p.name}: {args.budget} evaluations per estimate", equal, norm)
        print_table(f"{p.name}: one sample (pair) per estimate", single, norm)
        if p.name == "bernoulli":
            print("\n(exact*): f is separable, so summing out each variable (Rao-Blackwell, measure-valued) is exact "
                  "up to float32 rounding.")
        print("\nliterature orderings (variance):")
        print("\n".join(orderings(equal, single)))
    train = sum(TRAIN_SECONDS.values())
    print(f"\ntotal {time.perf_counter() - t0:.1f} s, of which {train:.1f} s training control variates and baselines")


if __name__ == "__main__":
    main()
