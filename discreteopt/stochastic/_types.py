"""The common calling convention of every estimator in :mod:`discreteopt.stochastic`.

Every estimator is a function ``est(f, params, ..., samples=S, generator=None) -> Estimate``:

* ``params`` has shape ``[B, *E]``: a batch of ``B`` independent problems, each with parameters of event shape
  ``E`` (``[d]`` logits of a factorised Bernoulli, ``[V, K]`` logits of ``V`` categorical variables, ...).
* ``f`` is vectorised: it maps a batch of samples ``[S, B, *E]`` to values ``[S, B]`` (one value per sample and
  problem). ``f`` must act on each problem ``b`` separately (it may, e.g., look up ``targets[b]``). Its values must
  be real and finite. Integer and bool outputs (counts, 0/1 rewards) are cast to the parameters' dtype by every
  estimator that uses only ``f``'s values (score-function family, ARM/DisARM, measure-valued, ES); estimators that
  differentiate through ``f`` (``pathwise``, ``concrete``, ``l2x_subset``, ``softsub``, the control variates of
  ``rebar``/``relax``) refuse them with a ``ValueError``, since an integer output has no gradient (:class:`CountingF`).
* ``Estimate.surrogate`` is a scalar; ``surrogate.backward()`` puts into ``params.grad`` (and further back into
  whatever produced ``params``) the estimate of ``d E[f(z)] / d params[b]`` for every problem ``b``. Its *value*
  is the Monte Carlo estimate of ``sum_b E[f(z_b)]`` (the "magic box" idea of DiCE: ``value + (x - x.detach())``).
  Minimise it if ``f`` is a loss, maximise it (or minimise ``-surrogate``) if ``f`` is a reward.
* ``Estimate.per_item`` holds the ``[B]`` surrogates whose sum is ``surrogate`` (to weight the problems).
* ``Estimate.n_evals`` is the number of points at which ``f`` was evaluated *per problem* (``f`` is called on
  ``[S, B, *E]`` tensors, so the total number of evaluated points is ``n_evals * B``).
* ``Estimate.aux_loss`` (when not ``None``) trains auxiliary parameters (a learned baseline, a control-variate
  network). It is built so that it never reaches ``params``: ``(est.surrogate + est.aux_loss).backward()`` is safe.

Input rules shared by every entry point (each violation is a ``ValueError`` naming the argument):

* parameters, logits, scores, log-probabilities and rewards are real floating tensors (float16, bfloat16, float32,
  float64), finite and non-empty: integer and bool parameters are refused (pass floats), and so are complex ones
  (a conjugate view is complex); ``torch.distributions`` objects given to ``pathwise`` follow the same rule;
* a temperature ``tau`` or noise ``scale`` must satisfy ``tau >= torch.finfo(dtype).tiny`` for the dtype it divides
  (so ``1 / tau`` is finite there: ``tau=1e-300`` is fine for float64 logits, refused for float32 ones);
* perturbed points (``params + scale * eps``) must be finite: an overflow is reported before ``f`` is called.

Values near the float maximum are handled, not refused: softmaxes are shifted by their maximum (the limit is the
one-hot sample), the surrogate never forms ``<params, g>`` (:func:`inject`), and sums and means of huge terms are
overflow-safe (:func:`safe_sum`, :func:`safe_mean`, :func:`mean_product`): results are finite, or ``+-inf`` where
the exact value leaves the float range, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._validation import check_generator  # noqa: F401 -- re-exported for the estimators
from .._validation import check_positive as _check_positive_number
from ..noise.base import uniform_open

SampleFn = Callable[[Tensor], Tensor]
"""``f``: samples ``[S, B, *E]`` -> values ``[S, B]``."""


@dataclass
class Estimate:
    """Result of a gradient estimator (see the module docstring for the contract)."""

    surrogate: Tensor
    per_item: Tensor
    n_evals: int
    samples: Tensor | None = None
    f_values: Tensor | None = None
    grad: Tensor | None = None
    aux_loss: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


class CountingF:
    """Wraps ``f``: checks its output, casts it to a floating dtype and counts evaluated points per problem.

    ``f`` must return a real tensor of shape ``[S, B]`` without NaN/inf. One rule for every estimator:

    * estimators that only use ``f``'s *values* (``reinforce``, ``rloo``, ``vimco``, ``rao_blackwell``,
      ``measure_valued``, ``arm``, ``disarm``, ``evolution_strategies``, and ``f(b)`` in ``rebar``/``relax``)
      accept integer and bool outputs and cast them to ``dtype`` (the parameters' dtype), so ``f`` may return
      counts, 0/1 indicators or rewards;
    * estimators that *differentiate through* ``f`` (``pathwise``, ``concrete``, ``l2x_subset``, ``softsub``, the
      control variates of ``rebar``/``relax``; call :meth:`through`) raise ``ValueError`` for integer and bool
      outputs: such an output carries no gradient, so the estimate would silently be zero.

    ``count`` is the number of points evaluated per problem (the leading dim of each call, summed).
    """

    def __init__(self, f: SampleFn, batch: int, dtype: torch.dtype | None = None):
        if not callable(f):
            raise ValueError(f"f must be callable (samples [S, B, *E] -> values [S, B]); got {type(f).__name__}")
        self.f = f
        self.batch = batch
        self.dtype = dtype
        self.count = 0

    def __call__(self, z: Tensor) -> Tensor:
        return self.evaluate(z, None)

    def through(self, who: str) -> Callable[[Tensor], Tensor]:
        """``f`` for an estimator ``who`` that backpropagates through it: integer/bool outputs are rejected."""
        return lambda z: self.evaluate(z, who)

    def evaluate(self, z: Tensor, through: str | None) -> Tensor:
        """``f(z)`` checked: shape ``[S, B]``, real, finite; integer/bool cast to ``dtype`` unless ``through``."""
        out = self.f(z)
        if not isinstance(out, Tensor):
            raise ValueError(f"f must return a tensor of shape [S, B]; got {type(out).__name__}")
        expected = (z.shape[0], self.batch)
        if tuple(out.shape) != expected:
            raise ValueError(f"f must map samples [S, B, *E] to values [S, B] = {list(expected)}; "
                             f"got shape {list(out.shape)} for samples of shape {list(z.shape)}")
        if out.is_complex():
            raise ValueError(f"f must return real values; got dtype {out.dtype}")
        if not out.is_floating_point():
            if through is not None:
                raise ValueError(f"f returned {out.dtype} values, but {through} differentiates through f and an "
                                 "integer or bool output carries no gradient (the estimate would be 0). Return "
                                 "floating values that depend differentiably on the samples, or use an estimator "
                                 "that needs only f's values (reinforce, rloo, arm, disarm, rao_blackwell)")
            dtype = self.dtype if self.dtype is not None else (
                z.dtype if z.is_floating_point() else torch.get_default_dtype())
            out = out.to(dtype)
        if not bool(torch.isfinite(out.detach()).all()):
            raise ValueError("f returned NaN or inf values")
        self.count += z.shape[0]
        return out


def check_tensor_param(x: Any, name: str, min_ndim: int = 2, layout: str = "[B, *E]") -> Tensor:
    """Raise ``ValueError`` unless ``x`` is a finite floating tensor with at least ``min_ndim`` dims."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}; got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have shape {layout} (at least {min_ndim} dims, the first one the batch); "
                         f"got shape {list(x.shape)}. Add a batch dim with {name}[None].")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty; got shape {list(x.shape)}")
    if not bool(torch.isfinite(x.detach()).all()):
        nan = int(torch.isnan(x.detach()).sum())
        inf = int(torch.isinf(x.detach()).sum())
        raise ValueError(f"{name} must be finite; got {nan} NaN and {inf} inf entries")
    return x


def check_samples(samples: Any, name: str = "samples", minimum: int = 1) -> int:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < minimum:
        why = " (a leave-one-out baseline needs at least 2)" if minimum >= 2 else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{why}; got {samples!r}")
    return samples


def check_positive(value: Any, name: str) -> float:
    """:func:`discreteopt._validation.check_positive`, also accepting a one-element tensor and rejecting bools."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a positive scalar; got a tensor of shape {list(value.shape)}")
        value = float(value.detach())
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return _check_positive_number(value, name)


def check_reciprocal(value: float, name: str, dtype: torch.dtype, of: str) -> float:
    """A temperature or noise scale ``value`` (already a positive finite float) divides values of ``dtype``: it must
    be at least the smallest normal number of ``dtype`` (``torch.finfo(dtype).tiny``), so that ``value`` and
    ``1 / value`` are finite and non-zero in that dtype; ``ValueError`` naming ``name`` and ``of`` otherwise."""
    tiny = torch.finfo(dtype).tiny
    if value < tiny:
        raise ValueError(f"{name}={value!r} is too small for {of} of dtype {dtype}: 1/{name} must be finite in "
                         f"that dtype, so {name} >= {tiny:.4g} (its smallest normal number); use a larger {name} "
                         "or a wider dtype")
    return value


def uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``U(0, 1)`` samples in the open interval, on ``like``'s device and dtype (no autograd)."""
    return uniform_open(shape, generator, like.device, like.dtype)


def normal(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


class _Inject(torch.autograd.Function):
    """Forward ``value``; backward ``d out / d params = grad`` (see :func:`inject`)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(value: Tensor, params: Tensor, grad: Tensor) -> Tensor:
        return value.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[2])

    @staticmethod
    def backward(ctx: Any, go: Tensor) -> tuple[Tensor, Tensor, None]:
        (grad,) = ctx.saved_tensors
        return go, go.reshape(tuple(go.shape) + (1,) * (grad.ndim - go.ndim)) * grad, None


def inject(value: Tensor, params: Tensor, grad: Tensor) -> Tensor:
    """Per-item surrogate ``[B]`` with forward value ``value`` and gradient ``grad`` ``[B, *E]`` w.r.t. ``params``.

    The "magic box" ``value + sum_E(params * g) - sum_E(params.detach() * g)`` (``g = grad.detach()``) has this
    forward value and gradient in real arithmetic, but ``<params, g>`` overflows for large parameters (``inf - inf =
    NaN`` in the forward pass). It is therefore an autograd function: the forward pass returns ``value`` (keeping
    ``value``'s own graph), the backward pass sends ``d L / d out[b] * grad[b]`` into ``params`` (and through it into
    whatever produced ``params``). ``value`` may also be a scalar with ``grad`` of any shape (one parameter tensor).
    """
    return _Inject.apply(value, params, grad.detach())


def _pow2_at_least(n: int) -> float:
    """The smallest power of two ``>= n`` (``n >= 1``), as a float."""
    return float(2 ** max(int(n) - 1, 0).bit_length())


def safe_sum(x: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """``x.sum(dim)`` that never turns finite terms into NaN.

    A vectorised sum of huge terms of both signs can overflow to ``+inf`` in one partial sum and to ``-inf`` in
    another (``inf - inf = NaN``) although the exact sum is finite. The terms are scaled by ``2^-k``, ``2^k >= n``
    (``n`` terms per sum), so no partial sum can overflow, and the result is scaled back: bit-for-bit ``x.sum(dim)``
    whenever that does not overflow (scaling by a power of two is exact above the subnormal range), ``+-inf`` when
    the exact sum leaves the float range, never NaN for finite terms.
    """
    dims = tuple(range(x.ndim)) if dim is None else ((dim,) if isinstance(dim, int) else tuple(dim))
    n = math.prod(x.shape[d] for d in dims)
    p = _pow2_at_least(n)
    if p == 1.0:
        return x.sum(dims)
    return (x * (1.0 / p)).sum(dims) * p


def safe_mean(x: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """``x.mean(dim)`` without overflow of the intermediate sum (:func:`safe_sum`): the mean of finite terms is
    finite; bit-for-bit ``x.mean(dim)`` whenever the sum itself does not overflow."""
    dims = tuple(range(x.ndim)) if dim is None else ((dim,) if isinstance(dim, int) else tuple(dim))
    n = math.prod(x.shape[d] for d in dims)
    p = _pow2_at_least(n)
    if p == 1.0:
        return x.sum(dims)
    return (x * (1.0 / p)).sum(dims) / (n / p)


def pow2_unit(x: Tensor, dim: int | None = None) -> Tensor:
    """A power of two ``u >= 1`` in ``x``'s dtype with ``max |x| / u < 2`` (over all of ``x``: a 0-d tensor; or along
    ``dim``, kept), at most the largest finite power of two of the dtype: dividing by it is exact (above the
    subnormal range) and brings large values into ``(-2, 2)``. Built from ``floor(log2 max |x|)`` (rounding can only
    make ``u`` larger, never break the bound), with no host synchronisation."""
    top = x.detach().abs().amax() if dim is None else x.detach().abs().amax(dim, keepdim=True)
    emax = math.frexp(torch.finfo(x.dtype).max)[1] - 1  # 1023 in float64, 127 in float32, 15 in float16
    return torch.exp2(torch.floor(torch.log2(top)).clamp(min=0, max=emax))


def mean_product(a: Tensor, b: Tensor, dim: int = 0) -> Tensor:
    """``(a * b).mean(dim)`` that never turns finite factors into NaN.

    A product of finite factors may overflow to ``+inf`` for one sample and ``-inf`` for another, whose mean is NaN.
    Both factors are divided by :func:`pow2_unit` first (exact), the products (each below 4 in magnitude) averaged
    with :func:`safe_mean` and the result scaled back: bit-for-bit ``(a * b).mean(dim)`` when nothing overflows,
    ``+-inf`` where the exact mean leaves the float range, never NaN.
    """
    ua, ub = pow2_unit(a), pow2_unit(b)
    return safe_mean((a / ua) * (b / ub), dim) * ua * ub


def finish(value: Tensor, params: Tensor, grad: Tensor, n_evals: int, **kw: Any) -> Estimate:
    """Build an :class:`Estimate` from a per-item value ``[B]`` and an explicit gradient estimate ``[B, *E]``."""
    per_item = inject(value, params, grad)
    return Estimate(surrogate=safe_sum(per_item), per_item=per_item, n_evals=n_evals, grad=grad.detach(), **kw)
