"""Bring your own solver: a minimum spanning tree with networkx, from a check to training to a process pool.

1. ``SpanningTree(Solver)``: edge weights ``[B, m]`` -> 0/1 edge indicator ``[B, m]`` of a minimum (or maximum)
   spanning tree of a fixed graph. One public hook, ``solve_instance``, calls networkx; nothing else is needed
   (the constructor's arguments are recorded for worker processes automatically).
   The same solver as a function: ``from_function(functools.partial(spanning_tree, edges=...), sense="min")``.
2. ``check_solver`` against brute force: every spanning tree of the small graph (the subsets of ``n - 1`` edges
   that connect it), enumerated independently of networkx.
3. A ``DiscreteLayer`` with I-MLE learns edge weights from edge features so that the predicted trees match the
   trees of the (hidden) true weights.
4. The same layer on ``Processes(2)`` gives the same output and gradient as inline (same seed).

Run: ``python examples/own_solver.py`` (about 20 s on a laptop CPU, most of it starting two worker processes).
"""

from __future__ import annotations

import argparse
import functools
import itertools

import networkx as nx
import numpy as np
import torch

import discreteopt as do
from discreteopt.solvers import Solver, from_function
from discreteopt.testing import check_solver

#: a small connected graph: 6 nodes, 10 edges (each a pair of node ids)
EDGES = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 4), (3, 4), (3, 5), (4, 5), (0, 5), (2, 3)]
NODES = 6


def spanning_tree(weights: np.ndarray, edges: list[tuple[int, int]], maximum: bool = False) -> np.ndarray:
    """Edge indicator ``[m]`` of a minimum (``maximum=True``: maximum) spanning tree for weights ``[m]``."""
    g = nx.Graph()
    g.add_weighted_edges_from((u, v, float(w)) for (u, v), w in zip(edges, weights, strict=True))
    pick = nx.maximum_spanning_edges if maximum else nx.minimum_spanning_edges
    tree = {frozenset(e) for e in pick(g, algorithm="kruskal", data=False)}
    return np.array([frozenset(e) in tree for e in edges], dtype=np.float64)


class SpanningTree(Solver):
    """Minimum (``sense="min"``) or maximum (``"max"``) spanning tree: weights ``[B, m]`` -> indicator ``[B, m]``."""

    theta_layout = "[B, m]"
    arg_name = "weights"

    def __init__(self, edges: list[tuple[int, int]], sense: str = "min"):
        if sense not in ("min", "max"):
            raise ValueError(f"sense must be 'min' or 'max'; got {sense!r}")
        self.edges = [(int(u), int(v)) for u, v in edges]
        self.sense = sense  # instance attribute: the layer flips the sign once for "min"

    def event_shape(self) -> tuple[int, ...]:
        return (len(self.edges),)

    def solve_instance(self, weights: np.ndarray) -> np.ndarray:  # [m] float64 -> [m]
        return spanning_tree(weights, self.edges, maximum=self.sense == "max")


def all_spanning_trees(edges: list[tuple[int, int]], n: int) -> np.ndarray:
    """Brute force: indicators ``[M, m]`` of the ``n - 1``-edge subsets that connect all ``n`` nodes."""
    def root(parent: list[int], i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    rows = []
    for subset in itertools.combinations(range(len(edges)), n - 1):
        parent = list(range(n))  # union-find over the nodes
        joined = 0
        for e in subset:
            a, b = root(parent, edges[e][0]), root(parent, edges[e][1])
            if a != b:
                parent[a] = b
                joined += 1
        if joined == n - 1:  # no cycle among n - 1 edges: a spanning tree
            rows.append(np.isin(np.arange(len(edges)), subset).astype(np.float64))
    return np.stack(rows)


def check(seed: int = 0) -> None:
    """The conformance checks, for both senses and for the function variant, against brute force."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(8, len(EDGES), generator=gen, dtype=torch.float64)
    trees = all_spanning_trees(EDGES, NODES)
    for solver in (SpanningTree(EDGES), SpanningTree(EDGES, sense="max"),
                   from_function(functools.partial(spanning_tree, edges=EDGES), sense="min")):
        report = check_solver(solver, theta, solutions=trees)
        print(f"check_solver({solver!r}): {report['checked_optimal']} instances optimal among {len(trees)} "
              f"spanning trees; worker recipe: {report['recipe']}")


def train(steps: int = 60, batch: int = 32, features: int = 4, seed: int = 0) -> dict[str, float]:
    """Learn weights = linear(features) so that the layer's trees match those of the hidden true weights."""
    gen = torch.Generator().manual_seed(seed)
    solver = SpanningTree(EDGES)
    true_w = torch.randn(features, generator=gen)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, len(EDGES), features, generator=gen)  # [n, m, F]
        return x, solver.solve(x @ true_w)  # target trees [n, m]

    torch.manual_seed(seed)
    model = torch.nn.Linear(features, 1)
    layer = do.DiscreteLayer(solver, do.estimators.IMLE(lam=5.0, samples=4), seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x_test, y_test = sample(256)

    def error() -> float:
        layer.eval()
        with torch.no_grad():
            pred = layer(model(x_test).squeeze(-1))  # MAP trees [256, m]
        layer.train()
        return (pred != y_test).float().mean().item()

    before = error()
    for _ in range(steps):
        x, y_true = sample(batch)
        tree = layer(model(x).squeeze(-1))  # [B, m], mean over the 4 perturbed trees
        loss = (tree - y_true).abs().sum(1).mean()  # Hamming distance per graph
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = error()
    print(f"training: edge error of the predicted trees {before:.3f} -> {after:.3f} after {steps} steps")
    return {"error_before": before, "error_after": after}


def same_on_processes(seed: int = 0) -> bool:
    """One forward and backward on Processes(2) and inline, same seed: identical trees and gradients."""
    theta = torch.randn(16, len(EDGES), generator=torch.Generator().manual_seed(seed + 1))
    results = []
    with do.executors.Processes(2) as pool:
        for executor in (do.executors.Inline(), pool):
            layer = do.DiscreteLayer(SpanningTree(EDGES), do.estimators.IMLE(lam=5.0, samples=4),
                                     executor=executor, seed=seed)
            w = theta.clone().requires_grad_(True)
            y = layer(w)
            (y * torch.arange(len(EDGES))).sum().backward()
            results.append((y.detach(), w.grad))
    same = all(torch.equal(a, b) for a, b in zip(*results, strict=True))
    print(f"Processes(2) gives the same trees and gradients as inline: {same}")
    return same


def main(steps: int = 60) -> dict[str, float]:
    check()
    out = train(steps=steps)
    out["same_on_processes"] = float(same_on_processes())
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps")
    main(parser.parse_args().steps)
