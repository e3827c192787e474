"""Discrete distribution families the estimators work on: :class:`Bernoulli`, :class:`Categorical`, :class:`KSubset`.

All three are exponential families in their logits ``theta`` with sufficient statistic ``z`` (the 0/1 or one-hot
sample), so ``log p(z) = <theta, z> - A(theta)`` and the score is ``d log p(z) / d theta = z - E[z]``
(:meth:`Family.score`). A family samples with a ``torch.Generator`` (``torch.distributions`` cannot take one) and
uses ``torch.distributions`` for log-probabilities where one fits.

Layouts (``B`` is the batch of independent problems, samples come first):

==============  =====================  ====================================================================
family          ``params`` (logits)    sample ``z``
==============  =====================  ====================================================================
Bernoulli       ``[B, *E]``            ``[S, B, *E]`` in {0, 1}; every entry an independent variable
Categorical     ``[B, *V, K]``         ``[S, B, *V, K]`` one-hot over the last dim; ``V`` independent variables
KSubset(k)      ``[B, n]``             ``[S, B, n]`` in {0, 1} with exactly ``k`` ones,
                                       ``p(z) = exp(<theta, z>) / e_k(exp(theta))`` (conditional Poisson)
==============  =====================  ====================================================================

Precision at extreme logits: scores use ``1 - E[z]`` formed without the subtraction (:meth:`Family.complement`) and
Bernoulli log-probabilities use ``log sigmoid(+-theta)``, so both keep full relative precision (a float32 logit of 20
has ``1 - sigmoid(20) = 2e-9``, which ``1 - sigmoid`` rounds to 0). Sampling compares uniforms of the parameters'
dtype (a grid of ``2^-24`` in float32), so event probabilities below ~6e-8 are rounded in float32 sampling (and
Gumbel-argmax never picks a class about 20 logits behind the best); use float64 logits where such events matter. The
autograd gradient of a Categorical log-probability (:func:`~.exact.gradient`) forms ``1 - pi_k`` by subtraction.

Factorised families (Bernoulli, Categorical) also expose their factors (``V`` variables with ``C`` values) for the
Rao-Blackwellised and measure-valued estimators, and a reparameterisation ``z = theta + noise``, ``b = H(z)`` with
the conditional ``z~ | b`` needed by REBAR/RELAX (Tucker et al., 2017, appendix).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..noise import Gumbel, Logistic
from ._types import check_tensor_param, uniform
from .loo import loo_sum


class Family:
    """Base class: sampling, log-probabilities, score and enumeration of a discrete distribution family."""

    name = "family"
    factorised = False
    reparameterisable = False
    min_event_ndim = 1

    def check(self, params: Tensor, name: str = "logits") -> Tensor:
        return check_tensor_param(params, name, min_ndim=1 + self.min_event_ndim, layout=self.layout)

    layout = "[B, *E]"

    def sample(self, params: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples ``[n, B, *E]`` (float, no autograd)."""
        raise NotImplementedError

    def log_prob(self, params: Tensor, z: Tensor) -> Tensor:
        """Log-probability ``[n, B]`` of samples ``[n, B, *E]`` (differentiable in ``params``)."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """``E[z]`` ``[B, *E]`` (the gradient of the log-partition function)."""
        raise NotImplementedError

    def complement(self, params: Tensor) -> Tensor:
        """``1 - E[z]`` ``[B, *E]`` (the probability that an entry is 0), computed without the subtraction.

        ``1 - E[z]`` loses every digit when ``E[z]`` is close to 1 (``1 - sigmoid(20) == 0`` in float32 although
        it is ``2e-9``); the families override this with a form accurate to the dtype's relative precision.
        """
        return 1.0 - self.mean(params)

    def score(self, params: Tensor, z: Tensor) -> Tensor:
        """``d log p(z) / d params = z - E[z]`` ``[n, B, *E]`` (values, no autograd).

        Evaluated as ``z (1 - E[z]) - (1 - z) E[z]`` with :meth:`complement` for ``1 - E[z]``, which equals
        ``z - E[z]`` for every ``z`` and is accurate for 0/1 samples at extreme logits (the rare sample's score
        is ``-E[z]``, the common one's ``1 - E[z]``, both to full relative precision).
        """
        with torch.no_grad():
            th = params.detach()
            return z * self.complement(th) - (1.0 - z) * self.mean(th)

    def outcomes(self, event_shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Every outcome ``[N, *E]`` of one problem (for exact enumeration)."""
        raise NotImplementedError

    # --- factorised families -------------------------------------------------------------------------------
    def n_factors(self, event_shape: tuple[int, ...]) -> tuple[int, int]:
        """``(V, C)``: number of independent variables and of values each takes."""
        raise ValueError(f"{self.name} is not factorised; this estimator needs Bernoulli or Categorical variables")

    def factor_probs(self, params: Tensor) -> Tensor:
        """``p_v(c)`` ``[B, V, C]`` (differentiable)."""
        raise ValueError(f"{self.name} is not factorised")

    def factor_index(self, z: Tensor) -> Tensor:
        """Value index of every variable ``[n, B, V]`` (long)."""
        raise ValueError(f"{self.name} is not factorised")

    def substitute(self, z: Tensor, idx: Tensor) -> Tensor:
        """``z`` with variable ``v`` set to value ``idx[..., v, r]``: ``[n, B, V, R]`` -> ``[n, B, V, R, *E]``."""
        raise ValueError(f"{self.name} is not factorised")

    # --- reparameterisation: z = theta + noise, b = H(z) -----------------------------------------------------
    def perturb(self, params: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised pre-threshold sample ``[n, B, *E]`` (differentiable in ``params``)."""
        raise ValueError(f"{self.name} has no continuous reparameterisation (use Bernoulli or Categorical)")

    def hard(self, z: Tensor) -> Tensor:
        """``b = H(z)``: the discrete sample determined by a perturbed sample (no autograd)."""
        raise ValueError(f"{self.name} has no continuous reparameterisation")

    def relax(self, z: Tensor, tau: Tensor | float) -> Tensor:
        """Concrete relaxation ``sigma(z / tau)`` (Bernoulli) or ``softmax(z / tau)`` (Categorical)."""
        raise ValueError(f"{self.name} has no continuous relaxation")

    def conditional(self, params: Tensor, b: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``z~ ~ p(z | H(z) = b)`` ``[n, B, *E]``, reparameterised (differentiable in ``params`` given ``b``)."""
        raise ValueError(f"{self.name} has no continuous reparameterisation")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Bernoulli(Family):
    """Independent Bernoulli variables with logits ``theta``: ``p(z_j = 1) = sigmoid(theta_j)``."""

    name = "Bernoulli"
    factorised = True
    reparameterisable = True
    layout = "[B, *E]"

    def sample(self, params, n, generator=None):
        u = uniform((n, *params.shape), params.detach(), generator)  # [n, B, *E]
        return (u < torch.sigmoid(params.detach())).to(params.dtype)

    def log_prob(self, params, z):
        # z log sigmoid(theta) + (1 - z) log sigmoid(-theta): its gradient z - sigmoid(theta) comes out as
        # z sigmoid(-theta) - (1 - z) sigmoid(theta), accurate at extreme logits (torch.distributions' is not)
        lp = z * F.logsigmoid(params) + (1 - z) * F.logsigmoid(-params)  # [n, B, *E]
        return lp.flatten(2).sum(-1)  # [n, B]

    def mean(self, params):
        return torch.sigmoid(params)

    def complement(self, params):
        return torch.sigmoid(-params)  # 1 - sigmoid(theta), to full relative precision

    def outcomes(self, event_shape, like):
        m = math.prod(event_shape)
        if m > 20:
            raise ValueError(f"enumerating a Bernoulli with {m} variables (2^{m} outcomes) is too large; use <= 20")
        bits = torch.arange(2**m, device=like.device)[:, None] >> torch.arange(m, device=like.device)  # [N, m]
        return (bits & 1).to(like.dtype).reshape(2**m, *event_shape)  # [N, *E]

    def n_factors(self, event_shape):
        return math.prod(event_shape), 2

    def factor_probs(self, params):
        # exp(logsigmoid(+-theta)): both probabilities and their gradients sigmoid(theta) sigmoid(-theta) keep full
        # relative precision at extreme logits (1 - sigmoid(theta) and sigmoid's backward y (1 - y) do not)
        lp = F.logsigmoid(torch.stack([-params, params], dim=-1))  # [B, *E, 2]
        return lp.exp().reshape(params.shape[0], -1, 2)  # [B, V, 2]

    def factor_index(self, z):
        return z.flatten(2).long()  # [n, B, V]

    def substitute(self, z, idx):
        n, b = z.shape[:2]
        event = z.shape[2:]
        v = math.prod(event)
        r = idx.shape[-1]
        zf = z.reshape(n, b, 1, 1, v).expand(n, b, v, r, v)  # [n, B, V, R, V]
        eye = torch.eye(v, dtype=torch.bool, device=z.device)[:, None, :]  # [V, 1, V]
        out = torch.where(eye, idx[..., None].to(z.dtype), zf)  # [n, B, V, R, V]
        return out.reshape(n, b, v, r, *event)

    def perturb(self, params, n, generator=None):
        return params + _logistic((n, *params.shape), params.detach(), generator)  # [n, B, *E]

    def hard(self, z):
        return (z.detach() > 0).to(z.dtype)

    def relax(self, z, tau):
        return torch.sigmoid(z / tau)

    def conditional(self, params, b, generator=None):
        # z = theta + logit(u), b = 1[z > 0] = 1[u > 1 - p]. Given b: u~ = 1 - p + p v' if b = 1 and u~ = (1 - p) v
        # if b = 0, v, v' ~ U(0, 1). With v' = 1 - v, z~ = theta + logit(u~) simplifies to (Tucker et al. 2017, app.)
        #   b = 1: log((1 + e^theta (1 - v)) / v) = softplus(softplus(theta) - logit v),
        #   b = 0: log(p v / (1 - (1 - p) v))     = -softplus(softplus(-theta) - logit v).
        lv = _logistic(tuple(b.shape), params.detach(), generator)  # logit(v), v ~ U(0, 1)  [n, B, *E]
        theta = params.expand_as(b)
        z1 = F.softplus(F.softplus(theta) - lv)
        z0 = -F.softplus(F.softplus(-theta) - lv)
        return torch.where(b > 0.5, z1, z0)


class Categorical(Family):
    """Independent categorical variables, one per row of the last dim: ``p(z_v = e_k) = softmax(theta_v)_k``."""

    name = "Categorical"
    factorised = True
    reparameterisable = True
    layout = "[B, *V, K]"

    def check(self, params, name="logits"):
        check_tensor_param(params, name, min_ndim=2, layout=self.layout)
        if params.shape[-1] < 2:
            raise ValueError(f"{name} must have K >= 2 classes in its last dim ({self.layout}); "
                             f"got shape {list(params.shape)}")
        return params

    def sample(self, params, n, generator=None):
        g = _gumbel((n, *params.shape), params.detach(), generator)  # [n, B, *V, K]
        idx = (params.detach() + g).argmax(-1)  # [n, B, *V]
        return F.one_hot(idx, params.shape[-1]).to(params.dtype)

    def log_prob(self, params, z):
        lp = torch.distributions.OneHotCategorical(logits=params).log_prob(z)  # [n, B, *V]
        return lp.flatten(2).sum(-1) if lp.ndim > 2 else lp  # [n, B]

    def mean(self, params):
        return torch.softmax(params, dim=-1)

    def complement(self, params):
        return loo_sum(torch.softmax(params, dim=-1), dim=-1)  # 1 - pi_k = sum_{j != k} pi_j

    def outcomes(self, event_shape, like):
        k = event_shape[-1]
        v = math.prod(event_shape[:-1])
        if k**v > 200_000:
            raise ValueError(f"enumerating {v} categorical variables with {k} classes ({k}^{v} outcomes) is too large")
        grid = torch.tensor(list(itertools.product(range(k), repeat=v)), device=like.device)  # [N, V]
        grid = grid.reshape(-1, v)
        return F.one_hot(grid, k).to(like.dtype).reshape(grid.shape[0], *event_shape)  # [N, *V, K]

    def n_factors(self, event_shape):
        return math.prod(event_shape[:-1]), event_shape[-1]

    def factor_probs(self, params):
        return torch.softmax(params, dim=-1).reshape(params.shape[0], -1, params.shape[-1])  # [B, V, K]

    def factor_index(self, z):
        return z.argmax(-1).reshape(z.shape[0], z.shape[1], -1)  # [n, B, V]

    def substitute(self, z, idx):
        n, b = z.shape[:2]
        event = z.shape[2:]
        k = event[-1]
        v = math.prod(event[:-1])
        r = idx.shape[-1]
        zf = z.reshape(n, b, 1, 1, v, k).expand(n, b, v, r, v, k)  # [n, B, V, R, V, K]
        eye = torch.eye(v, dtype=torch.bool, device=z.device)[:, None, :, None]  # [V, 1, V, 1]
        onehot = F.one_hot(idx, k).to(z.dtype)[..., None, :]  # [n, B, V, R, 1, K]
        out = torch.where(eye, onehot, zf)  # [n, B, V, R, V, K]
        return out.reshape(n, b, v, r, *event)

    def perturb(self, params, n, generator=None):
        return params + _gumbel((n, *params.shape), params.detach(), generator)  # [n, B, *V, K]

    def hard(self, z):
        return F.one_hot(z.detach().argmax(-1), z.shape[-1]).to(z.dtype)

    def relax(self, z, tau):
        # shifted by the (detached) maximum: z / tau alone overflows for huge z or tiny tau (softmax of inf = NaN)
        return torch.softmax((z - z.detach().amax(-1, keepdim=True)) / tau, dim=-1)

    def conditional(self, params, b, generator=None):
        # Given argmax b: the max is Gumbel(logsumexp theta), independent of b; every other coordinate is a
        # Gumbel(theta_i) truncated below the max:  z_b = lse - log(-log v_b),
        # z_i = -log(exp(-theta_i) (-log v_i) + exp(-z_b))  (Tucker et al. 2017, appendix; unnormalised form).
        v = uniform(tuple(b.shape), params.detach(), generator)  # [n, B, *V, K]
        theta = params.expand_as(b)
        e = -torch.log(v)  # Exp(1) variables
        lse = torch.logsumexp(params, dim=-1, keepdim=True).expand_as(b)
        z_top = lse - torch.log(e)  # candidate max (Gumbel(lse)) for every coordinate
        z_b = (z_top * b).sum(-1, keepdim=True)  # [n, B, *V, 1]
        z_other = -torch.logaddexp(torch.log(e) - theta, -z_b)
        return torch.where(b > 0.5, z_top, z_other)


class KSubset(Family):
    """Subsets of exactly ``k`` of ``n`` items: ``p(z) = exp(<theta, z>) / e_k(exp(theta))`` (conditional Poisson).

    ``e_k`` is the elementary symmetric polynomial, computed by the recursion
    ``e_j(w_i..w_n) = e_j(w_{i+1}..w_n) + w_i e_{j-1}(w_{i+1}..w_n)`` in log space; samples are drawn item by item
    with ``p(z_i = 1 | r left) = w_i e_{r-1}(w_{i+1}..) / e_r(w_i..)`` (Chen, Dempster & Liu, 1994).

    Numerics: every subset has ``k`` items, so the law is invariant to a common shift of a row's logits; the
    recursions run on ``theta - max(theta)`` (detached: the gradients stay exact) in float32 for half-precision
    logits (float16, bfloat16; results cast back) and in the logits' dtype otherwise, with a finite stand-in for
    ``log 0`` of ``-finfo.max / 8``. Hence logits near the float maximum are fine, but a row whose spread is
    astronomically wide is refused: ``k * (max - min) <= finfo.max / 16`` of that dtype (~1.1e307 in float64,
    ~2.1e37 in float32 and half precision), else ``ValueError``. ``log_partition`` is ``k max(theta)`` plus the
    shifted one (``+-inf`` only when that exact value leaves the float range).
    """

    name = "KSubset"
    layout = "[B, n]"

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        self.k = k

    def __repr__(self) -> str:
        return f"KSubset(k={self.k})"

    def check(self, params, name="logits"):
        check_tensor_param(params, name, min_ndim=2, layout=self.layout)
        if params.ndim != 2:
            raise ValueError(f"{name} must have shape {self.layout} for KSubset; got {list(params.shape)}")
        if self.k > params.shape[1]:
            raise ValueError(f"k={self.k} must be at most the number of items n={params.shape[1]}")
        self._shifted(params, name)
        return params

    def _shifted(self, params: Tensor, name: str = "logits") -> tuple[Tensor, Tensor]:
        """``(theta - max theta, max theta)`` ``([B, n], [B, 1])`` in the working dtype (float32 for half precision),
        the maximum detached; ``ValueError`` when a row's spread is too wide for the recursions (class docstring)."""
        work = params.to(torch.float32) if params.dtype in (torch.float16, torch.bfloat16) else params
        top = work.detach().amax(1, keepdim=True)  # [B, 1]
        spread = top - work.detach().amin(1, keepdim=True)  # [B, 1] (inf when it overflows)
        limit = torch.finfo(work.dtype).max / (16 * self.k)
        if not bool((spread <= limit).all()):
            worst = float(spread.max())
            raise ValueError(f"{name}: KSubset(k={self.k}) needs every row's spread max - min <= finfo.max / (16 k) "
                             f"= {limit:.4g} in {work.dtype} (the log-space recursions must not overflow); got "
                             f"{worst:.4g}. Shift or scale the logits, or use float64")
        return work - top, top

    def _table(self, th: Tensor) -> Tensor:
        """``L[:, i, j] = log e_j(w_i, ..., w_{n-1})`` ``[B, n+1, k+1]`` of shifted logits ``th`` (working dtype)."""
        b, n = th.shape
        k = self.k
        row = torch.full((b, k + 1), -torch.finfo(th.dtype).max / 8, dtype=th.dtype, device=th.device)  # "log 0"
        row[:, 0] = 0.0
        rows = [row]
        for i in range(n - 1, -1, -1):
            prev = rows[-1]  # [B, k+1] for suffix i+1
            take = th[:, i : i + 1] + prev[:, :-1]  # [B, k]
            new = torch.cat([prev[:, :1], torch.logaddexp(prev[:, 1:], take)], dim=1)  # [B, k+1]
            rows.append(new)
        return torch.stack(rows[::-1], dim=1)  # [B, n+1, k+1]

    def log_partition(self, params: Tensor) -> Tensor:
        """``log e_k(exp(theta))`` ``[B]`` = ``k max(theta) + log e_k(exp(theta - max theta))``."""
        th, top = self._shifted(params)
        return (self.k * top[:, 0] + self._table(th)[:, 0, self.k]).to(params.dtype)

    def sample(self, params, n, generator=None):
        with torch.no_grad():
            th, _ = self._shifted(params.detach())
            table = self._table(th)  # [B, N+1, k+1]
            b, m = th.shape
            u = uniform((n, b, m), th, generator)  # [n, B, N]
            left = torch.full((n, b), self.k, dtype=torch.long, device=th.device)  # [n, B]
            out = torch.zeros((n, b, m), dtype=params.dtype, device=th.device)
            for i in range(m):
                nxt = table[:, i + 1, :].expand(n, b, self.k + 1)  # [n, B, k+1]
                cur = table[:, i, :].expand(n, b, self.k + 1)
                num = th[:, i] + nxt.gather(-1, (left - 1).clamp(min=0)[..., None])[..., 0]  # [n, B]
                den = cur.gather(-1, left[..., None])[..., 0]
                take = (u[..., i] < torch.exp(num - den)) & (left > 0)
                out[..., i] = take.to(params.dtype)
                left = left - take.long()
            return out

    def log_prob(self, params, z):
        th, top = self._shifted(params)
        zw = z.to(th.dtype)
        # <theta, z> - A(theta) = <theta - c, z> - A(theta - c) + c (sum z - k), the last term 0 for k-subsets
        lp = (zw * th).sum(-1) - self._table(th)[:, 0, self.k] + top[:, 0] * (zw.sum(-1) - self.k)
        return lp.to(params.dtype)  # [n, B]

    def mean(self, params):
        """Inclusion probabilities ``P(z_i = 1) = w_i e_{k-1}(w_{-i}) / e_k(w)`` ``[B, n]`` (differentiable).

        ``e_{k-1}(w_{-i}) = sum_j e_j(w_0..w_{i-1}) e_{k-1-j}(w_{i+1}..w_{n-1})`` from the suffix table and the
        suffix table of the reversed items (the prefixes).
        """
        th, _ = self._shifted(params)
        n, k = th.shape[1], self.k
        suffix = self._table(th)  # [B, n+1, k+1]: log e_j(w_i..w_{n-1})
        prefix = self._table(th.flip(1)).flip(1)  # [B, n+1, k+1]: log e_j(w_0..w_{i-1}) at row i
        j = torch.arange(k, device=th.device)
        left = prefix[:, :n, :k]  # [B, n, k]: e_j(w_{<i}), j = 0..k-1
        right = suffix[:, 1:, :][..., k - 1 - j]  # [B, n, k]: e_{k-1-j}(w_{>i})
        log_rest = torch.logsumexp(left + right, dim=-1)  # [B, n]
        return torch.exp(th + log_rest - suffix[:, 0, k, None]).to(params.dtype)

    def complement(self, params):
        """Exclusion probabilities ``P(z_i = 0) = e_k(w_{-i}) / e_k(w)`` ``[B, n]`` (no ``1 - P(z_i = 1)``).

        ``e_k(w_{-i}) = sum_{j=0..k} e_j(w_0..w_{i-1}) e_{k-j}(w_{i+1}..w_{n-1})``, from the same tables as
        :meth:`mean`.
        """
        th, _ = self._shifted(params)
        n, k = th.shape[1], self.k
        suffix = self._table(th)  # [B, n+1, k+1]
        prefix = self._table(th.flip(1)).flip(1)  # [B, n+1, k+1]
        j = torch.arange(k + 1, device=th.device)
        left = prefix[:, :n, :]  # [B, n, k+1]: e_j(w_{<i}), j = 0..k
        right = suffix[:, 1:, :][..., k - j]  # [B, n, k+1]: e_{k-j}(w_{>i})
        log_out = torch.logsumexp(left + right, dim=-1)  # [B, n]
        return torch.exp(log_out - suffix[:, 0, k, None]).to(params.dtype)

    def outcomes(self, event_shape, like):
        (n,) = event_shape
        if math.comb(n, self.k) > 200_000:
            raise ValueError(f"enumerating C({n}, {self.k}) subsets is too large")
        rows = []
        for c in itertools.combinations(range(n), self.k):
            r = torch.zeros(n, dtype=like.dtype, device=like.device)
            r[list(c)] = 1.0
            rows.append(r)
        return torch.stack(rows)  # [N, n]


def _gumbel(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``Gumbel(0, 1)`` noise ``-log(-log u)`` on ``like``'s device and dtype (no autograd)."""
    return Gumbel().sample(shape, generator, like.device, like.dtype)


def _logistic(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``Logistic(0, 1)`` noise ``logit(u) = log u - log(1 - u)`` on ``like``'s device and dtype (no autograd)."""
    return Logistic().sample(shape, generator, like.device, like.dtype)


def as_family(family: Family | None) -> Family:
    if family is None:
        return Bernoulli()
    if not isinstance(family, Family):
        raise ValueError(f"family must be a discreteopt.stochastic Family (Bernoulli(), Categorical(), KSubset(k)); "
                         f"got {type(family).__name__}")
    return family
