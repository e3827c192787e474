"""PyEPO's knapsack and TSP generators: published formulas, draw order, values recorded from PyEPO 2.2.7, and
(when the optional ``pyepo`` package is installed) bit-for-bit equality with ``pyepo.data.*.genData``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from discreteopt.data import (
    KnapsackData,
    PtOData,
    generate_knapsack,
    generate_shortest_path,
    generate_tsp,
    tsp_edges,
)


# ------------------------------------------------------------------ the formulas written out, draw by draw
def reference_knapsack(n, p, m, dim, deg, e, seed):
    rnd = np.random.RandomState(seed)
    weights = rnd.choice(range(300, 800), size=(dim, m)) / 100
    B = rnd.binomial(1, 0.5, (m, p))
    x = rnd.normal(0, 1, (n, p))
    c = np.empty((n, m))
    for i in range(n):
        c[i] = 5 * ((B @ x[i] / np.sqrt(p) + 3) ** deg + 1) / 3.5**deg
    c *= rnd.uniform(1 - e, 1 + e, (n, m))
    return weights, x, np.ceil(c)


def reference_tsp(n, p, m, deg, e, seed):
    rnd = np.random.RandomState(seed)
    coords = np.concatenate((rnd.uniform(-2, 2, (m // 2, 2)), rnd.normal(0, 1, (m - m // 2, 2))))
    dist = np.array([np.hypot(*(coords[u] - coords[v])) for u, v in itertools.combinations(range(m), 2)])
    E = len(dist)
    B = rnd.binomial(1, 0.5, (E, p)) * rnd.uniform(-2, 2, (E, p))
    x = rnd.normal(0, 1, (n, p))
    c = np.empty((n, E))
    for i in range(n):
        c[i] = (B @ x[i] / np.sqrt(p) + 3) ** deg / 3 ** (deg - 1)
    c = dist + c * rnd.uniform(1 - e, 1 + e, (n, E))
    return x, np.round(c, 4)


@pytest.mark.parametrize("deg, e, seed", [(1, 0.0, 135), (2, 0.5, 3), (6, 0.5, 11)])
def test_knapsack_generator_follows_the_published_formula(deg, e, seed):
    data = generate_knapsack(40, p=5, num_items=12, dim=3, deg=deg, noise_width=e, seed=seed)
    w, x, c = reference_knapsack(40, 5, 12, 3, deg, e, seed)
    assert isinstance(data, KnapsackData) and data.c.dtype == np.float32 and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.weights, w)
    np.testing.assert_allclose(data.x, x, rtol=1e-6)
    # ceil of a value computed in another order may differ by one where the value is (almost) an integer
    assert np.abs(data.c - c).max() <= 1 and (data.c != c).mean() < 0.01
    assert (data.c == np.round(data.c)).all() and data.c.min() >= 1  # positive integers
    assert data.weights.shape == (3, 12) and 3.0 <= data.weights.min() and data.weights.max() <= 7.99
    np.testing.assert_array_equal(data.weights_int, np.round(w * 100))
    assert data.weights_int.dtype == np.int64 and np.allclose(data.weights_int / 100, data.weights)


@pytest.mark.parametrize("deg, e, seed", [(1, 0.0, 135), (2, 0.5, 3), (4, 0.5, 11)])
def test_tsp_generator_follows_the_published_formula(deg, e, seed):
    data = generate_tsp(30, p=4, num_nodes=7, deg=deg, noise_width=e, seed=seed)
    x, c = reference_tsp(30, 4, 7, deg, e, seed)
    assert data.c.shape == (30, 21) and data.c.dtype == np.float32
    np.testing.assert_allclose(data.x, x, rtol=1e-6)
    np.testing.assert_allclose(data.c, c, atol=1e-4 + 1e-6)
    np.testing.assert_allclose(data.c, np.round(data.c.astype(np.float64), 4), atol=1e-6)  # 4 decimals


def test_tsp_edge_order_is_the_condensed_upper_triangle():
    assert tsp_edges(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert len(tsp_edges(20)) == 190


def test_tsp_costs_are_distance_plus_an_affine_feature_term_at_degree_one():
    """Without noise, costs minus the (fixed) distance are a polynomial of one linear map of x."""
    data = generate_tsp(400, p=5, num_nodes=6, deg=1, seed=2)
    # deg 1: c = D + (B x / sqrt(p) + 3) is affine in x: a least-squares fit is exact up to the 4-decimal rounding
    X = np.hstack([data.x, np.ones((400, 1))]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(X, data.c.astype(np.float64), rcond=None)
    assert np.abs(X @ coef - data.c).max() < 1e-4


# ------------------------------------------------------------------ values recorded from PyEPO 2.2.7
def test_values_recorded_from_pyepo():
    """``pyepo.data.knapsack.genData(4, 5, 8, 2, 4, 0.5, 21)``, ``pyepo.data.tsp.genData(3, 5, 6, 2, 0.5, 21)``
    and ``pyepo.data.shortestpath.genData(3, 5, (5, 5), 6, 0.5, 21)``, printed with full precision."""
    kn = generate_knapsack(4, p=5, num_items=8, dim=2, deg=4, noise_width=0.5, seed=21)
    np.testing.assert_array_equal(kn.weights[:, :4], [[7.57, 5.07, 6.12, 5.6], [4.88, 3.98, 5.41, 5.02]])
    np.testing.assert_array_equal(kn.x[1, :3], np.float32([0.9718966629332837, 0.07267261540533806,
                                                           2.560530024648126]))
    np.testing.assert_array_equal(kn.c[:, :4], [[5, 3, 2, 6], [4, 6, 6, 6], [1, 3, 2, 2], [11, 4, 4, 6]])
    tsp = generate_tsp(3, p=5, num_nodes=6, deg=2, noise_width=0.5, seed=21)
    assert tsp.c.shape == (3, 15)
    np.testing.assert_array_equal(tsp.x[2, :3], np.float32([1.0767288319374921, -0.7029686846249606,
                                                            0.5387799775948431]))
    np.testing.assert_array_equal(tsp.c[:, :5], np.float32([
        [4.4903998374938965, 3.8473000526428223, 4.4217000007629395, 6.923799991607666, 6.1209001541137695],
        [5.292900085449219, 4.587800025939941, 4.626399993896484, 6.624800205230713, 2.776400089263916],
        [6.150899887084961, 3.8587000370025635, 4.553400039672852, 6.389599800109863, 4.768899917602539]]))
    sp = generate_shortest_path(3, p=5, deg=6, noise_width=0.5, seed=21)
    np.testing.assert_array_equal(sp.c[:, :4], np.float32([
        [0.13327725231647491, 0.06629165261983871, 0.06303530931472778, 0.06551089882850647],
        [0.4180973768234253, 0.5522149801254272, 0.19515475630760193, 0.125657856464386],
        [0.2653767466545105, 0.5950841307640076, 0.7364146709442139, 2.1471364498138428]]))


@pytest.mark.parametrize("deg, e, seed", [(1, 0.0, 135), (2, 0.5, 7), (6, 0.5, 42)])
def test_bit_for_bit_equal_to_installed_pyepo(deg, e, seed):
    pyepo_data = pytest.importorskip("pyepo.data")
    w, x, c = pyepo_data.knapsack.genData(50, 5, 32, 2, deg, e, seed)
    kn = generate_knapsack(50, p=5, num_items=32, dim=2, deg=deg, noise_width=e, seed=seed)
    np.testing.assert_array_equal(kn.weights, w)
    np.testing.assert_array_equal(kn.x, x.astype(np.float32))
    np.testing.assert_array_equal(kn.c, c)
    x, c = pyepo_data.tsp.genData(50, 5, 20, deg, e, seed)
    tsp = generate_tsp(50, p=5, num_nodes=20, deg=deg, noise_width=e, seed=seed)
    np.testing.assert_array_equal(tsp.x, x.astype(np.float32))
    np.testing.assert_array_equal(tsp.c, c)
    x, c = pyepo_data.shortestpath.genData(50, 5, (5, 5), deg, e, seed)
    sp = generate_shortest_path(50, p=5, deg=deg, noise_width=e, seed=seed)
    np.testing.assert_array_equal(sp.x, x.astype(np.float32))
    np.testing.assert_array_equal(sp.c, c)


def test_split_keeps_the_weights_and_bad_arguments_raise():
    kn = generate_knapsack(10, num_items=6, dim=2, seed=1)
    a, b = kn.split(7)
    assert isinstance(a, KnapsackData) and len(a) == 7 and len(b) == 3
    np.testing.assert_array_equal(a.weights, kn.weights)
    np.testing.assert_array_equal(b.c, kn.c[7:])
    assert type(generate_tsp(5, num_nodes=4).split(2)[0]) is PtOData
    for kwargs, match in [({"num_items": 0}, "num_items"), ({"dim": 0}, "dim"), ({"deg": 0}, "deg"),
                          ({"noise_width": 1.0}, "noise_width"), ({"n": 0}, "n")]:
        with pytest.raises(ValueError, match=match):
            generate_knapsack(**{"n": 5, **kwargs})
    with pytest.raises(ValueError, match="num_nodes"):
        generate_tsp(5, num_nodes=2)
    with pytest.raises(ValueError, match="noise_width"):
        generate_tsp(5, noise_width=-0.1)
