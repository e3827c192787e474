"""Integer / mixed-integer / linear programs through OR-Tools, with a fixed constraint set.

For every instance ``b`` of the batch::

    x*_b = argmax_x <theta_b, x>   (or argmin, ``sense="min"``)
           s.t.  A_ub x <= b_ub,  A_eq x = b_eq,  lb <= x <= ub,  x_i integer where integrality[i]

The constraints are built into an OR-Tools model once per solver (and once per worker thread or process:
the model is never pickled); each instance only rewrites the objective coefficients and re-solves.

Back-ends (``backend=``):

* ``"scip"`` -- SCIP through ``pywraplp``: MILP and LP. Objective coefficients are used as given (floats);
  "optimal" means proven within SCIP's numerical tolerances (feasibility 1e-6) with the MIP gap limit set
  to 0 (``pywraplp`` would otherwise stop at a 1e-4 relative gap). Integer variables are rounded to
  exact integers in the result.
* ``"cpsat"`` -- CP-SAT: pure integer programs only. Every variable must be integer with finite bounds and
  ``A_ub``, ``b_ub``, ``A_eq``, ``b_eq`` must be integer-valued (``ValueError`` otherwise). CP-SAT needs an
  integer objective, so each instance is scaled::

      s_b   = 10**cpsat_digits / max_i |theta_b,i|          (s_b = 1 when theta_b == 0)
      c_b,i = round(s_b * theta_b,i)                        (|c_b,i| <= 10**cpsat_digits)

  Rounding moves each coefficient by at most ``0.5 / s_b``, so the returned ``x`` is optimal for
  ``theta_b`` up to ``max|theta_b| * 10**-cpsat_digits * sum_i max(|lb_i|, |ub_i|)``: entries of
  ``theta_b`` closer than that to each other are treated as ties (for 0/1 variables, relative precision
  ``n * 10**-cpsat_digits``). CP-SAT runs with one worker and a fixed seed, so results are deterministic.
* ``"glop"`` (alias ``"lp"``) -- GLOP, the simplex LP solver: continuous variables only (the default
  ``integrality=None`` means continuous for this back-end, integer for the others). Every instance is
  a cold solve, so the vertex returned on ties does not depend on the previous instance.

Failure is never silent: an instance that ends without a proven optimum raises
:class:`~discreteopt.solvers.base.InstanceError` with its index in the batch and a status:
``"INFEASIBLE"``, ``"UNBOUNDED"``, ``"TIME_LIMIT"`` (``time_limit`` seconds per instance elapsed; the
back-end's own status is in ``detail``), or the back-end's status name for anything else
(``"ABNORMAL"``, ``"MODEL_INVALID"``, ``"UNKNOWN"``, ...). GLOP's presolve reports unbounded programs as
infeasible; such instances are re-solved without presolve to name the right status.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .._validation import check_int_in_range, check_positive
from .base import InstanceError, Solver, ThreadLocalBackend

_BACKENDS = {"scip": "scip", "cpsat": "cpsat", "glop": "glop", "lp": "glop"}
_INT64_SAFE = 2.0**62


# ===================================================================== argument normalisation
def _as_matrix(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [m, n]; got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite; got {int((~np.isfinite(a)).sum())} NaN/inf entries")
    return a


def _as_rhs(b: Any, rows: int, name: str, matrix_name: str) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64)
    if b.ndim != 1 or b.shape[0] != rows:
        raise ValueError(f"{name} must have shape [{rows}] (one entry per row of {matrix_name}); got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"{name} must be finite; got {int((~np.isfinite(b)).sum())} NaN/inf entries")
    return b


def _constraint_pair(a: Any, b: Any, a_name: str, b_name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    if a is None and b is None:
        return None, None
    if a is None or b is None:
        missing, given = (a_name, b_name) if a is None else (b_name, a_name)
        raise ValueError(f"{missing} is required when {given} is given")
    a = _as_matrix(a, a_name)
    return a, _as_rhs(b, a.shape[0], b_name, a_name)


def _bound_array(v: Any, n: int, default: float, which: str) -> np.ndarray:
    if v is None:
        return np.full(n, default)
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"bounds[{which}] must be a scalar, None or an array [n={n}]; got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"bounds[{which}] must not contain NaN")
    return arr


def _infer_n(n: int | None, candidates: dict[str, int]) -> int:
    sizes = dict(candidates)
    if n is not None:
        sizes["n"] = check_int_in_range(n, "n", 1, 2**31)
    if not sizes:
        raise ValueError("ILP needs the number of variables: pass A_ub, A_eq, per-variable bounds, "
                         "an integrality array or n")
    first_name, first = next(iter(sizes.items()))
    for name, size in sizes.items():
        if size != first:
            raise ValueError(f"{name} implies n={size} variables but {first_name} implies n={first}")
    return first


# ===================================================================== back-end models
def _mp_model_proto(ilp: ILP):
    """The constraint set as an ``MPModelProto`` (objective coefficients left at zero)."""
    from ortools.linear_solver import linear_solver_pb2

    proto = linear_solver_pb2.MPModelProto(maximize=ilp.sense == "max")
    for i in range(ilp.n):
        proto.variable.add(lower_bound=ilp.lb[i], upper_bound=ilp.ub[i], is_integer=bool(ilp.integrality[i]),
                           name=f"x{i}")
    for a, b, kind in ((ilp.A_ub, ilp.b_ub, "ub"), (ilp.A_eq, ilp.b_eq, "eq")):
        if a is None:
            continue
        for row, rhs in zip(a, b, strict=True):
            nz = np.flatnonzero(row)
            ct = proto.constraint.add(lower_bound=-np.inf if kind == "ub" else rhs, upper_bound=rhs)
            ct.var_index.extend(nz.tolist())
            ct.coefficient.extend(row[nz].tolist())
    return proto


def _timeout_status(status: str, elapsed: float, time_limit: float | None) -> tuple[str, str]:
    """Name a stop without proof of optimality under a time limit ``TIME_LIMIT``; keep other statuses."""
    if time_limit is not None and status in ("FEASIBLE", "NOT_SOLVED", "UNKNOWN"):
        return "TIME_LIMIT", f"back-end status {status} after {elapsed:.3g} s (time_limit={time_limit})"
    return status, ""


class _ScipModel:
    """SCIP through ``pywraplp``: constraints loaded once, objective coefficients rewritten per instance.

    SCIP re-solves from scratch after each objective change, so results do not depend on earlier instances.
    """

    _STATUS = {0: "OPTIMAL", 1: "FEASIBLE", 2: "INFEASIBLE", 3: "UNBOUNDED", 4: "ABNORMAL",
               5: "MODEL_INVALID", 6: "NOT_SOLVED"}

    def __init__(self, ilp: ILP):
        from ortools.linear_solver import pywraplp

        self.solver = pywraplp.Solver.CreateSolver("SCIP")
        if self.solver is None:
            raise RuntimeError("OR-Tools was built without SCIP; use backend='cpsat' or 'glop'")
        error = self.solver.LoadModelFromProto(_mp_model_proto(ilp))
        if error:
            raise RuntimeError(f"SCIP rejected the model: {error}")
        self.vars = self.solver.variables()
        self.objective = self.solver.Objective()
        self.params = pywraplp.MPSolverParameters()
        self.params.SetDoubleParam(self.params.RELATIVE_MIP_GAP, 0.0)  # pywraplp's default is 1e-4
        if ilp.time_limit is not None:
            self.solver.SetTimeLimit(max(1, int(round(ilp.time_limit * 1000))))
        self.time_limit = ilp.time_limit
        self.integer = ilp.integrality

    def solve(self, c: np.ndarray) -> tuple[str, np.ndarray | None, str]:
        for var, coef in zip(self.vars, c.tolist(), strict=True):
            self.objective.SetCoefficient(var, coef)
        start = time.perf_counter()
        status = self._STATUS.get(self.solver.Solve(self.params), "UNKNOWN")
        if status == "OPTIMAL":
            x = np.array([v.solution_value() for v in self.vars])
            return status, np.where(self.integer, np.round(x), x), ""
        status, detail = _timeout_status(status, time.perf_counter() - start, self.time_limit)
        return status, None, detail


class _GlopModel:
    """GLOP on a stored ``MPModelRequest``: only the objective coefficients change per instance.

    Each instance is a cold solve (``SolveWithProto``): a warm-started simplex would make the answer, on
    ties even the vertex, depend on the previously solved instance.
    """

    def __init__(self, ilp: ILP):
        from ortools.linear_solver import linear_solver_pb2, pywraplp

        self.pb, self.pywraplp = linear_solver_pb2, pywraplp
        self.request = linear_solver_pb2.MPModelRequest(
            model=_mp_model_proto(ilp), solver_type=linear_solver_pb2.MPModelRequest.GLOP_LINEAR_PROGRAMMING)
        if ilp.time_limit is not None:
            self.request.solver_time_limit_seconds = ilp.time_limit
        self.time_limit = ilp.time_limit

    def _run(self) -> tuple[str, object]:
        response = self.pb.MPSolutionResponse()
        self.pywraplp.Solver.SolveWithProto(self.request, response)
        return self.pb.MPSolverResponseStatus.Name(response.status).removeprefix("MPSOLVER_"), response

    def solve(self, c: np.ndarray) -> tuple[str, np.ndarray | None, str]:
        for var, coef in zip(self.request.model.variable, c.tolist(), strict=True):
            var.objective_coefficient = coef
        start = time.perf_counter()
        status, response = self._run()
        if status == "INFEASIBLE":  # GLOP's presolve cannot tell infeasible from unbounded; the simplex can
            self.request.solver_specific_parameters = "use_preprocessing: false"
            status, response = self._run()
            self.request.ClearField("solver_specific_parameters")
        if status == "OPTIMAL":
            return status, np.array(response.variable_value, dtype=np.float64), ""
        status, detail = _timeout_status(status, time.perf_counter() - start, self.time_limit)
        return status, None, detail


class _CpSatModel:
    """CP-SAT: integer constraints built once, scaled integer objective rewritten per instance."""

    def __init__(self, ilp: ILP):
        from ortools.sat.python import cp_model

        self.cp_model = cp_model
        self.model = cp_model.CpModel()
        self.vars = [self.model.new_int_var(int(ilp.lb[i]), int(ilp.ub[i]), f"x{i}") for i in range(ilp.n)]
        for a, b, kind in ((ilp.A_ub, ilp.b_ub, "ub"), (ilp.A_eq, ilp.b_eq, "eq")):
            if a is None:
                continue
            for row, rhs in zip(a.astype(np.int64), b.astype(np.int64), strict=True):
                nz = np.flatnonzero(row)
                expr = cp_model.LinearExpr.weighted_sum([self.vars[j] for j in nz], row[nz].tolist())
                self.model.add(expr <= int(rhs) if kind == "ub" else expr == int(rhs))
        self.solver = cp_model.CpSolver()
        self.solver.parameters.num_workers = 1
        self.solver.parameters.random_seed = 0
        if ilp.time_limit is not None:
            self.solver.parameters.max_time_in_seconds = ilp.time_limit
        self.maximize = ilp.sense == "max"
        self.digits = ilp.cpsat_digits
        self.time_limit = ilp.time_limit

    def solve(self, c: np.ndarray) -> tuple[str, np.ndarray | None, str]:
        top = float(np.abs(c).max())
        scale = 10.0**self.digits / top if top > 0 else 1.0
        coefs = np.round(c * scale).astype(np.int64).tolist()
        expr = self.cp_model.LinearExpr.weighted_sum(self.vars, coefs)
        self.model.clear_objective()
        if self.maximize:
            self.model.maximize(expr)
        else:
            self.model.minimize(expr)
        status = self.solver.status_name(self.solver.solve(self.model))
        if status == "OPTIMAL":
            return status, np.array([self.solver.value(v) for v in self.vars], dtype=np.float64), ""
        status, detail = _timeout_status(status, self.solver.wall_time, self.time_limit)
        return status, None, detail


# ===================================================================== the solver
class ILP(ThreadLocalBackend, Solver):
    """Linear program over a fixed constraint set: ``theta [B, n] -> x [B, n]`` (see module docstring).

    Args:
        A_ub, b_ub: inequality constraints ``A_ub x <= b_ub``, shapes ``[m_ub, n]`` and ``[m_ub]``.
        A_eq, b_eq: equality constraints ``A_eq x = b_eq``, shapes ``[m_eq, n]`` and ``[m_eq]``.
        bounds: ``(lb, ub)``, each a scalar, ``None`` (unbounded) or an array ``[n]`` (or one array
            ``[2, n]``). Default ``(0, 1)``.
        integrality: ``True``/``False`` for all variables or a bool array ``[n]``; ``None`` = integer for
            ``"scip"``/``"cpsat"``, continuous for ``"glop"``.
        sense: ``"max"`` (default) or ``"min"`` the objective ``<theta_b, x>``.
        backend: ``"scip"`` (default), ``"cpsat"`` or ``"glop"``/``"lp"``.
        time_limit: seconds per instance (``None`` = no limit); reaching it raises ``InstanceError``.
        cpsat_digits: decimal digits kept by CP-SAT's integer objective (precision note above).
        n: number of variables, only needed when no other argument implies it.
    """

    event_ndim = 1
    theta_layout = "[B, n]"

    def __init__(self, A_ub=None, b_ub=None, A_eq=None, b_eq=None, bounds=(0, 1), integrality=None,
                 sense: str = "max", backend: str = "scip", time_limit: float | None = None,
                 cpsat_digits: int = 6, n: int | None = None):
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {sorted(_BACKENDS)}; got {backend!r}")
        if sense not in ("max", "min"):
            raise ValueError(f"sense must be 'max' or 'min'; got {sense!r}")
        self.backend = _BACKENDS[backend]
        self.sense = sense  # instance attribute: overrides the class default used by maximize()
        self.A_ub, self.b_ub = _constraint_pair(A_ub, b_ub, "A_ub", "b_ub")
        self.A_eq, self.b_eq = _constraint_pair(A_eq, b_eq, "A_eq", "b_eq")
        if not (isinstance(bounds, (tuple, list, np.ndarray)) and len(bounds) == 2):
            raise ValueError(f"bounds must be a pair (lb, ub) of scalars, None or arrays [n]; got {bounds!r}")
        sizes = {name: a.shape[1] for name, a in (("A_ub", self.A_ub), ("A_eq", self.A_eq)) if a is not None}
        for which, v in zip(("lb", "ub"), bounds, strict=True):
            if v is not None and np.ndim(v) == 1:
                sizes[f"bounds[{which}]"] = len(v)
        if integrality is not None and np.ndim(integrality) == 1:
            sizes["integrality"] = len(integrality)
        self.n = _infer_n(n, sizes)
        self.lb = _bound_array(bounds[0], self.n, -np.inf, "lb")
        self.ub = _bound_array(bounds[1], self.n, np.inf, "ub")
        if np.isposinf(self.lb).any() or np.isneginf(self.ub).any() or (self.lb > self.ub).any():
            bad = int(np.flatnonzero((self.lb > self.ub) | np.isposinf(self.lb) | np.isneginf(self.ub))[0])
            raise ValueError(f"bounds must satisfy -inf <= lb <= ub <= inf per variable; variable {bad} has "
                             f"lb={self.lb[bad]}, ub={self.ub[bad]}")
        self.integrality = self._integrality(integrality)
        self.time_limit = None if time_limit is None else check_positive(time_limit, "time_limit")
        self.cpsat_digits = check_int_in_range(cpsat_digits, "cpsat_digits", 1, 15)
        if self.backend == "cpsat":
            self._check_cpsat()
        self._spec_kwargs = {
            "A_ub": self.A_ub, "b_ub": self.b_ub, "A_eq": self.A_eq, "b_eq": self.b_eq,
            "bounds": np.stack([self.lb, self.ub]), "integrality": self.integrality, "sense": self.sense,
            "backend": self.backend, "time_limit": self.time_limit, "cpsat_digits": self.cpsat_digits,
            "n": self.n,
        }
        self._init_local()  # one OR-Tools model per thread, built on first solve

    def _integrality(self, integrality) -> np.ndarray:
        if integrality is None:
            integrality = self.backend != "glop"
        arr = np.asarray(integrality)
        if arr.ndim == 0:
            arr = np.full(self.n, bool(arr))
        if arr.shape != (self.n,) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"integrality must be a bool or a bool array [n={self.n}]; got {integrality!r}")
        arr = arr.astype(bool)
        if self.backend == "glop" and arr.any():
            raise ValueError("integrality: backend 'glop' solves linear programs only; pass integrality=False "
                             "or use backend='scip' for integer variables")
        if self.backend == "cpsat" and not arr.all():
            raise ValueError("integrality: backend 'cpsat' needs every variable integer; "
                             "use backend='scip' for mixed-integer programs")
        return arr

    def _check_cpsat(self) -> None:
        for name, v in (("A_ub", self.A_ub), ("b_ub", self.b_ub), ("A_eq", self.A_eq), ("b_eq", self.b_eq)):
            if v is not None and not np.array_equal(v, np.round(v)):
                raise ValueError(f"{name} must be integer-valued for backend 'cpsat' (use backend='scip')")
            if v is not None and np.abs(v).max(initial=0) >= _INT64_SAFE:
                raise ValueError(f"{name} has entries too large for CP-SAT's 64-bit integers")
        if not (np.isfinite(self.lb).all() and np.isfinite(self.ub).all()):
            raise ValueError("bounds must be finite for backend 'cpsat'")
        self.lb, self.ub = np.ceil(self.lb), np.floor(self.ub)  # integer variables: round inwards
        if (self.lb > self.ub).any():
            bad = int(np.flatnonzero(self.lb > self.ub)[0])
            raise ValueError(f"bounds leave no integer value for variable {bad}")
        reach = float(np.maximum(np.abs(self.lb), np.abs(self.ub)).sum())
        if 10.0**self.cpsat_digits * max(reach, 1.0) >= _INT64_SAFE:
            raise ValueError(f"cpsat_digits={self.cpsat_digits} with these bounds overflows CP-SAT's 64-bit "
                             "objective; lower cpsat_digits or tighten bounds")

    def _model(self) -> _ScipModel | _CpSatModel | _GlopModel:
        model = getattr(self._local, "model", None)
        if model is None:
            model = {"scip": _ScipModel, "cpsat": _CpSatModel, "glop": _GlopModel}[self.backend](self)
            self._local.model = model
        return model

    # ----------------------------------------------------------------- Solver contract
    def event_shape(self) -> tuple[int, ...]:
        return (self.n,)

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        model = self._model()
        out = np.empty_like(theta)  # [B, n]
        for b in range(theta.shape[0]):
            status, x, detail = model.solve(theta[b])
            if x is None:
                raise InstanceError(f"ILP[{self.backend}]", b, status, detail)
            out[b] = x
        return out

    def is_feasible(self, y, tol: float = 1e-6) -> np.ndarray:
        """Per-instance check of ``y [B, n]`` against bounds, integrality and constraints (abs. tolerance)."""
        y = np.asarray(y, dtype=np.float64)
        ok = np.all((y >= self.lb - tol) & (y <= self.ub + tol), axis=-1)
        ok &= np.all(~self.integrality | (np.abs(y - np.round(y)) <= tol), axis=-1)
        if self.A_ub is not None:
            ok &= np.all(y @ self.A_ub.T <= self.b_ub + tol, axis=-1)
        if self.A_eq is not None:
            ok &= np.all(np.abs(y @ self.A_eq.T - self.b_eq) <= tol, axis=-1)
        return ok
