"""Grid and graph shortest paths: optimality against networkx / brute force, both back-ends, contract."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from discreteopt.solvers import GraphShortestPath, GridShortestPath
from discreteopt.solvers.base import InstanceError
from discreteopt.testing import check_solver, enumerate_solutions

BACKENDS = ["numba", "torch"]
#: neighbour moves written out here, independently of the solver's own offset table
KING_MOVES = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
ROOK_MOVES = [(-1, 0), (0, -1), (0, 1), (1, 0)]


def grid_path_masks_oracle(h: int, w: int, neighbourhood: int, s=(0, 0), t=None) -> np.ndarray:
    """All simple source -> target paths of the h x w grid as 0/1 masks ``[M, h, w]``, from a networkx grid graph
    plus the explicit moves above (no code shared with the solver)."""
    t = t or (h - 1, w - 1)
    g = nx.grid_2d_graph(h, w)  # the 4 rook moves
    if neighbourhood == 8:
        g.add_edges_from(((r, c), (r + dr, c + dc)) for r in range(h) for c in range(w)
                         for dr, dc in KING_MOVES if 0 <= r + dr < h and 0 <= c + dc < w)
    assert g.number_of_edges() == sum(1 for r in range(h) for c in range(w)
                                      for dr, dc in (KING_MOVES if neighbourhood == 8 else ROOK_MOVES)
                                      if 0 <= r + dr < h and 0 <= c + dc < w) // 2
    masks = []
    for path in nx.all_simple_paths(g, s, t):
        m = np.zeros((h, w))
        m[tuple(np.array(path).T)] = 1.0
        masks.append(m)
    return np.unique(np.stack(masks), axis=0)


def nx_grid_cost(w: np.ndarray, neighbourhood: int, s=(0, 0), t=None) -> float:
    """Optimal vertex-weighted path cost with networkx (both endpoints counted)."""
    h, wd = w.shape
    t = t or (h - 1, wd - 1)
    g = nx.DiGraph()
    g.add_nodes_from((r, c) for r in range(h) for c in range(wd))
    offs = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]
    if neighbourhood == 4:
        offs = [(a, b) for a, b in offs if abs(a) + abs(b) == 1]
    for r in range(h):
        for c in range(wd):
            for dr, dc in offs:
                if 0 <= r + dr < h and 0 <= c + dc < wd:
                    g.add_edge((r, c), (r + dr, c + dc), weight=float(w[r + dr, c + dc]))
    return w[s] + nx.shortest_path_length(g, s, t, weight="weight")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("neighbourhood", [8, 4])
def test_grid_conformance_and_brute_force(backend, neighbourhood):
    solver = GridShortestPath(neighbourhood=neighbourhood, backend=backend)
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(6, 3, 4, generator=g, dtype=torch.float64)
    theta[:3] = torch.randint(0, 3, (3, 3, 4), generator=g).double()  # ties and zero costs
    report = check_solver(solver, theta, solutions=grid_path_masks_oracle(3, 4, neighbourhood))
    assert report["checked_optimal"] == 6


@settings(max_examples=40, deadline=None)
@given(w=arrays(np.float64, st.tuples(st.integers(1, 7), st.integers(1, 7)),
                elements=st.sampled_from([0.0, 0.8, 1.2, 1.2, 5.3, 9.2])),
       neighbourhood=st.sampled_from([4, 8]))
def test_grid_matches_networkx_and_backends_agree(w, neighbourhood):
    """Few distinct cost values: many ties, zero-cost plateaus, inexact float sums."""
    ys = {b: GridShortestPath(neighbourhood, backend=b).solve(torch.from_numpy(w)[None])[0].numpy()
          for b in BACKENDS}
    np.testing.assert_array_equal(ys["numba"], ys["torch"])
    solver = GridShortestPath(neighbourhood)
    assert solver.is_feasible(ys["numba"][None])[0]
    assert (w * ys["numba"]).sum() == pytest.approx(nx_grid_cost(w, neighbourhood), rel=1e-12, abs=1e-12)


def test_grid_batch_warcraft_sizes_and_custom_endpoints():
    g = torch.Generator().manual_seed(1)
    w = torch.rand(16, 12, 12, generator=g, dtype=torch.float64) * 8.4 + 0.8
    y = GridShortestPath().solve(w)
    for b in range(16):
        assert (w[b] * y[b]).sum().item() == pytest.approx(nx_grid_cost(w[b].numpy(), 8))
    s = GridShortestPath(source=(11, 0), target=(0, 11))
    y2 = s.solve(w[:4])
    assert (y2[:, 11, 0] == 1).all() and (y2[:, 0, 11] == 1).all()
    for b in range(4):
        assert (w[b] * y2[b]).sum().item() == pytest.approx(nx_grid_cost(w[b].numpy(), 8, (11, 0), (0, 11)))


def test_grid_source_equals_target_and_single_cell():
    y = GridShortestPath(source=(1, 1), target=(1, 1)).solve(torch.rand(2, 3, 3))
    assert y.sum().item() == 2 and (y[:, 1, 1] == 1).all()
    assert GridShortestPath().solve(torch.ones(1, 1, 1)).item() == 1


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[[1.0, -0.5], [1.0, 1.0]]]), "non-negative"),
    (torch.tensor([[[1.0, float("nan")], [1.0, 1.0]]]), "finite"),
    (torch.ones(2, 2), r"\[B, H, W\]"),
])
def test_grid_bad_input(bad, match):
    with pytest.raises(ValueError, match=match) as exc:
        GridShortestPath().solve(bad)
    assert "costs" in str(exc.value)


def test_grid_bad_constructor_arguments():
    with pytest.raises(ValueError, match="neighbourhood"):
        GridShortestPath(neighbourhood=6)
    with pytest.raises(ValueError, match="source"):
        GridShortestPath(source=(5, 0)).solve(torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="backend"):
        GridShortestPath(backend="cuda")


def test_grid_feasibility_checker_rejects_non_paths():
    s = GridShortestPath()
    good = s.solve(torch.ones(1, 3, 3)).numpy()
    bad_gap = np.zeros((1, 3, 3))
    bad_gap[0, 0, 0] = bad_gap[0, 2, 2] = 1
    extra = good.copy()
    extra[0, 0, 2] = 1
    assert s.is_feasible(good)[0] and not s.is_feasible(bad_gap)[0] and not s.is_feasible(extra)[0]


# ---------------------------------------------------------------- general graphs
@pytest.mark.parametrize("backend", BACKENDS)
def test_pto_grid_graph(backend):
    solver = GraphShortestPath.grid(5, 5, backend=backend)
    assert len(solver.edges) == 40
    # first row: 4 rightward edges, then 5 downward edges
    np.testing.assert_array_equal(solver.edges[:5], [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5]])
    g = torch.Generator().manual_seed(2)
    theta = torch.rand(8, 40, generator=g, dtype=torch.float64)
    theta[4:] = torch.randint(0, 2, (4, 40), generator=g).double()
    sols = enumerate_solutions(solver, (40,))
    assert len(sols) == 70  # C(8, 4) monotone lattice paths
    check_solver(solver, theta, solutions=sols)
    assert (solver.solve(theta).sum(1) == 8).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 12), p=st.floats(0.15, 0.6),
       directed=st.booleans(), integer_costs=st.booleans())
def test_random_graphs_match_networkx(seed, n, p, directed, integer_costs):
    G = nx.gnp_random_graph(n, p, seed=seed, directed=directed)
    if G.number_of_edges() == 0 or not nx.has_path(G, 0, n - 1):
        with pytest.raises(ValueError, match="reachable"):
            GraphShortestPath(G, 0, n - 1)
        return
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 3, (3, G.number_of_edges())).astype(float) if integer_costs else rng.random((3, G.number_of_edges()))
    ys = {b: GraphShortestPath(G, 0, n - 1, backend=b).solve(torch.from_numpy(c)).numpy() for b in BACKENDS}
    np.testing.assert_array_equal(ys["numba"], ys["torch"])
    solver = GraphShortestPath(G, 0, n - 1)
    assert solver.is_feasible(ys["numba"]).all()
    for u, v in G.edges:
        G[u][v]["w"] = None
    for b in range(3):
        for i, (u, v) in enumerate(G.edges):
            G[u][v]["w"] = float(c[b, i])
        assert (c[b] * ys["numba"][b]).sum() == pytest.approx(nx.shortest_path_length(G, 0, n - 1, weight="w"))


def test_graph_labels_edge_list_and_errors():
    G = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c")])
    s = GraphShortestPath(G, "a", "c")
    order = list(G.edges)  # edges are numbered in networkx's iteration order
    direct, via_b = order.index(("a", "c")), [order.index(("a", "b")), order.index(("b", "c"))]
    costs = torch.ones(2, 3)
    costs[0, direct] = 3.0
    costs[1, direct] = 1.5
    y = s.solve(costs)
    assert y[0, via_b].tolist() == [1.0, 1.0] and y[0, direct] == 0
    assert y[1, direct] == 1 and y[1].sum() == 1
    with pytest.raises(ValueError, match="source"):
        GraphShortestPath(G, "z", "c")
    with pytest.raises(ValueError, match=r"costs must have shape \[B, E\]"):
        s.solve(torch.ones(1, 4))
    # acyclic: negative costs are solved exactly (via b: 1 - 1 = 0 < 1)
    neg = torch.ones(1, 3)
    neg[0, via_b[1]] = -1.0
    assert s.solve(neg)[0, via_b].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="non-negative"):  # a cycle: Dijkstra, costs must be >= 0
        GraphShortestPath(nx.DiGraph([("a", "b"), ("b", "a"), ("b", "c")]), "a", "c").solve(
            torch.tensor([[1.0, -1.0, 1.0]]))
    with pytest.raises(ValueError, match="edge list"):
        GraphShortestPath(np.array([[0.5, 1.0]]), 0, 1)
    with pytest.raises(ValueError, match="reachable"):
        GraphShortestPath(np.array([[1, 0]]), 0, 1)
    undirected = GraphShortestPath(np.array([[1, 0]]), 0, 1, directed=False)
    assert undirected.solve(torch.ones(2, 1)).tolist() == [[1.0], [1.0]]


def test_spec_round_trip_keeps_graph():
    import pickle

    s = GraphShortestPath(nx.cycle_graph(6), 0, 3)
    r = pickle.loads(pickle.dumps(s.spec())).build()
    c = torch.rand(5, 6)
    assert torch.equal(s.solve(c), r.solve(c))


def test_shift_invariance_is_detected_from_the_graph():
    assert GraphShortestPath.grid(5, 5).shift_invariant
    assert GraphShortestPath.grid(3, 4).shift_invariant
    # two routes 0 -> 3 of different lengths: a shift changes which is shorter
    uneven = GraphShortestPath(np.array([[0, 3], [0, 1], [1, 2], [2, 3]]), 0, 3)
    assert not uneven.shift_invariant
    c = torch.tensor([[2.0, 0.5, 0.5, 0.5]])
    assert uneven.solve(c)[0, 0] == 0 and uneven.solve(c + 1.0)[0, 0] == 1
    # an edge off every source -> target route does not matter; an undirected graph is never graded
    assert GraphShortestPath(np.array([[0, 1], [1, 2], [3, 1]]), 0, 2).shift_invariant
    assert not GraphShortestPath(np.array([[0, 1], [1, 2]]), 0, 2, directed=False).shift_invariant
    assert not GridShortestPath().shift_invariant


def test_shift_guard_solves_negative_costs_exactly_on_graded_graphs():
    import itertools

    from discreteopt import DiscreteLayer
    from discreteopt.estimators import Shift, StraightThrough

    solver = GraphShortestPath.grid(3, 3)
    layer = DiscreteLayer(solver, StraightThrough(), guard=Shift())
    c = torch.randn(16, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = layer(c)
    # brute force over all 6 monotone paths of the 3x3 right/down grid
    paths = enumerate_solutions(solver, (12,))
    assert len(paths) == len(list(itertools.combinations(range(4), 2)))
    best = (torch.from_numpy(paths) @ c.T).min(0).values  # [B]
    assert torch.allclose((y * c).sum(1), best)
    with pytest.raises(ValueError, match="Shift"):
        DiscreteLayer(GridShortestPath(), StraightThrough(), guard=Shift())


@pytest.mark.parametrize("kind", ["positive", "integer_ties", "zeros", "tiny"])
def test_grid_fast_and_lexicographic_heaps_give_the_canonical_path(kind):
    """The numba kernel keys its heap by d alone when no cost can be absorbed, by (d, hops) otherwise; both must
    return the torch back-end's canonical path (computed independently: distances, then hop counts)."""
    g = torch.Generator().manual_seed(7)
    w = torch.rand(64, 9, 11, generator=g, dtype=torch.float64) * 8.4 + 0.8
    if kind == "integer_ties":  # equal sums of different hop counts everywhere (1 + 1 == 2)
        w = torch.randint(1, 3, (64, 9, 11), generator=g).double()
    elif kind == "zeros":
        w = torch.randint(0, 2, (64, 9, 11), generator=g).double()
    elif kind == "tiny":  # costs absorbed by large path sums: fl(d + c) == d
        w[:, ::2] = 1e-18
    ys = {b: GridShortestPath(backend=b).solve(w) for b in BACKENDS}
    assert torch.equal(ys["numba"], ys["torch"])
    for b in range(0, 64, 16):  # and optimal against networkx
        graph = nx.DiGraph()
        for r in range(9):
            for c in range(11):
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        if (dr or dc) and 0 <= r + dr < 9 and 0 <= c + dc < 11:
                            graph.add_edge((r, c), (r + dr, c + dc), weight=float(w[b, r + dr, c + dc]))
        best = nx.dijkstra_path_length(graph, (0, 0), (8, 10)) + float(w[b, 0, 0])
        assert float((ys["numba"][b] * w[b]).sum()) == pytest.approx(best, rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------- acyclic graphs: exact for any sign of cost
def random_dag(seed: int, n: int, p: float) -> nx.DiGraph:
    """Random DAG on 0..n-1 (arcs from lower to higher ids, shuffled edge order) with 0 -> n-1 reachable."""
    rng = np.random.default_rng(seed)
    arcs = [(u, v) for u in range(n) for v in range(u + 1, n) if rng.random() < p]
    arcs += [(i, i + 1) for i in range(n - 1) if (i, i + 1) not in arcs and rng.random() < 0.5]
    arcs.append((0, n - 1)) if not arcs else None
    rng.shuffle(arcs)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(arcs)
    return g


def test_acyclicity_is_detected_on_source_target_walks():
    assert GraphShortestPath.grid(5, 5).acyclic and GraphShortestPath.grid(5, 5).min_cost is None
    assert not GraphShortestPath(nx.cycle_graph(6), 0, 3).acyclic  # undirected: Dijkstra
    assert GraphShortestPath(nx.cycle_graph(6), 0, 3).min_cost == 0.0
    cycle_on_route = np.array([[0, 1], [1, 2], [2, 1], [2, 3]])
    assert not GraphShortestPath(cycle_on_route, 0, 3).acyclic
    cycle_off_route = np.array([[0, 1], [1, 2], [3, 4], [4, 3], [1, 3]])  # 3 <-> 4 cannot reach the target 2
    assert GraphShortestPath(cycle_off_route, 0, 2).acyclic
    assert GraphShortestPath(np.array([[0, 1]]), 0, 0, num_nodes=2).acyclic  # empty path


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_costs_on_the_pto_grid_are_solved_exactly(backend):
    solver = GraphShortestPath.grid(5, 5, backend=backend)
    c = torch.randn(64, 40, generator=torch.Generator().manual_seed(3), dtype=torch.float64)  # half negative
    y = solver.solve(c)
    paths = torch.from_numpy(enumerate_solutions(solver, (40,)))  # the 70 monotone paths
    best = (paths @ c.T).min(0).values  # [B]
    torch.testing.assert_close((y * c).sum(1), best, rtol=0, atol=1e-12)
    assert solver.is_feasible(y.numpy()).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 9), p=st.floats(0.2, 0.7), kind=st.sampled_from(
    ["normal", "integer", "zeros"]))
def test_random_dags_with_negative_costs_match_brute_force_and_backends_agree(seed, n, p, kind):
    g = random_dag(seed, n, p)
    if not nx.has_path(g, 0, n - 1):
        return
    rng = np.random.default_rng(seed + 1)
    e = g.number_of_edges()
    c = {"normal": rng.normal(size=(4, e)), "integer": rng.integers(-2, 3, (4, e)).astype(float),
         "zeros": rng.integers(-1, 1, (4, e)).astype(float)}[kind]
    ys = {b: GraphShortestPath(g, 0, n - 1, backend=b).solve(torch.from_numpy(c)).numpy() for b in BACKENDS}
    np.testing.assert_array_equal(ys["numba"], ys["torch"])
    solver = GraphShortestPath(g, 0, n - 1)
    assert solver.acyclic and solver.is_feasible(ys["numba"]).all()
    sols = enumerate_solutions(solver, (e,))  # every simple path (networkx), [M, E]
    np.testing.assert_allclose((c * ys["numba"]).sum(1), (sols @ c.T).min(0), rtol=0, atol=1e-12)


def _dijkstra_twin(solver: GraphShortestPath) -> GraphShortestPath:
    """The same solver forced onto the Dijkstra / Bellman-Ford path (as if the graph had a cycle)."""
    import copy

    twin = copy.copy(solver)
    twin.acyclic, twin.min_cost = False, 0.0
    return twin


@pytest.mark.parametrize("kind", ["uniform", "integer_ties", "zeros", "tiny"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_dag_dynamic_programming_returns_dijkstras_path_bit_for_bit_on_nonnegative_costs(kind, backend):
    """Same canonical tie-breaking as before: on costs >= 0 the acyclic algorithm must pick exactly the path
    Dijkstra (numba) / Bellman-Ford (torch) picks, ties, zero costs and absorbed tiny costs included."""
    g = torch.Generator().manual_seed(11)
    graphs = [GraphShortestPath.grid(5, 5, backend=backend),
              GraphShortestPath(random_dag(5, 9, 0.5), 0, 8, backend=backend)]
    for solver in graphs:
        e = len(solver.edges)
        c = torch.rand(128, e, generator=g, dtype=torch.float64)
        if kind == "integer_ties":
            c = torch.randint(1, 3, (128, e), generator=g).double()
        elif kind == "zeros":
            c = torch.randint(0, 2, (128, e), generator=g).double()
        elif kind == "tiny":  # fl(d + c) == d for the tiny ones
            c[:, ::2] = 1e-18
        assert solver.acyclic
        assert torch.equal(solver.solve(c), _dijkstra_twin(solver).solve(c))


# ---------------------------------------------------------------- overflow: one outcome for every back-end
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", ["grid", "graph_dag", "graph_cyclic"])
def test_path_sums_that_overflow_raise_instance_error_overflow(backend, which):
    """Finite costs whose every path sum overflows float64: InstanceError OVERFLOW with the instance's index (was:
    RuntimeError in numba, a mask from the torch grid, OverflowError from the torch graph back-end)."""
    if which == "grid":
        solver, shape = GridShortestPath(backend=backend), (6, 6)
    elif which == "graph_dag":
        solver, shape = GraphShortestPath.grid(5, 5, backend=backend), (40,)
    else:
        solver, shape = GraphShortestPath(nx.cycle_graph(6), 0, 3, backend=backend), (6,)
    costs = torch.ones(4, *shape, dtype=torch.float64)
    costs[2] = 1e308  # finite, but any two of them sum to inf
    with pytest.raises(InstanceError) as exc:
        solver.solve(costs)
    assert exc.value.status == "OVERFLOW" and exc.value.index == 2
    assert "overflow" in str(exc.value)
    assert solver.solve(costs[:2]).shape == (2, *shape)  # the solver stays usable


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_negative_cost_after_an_overflowed_partial_sum_is_not_answered_silently(backend):
    # 0 -> 1 -> 2 -> 3 sums to 1e308 (+1e308 - 1e308) but its float partial sum overflows; 0 -> 3 costs 1.5e308
    solver = GraphShortestPath(np.array([[0, 1], [1, 2], [2, 3], [0, 3]]), 0, 3, backend=backend)
    costs = torch.tensor([[1.0, 1.0, -1.0, 5.0], [1e308, 1e308, -1e308, 1.5e308]], dtype=torch.float64)
    with pytest.raises(InstanceError) as exc:
        solver.solve(costs)
    assert exc.value.status == "OVERFLOW" and exc.value.index == 1
    assert solver.solve(costs[:1]).tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_grid_backends_agree_bit_for_bit_with_a_huge_source_cost():
    """The source's cost is part of every path sum: with 1e17 there, adding costs ~1 rounds, ties appear and the
    canonical rule (fewest hops among tight paths) decides. A back-end that leaves the source cost out finds the
    true-cost shortest path instead and disagrees."""
    g = torch.Generator().manual_seed(5)
    w = torch.rand(32, 12, 12, generator=g, dtype=torch.float64) * 8.4 + 0.8
    w[:, 0, 0] = 1e17
    ys = {b: GridShortestPath(backend=b).solve(w) for b in BACKENDS}
    assert torch.equal(ys["numba"], ys["torch"])
    # the test has teeth: without the source cost the canonical paths differ on most instances
    w0 = w.clone()
    w0[:, 0, 0] = 0.0
    differ = (GridShortestPath(backend="numba").solve(w0) != ys["numba"]).flatten(1).any(1)
    assert int(differ.sum()) >= 16


def test_numba_kernels_fall_back_to_memory_when_no_cache_location_is_writable():
    """cache=True makes numba raise at decoration when it has nowhere to write; the kernels then compile in memory."""
    import os
    import subprocess
    import sys

    pytest.importorskip("numba")
    code = ("import torch\n"
            "from discreteopt.solvers import GridShortestPath, _dijkstra_numba as k\n"
            "assert type(k.grid_paths._cache).__name__ == 'NullCache', type(k.grid_paths._cache)\n"
            "y = GridShortestPath(backend='numba').solve(torch.ones(1, 3, 3))\n"
            "print(int(y.sum()))\n")
    # IPythonCacheLocator applies to IPython cells only: no locator is available for the kernels' file
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="IPythonCacheLocator")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_graph_is_feasible_is_vectorised_for_the_empty_path_and_checks_values():
    """source == target: the empty path is the only feasible answer, decided without a Python loop per row (a
    batch of 10**7 empty instances made the per-row check take minutes); non-0/1 rows are infeasible either way."""
    g = GraphShortestPath(np.array([[0, 1], [1, 2]]), 1, 1, num_nodes=3)
    y = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [0.0, -0.0]])
    assert g.is_feasible(y).tolist() == [True, False, False, True]
    assert g.is_feasible(np.zeros((10**6, 2))).all()
    path = GraphShortestPath(np.array([[0, 1], [1, 2]]), 0, 2, num_nodes=3)
    assert path.is_feasible(np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 2.0], [0.5, 1.0]])).tolist() == [
        True, False, False, False]
    assert path.is_feasible(np.zeros((0, 2))).dtype == np.bool_
