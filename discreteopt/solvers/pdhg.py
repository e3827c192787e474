"""Batched linear programs in torch: restarted primal-dual hybrid gradient (PDHG), as in PDLP.

Every instance ``b`` of a batch shares the constraints and has its own objective::

    min_x  <c_b, x>   s.t.  A_eq x = b_eq,  A_ub x <= b_ub,  lb <= x <= ub          c [B, n], x [B, n]

All instances are solved together by batched tensor operations on the device of ``c`` (CPU or GPU); no
host round trip happens between two convergence checks. The method is PDLP (Applegate, Diaz, Hinder, Lu,
Lubin, O'Donoghue, Schudy, "Practical Large-Scale Linear Programming using Primal-Dual Hybrid Gradient",
NeurIPS 2021), with the restart test of cuPDLP.jl (Lu & Yang, 2023: the KKT error replaces the normalised
duality gap).

Algorithm (in the preconditioned space, per instance):

1. **Preconditioning** (once per constraint set): the rows ``K = [A_eq; -A_ub]``, ``q = [b_eq; -b_ub]`` are
   first multiplied, where their largest ``|entry|`` lies outside ``[2**-20, 2**20]``, by the power of two that
   brings it into ``[0.5, 1)`` (exact; without it a row of subnormal or huge coefficients pushed Ruiz's column
   scale to ~1e160, the scaled box of that variable shrank to ~1e-160, and any point passed the termination test:
   an infeasible ``x`` was returned as optimal; a row whose largest ``|entry|`` is below ``2**-1000``, whose factor
   would not be a float, raises ``ValueError`` -- ``ILP(backend="pdhg")`` scales its rows itself first), then
   equilibrated, ``K~ = D_r K D_c``, by ``ruiz_iters`` Ruiz steps (divide every row and column by the square
   root of its largest absolute entry) followed by one Pock-Chambolle step (alpha = 1: square roots of row and
   column l1 norms). Then ``c~ = D_c c``, ``q~ = D_r q``, ``lb~ = lb / D_c``, ``ub~ = ub / D_c``; a solution maps
   back as ``x = D_c x~``, ``y = D_r y~``.
2. **PDHG step** on the saddle problem ``min_{x in box} max_{y_ineq >= 0} <c, x> - <y, K x - q>`` with step
   ``eta`` and primal weight ``w`` (``tau = eta / w``, ``sigma = eta * w``)::

       x' = proj_box(x - tau (c - K^T y))
       y' = proj_Y(y + sigma (q - K (2 x' - x)))

3. **Adaptive step size** (PDLP): with ``||z||_w^2 = w ||x||^2 + ||y||^2 / w`` and ``k`` the iteration count,
   ``eta_max = ||z' - z||_w^2 / (2 |<y' - y, K (x' - x)>|)``; the step is accepted when ``eta <= eta_max``
   (a rejected step leaves the iterate unchanged) and the next step is
   ``min((1 - (k + 1)^-0.3) eta_max, (1 + (k + 1)^-0.6) eta)``.
4. **Adaptive restarts** every ``eval_every`` iterations: the candidate is the current iterate or the
   step-size weighted average since the last restart, whichever has the smaller weighted KKT error
   ``sqrt(w ||r_primal||^2 + ||r_dual||^2 / w + gap^2)``; with ``r`` = candidate error / error at the last
   restart, restart to the candidate when ``r <= 0.2``, or ``r <= 0.8`` and ``r`` grew since the previous
   check, or the iterations since the last restart reach 0.36 x all iterations.
5. **Primal weight** at each restart: ``w <- exp(0.5 log(|dy| / |dx|) + 0.5 log w)`` with ``dx``, ``dy`` the
   moves since the previous restart; initially ``w = ||c~|| / ||q~||`` (1 when either is zero).

Instances converge at different rates: at every check the finished ones are written out and dropped from the
batch, and only the others keep iterating (with ``cuda_graphs=True``, once half of the batch is finished).

**Termination** (PDLP's relative KKT criteria, for the current or the average iterate; Euclidean norms, ``tol``
relative with an absolute floor of ``tol``)::

    primal residual  ||(A_eq x - b_eq, max(A_ub x - b_ub, 0))||  <= tol (1 + ||q||)
    dual residual    ||c - K^T y - lambda||                      <= tol (1 + ||c_b||)
    gap              |<c_b, x> - dual objective|                 <= tol (1 + |<c_b, x>| + |dual objective|)

where ``lambda`` is the part of the reduced cost ``c - K^T y`` the finite bounds can absorb and the dual
objective is ``<q, y> + sum_i (lb_i lambda_i^+ - ub_i lambda_i^-)``. The residual criteria must hold both on the
original problem and on the preconditioned one, whose rows and columns are equilibrated: a row of small
coefficients is not judged against the norm of rows a thousand times larger. ``x`` always satisfies the bounds
exactly. Default ``tol``: ``1e-6`` in float64, ``1e-4`` in float32 (float32 arithmetic cannot certify 1e-6:
its rounding error alone is ~1e-7 relative per operation). Measured against GLOP on the random LPs of the tests:
objectives within ~5e-6 relative and constraints within 1e-4 in float64; within ~3e-4 relative and 1e-3 in
float32 (``tol=1e-4``); the 5x5 shortest-path LP converges to its vertex in both (exact with ``round="vertex"``).

**Statuses** (per instance, in :attr:`PDHGResult.status`): ``"OPTIMAL"``; ``"ITERATION_LIMIT"`` (not
converged within ``max_iter`` iterations); ``"TIME_LIMIT"`` (the batch ran ``time_limit`` seconds);
``"INFEASIBLE"`` / ``"UNBOUNDED"`` when the difference of the iterates between two checks is, twice in a row,
an approximate Farkas certificate (a dual ray for infeasibility, a primal ray of decrease for unboundedness;
Applegate, Diaz, Lu, Lubin, "Infeasibility detection with primal-dual hybrid gradient for large-scale linear
programming", SIAM J. Optim. 2024). Detection is conservative: an infeasible or unbounded program may also end with
``"ITERATION_LIMIT"``; a feasible bounded one is never reported infeasible unless its data are badly scaled
beyond the certificate's safety margins. ``"NUMERICAL_ERROR"``: the iterates became non-finite.
``"ROUNDING_FAILED"``: see ``round``.

**Vertex rounding** (``round="vertex"``), for totally unimodular programs with integer data (shortest paths
as flows, assignment, bipartite matching): every LP optimum on a vertex is integral, so ``x`` is rounded to the
nearest integer point and accepted only when it is feasible (violation ``<= round_tol (1 + ||q||_inf)``) and
its objective is within ``round_tol (1 + |LP objective|)`` of the LP objective. Otherwise the instance gets
status ``"ROUNDING_FAILED"`` (e.g. ties: several optimal vertices and PDHG converged to a fractional point
between them). The returned integral vertex is then optimal up to ``round_tol``: an exact optimum unless another
vertex is within ``round_tol`` of it.

Shapes: ``c [B, n]``; ``A_ub [m_ub, n]``, ``A_eq [m_eq, n]``, bounds ``[n]``; results ``x [B, n]``,
``y_eq [B, m_eq]``, ``y_ub [B, m_ub]`` (``y_ub >= 0``; reduced cost ``c - A_eq^T y_eq + A_ub^T y_ub``).
The constraint matrix is stored dense (the LPs of this library are small; a batch makes each matvec a GEMM).

**Cost.** An iteration is two GEMMs with ``K`` and ~30 elementwise operations on ``[B, 2n + 2m]``; an LP needs
hundreds (the 5x5 shortest path: ~160 on average) to thousands of iterations. For small LPs every operation is
launch-bound, so one iteration costs about the same at B = 1 and B = 4096: PDHG pays off for large batches on
a GPU (``cuda_graphs=True`` removes most of the launch cost there), not for single instances, where the simplex
(GLOP) is 10-100x faster on a CPU (``benchmarks/bench_solvers.py``; GPU numbers: ``benchmarks/gpu_check.py``).

Example::

    >>> import torch
    >>> from discreteopt.solvers.pdhg import PDHG, LinearProgram
    >>> lp = LinearProgram(A_ub=[[1.0, 1.0]], b_ub=[1.0], lb=[0.0, 0.0], ub=[1.0, 1.0])
    >>> res = PDHG().solve(lp, torch.tensor([[-1.0, -2.0], [1.0, 1.0]], dtype=torch.float64))
    >>> res.status, res.x.round(decimals=4).tolist()
    (['OPTIMAL', 'OPTIMAL'], [[0.0, 1.0], [0.0, 0.0]])

Through the solver interface: ``ILP(A_ub, b_ub, bounds=(0, 1), backend="pdhg")`` or
``backend=PDHG(tol=1e-7, round="vertex")``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch

from .._validation import check_int_in_range, check_positive

STATUSES = ("OPTIMAL", "ITERATION_LIMIT", "TIME_LIMIT", "INFEASIBLE", "UNBOUNDED", "NUMERICAL_ERROR",
            "ROUNDING_FAILED")
_RUNNING = -1
_CODE = {name: i for i, name in enumerate(STATUSES)}

# PDLP's restart and step-size constants (Applegate et al. 2021, section 3)
_BETA_SUFFICIENT, _BETA_NECESSARY, _BETA_ARTIFICIAL = 0.2, 0.8, 0.36
_WEIGHT_SMOOTHING = 0.5
_STEP_SHRINK, _STEP_GROW = 0.3, 0.6
_CERTIFICATE_MARGIN = 10.0  # infeasibility certificates must beat their own error bound by this factor


# ===================================================================== the problem
class LinearProgram:
    """Constraints of a batch of LPs, preconditioned once and held on one device in one dtype.

    Args:
        A_ub, b_ub: ``A_ub x <= b_ub``, shapes ``[m_ub, n]`` and ``[m_ub]`` (or ``None``).
        A_eq, b_eq: ``A_eq x = b_eq``, shapes ``[m_eq, n]`` and ``[m_eq]`` (or ``None``).
        lb, ub: bounds ``[n]`` (``-inf`` / ``inf`` allowed; ``None`` = unbounded on that side).
        n: number of variables when no matrix implies it.
        device, dtype: where and in which float type the iterations run (default CPU, float64).
        ruiz_iters: Ruiz equilibration steps before the Pock-Chambolle step (0 disables Ruiz).

    The preconditioning is computed in float64 on the CPU and then moved (see the module docstring).
    """

    def __init__(self, A_ub=None, b_ub=None, A_eq=None, b_eq=None, lb=None, ub=None, n: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64, ruiz_iters: int = 10):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
        ruiz_iters = check_int_in_range(ruiz_iters, "ruiz_iters", 0, 1000)
        mats = {k: _matrix(v, k) for k, v in (("A_ub", A_ub), ("A_eq", A_eq)) if v is not None}
        sizes = {k: a.shape[1] for k, a in mats.items()}
        if n is not None:
            sizes["n"] = int(n)
        for k, v in (("lb", lb), ("ub", ub)):
            if v is not None and np.ndim(v) == 1:
                sizes[k] = len(v)
        if not sizes or len(set(sizes.values())) != 1:
            raise ValueError(f"the number of variables must be given and consistent; got {sizes or 'none'}")
        self.n = n = next(iter(sizes.values()))
        a_ub, a_eq = mats.get("A_ub", np.zeros((0, n))), mats.get("A_eq", np.zeros((0, n)))
        r_ub = _rhs(b_ub, a_ub.shape[0], "b_ub")
        r_eq = _rhs(b_eq, a_eq.shape[0], "b_eq")
        lo = np.full(n, -np.inf) if lb is None else np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,))
        hi = np.full(n, np.inf) if ub is None else np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,))
        if np.isnan(lo).any() or np.isnan(hi).any() or (lo > hi).any() or np.isposinf(lo).any() \
                or np.isneginf(hi).any():
            raise ValueError("lb, ub must satisfy -inf <= lb <= ub <= inf without NaN")
        self.m_eq, self.m_ub = a_eq.shape[0], a_ub.shape[0]
        self.m = self.m_eq + self.m_ub
        k = np.concatenate([a_eq, -a_ub])  # [m, n]: K x >= q on the inequality rows, = q on the equality rows
        q = np.concatenate([r_eq, -r_ub])  # [m]
        top = np.abs(k).max(1, initial=0.0)  # [m]
        tiny = (top > 0) & (top < 2.0**-1000)
        if tiny.any():
            i = int(np.flatnonzero(tiny)[0])
            which = f"A_eq row {i}" if i < self.m_eq else f"A_ub row {i - self.m_eq}"
            raise ValueError(f"{which} has a largest |coefficient| of {top[i]:.3g} (< 2**-1000): its scale factor would "
                             "overflow a float; multiply the row (and its right-hand side) by a power of two first")
        row, col = _precondition(k, ruiz_iters)  # D_r includes the exact power-of-two row prescaling
        ks = row[:, None] * k * col[None, :]
        self.device, self.dtype = torch.device(device), dtype

        def t(a):
            return torch.tensor(np.array(a, dtype=np.float64), dtype=dtype, device=self.device)

        self.K, self.Kt = t(ks), t(ks.T)  # scaled [m, n], [n, m]
        self.q = t(row * q)  # scaled [m]
        self.lb, self.ub = t(lo / col), t(hi / col)  # scaled [n]
        self.row_scale, self.col_scale = t(row), t(col)  # D_r [m], D_c [n]
        self.K_orig, self.q_orig, self.lb_orig, self.ub_orig = t(k), t(q), t(lo), t(hi)
        self.lb_finite, self.ub_finite = t(np.isfinite(lo)).bool(), t(np.isfinite(hi)).bool()
        self.q_norm = _norm(q)
        self.q_inf = float(np.abs(q).max(initial=0.0))
        self.q_scaled_norm = _norm(row * q)
        self.step0 = 1.0 / max(float(np.abs(ks).max(initial=0.0)), 1e-300)
        self.bounded_box = bool(np.isfinite(lo).all() and np.isfinite(hi).all())

    def to(self, device: torch.device | str, dtype: torch.dtype) -> LinearProgram:
        """A copy on another device / dtype (the preconditioning is not recomputed)."""
        other = object.__new__(LinearProgram)
        other.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_graphs"})  # graphs: per device
        other.device, other.dtype = torch.device(device), dtype
        for name, v in self.__dict__.items():
            if isinstance(v, torch.Tensor):
                setattr(other, name, v.to(device=device, dtype=torch.bool if v.dtype == torch.bool else dtype))
        return other


def _norm(v: np.ndarray) -> float:
    """Euclidean norm without overflow of the squares (entries up to 1.8e308)."""
    with np.errstate(over="ignore"):
        plain = float(np.linalg.norm(v))
    if np.isfinite(plain) and plain > 1e-150:  # (no under- or overflow of the squares)
        return plain
    top = float(np.abs(v).max(initial=0.0))
    return top * float(np.linalg.norm(v / top)) if top > 0 and np.isfinite(top) else plain


def _matrix(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a finite 2-D array [m, n]; got shape {a.shape}")
    return a


def _rhs(b: Any, rows: int, name: str) -> np.ndarray:
    if b is None:
        if rows:
            raise ValueError(f"{name} is required when its matrix has rows")
        return np.zeros(0)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if b.shape != (rows,) or not np.isfinite(b).all():
        raise ValueError(f"{name} must be a finite array [{rows}]; got shape {b.shape}")
    return b


def _precondition(k: np.ndarray, ruiz_iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column scalings ``D_r [m]``, ``D_c [n]``: a power of two per badly scaled row (largest ``|entry|``
    outside ``[2**-20, 2**20]`` -> ``[0.5, 1)``, exact), Ruiz (l_inf) steps, then Pock-Chambolle (alpha=1)."""
    m, n = k.shape
    a = np.abs(k)
    top = a.max(1, initial=0.0)  # [m]
    off = (top > 0) & ((top < 2.0**-20) | (top > 2.0**20))
    row = np.where(off, np.ldexp(1.0, -np.frexp(np.where(off, top, 1.0))[1]), 1.0)  # [m] powers of two
    col = np.ones(n)
    a = row[:, None] * a
    for _ in range(ruiz_iters):
        r = np.sqrt(a.max(1, initial=0.0))
        c = np.sqrt(a.max(0, initial=0.0))
        r, c = np.where(r > 0, 1.0 / np.where(r > 0, r, 1.0), 1.0), np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), 1.0)
        a = r[:, None] * a * c[None, :]
        row, col = row * r, col * c
    r, c = np.sqrt(a.sum(1)), np.sqrt(a.sum(0))
    r, c = np.where(r > 0, 1.0 / np.where(r > 0, r, 1.0), 1.0), np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), 1.0)
    return row * r, col * c


# ===================================================================== the result
@dataclasses.dataclass
class PDHGResult:
    """Per-instance outcome of :meth:`PDHG.solve` (all tensors on the device of ``c``).

    Attributes:
        x: ``[B, n]`` primal solution (rounded when ``round="vertex"``); for instances that did not converge, the
            last iterate (inside the bounds, possibly infeasible).
        y_eq, y_ub: ``[B, m_eq]``, ``[B, m_ub]`` dual solution (``y_ub >= 0``), see the module docstring.
        status: one name of :data:`STATUSES` per instance.
        iterations: ``[B]`` PDHG iterations run (rejected step-size trials count).
        primal_objective, dual_objective: ``[B]`` ``<c, x>`` and the dual bound (of the LP, before rounding).
        primal_residual, dual_residual, gap: ``[B]`` the relative termination quantities (each ``<= tol`` when
            optimal).
    """

    x: torch.Tensor
    y_eq: torch.Tensor
    y_ub: torch.Tensor
    status: list[str]
    iterations: torch.Tensor
    primal_objective: torch.Tensor
    dual_objective: torch.Tensor
    primal_residual: torch.Tensor
    dual_residual: torch.Tensor
    gap: torch.Tensor

    @property
    def optimal(self) -> torch.Tensor:
        """``[B]`` bool: status ``"OPTIMAL"``."""
        return torch.tensor([s == "OPTIMAL" for s in self.status], dtype=torch.bool, device=self.x.device)

    def detail(self, b: int) -> str:
        """One line on instance ``b`` (for error messages)."""
        return (f"{int(self.iterations[b])} iterations; relative primal residual {float(self.primal_residual[b]):.2e}, "
                f"dual residual {float(self.dual_residual[b]):.2e}, gap {float(self.gap[b]):.2e}")


# ===================================================================== the algorithm
@dataclasses.dataclass(frozen=True)
class PDHG:
    """Restarted PDHG with diagonal preconditioning for batches of LPs (see the module docstring).

    Args:
        tol: relative KKT tolerance (primal residual, dual residual, gap); ``None``: 1e-6 in float64,
            1e-4 in float32.
        max_iter: iteration limit per instance (``"ITERATION_LIMIT"`` beyond).
        time_limit: seconds for the whole batch (``"TIME_LIMIT"`` for the instances still running), or None.
        dtype: iteration dtype; ``None``: float64 on the CPU, the input's dtype (float32 for half types) on other
            devices.
        round: ``None`` or ``"vertex"`` (round to the nearest integral vertex and verify; totally unimodular LPs).
        round_tol: tolerance of the rounding check; ``None``: ``10 * tol``.
        eval_every: iterations between two convergence / restart checks (each check syncs with the host).
        ruiz_iters: Ruiz equilibration steps of the preconditioner.
        detect_infeasibility: test the iterate differences for infeasibility / unboundedness certificates.
        cuda_graphs: on CUDA, replay each block of ``eval_every`` iterations from a captured CUDA graph (one
            launch instead of ~30 per iteration; graphs cached per batch size on the ``LinearProgram``, finished
            instances dropped only once half of the batch is done). Same arithmetic as the eager loop. Off CUDA
            only the lazy dropping applies.

    ``solve(lp, c)`` returns a :class:`PDHGResult`; it never raises on instances that fail (their status says
    why). ``ILP(..., backend=PDHG(...))`` raises :class:`~discreteopt.solvers.base.InstanceError` instead.
    """

    tol: float | None = None
    max_iter: int = 50_000
    time_limit: float | None = None
    dtype: torch.dtype | None = None
    round: str | None = None
    round_tol: float | None = None
    eval_every: int = 64
    ruiz_iters: int = 10
    detect_infeasibility: bool = True
    cuda_graphs: bool = False

    def __post_init__(self):
        if self.tol is not None:
            check_positive(self.tol, "tol")
        check_int_in_range(self.max_iter, "max_iter", 1, 2**40)
        if self.time_limit is not None:
            check_positive(self.time_limit, "time_limit")
        if self.dtype not in (None, torch.float32, torch.float64):
            raise ValueError(f"dtype must be None, torch.float32 or torch.float64; got {self.dtype!r}")
        if self.round not in (None, "vertex"):
            raise ValueError(f"round must be None or 'vertex'; got {self.round!r}")
        if self.round_tol is not None:
            check_positive(self.round_tol, "round_tol")
        check_int_in_range(self.eval_every, "eval_every", 1, 2**20)
        check_int_in_range(self.ruiz_iters, "ruiz_iters", 0, 1000)

    # ----------------------------------------------------------------- helpers
    def compute_dtype(self, device: torch.device, input_dtype: torch.dtype) -> torch.dtype:
        """The dtype the iterations run in for inputs on ``device`` of ``input_dtype`` (see ``dtype``)."""
        if self.dtype is not None:
            return self.dtype
        if torch.device(device).type == "cpu":
            return torch.float64
        return input_dtype if input_dtype in (torch.float32, torch.float64) else torch.float32

    def tolerance(self, dtype: torch.dtype) -> float:
        """The relative KKT tolerance used in ``dtype``."""
        if self.tol is not None:
            return float(self.tol)
        return 1e-6 if dtype == torch.float64 else 1e-4

    # ----------------------------------------------------------------- entry point
    def solve(self, lp: LinearProgram, c: torch.Tensor) -> PDHGResult:
        """Minimise ``<c_b, x>`` over the constraints of ``lp`` for every row of ``c [B, n]``.

        ``c`` is moved to ``lp``'s device and dtype; the result lives there too.
        """
        if not isinstance(c, torch.Tensor) or c.ndim != 2 or c.shape[1] != lp.n:
            raise ValueError(f"c must be a tensor [B, n={lp.n}]; got {getattr(c, 'shape', type(c).__name__)}")
        c = c.detach().to(device=lp.device, dtype=lp.dtype)
        if not bool(torch.isfinite(c).all()):
            raise ValueError("c must be finite")
        tol = self.tolerance(lp.dtype)
        with torch.no_grad():
            res = _solve_rows(lp, c, tol) if lp.m == 0 else _Run(self, lp, c, tol).run()
            if self.round == "vertex":
                _round_vertex(lp, c, res, self.round_tol if self.round_tol is not None else 10 * tol)
        return res


def _empty_result(lp: LinearProgram, c: torch.Tensor) -> PDHGResult:
    b, dev, dt = c.shape[0], c.device, c.dtype
    z = torch.zeros(b, device=dev, dtype=dt)
    return PDHGResult(x=torch.zeros_like(c), y_eq=torch.zeros(b, lp.m_eq, device=dev, dtype=dt),
                      y_ub=torch.zeros(b, lp.m_ub, device=dev, dtype=dt), status=["ITERATION_LIMIT"] * b,
                      iterations=torch.zeros(b, dtype=torch.int64, device=dev), primal_objective=z.clone(),
                      dual_objective=z.clone(), primal_residual=z.clone(), dual_residual=z.clone(), gap=z.clone())


def _solve_rows(lp: LinearProgram, c: torch.Tensor, tol: float) -> PDHGResult:
    """No constraint rows: the box program is separable, solved exactly (``x_i`` at the bound ``c_i`` favours)."""
    res = _empty_result(lp, c)
    lo, hi = lp.lb_orig.expand_as(c), lp.ub_orig.expand_as(c)
    x = torch.where(c > 0, lo, torch.where(c < 0, hi, torch.zeros_like(c).clamp(lo, hi)))
    unbounded = ~torch.isfinite(x).all(1)
    res.x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    res.primal_objective = res.dual_objective = (c * res.x).sum(1)
    res.status = ["UNBOUNDED" if u else "OPTIMAL" for u in unbounded.tolist()]
    return res


def _residuals(c, q, lb, ub, lb_fin, ub_fin, m_eq, x, y, kx, kty):
    """KKT quantities of iterates ``x [B, n]``, ``y [B, m]`` with products ``kx = K x``, ``kty = K^T y``.

    Returns ``(|r_primal| [B], |r_dual| [B], primal objective [B], dual objective [B], |lambda| [B])``.
    """
    rp = torch.cat([kx[:, :m_eq] - q[:m_eq], (q[m_eq:] - kx[:, m_eq:]).clamp_min(0)], 1)  # [B, m]
    rc = c - kty  # reduced cost [B, n]
    lam = torch.where(lb_fin, rc.clamp_min(0), 0.0) + torch.where(ub_fin, rc.clamp_max(0), 0.0)
    bound_term = torch.where(lb_fin, lb * lam.clamp_min(0), 0.0) + torch.where(ub_fin, ub * lam.clamp_max(0), 0.0)
    dual_obj = (q * y).sum(1) + bound_term.sum(1)
    return (torch.linalg.vector_norm(rp, dim=1), torch.linalg.vector_norm(rc - lam, dim=1), (c * x).sum(1),
            dual_obj, torch.linalg.vector_norm(lam, dim=1))


class _Run:
    """One call of :meth:`PDHG.solve`: the state of the still-running instances, compacted at every check.

    The iterate and its products live in one tensor ``z = [x | y | K x | K^T y]`` (``[b, 2n + 2m]``, scaled
    space), so accepting a step, averaging and compacting are one operation each, and the average's products
    come from the running sum without extra matvecs (they are linear in the iterate).
    """

    def __init__(self, opts: PDHG, lp: LinearProgram, c: torch.Tensor, tol: float):
        self.o, self.lp, self.tol = opts, lp, tol
        self.res = _empty_result(lp, c)
        self.codes = [_RUNNING] * c.shape[0]
        b, n, m, dev, dt = c.shape[0], lp.n, lp.m, lp.device, lp.dtype
        self.parts = (slice(0, n), slice(n, n + m), slice(n + m, n + 2 * m), slice(n + 2 * m, 2 * n + 2 * m))
        self.idx = torch.arange(b, device=dev)
        self.c = c  # original objective of the running instances [b, n]
        self.c_norm = torch.linalg.vector_norm(c, dim=1)
        self.cs = c * lp.col_scale  # scaled [b, n]
        x = torch.zeros(b, n, device=dev, dtype=dt).clamp(lp.lb, lp.ub)
        self.z = torch.cat([x, torch.zeros(b, m, device=dev, dtype=dt), x @ lp.Kt, torch.zeros_like(x)], 1)
        cs_norm = torch.linalg.vector_norm(self.cs, dim=1)
        ok = (cs_norm > 1e-10) & (lp.q_scaled_norm > 1e-10)
        self.w = torch.where(ok, cs_norm / max(lp.q_scaled_norm, 1e-300), torch.ones_like(cs_norm))  # [b]
        self.eta = torch.full((b,), lp.step0, device=dev, dtype=dt)
        self.zsum, self.wsum = torch.zeros_like(self.z), torch.zeros_like(self.eta)  # step-weighted average
        self.zr = self.z.clone()  # last restart point
        self.r_kkt = self._scaled_kkt(self.z)  # [b, 3] at the last restart
        self.last_ratio = torch.ones(b, device=dev, dtype=dt)
        self.since = torch.zeros(b, device=dev, dtype=dt)  # iterations since the last restart
        self.prev = self.z  # iterate at the previous check (infeasibility rays)
        self.cert = torch.zeros(b, 2, dtype=torch.int64, device=dev)
        self.alive = torch.ones(b, dtype=torch.bool, device=dev)  # rows not yet written out
        self.k = 0

    # ----------------------------------------------------------------- pieces
    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(x, y, K x, K^T y)`` views of ``z``."""
        return tuple(z[:, s] for s in self.parts)

    def _scaled_kkt(self, z: torch.Tensor) -> torch.Tensor:
        """``[b, 3]``: primal residual, dual residual and |gap| in the scaled space."""
        lp = self.lp
        rp, rd, p, d, _ = _residuals(self.cs, lp.q, lp.lb, lp.ub, lp.lb_finite, lp.ub_finite, lp.m_eq, *self.split(z))
        return torch.stack([rp, rd, (p - d).abs()], 1)

    def _weighted(self, comps: torch.Tensor) -> torch.Tensor:
        """``sqrt(w rp^2 + rd^2 / w + gap^2)`` of ``comps [b, 3]`` under the current primal weight."""
        return torch.sqrt(self.w * comps[:, 0] ** 2 + comps[:, 1] ** 2 / self.w + comps[:, 2] ** 2)

    def _unscaled(self, z: torch.Tensor):
        """``(x, y, primal obj, dual obj, relative [primal res, dual res, gap] [b, 3], |lambda|)`` (original space)."""
        lp = self.lp
        x, y, kx, kty = self.split(z)
        xo, yo = x * lp.col_scale, y * lp.row_scale
        rp, rd, p, d, lam = _residuals(self.c, lp.q_orig, lp.lb_orig, lp.ub_orig, lp.lb_finite, lp.ub_finite,
                                       lp.m_eq, xo, yo, kx / lp.row_scale, kty / lp.col_scale)
        rel = torch.stack([rp / (1 + lp.q_norm), rd / (1 + self.c_norm),
                           (p - d).abs() / (1 + p.abs() + d.abs())], 1)
        return xo, yo, p, d, rel, lam

    def _steps(self, count: int) -> None:
        """``count`` adaptive PDHG iterations of every row (no host synchronisation)."""
        factors = [(1 - (k + 1) ** -_STEP_SHRINK, 1 + (k + 1) ** -_STEP_GROW)
                   for k in range(self.k + 1, self.k + count + 1)]
        state = {"z": self.z, "zsum": self.zsum, "wsum": self.wsum, "eta": self.eta, "w": self.w, "cs": self.cs}
        if self.o.cuda_graphs and self.lp.device.type == "cuda" and count == self.o.eval_every:
            state = _graph_block(self, state, factors)
        else:
            _block(self.lp, self.parts, state, factors)
        self.z, self.zsum, self.wsum, self.eta = state["z"], state["zsum"], state["wsum"], state["eta"]
        self.k += count
        self.since += count

    def _finish(self, mask: torch.Tensor, code: int, x, y, p, d, rel, _lam=None) -> None:
        """Write out the running instances in ``mask`` with status ``code``."""
        rows = mask.nonzero().squeeze(1)
        if rows.numel() == 0:
            return
        dest = self.idx[rows]
        r, lp = self.res, self.lp
        r.x[dest], r.y_eq[dest], r.y_ub[dest] = x[rows], y[rows, :lp.m_eq], y[rows, lp.m_eq:]
        r.primal_objective[dest], r.dual_objective[dest] = p[rows], d[rows]
        r.primal_residual[dest], r.dual_residual[dest], r.gap[dest] = rel[rows, 0], rel[rows, 1], rel[rows, 2]
        r.iterations[dest] = self.k
        for i in dest.tolist():
            self.codes[i] = code

    def _keep(self, keep: torch.Tensor) -> None:
        """Drop every running instance outside ``keep``."""
        for name in ("idx", "c", "c_norm", "cs", "z", "w", "eta", "zsum", "wsum", "zr", "r_kkt", "last_ratio",
                     "since", "prev", "cert", "alive"):
            setattr(self, name, getattr(self, name)[keep])

    # ----------------------------------------------------------------- the check
    def _check(self, started: float) -> bool:
        """Convergence, certificates, limits and restarts; returns False when nothing is left running."""
        tol, lp = self.tol, self.lp
        za = torch.where((self.wsum > 0)[:, None], self.zsum / self.wsum.clamp_min(1e-300)[:, None], self.z)
        cur, avg = self._unscaled(self.z), self._unscaled(za)
        kc, ka = self._scaled_kkt(self.z), self._scaled_kkt(za)  # [b, 3] each
        cs_norm = 1 + torch.linalg.vector_norm(self.cs, dim=1)
        alive = self.alive
        conv_cur = alive & (cur[4] <= tol).all(1) & (kc[:, 0] <= tol * (1 + lp.q_scaled_norm)) \
            & (kc[:, 1] <= tol * cs_norm)
        conv_avg = alive & (avg[4] <= tol).all(1) & (ka[:, 0] <= tol * (1 + lp.q_scaled_norm)) \
            & (ka[:, 1] <= tol * cs_norm) & ~conv_cur
        broken = alive & ~(torch.isfinite(self.z).all(1) & torch.isfinite(self.eta)) & ~conv_cur & ~conv_avg
        self._finish(conv_cur, _CODE["OPTIMAL"], *cur)
        self._finish(conv_avg, _CODE["OPTIMAL"], *avg)
        self._finish(broken, _CODE["NUMERICAL_ERROR"], *cur)
        done = conv_cur | conv_avg | broken
        if self.o.detect_infeasibility:
            infeasible, unbounded = self._certificates(cur[1], cur[5])
            infeasible = infeasible & alive & ~done
            unbounded = unbounded & alive & ~done & ~infeasible
            self._finish(infeasible, _CODE["INFEASIBLE"], *cur)
            self._finish(unbounded, _CODE["UNBOUNDED"], *cur)
            done = done | infeasible | unbounded
        limit = None
        if self.k >= self.o.max_iter:
            limit = "ITERATION_LIMIT"
        elif self.o.time_limit is not None and time.perf_counter() - started >= self.o.time_limit:
            limit = "TIME_LIMIT"
        if limit is not None:
            self._finish(alive & ~done, _CODE[limit], *cur)
            return False
        self.alive = keep = alive & ~done
        n_alive, rows = int(keep.sum()), keep.shape[0]
        if n_alive == 0:
            return False
        # drop finished rows; with CUDA graphs only once half of them are finished (a new batch size is a new
        # graph); until then finished rows keep iterating, ignored
        if n_alive < rows and (not self.o.cuda_graphs or 2 * n_alive <= rows):
            self._keep(keep)
            za, kc, ka = za[keep], kc[keep], ka[keep]
        self._restart(za, kc, ka)
        return True

    def _restart(self, za: torch.Tensor, kc: torch.Tensor, ka: torch.Tensor) -> None:
        """PDLP's adaptive restart (weighted KKT error ``kc``/``ka`` of the current/average iterate, scaled space)
        and primal weight update."""
        e_cur, e_avg = self._weighted(kc), self._weighted(ka)
        use_avg = e_avg < e_cur
        e_last = self._weighted(self.r_kkt)
        tiny = torch.finfo(self.lp.dtype).tiny
        ratio = torch.where(e_last > tiny, torch.minimum(e_cur, e_avg) / e_last.clamp_min(tiny), 1.0)
        restart = (ratio <= _BETA_SUFFICIENT) | ((ratio <= _BETA_NECESSARY) & (ratio > self.last_ratio)) \
            | (self.since >= _BETA_ARTIFICIAL * self.k)
        cand = torch.where(use_avg[:, None], za, self.z)
        (cx, cy, _, _), (rx, ry, _, _) = self.split(cand), self.split(self.zr)
        dxn, dyn = torch.linalg.vector_norm(cx - rx, dim=1), torch.linalg.vector_norm(cy - ry, dim=1)
        update = restart & (dxn > 1e-10) & (dyn > 1e-10)
        new_w = torch.exp(_WEIGHT_SMOOTHING * torch.log(dyn.clamp_min(1e-300) / dxn.clamp_min(1e-300))
                          + (1 - _WEIGHT_SMOOTHING) * torch.log(self.w))
        self.w = torch.where(update, new_w, self.w)
        r = restart[:, None]
        self.z = torch.where(r, cand, self.z)
        self.zr = torch.where(r, cand, self.zr)
        self.r_kkt = torch.where(r, torch.where(use_avg[:, None], ka, kc), self.r_kkt)
        self.last_ratio = torch.where(restart, 1.0, ratio)
        self.since = torch.where(restart, 0.0, self.since)
        self.zsum = torch.where(r, 0.0, self.zsum)
        self.wsum = torch.where(restart, 0.0, self.wsum)
        self.prev = self.z

    def _certificates(self, y_o: torch.Tensor, lam_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate Farkas certificates from the iterate differences since the previous check.

        Infeasible: a dual ray ``v`` (``v_ineq >= 0``) with ``<q, v> > max_{x in box} <K^T v, x>``.
        Unbounded: a primal ray ``d`` with ``<c, d> < 0``, ``K_eq d = 0``, ``K_ineq d >= 0`` inside the box's
        recession cone. Each must beat its error bound (violation x current iterate norm) by
        ``_CERTIFICATE_MARGIN``, with a value above ``sqrt(eps)`` x the magnitude of its terms, at two checks
        in a row. Returns ``(infeasible [b], unbounded [b])``.
        """
        lp = self.lp
        eps = math.sqrt(torch.finfo(lp.dtype).eps)
        x, y, kx, _ = self.split(self.z)
        px, py, pkx, _ = self.split(self.prev)
        v = y - py  # dual ray, scaled space, projected on v_ineq >= 0
        if lp.m_ub:
            v = torch.cat([v[:, :lp.m_eq], v[:, lp.m_eq:].clamp_min(0)], 1)
        r = (v @ lp.K) / lp.col_scale  # K^T v, original space [b, n]
        vo = v * lp.row_scale
        bad = torch.where(r > 0, ~lp.ub_finite, ~lp.lb_finite) & (r != 0)  # no finite bound to pay for r_i
        support = torch.where(bad, 0.0, torch.where(r > 0, r * torch.where(lp.ub_finite, lp.ub_orig, 0.0),
                                                    r * torch.where(lp.lb_finite, lp.lb_orig, 0.0)))
        value = (lp.q_orig * vo).sum(1) - support.sum(1)
        size = (lp.q_orig.abs() * vo.abs()).sum(1) + support.abs().sum(1)
        x_norm = torch.linalg.vector_norm(x * lp.col_scale, dim=1)
        err = torch.linalg.vector_norm(torch.where(bad, r, 0.0), dim=1) * (1 + x_norm)
        infeasible = (value > eps * size) & (value > _CERTIFICATE_MARGIN * err) & (value > 0)
        if lp.bounded_box:  # a bounded box leaves no ray of decrease
            unbounded = torch.zeros_like(infeasible)
        else:
            d = (x - px) * lp.col_scale
            kd = (kx - pkx) / lp.row_scale
            row_err = torch.cat([kd[:, :lp.m_eq], kd[:, lp.m_eq:].clamp_max(0)], 1)
            box_err = torch.where(lp.ub_finite, d.clamp_min(0), 0.0) + torch.where(lp.lb_finite, d.clamp_max(0), 0.0)
            dec = -(self.c * d).sum(1)
            err = torch.linalg.vector_norm(row_err, dim=1) * (1 + torch.linalg.vector_norm(y_o, dim=1)) \
                + torch.linalg.vector_norm(box_err, dim=1) * (1 + lam_norm)
            unbounded = (dec > eps * (self.c.abs() * d.abs()).sum(1)) & (dec > _CERTIFICATE_MARGIN * err)
        self.cert = torch.where(torch.stack([infeasible, unbounded], 1), self.cert + 1, 0)
        return self.cert[:, 0] >= 2, self.cert[:, 1] >= 2

    def run(self) -> PDHGResult:
        started = time.perf_counter()
        if self.c.shape[0]:
            while True:
                self._steps(min(self.o.eval_every, self.o.max_iter - self.k))
                if not self._check(started):
                    break
        self.res.status = [STATUSES[c] for c in self.codes]
        return self.res


def _block(lp: LinearProgram, parts: tuple[slice, ...], st: dict, factors, inplace: bool = False) -> None:
    """``len(factors)`` adaptive PDHG iterations (module docstring, steps 2-3) on the state ``st`` of every row.

    ``st`` holds ``z [b, 2n + 2m]``, the step-weighted sums ``zsum``, ``wsum``, the steps ``eta [b]``, the primal
    weights ``w [b]`` and the scaled objectives ``cs [b, n]``; ``factors`` the step-size factors
    ``(1 - (k + 1)^-0.3, 1 + (k + 1)^-0.6)`` of each iteration (floats, or 0-d tensors inside a CUDA graph).
    ``zsum``/``wsum`` are updated in place; ``z``/``eta`` are replaced (``inplace=False``) or overwritten.
    """
    sx, sy, skx, skty = parts
    z, zsum, wsum, eta, w, cs = st["z"], st["zsum"], st["wsum"], st["eta"], st["w"], st["cs"]
    for shrink, grow in factors:
        tau, sigma = (eta / w)[:, None], (eta * w)[:, None]
        x, y, kx, kty = z[:, sx], z[:, sy], z[:, skx], z[:, skty]
        xn = torch.addcmul(x, tau, kty - cs).clamp_(lp.lb, lp.ub)  # x - tau (c - K^T y), projected
        kxn = xn @ lp.Kt  # [b, m]
        yn = torch.addcmul(y, sigma, (lp.q + kx).sub_(kxn, alpha=2))  # y + sigma (q - K (2 x' - x))
        if lp.m_ub:
            yn[:, lp.m_eq:].clamp_(min=0)
        zn = torch.cat([xn, yn, kxn, yn @ lp.K], 1)
        d = zn - z
        dx, dy = d[:, sx], d[:, sy]
        move = torch.linalg.vecdot(dx, dx) * w + torch.linalg.vecdot(dy, dy) / w
        inter = torch.linalg.vecdot(dy, d[:, skx]).abs_().mul_(2)
        eta_max = (move / inter).nan_to_num_(nan=math.inf)  # no move at all: accept
        accept = eta <= eta_max  # [b]
        new_eta = torch.fmin(eta_max * shrink, eta * grow)
        z = torch.where(accept[:, None], zn, z)
        step = eta * accept
        zsum.addcmul_(step[:, None], z)
        wsum.add_(step)
        eta = new_eta
    if inplace:
        st["z"].copy_(z)
        st["eta"].copy_(eta)
    else:
        st["z"], st["eta"] = z, eta


def _graph_block(run: _Run, state: dict, factors: list[tuple[float, float]]) -> dict:
    """:func:`_block` replayed from a CUDA graph (``PDHG(cuda_graphs=True)``): one launch per block.

    The graph of a batch size and block length is captured once (after a warm-up block on a side stream) and
    cached on the :class:`LinearProgram`; its static buffers receive the state before each replay and the
    results are copied out after it. Not thread-safe for one ``LinearProgram`` (``ILP`` keeps one per thread).
    """
    lp, count = run.lp, len(factors)
    cache = lp.__dict__.setdefault("_graphs", {})
    key = (state["z"].shape[0], count)
    if key not in cache:
        static = {k: v.clone() for k, v in state.items()}
        fac = torch.tensor(factors, dtype=lp.dtype, device=lp.device)  # [count, 2]
        fac_views = [(fac[i, 0], fac[i, 1]) for i in range(count)]
        side = torch.cuda.Stream(lp.device)
        side.wait_stream(torch.cuda.current_stream(lp.device))
        with torch.cuda.stream(side):
            _block(lp, run.parts, static, fac_views, inplace=True)  # warm-up: cuBLAS workspaces, allocator
        torch.cuda.current_stream(lp.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            _block(lp, run.parts, static, fac_views, inplace=True)
        cache[key] = (graph, static, fac)
    graph, static, fac = cache[key]
    for k, v in state.items():
        static[k].copy_(v)
    fac.copy_(torch.tensor(factors, dtype=lp.dtype))
    graph.replay()
    return {k: static[k].clone() for k in ("z", "zsum", "wsum", "eta")}


def _round_vertex(lp: LinearProgram, c: torch.Tensor, res: PDHGResult, tol: float) -> None:
    """Round optimal instances to the nearest integer point; keep it only when feasible and optimal (in place)."""
    ok = res.optimal
    if not bool(ok.any()):
        return
    xr = torch.round(res.x)
    kx = xr @ lp.K_orig.T  # [B, m]
    viol = torch.cat([(kx[:, :lp.m_eq] - lp.q_orig[:lp.m_eq]).abs(),
                      (lp.q_orig[lp.m_eq:] - kx[:, lp.m_eq:]).clamp_min(0),
                      (lp.lb_orig - xr).clamp_min(0), (xr - lp.ub_orig).clamp_min(0)], 1).amax(1)
    obj = (c * xr).sum(1)
    good = (viol <= tol * (1 + lp.q_inf)) & (obj - res.primal_objective <= tol * (1 + res.primal_objective.abs()))
    res.x = torch.where((ok & good)[:, None], xr, res.x)
    res.status = [("ROUNDING_FAILED" if (o and not g) else s)
                  for s, o, g in zip(res.status, ok.tolist(), good.tolist(), strict=True)]


# ===================================================================== ILP back-end
def solve_ilp(ilp, theta: torch.Tensor) -> torch.Tensor:
    """:class:`~discreteopt.solvers.ILP`'s ``backend="pdhg"``: ``theta [B, n] -> x [B, n]`` on ``theta``'s device.

    Solves in the ILP's sense (``max`` negates ``theta``), caches the preconditioned program per thread, device
    and dtype, and raises :class:`~discreteopt.solvers.base.InstanceError` for the first instance that is not
    ``"OPTIMAL"``.
    """
    from .base import InstanceError

    opts: PDHG = ilp.pdhg
    if ilp.time_limit is not None and opts.time_limit is None:
        opts = dataclasses.replace(opts, time_limit=ilp.time_limit)
    dtype = opts.compute_dtype(theta.device, theta.dtype)
    cache = ilp._local.__dict__.setdefault("pdhg_programs", {})
    key = (str(theta.device), dtype)
    lp = cache.get(key)
    if lp is None:
        base = next(iter(cache.values()), None)
        if base is not None:
            lp = base.to(theta.device, dtype)
        else:
            (a_ub, b_ub), (a_eq, b_eq) = _unit_rows(ilp.A_ub, ilp.b_ub, ilp.lb, ilp.ub), \
                _unit_rows(ilp.A_eq, ilp.b_eq, ilp.lb, ilp.ub)
            lp = LinearProgram(A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, lb=ilp.lb, ub=ilp.ub, n=ilp.n,
                               device=theta.device, dtype=dtype, ruiz_iters=opts.ruiz_iters)
        cache[key] = lp
    c = _unit_objective(theta.to(dtype))  # [B, n], each row times a power of two: the same optimum
    res = opts.solve(lp, -c if ilp.sense == "max" else c)
    for b, status in enumerate(res.status):
        if status != "OPTIMAL":
            why = ("the LP optimum's nearest integer point is infeasible or worse than the LP optimum (not totally "
                   "unimodular, or tied optimal vertices); LP solved in " if status == "ROUNDING_FAILED" else "")
            raise InstanceError("ILP[pdhg]", b, status, why + res.detail(b))
    return res.x


def _unit_objective(c: torch.Tensor) -> torch.Tensor:
    """``c [B, n]`` with each row times the power of two that brings its largest ``|entry|`` into ``[0.5, 1)``
    (exact, subnormal to 1.8e308; zero rows unchanged): PDHG's tolerances have an absolute floor, so a row of
    ``1e-300`` took any feasible point as optimal and a row of ``1e300`` never converged."""
    top = c.abs().amax(dim=1, keepdim=True)  # [B, 1]
    _, e = torch.frexp(torch.where(top > 0, top, torch.ones_like(top)))
    half = torch.div(e, 2, rounding_mode="floor")
    return torch.ldexp(torch.ldexp(c, -half), half - e)  # two steps: 2**-e alone may overflow (e up to -1073)


def _unit_rows(a: np.ndarray | None, b: np.ndarray | None, lb: np.ndarray,
               ub: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Rows ``a [m, n]`` and right-hand sides ``b [m]`` of ``a x <= b`` or ``a x = b`` as PDHG gets them
    from an ILP, the same feasible set exactly: every row whose largest ``|coefficient|`` lies outside
    ``[2**-20, 2**20]`` is multiplied (with ``b``) by the power of two that brings it into ``[0.5, 1)`` (subnormal
    rows included), and a right-hand side beyond the row's activity range over the box ``lb <= x <= ub`` (a
    redundant or an infeasible row) is moved to just outside that range, so that no norm of ``b`` overflows (a
    right-hand side of 1e200 made every tolerance infinite: an infeasible program came back "optimal")."""
    if a is None:
        return None, None
    top = np.abs(a).max(1, initial=0.0)  # [m]
    off = (top > 0) & ((top < 2.0**-20) | (top > 2.0**20))
    shift = np.where(off, -np.frexp(np.where(off, top, 1.0))[1], 0)  # [m]
    a = np.ldexp(a, shift[:, None])
    with np.errstate(over="ignore", invalid="ignore"):
        rhs = np.ldexp(b, shift)
        lo = np.where(a > 0, a * lb, a * ub)  # [m, n] smallest contribution of each entry
        hi = np.where(a > 0, a * ub, a * lb)
        lo = np.where(a == 0, 0.0, lo).sum(1)
        hi = np.where(a == 0, 0.0, hi).sum(1)  # [m] activity range (+-inf for unbounded boxes)
    margin_hi, margin_lo = 1.0 + np.abs(hi), 1.0 + np.abs(lo)
    above = np.isfinite(hi) & (rhs > hi + margin_hi)  # redundant (<=) or infeasible (=)
    below = np.isfinite(lo) & (rhs < lo - margin_lo)  # infeasible
    rhs = np.where(above, hi + margin_hi, rhs)
    rhs = np.where(below, lo - margin_lo, rhs)
    if not np.isfinite(rhs).all():
        raise ValueError("a right-hand side overflows float64 once its row is scaled, and the bounds leave the row's "
                         "activity unbounded; tighten the bounds or rescale the row")
    return a, rhs  # (the same rule keeps <= rows redundant and = rows infeasible)


def flow_constraints(edges, num_nodes: int, source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """A shortest path as an LP: flow conservation ``A_eq [N, E]``, ``b_eq [N]`` of one unit ``source -> target``.

    ``A_eq[v, e] = +1`` when edge ``e = (v, w)`` leaves ``v`` and ``-1`` when it enters ``v``; ``b_eq`` is ``+1``
    at the source, ``-1`` at the target, 0 elsewhere. With ``0 <= x <= 1`` the matrix is totally unimodular, so
    the LP ``min <c, x>`` has an integral optimal vertex, the edge indicator of a shortest path when ``c >= 0``
    (``PDHG(round="vertex")`` recovers it). ``edges``: integer array ``[E, 2]`` of ``(tail, head)`` node ids,
    e.g. ``GraphShortestPath.grid(5, 5).edges``.
    """
    edges = np.asarray(edges)
    if edges.ndim != 2 or edges.shape[1] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise ValueError(f"edges must be an integer array [E, 2]; got shape {edges.shape}, dtype {edges.dtype}")
    if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
        raise ValueError(f"edges must hold node ids in [0, num_nodes={num_nodes})")
    for name, v in (("source", source), ("target", target)):
        if not 0 <= int(v) < num_nodes:
            raise ValueError(f"{name} must be a node id in [0, {num_nodes}); got {v!r}")
    e = np.arange(len(edges))
    a = np.zeros((num_nodes, len(edges)))
    np.add.at(a, (edges[:, 0], e), 1.0)
    np.add.at(a, (edges[:, 1], e), -1.0)
    b = np.zeros(num_nodes)
    b[int(source)] += 1.0
    b[int(target)] -= 1.0
    return a, b
