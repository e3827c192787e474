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
from discreteopt.testing import check_solver, enumerate_solutions

BACKENDS = ["numba", "torch"]


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
    report = check_solver(solver, theta, solutions=enumerate_solutions(solver, (3, 4)))
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
    with pytest.raises(ValueError, match="non-negative"):
        s.solve(torch.tensor([[1.0, -1.0, 1.0]]))
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
