"""``SolutionCache``: answer part of every solver batch from a pool of solutions already seen.

Solution caching (Mulamba, Mandi, Diligenti, Lombardi, Bucarey & Guns, IJCAI 2021, "Contrastive Losses and
Solution Caching for Predict-and-Optimize"; PyEPO's ``solve_ratio``). For a batch of ``N`` instances with
(guarded) natural arguments ``w [N, *E]`` and a pool ``P = {y_1, ..., y_M}`` of feasible solutions::

    solved:  a seeded random subset of round_s(solve_ratio * N) instances -> the solver; new solutions join P
    pooled:  the others -> y_hat_i = argmax_{y in P} <w_i, y>   (argmin for sense == "min")
                         = pool[argmax(w [n, D] @ pool[M, D].T)]   one matrix product on the pool's device

``round_s`` is stochastic rounding (``floor(r N)`` plus one with probability ``frac(r N)``), so the expected
number of solver instances is exactly ``solve_ratio * N`` for every batch size. Ties between pooled
solutions go to the lowest pool index (the solution that entered the pool first). A pooled answer is the best
*in the pool*, not necessarily optimal: that is the approximation caching makes; ``stats.cache_hits`` counts
it. While the pool is empty every instance is solved.

The cache hooks into :class:`~discreteopt.maximizer.Maximizer`, the single entry point of solver calls, so it
applies to every estimator and loss: ``cache.attach(layer)`` (or a loss, or a ``Maximizer``). Each call is
counted in the maximizer's :class:`~discreteopt.maximizer.SolverStats` (``cache_hits``, ``cache_misses``; only
solved instances count as ``forward_instances``/``backward_instances``) and in the cache's own ``hits``,
``misses``, ``evictions``.

**Evaluation bypasses the cache by default.** While the module the cache was attached to (a
:class:`~discreteopt.layers.DiscreteLayer` or a loss) is in ``eval()`` mode, and for MAP calls (made inside
``with maximizer.unperturbed():``, as the layer's eval-mode forward does), every instance goes to the solver and
nothing joins the pool: evaluation is exact. ``bypass_eval=False`` keeps caching there too;
``maximizer(theta, use_cache=False)`` bypasses the cache for one call.

**Pool size.** At most ``max_size`` solutions (``max_size * prod(E)`` numbers of the pool's dtype; default
``100_000``, e.g. 16 MB for 40 float32 arcs). Policy when a new solution would exceed it: the least recently
*used* solutions are evicted first (used = added, found again, or returned as a pooled answer), the oldest
first among equally stale ones; ``evictions`` counts them. Duplicates never enter the pool (exact equality).

Shapes: the solver's solutions must have the shape of its argument (``y [N, *E]``, so that ``<w, y>`` is the
objective). The pool is kept on the device of the first solutions it gets and moves with the calls.

Example::

    cache = SolutionCache.from_solutions(train_solutions, solve_ratio=0.1, seed=0)   # pool [n_train, 40]
    layer = cache.attach(DiscreteLayer(solver, Interpolation(lam=10.0)))
    ...                                           # 10% of each batch is solved, 90% answered from the pool
    layer.stats.cache_hits, layer.stats.forward_instances
"""

from __future__ import annotations

import math
import threading
import weakref
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch
from torch import nn

from ._validation import check_finite, check_int_in_range, check_real
from .solvers.base import InstanceError

_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64)
_KEY_RTOL = 1e-9  # relative tolerance of the hash keys of solutions (exact equality is checked afterwards)


class SolutionCache:
    """Pool of feasible solutions answering ``1 - solve_ratio`` of every solver batch (module docstring).

    Args:
        solve_ratio: fraction in ``[0, 1]`` of the instances of each batch sent to the solver (PyEPO's name).
        max_size: most solutions kept (least recently used evicted first); ``None``: unbounded.
        seed: seed of the CPU generator that picks which instances are solved; ``generator``: a CPU
            ``torch.Generator`` instead; neither: torch's default CPU generator (``torch.manual_seed``).
        bypass_eval: send every instance to the solver while the owning module is in ``eval()`` mode and for
            MAP (unperturbed) calls.
    """

    def __init__(self, solve_ratio: float = 1.0, *, max_size: int | None = 100_000, seed: int | None = None,
                 generator: torch.Generator | None = None, bypass_eval: bool = True):
        if isinstance(solve_ratio, bool) or not isinstance(solve_ratio, (int, float)) \
                or not math.isfinite(solve_ratio) or not 0.0 <= solve_ratio <= 1.0:
            raise ValueError(f"solve_ratio must be a number in [0, 1]; got {solve_ratio!r}")
        if max_size is not None:
            max_size = check_int_in_range(max_size, "max_size", 1, 2**40)
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"seed must be an int or None; got {seed!r}")
            generator = torch.Generator().manual_seed(seed)
        if generator is not None:
            if not isinstance(generator, torch.Generator) or torch.device(generator.device).type != "cpu":
                raise ValueError(f"generator must be a CPU torch.Generator; got {generator!r}")
        self.solve_ratio = float(solve_ratio)
        self.max_size = max_size
        self.bypass_eval = bool(bypass_eval)
        self._generator = generator
        self._pool: torch.Tensor | None = None  # [M, *E]
        self._keys: torch.Tensor | None = None  # [M] float64 hash keys
        self._last_used: torch.Tensor | None = None  # [M] int64 step of last use
        self._proj: torch.Tensor | None = None  # [D] float64 hashing weights
        self._index: dict[bytes, int] | None = None  # CPU pools: row bytes -> pool index (rebuilt when rows move)
        self._step = 0
        self._lock = threading.RLock()
        self._owners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        #: instances answered from the pool / sent to the solver / solutions evicted, since creation
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    # ------------------------------------------------------------------ construction and wiring
    @classmethod
    def from_solutions(cls, solutions: torch.Tensor, solve_ratio: float = 1.0, **kwargs: Any) -> SolutionCache:
        """A cache whose pool starts with ``solutions [n, *E]`` (e.g. the training set's optimal solutions, as
        PyEPO seeds its pool); duplicates are dropped. ``kwargs``: those of :class:`SolutionCache`."""
        cache = cls(solve_ratio, **kwargs)
        cache.add(solutions)
        return cache

    def attach(self, target):
        """Route every solver call of ``target`` through this cache and return ``target``.

        ``target``: a :class:`~discreteopt.maximizer.Maximizer`, or an object with one as ``.maximizer`` (a
        :class:`~discreteopt.layers.DiscreteLayer`, ``SPOPlus``, the pool losses) or ``.layer.maximizer``
        (``FenchelYoungLoss``). When ``target`` is an ``nn.Module`` its ``eval()`` mode bypasses the cache
        (``bypass_eval``). One cache may serve several targets that solve the same problem (one shared pool).
        """
        from .maximizer import Maximizer

        maximizer = target
        if not isinstance(maximizer, Maximizer):
            maximizer = getattr(target, "maximizer", None)
        if not isinstance(maximizer, Maximizer):
            maximizer = getattr(getattr(target, "layer", None), "maximizer", None)
        if not isinstance(maximizer, Maximizer):
            raise ValueError("target must be a Maximizer or have one as .maximizer or .layer.maximizer "
                             f"(a DiscreteLayer or a loss); got {type(target).__name__}")
        maximizer.cache = self
        if isinstance(target, nn.Module):
            self._owners[maximizer] = weakref.ref(target)
        return target

    @staticmethod
    def detach(target) -> None:
        """Stop caching the solver calls of ``target`` (as given to :meth:`attach`)."""
        from .maximizer import Maximizer

        for m in (target, getattr(target, "maximizer", None), getattr(getattr(target, "layer", None), "maximizer",
                                                                      None)):
            if isinstance(m, Maximizer):
                m.cache = None
                return
        raise ValueError(f"target has no Maximizer; got {type(target).__name__}")

    # ------------------------------------------------------------------ the pool
    def __len__(self) -> int:
        return 0 if self._pool is None else int(self._pool.shape[0])

    @property
    def pool(self) -> torch.Tensor | None:
        """The pooled solutions ``[M, *E]`` (``None`` before the first one); do not modify in place."""
        return self._pool

    def solutions(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The pool ``[M, *E]`` on ``device`` in ``dtype`` (``ValueError`` while it is empty)."""
        if self._pool is None or self._pool.shape[0] == 0:
            raise ValueError("the SolutionCache pool is empty: add solutions (from_solutions / add) or solve a "
                             "batch first")
        return self._pool.to(device=device if device is not None else self._pool.device,
                             dtype=dtype if dtype is not None else self._pool.dtype)

    def clear(self) -> None:
        """Empty the pool (counters are kept)."""
        with self._lock:
            self._pool = self._keys = self._last_used = self._index = None

    def add(self, solutions: torch.Tensor) -> int:
        """Add feasible ``solutions [n, *E]`` to the pool (exact duplicates skipped); returns how many joined.

        The caller vouches for feasibility: the cache returns pooled solutions as answers of the solver.
        """
        if not isinstance(solutions, torch.Tensor) or solutions.ndim < 2:
            raise ValueError(f"solutions must be a tensor [n, *E]; got {getattr(solutions, 'shape', solutions)!r}")
        check_real(solutions, "solutions")
        solutions = solutions.detach()
        if not solutions.is_floating_point():  # bool / integer solutions
            solutions = solutions.float()
        check_finite(solutions, "solutions")
        with self._lock:
            if self._pool is None:
                self._pool = solutions.new_zeros((0, *solutions.shape[1:]))
                self._keys = torch.zeros(0, dtype=torch.float64, device=solutions.device)
                self._last_used = torch.zeros(0, dtype=torch.int64, device=solutions.device)
            elif solutions.shape[1:] != self._pool.shape[1:]:
                raise ValueError(f"solutions must have event shape {tuple(self._pool.shape[1:])} like the pool; "
                                 f"got {tuple(solutions.shape)}")
            if solutions.shape[0] == 0:
                return 0
            x = solutions.to(device=self._pool.device, dtype=self._pool.dtype)
            flat = x.flatten(1)  # [n, D]
            keys = self._hash(flat)  # [n]
            arange = torch.arange(flat.shape[0], device=flat.device)
            row_bytes = None
            if flat.device.type == "cpu" and flat.dtype in _NUMPY_DTYPES and flat.shape[1]:
                # exact matches through a dict of row bytes: ~20x cheaper than the torch ops below on CPU
                in_pool, first, row_bytes = self._match_bytes(flat)
            else:
                first = _first_rows(flat)  # [n]: first equal row of the batch (itself at worst)
                in_pool = _first_match(flat, keys, self._pool.flatten(1), self._keys)  # [n], -1 if new
            found = in_pool[in_pool >= 0]
            if found.numel():
                self._last_used[found] = self._step
            new = (in_pool < 0) & (first == arange)
            if not bool(new.any()):
                return 0
            if row_bytes is not None and self._index is not None:
                start = self._pool.shape[0]
                for pos, i in enumerate(new.nonzero().flatten().tolist()):
                    self._index[row_bytes[i]] = start + pos
            self._pool = torch.cat([self._pool, x[new]])
            self._keys = torch.cat([self._keys, keys[new]])
            self._last_used = torch.cat([self._last_used, torch.full((int(new.sum()),), self._step,
                                                                     dtype=torch.int64, device=flat.device)])
            self._evict()
            return int(new.sum())

    def scores(self, theta: torch.Tensor) -> torch.Tensor:
        """``<theta_i, y_m>`` for every instance and pooled solution: ``[N, *E] -> [N, M]`` in ``theta``'s dtype
        on ``theta``'s device (differentiable in ``theta``; the pool is a constant). ``theta`` must be a real
        floating tensor (``ValueError`` otherwise)."""
        _check_theta(theta)
        pool = self.solutions(theta.device, theta.dtype)
        if pool.shape[1:] != theta.shape[1:]:
            raise ValueError(f"theta must have event shape {tuple(pool.shape[1:])} like the pool; "
                             f"got {tuple(theta.shape)}")
        return theta.flatten(1) @ pool.flatten(1).T  # [N, D] @ [D, M] -> [N, M]

    def best(self, theta: torch.Tensor, sense: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
        """Best pooled solution per instance: ``argmax_m <theta_i, y_m>`` (``sense="min"``: argmin), ties to
        the lowest pool index. Returns ``(solutions [N, *E] in theta's dtype, index [N])``.

        The objectives are compared in float64 (float32 on devices without it), whatever ``theta``'s dtype, so a
        narrow ``theta`` (float16) or large pooled values cannot overflow the choice; ``theta`` must be a finite
        real tensor, and objectives that are undefined even there (``inf - inf`` from sums beyond 1.8e308) raise
        ``ValueError``."""
        if sense not in ("max", "min"):
            raise ValueError(f"sense must be 'max' or 'min'; got {sense!r}")
        _check_theta(theta)
        check_finite(theta, "theta")
        with torch.no_grad():
            wide = torch.float32 if theta.device.type == "mps" else torch.float64
            s = self.scores(theta.detach().to(wide))  # [N, M]
            if sense == "min":
                s = s.neg_()
            undefined = torch.isnan(s).any(dim=1)
            if bool(undefined.any()):
                i = int(undefined.nonzero()[0, 0])
                raise ValueError(f"theta's objectives against the pooled solutions are undefined (inf - inf: sums "
                                 f"beyond {torch.finfo(wide).max:.3g}) for instance {i}; rescale theta")
            idx = _first_argmax(s)  # [N]
            return self._pool[idx.to(self._pool.device)].to(theta.device, theta.dtype), idx

    # ------------------------------------------------------------------ the Maximizer hook
    def submit(self, maximizer, theta: torch.Tensor, phase: str = "forward") -> Future:
        """``maximizer.submit(theta, phase)`` with ``1 - solve_ratio`` of the instances answered from the pool.

        Called by :class:`~discreteopt.maximizer.Maximizer` when the cache is attached; returns a future of
        ``y [N, *E]`` (same device and dtype as the solver's answer).
        """
        if self._bypassed(maximizer) or theta.shape[0] == 0:
            return maximizer.submit(theta, phase, use_cache=False)
        solver = maximizer.solver
        w = maximizer.natural(theta)  # [N, *E] guarded natural argument
        n = w.shape[0]
        with self._lock:
            self._step += 1
            if self._pool is not None and self._pool.device != w.device:
                self._to(w.device)
            solve_idx, pool_idx = self._split(n)
            pooled = None
            if pool_idx is not None:
                w_pool = w[pool_idx.to(w.device)]  # [n_pool, *E]
                solver.validate(w_pool)  # the solved part is validated by the solver itself
                if w_pool.shape[1:] != self._pool.shape[1:]:
                    raise ValueError(f"{solver.arg_name} must have event shape {tuple(self._pool.shape[1:])} "
                                     f"like the SolutionCache pool; got {tuple(w.shape)}")
                pooled, idx = self.best(w_pool, solver.sense)  # [n_pool, *E]
                self._last_used[idx.to(self._last_used.device)] = self._step
            n_pool = 0 if pool_idx is None else int(pool_idx.numel())
            n_solve = n - n_pool
            self.hits += n_pool
            self.misses += n_solve
        maximizer.stats.cache_hits += n_pool
        maximizer.stats.cache_misses += n_solve
        out: Future = Future()
        if n_solve == 0:
            out.set_result(pooled)
            return out
        maximizer.stats.record(phase, n_solve)
        w_solve = w if solve_idx is None else w[solve_idx.to(w.device)]
        inner = maximizer.executor.submit(solver, w_solve)

        def finish(f: Future) -> None:
            try:
                ys = f.result()  # [n_solve, *Y]
            except InstanceError as exc:  # index in the full batch, not in the solved subset
                out.set_exception(exc if solve_idx is None else
                                  InstanceError(exc.solver, int(solve_idx[exc.index]), exc.status, exc.detail))
                return
            except BaseException as exc:  # noqa: BLE001 -- delivered through the future
                out.set_exception(exc)
                return
            try:
                if ys.shape[1:] != w.shape[1:]:
                    raise ValueError(f"SolutionCache needs solutions shaped like the solver's argument "
                                     f"{tuple(w.shape[1:])}; {type(solver).__name__} returned {tuple(ys.shape[1:])}")
                self.add(ys)
                if solve_idx is None:
                    result = ys
                else:
                    result = ys.new_empty((n, *ys.shape[1:]))
                    result[solve_idx.to(ys.device)] = ys
                    result[pool_idx.to(ys.device)] = pooled.to(ys.device, ys.dtype)
            except BaseException as exc:  # noqa: BLE001
                out.set_exception(exc)
                return
            out.set_result(result)

        inner.add_done_callback(finish)
        return out

    # ------------------------------------------------------------------ internals
    def _bypassed(self, maximizer) -> bool:
        if not self.bypass_eval:
            return False
        from .maximizer import _UNPERTURBED

        if _UNPERTURBED.get() is maximizer:  # a MAP call (``with maximizer.unperturbed():``)
            return True
        ref = self._owners.get(maximizer)
        owner = ref() if ref is not None else None
        return owner is not None and not owner.training

    def _split(self, n: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(indices to solve, indices to answer from the pool) on the CPU; ``None`` stands for "all"/"none"."""
        if self._pool is None or self._pool.shape[0] == 0 or self.solve_ratio >= 1.0:
            return None, None
        exact = self.solve_ratio * n
        k = math.floor(exact)
        frac = exact - k
        if abs(exact - round(exact)) < 1e-9:
            k, frac = round(exact), 0.0
        if frac > 0 and float(torch.rand((), generator=self._generator)) < frac:
            k += 1
        if k >= n:
            return None, None
        if k == 0:
            return torch.zeros(0, dtype=torch.long), torch.arange(n)
        chosen = torch.zeros(n, dtype=torch.bool)
        chosen[torch.randperm(n, generator=self._generator)[:k]] = True
        return chosen.nonzero().squeeze(1), (~chosen).nonzero().squeeze(1)

    def _hash(self, flat: torch.Tensor) -> torch.Tensor:
        d = flat.shape[1]
        if self._proj is None or self._proj.shape[0] != d or self._proj.device != flat.device:
            proj = torch.rand(d, generator=torch.Generator().manual_seed(0x5EED), dtype=torch.float64) + 1.0
            self._proj = proj.to(flat.device)
        # finite keys even for entries near 1.8e308 (an inf or NaN key matched no row, not even its own, and such a
        # solution never joined the pool); equal rows still get equal keys, and candidates are compared exactly
        return torch.nan_to_num(flat.to(torch.float64) @ self._proj, nan=0.0)  # [n]

    def _match_bytes(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[bytes]]:
        """CPU twin of ``_first_rows`` and ``_first_match``: ``(in_pool [n] (-1 if new), first [n], row bytes)``.

        Rows are compared by their bytes after ``+ 0.0`` (so ``-0.0`` equals ``0.0``, as ``==`` says; entries are
        finite, so bytes equality is exactly ``==``)."""
        if self._index is None:
            pool = self._pool.flatten(1).resolve_neg().numpy() + 0.0
            self._index = {row.tobytes(): i for i, row in enumerate(pool)}
        index = self._index
        rows = [row.tobytes() for row in flat.resolve_neg().numpy() + 0.0]
        in_pool = np.full(len(rows), -1, dtype=np.int64)
        first = np.arange(len(rows), dtype=np.int64)
        seen: dict[bytes, int] = {}
        for i, key in enumerate(rows):
            j = index.get(key)
            if j is not None:
                in_pool[i] = j
            else:
                first[i] = seen.setdefault(key, i)
        return torch.from_numpy(in_pool), torch.from_numpy(first), rows

    def _to(self, device: torch.device) -> None:
        self._index = None
        self._pool = self._pool.to(device)
        self._keys = self._keys.to(device)
        self._last_used = self._last_used.to(device)

    def _evict(self) -> None:
        if self.max_size is None or self._pool.shape[0] <= self.max_size:
            return
        k = self._pool.shape[0] - self.max_size
        order = torch.sort(self._last_used, stable=True).indices  # least recently used first, oldest first
        keep = torch.ones(self._pool.shape[0], dtype=torch.bool, device=self._pool.device)
        keep[order[:k]] = False
        self._pool, self._keys, self._last_used = self._pool[keep], self._keys[keep], self._last_used[keep]
        self._index = None  # rows moved
        self.evictions += k

    def __repr__(self) -> str:
        return (f"SolutionCache(solve_ratio={self.solve_ratio}, size={len(self)}, max_size={self.max_size}, "
                f"hits={self.hits}, misses={self.misses})")


def _check_theta(theta: torch.Tensor) -> None:
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point() or theta.ndim < 1:
        got = f"a {theta.dtype} tensor of shape {tuple(theta.shape)}" if isinstance(theta, torch.Tensor) else \
            type(theta).__name__
        raise ValueError(f"theta must be a real floating tensor [N, *E]; got {got}")


def _first_argmax(s: torch.Tensor) -> torch.Tensor:
    """Per row, the lowest index among the maxima of ``s [N, M]`` (deterministic on every device)."""
    m = s.shape[1]
    hit = s == s.amax(dim=1, keepdim=True)  # [N, M]
    ar = torch.arange(m, device=s.device).expand_as(s)
    return torch.where(hit, ar, m).amin(dim=1)


def _first_rows(a: torch.Tensor) -> torch.Tensor:
    """For every row of ``a [n, D]`` the lowest index of an equal row of ``a`` (itself at worst), exactly, in
    ``O(n log n)`` time and ``O(n D)`` memory (``torch.unique``; a pairwise comparison needed ``n^2`` memory: 80 TB
    for ``from_solutions`` of 10**7 solutions)."""
    n = a.shape[0]
    if n == 0 or a.shape[1] == 0:  # no rows, or rows without entries (all equal)
        return torch.zeros(n, dtype=torch.long, device=a.device)
    _, inverse = torch.unique(a, dim=0, return_inverse=True)  # [n] group of each row
    arange = torch.arange(n, device=a.device)
    first = torch.full((n,), n, dtype=torch.long, device=a.device).scatter_reduce(0, inverse, arange, "amin")
    return first[inverse]


def _first_match(a: torch.Tensor, ka: torch.Tensor, b: torch.Tensor, kb: torch.Tensor) -> torch.Tensor:
    """For every row of ``a [n, D]`` the lowest index of an equal row of ``b [M, D]`` (rows of ``b`` distinct), or -1.

    Candidates are the rows of ``b`` whose hash key lies within a relative ``_KEY_RTOL`` of the row's key (the keys
    of equal rows may differ in the last bits between matrix products), found by binary search in the sorted keys
    of ``b``: ``O((n + M) log M)`` time and memory linear in the number of candidates (distinct rows rarely share a
    key); each candidate is then compared exactly.
    """
    n, m = a.shape[0], b.shape[0]
    out = torch.full((n,), -1, dtype=torch.long, device=a.device)
    if n == 0 or m == 0:
        return out
    if a.shape[1] == 0:  # rows without entries: all equal
        return torch.zeros(n, dtype=torch.long, device=a.device)
    kb_sorted, order = torch.sort(kb, stable=True)  # [M]
    # |kb| <= |ka| + tol inside the window, so this half-width covers _KEY_RTOL * (1 + |ka| + |kb|)
    half = _KEY_RTOL * (1.0 + 2.0 * ka.abs()) * (1.0 + 1e-6)  # [n]
    lo = torch.searchsorted(kb_sorted, ka - half, side="left")  # [n]
    hi = torch.searchsorted(kb_sorted, ka + half, side="right")  # [n]
    count = hi - lo  # [n] candidates per row
    total = int(count.sum())
    if total == 0:
        return out
    # output_size: the sizes are known, and without it repeat_interleave on searchsorted's output took ~5 ms
    # per call on CPU (torch 2.13) -- 99% of a pool loss's training step
    rows = torch.repeat_interleave(torch.arange(n, device=a.device), count, output_size=total)  # [P]
    start = torch.repeat_interleave(torch.cumsum(count, 0) - count, count, output_size=total)  # [P]
    cols = order[lo[rows] + torch.arange(total, device=a.device) - start]  # [P] indices into b
    eq = (a[rows] == b[cols]).all(dim=1)  # [P]
    j = torch.where(eq, cols, m)
    first = torch.full((n,), m, dtype=torch.long, device=a.device).scatter_reduce(0, rows, j, "amin")
    return torch.where(first < m, first, out)
