"""Shared plumbing of the use cases: seeding, devices, progress bars, tables, JSON and figures."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
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


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of :func:`format_table`: the row ``key``, its ``header`` and how a value is written.

    ``fmt`` is a format spec (``".4f"``) or a function ``value -> str`` such as :func:`seconds` or
    :func:`percent`. Missing values print as ``-``.

    Example::

        format_table([{"acc": 0.8, "sec": 35.61}], [Column("acc", "accuracy", percent), Column("sec", "time", seconds)])
        # | accuracy | time   |
        # |----------|--------|
        # | 80.0%    | 35.6 s |
    """

    key: str
    header: str | None = None
    fmt: str | Callable[[Any], str] = ".4f"

    def cell(self, row: dict[str, Any]) -> str:
        v = row.get(self.key)
        if v is None or v == "":
            return "-"
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        if callable(self.fmt):
            return self.fmt(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else str(v)
        return format(v, self.fmt) if isinstance(v, float) else str(v)


def seconds(v: float) -> str:
    """Seconds with three significant digits and the unit: ``35.61 -> "35.6 s"``, ``10 -> "10.0 s"``,
    ``0.01234 -> "0.0123 s"``; whole seconds from 100 s up (``104.4 -> "104 s"``)."""
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return f"{v:g} s"
    if abs(v) >= 100:
        return f"{v:.0f} s"
    return f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f} s"


def percent(v: float, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.8 -> "80.0%"``."""
    return f"{100 * float(v):.{digits}f}%"


def fixed(digits: int, factor: float = 1.0) -> Callable[[Any], str]:
    """``factor * value`` with ``digits`` decimals (``fixed(2, 100)``: 100·MSE as in the papers)."""
    return lambda v: f"{factor * float(v):.{digits}f}"


def mean_std(key: str, digits: int, factor: float = 1.0, suffix: str = "") -> Callable[[dict[str, Any]], str]:
    """A cell ``"mean ± std"`` from ``row[key]`` and ``row[key + "_std"]`` (``"mean"`` alone without a std),
    both times ``factor``; use it as the ``fmt`` of a :class:`RowColumn`."""
    def cell(row: dict[str, Any]) -> str:
        if row.get(key) is None:
            return "-"
        text = f"{factor * float(row[key]):.{digits}f}"
        if row.get(f"{key}_std") is not None:
            text += f" ± {factor * float(row[key + '_std']):.{digits}f}"
        return text + suffix
    return cell


@dataclasses.dataclass(frozen=True)
class RowColumn(Column):
    """A column computed from the whole row: ``fmt(row) -> str`` (e.g. :func:`mean_std`)."""

    def cell(self, row: dict[str, Any]) -> str:
        return self.fmt(row) if callable(self.fmt) else str(row.get(self.key, "-"))


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str | Column] | None = None,
                 floatfmt: str = ".4f") -> str:
    """A plain-text table (Markdown pipe syntax) of a list of dicts.

    ``columns``: keys (floats written with ``floatfmt``) or :class:`Column` objects (own header and format);
    default: the keys of the first row.
    """
    if not rows:
        return "(no results)"
    cols = [c if isinstance(c, Column) else Column(c, c, floatfmt) for c in (columns or list(rows[0].keys()))]
    headers = [c.header or c.key for c in cols]
    body = [[c.cell(r) for c in cols] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(b) for b in body)])


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


@dataclasses.dataclass
class Panel:
    """One line plot of :func:`plot_panels`: named curves ``{label: [y_1, y_2, ...]}`` (x = 1, 2, ...),
    the y-axis label, optional horizontal reference lines ``{label: y}`` and ``percent=True`` for fractions
    shown as percentages.

    Example::

        plot_panels([Panel({"imle": [25.1, 22.0, 21.6]}, "test -ELBO (nats)", {"ignores z": 24.49})],
                    "runs/vae_curves.png", "epoch")
    """

    curves: dict[str, Sequence[float]]
    ylabel: str
    references: dict[str, float] = dataclasses.field(default_factory=dict)
    percent: bool = False


def plot_curves(curves: dict[str, Sequence[float]], path: str | Path, xlabel: str, ylabel: str,
                title: str = "", references: dict[str, float] | None = None, percent: bool = False) -> Path:
    """Line plot of named curves saved as PNG (one :class:`Panel`)."""
    return plot_panels([Panel(curves, ylabel, dict(references or {}), percent)], path, xlabel, title)


def plot_panels(panels: Sequence[Panel | tuple[dict[str, Sequence[float]], str]], path: str | Path, xlabel: str,
                title: str = "") -> Path:
    """Side-by-side line plots, one per :class:`Panel` (or ``(curves, ylabel)``), x = 1, 2, ... with integer
    ticks (epochs); reference lines dashed grey with their label and value; saved as PNG."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    plt = pyplot()
    panels = [p if isinstance(p, Panel) else Panel(*p) for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for name, ys in panel.curves.items():
            ax.plot(np.arange(1, len(ys) + 1), ys, label=name, marker="." if len(ys) < 30 else None)
        for name, y in panel.references.items():
            ax.axhline(y, color="0.35", linestyle="--", linewidth=1.0,
                       label=f"{name}: {100 * y:.1f}%" if panel.percent else f"{name}: {y:.2f}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        if panel.percent:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel.ylabel)
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
