"""Predict-then-optimise benchmark on PyEPO's problems, optionally side by side with PyEPO itself.

Problems (data from the published generators, the same draws as PyEPO's ``genData`` for a seed):

* ``shortest_path`` -- the 5x5 grid, 40 arc costs, minimise (:func:`~discreteopt.data.generate_shortest_path`),
  solved by the exact DAG dynamic programme (:func:`lattice_solver`);
* ``knapsack`` -- ``knapsack_items`` items, ``knapsack_dim`` capacity rows of ``knapsack_capacity`` each, maximise
  (:func:`~discreteopt.data.generate_knapsack`), solved by :class:`~discreteopt.solvers.Knapsack` on the weights
  in hundredths (exact: PyEPO's weights have two decimals).

For every problem, polynomial degree, noise width and seed, a linear model ``x -> c_hat`` is trained on
``n_train`` instances with each method and scored by the normalised regret on ``n_test`` instances
(:func:`discreteopt.evaluation.evaluate_regret`, exact for negative predictions too). Methods (PyEPO's names):

* ``2s``    -- two-stage: mean squared error on the costs (no solver in training);
* ``spo+``  -- SPO+ loss (Elmachtoub & Grigas, 2022);
* ``dbb``   -- blackbox interpolation (Vlastelica et al., 2020), loss = regret of the decision;
* ``nid``   -- negative identity (Sahoo et al., 2023), loss = regret of the decision;
* ``dpo``   -- perturbed optimizer (Berthet et al., 2020), loss = squared error of the expected solution;
* ``pfyl``  -- perturbed Fenchel-Young loss (Berthet et al., 2020);
* ``imle``  -- I-MLE (Niepert et al., 2021) with Sum-of-Gamma noise (k = 5, PyEPO's default), loss = regret;
* ``aimle`` -- adaptive I-MLE (Minervini et al., 2023), relative step, loss = regret;
* ``nce``, ``cmap`` -- noise-contrastive estimation and contrastive MAP over a solution pool (Mulamba et al., 2021);
* ``ltr-point``, ``ltr-pair``, ``ltr-list`` -- learning to rank over the pool (Mandi et al., 2022);
* ``pg``    -- perturbation gradient, backward differences (PGB; Huang & Gupta, 2024).

With ``pyepo=True`` (the ``bench`` extra installed), every method PyEPO also has is trained a second time with
PyEPO 2.x's implementation in the same process (same data, initial weights, batch order, optimiser and
hyper-parameters; PyEPO's OR-Tools models: GLOP for the shortest path, SCIP for the knapsack) and scored by the same
exact evaluation. Rows carry ``library`` = ``"discreteopt"`` or ``"pyepo"`` and ``sec_per_epoch``.

Adding a method is one line in :data:`METHOD_TABLE`: its name, a factory for this library and (optionally) one
for PyEPO.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import generate_knapsack, generate_shortest_path
from ..evaluation import evaluate_regret
from .common import format_table, progress, pyplot, save_json, seed_everything

PROBLEMS = ("shortest_path", "knapsack")

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (c_hat, c, w) -> scalar


@dataclasses.dataclass
class Task:
    """What a method factory gets: the problem's solver (or PyEPO model), its sense, the config and the
    training solutions (pool methods seed their pool with them, as PyEPO does)."""

    solver: Any
    sense: str
    cfg: PtOConfig
    x_train: torch.Tensor
    c_train: torch.Tensor
    w_train: torch.Tensor
    seed: int


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method: ``ours(task) -> loss_fn`` and, when PyEPO has it, ``pyepo(task) -> loss_fn``."""

    ours: Callable[[Task], LossFn]
    pyepo: Callable[[Task], LossFn] | None = None


# ------------------------------------------------------------------------------------- this library's methods
def _decision_regret(task: Task) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``sign <c, y - w*>``: the regret of a decision ``y`` under the true costs (>= 0 for feasible ``y``)."""
    sign = 1.0 if task.sense == "min" else -1.0
    return lambda y, c, w: sign * ((y - w) * c).sum(-1).mean()


def _layer_method(make_estimator: Callable[[Task], Any], loss: str = "regret") -> Callable[[Task], LossFn]:
    def factory(task: Task) -> LossFn:
        from ..layers import DiscreteLayer

        layer = DiscreteLayer(task.solver, make_estimator(task), seed=task.seed)
        if loss == "squared":
            return lambda c_hat, c, w: ((layer(c_hat) - w) ** 2).sum(-1).mean()
        regret = _decision_regret(task)
        return lambda c_hat, c, w: regret(layer(c_hat), c, w)
    return factory


def _sog(task: Task):
    from ..noise import SumOfGamma

    return SumOfGamma(k=task.cfg.imle_k, n_iter=10, scale=task.cfg.sigma)


def _pool(task: Task):
    from ..solution_cache import SolutionCache

    return SolutionCache.from_solutions(task.w_train, solve_ratio=task.cfg.solve_ratio, seed=task.seed)


def _two_stage(task: Task) -> LossFn:
    return lambda c_hat, c, w: ((c_hat - c) ** 2).mean()


def _spo(task: Task) -> LossFn:
    from ..losses import SPOPlus

    spo = SPOPlus(task.solver)
    return lambda c_hat, c, w: spo(c_hat, c, w)


def _pfyl(task: Task) -> LossFn:
    from ..estimators import PerturbedOptimizer
    from ..layers import DiscreteLayer
    from ..losses import FenchelYoungLoss

    fy = FenchelYoungLoss(DiscreteLayer(task.solver, PerturbedOptimizer(task.cfg.sigma, task.cfg.samples),
                                        seed=task.seed))
    return lambda c_hat, c, w: fy(c_hat, w)


def _pool_loss(name: str, true: str) -> Callable[[Task], LossFn]:
    """A :class:`~discreteopt.losses._pool.PoolLoss` fed the true solutions (``true="w"``) or costs (``"c"``)."""
    def factory(task: Task) -> LossFn:
        from .. import losses

        fn = getattr(losses, name)(task.solver, _pool(task))
        return (lambda c_hat, c, w: fn(c_hat, w)) if true == "w" else (lambda c_hat, c, w: fn(c_hat, c))
    return factory


def _pg(task: Task) -> LossFn:
    from ..losses import PerturbationGradient

    pg = PerturbationGradient(task.solver, h=task.cfg.pg_h, variant="backward")
    return lambda c_hat, c, w: pg(c_hat, c)


def _est(name: str, **kwargs: Callable[[Task], Any]) -> Callable[[Task], Any]:
    """``estimators.<name>(**{k: f(task)})``."""
    def make(task: Task):
        from .. import estimators

        return getattr(estimators, name)(**{k: f(task) for k, f in kwargs.items()})
    return make


# ------------------------------------------------------------------------------------- PyEPO's methods
def _pyepo_solution_method(cls: str, loss: str = "regret", **kwargs: Callable[[Task], Any]):
    def factory(task: Task) -> LossFn:
        import pyepo.func

        module = getattr(pyepo.func, cls)(task.solver, **{k: f(task) for k, f in kwargs.items()})
        if loss == "squared":
            return lambda c_hat, c, w: ((module(c_hat) - w) ** 2).sum(-1).mean()
        regret = _decision_regret(task)
        return lambda c_hat, c, w: regret(module(c_hat), c, w)
    return factory


def _pyepo_spo(task: Task) -> LossFn:
    import pyepo.func

    spo = pyepo.func.SPOPlus(task.solver)
    return lambda c_hat, c, w: spo(c_hat, c, w, (c * w).sum(-1, keepdim=True))


def _pyepo_pfyl(task: Task) -> LossFn:
    import pyepo.func

    fy = pyepo.func.perturbedFenchelYoung(task.solver, n_samples=task.cfg.samples, sigma=task.cfg.sigma,
                                          seed=task.seed)
    return lambda c_hat, c, w: fy(c_hat, w)


def _pyepo_dataset(task: Task):
    """PyEPO's ``optDataset`` of the training set (it solves every instance with PyEPO's own model)."""
    from pyepo.data.dataset import optDataset

    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        return optDataset(task.solver, task.x_train.numpy(), task.c_train.numpy())


def _pyepo_pool(cls: str, true: str) -> Callable[[Task], LossFn]:
    def factory(task: Task) -> LossFn:
        import pyepo.func

        fn = getattr(pyepo.func, cls)(task.solver, solve_ratio=task.cfg.solve_ratio, dataset=_pyepo_dataset(task))
        return (lambda c_hat, c, w: fn(c_hat, w)) if true == "w" else (lambda c_hat, c, w: fn(c_hat, c))
    return factory


def _pyepo_pg(task: Task) -> LossFn:
    import pyepo.func

    pg = pyepo.func.perturbationGradient(task.solver, sigma=task.cfg.pg_h, two_sides=False)
    return lambda c_hat, c, w: pg(c_hat, c)


def _pyepo_sog(task: Task):
    from pyepo.func.utils import sumGammaDistribution

    return sumGammaDistribution(kappa=task.cfg.imle_k, n_iterations=10, seed=task.seed)


def _cfg(name: str) -> Callable[[Task], Any]:
    return lambda task: getattr(task.cfg, name)


#: name -> Method(this library's factory, PyEPO's factory or None); one line per method
METHOD_TABLE: dict[str, Method] = {
    "2s": Method(_two_stage),
    "spo+": Method(_spo, _pyepo_spo),
    "dbb": Method(_layer_method(_est("Interpolation", lam=_cfg("lam"))),
                  _pyepo_solution_method("blackboxOpt", lambd=_cfg("lam"))),
    "nid": Method(_layer_method(_est("NegativeIdentity")), _pyepo_solution_method("negativeIdentity")),
    "dpo": Method(_layer_method(_est("PerturbedOptimizer", scale=_cfg("sigma"), samples=_cfg("samples")), "squared"),
                  _pyepo_solution_method("perturbedOpt", "squared", n_samples=_cfg("samples"), sigma=_cfg("sigma"),
                                         seed=lambda t: t.seed)),
    "pfyl": Method(_pfyl, _pyepo_pfyl),
    "imle": Method(_layer_method(_est("IMLE", lam=_cfg("lam"), samples=_cfg("samples"), noise=_sog)),
                   _pyepo_solution_method("implicitMLE", n_samples=_cfg("samples"), sigma=_cfg("sigma"),
                                          lambd=_cfg("lam"), distribution=_pyepo_sog)),
    # PyEPO's AIMLE: step alpha * ||c_hat|| / ||dL/dy||, alpha += 1e-3 while fewer than all gradient entries are
    # non-zero (so it grows slowly from 1): the same rule here is relative=True, target = all variables, eta = 1e-3
    "aimle": Method(_layer_method(_est("AIMLE", samples=_cfg("samples"), noise=_sog, relative=lambda t: True,
                                       target=lambda t: float(t.c_train.shape[1]), eta=lambda t: 1e-3)),
                    _pyepo_solution_method("adaptiveImplicitMLE", n_samples=_cfg("samples"), sigma=_cfg("sigma"),
                                           distribution=_pyepo_sog)),
    "nce": Method(_pool_loss("NCE", "w"), _pyepo_pool("NCE", "w")),
    "cmap": Method(_pool_loss("ContrastiveMAP", "w"), _pyepo_pool("contrastiveMAP", "w")),
    "ltr-point": Method(_pool_loss("PointwiseLTR", "c"), _pyepo_pool("pointwiseLearningToRank", "c")),
    "ltr-pair": Method(_pool_loss("PairwiseLTR", "c"), _pyepo_pool("pairwiseLearningToRank", "c")),
    "ltr-list": Method(_pool_loss("ListwiseLTR", "c"), _pyepo_pool("listwiseLearningToRank", "c")),
    "pg": Method(_pg, _pyepo_pg),
}

METHODS = tuple(METHOD_TABLE)


@dataclasses.dataclass
class PtOConfig:
    """Settings of the benchmark (the CLI's ``discreteopt bench`` options)."""

    #: methods to train (see the module docstring)
    methods: tuple[str, ...] = METHODS
    #: problems: shortest_path (5x5 grid, minimise), knapsack (maximise)
    problems: tuple[str, ...] = ("shortest_path",)
    #: polynomial degrees of the cost model (1 = linear, the model is then well specified)
    degrees: tuple[int, ...] = (1, 2, 4, 6)
    #: half-widths e of the multiplicative noise U(1-e, 1+e)
    noises: tuple[float, ...] = (0.0, 0.5)
    #: seeds: run s uses seed + s for the data (PyEPO's genData) and for torch (initial weights, batches, noise)
    seeds: tuple[int, ...] = (0,)
    n_train: int = 1000
    n_test: int = 1000
    #: number of features
    p: int = 5
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-2
    #: finite-difference step of blackbox (dbb) and I-MLE
    lam: float = 10.0
    #: noise scale of the perturbed methods (dpo, pfyl, imle, aimle)
    sigma: float = 1.0
    #: noise samples per instance of dpo, pfyl, imle and aimle
    samples: int = 10
    #: Sum-of-Gamma k of I-MLE's noise (PyEPO's default 5)
    imle_k: int = 5
    #: finite-difference width of the perturbation gradient (pg; PyEPO's sigma)
    pg_h: float = 0.1
    #: fraction of each batch the pool methods send to the solver (PyEPO's solve_ratio)
    solve_ratio: float = 1.0
    #: knapsack: number of items, capacity rows, capacity of each row
    knapsack_items: int = 32
    knapsack_dim: int = 2
    knapsack_capacity: float = 20.0
    #: base seed of the data generators (PyEPO's default 135)
    seed: int = 135
    #: also train every shared method with PyEPO (needs the optional `pyepo` package)
    pyepo: bool = False
    #: output folder for JSON and PNG files (none: write nothing)
    out: str | None = "runs/bench"
    #: progress bars on stderr
    progress: bool = True

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHOD_TABLE]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}; got {list(self.methods)}")
        if not self.problems or any(p not in PROBLEMS for p in self.problems):
            raise ValueError(f"problems must be a non-empty subset of {', '.join(PROBLEMS)}; got {list(self.problems)}")
        for name in ("n_train", "n_test", "p", "epochs", "batch_size", "samples", "imle_k", "knapsack_items",
                     "knapsack_dim"):
            if isinstance(getattr(self, name), bool) or int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not self.degrees or any(int(d) < 1 for d in self.degrees):
            raise ValueError(f"degrees must be positive integers; got {list(self.degrees)}")
        if not self.noises or any(not 0.0 <= e < 1.0 for e in self.noises):
            raise ValueError(f"noises must be in [0, 1); got {list(self.noises)}")
        if not self.seeds or any(int(s) < 0 for s in self.seeds):
            raise ValueError(f"seeds must be non-negative integers; got {list(self.seeds)}")
        for name in ("lr", "lam", "sigma", "pg_h", "knapsack_capacity"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number; got {getattr(self, name)}")
        if not 0.0 < self.solve_ratio <= 1.0:
            raise ValueError(f"solve_ratio must be in (0, 1]; got {self.solve_ratio}")


#: ``discreteopt bench --preset NAME`` (every command takes quick / default / large / paper): ``quick`` = a smoke
#: run of every method (``--quick`` is its deprecated spelling); ``default`` = the defaults above; ``large`` = the
#: benchmark script's protocol (both problems, noise 0.5, 3 seeds: bars with error bars over seeds); ``paper`` =
#: the protocol of the published table (README: the shortest path, degrees 1 2 4 6, noise 0 and 0.5, 1000/1000
#: instances, 10 epochs, one seed)
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"degrees": (1, 6), "noises": (0.5,), "n_train": 200, "n_test": 200, "epochs": 3},
    "default": {},
    "large": {"problems": ("shortest_path", "knapsack"), "noises": (0.5,), "seeds": (0, 1, 2)},
    "paper": {"problems": ("shortest_path",), "degrees": (1, 2, 4, 6), "noises": (0.0, 0.5), "n_train": 1000,
              "n_test": 1000, "epochs": 10, "seeds": (0,)},
}


# ------------------------------------------------------------------------------------- problems
def lattice_solver():
    """PyEPO's 5x5 right/down grid (40 arcs) as a :class:`~discreteopt.solvers.GraphShortestPath`.

    The grid is acyclic, so the solver runs a dynamic programme in topological order, exact for costs of any
    sign (as an LP solver would be); every path has 8 arcs, so it is also ``shift_invariant``.
    """
    from ..solvers import GraphShortestPath

    solver = GraphShortestPath.grid(5, 5)
    assert solver.shift_invariant  # every path has 8 arcs
    return solver


def solve_exact(solver, costs: torch.Tensor) -> torch.Tensor:
    """Optimal solutions ``[B, d]`` of possibly negative natural arguments ``[B, d]`` (a per-instance shift for
    bounded shift-invariant solvers, see :mod:`discreteopt.evaluation`)."""
    from ..estimators import Shift

    c = costs.detach().double()
    if solver.min_cost is not None:
        c = Shift()(c, solver)
    return solver.solve(c).float()


def make_problem(problem: str, cfg: PtOConfig, deg: int, noise: float, seed: int):
    """Data (train and test split of one generator call), our solver and, when ``pyepo`` is importable and asked
    for, PyEPO's model of the same problem."""
    n = cfg.n_train + cfg.n_test
    if problem == "shortest_path":
        data = generate_shortest_path(n, p=cfg.p, deg=deg, noise_width=noise, seed=seed)
        solver, sense = lattice_solver(), "min"
    else:
        from ..solvers import Knapsack

        data = generate_knapsack(n, p=cfg.p, num_items=cfg.knapsack_items, dim=cfg.knapsack_dim, deg=deg,
                                 noise_width=noise, seed=seed)
        capacity = np.full(cfg.knapsack_dim, float(cfg.knapsack_capacity))
        solver = Knapsack(data.weights_int, np.floor(np.round(capacity * 100, 6)))  # hundredths: exact
        sense = "max"
    pyepo_model = None
    if cfg.pyepo:
        from pyepo.model import ort

        if problem == "shortest_path":
            pyepo_model = ort.shortestPathModel(grid=(5, 5), solver="glop")
        else:
            pyepo_model = ort.knapsackModel(data.weights, capacity, solver="scip")
    return data.split(cfg.n_train), solver, sense, pyepo_model


# ------------------------------------------------------------------------------------- training
def _evaluate(model: nn.Module, solver, x: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> float:
    return evaluate_regret(model, solver, [(x, c, w)]).normalized


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: LossFn, x: torch.Tensor, c: torch.Tensor,
                w: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[float]:
    """One epoch of ``loss_fn(model(x_b), c_b, w_b)`` steps over batches of ``batch_size`` in the order of
    ``torch.randperm(len(x), generator=generator)`` (PyEPO's loop); returns the per-step losses."""
    losses = []
    for idx in torch.randperm(len(x), generator=generator).split(batch_size):
        loss = loss_fn(model(x[idx]), c[idx], w[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def run_one(method: str, library: str, task: Task, test: tuple[torch.Tensor, ...], our_solver,
            init_state: dict) -> dict[str, Any]:
    """Train the linear model with ``method`` of ``library`` from ``init_state``; test regret, curve, timing."""
    cfg = task.cfg
    x_tr, c_tr, w_tr = task.x_train, task.c_train, task.w_train
    x_te, c_te, w_te = test
    model = nn.Linear(x_tr.shape[1], c_tr.shape[1])
    model.load_state_dict(init_state)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    spec = METHOD_TABLE[method]
    torch.manual_seed(task.seed)
    loss_fn = (spec.ours if library == "discreteopt" else spec.pyepo)(task)
    gen = torch.Generator().manual_seed(task.seed)
    initial = _evaluate(model, our_solver, x_te, c_te, w_te)
    curve, train_seconds = [], 0.0
    for _ in range(cfg.epochs):
        t0 = time.perf_counter()
        ep = train_epoch(model, opt, loss_fn, x_tr, c_tr, w_tr, cfg.batch_size, gen)
        train_seconds += time.perf_counter() - t0
        curve.append(float(np.mean(ep)))
    return {"regret": _evaluate(model, our_solver, x_te, c_te, w_te), "initial_regret": initial,
            "loss_curve": curve, "sec_per_epoch": train_seconds / cfg.epochs}


def run_benchmark(cfg: PtOConfig) -> dict[str, Any]:
    """All (problem, degree, noise, seed, method, library) runs; JSON + PNG under ``cfg.out``."""
    cfg.validate()
    if cfg.pyepo:
        try:
            import pyepo.func  # noqa: F401
        except ImportError as exc:
            raise ValueError("pyepo=True needs the optional 'pyepo' package (pip install 'discreteopt[bench]')") \
                from exc
    rows, curves = [], {}
    partial = None
    if cfg.out:  # one JSON line per finished run: a long run leaves its rows behind if it is stopped
        partial = Path(cfg.out) / "bench_pto_rows.jsonl"
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text("")
    grid = list(itertools.product(cfg.problems, cfg.degrees, cfg.noises, cfg.seeds))
    for problem, deg, e, s in progress(grid, cfg.progress, desc="bench settings"):
        run_seed = cfg.seed + int(s)
        (train, test), solver, sense, pyepo_model = make_problem(problem, cfg, int(deg), float(e), run_seed)
        x_tr, c_tr = torch.from_numpy(train.x), torch.from_numpy(train.c)  # [n, p], [n, d]
        x_te, c_te = torch.from_numpy(test.x), torch.from_numpy(test.c)
        w_tr, w_te = solve_exact(solver, c_tr), solve_exact(solver, c_te)  # optimal solutions [n, d]
        seed_everything(run_seed)
        init_state = {k: v.clone() for k, v in nn.Linear(x_tr.shape[1], c_tr.shape[1]).state_dict().items()}
        for method in cfg.methods:
            libraries = [("discreteopt", solver)]
            if cfg.pyepo and METHOD_TABLE[method].pyepo is not None:
                libraries.append(("pyepo", pyepo_model))
            for library, backend in libraries:
                task = Task(backend, sense, cfg, x_tr, c_tr, w_tr, run_seed)
                r = run_one(method, library, task, (x_te, c_te, w_te), solver, init_state)
                rows.append({"problem": problem, "deg": int(deg), "noise": float(e), "seed": int(s),
                             "method": method, "library": library, "normalized_regret": r["regret"],
                             "initial_regret": r["initial_regret"], "sec_per_epoch": r["sec_per_epoch"]})
                curves[f"{problem},deg={deg},noise={e},seed={s},{method},{library}"] = r["loss_curve"]
                if partial is not None:
                    with partial.open("a") as fh:
                        fh.write(json.dumps(rows[-1]) + "\n")
    result = {"task": "pyepo_pto", "config": dataclasses.asdict(cfg), "rows": rows, "curves": curves}
    if cfg.out:
        out = Path(cfg.out)
        result["files"] = {"json": str(out / "bench_pto.json"), "figure": str(plot_regret(rows, out / "bench_pto.png"))}
        save_json(result, out / "bench_pto.json")
    return result


# ------------------------------------------------------------------------------------- tables and figure
def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (problem, deg, noise, method, library)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = (r.get("problem", "shortest_path"), r["deg"], r["noise"], r["method"], r.get("library", "discreteopt"))
        groups.setdefault(key, []).append(r)
    out = []
    for (problem, deg, noise, method, library), g in groups.items():
        reg = np.array([r["normalized_regret"] for r in g])
        sec = np.array([r.get("sec_per_epoch", np.nan) for r in g])
        out.append({"problem": problem, "deg": deg, "noise": noise, "method": method, "library": library,
                    "regret_mean": float(reg.mean()), "regret_std": float(reg.std(ddof=1)) if len(reg) > 1 else 0.0,
                    "n_seeds": len(reg), "sec_per_epoch": float(np.nanmean(sec))})
    return out


def results_table(result: dict[str, Any]) -> str:
    """The normalised-regret table (this library, mean over seeds) of a :func:`run_benchmark` result."""
    return regret_table(result["rows"])


def regret_table(rows: list[dict[str, Any]]) -> str:
    """Normalised regret of this library: one row per (deg, noise[, problem]), one column per method (seed mean)."""
    agg = [a for a in aggregate(rows) if a["library"] == "discreteopt"]
    methods = list(dict.fromkeys(a["method"] for a in agg))
    problems = list(dict.fromkeys(a["problem"] for a in agg))
    table: dict[tuple, dict[str, Any]] = {}
    for a in agg:
        key = (a["problem"], a["deg"], a["noise"])
        row = table.setdefault(key, {"deg": a["deg"], "noise": f"{a['noise']:g}", "problem": a["problem"]})
        row[a["method"]] = a["regret_mean"]
    columns = ["deg", "noise", *methods] + (["problem"] if len(problems) > 1 else [])
    return format_table(list(table.values()), columns)


def within_noise(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``|mean_a - mean_b| <= 2 sqrt(sd_a^2 / n_a + sd_b^2 / n_b)`` (two standard errors of the difference),
    or ``<= 1e-3`` absolute when both have a single seed or no spread."""
    se = math.sqrt(a["regret_std"] ** 2 / a["n_seeds"] + b["regret_std"] ** 2 / b["n_seeds"])
    return abs(a["regret_mean"] - b["regret_mean"]) <= max(2 * se, 1e-3)


def comparison_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (problem, deg, noise, method) that both libraries ran: regrets, seconds, speed-up, verdict."""
    agg = {(a["problem"], a["deg"], a["noise"], a["method"], a["library"]): a for a in aggregate(rows)}
    out = []
    for (problem, deg, noise, method, library), ours in agg.items():
        theirs = agg.get((problem, deg, noise, method, "pyepo"))
        if library != "discreteopt" or theirs is None:
            continue
        out.append({"problem": problem, "deg": deg, "noise": noise, "method": method,
                    "regret_discreteopt": ours, "regret_pyepo": theirs,
                    "sec_discreteopt": ours["sec_per_epoch"], "sec_pyepo": theirs["sec_per_epoch"],
                    "speedup": theirs["sec_per_epoch"] / max(ours["sec_per_epoch"], 1e-12),
                    "within_noise": within_noise(ours, theirs)})
    return out


def comparison_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: regret mean +- sd over seeds for both libraries, seconds per epoch, speed-up."""
    comp = comparison_rows(rows)
    if not comp:
        return "(no method was run by both libraries: install pyepo and pass pyepo=True)"

    def fmt(a):
        return f"{a['regret_mean']:.4f} ± {a['regret_std']:.4f}"

    body = [{"problem": c["problem"], "deg": c["deg"], "noise": f"{c['noise']:g}", "method": c["method"],
             "regret discreteopt": fmt(c["regret_discreteopt"]), "regret PyEPO": fmt(c["regret_pyepo"]),
             "same within noise": "yes" if c["within_noise"] else "NO",
             "s/epoch discreteopt": f"{c['sec_discreteopt']:.3f}", "s/epoch PyEPO": f"{c['sec_pyepo']:.3f}",
             "speed-up": f"{c['speedup']:.1f}x"} for c in comp]
    return format_table(body)


def plot_regret(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Grouped bars of normalised regret (mean over seeds, error bars: one standard deviation) per setting and
    method; one panel per problem; PyEPO's runs hatched next to this library's."""
    plt = pyplot()
    agg = aggregate(rows)
    problems = list(dict.fromkeys(a["problem"] for a in agg))
    per_panel = max(1, len(agg) // max(len(problems), 1))
    fig, axes = plt.subplots(len(problems), 1, figsize=(min(24, max(9, 0.12 * per_panel + 3)), 3.8 * len(problems)),
                             squeeze=False)
    for ax, problem in zip(axes[:, 0], problems, strict=True):
        sub = [a for a in agg if a["problem"] == problem]
        series = list(dict.fromkeys((a["method"], a["library"]) for a in sub))
        settings = list(dict.fromkeys((a["deg"], a["noise"]) for a in sub))
        val = {(a["deg"], a["noise"], a["method"], a["library"]): a for a in sub}
        width = 0.85 / len(series)
        colors = {m: plt.cm.tab20(i % 20) for i, m in enumerate(dict.fromkeys(m for m, _ in series))}
        for j, (m, lib) in enumerate(series):
            pts = [val.get((d, e, m, lib)) for d, e in settings]
            ax.bar(np.arange(len(settings)) + j * width, [p["regret_mean"] if p else np.nan for p in pts], width,
                   yerr=[p["regret_std"] if p else 0.0 for p in pts], capsize=2, color=colors[m],
                   hatch="//" if lib == "pyepo" else None, edgecolor="black" if lib == "pyepo" else None,
                   linewidth=0.3, label=m if lib == "discreteopt" else f"{m} (PyEPO)")
        ax.set_xticks(np.arange(len(settings)) + 0.425 - width / 2)
        ax.set_xticklabels([f"deg {d}\nnoise {e:g}" for d, e in settings])
        ax.set_ylabel("normalised regret (test)")
        ax.set_title(f"PyEPO {problem.replace('_', ' ')}, linear model (mean ± sd over seeds)")
        ax.legend(fontsize=6, ncol=2 if len(series) > 14 else 1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


__all__ = ["METHODS", "METHOD_TABLE", "PRESETS", "PROBLEMS", "Method", "PtOConfig", "Task", "aggregate",
           "comparison_rows", "comparison_table", "lattice_solver", "make_problem", "plot_regret", "regret_table", "results_table", "run_benchmark", "run_one", "solve_exact",
           "within_noise"]
