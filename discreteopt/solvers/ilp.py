"""Integer / mixed-integer / linear programs through OR-Tools, with a fixed constraint set.

For every instance ``b`` of the batch::

    x*_b = argmax_x <theta_b, x>   (or argmin, ``sense="min"``)
           s.t.  A_ub x <= b_ub,  A_eq x = b_eq,  lb <= x <= ub,  x_i integer where integrality[i]

The constraints are built into an OR-Tools model once per solver (and once per worker thread or process:
the model is never pickled); each instance only rewrites the objective coefficients and re-solves.

Back-ends (``backend=``):

* ``"scip"`` -- SCIP through ``pywraplp``: MILP and LP. "Optimal" means proven within SCIP's numerical
  tolerances (feasibility 1e-6) with the MIP gap limit set to 0 (``pywraplp`` would otherwise stop at a 1e-4
  relative gap). Integer variables are rounded to exact integers in the result.
* ``"cpsat"`` -- CP-SAT: pure integer programs only. Every variable must be integer with finite bounds, and
  ``A_ub``, ``b_ub``, ``A_eq``, ``b_eq`` must hold integers or exact decimals with at most 6 places (e.g.
  PyEPO's 2-decimal weights): each row is scaled exactly by the fewest powers of ten that make it integral
  (``3.17 -> 317``), an inequality's right-hand side is floored exactly at that scale and every right-hand side
  is clipped to the row's activity range over the bounds (``ValueError`` for other data, or rows whose scaled
  activity reaches ``2**53``). CP-SAT needs an integer objective, so each instance is scaled::

      s_b   = 10**cpsat_digits / max_i |theta_b,i|          (s_b = 1 when theta_b == 0)
      c_b,i = round(10**cpsat_digits * theta_b,i / max_i |theta_b,i|)     (|c_b,i| <= 10**cpsat_digits)

  computed in that order, so every finite ``theta_b`` (subnormal to 1e308) gives integers in range.

  Rounding moves each coefficient by at most ``0.5 / s_b``, so the returned ``x`` is optimal for
  ``theta_b`` up to ``max|theta_b| * 10**-cpsat_digits * sum_i max(|lb_i|, |ub_i|)``: entries of
  ``theta_b`` closer than that to each other are treated as ties (for 0/1 variables, relative precision
  ``n * 10**-cpsat_digits``). CP-SAT runs with one worker and a fixed seed, so results are deterministic.
* ``"glop"`` (alias ``"lp"``) -- GLOP, the simplex LP solver: continuous variables only (the default
  ``integrality=None`` means continuous for this back-end, integer for the others). Every instance is
  a cold solve, so the vertex returned on ties does not depend on the previous instance.
* ``"pdhg"`` (or a :class:`~discreteopt.solvers.pdhg.PDHG` object with its options) -- the whole batch at once
  by restarted PDHG (PDLP, Applegate et al. 2021) in torch on the input's device (CPU or GPU): continuous
  variables only, optimal up to a relative KKT tolerance (1e-6 in float64) rather than exactly; optional
  rounding to an integral vertex for totally unimodular programs. See :mod:`discreteopt.solvers.pdhg`
  (tolerances, statuses, float32); ``time_limit`` bounds the whole batch there.

Scaling for SCIP and GLOP (exact: powers of two only move exponents, so the problem and its optima are
unchanged): each instance's objective is multiplied by the power of two that brings ``max_i |theta_b,i|`` into
``[0.5, 1)`` -- any finite scale is accepted, ``theta`` and ``2**k * theta`` get the same answer, and entries
below ~1e-9 of the largest act as zeros (SCIP's epsilon); a constraint row with a non-zero ``|coefficient|``
outside ``[2**-20, 2**20]`` is multiplied (with its right-hand side) by the power of two that brings its smallest
non-zero ``|coefficient|`` into ``[1, 2)`` (SCIP reads ``|a| >= 1e20`` as infinite and ``|a| <= 1e-9`` as zero, so
no coefficient may be scaled past either); a row whose non-zero coefficients span more than ``2**60`` (~1e18) fits
no such window and raises ``ValueError`` in the constructor (before, the small coefficients were silently
dropped: a wrong feasible set); a right-hand side still ``>= 1e19`` in magnitude is replaced by ``+-1e19`` when the
bounds keep the row's activity below that (the same restriction), else the constructor raises ``ValueError``.

Failure is never silent: an instance that ends without a proven optimum raises
:class:`~discreteopt.solvers.base.InstanceError` with its index in the batch and a status:
``"INFEASIBLE"``, ``"UNBOUNDED"``, ``"TIME_LIMIT"`` (``time_limit`` seconds per instance elapsed; the
back-end's own status is in ``detail``), or the back-end's status name for anything else
(``"ABNORMAL"``, ``"MODEL_INVALID"``, ``"UNKNOWN"``, ...). GLOP's presolve reports unbounded programs as
infeasible; such instances are re-solved without presolve to name the right status. A failed instance leaves
nothing behind: after a non-optimal status (or an exception inside the back-end) the thread's back-end model is
discarded and rebuilt for the next instance, so later calls on the same object give what a fresh ``ILP`` gives.

Ties: each back-end is deterministic (SCIP and GLOP solve every instance cold, CP-SAT runs one worker with a
fixed seed), so an instance's answer depends only on the instance; :class:`~discreteopt.solvers.knapsack.Knapsack`
with ``backend="scip"`` or ``"cpsat"`` builds the same model and returns the same answers.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any

import numpy as np

from .._validation import check_int_in_range, check_positive
from .base import InstanceError, Solver, ThreadLocalBackend
from .pdhg import PDHG, solve_ilp

_BACKENDS = {"scip": "scip", "cpsat": "cpsat", "glop": "glop", "lp": "glop", "pdhg": "pdhg"}
_INT64_SAFE = 2.0**62
#: integer back-ends (CP-SAT, the knapsack solvers): every scaled row activity and right-hand side stays below
#: this, so sums are exact in doubles and far from the int64 limits OR-Tools checks (it aborts beyond them)
INT_SAFE = 2**53
#: decimal places an entry of the constraint data may have for the integer back-ends (scaled exactly by 10**d)
MAX_DECIMALS = 6
#: SCIP reads |v| >= 1e20 as infinite: right-hand sides stay below this magnitude (see _float_rows)
_SOLVER_BIG = 1e19
#: SCIP/GLOP rows with a non-zero |coefficient| outside this range are scaled by a power of two (exact)
_ROW_RANGE = (2.0**-20, 2.0**20)
#: largest ratio (as a power of two) of a row's largest to its smallest non-zero |coefficient| for SCIP/GLOP: scaled
#: to [1, 2**61) the row stays clear of SCIP's epsilon (1e-9) and infinity (1e20)
_ROW_SPAN_BITS = 60


# ===================================================================== argument normalisation
def numeric_array(v: Any, name: str, *, allow_inf: bool = False) -> np.ndarray:
    """``v`` as a ``float64`` array, or ``ValueError`` naming ``name``: booleans, complex numbers, strings and
    ragged nesting are refused (never silently converted); NaN always, inf unless ``allow_inf``."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor
        v = v.detach().cpu().numpy()
    try:
        arr = np.asarray(v)
    except ValueError as exc:  # ragged nesting
        raise ValueError(f"{name} must be a rectangular numeric array; got {type(v).__name__} ({exc})") from None
    if arr.dtype.kind == "b":
        raise ValueError(f"{name} must hold numbers, not booleans; got dtype bool")
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} must be real; got dtype {arr.dtype}")
    if arr.dtype.kind not in "iuf":
        if arr.dtype.kind == "O" and any(isinstance(x, (bool, np.bool_, complex)) for x in arr.flat):
            raise ValueError(f"{name} must hold real numbers, not booleans or complex numbers")
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a numeric array; got dtype {arr.dtype}") from None
    arr = arr.astype(np.float64)
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be {'free of NaN' if allow_inf else 'finite'}; got {int(bad.sum())} "
                         f"{'NaN' if allow_inf else 'NaN/inf'} entries")
    return arr


def _as_matrix(a: Any, name: str) -> np.ndarray:
    a = numeric_array(a, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [m, n]; got shape {a.shape}")
    return a


def _as_rhs(b: Any, rows: int, name: str, matrix_name: str) -> np.ndarray:
    b = numeric_array(b, name)
    if b.ndim != 1 or b.shape[0] != rows:
        raise ValueError(f"{name} must have shape [{rows}] (one entry per row of {matrix_name}); got shape {b.shape}")
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
    arr = numeric_array(v, f"bounds[{which}]", allow_inf=True)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"bounds[{which}] must be a scalar, None or an array [n={n}]; got shape {arr.shape}")
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


# ===================================================================== safe scaling for the back-ends
def unit_objective(c: np.ndarray) -> np.ndarray:
    """``c [n]`` times the power of two that brings ``max_i |c_i|`` into ``[0.5, 1)``: the same optimum, computed
    exactly (a power of two only shifts exponents; entries below ``2**-1074`` of the largest underflow to 0), so
    any finite scale, subnormal to 1e308, reaches a floating-point back-end in range."""
    top = float(np.abs(c).max(initial=0.0))
    if top == 0.0:
        return c
    return np.ldexp(c, -math.frexp(top)[1])


def integer_objective(c: np.ndarray, digits: int) -> np.ndarray:
    """``round(10**digits * c / max_i |c_i|)`` as int64 ``[n]`` (all zeros when ``c == 0``).

    Dividing first keeps every intermediate in ``[-10**digits, 10**digits]`` for any finite ``c`` (``10**digits /
    max|c|`` itself overflows for subnormal ``c``); entries relatively smaller than ``0.5 * 10**-digits`` become
    0 (ties)."""
    top = float(np.abs(c).max(initial=0.0))
    if top == 0.0:
        return np.zeros(c.shape, dtype=np.int64)
    return np.round(c / top * 10.0**digits).astype(np.int64)


def decimal_places(values: np.ndarray) -> int | None:
    """Smallest ``d <= MAX_DECIMALS`` such that every entry is the double nearest to a decimal with ``d`` places
    and ``|entry| * 10**d < 2**53`` (``None`` when there is none): then ``round(entry * 10**d)`` is that decimal
    scaled exactly to an integer (``3.17`` -> ``317`` with ``d = 2``)."""
    for d in range(MAX_DECIMALS + 1):
        scale = 10.0**d
        with np.errstate(over="ignore"):  # entries near the float maximum: inf, then refused by the test below
            k = np.round(values * scale)
        if np.all(np.abs(k) < INT_SAFE) and np.array_equal(k / scale, values):
            return d
    return None


def _activity_range(row: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of ``row @ x`` over the box ``lb <= x <= ub`` (infinite where the box is)."""
    nz = row != 0
    a, lo_b, hi_b = row[nz], lb[nz], ub[nz]
    with np.errstate(over="ignore", invalid="ignore"):
        low = np.where(a > 0, a * lo_b, a * hi_b).sum()
        high = np.where(a > 0, a * hi_b, a * lo_b).sum()
    return float(low), float(high)


def _float_rows(ilp: ILP) -> list[tuple[list[int], list[float], float, float]]:
    """Rows of the constraint set as SCIP and GLOP receive them: ``(indices, coefficients, lower, upper)``.

    Exact transformations only: a row with a non-zero ``|coefficient|`` outside ``[2**-20, 2**20]`` is scaled (with
    its right-hand side) by the power of two that brings its smallest non-zero ``|coefficient|`` into ``[1, 2)`` --
    SCIP reads ``|a| >= 1e20`` as infinite and coefficients below its epsilon (1e-9) as zero, and a row spanning
    more than ``2**60`` cannot avoid both (``ValueError``; scaling the largest coefficient to 1 instead dropped the
    small ones silently). A right-hand side that is still ``>= 1e19`` in magnitude is replaced by ``+-1e19`` when
    the bounds keep the row's activity inside ``(-1e19, 1e19)`` (the row stays redundant, or infeasible, as it
    was); otherwise ``ValueError``."""
    rows = []
    for a_name, b_name, a, b, kind in (("A_ub", "b_ub", ilp.A_ub, ilp.b_ub, "ub"),
                                       ("A_eq", "b_eq", ilp.A_eq, ilp.b_eq, "eq")):
        if a is None:
            continue
        for i, (row, rhs) in enumerate(zip(a, b, strict=True)):
            mags = np.abs(row[row != 0])
            if mags.size:
                top, low = float(mags.max()), float(mags.min())
                if math.frexp(top)[1] - math.frexp(low)[1] > _ROW_SPAN_BITS:
                    raise ValueError(
                        f"row {i} of {a_name} has non-zero coefficients from {low:.3g} to {top:.3g} in magnitude: a "
                        f"span beyond 2**{_ROW_SPAN_BITS} (~1e18) that SCIP and GLOP cannot represent (they read "
                        "|a| <= 1e-9 as zero and |a| >= 1e20 as infinite, whatever the row's scale); rescale the "
                        "variables, or drop the negligible coefficients yourself")
                if not (_ROW_RANGE[0] <= low and top <= _ROW_RANGE[1]):
                    shift = 1 - math.frexp(low)[1]  # low * 2**shift in [1, 2)
                    row = np.ldexp(row, shift)
                    with np.errstate(over="ignore"):
                        rhs = float(np.ldexp(rhs, shift))
            if abs(rhs) >= _SOLVER_BIG:
                low, high = _activity_range(row, ilp.lb, ilp.ub)
                if not -_SOLVER_BIG < low <= high < _SOLVER_BIG:
                    raise ValueError(
                        f"{b_name}[{i}] = {b[i]:.6g} is beyond what SCIP and GLOP represent (|value| >= 1e19 after "
                        f"scaling row {i} of {a_name} to a largest coefficient of ~1; they read 1e20 as infinite) "
                        "while the bounds let that row's activity reach such values; tighten the bounds or rescale "
                        "the row")
                rhs = math.copysign(_SOLVER_BIG, rhs)  # activity in (-1e19, 1e19): the same (non-)restriction
            nz = np.flatnonzero(row)
            upper = np.inf if kind == "ub" and rhs >= _SOLVER_BIG else rhs
            rows.append((nz.tolist(), row[nz].tolist(), -np.inf if kind == "ub" else rhs, upper))
    return rows


def _integer_rows(ilp: ILP) -> list[tuple[list[int], list[int], str, int]]:
    """Rows of the constraint set as integers for CP-SAT: ``(indices, coefficients, "ub" | "eq", rhs)``.

    Each row is scaled by ``10**d``, the fewest decimal places that make it integral (:func:`decimal_places`;
    an equality row's right-hand side too). The right-hand side of an inequality is floored exactly
    (``a x <= 2.5`` over integers is ``a x <= 2``), then clipped to the row's activity range over the bounds
    (an unreachable bound changes nothing), so every number handed to CP-SAT is below ``2**53``. ``ValueError``
    for data that is not an exact decimal or too large."""
    rows = []
    lb, ub = ilp.lb.astype(np.int64).tolist(), ilp.ub.astype(np.int64).tolist()
    for a_name, b_name, a, b, kind in (("A_ub", "b_ub", ilp.A_ub, ilp.b_ub, "ub"),
                                       ("A_eq", "b_eq", ilp.A_eq, ilp.b_eq, "eq")):
        if a is None:
            continue
        for i, (row, rhs) in enumerate(zip(a, b, strict=True)):
            d = decimal_places(row)
            if d is None:
                raise ValueError(_not_decimal(a_name, f"row {i}", row))
            if kind == "eq":
                d_rhs = decimal_places(np.array([rhs]))
                if d_rhs is None:
                    raise ValueError(_not_decimal(b_name, f"entry {i}", np.array([rhs])))
                d = max(d, d_rhs)
            scale = 10**d
            coefs = [int(v) for v in np.round(row * float(scale))]
            nz = [j for j, v in enumerate(coefs) if v]
            low = sum(min(coefs[j] * lb[j], coefs[j] * ub[j]) for j in nz)
            high = sum(max(coefs[j] * lb[j], coefs[j] * ub[j]) for j in nz)
            if max(-low, high) >= INT_SAFE:
                raise ValueError(f"{a_name} row {i} scaled to integers (x 10**{d}) reaches {max(-low, high):.3g} over "
                                 "the bounds: too large for CP-SAT's 64-bit arithmetic; use backend='scip'")
            scaled = float(rhs) * scale  # inf (Python float, no warning) near the float maximum: not exact here
            exact = round(scaled) if abs(scaled) < INT_SAFE else None
            if exact is not None and exact / scale == rhs:
                r = exact  # the decimal the double stands for (0.29 * 100 -> 29, not 28.999...)
            elif kind == "eq":  # pragma: no cover - excluded by d_rhs above
                raise ValueError(_not_decimal(b_name, f"entry {i}", np.array([rhs])))
            else:
                r = math.floor(Fraction(rhs) * scale)  # exact floor of the double
            if kind == "ub":
                r = min(max(r, low - 1), high)  # below `low`: infeasible as before; above `high`: redundant
            elif not low <= r <= high:
                r = low - 1  # unreachable equality: infeasible as before, with a small number
            rows.append((nz, [coefs[j] for j in nz], kind, int(r)))
    return rows


def _not_decimal(name: str, where: str, values: np.ndarray) -> str:
    with np.errstate(over="ignore"):
        big = np.abs(values) * 10.0**MAX_DECIMALS >= INT_SAFE
    if big.any():
        return (f"{name} {where} has entries too large for the integer back-end ({values[big][0]:.6g}); "
                "use backend='scip'")
    return (f"{name} {where} must hold integers or decimals with at most {MAX_DECIMALS} places for an integer "
            f"back-end, which scales them exactly to integers (e.g. 3.17 -> 317); got {values[0]:.17g}, ... "
            "Use backend='scip' for arbitrary real data")


# ===================================================================== back-end models
def _mp_model_proto(ilp: ILP):
    """The constraint set as an ``MPModelProto`` (objective coefficients left at zero; rows from
    :func:`_float_rows`)."""
    from ortools.linear_solver import linear_solver_pb2

    proto = linear_solver_pb2.MPModelProto(maximize=ilp.sense == "max")
    for i in range(ilp.n):
        proto.variable.add(lower_bound=ilp.lb[i], upper_bound=ilp.ub[i], is_integer=bool(ilp.integrality[i]),
                           name=f"x{i}")
    for nz, coefs, lower, upper in ilp._float_rows:
        ct = proto.constraint.add(lower_bound=lower, upper_bound=upper)
        ct.var_index.extend(nz)
        ct.coefficient.extend(coefs)
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
        for var, coef in zip(self.vars, unit_objective(c).tolist(), strict=True):
            self.objective.SetCoefficient(var, coef)
        start = time.perf_counter()
        status = self._STATUS.get(self.solver.Solve(self.params), "UNKNOWN")
        if status == "OPTIMAL":
            x = np.array([v.solution_value() for v in self.vars])
            return status, np.where(self.integer, np.round(x), x) + 0.0, ""  # + 0.0: no -0.0 in the result
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
        for var, coef in zip(self.request.model.variable, unit_objective(c).tolist(), strict=True):
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
    """CP-SAT: integer constraints (:func:`_integer_rows`) built once, scaled integer objective
    (:func:`integer_objective`) rewritten per instance."""

    def __init__(self, ilp: ILP):
        from ortools.sat.python import cp_model

        self.cp_model = cp_model
        self.model = cp_model.CpModel()
        self.vars = [self.model.new_int_var(int(ilp.lb[i]), int(ilp.ub[i]), f"x{i}") for i in range(ilp.n)]
        for nz, coefs, kind, rhs in ilp._int_rows:
            if not nz:  # a row without variables: 0 <= rhs or 0 == rhs
                if (rhs < 0) if kind == "ub" else (rhs != 0):
                    self.model.add_bool_or([])  # the empty clause: infeasible, as the row is
                continue
            expr = cp_model.LinearExpr.weighted_sum([self.vars[j] for j in nz], coefs)
            self.model.add(expr <= rhs if kind == "ub" else expr == rhs)
        self.solver = cp_model.CpSolver()
        self.solver.parameters.num_workers = 1
        self.solver.parameters.random_seed = 0
        if ilp.time_limit is not None:
            self.solver.parameters.max_time_in_seconds = ilp.time_limit
        self.maximize = ilp.sense == "max"
        self.digits = ilp.cpsat_digits
        self.time_limit = ilp.time_limit

    def solve(self, c: np.ndarray) -> tuple[str, np.ndarray | None, str]:
        coefs = integer_objective(c, self.digits).tolist()  # |coef| <= 10**digits for every finite c
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
    """(Mixed-)integer or linear program over a fixed constraint set: ``theta [B, n] -> x [B, n]``.

    ``x*_b = argmax_x <theta_b, x>`` (``argmin`` for ``sense="min"``) s.t. ``A_ub x <= b_ub``, ``A_eq x = b_eq``,
    ``lb <= x <= ub``, ``x_i`` integer where ``integrality[i]``. The module docstring details the back-ends, the
    exact scaling of data and objective (every finite input is accepted; CP-SAT keeps ``cpsat_digits`` decimal
    digits of each instance's objective, optimal up to ``max|theta_b| * 10**-cpsat_digits * sum_i max(|lb_i|,
    |ub_i|)``; SCIP works within feasibility 1e-6 and treats objective entries below ~1e-9 of the largest as
    zero), the statuses of :class:`~discreteopt.solvers.base.InstanceError` and the rebuild after a failure.
    Constraint data is checked in the constructor (``ValueError`` naming the argument: shapes, NaN/inf, booleans,
    complex or text entries, data a back-end cannot represent).

    Args:
        A_ub, b_ub: inequality constraints ``A_ub x <= b_ub``, shapes ``[m_ub, n]`` and ``[m_ub]``.
        A_eq, b_eq: equality constraints ``A_eq x = b_eq``, shapes ``[m_eq, n]`` and ``[m_eq]``.
        bounds: ``(lb, ub)``, each a scalar, ``None`` (unbounded) or an array ``[n]`` (or one array
            ``[2, n]``). Default ``(0, 1)``.
        integrality: ``True``/``False`` for all variables or a bool array ``[n]``; ``None`` = integer for
            ``"scip"``/``"cpsat"``, continuous for ``"glop"``/``"pdhg"``.
        sense: ``"max"`` (default) or ``"min"`` the objective ``<theta_b, x>``.
        backend: ``"scip"`` (default), ``"cpsat"``, ``"glop"``/``"lp"``, ``"pdhg"`` or a ``PDHG(...)`` object.
        time_limit: seconds per instance (``None`` = no limit); reaching it raises ``InstanceError``.
        cpsat_digits: decimal digits kept by CP-SAT's integer objective (precision note above).
        n: number of variables, only needed when no other argument implies it.

    Example (choose 2 of 4 items, at most one of the first two)::

        >>> import torch
        >>> ilp = ILP(A_ub=[[1.0, 1.0, 0.0, 0.0]], b_ub=[1.0], A_eq=[[1.0, 1.0, 1.0, 1.0]], b_eq=[2.0])
        >>> ilp.solve(torch.tensor([[3.0, 2.0, 1.0, 0.5]]))
        tensor([[1., 0., 1., 0.]])
    """

    event_ndim = 1
    theta_layout = "[B, n]"

    def __init__(self, A_ub=None, b_ub=None, A_eq=None, b_eq=None, bounds=(0, 1), integrality=None,
                 sense: str = "max", backend: str = "scip", time_limit: float | None = None,
                 cpsat_digits: int = 6, n: int | None = None):
        self.pdhg = backend if isinstance(backend, PDHG) else PDHG() if backend == "pdhg" else None
        if self.pdhg is not None:
            backend = "pdhg"
        if not isinstance(backend, str) or backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {sorted(_BACKENDS)}; got {backend!r}")
        if not isinstance(sense, str) or sense not in ("max", "min"):
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
        # the rows each back-end receives, checked here so that bad data fails in the constructor
        self._int_rows = _integer_rows(self) if self.backend == "cpsat" else []
        self._float_rows = _float_rows(self) if self.backend in ("scip", "glop") else []
        self._label = f"ILP[{self.backend}]"  # solver name in InstanceError (Knapsack sets its own)
        self._spec_kwargs = {
            "A_ub": self.A_ub, "b_ub": self.b_ub, "A_eq": self.A_eq, "b_eq": self.b_eq,
            "bounds": np.stack([self.lb, self.ub]), "integrality": self.integrality, "sense": self.sense,
            "backend": self.pdhg or self.backend, "time_limit": self.time_limit, "cpsat_digits": self.cpsat_digits,
            "n": self.n,
        }
        self._init_local()  # one OR-Tools model per thread, built on first solve

    def _integrality(self, integrality) -> np.ndarray:
        if integrality is None:
            integrality = self.backend not in ("glop", "pdhg")
        arr = np.asarray(integrality)
        if arr.ndim == 0:
            arr = np.full(self.n, bool(arr))
        if arr.shape != (self.n,) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"integrality must be a bool or a bool array [n={self.n}]; got {integrality!r}")
        arr = arr.astype(bool)
        if self.backend == "glop" and arr.any():
            raise ValueError("integrality: backend 'glop' solves linear programs only; pass integrality=False "
                             "or use backend='scip' for integer variables")
        if self.backend == "pdhg" and arr.any():
            raise ValueError("integrality: backend 'pdhg' solves linear programs only; pass integrality=False "
                             "(for totally unimodular programs, PDHG(round='vertex') returns integral vertices) "
                             "or use backend='scip' for integer variables")
        if self.backend == "cpsat" and not arr.all():
            raise ValueError("integrality: backend 'cpsat' needs every variable integer; "
                             "use backend='scip' for mixed-integer programs")
        return arr

    def _check_cpsat(self) -> None:
        # constraint data: integers or exact decimals, checked and scaled by _integer_rows
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

    @property
    def device_native(self) -> bool:  # type: ignore[override]
        return self.backend == "pdhg"  # batched torch kernel on the input's device

    def _solve_torch(self, theta):
        return solve_ilp(self, theta)

    def _solve_numpy(self, theta: np.ndarray) -> np.ndarray:
        if self.backend == "pdhg":
            import torch

            return solve_ilp(self, torch.from_numpy(theta)).numpy()
        model = self._model()
        out = np.empty_like(theta)  # [B, n]
        for b in range(theta.shape[0]):
            try:
                status, x, detail = model.solve(theta[b])
            except BaseException:
                self._local.model = None  # never reuse a back-end that raised mid-solve
                raise
            if x is None:
                # a back-end that ended without an optimum may keep state (SCIP after ABNORMAL answered ABNORMAL
                # to every later objective): this thread's model is rebuilt for the next call
                self._local.model = None
                raise InstanceError(self._label, b, status, detail)
            out[b] = x
        return out

    def is_feasible(self, y, tol: float | None = None) -> np.ndarray:
        """Per-instance check of ``y [B, n]`` against bounds, integrality and constraints (absolute tolerance
        ``tol``; for a row whose largest ``|coefficient|`` lies outside ``[2**-20, 2**20]``, ``tol`` times that
        coefficient, as the back-ends see the row scaled to ~1: a row of 1e20 is not held to 1e-6).

        ``tol=None``: 1e-6, the feasibility tolerance of SCIP, GLOP and CP-SAT; for ``backend="pdhg"``, whose
        answers hold the constraints only up to its relative KKT tolerance (1e-6 in float64, 1e-4 in float32, times
        ``1 + |b|``), ``1e-3 (1 + max |b|)``."""
        if tol is None:
            rhs = [np.abs(b).max(initial=0.0) for b in (self.b_ub, self.b_eq) if b is not None]
            tol = 1e-3 * (1.0 + max(rhs, default=0.0)) if self.backend == "pdhg" else 1e-6
        y = np.asarray(y, dtype=np.float64)
        ok = np.all((y >= self.lb - tol) & (y <= self.ub + tol), axis=-1)
        ok &= np.all(~self.integrality | (np.abs(y - np.round(y)) <= tol), axis=-1)
        if self.A_ub is not None:
            ok &= np.all(y @ self.A_ub.T <= self.b_ub + tol * _row_scale(self.A_ub), axis=-1)
        if self.A_eq is not None:
            ok &= np.all(np.abs(y @ self.A_eq.T - self.b_eq) <= tol * _row_scale(self.A_eq), axis=-1)
        return ok


def _row_scale(a: np.ndarray) -> np.ndarray:
    """``[m]``: the largest ``|coefficient|`` of rows outside ``[2**-20, 2**20]`` (those the back-ends rescale), else 1."""
    top = np.abs(a).max(axis=1, initial=0.0)
    return np.where((top > 0) & ((top < _ROW_RANGE[0]) | (top > _ROW_RANGE[1])), top, 1.0)
