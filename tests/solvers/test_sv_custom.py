"""Bringing your own solver: ``from_function``, subclasses with public hooks only, the recipe worker processes
rebuild (verified, with clear errors), in-process executors running the object as given, the dtype policy, and
``check_solver`` with the user's own brute force. Every docstring example of the extension API runs."""

from __future__ import annotations

import dataclasses
import doctest
import functools
import itertools
import pickle

import numpy as np
import pytest
import torch

import discreteopt as do
from discreteopt._validation import validate_input
from discreteopt.executors import Auto, Inline, Processes, Threads
from discreteopt.solvers import (
    FunctionSolver,
    GridShortestPath,
    InstanceError,
    Knapsack,
    RecipeError,
    Solver,
    SolverSpec,
    TopK,
    from_function,
)
from discreteopt.solvers.base import verified_spec
from discreteopt.testing import check_solver, enumerate_solutions

pytestmark = pytest.mark.timeout(300)


# ===================================================================== module-level solvers (importable by workers)
def top2_instance(theta_b: np.ndarray) -> np.ndarray:
    """One instance: indicator of the two largest entries (ties to the lower index), as a bool array."""
    return np.isin(np.arange(theta_b.size), np.argsort(-theta_b, kind="stable")[:2])


def top2_batch(theta: np.ndarray) -> np.ndarray:
    """The whole batch ``[B, n]`` at once (integer result: converted by the base class)."""
    idx = np.argsort(-theta, axis=1, kind="stable")[:, :2]
    y = np.zeros(theta.shape, dtype=np.int64)
    np.put_along_axis(y, idx, 1, axis=1)
    return y


def top2_torch(theta: torch.Tensor) -> torch.Tensor:
    idx = torch.sort(theta, dim=1, descending=True, stable=True).indices[:, :2]
    return torch.zeros_like(theta).scatter_(1, idx, 1.0)


def all_pairs(theta_b: np.ndarray) -> np.ndarray:
    """Brute force of one instance: every 0/1 vector with two ones ``[M, n]``."""
    n = theta_b.shape[0]
    return np.array([np.isin(np.arange(n), c) for c in itertools.combinations(range(n), 2)], dtype=np.float64)


def cheapest_cell(theta_b: np.ndarray) -> np.ndarray:
    """Grid instance ``[H, W]`` -> one-hot of the smallest cost (a min-sense solver over 2-D instances)."""
    y = np.zeros_like(theta_b)
    y.flat[int(np.argmin(theta_b))] = 1.0
    return y


class TopSum(Solver):
    """Public hooks only: the ``k`` largest entries of ``theta + offset`` (``offset`` must not change the answer
    of a shift-invariant problem, so ``offset`` really is a constructor argument the recipe must carry)."""

    shift_invariant = True

    def __init__(self, k: int, *, offset: float = 0.0):
        self.k = int(k)
        self.offset = float(offset)

    def solve_numpy(self, theta):
        idx = np.argsort(-(theta + self.offset), axis=1, kind="stable")[:, : self.k]
        y = np.zeros_like(theta)
        np.put_along_axis(y, idx, 1.0, axis=1)
        return y


class PerInstance(Solver):
    """``solve_instance`` only, no ``__init__`` at all."""

    def solve_instance(self, theta_b):
        return np.arange(theta_b.size) == np.argmax(theta_b)


class TorchOnly(Solver):
    """``solve_torch`` only, device-native; bool results."""

    device_native = True

    def __init__(self, k: int = 1):
        self.k = k

    def solve_torch(self, theta):
        return theta >= torch.topk(theta, self.k, dim=1).values[:, -1:]


class Weighted(Solver):
    """Recipe with positional-only and variadic arguments."""

    def __init__(self, scale, /, *extra, name="w", **options):
        self.scale, self.extra, self.name, self.options = scale, extra, name, options

    def solve_instance(self, theta_b):
        return np.arange(theta_b.size) == np.argmax(theta_b * self.scale)


class HalfRecipe(Solver):
    """Old style: declares ``_spec_kwargs`` itself, but forgets ``offset``."""

    def __init__(self, k, offset=0.0):
        self.k, self.offset = k, offset
        self._spec_kwargs = {"k": k}

    def _solve_numpy(self, theta):  # the former private hook still works
        return TopSum(self.k, offset=self.offset).solve_numpy(theta)


@dataclasses.dataclass
class DataTop(Solver):
    """A dataclass solver: its generated ``__init__`` is not wrapped, the recipe comes from its fields."""

    k: int = 1

    def solve_numpy(self, theta):
        return TopK(self.k).solve_numpy(theta)


class MyGrid(GridShortestPath):
    """A user's subclass of a built-in: its public hook post-processes the built-in's answer via super()."""

    def solve_numpy(self, theta):
        return super().solve_numpy(theta) * 1.0


@pytest.fixture(scope="module")
def pool():
    with Processes(2, start_method="spawn") as ex:
        yield ex


# ===================================================================== from_function
@pytest.mark.parametrize("kind", ["instance", "batched", "torch", "torch-instance"])
def test_from_function_passes_check_solver_with_the_users_brute_force(kind):
    fn, kw = {"instance": (top2_instance, {}), "batched": (top2_batch, {"batched": True}),
              "torch": (top2_torch, {"batched": True, "backend": "torch"}),
              "torch-instance": (lambda t: torch.zeros_like(t).scatter_(
                  0, torch.sort(t, descending=True, stable=True).indices[:2], 1.0), {"backend": "torch"})}[kind]
    solver = from_function(fn, **kw)
    theta = torch.randn(6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theta[-1] = 0.5  # every pair ties: the lower indices win
    report = check_solver(solver, theta, solutions=all_pairs)
    assert report["checked_optimal"] == 6
    assert report["recipe"] == "ok" if kind != "torch-instance" else report["recipe"].startswith("in-process")
    assert solver.device_native == kind.startswith("torch")
    # an oracle returning the optimal value, or an optimal solution, works as well
    assert check_solver(solver, theta, oracle=lambda t: np.sort(t)[-2:].sum())["checked_optimal"] == 6
    assert check_solver(solver, theta, oracle=top2_instance)["checked_optimal"] == 6


def test_check_solver_catches_a_wrong_function_against_the_users_brute_force():
    wrong = from_function(lambda t: np.arange(t.size) < 2)  # the first two, whatever theta says
    theta = torch.tensor([[0.0, 0.0, 5.0, 1.0]], dtype=torch.float64)
    with pytest.raises(AssertionError, match="optimum"):
        check_solver(wrong, theta, solutions=all_pairs)
    with pytest.raises(AssertionError, match="optimum"):
        check_solver(wrong, theta, oracle=top2_instance)


def test_from_function_sense_min_event_shape_and_output_shape():
    solver = from_function(cheapest_cell, sense="min", event_shape=(None, None))
    costs = torch.rand(4, 3, 5, generator=torch.Generator().manual_seed(0)) + 0.1
    y = solver.solve(costs)
    assert y.shape == (4, 3, 5) and torch.equal(y.flatten(1).argmax(1), costs.flatten(1).argmin(1))
    assert torch.equal(solver.maximize(-costs), y)  # the sign is flipped once
    layer = do.DiscreteLayer(solver, do.estimators.IMLE(lam=1.0), seed=0)
    layer.eval()
    assert torch.equal(layer(costs), y)  # the layer sees the min sense and flips once as well
    with pytest.raises(ValueError, match=r"theta must have shape \[B, d0, d1\] \(3 dims\)"):
        solver.solve(torch.rand(4, 15))
    fixed = from_function(cheapest_cell, sense="min", event_shape=(3, 5))
    with pytest.raises(ValueError, match=r"event shape \(3, 5\)"):
        fixed.solve(torch.rand(2, 3, 4))
    # a solution of another shape: output_shape as a tuple or a function of E
    pairs = from_function(lambda t: np.stack([t == t.max(), t == t.min()], axis=1), output_shape=lambda e: (e[0], 2))
    assert pairs.solve(torch.tensor([[1.0, 3.0, 2.0]])).tolist() == [[[0, 1], [1, 0], [0, 0]]]
    fixed_out = from_function(lambda t: [t.argmax() == 0, True], output_shape=(2,))
    assert fixed_out.solve(torch.tensor([[1.0, 0.0, 0.0]])).tolist() == [[1.0, 1.0]]


def test_from_function_bad_outputs_get_clear_errors():
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"from_function\(.*<lambda>\) returned shape \(3,\) for instance 0"):
        from_function(lambda t: t[:3] > 0).solve(x)
    with pytest.raises(ValueError, match=r"returned shape \(5, 3\).*expected \(5, 4\)"):
        from_function(lambda t: t[:, :3] > 0, batched=True).solve(x)
    with pytest.raises(ValueError, match="must return a real"):
        from_function(lambda t: np.array(["a"] * 4)).solve(x)
    with pytest.raises(ValueError, match="not an array of solutions|must return a real"):
        from_function(lambda t: [1, [2, 3], 4, 5]).solve(x)

    def nan_at_3(theta):
        y = (theta == theta.max(1, keepdims=True)).astype(float)
        y[3, 0] = np.nan
        return y

    with pytest.raises(InstanceError, match="NON_FINITE_OUTPUT") as info:
        from_function(nan_at_3, batched=True).solve(x)
    assert info.value.index == 3
    with pytest.raises(InstanceError) as info:
        from_function(lambda t: np.full(4, np.nan) if t[0] == x[2, 0].item() else t > 0).solve(x)
    assert info.value.index == 2
    # under Threads the index is the one in the full batch (second chunk of two, local row 2)

    def nan_where_marked(theta):
        y = (theta == theta.max(1, keepdims=True)).astype(float)
        y[theta[:, 0] == 99.0] = np.nan
        return y

    marked = torch.randn(8, 4)
    marked[6, 0] = 99.0
    with Threads(2) as ex, pytest.raises(InstanceError) as info:
        ex.solve(from_function(nan_where_marked, batched=True), marked)
    assert info.value.index == 6


@pytest.mark.parametrize("kwargs, match", [
    ({"fn": 3}, "fn must be a callable"),
    ({"sense": "maximum"}, "sense must be 'max' or 'min'"),
    ({"batched": 1}, "batched must be True or False"),
    ({"backend": "jax"}, "backend must be 'numpy' or 'torch'"),
    ({"event_shape": ()}, "event_shape must be"),
    ({"event_shape": (3, 0)}, "event_shape must be"),
    ({"event_shape": (True,)}, "event_shape must be"),
    ({"output_shape": (2.5,)}, "output_shape must be"),
])
def test_from_function_arguments_are_checked(kwargs, match):
    kwargs = {"fn": top2_instance, **kwargs}
    with pytest.raises(ValueError, match=match):
        from_function(kwargs.pop("fn"), **kwargs)


# ===================================================================== the done criterion: same layer on a pool
def test_from_function_layer_gives_the_same_output_on_processes_as_inline(pool):
    theta = torch.randn(12, 6, generator=torch.Generator().manual_seed(3))
    out = []
    for executor in (Inline(), pool):
        layer = do.DiscreteLayer(from_function(top2_instance), do.estimators.IMLE(lam=2.0, samples=3),
                                 executor=executor, seed=7)
        w = theta.clone().requires_grad_(True)
        y = layer(w)
        (y * torch.arange(6.0)).sum().backward()
        out.append((y.detach(), w.grad))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert pool.stats.get("tasks", 1) > 0


def test_user_solvers_run_on_processes_like_inline(pool):
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(4))
    for solver in (TopSum(3, offset=2.0), PerInstance(), Weighted(2.0, 1, 2, name="v", flag=True),
                   from_function(top2_batch, batched=True), from_function(functools.partial(top2_instance))):
        assert torch.equal(pool.solve(solver, x), solver.solve(x)), solver
    g = torch.rand(5, 4, 4, generator=torch.Generator().manual_seed(5)) + 0.1
    assert torch.equal(pool.solve(MyGrid(), g), GridShortestPath().solve(g))


# ===================================================================== in-process executors, recipe errors
def _closure_solvers():
    k = 2

    class Local(Solver):  # defined inside a function: not importable by workers
        def solve_instance(self, theta_b):
            return np.isin(np.arange(theta_b.size), np.argsort(-theta_b, kind="stable")[:k])

    return {"lambda": from_function(lambda t: np.isin(np.arange(t.size), np.argsort(-t, kind="stable")[:k])),
            "local class": Local()}


@pytest.mark.parametrize("name", ["lambda", "local class"])
def test_closures_run_inline_and_on_threads_and_get_a_clear_error_on_processes(name, pool):
    solver = _closure_solvers()[name]
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(6))
    expected = TopK(2).solve(x)
    assert torch.equal(Inline().solve(solver, x), expected)
    with Threads(2) as ex:
        assert torch.equal(ex.solve(solver, x), expected)
    match = "cannot be pickled|does not pickle" if name == "lambda" else "defined inside a function"
    with pytest.raises(RecipeError, match=match) as info:
        pool.solve(solver, x)
    msg = str(info.value)
    assert "Processes and Ray" in msg and "Inline()/Threads()" in msg and "module level" in msg
    with pytest.raises(RecipeError, match=match):  # submit raises in the caller too, nothing is sent
        pool.submit(solver, x)
    # a layer on a pool fails the same clear way; Auto keeps such a solver inline instead of failing
    layer = do.DiscreteLayer(solver, do.estimators.IMLE(lam=1.0), executor=pool, seed=0)
    with pytest.raises(RecipeError):
        layer(x)
    auto = Auto(Threads(1), break_even=1000)
    assert torch.equal(auto.solve(solver, x), expected)
    auto.close()


def test_a_recipe_missing_an_argument_or_a_modified_solver_is_detected(pool):
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(8))
    with pytest.raises(RecipeError, match=r"_spec_kwargs misses the constructor argument\(s\) \['offset'\]"):
        pool.solve(HalfRecipe(2, offset=1.0), x)
    assert torch.equal(pool.solve(HalfRecipe(2), x), TopK(2).solve(x))  # nothing missing when not passed
    changed = TopSum(2)
    changed.k = 3  # modified after construction: the recipe would rebuild k=2
    with pytest.raises(RecipeError, match="differs in attribute 'k' \\(3 here, 2 rebuilt\\)"):
        pool.solve(changed, x)
    with Threads(2) as ex:  # in-process: the object as it is now
        assert torch.equal(ex.solve(changed, x), TopK(3).solve(x))


def test_recipe_round_trip_and_repr():
    w = Weighted(2.0, 1, 2, name="v", flag=True)
    spec = pickle.loads(pickle.dumps(w.spec()))
    assert spec == SolverSpec("test_sv_custom.Weighted", {"name": "v", "flag": True}, (2.0, 1, 2)) or \
        spec.cls_path.endswith("test_sv_custom.Weighted")
    rebuilt = spec.build()
    assert (rebuilt.scale, rebuilt.extra, rebuilt.name, rebuilt.options) == (2.0, (1, 2), "v", {"flag": True})
    assert repr(w) == "Weighted(scale=2.0, extra[0]=1, extra[1]=2, name='v', flag=True)"
    t = TopSum(3, offset=2.0)
    assert repr(t) == "TopSum(k=3, offset=2.0)" and repr(PerInstance()) == "PerInstance()"
    assert repr(from_function(top2_instance, sense="min")) == "from_function(top2_instance, sense='min')"
    assert vars(t.spec().build()) == {**vars(t)}  # same state, the recorded call included

    class BadRepr:
        def __repr__(self):
            raise RuntimeError("no repr")

    assert repr(TopSum(BadRepr.__init__ is not None, offset=1)).startswith("TopSum(")
    assert "<BadRepr>" in repr(Weighted(BadRepr()))
    with pytest.raises(RecipeError, match="defined inside a function"):
        _closure_solvers()["local class"].spec()


def test_dataclass_solvers_and_empty_batches():
    d = DataTop(3)
    spec, _ = verified_spec(d)
    assert spec.kwargs == {"k": 3} and spec.build() == d
    x = torch.randn(4, 6)
    with Threads(2) as ex:
        assert torch.equal(ex.solve(d, x), TopK(3).solve(x))
    # an empty batch never reaches a hook: the answer is [0, *Y]
    boom = from_function(lambda t: 1 / 0, output_shape=(2,))
    assert boom.solve(torch.zeros(0, 5)).shape == (0, 2)
    assert boom.solve_numpy(np.zeros((0, 5))).shape == (0, 2)
    assert TorchOnly().solve(torch.zeros(0, 3, dtype=torch.bfloat16)).dtype == torch.bfloat16


# ===================================================================== hooks
def test_subclasses_with_public_hooks_only_pass_check_solver():
    theta = torch.randn(5, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for solver, k in ((TopSum(2, offset=-1.0), 2), (PerInstance(), 1), (TorchOnly(2), 2)):
        sols = enumerate_solutions(TopK(k), (6,))
        assert check_solver(solver, theta, solutions=sols)["checked_optimal"] == 5
    # the numpy entry point validates for every hook (a worker calls it on chunks)
    for solver in (TopSum(2), PerInstance(), TorchOnly()):
        with pytest.raises(ValueError, match="theta must be finite"):
            solver.solve_numpy(np.array([[0.0, np.nan, 1.0]]))
        with pytest.raises(ValueError, match="theta must be a floating-point array"):
            solver.solve_numpy(np.array([[0, 1, 2]]))
    assert TorchOnly(1).solve_torch(torch.tensor([[1.0, 2.0]])).tolist() == [[False, True]]
    assert PerInstance().solve_torch(torch.tensor([[1.0, 2.0]])).tolist() == [[0.0, 1.0]]


class Offset5(TopSum):
    """Its constructor calls the parent's with other arguments: the recipe is the outermost call's."""

    def __init__(self, k):
        super().__init__(k, offset=5.0)


def test_the_recipe_records_the_outermost_constructor_call():
    spec, _ = verified_spec(Offset5(2))
    assert spec.kwargs == {"k": 2} and spec.args == ()
    assert type(spec.build()) is Offset5 and spec.build().offset == 5.0


def test_device_native_hooks_get_half_precision_widened_to_float32():
    seen = []

    class Probe(Solver):
        device_native = True

        def solve_torch(self, theta):
            seen.append(theta.dtype)
            return theta >= theta.max(1, keepdim=True).values

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        assert Probe().solve(torch.randn(3, 4).to(dtype)).dtype == dtype
    assert seen == [torch.float32, torch.float32, torch.float32, torch.float64]


def test_a_solver_without_hooks_says_which_to_implement():
    class Nothing(Solver):
        pass

    with pytest.raises(NotImplementedError, match="solve_instance.*solve_numpy.*solve_torch"):
        Nothing().solve(torch.randn(2, 3))


def test_a_subclass_of_a_built_in_uses_its_own_hook_and_super():
    g = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(10)) + 0.1
    assert torch.equal(MyGrid().solve(g), GridShortestPath().solve(g))  # super().solve_numpy: no recursion

    class FirstCell(GridShortestPath):  # the subclass's solve_instance wins over the inherited kernel
        def solve_instance(self, theta_b):
            y = np.zeros_like(theta_b)
            y[0, 0] = 1.0
            return y

    assert FirstCell().solve(g).sum().item() == 3.0


def test_hook_output_is_never_the_callers_tensor():
    ident = from_function(lambda t: t, batched=True)  # returns its own input
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    y = ident.solve(x)
    y += 1
    assert x.tolist() == [[0.0, 1.0]]


# ===================================================================== dtype policy
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_is_solved_in_a_wider_float_and_returned_in_its_dtype(half):
    gen = torch.Generator().manual_seed(11)
    theta = torch.randn(16, 8, generator=gen)
    costs = torch.rand(8, 5, 5, generator=gen) * 4 + 0.1
    cases = [(TopK(3), theta), (from_function(top2_instance), theta), (TopSum(2), theta), (TorchOnly(2), theta),
             (GridShortestPath(), costs), (GridShortestPath(backend="torch"), costs),
             (Knapsack([3, 1, 4, 1, 5, 9, 2, 6], 12), theta.abs())]
    for solver, x in cases:
        h = x.to(half)
        y = solver.solve(h)
        assert y.dtype == half, solver
        assert torch.equal(y.float(), solver.solve(h.float())), solver  # the same values, solved in float32
        m = solver.maximize(-h if solver.sense == "min" else h)
        assert m.dtype == half and torch.equal(m, y)


@pytest.mark.parametrize("bad, match", [
    (lambda x: x.int(), "floating dtype .*got torch.int32"),
    (lambda x: x > 0, "floating dtype .*got torch.bool"),
    (lambda x: x.to(torch.complex64).conj(), "floating dtype .*got torch.complex64"),
    (lambda x: x.to("meta"), "meta tensor"),
    (lambda x: x.to_sparse(), "dense tensor"),
    (lambda x: x.numpy(), "must be a torch.Tensor"),
])
def test_unsupported_inputs_get_a_value_error_naming_the_argument(bad, match):
    x = torch.rand(3, 4, 4) + 0.1
    for solver in (GridShortestPath(), from_function(cheapest_cell, sense="min", event_shape=(None, None))):
        name = solver.arg_name
        for call in (solver.solve, solver.maximize, lambda t, s=solver: validate_input(s, t, "theta"),
                     lambda t, s=solver: Threads(1).solve(s, t)):
            with pytest.raises(ValueError, match=match) as info:
                call(bad(x))
            assert name in str(info.value) or "theta" in str(info.value)


def test_negative_bit_views_are_solved_correctly():
    x = torch.rand(4, 5, generator=torch.Generator().manual_seed(12)) - 0.5
    neg = torch._neg_view(x)
    assert neg.is_neg()
    assert torch.equal(TopK(2).solve(neg), TopK(2).solve(-x))
    assert torch.equal(from_function(top2_instance).solve(neg), TopK(2).solve(-x))
    costs = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(13)) + 0.1
    assert torch.equal(GridShortestPath().solve(torch._neg_view(-costs)), GridShortestPath().solve(costs))
    validate_input(TopK(2), neg, "theta")  # no raw torch error
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="theta must be finite"):
        TopK(2).solve(torch._neg_view(bad))


# ===================================================================== testing helpers and docstrings
def test_enumerate_solutions_refuses_custom_solvers_clearly():
    with pytest.raises(ValueError, match="cannot enumerate PerInstance.*solutions=.*oracle="):
        enumerate_solutions(PerInstance(), (4,))
    with pytest.raises(ValueError, match="cannot enumerate FunctionSolver"):
        enumerate_solutions(from_function(top2_instance), (4,))
    with pytest.raises(ValueError, match="pass solutions or oracle, not both"):
        check_solver(PerInstance(), torch.randn(2, 3), solutions=np.eye(3), oracle=np.max)


def test_grid_enumeration_is_independent_of_the_solver_internals(monkeypatch):
    """The oracle reads only neighbourhood/source/target: breaking the solver's own offsets changes nothing."""
    solver = GridShortestPath(4)
    expected = enumerate_solutions(solver, (3, 3))
    monkeypatch.setattr(GridShortestPath, "_neighbour_offsets", lambda self: ((0, 1),))
    np.testing.assert_array_equal(enumerate_solutions(solver, (3, 3)), expected)
    # 12 simple rook paths corner to corner in a 3x3 grid; the two visiting every cell share one mask
    assert len(expected) == 11


@pytest.mark.parametrize("module", ["discreteopt.testing", "discreteopt.solvers.base", "discreteopt.solvers.function",
                                    "discreteopt.executors.base", "discreteopt.executors.threads"])
def test_docstring_examples_run(module):
    import importlib

    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_function_solver_is_exported():
    assert isinstance(from_function(top2_instance), FunctionSolver)
    assert do.solvers.from_function is from_function
