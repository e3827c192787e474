"""Warcraft-like generator (shapes, costs, textures, optimal labels) and the loader of the real ``.npy`` files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from discreteopt.data.warcraft import TERRAINS, TILE, WarcraftData, generate_warcraft, load_warcraft
from discreteopt.solvers import GridShortestPath

COSTS = sorted(t.cost for t in TERRAINS)


@pytest.fixture(scope="module")
def maps12() -> WarcraftData:
    return generate_warcraft(64, 12, seed=3)


def scipy_path_cost(w: np.ndarray) -> float:
    """Optimal 8-neighbour vertex-weighted cost top-left -> bottom-right, both ends counted (scipy Dijkstra on
    the arc graph whose arc weight is the cost of the arc's head)."""
    k = w.shape[0]
    rows, cols, vals = [], [], []
    for r in range(k):
        for c in range(k):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if (dr or dc) and 0 <= r + dr < k and 0 <= c + dc < k:
                        rows.append(r * k + c)
                        cols.append((r + dr) * k + c + dc)
                        vals.append(w[r + dr, c + dc])
    g = sp.csr_matrix((vals, (rows, cols)), shape=(k * k, k * k))
    return float(w[0, 0] + dijkstra(g, indices=0)[k * k - 1])


def test_shapes_dtypes_and_published_layout(maps12):
    assert maps12.maps.shape == (64, 96, 96, 3) and maps12.maps.dtype == np.uint8
    assert maps12.weights.shape == (64, 12, 12) and maps12.weights.dtype == np.float32
    assert maps12.paths.shape == (64, 12, 12) and maps12.paths.dtype == np.float32
    assert maps12.size == 12 and len(maps12) == 64
    big = generate_warcraft(3, 18, seed=0)
    assert big.maps.shape == (3, 18 * TILE, 18 * TILE, 3) and big.weights.shape == (3, 18, 18)


def test_costs_are_terrain_costs_in_published_range(maps12):
    values = np.unique(maps12.weights)
    assert set(values.tolist()) <= {np.float32(c) for c in COSTS}
    assert 0.8 <= COSTS[0] and COSTS[-1] <= 9.2 and len(COSTS) >= 4
    # a handful of terrain types all occur, none dominates
    share = np.array([(maps12.weights == np.float32(c)).mean() for c in COSTS])
    assert (share > 0.05).all() and (share < 0.6).all()
    # per-map proportions vary from map to map
    cheap = (maps12.weights < 2).mean(axis=(1, 2))
    assert cheap.std() > 0.05


def test_terrain_is_spatially_correlated(maps12):
    """Blob-shaped regions: horizontally adjacent tiles share a terrain much more often than independent tiles."""
    w = maps12.weights
    same = (w[:, :, 1:] == w[:, :, :-1]).mean()
    share = np.array([(w == np.float32(c)).mean() for c in COSTS])
    assert same > (share**2).sum() + 0.25


def test_labels_are_optimal_paths(maps12):
    solver = GridShortestPath(neighbourhood=8)
    assert set(np.unique(maps12.paths).tolist()) == {0.0, 1.0}
    assert solver.is_feasible(maps12.paths).all()
    assert (maps12.paths[:, 0, 0] == 1).all() and (maps12.paths[:, -1, -1] == 1).all()
    for i in range(0, 64, 4):
        cost = float((maps12.weights[i].astype(np.float64) * maps12.paths[i]).sum())
        assert cost == pytest.approx(scipy_path_cost(maps12.weights[i].astype(np.float64)), rel=1e-9)


def test_tiles_are_textured_and_their_terrain_is_readable_from_pixels(maps12):
    """Each 8x8 tile is textured (not flat), and a nearest-centroid classifier on per-tile colour statistics,
    fitted on some maps, recovers the terrain of other maps: the labels are learnable from the images."""
    n, k = len(maps12), maps12.size
    tiles = maps12.maps.reshape(n, k, TILE, k, TILE, 3).transpose(0, 1, 3, 2, 4, 5).astype(np.float64)
    tiles = tiles.reshape(n * k * k, TILE * TILE, 3)  # [N*k*k, 64 pixels, RGB]
    assert tiles.std(axis=1).mean() > 5.0  # texture + noise, in 0..255 units
    feats = np.concatenate([tiles.mean(1), tiles.std(1)], axis=1)  # [N*k*k, 6]
    labels = np.searchsorted(np.float32(COSTS), maps12.weights.reshape(-1))
    half = (n // 2) * k * k
    centroids = np.stack([feats[:half][labels[:half] == t].mean(0) for t in range(len(COSTS))])
    pred = np.argmin(((feats[half:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == labels[half:]).mean() > 0.9


def test_seeded_and_deterministic():
    a, b = generate_warcraft(4, 12, seed=7), generate_warcraft(4, 12, seed=7)
    c = generate_warcraft(4, 12, seed=8)
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.paths, b.paths)
    assert not np.array_equal(a.weights, c.weights)


@pytest.mark.parametrize("bad", [{"n": 0}, {"n": 2.5}, {"size": 1}])
def test_generator_rejects_bad_arguments(bad):
    kwargs = {"n": 2, "size": 12, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        generate_warcraft(**kwargs)


# ------------------------------------------------------------------------------------------------ loader
def test_loader_round_trips_the_published_file_layout(tmp_path, maps12):
    for split in ("train", "val", "test"):
        maps12.save(tmp_path, split)
    assert (tmp_path / "train_maps.npy").is_file() and (tmp_path / "test_shortest_paths.npy").is_file()
    back = load_warcraft(tmp_path, "val", 12)
    np.testing.assert_array_equal(back.maps, maps12.maps)
    np.testing.assert_array_equal(back.weights, maps12.weights)
    np.testing.assert_array_equal(back.paths, maps12.paths)
    first = load_warcraft(tmp_path, "train", 12, n=5)
    assert len(first) == 5
    np.testing.assert_array_equal(first.paths, maps12.paths[:5])


def test_loader_reads_size_subfolder_and_converts_dtypes(tmp_path):
    """The archive keeps each size in ``{k}x{k}/``; float maps in [0, 1] and float64 / int labels are converted."""
    d = generate_warcraft(3, 12, seed=1)
    sub = tmp_path / "12x12"
    sub.mkdir()
    np.save(sub / "test_maps.npy", d.maps.astype(np.float32) / 255.0)
    np.save(sub / "test_vertex_weights.npy", d.weights.astype(np.float64))
    np.save(sub / "test_shortest_paths.npy", d.paths.astype(np.int64))
    back = load_warcraft(tmp_path, "test", 12)
    assert back.maps.dtype == np.uint8 and back.weights.dtype == np.float32 and back.paths.dtype == np.float32
    np.testing.assert_array_equal(back.maps, d.maps)
    np.testing.assert_array_equal(back.paths, d.paths)


def test_loader_errors_name_the_problem(tmp_path):
    d = generate_warcraft(2, 12, seed=1)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_warcraft(tmp_path / "nope", "train", 12)
    with pytest.raises(FileNotFoundError, match="train_maps.npy"):
        load_warcraft(tmp_path, "train", 12)
    with pytest.raises(ValueError, match="split"):
        load_warcraft(tmp_path, "dev", 12)
    d.save(tmp_path, "train")
    with pytest.raises(ValueError, match="size=18"):
        load_warcraft(tmp_path, "train", 18)
    np.save(tmp_path / "train_shortest_paths.npy", d.paths[:, :11, :11])
    with pytest.raises(ValueError, match="shortest paths must have shape"):
        load_warcraft(tmp_path, "train", 12)
    np.save(tmp_path / "train_shortest_paths.npy", d.paths)
    np.save(tmp_path / "train_maps.npy", d.maps[:, :90])
    with pytest.raises(ValueError, match="maps must have shape"):
        load_warcraft(tmp_path, "train", 12)


def test_tileset_and_procedural_styles():
    """``tileset``: every tile is one of 4 fixed variants of its terrain (as in the published maps, drawn from one
    tileset); ``procedural``: every tile is textured on its own. Terrain and labels do not depend on the style."""
    k = 12
    tiles_of = {}
    for style in ("tileset", "procedural"):
        d = generate_warcraft(8, k, seed=4, style=style)
        tiles = d.maps.reshape(8, k, TILE, k, TILE, 3).transpose(0, 1, 3, 2, 4, 5).reshape(8 * k * k, -1)
        tiles_of[style] = (tiles, d)
    (t_tiles, t_data), (p_tiles, p_data) = tiles_of["tileset"], tiles_of["procedural"]
    np.testing.assert_array_equal(t_data.weights, p_data.weights)
    np.testing.assert_array_equal(t_data.paths, p_data.paths)
    labels = t_data.weights.reshape(-1)
    for cost in np.unique(labels):
        assert 1 <= len(np.unique(t_tiles[labels == cost], axis=0)) <= 4
        assert len(np.unique(p_tiles[labels == cost], axis=0)) == (labels == cost).sum()
    with pytest.raises(ValueError, match="style"):
        generate_warcraft(2, 12, style="pixel")


# ------------------------------------------------------------------------------------------------ bad files
def _files(tmp_path, maps=None, weights=None, paths=None, split="train"):
    """Write a valid 2-map split, replacing the arrays given; returns the directory."""
    d = generate_warcraft(2, 12, seed=1)
    np.save(tmp_path / f"{split}_maps.npy", d.maps if maps is None else maps)
    np.save(tmp_path / f"{split}_vertex_weights.npy", d.weights if weights is None else weights)
    np.save(tmp_path / f"{split}_shortest_paths.npy", d.paths if paths is None else paths)
    return d


def _weights(value, where=(0, 3, 4), dtype=np.float32):
    w = generate_warcraft(2, 12, seed=1).weights.astype(dtype)
    w[where] = value
    return w


def _paths_with(change):
    p = generate_warcraft(2, 12, seed=1).paths.copy()
    change(p)
    return p


def _cut(p):  # remove an interior vertex of path 1: the path falls apart
    idx = np.argwhere(p[1] == 1)
    inner = [tuple(i) for i in idx if tuple(i) not in ((0, 0), (11, 11))]
    p[(1, *inner[len(inner) // 2])] = 0


def _stray(p):  # an extra vertex far from the path
    p[0][np.unravel_index(np.argmin(_dist_to(p[0])), p[0].shape)] = 1


def _dist_to(mask):
    """Negative Chebyshev distance to the mask (argmin = the farthest tile)."""
    idx = np.argwhere(mask == 1)
    rr, cc = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    return -np.min(np.maximum(abs(rr[..., None] - idx[:, 0]), abs(cc[..., None] - idx[:, 1])), axis=-1)


BAD_WEIGHTS = {
    "nan": (_weights(np.nan), r"vertex weights must be finite; got 1 NaN and 0 inf"),
    "inf": (_weights(np.inf), r"vertex weights must be finite; got 0 NaN and 1 inf"),
    "negative": (_weights(-1.0), r"vertex weights must be > 0 .* e.g. -1.0 at index \(0, 3, 4\)"),
    "zero": (_weights(0.0), r"vertex weights must be > 0"),
    "huge": (_weights(1e300, dtype=np.float64), r"at most 3.4e38 / k\^2"),
    "underflow": (_weights(1e-60, dtype=np.float64), r"becomes 0 in float32"),
    "complex": (_weights(2.0, dtype=np.complex64), r"vertex weights must be real numbers .* complex64"),
    "string": (_weights(2.0).astype(str), r"vertex weights must be real numbers .*<U"),
    "bool": (_weights(1.0) > 0, r"vertex weights must be real numbers .* bool"),
    "shape": (_weights(1.0)[:, :, :11], r"vertex weights must have shape \[N, k, k\]"),
    "empty": (_weights(1.0)[:0], r"N >= 1"),
}


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_loader_rejects_bad_weights_naming_the_file(tmp_path, case):
    w, match = BAD_WEIGHTS[case]
    _files(tmp_path, weights=w)
    with pytest.raises(ValueError, match=match) as info:
        load_warcraft(tmp_path, "train", 12)
    assert "train_vertex_weights.npy" in str(info.value)


BAD_PATHS = {
    "two": (_paths_with(lambda p: p.__setitem__((0, 0, 0), 2.0)), r"must hold only 0 and 1; got 1 other entries, "
            r"e.g. 2.0 at index \(0, 0, 0\)"),
    "nan": (_paths_with(lambda p: p.__setitem__((1, 5, 5), np.nan)), r"must hold only 0 and 1"),
    "half": (_paths_with(lambda p: p.__setitem__((1, 5, 5), 0.5)), r"must hold only 0 and 1"),
    "string": (generate_warcraft(2, 12, seed=1).paths.astype(str), r"shortest paths must be 0/1 masks .*<U"),
    "no_corner": (_paths_with(lambda p: p.__setitem__((1, 11, 11), 0.0)), r"path 1 does not contain both"),
    "broken": (_paths_with(_cut), r"path 1 is not one 8-connected path"),
    "stray": (_paths_with(_stray), r"path 0 is not one 8-connected path .*1 of its"),
    "empty_mask": (np.zeros((2, 12, 12), np.float32), r"path 0 does not contain both"),
}


@pytest.mark.parametrize("case", list(BAD_PATHS))
def test_loader_rejects_bad_paths_naming_the_file(tmp_path, case):
    p, match = BAD_PATHS[case]
    _files(tmp_path, paths=p)
    with pytest.raises(ValueError, match=match) as info:
        load_warcraft(tmp_path, "train", 12)
    assert "train_shortest_paths.npy" in str(info.value)


def _maps(kind):
    m = generate_warcraft(2, 12, seed=1).maps
    if kind == "nan":
        f = m.astype(np.float32) / 255
        f[0, 3, 4, 1] = np.nan
        return f
    if kind == "above":
        return m.astype(np.int32) + 300
    if kind == "negative":
        f = m.astype(np.float64)
        f[1, 0, 0, 0] = -3.0
        return f
    if kind == "complex":
        return m.astype(np.complex128)
    if kind == "bool":
        return m > 100
    return m.astype(str)


BAD_MAPS = {
    "nan": r"maps must be finite; got 1 NaN and 0 inf",
    "above": r"must lie in \[0, 255\].*got values in \[300, \d+\]",
    "negative": r"must lie in \[0, 255\]",
    "complex": r"maps must be RGB values .* complex128",
    "bool": r"maps must be RGB values .* bool",
    "string": r"maps must be RGB values .*<U",
}


@pytest.mark.parametrize("case", list(BAD_MAPS))
def test_loader_rejects_bad_maps_naming_the_file(tmp_path, case):
    _files(tmp_path, maps=_maps(case))
    with pytest.raises(ValueError, match=BAD_MAPS[case]) as info:
        load_warcraft(tmp_path, "train", 12)
    assert "train_maps.npy" in str(info.value)


def test_loader_accepts_float_maps_in_0_255_and_bool_or_int_paths(tmp_path):
    d = _files(tmp_path, maps=generate_warcraft(2, 12, seed=1).maps.astype(np.float64),
               paths=generate_warcraft(2, 12, seed=1).paths.astype(bool))
    back = load_warcraft(tmp_path, "train", 12)
    np.testing.assert_array_equal(back.maps, d.maps)
    np.testing.assert_array_equal(back.paths, d.paths)
    assert back.paths.dtype == np.float32


@pytest.mark.parametrize("which", ["maps", "vertex_weights", "shortest_paths"])
@pytest.mark.parametrize("fault", ["truncated", "not_npy", "pickle"])
def test_loader_names_an_unreadable_file(tmp_path, which, fault):
    _files(tmp_path)
    f = tmp_path / f"train_{which}.npy"
    if fault == "truncated":
        f.write_bytes(f.read_bytes()[:200])
    elif fault == "not_npy":
        f.write_text("hello")
    else:
        np.save(f, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    field = {"maps": "maps", "vertex_weights": "vertex weights", "shortest_paths": "shortest paths"}[which]
    for n in (None, 1):
        with pytest.raises(ValueError, match=rf"train_{which}.npy: cannot read the {field} as a .npy array"):
            load_warcraft(tmp_path, "train", 12, n=n)


def test_loader_shape_mismatch_names_both_files(tmp_path):
    d = generate_warcraft(3, 12, seed=1)
    _files(tmp_path, paths=d.paths)  # 3 paths for 2 weight grids
    with pytest.raises(ValueError, match=r"train_shortest_paths.npy: .*\(2, 12, 12\) to match the vertex weights "
                                         r"of .*train_vertex_weights.npy; got \(3, 12, 12\)"):
        load_warcraft(tmp_path, "train", 12)
    with pytest.raises(ValueError, match="n must be"):
        load_warcraft(tmp_path, "train", 12, n=0)


def test_warcraft_data_validates_in_memory_arrays():
    d = generate_warcraft(2, 12, seed=1)
    with pytest.raises(ValueError, match=r"WarcraftData.weights: vertex weights must be finite"):
        WarcraftData(d.maps, _weights(np.nan), d.paths)
    with pytest.raises(ValueError, match=r"WarcraftData.paths: path 1 is not one 8-connected path"):
        WarcraftData(d.maps, d.weights, _paths_with(_cut))
    with pytest.raises(ValueError, match=r"WarcraftData.maps must be uint8"):
        WarcraftData(d.maps.astype(np.float32), d.weights, d.paths)
    with pytest.raises(ValueError, match=r"WarcraftData.weights must be a numpy array"):
        WarcraftData(d.maps, d.weights.tolist(), d.paths)
    assert len(d.subset(1)) == 1
