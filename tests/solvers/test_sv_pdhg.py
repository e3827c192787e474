"""Batched PDHG LP back-end (``ILP(backend="pdhg")``) against GLOP, shortest paths and its error contract."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from discreteopt.data.pyepo_shortest_path import generate_shortest_path
from discreteopt.solvers import ILP, Assignment, GraphShortestPath, InstanceError
from discreteopt.solvers.pdhg import PDHG, LinearProgram, flow_constraints

OBJ_TOL, FEAS_TOL = 1e-4, 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: torch's thread pool only adds contention on a shared machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------------------- random feasible bounded LPs
def random_lp(seed: int, n: int, m_ub: int, m_eq: int, kind: str):
    """A feasible bounded LP (a known interior point ``x_f``) with its box of kind ``box``/``nonneg``/``free``."""
    rng = np.random.default_rng(seed)
    x_f = rng.uniform(0.0, 1.0, n)
    if kind == "box":  # finite box, rows of any sign
        a_ub = rng.normal(size=(m_ub, n))
        bounds = (-rng.uniform(0.0, 2.0, n), rng.uniform(1.0, 3.0, n))
    elif kind == "nonneg":  # x >= 0 unbounded above, non-negative rows bound it (objective rewards size)
        a_ub = rng.uniform(0.0, 1.0, (m_ub, n)) + 0.05
        bounds = (0.0, None)
    else:  # free variables, boxed by explicit +-x rows
        a_ub = np.vstack([rng.normal(size=(m_ub, n)), np.eye(n), -np.eye(n)])
        bounds = (None, None)
    b_ub = a_ub @ x_f + rng.uniform(0.1, 1.0, a_ub.shape[0])
    a_eq = rng.normal(size=(m_eq, n)) if m_eq else None
    b_eq = a_eq @ x_f if m_eq else None
    return dict(A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds)


def theta_for(seed: int, batch: int, n: int, kind: str, sense: str) -> torch.Tensor:
    theta = torch.from_numpy(np.random.default_rng(seed + 1000).normal(size=(batch, n)))
    if kind == "nonneg":  # bounded direction only: reward (max) or negative cost (min) the size of x
        theta = theta.abs() if sense == "max" else -theta.abs()
    return theta


def assert_matches_glop(lp_args: dict, theta: torch.Tensor, sense: str, pdhg=None):
    ours = ILP(**lp_args, sense=sense, backend=pdhg or "pdhg")
    glop = ILP(**lp_args, sense=sense, backend="glop")
    x = ours.solve(theta)
    assert x.shape == theta.shape and x.dtype == theta.dtype
    ref = glop.solve(theta)
    obj, ref_obj = (theta * x).sum(1), (theta * ref).sum(1)
    rel = ((obj - ref_obj).abs() / (1 + ref_obj.abs())).max().item()
    assert rel <= OBJ_TOL, f"objective differs from GLOP by {rel:.2e} relative"
    assert ours.is_feasible(x.double().numpy(), tol=FEAS_TOL).all()
    return x


CASES = [  # (seed, n, m_ub, m_eq, kind, batch)
    (0, 5, 3, 0, "box", 1),
    (1, 12, 6, 2, "box", 7),
    (2, 20, 10, 4, "nonneg", 16),
    (3, 8, 3, 2, "free", 5),
    (4, 30, 15, 0, "nonneg", 3),
]


@pytest.mark.parametrize("sense", ["max", "min"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[4]}-n{c[1]}-ub{c[2]}-eq{c[3]}-B{c[5]}" for c in CASES])
def test_random_lps_match_glop(case, sense):
    seed, n, m_ub, m_eq, kind, batch = case
    args = random_lp(seed, n, m_ub, m_eq, kind)
    assert_matches_glop(args, theta_for(seed, batch, n, kind, sense), sense)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_random_lps_match_glop_long(seed):
    rng = np.random.default_rng(seed)
    kind = ("box", "nonneg", "free")[seed % 3]
    n = int(rng.integers(2, 60))
    m_ub, m_eq = int(rng.integers(1, 40)), int(rng.integers(0, min(n, 12)))
    sense = ("max", "min")[seed % 2]
    args = random_lp(seed, n, m_ub, m_eq, kind)
    assert_matches_glop(args, theta_for(seed, 32, n, kind, sense), sense)


def test_badly_scaled_rows_and_columns_still_match_glop():
    """Rows x 1e4 and columns x 1e-2: the preconditioner must undo it (a wrong unscaling fails feasibility)."""
    original = random_lp(7, 10, 6, 2, "box")
    rows, cols = np.logspace(0, 4, 6), np.logspace(-2, 0, 10)
    args = dict(original, A_ub=original["A_ub"] * rows[:, None] * cols[None, :], b_ub=original["b_ub"] * rows,
                A_eq=original["A_eq"] * cols[None, :],
                bounds=(original["bounds"][0] / cols, original["bounds"][1] / cols))
    theta = theta_for(7, 6, 10, "box", "max")
    x = ILP(**args, backend="pdhg").solve(theta)
    ref = ILP(**args, backend="glop").solve(theta)
    obj, ref_obj = (theta * x).sum(1), (theta * ref).sum(1)
    assert ((obj - ref_obj).abs() / (1 + ref_obj.abs())).max() <= OBJ_TOL
    # feasible for the well-scaled original (x_orig = cols * x): a wrong unscaling would break this
    assert ILP(**original, backend="glop").is_feasible(x.numpy() * cols, tol=FEAS_TOL).all()


def test_preconditioned_matrix_is_the_scaled_original():
    rng = np.random.default_rng(0)
    a_ub, a_eq = rng.normal(size=(4, 6)) * 100, rng.normal(size=(2, 6))
    lp = LinearProgram(A_ub=a_ub, b_ub=np.ones(4), A_eq=a_eq, b_eq=np.zeros(2), lb=0.0, ub=1.0)
    k = np.vstack([a_eq, -a_ub])
    expected = lp.row_scale.numpy()[:, None] * k * lp.col_scale.numpy()[None, :]
    np.testing.assert_allclose(lp.K.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(lp.q.numpy(), lp.row_scale.numpy() * np.concatenate([np.zeros(2), -np.ones(4)]))
    np.testing.assert_allclose(lp.ub.numpy(), 1.0 / lp.col_scale.numpy())
    assert np.abs(lp.K.numpy()).max() < np.abs(k).max()  # equilibrated: the 100x rows came down


def test_duals_certify_the_optimum():
    """Returned duals: ``y_ub >= 0``, dual objective = primal objective, complementary slackness."""
    args = random_lp(11, 10, 8, 3, "box")
    lp = LinearProgram(A_ub=args["A_ub"], b_ub=args["b_ub"], A_eq=args["A_eq"], b_eq=args["b_eq"],
                       lb=args["bounds"][0], ub=args["bounds"][1])
    c = torch.from_numpy(np.random.default_rng(3).normal(size=(4, 10)))
    res = PDHG(tol=1e-8).solve(lp, c)
    assert res.status == ["OPTIMAL"] * 4
    assert (res.y_ub >= 0).all()
    glop = ILP(**args, sense="min", backend="glop").solve(c)
    ref = (c * glop).sum(1)
    torch.testing.assert_close(res.dual_objective, ref, atol=1e-6, rtol=1e-6)
    slack = torch.from_numpy(args["b_ub"]) - res.x @ torch.from_numpy(args["A_ub"]).T  # [B, m_ub] >= 0
    assert (res.y_ub * slack).abs().max() < 1e-5
    assert (res.primal_residual <= 1e-8).all() and (res.dual_residual <= 1e-8).all() and (res.gap <= 1e-8).all()


def test_float32_meets_its_documented_accuracy():
    args = random_lp(5, 15, 8, 3, "box")
    theta = theta_for(5, 8, 15, "box", "max")
    solver = ILP(**args, backend=PDHG(dtype=torch.float32))
    x = solver.solve(theta.float())
    assert x.dtype == torch.float32
    ref = ILP(**args, backend="glop").solve(theta)
    obj, ref_obj = (theta * x.double()).sum(1), (theta * ref).sum(1)
    assert ((obj - ref_obj).abs() / (1 + ref_obj.abs())).max() <= 1e-3
    assert solver.is_feasible(x.double().numpy(), tol=1e-3).all()


def test_float32_input_on_cpu_is_solved_in_float64_by_default():
    args = random_lp(6, 10, 5, 0, "box")
    theta = theta_for(6, 4, 10, "box", "max")
    x32 = ILP(**args, backend="pdhg").solve(theta.float())
    x64 = ILP(**args, backend="pdhg").solve(theta.float().double())  # the same (rounded) objective in float64
    assert x32.dtype == torch.float32
    assert torch.equal(x32, x64.float())  # only the final cast differs


# ---------------------------------------------------------------------------- shortest path (PtO 5x5 grid)
def grid_lp(**pdhg):
    graph = GraphShortestPath.grid(5, 5)
    a_eq, b_eq = flow_constraints(graph.edges, graph.num_nodes, graph.source, graph.target)
    return graph, ILP(A_eq=a_eq, b_eq=b_eq, bounds=(0, 1), sense="min", backend=PDHG(**pdhg))


def pyepo_costs(n: int, seed: int = 0) -> torch.Tensor:
    data = generate_shortest_path(n, deg=4, noise_width=0.5, seed=seed)  # noise breaks PyEPO's tied arcs
    return torch.from_numpy(data.c.astype(np.float64))  # [n, 40]


def test_flow_constraints_of_the_5x5_grid():
    graph = GraphShortestPath.grid(5, 5)
    a, b = flow_constraints(graph.edges, 25, 0, 24)
    assert a.shape == (25, 40) and b[0] == 1 and b[24] == -1 and b.sum() == 0
    assert (a.sum(0) == 0).all() and (np.abs(a).sum(0) == 2).all()  # every arc leaves one node, enters one
    path = graph.solve(pyepo_costs(3)).numpy()  # edge indicators of paths satisfy conservation
    np.testing.assert_array_equal(path @ a.T, np.tile(b, (3, 1)))
    with pytest.raises(ValueError, match="source"):
        flow_constraints(graph.edges, 25, 25, 0)


def test_shortest_path_lp_matches_graph_shortest_path():
    graph, lp = grid_lp()
    costs = pyepo_costs(64)
    x = lp.solve(costs)
    best = (costs * graph.solve(costs)).sum(1)
    got = (costs * x).sum(1)
    assert ((got - best).abs() / best).max() <= OBJ_TOL
    assert lp.is_feasible(x.numpy(), tol=FEAS_TOL).all()


def test_vertex_rounding_recovers_the_exact_shortest_paths():
    graph, lp = grid_lp(round="vertex")
    costs = pyepo_costs(64, seed=1)
    x = lp.solve(costs)
    path = graph.solve(costs)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close((costs * x).sum(1), (costs * path).sum(1), rtol=0, atol=1e-12)
    assert graph.is_feasible(x.numpy()).all()
    assert torch.equal(x, path)  # continuous noisy costs: the shortest path is unique


def test_vertex_rounding_on_assignment():
    """Assignment as an LP (doubly stochastic matrices) is totally unimodular: rounding gives a permutation."""
    n = 5
    a_eq = np.vstack([np.kron(np.eye(n), np.ones(n)), np.kron(np.ones(n), np.eye(n))])  # row sums, col sums
    lp = ILP(A_eq=a_eq, b_eq=np.ones(2 * n), bounds=(0, 1), backend=PDHG(round="vertex"))
    scores = torch.from_numpy(np.random.default_rng(2).normal(size=(16, n, n)))
    x = lp.solve(scores.reshape(16, -1)).reshape(16, n, n)
    ref = Assignment().solve(scores)
    assert Assignment().is_feasible(x.numpy()).all()
    torch.testing.assert_close((scores * x).sum((1, 2)), (scores * ref).sum((1, 2)), rtol=0, atol=1e-12)


def test_vertex_rounding_refuses_a_fractional_optimum():
    """max x1 + x2 s.t. 2 x1 + 2 x2 <= 1 on [0,1]^2: optimum 0.5, its rounding (0, 0) is feasible but worse."""
    lp = ILP(A_ub=[[2.0, 2.0]], b_ub=[1.0], backend=PDHG(round="vertex"))
    with pytest.raises(InstanceError) as err:
        lp.solve(torch.tensor([[0.0, -1.0], [1.0, 1.0]], dtype=torch.float64))
    assert err.value.index == 1 and err.value.status == "ROUNDING_FAILED"
    res = PDHG(round="vertex").solve(LinearProgram(A_ub=[[2.0, 2.0]], b_ub=[1.0], lb=0.0, ub=1.0),
                                     -torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    assert res.status == ["ROUNDING_FAILED"]
    assert abs(float(res.x.sum()) - 0.5) < 1e-5  # the LP solution is kept, unrounded


# ---------------------------------------------------------------------------- statuses and errors
def test_infeasible_program_raises_with_status():
    lp = ILP(A_ub=[[1.0, 1.0]], b_ub=[-1.0], backend="pdhg")  # x >= 0 cannot sum to <= -1
    with pytest.raises(InstanceError) as err:
        lp.solve(torch.ones(3, 2, dtype=torch.float64))
    assert err.value.index == 0 and err.value.status == "INFEASIBLE"
    res = PDHG().solve(LinearProgram(A_eq=[[1.0, 1.0], [1.0, 1.0]], b_eq=[1.0, 2.0]),
                       torch.zeros(2, 2, dtype=torch.float64))  # free variables, inconsistent equalities
    assert res.status == ["INFEASIBLE", "INFEASIBLE"]


def test_unbounded_instances_are_named():
    """min c x s.t. x1 - x2 <= 1, x >= 0: unbounded exactly when c1 + c2 < 0 or c2 < 0 (ray (1, 1) or (0, 1))."""
    lp = LinearProgram(A_ub=[[1.0, -1.0]], b_ub=[1.0], lb=0.0)
    c = torch.tensor([[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]], dtype=torch.float64)
    res = PDHG().solve(lp, c)
    assert res.status == ["UNBOUNDED", "OPTIMAL", "UNBOUNDED"]
    assert res.x[1].abs().max() < 1e-6
    with pytest.raises(InstanceError) as err:
        ILP(A_ub=[[1.0, -1.0]], b_ub=[1.0], bounds=(0, None), sense="min", backend="pdhg").solve(c[1:])
    assert err.value.index == 1 and err.value.status == "UNBOUNDED"


def test_feasible_lps_with_unbounded_boxes_are_not_called_infeasible_or_unbounded():
    for seed in range(6):
        kind = ("nonneg", "free")[seed % 2]
        args = random_lp(100 + seed, 9, 5, 2, kind)
        lp = LinearProgram(A_ub=args["A_ub"], b_ub=args["b_ub"], A_eq=args["A_eq"], b_eq=args["b_eq"],
                           lb=args["bounds"][0], ub=args["bounds"][1])
        res = PDHG().solve(lp, -theta_for(seed, 6, 9, kind, "max"))
        assert res.status == ["OPTIMAL"] * 6


def zero_feasible_lp(seed: int, n: int, m: int) -> dict:
    """An LP whose starting point ``x = 0`` is feasible, hence optimal (with ``y = 0``) for ``c = 0``."""
    rng = np.random.default_rng(seed)
    return dict(A_ub=rng.normal(size=(m, n)), b_ub=rng.uniform(0.1, 1.0, m), bounds=(-1.0, 2.0))


def test_iteration_limit_names_the_unconverged_instance():
    """Instance 0 (c = 0) is optimal at the first check; instance 1 cannot converge in 64 iterations."""
    args = zero_feasible_lp(3, 30, 20)
    theta = theta_for(3, 2, 30, "box", "max")
    theta[0] = 0.0
    lp = ILP(**args, backend=PDHG(max_iter=64))
    with pytest.raises(InstanceError) as err:
        lp.solve(theta)
    assert err.value.index == 1 and err.value.status == "ITERATION_LIMIT"
    assert "64 iterations" in str(err.value)


def test_time_limit_stops_the_batch():
    args = random_lp(3, 30, 20, 5, "box")
    res = PDHG(time_limit=1e-9).solve(
        LinearProgram(A_ub=args["A_ub"], b_ub=args["b_ub"], A_eq=args["A_eq"], b_eq=args["b_eq"],
                      lb=args["bounds"][0], ub=args["bounds"][1]), theta_for(3, 2, 30, "box", "max"))
    assert res.status == ["TIME_LIMIT"] * 2 and (res.iterations == 64).all()


def test_instances_converge_independently():
    """Each instance's answer and iteration count do not depend on its batch mates (masked, compacted)."""
    args = zero_feasible_lp(9, 15, 8)
    lp = LinearProgram(A_ub=args["A_ub"], b_ub=args["b_ub"], lb=args["bounds"][0], ub=args["bounds"][1])
    c = theta_for(9, 6, 15, "box", "max")
    c[2] = 0.0  # converges at the first check, then leaves the batch
    batch = PDHG().solve(lp, c)
    assert batch.status == ["OPTIMAL"] * 6
    assert batch.iterations[2] == 64 and batch.iterations.max() > 64
    for b in range(6):
        alone = PDHG().solve(lp, c[b:b + 1])
        torch.testing.assert_close(alone.x[0], batch.x[b], atol=1e-5, rtol=0)  # GEMM rounding differs by shape
        assert abs(float(alone.primal_objective[0] - batch.primal_objective[b])) <= 1e-6
        assert abs(int(alone.iterations[0]) - int(batch.iterations[b])) <= 64


def test_lazy_dropping_of_finished_rows_changes_nothing():
    """``cuda_graphs=True`` keeps finished rows in the batch until half are done (on the CPU only that applies):
    the answers, statuses and iteration counts must equal the eager run's."""
    _, eager = grid_lp()
    _, lazy = grid_lp(cuda_graphs=True)
    costs = pyepo_costs(40, seed=5)
    a = PDHG().solve(_program(eager), costs)
    b = PDHG(cuda_graphs=True).solve(_program(lazy), costs)
    assert a.status == b.status == ["OPTIMAL"] * 40
    assert len(set(a.iterations.tolist())) > 1  # rows did finish at different checks
    assert (a.iterations - b.iterations).abs().max() <= 64  # GEMM rounding may differ with the batch shape
    torch.testing.assert_close(a.x, b.x, atol=1e-6, rtol=0)
    torch.testing.assert_close(lazy.solve(costs), eager.solve(costs), atol=1e-6, rtol=0)


def _program(ilp: ILP) -> LinearProgram:
    return LinearProgram(A_ub=ilp.A_ub, b_ub=ilp.b_ub, A_eq=ilp.A_eq, b_eq=ilp.b_eq, lb=ilp.lb, ub=ilp.ub, n=ilp.n)


def test_box_only_program_is_solved_exactly():
    lp = ILP(bounds=([-1.0, 0.0, 2.0], [1.0, 5.0, 2.0]), backend="pdhg")
    theta = torch.tensor([[1.0, -2.0, 3.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(lp.solve(theta), torch.tensor([[1.0, 0.0, 2.0], [0.0, 5.0, 2.0]], dtype=torch.float64))
    with pytest.raises(InstanceError, match="UNBOUNDED"):
        ILP(bounds=(0, None), n=3, backend="pdhg").solve(torch.ones(1, 3, dtype=torch.float64))


def test_empty_batch():
    _, lp = grid_lp()
    assert lp.solve(torch.zeros(0, 40, dtype=torch.float64)).shape == (0, 40)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="integrality.*pdhg"):
        ILP(A_ub=[[1.0, 1.0]], b_ub=[1.0], integrality=True, backend="pdhg")
    with pytest.raises(ValueError, match="round"):
        PDHG(round="nearest")
    with pytest.raises(ValueError, match="tol"):
        PDHG(tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        PDHG(max_iter=0)
    with pytest.raises(ValueError, match="dtype"):
        PDHG(dtype=torch.float16)
    with pytest.raises(ValueError, match="theta"):
        ILP(A_ub=[[1.0, 1.0]], b_ub=[1.0], backend="pdhg").solve(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="c must"):
        PDHG().solve(LinearProgram(A_ub=[[1.0, 1.0]], b_ub=[1.0], lb=0.0, ub=1.0), torch.ones(2, 3))


def test_spec_and_pickle_keep_the_options():
    _, lp = grid_lp(tol=1e-7, round="vertex")
    costs = pyepo_costs(4)
    for other in (lp.spec().build(), pickle.loads(pickle.dumps(lp))):
        assert other.pdhg == PDHG(tol=1e-7, round="vertex") and other.device_native
        assert torch.equal(other.solve(costs), lp.solve(costs))


def test_solve_numpy_runs_the_same_kernel():
    graph, lp = grid_lp(round="vertex")
    costs = pyepo_costs(5, seed=3)
    np.testing.assert_array_equal(lp.solve_numpy(costs.numpy()), lp.solve(costs).numpy())


# ---------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_matches_cpu(dtype):
    graph, lp = grid_lp(round="vertex")
    costs = pyepo_costs(256, seed=4)
    x = lp.solve(costs.to("cuda", dtype))
    assert x.device.type == "cuda" and x.dtype == dtype
    torch.testing.assert_close(x.cpu().double(), graph.solve(costs))
    args = random_lp(1, 12, 6, 2, "box")
    theta = theta_for(1, 64, 12, "box", "max")
    ref = ILP(**args, backend="glop").solve(theta)
    tol = 1e-4 if dtype == torch.float64 else 1e-3
    for pdhg in (PDHG(), PDHG(cuda_graphs=True)):
        solver = ILP(**args, backend=pdhg)
        for _ in range(2):  # the second call replays the cached graphs
            ours = solver.solve(theta.to("cuda", dtype)).cpu().double()
            err = ((theta * ours).sum(1) - (theta * ref).sum(1)).abs() / (1 + (theta * ref).sum(1).abs())
            assert err.max() <= tol


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_replay_the_eager_iterations():
    _, eager = grid_lp()
    costs = pyepo_costs(300, seed=6).cuda()
    lp = _program(eager).to("cuda", torch.float64)
    a = PDHG().solve(lp, costs)
    b = PDHG(cuda_graphs=True).solve(lp, costs)
    c = PDHG(cuda_graphs=True).solve(lp, costs)  # cached graphs
    assert a.status == b.status == c.status == ["OPTIMAL"] * 300
    torch.testing.assert_close(b.x, a.x, atol=1e-6, rtol=0)
    assert torch.equal(b.iterations, c.iterations) and torch.equal(c.x, b.x)  # replays are deterministic
