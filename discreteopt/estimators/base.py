"""The ``Estimator`` contract: how a solver layer runs forward and turns ``dL/dy`` into ``dL/dtheta``.

Estimators only see the *max* convention: a ``maximize`` callable ``theta [N, *E] -> y [N, *Y]`` with
``y = argmax_{y in C} <theta, y>``. The :class:`~discreteopt.layers.DiscreteLayer` builds it from the
solver (sign flip for ``sense == "min"``, guard for ``min_cost``, executor); nothing else knows about sense.

Forward is split in two so that the layer can send all solver calls of a step to the executor as one
batch, synchronously or asynchronously (:meth:`DiscreteLayer.forward_async`):

1. :meth:`Estimator.plan` ``(theta [B, *E], generator) -> (thetas [N, *E], state)`` samples the noise
   and lists every argument to maximise (``N = B * S``, sometimes ``+ B``);
2. the layer solves ``thetas`` in one executor call -> ``ys [N, *Y]``;
3. :meth:`Estimator.finish` ``(theta, ys, state) -> (y [B, S, *Y], ctx)``.

:meth:`Estimator.backward` ``(maximize, theta, ctx, grad_y [B, S, *Y]) -> grad_theta [B, *E]`` may call
``maximize`` again -- once, on one ``[N, *E]`` batch. :meth:`Estimator.check_dtype` refuses (``ValueError``)
hyperparameters that cannot work in the compute dtype before any noise is drawn (:func:`check_step` and
:func:`check_in_dtype` are the building blocks); :attr:`Estimator.linear_backward` lets the layer recompute an
overflowing estimate exactly on ``dL/dy`` scaled by a power of two. Mutable training state (AIMLE's ``lam``) goes through
:meth:`Estimator.state_dict` / :meth:`Estimator.load_state_dict`, which the layer's ``state_dict`` includes.

Gradient convention: ``grad_y[:, s]`` is the loss gradient *seen by sample s* and the result is the
**mean** over samples of the per-sample estimates. When the layer returns the sample mean (default),
every sample sees the full ``dL/dy``; with ``return_samples=True`` sample ``s`` sees ``S * dL/dy_s``
(the per-sample loss gradient when the loss averages over samples). Both give the chain rule to first
order and keep the meaning of finite-difference step sizes such as I-MLE's ``lambda`` independent of
``S``.
"""

from __future__ import annotations

import abc
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch

from .. import _ops
from .._validation import check_int_in_range, check_positive, is_finite

Maximize = Callable[[torch.Tensor], torch.Tensor]


class Estimator(abc.ABC):
    """Forward/backward rule of a solver layer (see module docstring)."""

    #: number of solutions drawn per instance in forward (``S``)
    samples: int = 1
    #: True when ``y`` must have the same shape as ``theta`` (finite-difference / score estimators)
    needs_same_shape: bool = True
    #: True when :meth:`backward` is linear in ``grad_y`` (it keeps no state and its solver calls, if any, do not
    #: depend on ``grad_y``): when its estimate overflows, the layer recomputes it exactly on ``grad_y`` scaled by
    #: a power of two per instance (``PerturbedOptimizer``, ``ScoreFunction``)
    linear_backward: bool = False

    @abc.abstractmethod
    def plan(self, theta: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, Any]:
        """Arguments to maximise in forward, ``[N, *E]``, and a state passed to :meth:`finish`."""

    @abc.abstractmethod
    def finish(self, theta: torch.Tensor, ys: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Turn the solutions ``ys [N, *Y]`` into ``y [B, S, *Y]`` and a backward context."""

    @abc.abstractmethod
    def backward(self, maximize: Maximize, theta: torch.Tensor, ctx: Any, grad_y: torch.Tensor) -> torch.Tensor:
        """``dL/dtheta [B, *E]`` from per-sample gradients ``grad_y [B, S, *Y]`` (mean over samples)."""

    def forward(self, maximize: Maximize, theta: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, Any]:
        """Plan, solve in one call and finish: ``(y [B, S, *Y], ctx)``."""
        self.check_dtype(theta.dtype)
        thetas, state = self.plan(theta, generator)
        return self.finish(theta, maximize(thetas), state)

    def check_dtype(self, dtype: torch.dtype) -> None:
        """``ValueError`` when a hyperparameter cannot work in the compute ``dtype`` (e.g. a noise ``scale`` beyond
        ``float32``'s range). Called by the layer before every training forward (cheap: Python floats only);
        the default checks nothing."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Mutable training state (e.g. AIMLE's adapted ``lam``); saved with the layer's ``state_dict``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} has no training state; got keys {sorted(state)}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------- helpers shared by estimators
def check_bool(value: bool, name: str) -> bool:
    """``value`` if it is ``True`` or ``False``; ``ValueError`` naming ``name`` otherwise (no truthiness)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


def resolve_scale(scale: float | None, sigma: float | None, stacklevel: int = 3) -> float:
    """The noise scale from ``scale=`` (``None``: 1.0) or its deprecated alias ``sigma=`` (``DeprecationWarning``);
    both given -> ``ValueError``."""
    if sigma is not None:
        if scale is not None:
            raise ValueError(f"pass scale= only (sigma= is its deprecated name); got scale={scale!r} and "
                             f"sigma={sigma!r}")
        warnings.warn("sigma= is deprecated: the noise scale is called scale= everywhere in discreteopt",
                      DeprecationWarning, stacklevel=stacklevel)
        return check_step(sigma, "sigma")
    return 1.0 if scale is None else check_step(scale, "scale")


def check_scale_once(scale: float, noise) -> None:
    """``ValueError`` when both the estimator's ``scale`` and the noise's own ``scale`` differ from 1: the
    perturbation is ``scale * eps`` with ``eps ~ noise``, so the scale would be given twice."""
    if noise is not None and scale != 1.0 and getattr(noise, "scale", 1.0) != 1.0:
        raise ValueError(f"scale is given twice: scale={scale} and noise={noise!r} with its own scale "
                         f"{noise.scale}; the perturbation is scale * eps, eps ~ noise: set one of them to 1")


def check_step(value: float, name: str) -> float:
    """A step or scale (I-MLE's ``lam``, a noise ``scale``): positive, finite and a normal ``float64`` number
    (``>= 2.2e-308``), so that ``1 / value`` is finite in the widest compute dtype (``lam = 5e-324`` makes the
    division by ``lam`` infinite, whatever the dtype). Returns ``float(value)``; ``ValueError`` naming ``name``."""
    value = check_positive(value, name)
    if value < sys.float_info.min:
        raise ValueError(f"{name} must be at least {sys.float_info.min:.4g} (the smallest normal float64: the "
                         f"estimate divides by {name}, and 1 / {name} overflows below it); got {value!r}")
    return value


_RANGES: dict[torch.dtype, tuple[float, float]] = {}


def dtype_range(dtype: torch.dtype) -> tuple[float, float]:
    """``(smallest normal, largest finite)`` of a floating ``dtype`` (cached)."""
    r = _RANGES.get(dtype)
    if r is None:
        info = torch.finfo(dtype)
        r = _RANGES[dtype] = (float(info.tiny), float(info.max))
    return r


def check_in_dtype(value: float, name: str, dtype: torch.dtype, owner: object, role: str) -> None:
    """``ValueError`` unless ``value`` is a normal number of ``dtype`` (``[finfo.tiny, finfo.max]``): ``role`` says
    what overflows or underflows otherwise, ``owner`` (an estimator or loss) is named with its hyperparameters."""
    tiny, big = dtype_range(dtype)
    if not tiny <= value <= big:
        dt = str(dtype).replace("torch.", "")
        raise ValueError(f"{name}={value:.4g} does not fit {dt}, in which {owner!r} computes here: {role}. Expected "
                         f"{name} in [{tiny:.4g}, {big:.4g}] (the normal range of {dt}), or compute in float64")


def all_finite(x: torch.Tensor) -> bool:
    """:func:`discreteopt._validation.is_finite` that also reads functorch-wrapped tensors (every vmapped
    element)."""
    if _ops.transformed(x):  # the values of every vmapped element, under the functorch wrappers
        with torch._C._DisableFuncTorch():
            return bool(torch.isfinite(_ops.plain(x).detach()).all())
    return is_finite(x)


def row_exponents(*xs: torch.Tensor) -> torch.Tensor:
    """Per instance (dim 0) the binary exponent ``e`` with ``max |x| < 2**e`` over all ``xs`` (0 for all-zero rows):
    ``ldexp_rows(x, -e)`` brings every entry below 1 exactly (power-of-two scaling; only entries ``2**1074`` times
    smaller than the row's largest underflow). ``[B]`` int64."""
    top = torch.stack([x.detach().abs().flatten(1).amax(1) for x in xs]).amax(0)  # [B]
    return torch.frexp(top)[1].to(torch.int64)


def ldexp_rows(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``x * 2**e`` with ``e [B]`` per instance (dim 0), exact up to overflow/underflow of the result; applied in
    two halves so that ``2**e`` itself never overflows (``e`` up to ~2100 when two exponents are added)."""
    e = e.reshape(-1, *([1] * (x.ndim - 1)))
    half = torch.div(e, 2, rounding_mode="floor")
    return torch.ldexp(torch.ldexp(x, half), e - half).to(x.dtype)


def safe_inner(a: torch.Tensor, b: torch.Tensor, event_ndim: int) -> torch.Tensor:
    """``<a, b>`` over the trailing ``event_ndim`` dims of ``[B, ...]`` tensors without intermediate overflow: each
    factor is scaled by a power of two per instance, so the partial sums stay finite and the result is
    ``+-inf`` only when the exact value itself leaves the float range (never ``inf - inf = NaN``). ``[B, ...]``."""
    ea, eb = row_exponents(a), row_exponents(b)
    return ldexp_rows(inner(ldexp_rows(a, -ea), ldexp_rows(b, -eb), event_ndim), ea + eb)


def max_abs(x: torch.Tensor) -> float:
    """``max |x|`` as a Python float (0 for an empty tensor; for error messages)."""
    return float(x.detach().abs().max()) if x.numel() else 0.0


def check_samples(samples: int) -> int:
    return check_int_in_range(samples, "samples", 1, 2**31)


def mean_samples(x: torch.Tensor) -> torch.Tensor:
    """Mean over the sample dim: ``[B, S, *Y] -> [B, *Y]`` (a view when ``S == 1``)."""
    return x[:, 0] if x.shape[1] == 1 else x.mean(dim=1)


def unflatten(ys: torch.Tensor, batch: int, samples: int) -> torch.Tensor:
    """``[B*S, *Y] -> [B, S, *Y]``."""
    return ys.reshape(batch, samples, *ys.shape[1:])  # [B*S, *Y] -> [B, S, *Y]


def inner(a: torch.Tensor, b: torch.Tensor, event_ndim: int) -> torch.Tensor:
    """``<a, b>`` over the trailing ``event_ndim`` dims (broadcasting the leading ones)."""
    prod = a * b
    return prod.sum(dim=tuple(range(prod.ndim - event_ndim, prod.ndim))) if event_ndim else prod


def sample_noise(noise, theta: torch.Tensor, samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """``[B, S, *E]`` noise on ``theta``'s device and dtype."""
    shape = (theta.shape[0], samples, *theta.shape[1:])
    return noise.sample(shape, generator=generator, device=theta.device, dtype=theta.dtype)


def check_noise(noise, samples: int, needs_score: bool = False) -> None:
    """Constructor-time checks: antithetic pairs need an even ``samples``; score-based estimators need a
    noise with a tractable score (``ValueError`` otherwise, instead of a failure in the first backward)."""
    from ..noise import Antithetic

    if isinstance(noise, Antithetic) and samples % 2:
        raise ValueError(f"samples must be even for antithetic noise (pairs eps, -eps); got {samples}")
    if needs_score:
        try:
            noise.score(torch.zeros(1))
        except NotImplementedError:
            raise ValueError(f"noise must have a tractable score for this estimator (Normal, Gumbel, Logistic); "
                             f"got {noise!r}") from None


def resolve_noise(noise):
    """``"gumbel"``/``"normal"`` -> a fresh unit-scale noise; a :class:`Noise` or ``None`` as given."""
    from ..noise import Gumbel, Noise, Normal

    if isinstance(noise, str):
        table = {"gumbel": Gumbel, "normal": Normal}
        if noise not in table:
            raise ValueError(f"noise must be a Noise, None or one of {sorted(table)}; got {noise!r}")
        return table[noise]()
    if noise is not None and not isinstance(noise, Noise):
        raise ValueError(f"noise must be a Noise or None; got {type(noise).__name__}")
    return noise
