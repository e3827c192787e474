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
#: dtypes solvers, layers and losses accept; half precision is computed in a wider float and cast back
SUPPORTED_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(x, name: str, layout: str) -> torch.Tensor:
    """``x`` as a dense floating tensor with values, detached, lazy negation resolved; ``ValueError`` naming ``name``.

    The dtype policy of solvers, layers and losses: ``float16``, ``bfloat16``, ``float32`` and ``float64`` are
    accepted (half precision is computed in a wider float by the solver kernels and returned in the input's
    dtype); integer, bool and complex tensors (a conjugate view is complex) are refused, and so are meta tensors
    (no values), sparse and nested tensors. A negative-bit view (``torch._neg_view``) is materialised.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}; got {type(x).__name__}")
    if x.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor (a shape without values); a solver needs the values: create it "
                         f"on a real device (cpu, cuda, ...); got shape {tuple(x.shape)}")
    if x.layout != torch.strided or x.is_nested:
        kind = "nested" if x.is_nested else str(x.layout).replace("torch.", "")
        raise ValueError(f"{name} must be a dense tensor of shape {layout}; got a {kind} tensor (use .to_dense())")
    if x.dtype not in SUPPORTED_FLOATS:
        raise ValueError(f"{name} must have a floating dtype (float16, bfloat16, float32 or float64); got {x.dtype}")
    x = x.detach()
    return x.resolve_neg() if x.is_neg() else x


def host_float64(x: torch.Tensor) -> np.ndarray:
    """A checked tensor (:func:`check_tensor`) as a ``float64`` numpy array on the host (zero-copy when it already
    is one); half precision is widened exactly. (numpy's single-threaded cast: torch's costs far more on the small
    arrays solvers get.)"""
    if x.device.type != "cpu":
        x = x.cpu()
    if x.dtype == torch.bfloat16:  # no numpy bfloat16: widen in torch (exact)
        x = x.float()
    return x.numpy().astype(np.float64, copy=False)


_TO_NUMPY_DTYPE = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def host_to_tensor(y: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A host result ``y`` (``float64``) as a tensor on ``device`` with ``dtype`` (the input's)."""
    np_dtype = _TO_NUMPY_DTYPE.get(dtype)
    if np_dtype is not None:
        out = torch.from_numpy(np.ascontiguousarray(y, dtype=np_dtype))
        return out if torch.device(device).type == "cpu" else out.to(device)
    return torch.from_numpy(np.ascontiguousarray(y)).to(device=device, dtype=dtype)


def describe_nonfinite(x: ArrayLike) -> str:
    """``"3 NaN and 1 inf entries"`` (for error messages; reads the values)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        return f"{int(torch.isnan(x).sum())} NaN and {int(torch.isinf(x).sum())} inf entries"
    return f"{int(np.isnan(x).sum())} NaN and {int(np.isinf(x).sum())} inf entries"


def is_finite(x: ArrayLike) -> bool:
    """True when every entry of ``x`` (a plain tensor or an array) is finite.

    CPU tensors are tested through their zero-copy numpy view: numpy's vectorised isfinite costs a fraction of
    torch's per-call overhead on these small arrays. Other devices: one reduction first (NaN/inf propagate through
    a sum, so a finite sum proves every entry finite; only a non-finite sum pays for the full test)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_neg() or x.is_conj():  # lazy views: numpy refuses them, some reductions too
            x = x.resolve_neg().resolve_conj()
        if x.device.type == "cpu" and x.dtype in _NUMPY_FLOATS:
            return bool(np.isfinite(x.numpy()).all())
        return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())
    return bool(np.isfinite(x).all())


def check_finite(x: ArrayLike, name: str) -> None:
    """Raise if ``x`` holds NaN or inf (or is a meta tensor, whose values cannot be checked)."""
    if isinstance(x, torch.Tensor) and x.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor (a shape without values); cannot check that it is finite")
    if not is_finite(x):
        raise ValueError(f"{name} must be finite; got {describe_nonfinite(x)}")


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


def check_real(x: torch.Tensor, name: str, expected: str = "bool, integer or floating") -> None:
    """``ValueError`` naming ``name`` for a complex tensor (casting it to a real dtype would drop the imaginary part
    silently); ``expected`` says which real dtypes the caller takes."""
    if x.is_complex():
        raise ValueError(f"{name} must have a real dtype ({expected}); got {x.dtype}")


def check_positive(value: float, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not (
            isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value) and value > 0):
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
    """Type, dtype, shape (a non-empty batch of non-empty events) and finiteness of a natural solver argument,
    as layers and losses receive it; ``ValueError`` naming ``name``."""
    theta = check_tensor(theta, name, solver.theta_layout)  # dtype policy: see check_tensor
    check_event_shape(theta, solver.event_shape(), name, solver.theta_layout)
    check_finite(theta, name)
    if theta.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch; got shape {tuple(theta.shape)}")
    if theta.numel() == 0:  # a zero-size event: nothing to solve, perturb or differentiate per instance
        raise ValueError(f"{name} must have a non-empty event shape (at least one entry per instance, "
                         f"{solver.theta_layout}); got shape {tuple(theta.shape)}")
