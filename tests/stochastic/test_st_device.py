"""Estimators keep every tensor on the parameters' device (CUDA only; skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
from st_problems import bernoulli, categorical

import discreteopt.stochastic as st

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _on(device, p):
    f = p.f

    def g(z):
        assert z.device.type == device.type
        return f(z.cpu()).to(device)

    return g


@pytest.mark.parametrize("name", ["reinforce", "rloo", "disarm", "rebar", "concrete", "rao_blackwell"])
@pytest.mark.parametrize("problem", [bernoulli(3), categorical(2, 3)], ids=lambda p: p.name)
def test_estimators_run_on_cuda_with_a_cuda_generator(name, problem):
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    x = problem.replicas(4000).to(dev).requires_grad_(True)
    fam = problem.family
    f = _on(dev, problem)
    calls = {
        "reinforce": lambda: st.reinforce(f, x, family=fam, samples=2, generator=gen),
        "rloo": lambda: st.rloo(f, x, family=fam, samples=3, generator=gen),
        "disarm": lambda: st.disarm(f, x, family=fam, generator=gen),
        "rebar": lambda: st.rebar(f, x, st.ConcreteControlVariate().to(dev), family=fam, generator=gen),
        "concrete": lambda: st.concrete(f, x, family=fam, tau=0.5, generator=gen),
        "rao_blackwell": lambda: st.rao_blackwell(f, x, family=fam, generator=gen),
    }
    est = calls[name]()
    est.surrogate.backward()
    assert x.grad.device.type == "cuda" and est.per_item.device.type == "cuda"
    if name != "concrete":
        st.assert_unbiased(x.grad.cpu(), problem.exact_grad())


def test_relaxed_topk_and_policy_surrogates_on_cuda():
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    scores = torch.randn(8, 6, device=dev, requires_grad=True)
    m = st.relaxed_topk_softsub(scores, 2, tau=0.5, samples=3, generator=gen)
    assert m.device.type == "cuda"
    est = st.l2x_subset(lambda z: z.sum(-1), scores, k=2, samples=3, generator=gen)
    est.surrogate.backward()
    assert scores.grad.device.type == "cuda"
    lp = -torch.rand(4, 8, device=dev, requires_grad=True)
    assert st.grpo_surrogate(lp, None, torch.randn(4, 8, device=dev)).surrogate.device.type == "cuda"
    with pytest.raises(ValueError, match="generator lives on"):
        st.reinforce(lambda z: z.sum(-1), torch.zeros(2, 3), generator=gen)
