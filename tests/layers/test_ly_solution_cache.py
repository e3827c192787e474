"""SolutionCache: exactness at the two ends of solve_ratio, solver counts, best-in-pool answers (brute force),
seeding, deduplication, the size bound, the eval-mode bypass, error mapping, and the hook into every caller of
the Maximizer (layers with any estimator, SPO+, Fenchel-Young)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import discreteopt as do
from discreteopt import SolutionCache
from discreteopt.estimators import IMLE, Interpolation, PerturbedOptimizer, StraightThrough
from discreteopt.losses import FenchelYoungLoss, SPOPlus
from discreteopt.maximizer import Maximizer
from discreteopt.solvers import GraphShortestPath, TopK
from discreteopt.solvers.base import InstanceError, Solver


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def lattice_paths(h=5, w=5) -> torch.Tensor:
    """Every monotone top-left -> bottom-right path of PyEPO's lattice as arc masks ``[C(h+w-2, h-1), arcs]``."""
    solver = GraphShortestPath.grid(h, w)
    n_arcs = (h - 1) * w + (w - 1) * h
    paths = []
    for downs in itertools.combinations(range(h + w - 2), h - 1):
        # a path is the unique optimum of costs that are 0 on its arcs and 1 elsewhere: build it by moves
        y = torch.zeros(n_arcs)
        i = j = 0
        for step in range(h + w - 2):
            if step in downs:
                arc = i * (2 * w - 1) + (w - 1) + j  # down arc of node (i, j)
                i += 1
            else:
                arc = i * (2 * w - 1) + j  # right arc of node (i, j)
                j += 1
            y[arc] = 1
        paths.append(y)
    out = torch.stack(paths)
    assert torch.equal(solver.solve(1.0 - out.double()).float(), out)  # each is the optimum of its own costs
    return out


PATHS = lattice_paths()  # [70, 40]


def test_lattice_paths_are_all_70():
    assert PATHS.shape == (70, 40) and len(torch.unique(PATHS, dim=0)) == 70 and math.comb(8, 4) == 70


# --------------------------------------------------------------------------- the two ends of solve_ratio
def test_solve_ratio_one_gives_the_same_answers_gradients_and_solver_counts_as_no_cache():
    solver = GraphShortestPath.grid(5, 5)
    costs = torch.rand(16, 40, generator=_gen(1), dtype=torch.float64)
    grad_y = torch.randn(16, 40, generator=_gen(2), dtype=torch.float64)
    out = []
    for cached in (False, True):
        layer = do.DiscreteLayer(solver, Interpolation(lam=3.0))
        cache = SolutionCache(1.0)
        if cached:
            cache.attach(layer)
        x = costs.clone().requires_grad_(True)
        y = layer(x)
        y.backward(grad_y)
        out.append((y.detach(), x.grad, layer.stats))
        if cached:
            assert len(cache) > 0  # solutions joined the pool
    (y0, g0, s0), (y1, g1, s1) = out
    assert torch.equal(y0, y1) and torch.equal(g0, g1)
    assert (s1.forward_instances, s1.backward_instances) == (s0.forward_instances, s0.backward_instances) == (16, 16)
    assert (s1.cache_hits, s1.cache_misses) == (0, 32) and (s0.cache_hits, s0.cache_misses) == (0, 0)


def test_solve_ratio_zero_with_the_optimum_in_the_pool_is_exact_and_calls_no_solver():
    solver = GraphShortestPath.grid(5, 5)
    m = Maximizer(solver)
    cache = SolutionCache.from_solutions(PATHS, 0.0)
    cache.attach(m)
    costs = torch.rand(64, 40, generator=_gen(3), dtype=torch.float64)
    y = m(-costs)
    assert torch.equal(y, solver.solve(costs)) and y.dtype == costs.dtype
    assert (m.stats.forward_calls, m.stats.forward_instances, m.stats.cache_hits) == (0, 0, 64)
    # max sense (top-k): the pool holds every 2-subset of 5
    topk = TopK(2)
    subsets = torch.stack([torch.zeros(5).index_fill_(0, torch.tensor(s), 1.0)
                           for s in itertools.combinations(range(5), 2)])
    m2 = SolutionCache.from_solutions(subsets, 0.0).attach(Maximizer(topk))
    scores = torch.randn(32, 5, generator=_gen(4))
    assert torch.equal(m2(scores), topk.solve(scores))


@pytest.mark.parametrize("ratio, batch", [(0.3, 10), (0.05, 32), (0.1, 7), (0.5, 1), (0.999, 40)])
def test_solver_instances_per_batch_match_solve_ratio(ratio, batch):
    m = Maximizer(TopK(2))
    cache = SolutionCache.from_solutions(torch.eye(6)[:2].sum(0, keepdim=True), ratio, seed=7)
    cache.attach(m)
    counts, rounds = [], 200
    for t in range(rounds):
        before = m.stats.forward_instances
        m(torch.randn(batch, 6, generator=_gen(100 + t)))
        counts.append(m.stats.forward_instances - before)
    exact = ratio * batch
    assert set(counts) <= {math.floor(exact), math.ceil(exact)}  # stochastic rounding, never further
    total = sum(counts)
    sd = math.sqrt(rounds * (exact % 1) * (1 - exact % 1))  # Bernoulli(frac) per batch
    assert abs(total - rounds * exact) <= 4 * sd + 1e-9
    assert m.stats.cache_hits + m.stats.cache_misses == rounds * batch == cache.hits + cache.misses
    assert m.stats.cache_misses == total


def test_pooled_answer_is_the_best_in_the_pool_by_brute_force_with_lowest_index_ties():
    solver = GraphShortestPath.grid(5, 5)
    pool = PATHS[torch.randperm(70, generator=_gen(5))[:20]]  # a pool without most optima
    cache = SolutionCache.from_solutions(pool, 0.0)
    m = cache.attach(Maximizer(solver))
    costs = torch.randint(0, 3, (200, 40), generator=_gen(6)).double()  # integer costs: many ties
    y = m(-costs)
    for i in range(200):
        objs = [float(costs[i] @ p.double()) for p in pool]
        best = min(range(20), key=lambda j: (objs[j], j))  # lowest objective, then lowest index
        assert torch.equal(y[i], pool[best].double()), i
    sols, idx = cache.best(costs, "min")
    assert torch.equal(sols, y) and idx.dtype == torch.long
    # max sense: the same answers for -costs
    assert torch.equal(cache.best(-costs, "max")[0], y)


def test_the_choice_of_solved_instances_is_seeded():
    def picked(seed):
        solver = TopK(1)
        m = SolutionCache.from_solutions(torch.eye(6)[:1], 0.5, seed=seed).attach(Maximizer(solver))
        # instance i's argmax is i, which is never in the pool except i = 0: solved ones are recognisable
        y = m(torch.eye(6) * 10 + 0.0)
        return tuple(int(i) for i in torch.nonzero(y.argmax(1) == torch.arange(6)).flatten())

    assert picked(1) == picked(1)
    assert len({picked(s) for s in range(8)}) > 1
    torch.manual_seed(3)
    a = SolutionCache.from_solutions(torch.eye(6)[:1], 0.5).attach(Maximizer(TopK(1)))(torch.eye(6) * 10)
    torch.manual_seed(3)
    b = SolutionCache.from_solutions(torch.eye(6)[:1], 0.5).attach(Maximizer(TopK(1)))(torch.eye(6) * 10)
    assert torch.equal(a, b)  # no seed: torch's default generator


def test_pool_deduplicates_and_new_solutions_join():
    cache = SolutionCache(0.5)
    assert cache.add(PATHS[:10]) == 10 and len(cache) == 10
    assert cache.add(torch.cat([PATHS[5:12], PATHS[11:12]])) == 2 and len(cache) == 12  # 10, 11 new (11 twice)
    assert torch.equal(cache.pool, PATHS[:12])  # insertion order kept
    assert cache.add(PATHS[:12].double()) == 0  # another dtype, same values
    assert cache.add(PATHS[:12].bool()) == 0 and cache.add(PATHS[:0]) == 0
    cache.clear()
    assert len(cache) == 0 and cache.pool is None


def test_pool_size_bound_policy_exactly():
    cache = SolutionCache(0.0, max_size=3)
    e = torch.eye(5)
    cache.add(e[:3])  # e0, e1, e2 at step 0
    m = cache.attach(Maximizer(TopK(1)))
    m(torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0]]))  # tie over all: lowest index e0 answered, used at step 1
    m(torch.tensor([[0.0, 0.0, 9.0, 0.0, 0.0]]))  # e2 used at step 2
    assert cache.add(e[3:4]) == 1  # e1 (step 0) is the least recently used
    assert torch.equal(cache.pool, e[[0, 2, 3]]) and cache.evictions == 1
    assert cache.add(e[0:1]) == 0  # found again: touched, not added
    assert cache.add(e[4:5]) == 1  # e2 (step 2) and e3 (step 2) vs e0 (touched at step 2): oldest first -> e0
    assert torch.equal(cache.pool, e[[2, 3, 4]]) and cache.evictions == 2
    assert cache.add(e) == 2 and len(cache) == 3  # more new rows than room: the bound holds


def test_eval_mode_bypasses_the_cache_and_use_cache_false_too():
    solver = GraphShortestPath.grid(5, 5)
    layer = do.DiscreteLayer(solver, Interpolation(lam=3.0))
    cache = SolutionCache.from_solutions(PATHS[:3], 0.0)
    cache.attach(layer)
    costs = torch.rand(8, 40, generator=_gen(8), dtype=torch.float64)
    layer.eval()  # MAP forward: exact, every instance solved, the pool untouched
    assert torch.equal(layer(costs), solver.solve(costs))
    assert (layer.stats.forward_instances, layer.stats.cache_hits, len(cache)) == (8, 0, 3)
    layer.train()
    layer(costs)
    assert layer.stats.cache_hits == 8 and layer.stats.forward_instances == 8
    assert torch.equal(layer.maximizer(-costs, use_cache=False), solver.solve(costs))
    keep = SolutionCache.from_solutions(PATHS[:3], 0.0, bypass_eval=False)
    keep.attach(layer)
    layer.eval()
    layer(costs)
    assert keep.hits == 8
    SolutionCache.detach(layer)
    assert layer.maximizer.cache is None


@pytest.mark.parametrize("make", [
    lambda s: do.DiscreteLayer(s, IMLE(lam=2.0, samples=3), seed=0),
    lambda s: do.DiscreteLayer(s, PerturbedOptimizer(0.5, 4), seed=0),
    lambda s: do.DiscreteLayer(s, StraightThrough()),
    lambda s: do.DiscreteLayer(s, Interpolation(lam=2.0)),
    lambda s: do.DiscreteLayer(s, do.estimators.NegativeIdentity()),
])
def test_every_estimator_goes_through_the_cache(make):
    solver = GraphShortestPath.grid(5, 5)
    layer = make(solver)
    SolutionCache.from_solutions(PATHS, 0.0).attach(layer)
    costs = torch.rand(4, 40, generator=_gen(9), dtype=torch.float64).requires_grad_(True)
    y = layer(costs)
    (y * torch.randn(y.shape, generator=_gen(10), dtype=y.dtype)).sum().backward()
    assert layer.stats.forward_instances == 0 and layer.stats.cache_hits >= 4 and costs.grad is not None
    assert layer.stats.backward_instances == 0  # Interpolation's backward solver call was cached too


def test_losses_go_through_the_cache():
    solver = GraphShortestPath.grid(5, 5)
    c = torch.rand(6, 40, generator=_gen(11), dtype=torch.float64)
    pred = c + 0.3 * torch.rand(6, 40, generator=_gen(12), dtype=torch.float64)
    w = solver.solve(c)
    spo = SPOPlus(solver)
    ref = spo(pred, c, w)
    SolutionCache.from_solutions(PATHS, 0.0).attach(spo)
    torch.testing.assert_close(spo(pred, c, w), ref)  # the optimum is in the pool: exact
    assert spo.stats.cache_hits == 6
    fy = FenchelYoungLoss(solver, scale=0.3, samples=2, seed=0)
    cache = SolutionCache.from_solutions(PATHS, 0.0)
    cache.attach(fy)  # through fy.layer.maximizer
    fy(pred, w)
    assert cache.hits == 12 and fy.layer.stats.forward_instances == 0


class _Fussy(Solver):
    """Top-1 that refuses instances whose largest score exceeds 100 (an InstanceError, as back-ends raise)."""

    sense = "max"

    def __init__(self):
        self._spec_kwargs = {}

    def _solve_numpy(self, theta):
        bad = np.nonzero(theta.max(1) > 100)[0]
        if len(bad):
            raise InstanceError("_Fussy", int(bad[0]), "REFUSED")
        return np.eye(theta.shape[1])[theta.argmax(1)]


def test_instance_errors_name_the_index_in_the_full_batch():
    theta = torch.zeros(8, 3)
    theta[:, 0] = 1.0
    theta[6, 1] = 500.0
    cache = SolutionCache.from_solutions(torch.eye(3), 0.5, seed=0)
    m = cache.attach(Maximizer(_Fussy()))
    for _ in range(20):  # until instance 6 is among the solved ones
        try:
            m(theta)
        except InstanceError as exc:
            assert exc.index == 6 and exc.status == "REFUSED"
            break
    else:
        pytest.fail("instance 6 was never solved")


def test_bad_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="solve_ratio"):
        SolutionCache(1.5)
    with pytest.raises(ValueError, match="solve_ratio"):
        SolutionCache(float("nan"))
    with pytest.raises(ValueError, match="max_size"):
        SolutionCache(0.5, max_size=0)
    with pytest.raises(ValueError, match="either seed or generator"):
        SolutionCache(0.5, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="seed"):
        SolutionCache(0.5, seed=1.5)
    with pytest.raises(ValueError, match="target"):
        SolutionCache(0.5).attach(object())
    with pytest.raises(ValueError, match="solutions"):
        SolutionCache(0.5).add(torch.ones(3))
    with pytest.raises(ValueError, match="solutions must be finite"):
        SolutionCache(0.5).add(torch.tensor([[1.0, float("nan")]]))
    cache = SolutionCache.from_solutions(torch.eye(3), 0.0)
    with pytest.raises(ValueError, match="event shape"):
        cache.add(torch.eye(4))
    with pytest.raises(ValueError, match="empty"):
        SolutionCache(0.5).solutions()
    m = cache.attach(Maximizer(TopK(1)))
    with pytest.raises(ValueError, match="finite"):  # pooled instances are validated like solved ones
        m(torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="event shape|shape"):
        m(torch.ones(2, 4))
    with pytest.raises(ValueError, match="sense"):
        cache.best(torch.ones(1, 3), "up")


def test_a_partly_solved_batch_merges_exact_and_pooled_answers_in_place():
    solver = GraphShortestPath.grid(5, 5)
    pool = PATHS[:20]
    cache = SolutionCache.from_solutions(pool, 0.5, seed=2)
    m = cache.attach(Maximizer(solver))
    costs = torch.rand(32, 40, generator=_gen(13), dtype=torch.float64)
    y = m(-costs)
    exact = solver.solve(costs)
    best = pool.double()[(costs @ pool.double().T).argmin(1)]  # no ties with random costs
    solved = (y == exact).all(1) & ~(y == best).all(1)
    pooled = (y == best).all(1) & ~(y == exact).all(1)
    assert bool(((y == exact).all(1) | (y == best).all(1)).all())
    assert m.stats.forward_instances == 16 and int(solved.sum()) <= 16 and int(pooled.sum()) <= 16
    assert int(solved.sum()) > 0 and int(pooled.sum()) > 0
    assert len(cache) > 20  # the solved optima outside the first 20 paths joined


def test_map_calls_bypass_the_cache_even_without_an_owning_module():
    solver = GraphShortestPath.grid(5, 5)
    layer = do.DiscreteLayer(solver, Interpolation(lam=3.0))
    cache = SolutionCache.from_solutions(PATHS[:3], 0.0)
    cache.attach(layer.maximizer)  # no module known to the cache: only the MAP marker tells
    costs = torch.rand(8, 40, generator=_gen(14), dtype=torch.float64)
    layer.eval()
    assert torch.equal(layer(costs), solver.solve(costs)) and cache.hits == 0
    with layer.maximizer.unperturbed():
        assert torch.equal(layer.maximizer(-costs), solver.solve(costs)) and cache.hits == 0
    layer.maximizer(-costs)
    assert cache.hits == 8


def test_cpu_row_index_dedups_like_equality_across_eviction_and_negative_zero():
    # the CPU pool matches rows through a dict of their bytes: -0.0 must equal 0.0 (as ==), and the index must stay
    # right after evictions move rows (it is rebuilt) -- checked against the torch matcher used on other devices
    from discreteopt.solution_cache import _first_match

    cache = SolutionCache(max_size=3)
    rows = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert cache.add(rows[:3]) == 3
    assert cache.add(torch.tensor([[-0.0, 1.0]])) == 0  # equal to [0, 1]
    assert cache.add(rows[3:]) == 1 and len(cache) == 3  # evicts the least recently used row
    pool = cache.solutions()
    for r in rows:
        expected = _first_match(r[None], cache._hash(r[None]), pool, cache._hash(pool))
        assert cache._match_bytes(r[None])[0].tolist() == expected.tolist()
    assert cache.add(pool) == 0 and cache.add(pool.neg().neg()) == 0
