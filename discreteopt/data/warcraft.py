"""Warcraft-like shortest-path maps: a seeded offline generator and a loader for the real files.

The reference task (Vlastelica et al., "Differentiation of Blackbox Combinatorial Solvers", ICLR 2020) gives a
``k x k`` terrain map as an RGB image made of ``8 x 8``-pixel tiles (96 x 96 pixels for 12 x 12) and asks for the
minimum-cost 8-neighbour path from the top-left to the bottom-right tile, where every terrain type has a fixed
vertex cost in ``[0.8, 9.2]`` and a path's cost is the sum of the costs of all the vertices it visits (both
end points included). The labels are 0/1 masks ``[k, k]`` of the vertices on the shortest path.

The generator mimics that data without downloading it:

* **terrain field**: per map, one white-noise field per terrain type is smoothed with a Gaussian kernel, standardised,
  offset by a per-map random bias, and each tile takes the type with the largest value -- blob-shaped regions
  whose sizes and adjacency vary from map to map (a spatially correlated Potts-like field);
* **textures**: every type has a base colour and a procedural pattern (speckle, stripes, canopy dots, waves,
  ridges); grass and forest share a hue and differ by pattern. With ``style="tileset"`` (default) each tile is
  one of four fixed variants of its type, drawn once, as the published maps are drawn from one Warcraft II
  tileset; ``style="procedural"`` textures every tile independently (random phase, brightness and pixel noise),
  which is harder (same training run on 12x12 maps, I-MLE with Sum-of-Gamma temperature 1, 10000 maps, 50
  epochs: 83% test cost-optimal accuracy on tileset maps, 79% on procedural ones);
* **labels**: vertex weights are the terrain costs and the paths come from
  :class:`discreteopt.solvers.GridShortestPath` (8-neighbourhood, source ``(0, 0)``, target ``(k-1, k-1)``).

Arrays use the layout of the published ``.npy`` files, so the generator's output and :func:`load_warcraft`'s are
interchangeable: ``maps [N, 8k, 8k, 3] uint8``, ``weights [N, k, k] float32``, ``paths [N, k, k] float32``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from .._validation import check_int_in_range

TILE = 8  #: pixels per tile side


@dataclasses.dataclass(frozen=True)
class Terrain:
    """A terrain type: its vertex cost, base RGB colour in [0, 1], pattern name and pattern amplitude."""

    name: str
    cost: float
    colour: tuple[float, float, float]
    pattern: str
    amplitude: float
    #: prior weight of the type in the terrain field (larger = more frequent)
    bias: float


#: five terrain types with Warcraft-like costs in [0.8, 9.2]
TERRAINS: tuple[Terrain, ...] = (
    Terrain("grass", 0.8, (0.42, 0.66, 0.28), "speckle", 0.10, 0.45),
    Terrain("road", 1.2, (0.72, 0.62, 0.44), "stripes", 0.10, 0.05),
    Terrain("forest", 5.3, (0.20, 0.45, 0.18), "dots", 0.16, 0.15),
    Terrain("water", 7.7, (0.20, 0.36, 0.70), "waves", 0.12, 0.00),
    Terrain("mountain", 9.2, (0.50, 0.48, 0.46), "ridges", 0.16, -0.05),
)


@dataclasses.dataclass
class WarcraftData:
    """One split of the Warcraft shortest-path task, in the layout of the published ``.npy`` files.

    Fields (validated on construction, ``ValueError`` naming the field otherwise):

    * ``maps [N, 8k, 8k, 3] uint8``: RGB terrain images, ``8 x 8`` pixels per tile;
    * ``weights [N, k, k]``: real, finite, positive vertex costs (the published ones are terrain costs in
      ``[0.8, 9.2]``);
    * ``paths [N, k, k]``: 0/1 masks of the vertices of one 8-connected path from the top-left to the
      bottom-right tile (both included).

    Reference: Vlastelica, Paulus, Musil, Martius & Rolinek, "Differentiation of Blackbox Combinatorial Solvers",
    ICLR 2020. Build one with :func:`generate_warcraft` or :func:`load_warcraft`.

    >>> data = generate_warcraft(16, size=12, seed=0)
    >>> data.images().shape, data.weights.shape      # ([16, 3, 96, 96], (16, 12, 12))
    """

    maps: np.ndarray
    weights: np.ndarray
    paths: np.ndarray

    def __post_init__(self) -> None:
        names = {"maps": "WarcraftData.maps", "weights": "WarcraftData.weights", "paths": "WarcraftData.paths"}
        for key in names:
            if not isinstance(getattr(self, key), np.ndarray):
                raise ValueError(f"{names[key]} must be a numpy array; got {type(getattr(self, key)).__name__}")
        if self.maps.dtype != np.uint8:
            raise ValueError(f"{names['maps']} must be uint8 RGB values [N, 8k, 8k, 3]; got dtype {self.maps.dtype} "
                             "(load_warcraft converts float maps in [0, 1] or [0, 255])")
        _check_weights(self.weights, names["weights"])  # finite, > 0, every path cost finite in float32
        _check_path_values(self.paths, names["paths"])
        _check_arrays(self.maps, self.weights, self.paths, names)

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def size(self) -> int:
        """Grid side ``k``."""
        return int(self.weights.shape[-1])

    def images(self) -> torch.Tensor:
        """Maps as a float tensor ``[N, 3, 8k, 8k]`` in ``[0, 1]`` (channels first, for a CNN)."""
        x = torch.from_numpy(np.ascontiguousarray(self.maps))  # [N, 8k, 8k, 3] uint8
        return x.permute(0, 3, 1, 2).float().div_(255.0)  # -> [N, 3, 8k, 8k]

    def subset(self, n: int) -> WarcraftData:
        """The first ``n >= 1`` maps (views of this split's arrays, not validated again)."""
        n = check_int_in_range(n, "n", 1, 2**62)
        out = object.__new__(WarcraftData)
        out.maps, out.weights, out.paths = self.maps[:n], self.weights[:n], self.paths[:n]
        return out

    def save(self, directory: str | Path, split: str) -> None:
        """Write ``{split}_maps.npy``, ``{split}_vertex_weights.npy``, ``{split}_shortest_paths.npy``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{split}_maps.npy", self.maps)
        np.save(d / f"{split}_vertex_weights.npy", self.weights)
        np.save(d / f"{split}_shortest_paths.npy", self.paths)


# ----------------------------------------------------------------------------------------------- generator
def terrain_field(rng: np.random.Generator, n: int, size: int, smoothness: float = 1.2,
                  terrains: tuple[Terrain, ...] = TERRAINS) -> np.ndarray:
    """Terrain type ids ``[n, size, size]`` (int64): argmax over types of smoothed, standardised noise + bias."""
    t = len(terrains)
    noise = rng.standard_normal((n, t, size, size))  # [n, T, k, k]
    field = gaussian_filter(noise, sigma=(0, 0, smoothness, smoothness), mode="wrap")
    field = (field - field.mean(axis=(2, 3), keepdims=True)) / (field.std(axis=(2, 3), keepdims=True) + 1e-8)
    prior = np.array([tr.bias for tr in terrains])  # [T]
    bias = prior[None, :] + 0.35 * rng.standard_normal((n, t))  # [n, T] per-map proportions
    return np.argmax(field + bias[:, :, None, None], axis=1)


def _pattern(kind: str, m: int, rng: np.random.Generator) -> np.ndarray:
    """Procedural tile patterns ``[m, 8, 8]`` in about ``[-1, 1]``, with a random phase per tile."""
    v, u = np.meshgrid(np.arange(TILE), np.arange(TILE), indexing="ij")  # row, column pixel coords
    phase = rng.uniform(0.0, 2 * np.pi, (m, 1, 1))
    if kind == "speckle":
        return rng.uniform(-1.0, 1.0, (m, TILE, TILE))
    if kind == "stripes":
        return np.sin(2 * np.pi * v / 4.0 + phase)
    if kind == "dots":
        phase2 = rng.uniform(0.0, 2 * np.pi, (m, 1, 1))
        return np.cos(np.pi * u / 2.0 + phase) * np.cos(np.pi * v / 2.0 + phase2)
    if kind == "waves":
        return np.sin(2 * np.pi * (u + v) / 8.0 + phase)
    if kind == "ridges":
        shift = phase / (2 * np.pi) * TILE
        return np.abs(np.mod(u - v + shift, TILE) - TILE / 2) / (TILE / 4) - 1.0
    raise ValueError(f"unknown pattern {kind!r}")


STYLES = ("tileset", "procedural")


@functools.lru_cache(maxsize=8)
def tileset(variants: int = 4, seed: int = 0, terrains: tuple[Terrain, ...] = TERRAINS) -> np.ndarray:
    """A fixed tileset ``[T, variants, 8, 8, 3]`` in ``[0, 1]``: a few textured 8x8 variants per terrain type,
    drawn once (like a game's tileset, the same for every map; read-only)."""
    rng = np.random.default_rng(seed)
    tiles = np.stack([_tiles(tr, variants, rng) for tr in terrains])  # [T, V, 8, 8, 3]
    tiles.flags.writeable = False
    return tiles


def _tiles(tr: Terrain, m: int, rng: np.random.Generator, pixel_noise: float = 0.03) -> np.ndarray:
    """``m`` textured tiles ``[m, 8, 8, 3]`` of one terrain: base colour with a per-tile brightness, the
    pattern with a random phase, and per-pixel noise."""
    pat = _pattern(tr.pattern, m, rng)[..., None]  # [m, 8, 8, 1]
    bright = rng.normal(1.0, 0.05, (m, 1, 1, 1))
    return np.asarray(tr.colour) * bright + tr.amplitude * pat + rng.normal(0.0, pixel_noise, (m, TILE, TILE, 3))


def render(types: np.ndarray, rng: np.random.Generator, terrains: tuple[Terrain, ...] = TERRAINS,
           style: str = "tileset", variants: int = 4) -> np.ndarray:
    """Textured RGB maps ``[N, 8k, 8k, 3] uint8`` from terrain ids ``[N, k, k]``.

    ``style="tileset"``: every tile is one of ``variants`` fixed tiles of its terrain (:func:`tileset`), as in the
    published maps, which are drawn from one Warcraft II tileset; ``"procedural"``: every tile gets its own
    random phase, brightness and pixel noise (a harder, more variable appearance).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}; got {style!r}")
    n, k, _ = types.shape
    if style == "tileset":
        choice = rng.integers(0, variants, size=types.shape)  # [N, k, k]
        tiles = tileset(variants, 0, terrains)[types, choice]  # [N, k, k, 8, 8, 3]
    else:
        tiles = np.zeros((n, k, k, TILE, TILE, 3))  # one 8x8 RGB tile per vertex
        for t, tr in enumerate(terrains):
            mask = types == t
            if mask.any():
                tiles[mask] = _tiles(tr, int(mask.sum()), rng)
    img = tiles.transpose(0, 1, 3, 2, 4, 5).reshape(n, k * TILE, k * TILE, 3)  # [N,k,k,8,8,3] -> [N,8k,8k,3]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def shortest_paths(weights: np.ndarray, batch: int = 512) -> np.ndarray:
    """Optimal 8-neighbour vertex paths ``[N, k, k]`` (float32 0/1) from top-left to bottom-right."""
    from ..solvers import GridShortestPath

    solver = GridShortestPath(neighbourhood=8)
    out = []
    for s in range(0, len(weights), batch):
        w = torch.from_numpy(np.asarray(weights[s:s + batch], dtype=np.float64))
        out.append(solver.solve(w).numpy())
    return np.concatenate(out).astype(np.float32)


def generate_warcraft(n: int, size: int = 12, seed: int = 0, smoothness: float = 1.2,
                      style: str = "tileset") -> WarcraftData:
    """Generate ``n`` Warcraft-like maps of ``size x size`` tiles (images are ``8*size`` pixels a side).

    Deterministic in ``seed``. ``style``: ``"tileset"`` (fixed tile variants, default) or ``"procedural"``
    (every tile textured independently), see :func:`render`. See the module docstring for the model of
    terrain, texture and labels.
    """
    n = check_int_in_range(n, "n", 1, 10**8)
    size = check_int_in_range(size, "size", 2, 1024)
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}; got {style!r}")
    rng = np.random.default_rng(seed)
    types = terrain_field(rng, n, size, smoothness)  # [n, k, k]
    costs = np.array([tr.cost for tr in TERRAINS], dtype=np.float32)
    weights = costs[types]  # [n, k, k]
    maps = render(types, rng, style=style)
    return WarcraftData(maps, weights, shortest_paths(weights))


# ----------------------------------------------------------------------------------------------- loader
_REAL = "iuf"  # numpy dtype kinds accepted for numbers: signed, unsigned, floating (bool, complex, str refused)


def _kind_error(a: np.ndarray, name: str, what: str) -> ValueError:
    return ValueError(f"{name}: {what}; got dtype {a.dtype}")


def _count_bad(a: np.ndarray) -> str:
    return f"{int(np.isnan(a).sum())} NaN and {int(np.isinf(a).sum())} inf entries"


def _check_weights(w: np.ndarray, name: str) -> np.ndarray:
    """Vertex weights ``[N, k, k]``: real, finite, ``> 0`` and small enough that every path cost (at most ``k^2``
    vertices) is finite in float32, i.e. in ``(0, 3.4e38 / k^2]`` (the published costs lie in ``[0.8, 9.2]``).
    Returns them as float32 (checked after the conversion too: no overflow to inf, no underflow to 0)."""
    if w.dtype.kind not in _REAL:
        raise _kind_error(w, name, "vertex weights must be real numbers (integer or float)")
    if w.ndim != 3 or w.shape[1] != w.shape[2] or w.shape[0] == 0:
        raise ValueError(f"{name}: vertex weights must have shape [N, k, k] with N >= 1; got {w.shape}")
    if w.dtype.kind == "f" and not np.isfinite(w).all():
        raise ValueError(f"{name}: vertex weights must be finite; got {_count_bad(w)}")
    if not (w > 0).all():
        bad = tuple(int(i) for i in np.argwhere(~(w > 0))[0])
        raise ValueError(f"{name}: vertex weights must be > 0 (costs of terrain, [0.8, 9.2] in the published data); "
                         f"got {int((~(w > 0)).sum())} entries <= 0, e.g. {w[bad].item()!r} at index {bad}")
    k2 = w.shape[1] * w.shape[2]
    top = float(np.finfo(np.float32).max) / k2
    if float(w.max()) > top:
        raise ValueError(f"{name}: vertex weights must be at most 3.4e38 / k^2 = {top:.3g} so that every path cost "
                         f"is finite in float32; got a maximum of {float(w.max()):.3g}")
    w32 = w.astype(np.float32)
    if not (w32 > 0).all():
        raise ValueError(f"{name}: vertex weights must be >= float32's smallest positive value (1.4e-45); got a "
                         f"minimum of {float(w.min()):.3g}, which becomes 0 in float32")
    return w32


def _check_path_values(p: np.ndarray, name: str) -> None:
    """Path masks: bool or real 0/1 values."""
    if p.dtype.kind not in "b" + _REAL:
        raise _kind_error(p, name, "shortest paths must be 0/1 masks (bool, integer or float)")
    if p.dtype.kind != "b":
        ok = (p == 0) | (p == 1)
        if not ok.all():
            bad = tuple(int(i) for i in np.argwhere(~ok)[0])
            raise ValueError(f"{name}: shortest paths must hold only 0 and 1; got {int((~ok).sum())} other "
                             f"entries, e.g. {p[bad].item()!r} at index {bad}")


def _check_path_connected(p: np.ndarray, name: str) -> None:
    """Every mask ``[N, k, k]`` is one 8-connected set of vertices holding both corners (a flood fill from the
    top-left tile, ``O(N k^2)`` per step, as many steps as the longest path)."""
    mask = np.asarray(p, dtype=bool)
    corners = mask[:, 0, 0] & mask[:, -1, -1]
    if not corners.all():
        i = int(np.argmin(corners))
        raise ValueError(f"{name}: path {i} does not contain both the top-left and the bottom-right tile")
    reached = np.zeros_like(mask)
    reached[:, 0, 0] = True
    while True:
        grown = reached.copy()
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        rows = grown.copy()
        grown[:, :, 1:] |= rows[:, :, :-1]
        grown[:, :, :-1] |= rows[:, :, 1:]  # 3x3 dilation: 8 neighbours
        grown &= mask
        if np.array_equal(grown, reached):
            break
        reached = grown
    ok = (reached == mask).all(axis=(1, 2))
    if not ok.all():
        i = int(np.argmin(ok))
        raise ValueError(f"{name}: path {i} is not one 8-connected path from the top-left to the bottom-right tile "
                         f"({int(mask[i].sum() - reached[i].sum())} of its {int(mask[i].sum())} vertices are not "
                         "connected to the top-left tile)")


def _as_uint8_maps(m: np.ndarray, name: str) -> np.ndarray:
    """Maps as ``uint8``: uint8 as is; integers in ``[0, 255]``; finite floats in ``[0, 1]`` (scaled by 255) or in
    ``[0, 255]`` (rounded). Anything else is a ``ValueError`` (no silent clipping, NaN never becomes 0)."""
    if m.dtype == np.uint8:
        return m
    if m.dtype.kind not in _REAL:
        raise _kind_error(m, name, "maps must be RGB values (uint8, or integers in [0, 255], or floats in [0, 1] "
                          "or [0, 255])")
    if m.size == 0:
        return m.astype(np.uint8)
    if m.dtype.kind == "f" and not np.isfinite(m).all():
        raise ValueError(f"{name}: maps must be finite; got {_count_bad(m)}")
    lo, hi = float(m.min()), float(m.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"{name}: map pixel values must lie in [0, 255] (or [0, 1] for float maps); got values in "
                         f"[{lo:g}, {hi:g}]")
    if m.dtype.kind == "f" and hi <= 1.0:
        m = m * 255.0
    return np.rint(m).astype(np.uint8)


def _check_arrays(maps: np.ndarray, weights: np.ndarray, paths: np.ndarray, names: dict[str, str]) -> None:
    """Shapes agree (``maps [N, 8k, 8k, 3]``, ``weights``/``paths`` ``[N, k, k]``) and paths are connected."""
    n, k = weights.shape[0], weights.shape[1]
    if maps.shape != (n, TILE * k, TILE * k, 3):
        raise ValueError(f"{names['maps']}: maps must have shape [N, 8k, 8k, 3] = {(n, TILE * k, TILE * k, 3)} "
                         f"to match the vertex weights {weights.shape} of {names['weights']}; got {maps.shape}")
    if paths.shape != (n, k, k):
        raise ValueError(f"{names['paths']}: shortest paths must have shape [N, k, k] = {(n, k, k)} to match the "
                         f"vertex weights of {names['weights']}; got {paths.shape}")
    _check_path_connected(paths, names["paths"])


def _resolve_dir(directory: Path, size: int) -> Path:
    """``directory`` itself, or its ``{size}x{size}`` sub-folder as in the published archive."""
    sub = directory / f"{size}x{size}"
    return sub if sub.is_dir() else directory


def _load_npy(path: Path, field: str, mmap: str | None) -> np.ndarray:
    """``np.load`` of one ``.npy`` file; any failure becomes a ``ValueError`` naming the file and the field."""
    try:
        a = np.load(path, mmap_mode=mmap, allow_pickle=False)
    except Exception as e:  # truncated, not a .npy file, object arrays (pickles), ...
        raise ValueError(f"{path}: cannot read the {field} as a .npy array ({type(e).__name__}: {e})") from e
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{path}: the {field} file must hold one .npy array; got {type(a).__name__}")
    return a


def load_warcraft(directory: str | Path, split: str = "train", size: int = 12,
                  n: int | None = None) -> WarcraftData:
    """Load the real Warcraft shortest-path files of one split, validated.

    Reads ``{split}_maps.npy`` ``[N, 8k, 8k, 3]``, ``{split}_vertex_weights.npy`` ``[N, k, k]`` and
    ``{split}_shortest_paths.npy`` ``[N, k, k]`` from ``directory`` or from ``directory/{size}x{size}/``
    (the layout of the published ``warcraft_shortest_path_oneskin`` archive; Vlastelica et al., ICLR 2020).
    ``n >= 1`` keeps the first ``n`` maps (read through a memory map).

    Every array is checked and any problem is a ``ValueError`` naming the file and the field: unreadable or
    truncated files; weights that are not real, finite and ``> 0``; paths that are not 0/1 or not one 8-connected
    path from corner to corner; maps that are not ``uint8`` / integers in ``[0, 255]`` / finite floats in ``[0, 1]``
    or ``[0, 255]``; shapes that disagree. Returns maps as ``uint8``, weights and paths as ``float32``.

    >>> train = load_warcraft("data/warcraft_shortest_path_oneskin", "train", size=12, n=1000)
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test'; got {split!r}")
    size = check_int_in_range(size, "size", 2, 1024)
    if n is not None:
        n = check_int_in_range(n, "n", 1, 2**62)
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {str(root)!r} is not a directory")
    d = _resolve_dir(root, size)
    names = {"maps": f"{split}_maps.npy", "weights": f"{split}_vertex_weights.npy",
             "paths": f"{split}_shortest_paths.npy"}
    missing = [name for name in names.values() if not (d / name).is_file()]
    if missing:
        raise FileNotFoundError(f"data_dir {str(d)!r} lacks {', '.join(missing)} (expected the Warcraft files "
                                f"{split}_maps.npy, {split}_vertex_weights.npy, {split}_shortest_paths.npy)")
    files = {key: str(d / name) for key, name in names.items()}
    fields = {"maps": "maps", "weights": "vertex weights", "paths": "shortest paths"}
    mmap = "r" if n is not None else None
    arrays = {key: _load_npy(d / names[key], fields[key], mmap) for key in names}
    if n is not None:
        arrays = {key: a[:n] for key, a in arrays.items()}
    paths = np.array(arrays["paths"])  # an in-memory copy
    weights = _check_weights(np.asarray(arrays["weights"]), files["weights"])  # float32, in memory
    if weights.shape[-1] != size:
        raise ValueError(f"size={size} but {files['weights']} holds {weights.shape[-1]}x{weights.shape[-1]} grids")
    _check_path_values(paths, files["paths"])
    maps = np.array(_as_uint8_maps(np.asarray(arrays["maps"]), files["maps"]))  # writable, also from a memory map
    _check_arrays(maps, weights, paths, files)
    data = object.__new__(WarcraftData)  # validated above
    data.maps, data.weights, data.paths = maps, weights, paths.astype(np.float32)
    return data
