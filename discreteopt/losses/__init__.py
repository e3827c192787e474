"""Losses for learning through solvers: Fenchel-Young, SPO+, Hamming, regret.

Conventions: every loss takes the solver's *natural* arguments (costs for ``sense == "min"``, scores
for ``sense == "max"``) and returns a loss to minimise. ``reduction`` is ``"mean"`` (default), ``"sum"``
or ``"none"`` (per instance ``[B]``).
"""

from .fenchel_young import FenchelYoungLoss
from .hamming import HammingLoss
from .regret import regret
from .spo import SPOPlus

__all__ = ["FenchelYoungLoss", "HammingLoss", "SPOPlus", "regret"]
