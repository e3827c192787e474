"""Noise distributions for perturb-and-MAP estimators (see :mod:`discreteopt.noise.base`)."""

from .base import Antithetic, Noise
from .gumbel import Gumbel
from .logistic import Logistic
from .normal import Normal
from .sum_of_gamma import SumOfGamma

__all__ = ["Antithetic", "Gumbel", "Logistic", "Noise", "Normal", "SumOfGamma"]
