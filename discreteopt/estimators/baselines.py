"""Baselines (control variates) for score-function style estimators.

The score-function identity ``grad E[f(Z)] = E[f(Z) grad nu(Z)] / sigma`` holds with ``f`` replaced by
``f - b`` for any ``b`` independent of ``Z_s`` because ``E[grad nu(Z)] = 0``. A baseline maps per-sample
values ``f [B, S]`` (and, when :attr:`needs_map` is set, the values at the unperturbed MAP solution ``[B, S]``)
to ``b [B, S]``.
"""

from __future__ import annotations

import abc

import torch


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
    """``b_s = mean_{j != s} f_j`` (Kool et al., 2019, "Buy 4 REINFORCE samples, get a baseline for free").

    Unbiased because ``b_s`` does not depend on ``Z_s``; needs ``S >= 2``.
    """

    min_samples = 2

    def __call__(self, values, map_values):
        s = values.shape[1]
        return (values.sum(dim=1, keepdim=True) - values) / (s - 1)  # [B, S]


class MAPBaseline(Baseline):
    """``b = f(y*(theta))``: the value at the unperturbed solution (one extra solve per instance)."""

    needs_map = True

    def __call__(self, values, map_values):
        return map_values
