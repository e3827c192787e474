"""Baselines (control variates) for score-function style estimators.

The score-function identity ``grad E[f(Z)] = E[f(Z) grad nu(Z)] / scale`` holds with ``f`` replaced by
``f - b`` for any ``b`` independent of ``Z_s`` because ``E[grad nu(Z)] = 0``. A baseline maps per-sample
values ``f [B, S]`` (and, when :attr:`needs_map` is set, the values at the unperturbed MAP solution ``[B, S]``)
to ``b [B, S]``.
"""

from __future__ import annotations

import abc

import torch

from ..stochastic.loo import loo_sum


class Baseline(abc.ABC):
    #: True when the estimator must also solve the unperturbed problem (``+B`` instances in forward)
    needs_map: bool = False
    #: smallest number of samples the baseline works with
    min_samples: int = 1

    @abc.abstractmethod
    def __call__(self, values: torch.Tensor, map_values: torch.Tensor | None) -> torch.Tensor:
        """``b [B, S]`` for ``values [B, S]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LeaveOneOut(Baseline):
    """``b_s = mean_{j != s} f_j`` ``[B, S]`` (Kool, van Hoof & Welling, 2019, "Buy 4 REINFORCE samples, get a
    baseline for free").

    Unbiased because ``b_s`` does not depend on ``Z_s``; needs ``S >= 2``. The sum over the other samples is an
    exclusive prefix plus an exclusive suffix sum (:func:`discreteopt.stochastic.loo.loo_sum`), never
    ``sum_j f_j - f_s``: that form's rounding error depends on ``f_s`` itself, which biases the estimate when one
    sample's value dominates the others (e.g. ``f = [1e8, 1, 2]`` in float32 gives ``b_0 = 0`` instead of 1.5).

    >>> est = ScoreFunction(scale=1.0, samples=8, baseline=LeaveOneOut())   # the ScoreFunction default
    """

    min_samples = 2

    def __call__(self, values, map_values):
        s = values.shape[1]
        if s < 2:
            raise ValueError(f"the leave-one-out baseline needs at least 2 samples; got values of shape "
                             f"{list(values.shape)} ([B, S])")
        return loo_sum(values, dim=1) / (s - 1)  # [B, S]


class MAPBaseline(Baseline):
    """``b = f(y*(theta))``: the value at the unperturbed solution (one extra solve per instance)."""

    needs_map = True

    def __call__(self, values, map_values):
        return map_values
