"""Input checks shared by solvers, layers and estimators.

Every check raises ``ValueError`` naming the argument and what was expected, so a user sees at once
which tensor is wrong and how.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .solvers.base import Solver

ArrayLike = torch.Tensor | np.ndarray
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def _describe_bad(x: ArrayLike) -> str:
    if isinstance(x, torch.Tensor):
        nan = int(torch.isnan(x).sum())
        inf = int(torch.isinf(x).sum())
    else:
        nan = int(np.isnan(x).sum())
        inf = int(np.isinf(x).sum())
    return f"{nan} NaN and {inf} inf entries"


def check_finite(x: ArrayLike, name: str) -> None:
    """Raise if ``x`` holds NaN or inf."""
    # CPU tensors are checked through their zero-copy numpy view: numpy's vectorised isfinite costs a fraction
    # of torch's per-call overhead on these small arrays. Other devices: one reduction first (NaN/inf propagate
    # through a sum, so a finite sum proves every entry finite; only a non-finite sum pays for the full test).
    if isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.dtype in _NUMPY_FLOATS and not x.is_neg():
        x = x.detach().numpy()
    if isinstance(x, torch.Tensor):
        ok = bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())
    else:
        ok = bool(np.isfinite(x).all())
    if not ok:
        raise ValueError(f"{name} must be finite; got {_describe_bad(x)}")


def check_ndim(x: ArrayLike, ndim: int, name: str, layout: str) -> None:
    """Raise unless ``x`` has exactly ``ndim`` dimensions; ``layout`` names them, e.g. ``"[B, H, W]"``."""
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {layout} ({ndim} dims); got shape {tuple(x.shape)}")


def check_event_shape(x: ArrayLike, expected: Sequence[int | None], name: str, layout: str) -> None:
    """Raise unless the trailing dims of ``x`` (after the batch dim) match ``expected`` (None = any)."""
    check_ndim(x, 1 + len(expected), name, layout)
    got = tuple(x.shape[1:])
    for g, e in zip(got, expected, strict=True):
        if e is not None and g != e:
            raise ValueError(f"{name} must have shape {layout} with event shape {tuple(expected)}; "
                             f"got shape {tuple(x.shape)}")


def check_nonnegative(x: ArrayLike, name: str, why: str) -> None:
    """Raise if ``x`` has a negative entry (``why`` says which algorithm needs it)."""
    size = x.numel() if isinstance(x, torch.Tensor) else x.size
    low = float(x.min()) if size else 0.0
    if low < 0:
        raise ValueError(f"{name} must be non-negative ({why}); got minimum {low:.6g}. "
                         "Clamp or shift perturbed costs, or use positive noise.")


def check_int_in_range(value: int, name: str, low: int, high: int) -> int:
    """Raise unless ``low <= value <= high`` and value is an integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}]; got {value}")
    return int(value)


def check_positive(value: float, name: str) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def check_generator(generator, device: torch.device | str) -> None:
    """Raise unless ``generator`` is ``None`` or a ``torch.Generator`` on ``device``'s type (cpu, cuda, ...)."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    device = torch.device(device)
    if torch.device(generator.device).type != device.type:
        raise ValueError(f"generator lives on {generator.device} but the input on {device}; "
                         f"create it with torch.Generator(device={str(device)!r})")


def validate_input(solver: Solver, theta: torch.Tensor, name: str) -> None:
    """Type, dtype, shape and finiteness of a natural solver argument; ``ValueError`` naming ``name``."""
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {solver.theta_layout}; got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype; got {theta.dtype}")
    check_event_shape(theta, solver.event_shape(), name, solver.theta_layout)
    check_finite(theta.detach(), name)
    if theta.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch; got shape {tuple(theta.shape)}")
