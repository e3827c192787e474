"""Losses for learning through solvers: Fenchel-Young, SPO+, Hamming, regret; over a pool of solutions (a
:class:`~discreteopt.solution_cache.SolutionCache`): NCE, contrastive MAP, pointwise / pairwise / listwise
learning to rank; perturbation gradient (PGB / PGC).

Conventions: every loss takes the solver's *natural* arguments (costs for ``sense == "min"``, scores
for ``sense == "max"``) and returns a loss to minimise. ``reduction`` is ``"mean"`` (default), ``"sum"``
or ``"none"`` (per instance ``[B]``).
"""

from .fenchel_young import FenchelYoungLoss
from .hamming import HammingLoss
from .ltr import ListwiseLTR, PairwiseLTR, PointwiseLTR
from .nce import NCE, ContrastiveMAP
from .perturbation_gradient import PerturbationGradient
from .regret import regret
from .spo import SPOPlus

__all__ = ["NCE", "ContrastiveMAP", "FenchelYoungLoss", "HammingLoss", "ListwiseLTR", "PairwiseLTR",
           "PerturbationGradient", "PointwiseLTR", "SPOPlus", "regret"]
