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
    """One split: ``maps [N, 8k, 8k, 3] uint8``, ``weights [N, k, k] float32``, ``paths [N, k, k] float32``."""

    maps: np.ndarray
    weights: np.ndarray
    paths: np.ndarray

    def __post_init__(self) -> None:
        _check_arrays(self.maps, self.weights, self.paths, source="WarcraftData")

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
        """The first ``n`` maps."""
        return WarcraftData(self.maps[:n], self.weights[:n], self.paths[:n])

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
def _check_arrays(maps: np.ndarray, weights: np.ndarray, paths: np.ndarray, source: str) -> None:
    if weights.ndim != 3 or weights.shape[1] != weights.shape[2]:
        raise ValueError(f"{source}: vertex weights must have shape [N, k, k]; got {weights.shape}")
    n, k = weights.shape[0], weights.shape[1]
    if maps.shape != (n, TILE * k, TILE * k, 3):
        raise ValueError(f"{source}: maps must have shape [N, 8k, 8k, 3] = {(n, TILE * k, TILE * k, 3)} "
                         f"to match vertex weights {weights.shape}; got {maps.shape}")
    if paths.shape != (n, k, k):
        raise ValueError(f"{source}: shortest paths must have shape [N, k, k] = {(n, k, k)}; got {paths.shape}")


def _resolve_dir(directory: Path, size: int) -> Path:
    """``directory`` itself, or its ``{size}x{size}`` sub-folder as in the published archive."""
    sub = directory / f"{size}x{size}"
    return sub if sub.is_dir() else directory


def load_warcraft(directory: str | Path, split: str = "train", size: int = 12,
                  n: int | None = None) -> WarcraftData:
    """Load the real Warcraft shortest-path files of one split.

    Reads ``{split}_maps.npy`` ``[N, 8k, 8k, 3] uint8``, ``{split}_vertex_weights.npy`` ``[N, k, k]`` and
    ``{split}_shortest_paths.npy`` ``[N, k, k]`` from ``directory`` or from ``directory/{size}x{size}/``
    (the layout of the published ``warcraft_shortest_path_oneskin`` archive). ``n`` keeps the first ``n`` maps.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test'; got {split!r}")
    size = check_int_in_range(size, "size", 2, 1024)
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
    mmap = "r" if n is not None else None
    arrays = {key: np.load(d / name, mmap_mode=mmap) for key, name in names.items()}
    if n is not None:
        arrays = {key: a[:n] for key, a in arrays.items()}
    maps = np.array(arrays["maps"])  # a writable in-memory copy (also of a memory-mapped slice)
    if maps.dtype != np.uint8:
        if maps.max() <= 1.0:
            maps = maps * 255.0
        maps = np.clip(np.rint(maps), 0, 255).astype(np.uint8)
    weights = np.array(arrays["weights"], dtype=np.float32)
    paths = np.array(arrays["paths"], dtype=np.float32)
    _check_arrays(maps, weights, paths, source=str(d / names["maps"]))
    if weights.shape[-1] != size:
        raise ValueError(f"size={size} but {d / names['weights']} holds {weights.shape[-1]}x{weights.shape[-1]} grids")
    return WarcraftData(maps, weights, paths)
