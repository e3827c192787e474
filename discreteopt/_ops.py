"""PyTorch-native plumbing shared by :class:`~discreteopt.layers.DiscreteLayer` and the losses.

A solver call is Python (numpy, OR-Tools, numba, a worker pool): PyTorch's tracers cannot see into it. This
module gives layers and losses the three doors PyTorch offers for such code.

* **torch.func** (``grad``, ``vjp``, ``vmap``, ``jacrev``): layers and losses are ``torch.autograd.Function``
  subclasses with a ``setup_context`` and a ``vmap`` rule. The vmap rule *folds* the vmapped dimension into the
  batch, ``[V, B, *E] -> [V*B, *E]``: one solver call for all ``V*B`` instances (solvers are batched), then
  ``[V*B, *Y] -> [V, B, *Y]``. :func:`plain` and :func:`transformed` see through functorch's wrappers.
* **torch.compile** (``fullgraph=True``): the whole forward of a layer (noise, solver call, executor future) and
  its backward are custom operators -- ``discreteopt::layer_forward`` / ``layer_backward`` / ``layer_map`` and
  ``discreteopt::linearized_loss`` -- with fake-tensor implementations (shapes only) and ``register_autograd``.
  Operators take tensors and numbers only, so layer and loss objects are passed as an ``int`` id from
  :func:`register` (a weak registry); the estimator's backward context travels as a 0-d ``int64`` *token* tensor whose storage
  owns the context (:func:`store_context`): it lives exactly as long as the compiled graph keeps the token.
* **dtypes**: :data:`SUPPORTED_DTYPES`; half-precision inputs are computed in float32 (:func:`compute_dtype`).

Noise under these transforms: a layer draws its noise inside the operator / autograd function from its own
generator (or the device's default one), in the order eager code would: a compiled model consumes the same random
numbers as the eager one, and ``vmap`` draws one ``[V*B, S, *E]`` block (independent noise per vmapped element;
``randomness="error"`` is honoured with a clear error, ``"same"`` is refused).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any

import numpy as np
import torch

from ._validation import check_event_shape, check_finite

#: dtypes layers and losses accept (half precision is computed in float32 and returned in the input dtype)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HALF = (torch.float16, torch.bfloat16)

_functorch = torch._C._functorch
_is_wrapped = _functorch.is_functorch_wrapped_tensor
_unwrap = _functorch.get_unwrapped
_transforms_active = torch._C._are_functorch_transforms_active


# ---------------------------------------------------------------------------------------------- dtypes, checks
def check_dtype(x: torch.Tensor, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``x`` is float16, bfloat16, float32 or float64."""
    if x.dtype not in SUPPORTED_DTYPES:
        kind = "a floating dtype" if not x.is_floating_point() else "float16, bfloat16, float32 or float64"
        raise ValueError(f"{name} must have {kind} (half precision is computed in float32); got {x.dtype}")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype estimators and solvers work in: float32 for half-precision inputs, else the input's."""
    return torch.float32 if dtype in _HALF else dtype


def transformed(x: Any = None) -> bool:
    """True inside a ``torch.func`` transform (``grad``, ``vmap``, ...) or when ``x`` is a tensor wrapped by one:
    then no tensor's data may be read directly (``.numpy()`` fails even on plain tensors)."""
    return _transforms_active() or (isinstance(x, torch.Tensor) and _is_wrapped(x))


def plain(x: torch.Tensor) -> torch.Tensor:
    """The storage-backed tensor under every functorch wrapper (for ``vmap``: all vmapped elements)."""
    while _is_wrapped(x):
        x = _unwrap(x)
    return x


def compiling() -> bool:
    """True while ``torch.compile`` traces the calling code."""
    return torch.compiler.is_compiling()


def check_structure(solver, theta: Any, name: str) -> None:
    """The checks of :func:`~discreteopt._validation.validate_input` that read no values (type, dtype, event
    shape, non-empty batch): valid on fake tensors and on functorch-wrapped tensors (logical shapes)."""
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {solver.theta_layout}; got {type(theta).__name__}")
    check_dtype(theta, name)
    check_event_shape(theta, solver.event_shape(), name, solver.theta_layout)
    if theta.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch; got shape {tuple(theta.shape)}")


def check_values(x: torch.Tensor, name: str) -> None:
    """``check_finite`` that also works on functorch-wrapped tensors (it checks every vmapped element)."""
    if transformed(x):
        with torch._C._DisableFuncTorch():
            check_finite(plain(x).detach(), name)
    else:
        check_finite(x.detach(), name)


def nonfinite_rows(grad: torch.Tensor) -> torch.Tensor | None:
    """Instances whose incoming gradient ``dL/dy [B, ...]`` holds NaN or inf: a bool mask ``[B]``, or ``None``
    when every entry is finite (eager tensors; functorch-wrapped ones always get a mask, computed without a
    data-dependent branch).

    A layer's backward solves the rows it can and gives NaN for these rows, as any torch operation propagates a
    NaN: a float16 ``GradScaler`` then skips the step, and ``torch.autograd.detect_anomaly()`` finds the culprit.
    Without it a NaN ``dL/dy`` would reach the estimator (an I-MLE target ``theta - lam * dL/dy``) and the solver
    would report a non-finite ``theta``, which misleads: ``theta`` is fine, the loss downstream is not.
    """
    if not transformed(grad):
        try:
            check_finite(grad.detach(), "dL/dy")
            return None
        except ValueError:
            pass
    return ~torch.isfinite(grad).flatten(1).all(dim=1)  # [B]


# ---------------------------------------------------------------------------------------------- registry
_OBJECTS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_IDS = itertools.count(1)
_LOCK = threading.Lock()


def register(obj: Any) -> int:
    """A fresh ``int`` id under which the custom operators find ``obj`` (held weakly)."""
    with _LOCK:
        key = next(_IDS)
        _OBJECTS[key] = obj
    return key


def lookup(key: int, kind: str) -> Any:
    """The object registered under ``key``; ``RuntimeError`` when it has been garbage-collected."""
    obj = _OBJECTS.get(int(key))
    if obj is None:
        raise RuntimeError(f"discreteopt: the {kind} with operator id {key} no longer exists (it was garbage-"
                           "collected while a compiled graph still refers to it); keep the module alive as long as "
                           "the compiled model, or compile again")
    return obj


class Native(torch.nn.Module):
    """Base of modules that run as ``discreteopt::`` custom operators under ``torch.compile``: registers the module
    (again after ``copy.deepcopy`` / unpickling, so a copy never answers for the original) and refuses TorchScript."""

    def __init__(self) -> None:
        super().__init__()
        self._op_id = register(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._op_id = register(self)

    def __prepare_scriptable__(self):
        raise RuntimeError(
            f"{type(self).__name__} cannot be compiled by torch.jit.script: it calls a Python solver, which "
            "TorchScript cannot represent. Use torch.compile(model, fullgraph=True) (the solver call is the custom "
            "operator discreteopt::layer_forward), or run the model eagerly.")

    def _refuse_jit_trace(self) -> None:
        if torch.jit.is_tracing():
            raise RuntimeError(
                f"{type(self).__name__} cannot be traced by torch.jit.trace: the trace would record the solver's "
                "answer as a constant. Use torch.compile(model, fullgraph=True) instead.")


# ---------------------------------------------------------------------------------------------- contexts
class _Holder(np.ndarray):
    """0-d ``int64`` array (the key) carrying a backward context; a token tensor's storage owns it."""


_CONTEXTS: weakref.WeakValueDictionary[int, _Holder] = weakref.WeakValueDictionary()


def store_context(payload: Any) -> torch.Tensor:
    """A 0-d ``int64`` CPU token whose storage keeps ``payload`` alive (found again by :func:`load_context`)."""
    with _LOCK:
        key = next(_IDS)
    holder = np.array(key, dtype=np.int64).view(_Holder)
    holder.payload = payload
    _CONTEXTS[key] = holder
    return torch.from_numpy(holder)


def load_context(token: torch.Tensor) -> Any:
    key = int(token.item())
    holder = _CONTEXTS.get(key)
    if holder is None:
        raise RuntimeError("discreteopt: the backward context of this forward was freed (backward after the graph "
                           "was released: pass retain_graph=True to differentiate twice)")
    return holder.payload


def fresh(out: torch.Tensor, *inputs: torch.Tensor | None) -> torch.Tensor:
    """``out``, copied if it shares memory with an input (custom operators may not return aliases)."""
    ptr = out.untyped_storage().data_ptr()
    for x in inputs:
        if x is not None and x.untyped_storage().data_ptr() == ptr and out.numel():
            return out.clone()
    return out


# ---------------------------------------------------------------------------------------------- vmap helpers
def to_front(x: torch.Tensor | None, bdim: int | None, size: int) -> torch.Tensor | None:
    """Physical ``x`` with its vmapped dim ``bdim`` moved to the front (``None``: broadcast to ``size``)."""
    if x is None:
        return None
    if bdim is None:
        return x.unsqueeze(0).expand(size, *x.shape)
    return x.movedim(bdim, 0)


def fold(x: torch.Tensor | None) -> torch.Tensor | None:
    """``[V, B, ...] -> [V*B, ...]``."""
    return None if x is None else x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def unfold(y: torch.Tensor, v: int) -> torch.Tensor:
    """``[V*B, ...] -> [V, B, ...]``."""
    return y.reshape(v, y.shape[0] // v, *y.shape[1:])


class RandomnessGuard:
    """Watches the generator a vmapped forward draws from and enforces ``vmap(randomness=...)``.

    ``"different"``: fine (folding draws independent noise for every element). ``"error"`` (vmap's default):
    ``RuntimeError`` if the forward drew random numbers. ``"same"``: refused if it drew (one noise block shared by
    all vmapped elements would need the estimator's cooperation).
    """

    def __init__(self, randomness: str, generator: torch.Generator | None, device: torch.device, what: str):
        self.randomness, self.what, self.gen, self.state = randomness, what, None, None
        if randomness == "different":
            return
        gen = generator
        if gen is None:
            if device.type == "cpu":
                gen = torch.default_generator
            elif device.type == "cuda":
                gen = torch.cuda.default_generators[device.index if device.index is not None
                                                    else torch.cuda.current_device()]
        if gen is not None:
            self.gen, self.state = gen, gen.get_state()

    def check(self) -> None:
        if self.gen is None or torch.equal(self.gen.get_state(), self.state):
            return
        if self.randomness == "error":
            raise RuntimeError(
                f"vmap over {self.what} draws random noise, which vmap(randomness='error') (its default) forbids: "
                "pass randomness='different' (independent noise for every vmapped element, one solver call for "
                "all), or put the layer in eval() mode (deterministic MAP)")
        raise RuntimeError(
            f"vmap(randomness='same') is not supported by {self.what} (one noise draw shared by all vmapped "
            "elements); use randomness='different' or eval() mode")


# ---------------------------------------------------------------------------------------------- second order
class _Refuse(torch.autograd.Function):
    """Identity on ``x`` whose backward raises ``message``: marks a gradient that must not be differentiated."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, anchor, message):  # noqa: ARG004 -- anchor makes the output require grad with theta
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.message = inputs[2]

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(ctx.message)


def refuse_second_order(grad: torch.Tensor, anchor: torch.Tensor, message: str) -> torch.Tensor:
    """``grad`` as it is, but differentiating it (a double backward) raises ``RuntimeError(message)``.

    Used only when the backward itself runs with a graph (``create_graph=True``, ``torch.func``).
    """
    return _Refuse.apply(grad, anchor, message)


# ---------------------------------------------------------------------------------------------- custom operators
_NONDET = (torch.Tag.nondeterministic_seeded,)  # never merged (CSE) or recomputed by the compiler


@torch.library.custom_op("discreteopt::layer_forward", mutates_args=(), tags=_NONDET)
def layer_forward(theta: torch.Tensor, layer_id: int, samples: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-mode forward of a :class:`~discreteopt.layers.DiscreteLayer`: ``(y, token)``; ``y`` is
    ``[B, *Y]`` or ``[B, S, *Y]`` (``samples``), the token carries the estimator's backward context."""
    y, token = lookup(layer_id, "DiscreteLayer")._op_forward(theta, samples)
    return fresh(y, theta), token


@layer_forward.register_fake
def _(theta, layer_id, samples):
    layer = lookup(layer_id, "DiscreteLayer")
    return layer._op_forward_fake(theta, samples), theta.new_empty((), dtype=torch.int64, device="cpu")


def _layer_setup(ctx, inputs, output):
    ctx.layer_id = inputs[1]
    ctx.save_for_backward(inputs[0], output[1])


def _layer_backward_rule(ctx, grad, _grad_token):
    theta, token = ctx.saved_tensors
    return torch.ops.discreteopt.layer_backward(grad, theta, token, ctx.layer_id), None, None


layer_forward.register_autograd(_layer_backward_rule, setup_context=_layer_setup)


@torch.library.custom_op("discreteopt::layer_backward", mutates_args=(), tags=_NONDET)
def layer_backward(grad: torch.Tensor, theta: torch.Tensor, token: torch.Tensor, layer_id: int) -> torch.Tensor:
    """``dL/dtheta`` from ``dL/dy`` and the forward's context token (estimators may call the solver again)."""
    lookup(layer_id, "DiscreteLayer")  # a clear error if the layer is gone
    return fresh(load_context(token).backward(grad), grad, theta)


@layer_backward.register_fake
def _(grad, theta, token, layer_id):
    return torch.empty_like(theta)


@torch.library.custom_op("discreteopt::layer_map", mutates_args=(), tags=_NONDET)
def layer_map(theta: torch.Tensor, layer_id: int, samples: bool) -> torch.Tensor:
    """Eval-mode (MAP) forward of a layer: ``[B, *Y]`` or ``[B, 1, *Y]``; no gradient."""
    return fresh(lookup(layer_id, "DiscreteLayer")._op_map(theta, samples), theta)


@layer_map.register_fake
def _(theta, layer_id, samples):
    return lookup(layer_id, "DiscreteLayer")._op_forward_fake(theta, samples, map_mode=True)


@torch.library.custom_op("discreteopt::linearized_loss", mutates_args=(), tags=_NONDET)
def linearized_loss(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None,
                    loss_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A loss ``l(x) [B]`` whose gradient is ``dl/dx = direction [B, *E]`` held fixed (Fenchel-Young, SPO+):
    ``(value, direction)``; the backward is ``grad_value * direction``."""
    value, direction = lookup(loss_id, "loss")._linearized(x, a, b)
    return fresh(value, x, a, b), fresh(direction, x, a, b)


@linearized_loss.register_fake
def _(x, a, b, loss_id):
    return lookup(loss_id, "loss")._linearized_fake(x, a, b)


def _loss_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])


def _loss_backward_rule(ctx, grad_value, _grad_direction):
    (direction,) = ctx.saved_tensors
    return grad_value.reshape(-1, *([1] * (direction.ndim - 1))) * direction, None, None, None


linearized_loss.register_autograd(_loss_backward_rule, setup_context=_loss_setup)
