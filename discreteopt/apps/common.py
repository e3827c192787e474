"""Shared plumbing of the use cases: seeding, devices, progress bars, tables, JSON and figures."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` -> a device, with a clear error when CUDA is absent."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available on this machine; use --device cpu")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and numpy; return a CPU generator for data shuffling."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def progress(iterable: Iterable, enabled: bool, **kwargs):
    """A tqdm progress bar on stderr when ``enabled`` (plain iteration otherwise)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Index batches covering ``range(n)``: shuffled with ``generator``, in order without it."""
    idx = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(idx.split(batch_size))


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                 floatfmt: str = ".4f") -> str:
    """A plain-text table (Markdown pipe syntax) of a list of dicts."""
    if not rows:
        return "(no results)"
    columns = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else format(v, floatfmt)
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep, *(line(b) for b in body)])


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (creating the folder)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    return p


def _json_default(o: Any):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, torch.device)):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def pyplot():
    """matplotlib's pyplot with a non-interactive back-end (figures are only saved)."""
    import matplotlib

    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: dict[str, Sequence[float]], path: str | Path, xlabel: str, ylabel: str,
                title: str = "") -> Path:
    """Line plot of named curves saved as PNG."""
    return plot_panels([(curves, ylabel)], path, xlabel, title)


def plot_panels(panels: Sequence[tuple[dict[str, Sequence[float]], str]], path: str | Path, xlabel: str,
                title: str = "") -> Path:
    """Side-by-side line plots, one per ``(curves, ylabel)`` panel, x = 1, 2, ...; saved as PNG."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (curves, ylabel) in zip(axes[0], panels, strict=True):
        for name, ys in curves.items():
            ax.plot(np.arange(1, len(ys) + 1), ys, label=name, marker="." if len(ys) < 30 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG (creating the folder) and close it."""
    plt = pyplot()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return p
