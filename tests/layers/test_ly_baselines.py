"""Solver-layer baselines (``discreteopt.estimators.baselines``): the leave-one-out baseline of sample s is the mean
of the other samples, computed without ``total - own`` so that it does not depend on sample s, not even through
round-off."""

from __future__ import annotations

import pytest
import torch

from discreteopt.estimators import LeaveOneOut, MAPBaseline, ScoreFunction


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_leave_one_out_is_the_mean_of_the_others(dtype):
    g = torch.Generator().manual_seed(0)
    values = torch.exp(4 * torch.randn(3, 6, generator=g, dtype=torch.float64)).to(dtype)  # [B, S]
    b = LeaveOneOut()(values, None)
    ref = torch.stack([torch.cat([values[:, :s], values[:, s + 1:]], 1).double().mean(1) for s in range(6)], 1)
    assert b.shape == values.shape and b.dtype == dtype
    assert torch.allclose(b.double(), ref, rtol=1e-6 if dtype == torch.float32 else 1e-13)


def test_leave_one_out_when_one_sample_dominates():
    """float32: (1e8 + 1 + 2) - 1e8 == 0, so the old baseline of the dominant sample was 0 instead of 1.5."""
    b = LeaveOneOut()(torch.tensor([[1e8, 1.0, 2.0]]), None)
    assert b[0, 0] == 1.5 and b[0, 1] == b[0, 2] == 5e7 + 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_baseline_of_sample_s_does_not_change_with_sample_s_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(1)
    values = torch.exp(4 * torch.randn(4, 5, generator=g, dtype=torch.float64)).to(dtype)  # [B, S]
    ref = LeaveOneOut()(values, None)
    for s in range(5):
        v = values.clone()
        v[:, s] = v[:, s] * 1e3 + 7.0
        out = LeaveOneOut()(v, None)
        assert torch.equal(out[:, s], ref[:, s])
        assert not torch.equal(out, ref)


def test_score_function_uses_the_exact_leave_one_out_baseline():
    """The layer estimator's surrogate: gradient ``mean_s (L_s - mean_{j != s} L_j) grad nu(Z_s) / scale``, checked
    against a float64 reference built from explicit masked sums, with one dominant loss."""
    est = ScoreFunction(1.0, samples=3)
    assert isinstance(est.baseline, LeaveOneOut)
    theta = torch.tensor([[0.5, -1.0]], requires_grad=True)
    z = torch.tensor([[[0.3, -1.2], [1.1, 0.4], [-0.7, 2.0]]])  # [B, S, *E]
    losses = torch.tensor([[1e8, 1.0, 2.0]])
    est.surrogate(theta, z, losses).backward()
    mask = 1.0 - torch.eye(3, dtype=torch.float64)
    base = (losses.double()[:, None, :] * mask).sum(-1) / 2  # [B, S]
    ref = ((losses.double() - base)[..., None] * z.double()).mean(1)  # Normal: grad nu(z) = z, scale 1
    assert torch.allclose(theta.grad.double(), ref, rtol=1e-6)


def test_leave_one_out_rejects_a_single_sample():
    with pytest.raises(ValueError, match="at least 2 samples"):
        LeaveOneOut()(torch.zeros(2, 1), None)
    assert MAPBaseline()(torch.zeros(2, 3), torch.ones(2, 3)).sum() == 6
