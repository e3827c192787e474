"""Compiled (numba) batched Dijkstra kernels for the shortest-path solvers.

Imported lazily: only when numba is installed and the numba back-end is used.

Canonical path (the same in every back-end, ties and zero costs included):

1. ``d[v]`` = the smallest float path sum from the source, accumulated left to right along the path.
   Adding a non-negative cost is monotone in floating point (``a <= b => fl(a+w) <= fl(b+w)``, and
   ``fl(a+w) >= a``), so Dijkstra and Bellman-Ford both converge to exactly these values.
2. An arc ``u -> v`` is *tight* when ``fl(d[u] + cost(u->v)) == d[v]`` exactly; ``h[v]`` = fewest arcs
   of a tight path from the source (breadth-first search on tight arcs).
3. The path is read back from the target: at ``v`` take the first predecessor ``u`` in a fixed order with
   a tight arc and ``h[u] == h[v] - 1``. Hop counts fall strictly, so zero-cost cycles cannot trap it.

Here one Dijkstra pass computes both: the heap is ordered by ``(d, h)`` lexicographically, and a popped
(final) vertex ``u`` relaxes ``v`` when ``fl(d[u] + c) < d[v]``, or ``== d[v]`` with ``h[u] + 1 < h[v]``.
Because only final labels are ever propagated, ``h`` is exactly the fewest hops over tight paths (a
Bellman-Ford on pairs would not be: a stale hop count can survive rounding; the torch back-end therefore
computes ``d`` first and ``h`` second).

Fast path (grid kernel): when every cost of an instance is ``> 0`` and larger than ``4e-16`` times the sum of
its costs, no addition can be absorbed (``fl(d + c) > d`` for every path sum ``d <= sum``), so a tight
predecessor always has a strictly smaller ``d`` and is popped first whatever the order among equal ``d``.
The heap is then keyed by ``d`` alone (two arrays, the textbook kernel's cost) and gives the same labels and
the same path; instances with zero or tiny costs use the ``(d, h)`` heap. Every vertex the read-back can visit has a key below the
target's, so the search stops when the target is popped. All kernels release the GIL (``nogil``), so a
thread pool runs them in parallel.

Acyclic graphs (:func:`dag_paths`): the same ``d`` and ``h`` by dynamic programming in topological order,
``d[v] = min over arcs u -> v of fl(d[u] + c)`` and ``h[v] = 1 + min h[u]`` over the tight ones. Rounding is monotone
for any sign of ``c`` (``a <= b => fl(a+c) <= fl(b+c)``), so this is the smallest left-to-right float path sum
for negative costs too, and for non-negative costs exactly Dijkstra's labels: same read-back, same path.

Overflow: path sums are float64. An instance whose target label is not finite (every path sum overflows), or,
with a negative cost, any label on a source -> target walk overflowed (the float sum of a path through it then
differs from its real sum), gets status :data:`OVERFLOW` in ``status[b]`` and no path; the solver raises
:class:`~discreteopt.solvers.base.InstanceError` for it.

The kernels are cached on disk (``cache=True``): a new process -- a worker of a process pool -- loads the
compiled code instead of compiling again (~2 s). Where numba finds no writable cache directory they are
compiled in memory instead (:func:`_njit`).
"""

from __future__ import annotations

import numba
import numpy as np

_INF = np.inf
#: ``status[b]`` values written by the kernels
OK, OVERFLOW = 0, 1


def _njit(**options):
    """``numba.njit(cache=True, nogil=True, **options)``, without the disk cache where numba has no writable
    location for it (it raises ``RuntimeError`` at decoration then: read-only install, no writable home)."""

    def wrap(fn):
        try:
            return numba.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:
            return numba.njit(cache=False, nogil=True, **options)(fn)

    return wrap


@_njit(inline="always")
def _less(d1, h1, d2, h2):
    return d1 < d2 or (d1 == d2 and h1 < h2)


@_njit()
def _push(hd, hh, hn, size, d, h, node):
    i = size
    hd[i] = d
    hh[i] = h
    hn[i] = node
    while i > 0:
        p = (i - 1) >> 1
        if _less(hd[i], hh[i], hd[p], hh[p]):
            hd[i], hd[p] = hd[p], hd[i]
            hh[i], hh[p] = hh[p], hh[i]
            hn[i], hn[p] = hn[p], hn[i]
            i = p
        else:
            break
    return size + 1


@_njit()
def _pop(hd, hh, hn, size):
    size -= 1
    hd[0] = hd[size]
    hh[0] = hh[size]
    hn[0] = hn[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and _less(hd[c + 1], hh[c + 1], hd[c], hh[c]):
            c += 1
        if _less(hd[c], hh[c], hd[i], hh[i]):
            hd[i], hd[c] = hd[c], hd[i]
            hh[i], hh[c] = hh[c], hh[i]
            hn[i], hn[c] = hn[c], hn[i]
            i = c
        else:
            break
    return size


@_njit()
def _push_d(hd, hn, size, d, node):
    """Push onto a heap keyed by ``d`` alone (hole-moving sift-up)."""
    i = size
    while i > 0:
        p = (i - 1) >> 1
        if d < hd[p]:
            hd[i] = hd[p]
            hn[i] = hn[p]
            i = p
        else:
            break
    hd[i] = d
    hn[i] = node
    return size + 1


@_njit()
def _pop_d(hd, hn, size):
    """Remove the root of a heap keyed by ``d`` alone (hole-moving sift-down)."""
    size -= 1
    d = hd[size]
    node = hn[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and hd[c + 1] < hd[c]:
            c += 1
        if hd[c] < d:
            hd[i] = hd[c]
            hn[i] = hn[c]
            i = c
        else:
            break
    hd[i] = d
    hn[i] = node
    return size


@_njit()
def _needs_lex(w, b):
    """True unless every cost of instance ``b`` is > 0 and too large to be absorbed (see module docstring)."""
    lo = _INF
    total = 0.0
    for x in w[b].ravel():
        total += x
        if x < lo:
            lo = x
    return not (lo > 0.0 and lo > total * 4.0e-16)


@_njit()
def grid_paths(w, sr, sc, tr, tc, dr, dc, out, status):
    """Vertex-weighted grid shortest paths for every instance (see module docstring).

    w: [B, H, W] non-negative float64 vertex costs (a path's cost counts every vertex on it, both ends
    included); (sr, sc) -> (tr, tc); dr, dc: [K] neighbour offsets in the fixed extraction order;
    out: [B, H, W] zero-initialised float64, receives the 0/1 path masks; status: [B] int64, receives
    OK or OVERFLOW (target label not finite: no path written).
    """
    B, H, W = w.shape
    N = H * W
    K = dr.shape[0]
    dist = np.empty(N)
    hops = np.empty(N, dtype=np.int64)
    done = np.empty(N, dtype=np.bool_)
    cap = N * K + 1
    hd = np.empty(cap)
    hh = np.empty(cap, dtype=np.int64)
    hn = np.empty(cap, dtype=np.int64)
    s = sr * W + sc
    t = tr * W + tc
    for b in range(B):
        lex = _needs_lex(w, b)
        dist[:] = _INF
        hops[:] = 0
        done[:] = False
        dist[s] = w[b, sr, sc]
        size = _push(hd, hh, hn, 0, dist[s], 0, s) if lex else _push_d(hd, hn, 0, dist[s], s)
        while size > 0:
            d = hd[0]
            u = hn[0]
            size = _pop(hd, hh, hn, size) if lex else _pop_d(hd, hn, size)
            if done[u]:
                continue
            done[u] = True
            if u == t:
                break
            h = hops[u] + 1  # the popped entry is u's best (d, h): every improvement pushed one
            ur = u // W
            uc = u - ur * W
            for k in range(K):
                vr = ur + dr[k]
                vc = uc + dc[k]
                if vr < 0 or vr >= H or vc < 0 or vc >= W:
                    continue
                v = vr * W + vc
                if done[v]:
                    continue
                nd = d + w[b, vr, vc]
                if nd < dist[v]:
                    dist[v] = nd
                    hops[v] = h
                    size = _push(hd, hh, hn, size, nd, h, v) if lex else _push_d(hd, hn, size, nd, v)
                elif nd == dist[v] and h < hops[v]:
                    hops[v] = h  # same key: the fast heap's entry stays valid
                    if lex:
                        size = _push(hd, hh, hn, size, nd, h, v)
        if not done[t]:  # every path sum overflowed to inf: the target was never reached
            status[b] = OVERFLOW
            continue
        status[b] = OK
        # read the path back from the target
        v = t
        out[b, tr, tc] = 1.0
        while v != s:
            vr = v // W
            vc = v - vr * W
            prev = v
            for k in range(K):
                ur = vr - dr[k]
                uc = vc - dc[k]
                if ur < 0 or ur >= H or uc < 0 or uc >= W:
                    continue
                u = ur * W + uc
                if done[u] and hops[u] + 1 == hops[v] and dist[u] + w[b, vr, vc] == dist[v]:
                    out[b, ur, uc] = 1.0
                    v = u
                    break
            if v == prev:
                raise RuntimeError("grid shortest path: no predecessor found while reading the path back")
    return out


@_njit()
def graph_paths(indptr, arc_head, arc_edge, rev_indptr, rev_arc, arc_tail, c, s, t, out, status):
    """Edge-weighted shortest paths on a fixed directed graph for every instance (see module docstring).

    Outgoing arcs in CSR (indptr [N+1], arc_head [A], arc_edge [A]: the edge whose cost the arc carries);
    incoming arcs per node (rev_indptr [N+1], rev_arc: arc ids sorted by id within a node, arc_tail [A]);
    c: [B, E] non-negative float64 edge costs; out: [B, E] zero-initialised, receives edge indicators;
    status: [B] int64, receives OK or OVERFLOW.
    """
    B = c.shape[0]
    N = indptr.shape[0] - 1
    A = arc_head.shape[0]
    dist = np.empty(N)
    hops = np.empty(N, dtype=np.int64)
    done = np.empty(N, dtype=np.bool_)
    hd = np.empty(A + 1)
    hh = np.empty(A + 1, dtype=np.int64)
    hn = np.empty(A + 1, dtype=np.int64)
    for b in range(B):
        dist[:] = _INF
        hops[:] = 0
        done[:] = False
        dist[s] = 0.0
        size = _push(hd, hh, hn, 0, 0.0, 0, s)
        while size > 0:
            d = hd[0]
            h = hh[0]
            u = hn[0]
            size = _pop(hd, hh, hn, size)
            if done[u]:
                continue
            done[u] = True
            if u == t:
                break
            for a in range(indptr[u], indptr[u + 1]):
                v = arc_head[a]
                if done[v]:
                    continue
                nd = d + c[b, arc_edge[a]]
                if _less(nd, h + 1, dist[v], hops[v]):
                    dist[v] = nd
                    hops[v] = h + 1
                    size = _push(hd, hh, hn, size, nd, h + 1, v)
        if not done[t]:  # every path sum overflowed to inf
            status[b] = OVERFLOW
            continue
        status[b] = OK
        for u in range(N):  # tentative labels are not final: keep them out of the read-back
            if not done[u]:
                dist[u] = _INF
        _read_back(rev_indptr, rev_arc, arc_tail, arc_edge, c, b, s, t, dist, hops, out)
    return out


@_njit()
def _read_back(rev_indptr, rev_arc, arc_tail, arc_edge, c, b, s, t, dist, hops, out):
    """Canonical read-back of instance ``b``: from ``t``, the first incoming arc (by arc id) that is tight with
    ``h[u] == h[v] - 1``; marks its edge in ``out[b]``. Nodes without a final label must have ``dist = inf``."""
    v = t
    while v != s:
            prev = v
            for j in range(rev_indptr[v], rev_indptr[v + 1]):
                a = rev_arc[j]
                u = arc_tail[a]
                if hops[u] + 1 == hops[v] and dist[u] + c[b, arc_edge[a]] == dist[v]:
                    out[b, arc_edge[a]] = 1.0
                    v = u
                    break
            if v == prev:
                raise RuntimeError("graph shortest path: no predecessor found while reading the path back")


@_njit()
def dag_paths(order, rev_indptr, rev_arc, arc_tail, arc_edge, useful, c, s, t, out, status):
    """Edge-weighted shortest paths on a graph whose source -> target walks are acyclic; any sign of cost.

    order: [M] the nodes on some source -> target walk in topological order (``order[0] == s``); useful: [A] bool,
    the arcs on some source -> target walk; incoming arcs as in :func:`graph_paths`; c: [B, E] float64 edge
    costs (negative allowed); out: [B, E] zero-initialised; status: [B] int64 (see module docstring).
    """
    B = c.shape[0]
    N = rev_indptr.shape[0] - 1
    M = order.shape[0]
    big = np.iinfo(np.int64).max // 2
    dist = np.empty(N)
    hops = np.empty(N, dtype=np.int64)
    for b in range(B):
        dist[:] = _INF
        hops[:] = big
        dist[s] = 0.0
        hops[s] = 0
        negative = False
        for i in range(1, M):
            v = order[i]
            best = _INF
            for j in range(rev_indptr[v], rev_indptr[v + 1]):
                a = rev_arc[j]
                if useful[a]:
                    w = c[b, arc_edge[a]]
                    if w < 0.0:
                        negative = True
                    nd = dist[arc_tail[a]] + w
                    if nd < best:
                        best = nd
            h = big
            for j in range(rev_indptr[v], rev_indptr[v + 1]):
                a = rev_arc[j]
                if useful[a]:
                    u = arc_tail[a]
                    if dist[u] + c[b, arc_edge[a]] == best and hops[u] + 1 < h:
                        h = hops[u] + 1
            dist[v] = best
            hops[v] = h
        overflow = not np.isfinite(dist[t])
        if negative and not overflow:
            for i in range(M):
                if not np.isfinite(dist[order[i]]):
                    overflow = True
                    break
        if overflow:
            status[b] = OVERFLOW
            continue
        status[b] = OK
        _read_back(rev_indptr, rev_arc, arc_tail, arc_edge, c, b, s, t, dist, hops, out)
    return out
