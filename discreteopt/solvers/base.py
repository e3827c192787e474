"""The ``Solver`` contract, and how to bring your own solver.

A solver is a batched MAP oracle. In its natural sense it computes, for every instance ``b``::

    sense == "max":  y*_b = argmax_{y in C} <theta_b, y>
    sense == "min":  y*_b = argmin_{y in C} <c_b, y>        (e.g. shortest paths over costs)

Layers and estimators only ever see the *max* convention: :meth:`Solver.maximize` receives ``theta`` and calls
the natural solver on ``-theta`` when ``sense == "min"``. That is the single place where the sign is flipped.

**Hooks: what a subclass implements** (one of them; public names, documented, nothing private needed)

* :meth:`Solver.solve_instance` ``(theta_b [*E]) -> y_b [*Y]``: one instance, a ``float64`` numpy array;
  the simplest, e.g. a call into networkx or a MIP modeller;
* :meth:`Solver.solve_numpy` ``(theta [B, *E]) -> y [B, *Y]``: the whole batch as a ``float64`` numpy array
  (vectorised or compiled kernels);
* :meth:`Solver.solve_torch` ``(theta [B, *E]) -> y [B, *Y]``: the batch as a torch tensor; with
  ``device_native = True`` it runs on the input's device (GPU included) and executors never ship it to workers.

Hooks receive validated input (shape, finiteness, domain; never an empty batch) and may return any real array
(bool, int, float; a tensor from ``solve_torch``); the base class checks the result's shape
(``[B, *output_shape(E)]``) and finiteness and converts it. The input may share memory with the caller's tensor:
hooks must not modify it in place. The built-in solvers implement the older private names ``_solve_numpy`` and
``_solve_torch``; they remain aliases of ``solve_numpy`` and ``solve_torch``.

**Entry points: what callers use** (never overridden)

* :meth:`Solver.solve` ``(Tensor [B, *E]) -> Tensor [B, *Y]`` on the input's device and dtype; validates the
  input and never builds an autograd graph. ``float16``/``bfloat16`` inputs are solved in a wider float
  (``float64`` on the host, ``float32`` for device-native kernels) and returned in the input's dtype;
  integer, complex and bool tensors, meta tensors and sparse tensors raise ``ValueError`` naming the argument.
* :meth:`Solver.solve_numpy` called on a solver (the built-ins, or yours): validated CPU entry on ``float64``
  arrays, what executors' workers call. A subclass's ``solve_numpy`` hook is wrapped so that every call of it
  validates its input and checks its output too.
* :meth:`Solver.maximize`: ``argmax_y <theta, y>`` whatever the natural sense.

**The recipe.** Worker processes (:class:`~discreteopt.executors.Processes`, :class:`~discreteopt.executors.Ray`)
cannot receive live solvers (an OR-Tools model does not pickle); they receive :meth:`Solver.spec`, a picklable
:class:`SolverSpec` (import path of the class plus constructor arguments) and rebuild the solver once. The
constructor arguments are recorded automatically when a solver is created (as scikit-learn's ``get_params``
reads them, but without requiring attributes of the same names), so a subclass needs nothing for it. Executors
verify the recipe before first use (:func:`verified_spec`): the class must be importable and the arguments
picklable, and the rebuilt solver must agree with yours, or they raise :class:`RecipeError` saying what to do.
:class:`~discreteopt.executors.Inline` and :class:`~discreteopt.executors.Threads` run your object as given
and need no recipe (closures and classes defined in a function work there).

Example: a solver in six lines, checked against brute force::

    >>> import numpy as np, torch
    >>> from discreteopt.solvers import Solver
    >>> class BestPair(Solver):
    ...     '''theta [B, n] -> indicator of the two largest entries (one instance at a time).'''
    ...     def solve_instance(self, theta_b):
    ...         y = np.zeros_like(theta_b)
    ...         y[np.argsort(-theta_b, kind="stable")[:2]] = 1.0
    ...         return y
    >>> BestPair().solve(torch.tensor([[0.1, 3.0, 2.0, -1.0]]))
    tensor([[0., 1., 1., 0.]])
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pickle
import sys
import threading
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .._validation import (
    check_event_shape,
    check_finite,
    check_nonnegative,
    check_tensor,
    host_float64,
    host_to_tensor,
)

Sense = Literal["max", "min"]

# the hooks, in order of precedence within one class (numpy hooks before torch hooks on the host path)
_NUMPY_HOOKS = ("solve_numpy", "solve_instance", "_solve_numpy")
_TORCH_HOOKS = ("solve_torch", "_solve_torch")
_HOOK_MARK = "_discreteopt_hook"  # attribute of a wrapped ``solve_numpy`` holding the subclass's own function


class InstanceError(RuntimeError):
    """A solver could not produce an optimal solution for one instance of the batch.

    Raised by a solver (or by the base class for a hook that returned NaN/inf for one instance) instead of a
    wrong answer. Executors that split the batch into chunks re-raise it with the index in the *full* batch.

    Args:
        solver: the solver's name (its class name).
        index: position of the instance in the batch passed to ``solve``.
        status: the back-end's status name (``"INFEASIBLE"``, ``"UNBOUNDED"``, ``"TIME_LIMIT"``,
            ``"OVERFLOW"``, ``"NON_FINITE_OUTPUT"``, ...).
        detail: a free-form explanation appended to the message.

    Example::

        >>> err = InstanceError("MySolver", 2, "INFEASIBLE", "capacity too small")
        >>> err.shifted(8).index   # the same instance seen in a batch whose chunk started at row 8
        10
    """

    def __init__(self, solver: str, index: int, status: str, detail: str = ""):
        self.solver = solver
        self.index = int(index)
        self.status = status
        self.detail = detail
        msg = f"{solver}: instance {self.index} of the batch has no optimal solution (status {status})"
        super().__init__(msg + (f": {detail}" if detail else ""))

    def shifted(self, offset: int) -> InstanceError:
        """The same error with ``index`` moved by ``offset`` (chunk start in the full batch)."""
        return InstanceError(self.solver, self.index + offset, self.status, self.detail)

    def __reduce__(self):  # picklable across worker processes
        return (InstanceError, (self.solver, self.index, self.status, self.detail))


class RecipeError(ValueError):
    """A worker process needs a solver's recipe (:meth:`Solver.spec`) and none can be derived, or the solver
    rebuilt from it would differ from the original.

    Raised in the caller by :class:`~discreteopt.executors.Processes` and :class:`~discreteopt.executors.Ray`
    (and by :meth:`Solver.spec`), with the reason and what to do: define the class or function at module level
    of an importable module, pass picklable constructor arguments, or use ``Inline()``/``Threads()``, which run
    the object as given.
    """


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """Picklable recipe of a solver: ``build()`` reconstructs it (in a worker, once) as ``cls(*args, **kwargs)``.

    Holds only the import path of the class and its constructor arguments (numpy arrays, numbers, strings,
    module-level functions), never a live back-end object such as an OR-Tools model. Made by
    :meth:`Solver.spec`; build your own with :meth:`of` when you override ``spec``.

    Attributes:
        cls_path: ``"module.ClassName"``, importable in a fresh interpreter.
        kwargs: keyword arguments of the constructor.
        args: positional arguments (only for positional-only or ``*args`` parameters).

    Example::

        >>> from discreteopt.solvers import TopK
        >>> spec = TopK(3).spec()
        >>> spec.cls_path, spec.kwargs
        ('discreteopt.solvers.topk.TopK', {'k': 3})
        >>> spec.build()
        TopK(k=3)
    """

    cls_path: str
    kwargs: dict[str, Any]
    args: tuple[Any, ...] = ()

    @classmethod
    def of(cls, solver_cls: type, *args: Any, **kwargs: Any) -> SolverSpec:
        """The recipe ``solver_cls(*args, **kwargs)`` (the class must be importable by its path)."""
        return cls(_import_path(solver_cls), dict(kwargs), tuple(args))

    def build(self) -> Solver:
        module, _, name = self.cls_path.rpartition(".")
        try:
            obj: Any = importlib.import_module(module)
            for part in name.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise RecipeError(f"cannot import the solver class {self.cls_path!r} ({type(exc).__name__}: {exc}); "
                              "define it at module level of a module the worker processes can import, or "
                              "use Inline()/Threads()") from exc
        return obj(*self.args, **self.kwargs)


@dataclasses.dataclass(frozen=True)
class _Call:
    """The constructor call recorded for the recipe: ``args``/``kwargs`` as rebuilt, ``named`` for ``repr``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    named: dict[str, Any]


class Solver:
    """Batched MAP solver: ``solve(theta [B, *E]) -> y [B, *Y]`` (see the module docstring for the full contract).

    Subclass it and implement one hook: :meth:`solve_instance` (one ``float64`` instance at a time),
    :meth:`solve_numpy` (the ``float64`` batch) or :meth:`solve_torch` (a torch batch; set
    ``device_native = True`` when it runs on any device). Describe the argument with the class attributes below,
    override :meth:`event_shape` when instances have a fixed size and :meth:`output_shape` when ``y`` has another
    shape than ``theta``. The constructor's arguments are recorded automatically for :meth:`spec` (the recipe
    worker processes rebuild the solver from): keep them picklable and do not modify the solver after
    construction.

    Class attributes (override as class or instance attributes):
        sense: ``"max"`` or ``"min"``, the natural sense of the problem.
        event_ndim: number of dims of one instance's ``theta`` (after the batch dim).
        theta_layout: human-readable layout of the argument for error messages, e.g. ``"[B, n]"``.
        device_native: ``True`` when ``solve_torch`` runs on any device (no host round trip, no worker pool).
        min_cost: the natural argument must be ``>=`` this (e.g. 0 for Dijkstra); ``None`` = no bound.
        arg_name: the argument's name in error messages.
        shift_invariant: ``True`` when every feasible ``y`` has the same ``sum(y)``, so adding a constant to an
            instance's argument keeps its optimum (the layer's ``Shift()`` guard relies on it).

    Example (a minimum spanning tree with networkx; ``sense="min"``: edge weights are costs)::

        >>> import networkx as nx, numpy as np, torch
        >>> class SpanningTree(Solver):
        ...     sense = "min"
        ...     theta_layout = "[B, m]"
        ...     def __init__(self, edges):
        ...         self.edges = [tuple(e) for e in edges]
        ...     def event_shape(self):
        ...         return (len(self.edges),)
        ...     def solve_instance(self, w):  # w [m] float64 -> y [m]
        ...         g = nx.Graph()
        ...         g.add_weighted_edges_from((u, v, float(x)) for (u, v), x in zip(self.edges, w))
        ...         tree = {frozenset(e) for e in nx.minimum_spanning_edges(g, data=False)}
        ...         return [frozenset(e) in tree for e in self.edges]
        >>> solver = SpanningTree([(0, 1), (1, 2), (0, 2)])
        >>> solver.solve(torch.tensor([[1.0, 2.0, 3.0]]))
        tensor([[1., 1., 0.]])
        >>> solver
        SpanningTree(edges=[(0, 1), (1, 2), (0, 2)])
    """

    sense: ClassVar[Sense] = "max"
    event_ndim: ClassVar[int] = 1
    theta_layout: ClassVar[str] = "[B, n]"
    device_native: ClassVar[bool] = False
    min_cost: ClassVar[float | None] = None
    arg_name: ClassVar[str] = "theta"
    shift_invariant: ClassVar[bool] = False

    # resolved once per class by __init_subclass__: (kind, function) of the host kernel with and without the
    # class's public ``solve_numpy`` hook, and the torch kernel
    _host_kernel: ClassVar[tuple[str | None, Any]] = (None, None)
    _inherited_kernel: ClassVar[tuple[str | None, Any]] = (None, None)
    _torch_kernel: ClassVar[Any] = None
    _inherited_torch_kernel: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_init(cls.__dict__["__init__"])  # type: ignore[method-assign]
        hook = cls.__dict__.get("solve_numpy")
        if hook is not None and not hasattr(hook, _HOOK_MARK):
            cls.solve_numpy = _checked_solve_numpy(hook)  # type: ignore[method-assign]
        cls._host_kernel = _resolve_host(cls, public=True)
        cls._inherited_kernel = _resolve_host(cls, public=False)
        cls._torch_kernel = _resolve_torch(cls, public=True)
        cls._inherited_torch_kernel = _resolve_torch(cls, public=False)

    # ----------------------------------------------------------------- description
    def event_shape(self) -> tuple[int | None, ...]:
        """Expected per-instance shape ``E`` of ``theta`` (``None`` where any size is accepted)."""
        return (None,) * self.event_ndim

    def output_shape(self, theta_event_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-instance shape ``Y`` of ``y`` for a per-instance shape ``E`` of ``theta`` (default: ``Y = E``)."""
        return tuple(theta_event_shape)

    def spec(self) -> SolverSpec:
        """Picklable recipe that rebuilds this solver (see :class:`SolverSpec`): the class's import path and the
        arguments its constructor was called with.

        Raises :class:`RecipeError` when the class cannot be imported by a worker (defined inside a function or
        in an interactive session) or, for solvers that declare ``_spec_kwargs`` themselves (the built-ins), when
        that dict misses an argument the constructor was called with. Override it (returning
        :meth:`SolverSpec.of`) only if your constructor's arguments cannot be shipped as they are.
        """
        cls = type(self)
        path = _import_path(cls)
        declared = self.__dict__.get("_spec_kwargs")
        if declared is not None:
            call = self.__dict__.get("_init_call")
            missing = sorted(set(call.named) - set(declared)) if call is not None else []
            if missing:
                raise RecipeError(f"{cls.__name__}._spec_kwargs misses the constructor argument(s) {missing}: "
                                  "a solver rebuilt from spec() would differ; drop _spec_kwargs (arguments are "
                                  "recorded automatically) or add them")
            return SolverSpec(path, dict(declared))
        call = self.__dict__.get("_init_call")
        if call is None:
            if dataclasses.is_dataclass(self):  # its generated __init__ came after the class was created
                return SolverSpec(path, {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init})
            return SolverSpec(path, {})
        return SolverSpec(path, dict(call.kwargs), tuple(call.args))

    def __repr__(self) -> str:
        try:
            declared = self.__dict__.get("_spec_kwargs")
            call = self.__dict__.get("_init_call")
            items = declared if declared is not None else (call.named if call is not None else {})
            args = ", ".join(f"{k}={_short(v)}" for k, v in items.items())
            return f"{type(self).__name__}({args})"
        except Exception:  # noqa: BLE001 -- repr never raises
            return f"<{type(self).__name__} solver>"

    # ----------------------------------------------------------------- validation
    def validate(self, theta: torch.Tensor | np.ndarray) -> None:
        """Shape, finiteness and domain checks of the natural argument; raises ``ValueError`` naming it.

        Override to add domain checks (call ``super().validate(theta)`` first); ``theta`` is a ``float64`` numpy
        array on the host path or a floating tensor on the device-native path.
        """
        check_event_shape(theta, self.event_shape(), self.arg_name, self.theta_layout)
        check_finite(theta, self.arg_name)
        if self.min_cost is not None:
            shifted = theta - self.min_cost if self.min_cost != 0 else theta
            check_nonnegative(shifted, self.arg_name, f"{type(self).__name__} needs entries >= {self.min_cost}")

    # ----------------------------------------------------------------- entry points
    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        """Solve every instance of ``theta [B, *E]`` in the solver's natural sense -> ``y [B, *Y]``.

        The result is on ``theta``'s device with ``theta``'s dtype and is not part of any autograd graph.
        ``float16``/``bfloat16`` are solved in ``float64`` (host kernels) or ``float32`` (device-native kernels).
        Bad input (type, dtype, shape, NaN/inf, domain) raises ``ValueError`` naming the argument; an instance
        without an optimal solution raises :class:`InstanceError`.
        """
        theta = check_tensor(theta, self.arg_name, self.theta_layout)
        if self.device_native:
            work = theta if theta.dtype in (torch.float32, torch.float64) else theta.float()
            self.validate(work)
            with torch.no_grad():
                y = self._run_torch(work)
            return y.to(theta.dtype)
        # host kernels: validate the numpy view (zero-copy for float64 on the CPU; numpy's single-threaded
        # reductions are far cheaper than torch's thread pool for these small checks)
        arr = host_float64(theta)
        self.validate(arr)
        y = self._run_numpy(arr)
        return host_to_tensor(y, theta.device, theta.dtype)

    def solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        """Validated CPU entry on a ``float64`` array ``[B, *E]`` -> ``[B, *Y]`` (what worker processes call).

        As a hook (override it in a subclass), it receives a validated ``float64`` array ``[B, *E]`` and returns
        the batch of solutions ``[B, *Y]``; the base class wraps it so that every call still validates the input
        and checks the output. Not overridden, it runs whichever hook the class implements.
        """
        theta = _host_input(theta, self.arg_name, self.theta_layout)
        self.validate(theta)
        return self._run_numpy(theta, inherited=True)

    def maximize(self, theta: torch.Tensor) -> torch.Tensor:
        """``argmax_y <theta, y>`` whatever the natural sense: flips the sign once for ``sense == "min"``."""
        theta = check_tensor(theta, self.arg_name, self.theta_layout)
        return self.solve(torch.neg(theta) if self.sense == "min" else theta)

    # ----------------------------------------------------------------- hooks (documented defaults)
    def solve_instance(self, theta_b: np.ndarray) -> np.ndarray:
        """Hook: solve one instance ``theta_b [*E]`` (``float64``, validated) -> ``y_b [*Y]`` (any real array).

        Implement this, :meth:`solve_numpy` or :meth:`solve_torch`. The base class loops over the batch, stacks
        the answers and checks their shape and finiteness.
        """
        raise NotImplementedError(_no_hook_message(type(self)))

    def solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        """Hook: solve the batch ``theta [B, *E]`` given as a torch tensor -> ``y [B, *Y]``.

        With ``device_native = True`` this is what :meth:`solve` calls on the input's device (``float32`` or
        ``float64``; half precision is widened to ``float32`` first) and executors never send the solver to
        workers. Not overridden, it runs the host kernel and returns a tensor on ``theta``'s device.
        """
        fn = type(self)._inherited_torch_kernel  # (a subclass's own solve_torch may call this through super())
        if fn is not None:
            return fn(self, theta)
        y = self._run_numpy(host_float64(theta.detach()), torch_fallback=False)
        return host_to_tensor(y, theta.device, theta.dtype)

    # aliases of the hooks under their former private names (the built-in solvers implement these)
    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        return self._run_numpy(np.asarray(theta, dtype=np.float64))

    def _solve_torch(self, theta: torch.Tensor) -> torch.Tensor:
        return self.solve_torch(theta)

    # ----------------------------------------------------------------- kernels (validated input)
    def _run_numpy(self, theta: np.ndarray, inherited: bool = False, torch_fallback: bool = True) -> np.ndarray:
        """The host kernel on a validated ``float64`` array ``[B, *E]``, its output checked -> ``float64 [B, *Y]``.

        ``inherited``: skip public ``solve_numpy`` hooks (the base ``solve_numpy``, reached through ``super()``
        from such a hook, must not call it back); ``torch_fallback=False``: never run the torch hook (the base
        ``solve_torch`` must not call a ``solve_torch`` hook back)."""
        cls = type(self)
        if theta.shape[0] == 0:  # nothing to solve: no hook call
            return np.zeros((0, *self.output_shape(tuple(theta.shape[1:]))))
        kind, fn = cls._inherited_kernel if inherited else cls._host_kernel
        if kind is None:
            if cls._torch_kernel is None or not torch_fallback:
                raise NotImplementedError(_no_hook_message(cls))
            kind, fn = "torch", cls._torch_kernel
        if kind == "instance":
            return self._stack_instances(theta, fn)
        if kind == "torch":
            with torch.no_grad():
                y = fn(self, torch.from_numpy(theta))
            where = f"{type(self).__name__}.solve_torch"
        else:
            y = fn(self, theta)
            where = f"{type(self).__name__}.solve_numpy"
        return self._check_output(theta, y, where)

    def _run_torch(self, theta: torch.Tensor) -> torch.Tensor:
        """The torch kernel of a device-native solver on a validated tensor; output shape checked."""
        fn = type(self)._torch_kernel
        if fn is None:
            raise NotImplementedError(f"{type(self).__name__} sets device_native = True but implements no "
                                      "solve_torch(theta) hook")
        if theta.shape[0] == 0:  # nothing to solve: no hook call
            return theta.new_zeros((0, *self.output_shape(tuple(theta.shape[1:]))))
        y = fn(self, theta)
        where = f"{type(self).__name__}.solve_torch"
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(self._check_output(theta.detach().cpu().double().numpy(), y, where),
                                device=theta.device)
        expected = (theta.shape[0], *self.output_shape(tuple(theta.shape[1:])))
        if tuple(y.shape) != expected:
            raise ValueError(f"{where} returned shape {tuple(y.shape)} for {self.arg_name} of shape "
                             f"{tuple(theta.shape)}; expected {expected} ([B, *output_shape(E)])")
        if y.is_complex():
            raise ValueError(f"{where} must return real values; got dtype {y.dtype}")
        if y.is_floating_point() and not _builtin(fn):  # (the built-in kernels cannot return NaN: no device sync)
            finite = torch.isfinite(y).flatten(1).all(1)  # [B]
            if not bool(finite.all()):
                raise InstanceError(type(self).__name__, int((~finite).nonzero()[0, 0]), "NON_FINITE_OUTPUT",
                                    f"{where} returned NaN or inf; a solution must be finite")
        return y

    def _stack_instances(self, theta: np.ndarray, fn: Any) -> np.ndarray:
        out_shape = tuple(self.output_shape(tuple(theta.shape[1:])))
        out = np.empty((theta.shape[0], *out_shape), dtype=np.float64)  # [B, *Y]
        where = f"{type(self).__name__}.solve_instance"
        for b in range(theta.shape[0]):
            yb = _as_real_array(fn(self, theta[b]), where)
            if yb.shape != out_shape:
                raise ValueError(f"{where} returned shape {yb.shape} for instance {b} of event shape "
                                 f"{tuple(theta.shape[1:])}; expected {out_shape} (output_shape(E))")
            if not np.isfinite(yb).all():
                raise InstanceError(type(self).__name__, b, "NON_FINITE_OUTPUT",
                                    f"{where} returned NaN or inf; a solution must be finite")
            out[b] = yb
        return out

    def _check_output(self, theta: np.ndarray, y: Any, where: str) -> np.ndarray:
        """``y`` as a ``float64`` array ``[B, *output_shape(E)]`` with finite entries, or a clear error."""
        y = _as_real_array(y, where)
        expected = (theta.shape[0], *self.output_shape(tuple(theta.shape[1:])))
        if y.shape != expected:
            raise ValueError(f"{where} returned shape {y.shape} for {self.arg_name} of shape {theta.shape}; "
                             f"expected {expected} ([B, *output_shape(E)])")
        finite = np.isfinite(y)
        if not finite.all():
            b = int(np.flatnonzero(~finite.reshape(len(y), -1).all(1))[0])
            raise InstanceError(type(self).__name__, b, "NON_FINITE_OUTPUT",
                                f"{where} returned NaN or inf; a solution must be finite")
        if np.may_share_memory(y, theta):  # a hook returning (a view of) its input: never alias the caller's tensor
            return y.copy()
        return np.ascontiguousarray(y)

    # ----------------------------------------------------------------- helpers
    def objective(self, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``<theta, y>`` per instance -> ``[B]`` (in whatever sense ``theta`` is given).

        Solvers whose ``y`` has another shape than ``theta`` (e.g. a path over edges) override this.
        """
        return (theta * y).flatten(1).sum(1)  # [B, prod(E)] -> [B]

    def is_feasible(self, y: np.ndarray) -> np.ndarray:
        """Per-instance feasibility of candidate solutions ``y [B, *Y]`` -> bool ``[B]`` (None: unknown)."""
        return None  # type: ignore[return-value]


def verified_spec(solver: Solver) -> tuple[SolverSpec, bytes]:
    """``solver.spec()`` and its pickled bytes, checked to rebuild an equal solver; :class:`RecipeError` otherwise.

    What pool executors run once per solver before sending it to worker processes: the recipe must pickle (its
    arguments are named when one does not), the class must be importable here by its path, and the solver
    rebuilt from the unpickled recipe must have the same class and, for recorded recipes, the same public
    attributes (a solver modified after construction is caught here instead of giving other results in the
    workers). Hand-written recipes (``_spec_kwargs``, the built-in solvers) are checked by :meth:`Solver.spec`
    to cover every argument the constructor was called with.
    """
    name = type(solver).__name__
    spec = solver.spec()
    _check_interactive(spec, name)
    try:
        blob = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 -- pickling errors have many types
        raise RecipeError(f"{name}'s recipe does not pickle: {_unpicklable(spec)} ({type(exc).__name__}: {exc}). "
                          "Worker processes receive constructor arguments by pickle: functions and classes must "
                          "be defined with def/class at module level of an importable module (no lambda, no "
                          "closure), other arguments must be picklable; or use Inline()/Threads(), which run the "
                          "solver as given") from exc
    try:
        rebuilt = pickle.loads(blob).build()
    except RecipeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise RecipeError(f"{name} cannot be rebuilt from its recipe {spec.cls_path}(**{sorted(spec.kwargs)}): "
                          f"{type(exc).__name__}: {exc}") from exc
    if type(rebuilt) is not type(solver):
        raise RecipeError(f"{name}'s recipe rebuilds a {type(rebuilt).__qualname__} from {spec.cls_path!r}, not the "
                          "class of this solver (was the class redefined, e.g. in a notebook?); re-create the "
                          "solver or define the class in a module")
    if "_spec_kwargs" in vars(solver):
        return spec, blob  # a hand-written recipe (the built-ins): spec() checked it covers the constructor's call
    for attr, value in vars(solver).items():
        if attr.startswith("_") or attr not in vars(rebuilt):
            continue
        if not _same(value, vars(rebuilt)[attr]):
            raise RecipeError(f"{name} rebuilt from its recipe differs in attribute {attr!r} "
                              f"({_short(value)} here, {_short(vars(rebuilt)[attr])} rebuilt): the recipe holds "
                              "the constructor's arguments only, so a solver must not be modified after "
                              "construction; create a new solver with the new value")
    return spec, blob


class ThreadLocalBackend:
    """Mixin of solvers that keep live back-end objects (OR-Tools models) per thread in ``self._local``.

    Such objects cannot be pickled and must not be shared between threads: ``self._local`` is a fresh
    :class:`threading.local` after construction and after unpickling (``copy``, process pools), so every thread
    and every process builds its own on first use. :class:`~discreteopt.executors.Threads` calls one solver
    object from several threads at once; a solver with mutable per-call state keeps it this way.
    """

    def _init_local(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_local()


# ===================================================================== class machinery
def _recording_init(init: Any) -> Any:
    """Wrap a subclass's ``__init__`` so the outermost call records its arguments (``self._init_call``)."""
    try:
        sig = inspect.signature(init)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        sig = None

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        d = getattr(self, "__dict__", None)
        if d is not None and "_init_call" not in d:  # outermost constructor only (super().__init__ skips)
            d["_init_call"] = _record(sig, self, args, kwargs)
        init(self, *args, **kwargs)

    return __init__


def _record(sig: inspect.Signature | None, self: Any, args: tuple, kwargs: dict) -> _Call:
    if sig is None:
        return _Call(tuple(args), dict(kwargs), {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs})
    try:
        bound = sig.bind(self, *args, **kwargs)
    except TypeError:  # the constructor itself will raise the TypeError
        return _Call(tuple(args), dict(kwargs), dict(kwargs))
    params = list(sig.parameters.values())[1:]
    P = inspect.Parameter
    varargs = any(p.kind is P.VAR_POSITIONAL and bound.arguments.get(p.name) for p in params)
    pos: list[Any] = []
    kw: dict[str, Any] = {}
    named: dict[str, Any] = {}
    for p in params:
        if p.name not in bound.arguments:
            continue
        v = bound.arguments[p.name]
        if p.kind is P.VAR_POSITIONAL:
            pos.extend(v)
            named.update({f"{p.name}[{i}]": a for i, a in enumerate(v)})
        elif p.kind is P.VAR_KEYWORD:
            kw.update(v)
            named.update(v)
        elif p.kind is P.POSITIONAL_ONLY or (p.kind is P.POSITIONAL_OR_KEYWORD and varargs):
            pos.append(v)
            named[p.name] = v
        else:
            kw[p.name] = v
            named[p.name] = v
    return _Call(tuple(pos), kw, named)


def _checked_solve_numpy(hook: Any) -> Any:
    """Wrap a subclass's ``solve_numpy`` hook: validate the input, run the hook, check the output."""

    @functools.wraps(hook)
    def solve_numpy(self, theta):
        theta = _host_input(theta, self.arg_name, self.theta_layout)
        self.validate(theta)
        return self._check_output(theta, hook(self, theta), f"{type(self).__name__}.solve_numpy")

    setattr(solve_numpy, _HOOK_MARK, hook)
    return solve_numpy


def _resolve_host(cls: type, public: bool) -> tuple[str | None, Any]:
    """The most derived numpy hook of ``cls`` (``public=False``: ignoring public ``solve_numpy`` hooks)."""
    for klass in cls.__mro__:
        if klass is Solver:
            break
        d = klass.__dict__
        for name in _NUMPY_HOOKS:
            if name not in d or (name == "solve_numpy" and not public):
                continue
            fn = d[name]
            if name == "solve_instance":
                return "instance", fn
            return "numpy", getattr(fn, _HOOK_MARK, fn)
    return None, None


def _resolve_torch(cls: type, public: bool) -> Any:
    """The most derived torch hook of ``cls`` (``public=False``: ignoring public ``solve_torch`` hooks)."""
    for klass in cls.__mro__:
        if klass is Solver:
            break
        for name in _TORCH_HOOKS:
            if name in klass.__dict__ and (public or name != "solve_torch"):
                return klass.__dict__[name]
    return None


def _builtin(fn: Any) -> bool:
    """True for the torch kernels of the built-in solvers (not ``from_function``'s, which calls user code)."""
    module = getattr(fn, "__module__", "") or ""
    return module.startswith("discreteopt.solvers.") and module != "discreteopt.solvers.function"


def _no_hook_message(cls: type) -> str:
    return (f"{cls.__name__} implements no solver hook: define solve_instance(theta_b) (one float64 instance), "
            "solve_numpy(theta) (a float64 batch) or solve_torch(theta) (a torch batch)")


# ===================================================================== arrays
def _host_input(theta: Any, name: str, layout: str) -> np.ndarray:
    """The argument of the numpy entry point as a ``float64`` array (tensors go through the tensor checks)."""
    if isinstance(theta, torch.Tensor):
        return host_float64(check_tensor(theta, name, layout))
    arr = np.asarray(theta)
    if arr.dtype.kind != "f":
        raise ValueError(f"{name} must be a floating-point array of shape {layout}; got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _as_real_array(y: Any, where: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().resolve_neg().resolve_conj().cpu()
        if y.dtype in (torch.float16, torch.bfloat16):
            y = y.float()
        y = y.numpy()
    try:
        arr = np.asarray(y)
    except Exception as exc:  # noqa: BLE001 -- ragged lists etc.
        raise ValueError(f"{where} must return an array of solutions; got {type(y).__name__} ({exc})") from exc
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where} must return a real (bool, integer or float) array; got dtype {arr.dtype} "
                         f"from {type(y).__name__}")
    return arr.astype(np.float64, copy=False)


# ===================================================================== recipes
def _import_path(cls: type) -> str:
    if "<locals>" in cls.__qualname__:
        raise RecipeError(f"{cls.__name__} is defined inside a function ({cls.__module__}.{cls.__qualname__}), so "
                          "worker processes cannot import it to rebuild the solver: define the class at module "
                          "level of an importable module, or use Inline()/Threads(), which run the solver as given")
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_interactive(spec: SolverSpec, name: str) -> None:
    """Objects defined in an interactive ``__main__`` (no file) pickle by name but cannot be imported by workers."""
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__file__", None):
        return
    culprits = [spec.cls_path] if spec.cls_path.startswith("__main__.") else []
    for v in (*spec.args, *spec.kwargs.values()):
        if getattr(v, "__module__", None) == "__main__" and (inspect.isfunction(v) or inspect.isclass(v)):
            culprits.append(f"__main__.{v.__qualname__}")
    if culprits:
        raise RecipeError(f"{name}'s recipe refers to {culprits}, defined in an interactive session: worker "
                          "processes cannot import them; move them to a module (a .py file on sys.path), or use "
                          "Inline()/Threads(), which run the solver as given")


def _unpicklable(spec: SolverSpec) -> str:
    bad = []
    for k, v in [*((f"args[{i}]", a) for i, a in enumerate(spec.args)), *spec.kwargs.items()]:
        try:
            pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001
            bad.append(f"{k}={_short(v)}")
    return f"constructor argument(s) {', '.join(bad)}" if bad else "its arguments"


def _same(a: Any, b: Any) -> bool:
    """Equality of attribute values for the recipe check (arrays, tensors, containers, then pickled bytes)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a and b != b:  # NaN == NaN here
        return True
    if type(a).__eq__ is not object.__eq__:
        try:
            eq = a == b
            if isinstance(eq, (bool, np.bool_)):
                return bool(eq)
        except Exception:  # noqa: BLE001 -- fall through to the pickled comparison
            pass
    try:
        return pickle.dumps(a) == pickle.dumps(b)
    except Exception:  # noqa: BLE001 -- not comparable: nothing to check
        return True


def _short(v: Any) -> str:
    try:
        if isinstance(v, np.ndarray):
            return f"array{tuple(v.shape)}"
        if isinstance(v, torch.Tensor):
            return f"tensor{tuple(v.shape)}"
        if isinstance(v, (list, tuple)) and len(v) > 6 or isinstance(v, (list, tuple, dict)) and len(repr(v)) > 60:
            return f"<{type(v).__name__} of {len(v)}>"
        if inspect.isfunction(v) or inspect.isbuiltin(v) or inspect.isclass(v):
            return getattr(v, "__qualname__", repr(v))
        r = repr(v)
        return r if len(r) <= 60 else f"<{type(v).__name__}>"
    except Exception:  # noqa: BLE001 -- a user object whose repr raises
        return f"<{type(v).__name__}>"
