"""Adaptive I-MLE (Minervini, Franceschi & Niepert, AAAI 2023, "Adaptive Perturbation-Based Gradient
Estimation for Discrete Latent Variable Models").

Same forward as :class:`~discreteopt.estimators.imle.IMLE`. The finite-difference step is adapted online so
that the gradient is neither almost always zero (step too small: the target MAP equals the forward MAP) nor
a coarse difference of unrelated solutions (step too large). After each backward pass::

    n_t   = mean over instances and samples of #{ i : (y_s - y'_s)_i != 0 }   (non-zero gradient entries)
    m_t   = (1 - momentum) * m_{t-1} + momentum * n_t                          (running count, m_0 = n_0)
    lam_{t+1} = clip( lam_t * exp( eta * (target - m_t) / target ), lam_min, lam_max )

so ``lam`` grows while the running count is below ``target`` and shrinks above it (a multiplicative,
scale-free version of the reference implementation's fixed +-step on ``beta``; ``momentum = 0.1`` matches
its running-norm decay of 0.9).

``relative=True`` uses the reference's perturbation magnitude: the step of sample ``s`` of instance ``b`` is
``lam * ||theta_b|| / ||g_bs||`` (norms over the event dims), so ``lam`` is a fraction of ``||theta||`` and
does not depend on the scale of ``theta`` or of the loss; the 1/step scaling then divides by that step.

``two_sided=True`` uses central differences (the paper's symmetric perturbation)::

    dL/dtheta = mean_s ( y*(theta + eps_s + lam g_s) - y*(theta + eps_s - lam g_s) ) / (2 lam)

(``2*B*S`` backward solves in one batch; the forward solutions are not reused) instead of the one-sided
``(y*(theta + eps_s) - y*(theta + eps_s - lam g_s)) / lam``. ``divide_by_lam=False`` drops the ``1/lam``
(``1/step``) scaling as in torch-imle.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch

from .._validation import check_positive
from .base import check_bool, check_in_dtype, check_step, mean_samples
from .imle import IMLE, TargetDistribution


class AIMLE(IMLE):
    """I-MLE with ``lam`` adapted to a ``target`` number of non-zero gradient entries per sample.

    Args:
        target: desired mean number ``> 0`` of non-zero entries of ``y_s - y'_s`` per sample (default 1).
        samples: ``S >= 1`` per instance (default 1).
        noise: as for :class:`~discreteopt.estimators.imle.IMLE` (default ``"gumbel"``; ``None``: deterministic).
        initial_lam: starting step, in ``[lam_min, lam_max]`` (default 1).
        eta: adaptation rate ``> 0`` of the multiplicative update (default 0.1).
        momentum: weight in ``(0, 1]`` of the newest count in the running average (default 0.1).
        two_sided: central differences ``(y*(.. + lam g) - y*(.. - lam g)) / (2 lam)`` (``2 B S`` backward solves).
        relative: step ``lam * ||theta_b|| / ||g_bs||`` (``lam`` a fraction of ``||theta||``).
        lam_min, lam_max: bounds ``0 < lam_min <= lam_max`` of the adapted step (default ``1e-3``, ``1e3``).
        divide_by_lam: divide by the step (default; ``False``: torch-imle's convention).
        target_distribution: the :class:`~discreteopt.estimators.imle.TargetDistribution` (default
            ``alpha = beta = 1``).
        scale: noise scale ``> 0`` (perturbation ``scale * eps``), as for IMLE.

    Shapes and solver calls: as :class:`~discreteopt.estimators.imle.IMLE` (``2 B S`` backward solves when
    ``two_sided``). State: ``lam`` and ``running_nonzero`` (saved with the layer's ``state_dict``).

    Formula (after each backward; ``n_t`` = mean non-zero count per sample)::

        m_t = (1 - momentum) m_{t-1} + momentum n_t,   lam <- clip(lam exp(eta (target - m_t) / target))

    Reference: Minervini, Franceschi & Niepert, "Adaptive Perturbation-Based Gradient Estimation for Discrete
    Latent Variable Models", AAAI 2023.

    Example::

        >>> import discreteopt as do
        >>> est = AIMLE(target=2.0, samples=4)
        >>> layer = do.DiscreteLayer(do.solvers.TopK(3), est, seed=0)
        >>> layer(torch.randn(8, 10, requires_grad=True)).sum().backward()
        >>> len(est.lam_history)            # lam was adapted once, after the backward pass
        1
    """

    def __init__(self, target: float = 1.0, samples: int = 1, noise="gumbel", initial_lam: float = 1.0,
                 eta: float = 0.1, momentum: float = 0.1, two_sided: bool = False, relative: bool = False,
                 lam_min: float = 1e-3, lam_max: float = 1e3, divide_by_lam: bool = True,
                 target_distribution: TargetDistribution | None = None, scale: float = 1.0):
        check_step(initial_lam, "initial_lam")
        if target_distribution is not None and not isinstance(target_distribution, TargetDistribution):
            raise ValueError(f"target_distribution must be a TargetDistribution or None; "
                             f"got {type(target_distribution).__name__}")
        super().__init__(lam=initial_lam, samples=samples, noise=noise, target=target_distribution,
                         divide_by_lam=divide_by_lam, scale=scale)
        self.target_nonzero = check_positive(target, "target")
        self.eta = check_positive(eta, "eta")
        if isinstance(momentum, bool) or not (isinstance(momentum, (int, float)) and 0 < momentum <= 1):
            raise ValueError(f"momentum must be in (0, 1]; got {momentum!r}")
        self.momentum = float(momentum)
        self.lam_min = check_step(lam_min, "lam_min")
        self.lam_max = check_step(lam_max, "lam_max")
        if self.lam_min > self.lam_max:
            raise ValueError(f"lam_min must be <= lam_max; got lam_min={lam_min}, lam_max={lam_max}")
        if not self.lam_min <= self.lam <= self.lam_max:
            raise ValueError(f"initial_lam must be in [lam_min, lam_max] = [{lam_min}, {lam_max}]; got {initial_lam}")
        self.two_sided = check_bool(two_sided, "two_sided")
        self.relative = check_bool(relative, "relative")
        self.running_nonzero: float | None = None
        self._lam_history: deque[float] = deque(maxlen=10_000)

    def check_dtype(self, dtype):
        """As :meth:`IMLE.check_dtype`, for the whole range ``[lam_min, lam_max]`` the adapted ``lam`` may take (an
        unusable bound is reported at the first forward, not in the middle of training)."""
        super().check_dtype(dtype)
        for name in ("lam_min", "lam_max"):
            check_in_dtype(getattr(self, name), name, dtype, self, "the adapted step lam may reach it, and the "
                           "target theta - lam * dL/dy and the division by lam leave the float range there")

    def step_size(self, theta, grad_y):
        if not self.relative:
            return self.lam
        ndim = theta.ndim - 1
        dims = tuple(range(2, 2 + ndim))
        theta_norm = torch.linalg.vector_norm(theta, dim=tuple(range(1, 1 + ndim)))  # [B]
        g_norm = torch.linalg.vector_norm(grad_y, dim=dims)  # [B, S]
        # a zero g gives a zero difference whatever the step: keep the step finite there
        step = self.lam * theta_norm.unsqueeze(1) / torch.where(g_norm > 0, g_norm, torch.ones_like(g_norm))
        step = torch.where(step > 0, step, torch.full_like(step, self.lam))  # theta == 0: absolute step
        return step.reshape(*step.shape, *([1] * ndim))  # [B, S] -> [B, S, 1, ...]

    def backward(self, maximize, theta, ctx, grad_y):
        if not self.two_sided:
            return super().backward(maximize, theta, ctx, grad_y)
        step = self.step_size(ctx.theta, grad_y)
        down = self.targets(ctx, grad_y, step)  # alpha theta + eps - beta step g: [B, S, *E]
        up = self.targets(ctx, -grad_y, step)  # alpha theta + eps + beta step g: [B, S, *E]
        both = torch.stack([up, down])  # [2, B, S, *E]
        ys = maximize(both.reshape(-1, *theta.shape[1:]))  # [2*B*S, *Y]
        ys = ys.reshape(2, *grad_y.shape[:2], *ys.shape[1:])  # [2, B, S, *Y]
        diff = ys[0] - ys[1]  # [B, S, *Y]
        self._observe(diff)
        diff = diff.div_(2 * step if self.divide_by_lam else 2.0)
        return mean_samples(diff)  # [B, *E]

    def _observe(self, diff):
        nonzero = float(torch.count_nonzero(diff)) / (diff.shape[0] * diff.shape[1])  # per sample, [B, S] mean
        m = nonzero if self.running_nonzero is None else \
            (1 - self.momentum) * self.running_nonzero + self.momentum * nonzero
        self.running_nonzero = m
        # (a large eta: exp would raise OverflowError; lam * inf is clipped to lam_max below)
        factor = math.exp(min(self.eta * (self.target_nonzero - m) / self.target_nonzero, 709.0))
        self.lam = min(max(self.lam * factor, self.lam_min), self.lam_max)
        self._lam_history.append(self.lam)

    @property
    def lam_history(self) -> list[float]:
        """``lam`` after each of the last 10 000 backward passes."""
        return list(self._lam_history)

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "running_nonzero": self.running_nonzero}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"lam", "running_nonzero"}:
            raise ValueError(f"AIMLE state must have keys ['lam', 'running_nonzero']; got {sorted(state)}")
        self.lam = check_step(state["lam"], "lam")
        rn = state["running_nonzero"]
        self.running_nonzero = None if rn is None else float(rn)


__all__ = ["AIMLE"]
