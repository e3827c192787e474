"""Guards: the default never changes the problem silently (exact where possible, a visible clamp otherwise)."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch

import discreteopt as do
from discreteopt.estimators import (
    IMLE,
    Auto,
    Clamp,
    Guard,
    GuardWarning,
    Interpolation,
    PerturbedOptimizer,
    Raise,
    Shift,
    StraightThrough,
)
from discreteopt.losses import FenchelYoungLoss, SPOPlus
from discreteopt.solvers import GraphShortestPath, GridShortestPath, TopK
from discreteopt.testing import enumerate_solutions

NEG = torch.tensor([[[1.0, -2.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]])  # two negative vertex costs


class ShiftableMin(TopK):
    """TopK declared as a bounded (min_cost 0) solver whose optimum a constant shift keeps: Shift() is exact."""

    sense = "min"
    min_cost = 0.0
    shift_invariant = True


@contextlib.contextmanager
def _no_guard_warning():
    """Fail on any GuardWarning inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", GuardWarning)
        yield


def test_auto_is_the_default_and_resolves_per_solver():
    assert isinstance(do.DiscreteLayer(TopK(2), IMLE()).maximizer.guard, Auto)
    assert isinstance(SPOPlus(TopK(2)).maximizer.guard, Auto)
    auto = Auto()
    assert isinstance(auto.resolve(TopK(2)), Raise)  # no bound: pass through
    assert isinstance(auto.resolve(GraphShortestPath.grid(5, 5)), Raise)  # acyclic: solved exactly, any sign
    assert isinstance(auto.resolve(ShiftableMin(1)), Shift)
    assert isinstance(auto.resolve(ShiftableMin(1), unperturbed=True), Shift)  # exact: also in eval mode
    clamp = auto.resolve(GridShortestPath())
    assert isinstance(clamp, Clamp) and clamp.warns
    assert isinstance(auto.resolve(GridShortestPath(), unperturbed=True), Raise)  # never a clamp for MAP calls


def test_default_clamp_on_a_cyclic_grid_warns_once_per_layer_and_counts_every_call():
    layer = do.DiscreteLayer(GridShortestPath(), StraightThrough())
    with pytest.warns(GuardWarning, match=r"2 of 9 entries \(22\.22%\)") as record:
        y = layer(NEG)
        layer(NEG)
    assert sum(issubclass(w.category, GuardWarning) for w in record) == 1  # once per layer
    torch.testing.assert_close(y, GridShortestPath().solve(NEG.clamp(min=0)))  # blackbox backprop's rule
    s = layer.stats
    assert (s.clamped_entries, s.guarded_entries, s.shifted_instances) == (4, 18, 0)
    assert s.clamped_fraction == pytest.approx(4 / 18)
    with pytest.warns(GuardWarning):  # another layer warns on its own
        do.DiscreteLayer(GridShortestPath(), StraightThrough())(NEG)
    with _no_guard_warning():  # no warning and no count when nothing is clamped
        other = do.DiscreteLayer(GridShortestPath(), StraightThrough())
        other(NEG.abs())
    assert (other.stats.clamped_entries, other.stats.guarded_entries) == (0, 9)
    s.reset()
    assert s.clamped_entries == s.guarded_entries == 0


def test_default_clamp_counts_perturbed_entries_of_the_backward_pass_too():
    layer = do.DiscreteLayer(GridShortestPath(), Interpolation(lam=10.0))
    costs = torch.ones(1, 3, 3, requires_grad=True)
    y = layer(costs)
    assert layer.stats.clamped_entries == 0
    g = torch.zeros(1, 3, 3)
    g[0, 1, 1] = -1.0  # w' = w + lam * g = 1 - 10 at the centre
    with pytest.warns(GuardWarning, match="1 of 9"):
        (y * g).sum().backward()
    assert (layer.stats.clamped_entries, layer.stats.guarded_entries) == (1, 18)


def test_eval_mode_behaves_like_solver_solve():
    layer = do.DiscreteLayer(GridShortestPath(), IMLE(lam=1.0)).eval()
    with pytest.raises(ValueError, match="non-negative"), _no_guard_warning():
        layer(NEG)  # a MAP call: never clamped silently
    assert layer.stats.clamped_entries == 0
    torch.testing.assert_close(layer(NEG.abs()), GridShortestPath().solve(NEG.abs()))
    # explicit Clamp() is the user's choice: it also clamps in eval mode, counted, without a warning
    clamp = do.DiscreteLayer(GridShortestPath(), IMLE(lam=1.0), guard=Clamp()).eval()
    with _no_guard_warning():
        torch.testing.assert_close(clamp(NEG), GridShortestPath().solve(NEG.clamp(min=0)))
    assert (clamp.stats.clamped_entries, clamp.stats.guarded_entries) == (2, 9)
    # exact options stay on in eval mode: Shift for a shift-invariant solver
    w = torch.tensor([[-3.0, -1.0, 0.5, -2.0]])
    shiftable = do.DiscreteLayer(ShiftableMin(2), StraightThrough()).eval()
    torch.testing.assert_close(shiftable(w), TopK(2).solve(w))  # the top-2 of w, shifted or not
    assert shiftable.stats.shifted_instances == 1


def test_explicit_clamp_counts_without_warning_and_raise_refuses():
    layer = do.DiscreteLayer(GridShortestPath(), StraightThrough(), guard=Clamp())
    with _no_guard_warning():
        layer(NEG)
    assert (layer.stats.clamped_entries, layer.stats.guarded_entries) == (2, 9)
    with pytest.raises(ValueError, match="non-negative"):
        do.DiscreteLayer(GridShortestPath(), StraightThrough(), guard=Raise())(NEG)
    with pytest.raises(ValueError, match="warn"):
        Clamp(warn="yes")
    assert repr(Clamp(warn=True)) == "Clamp(warn=True)" and repr(Auto()) == "Auto()"


def test_shift_invariant_solvers_get_the_exact_shift_by_default():
    w = torch.tensor([[-3.0, -1.0, 0.5, -2.0], [4.0, 5.0, 6.0, 7.0]])
    with _no_guard_warning():
        layer = do.DiscreteLayer(ShiftableMin(2), StraightThrough())
        y = layer(w)
    torch.testing.assert_close(y, TopK(2).solve(w))  # entries 1 and 2: the optimum of the unshifted problem
    clamped = do.DiscreteLayer(ShiftableMin(2), StraightThrough(), guard=Clamp())(w)
    assert not torch.equal(clamped[0], y[0])  # a clamp would have changed it (three ties at 0)
    assert layer.stats.shifted_instances == 1 and layer.stats.clamped_entries == 0
    with pytest.raises(ValueError, match="non-negative"):  # what the shift saved us from
        do.DiscreteLayer(ShiftableMin(2), StraightThrough(), guard=Raise())(w)


def _brute_force_paths(c: torch.Tensor) -> torch.Tensor:
    """Optimal edge indicators ``[B, 40]`` of PyEPO's 5x5 grid by enumeration of its 70 paths."""
    paths = torch.from_numpy(enumerate_solutions(GraphShortestPath.grid(5, 5), (40,))).to(c.dtype)  # [70, 40]
    return paths[(c @ paths.T).argmin(1)]


def test_pto_grid_solve_layers_and_losses_take_negative_costs_exactly():
    solver = GraphShortestPath.grid(5, 5)
    c_hat = torch.randn(32, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # linear model
    exact = _brute_force_paths(c_hat)
    torch.testing.assert_close(solver.solve(c_hat), exact)  # evaluation needs no user code
    with _no_guard_warning():
        layer = do.DiscreteLayer(solver, IMLE(lam=1.0, noise=None))
        torch.testing.assert_close(layer(c_hat), exact)
        torch.testing.assert_close(layer.eval()(c_hat), exact)
    assert layer.stats.guarded_entries == layer.stats.clamped_entries == 0


def test_default_spo_plus_on_negative_predictions_is_the_exact_loss():
    """SPO+ = <c - 2 c_hat, y~ - y*> with y~ = y*(2 c_hat - c), often negative. The old default clamped 2 c_hat - c
    and returned the loss of another problem (PyEPO 5x5: regret x3)."""
    g = torch.Generator().manual_seed(1)
    c = torch.rand(64, 40, generator=g, dtype=torch.float64) + 0.5  # true costs > 0
    c_hat = torch.randn(64, 40, generator=g, dtype=torch.float64).requires_grad_(True)
    spo = SPOPlus(GraphShortestPath.grid(5, 5), reduction="none")
    with _no_guard_warning():
        loss = spo(c_hat, c)
    d = c - 2 * c_hat.detach()
    y_tilde, y_star = _brute_force_paths(-d), _brute_force_paths(c)
    expected = ((d * (y_tilde - y_star)).sum(1))  # <c - 2 c_hat, y~ - y*>
    torch.testing.assert_close(loss.detach(), expected)
    (grad,) = torch.autograd.grad(loss.sum(), c_hat)
    torch.testing.assert_close(grad, 2 * (y_star - y_tilde))
    assert spo.stats.clamped_entries == 0
    assert (loss > 1e-9).sum() > 10  # a real test: many instances have a positive loss


def test_fenchel_young_and_perturbed_layers_on_the_pto_grid_never_clamp():
    c_hat = torch.randn(16, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64) - 1.0
    y_true = _brute_force_paths(c_hat.abs())
    with _no_guard_warning():
        fy = FenchelYoungLoss(GraphShortestPath.grid(5, 5), scale=1.0, samples=4, seed=0)
        fy(c_hat.requires_grad_(True), y_true).backward()
        layer = do.DiscreteLayer(GraphShortestPath.grid(5, 5), PerturbedOptimizer(scale=1.0, samples=4), seed=0)
        layer(c_hat)
    assert fy.layer.stats.guarded_entries == 0 and layer.stats.guarded_entries == 0


def test_a_guard_written_without_the_stats_argument_still_works():
    class OldStyle(Guard):
        def __call__(self, w, solver, inplace=False):
            return w.clamp(min=0.0)

    y = do.DiscreteLayer(GridShortestPath(), StraightThrough(), guard=OldStyle())(NEG)
    torch.testing.assert_close(y, GridShortestPath().solve(NEG.clamp(min=0)))


def test_clamped_fraction_matches_the_entries_below_the_bound_under_noise():
    # IMLE with Gumbel noise on small costs: count the negative perturbed entries independently
    costs = torch.full((4, 5, 5), 0.1, dtype=torch.float64)
    layer = do.DiscreteLayer(GridShortestPath(), IMLE(lam=1.0, samples=3, scale=2.0), seed=3, guard=Clamp())
    layer(costs)
    gen = torch.Generator().manual_seed(3)
    eps = do.noise.Gumbel().sample((4, 3, 5, 5), gen, dtype=torch.float64)
    expected = int(((costs.unsqueeze(1) - 2.0 * eps) < 0).sum())  # natural argument = -(theta + 2 eps)
    assert layer.stats.clamped_entries == expected > 0
    assert layer.stats.guarded_entries == 4 * 3 * 25
    assert np.isclose(layer.stats.clamped_fraction, expected / 300)
