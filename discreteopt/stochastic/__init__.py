"""Gradient estimators for discrete (and black-box continuous) random variables.

Every estimator follows one calling convention (see :mod:`discreteopt.stochastic._types`)::

    est = reinforce(f, logits, family=Bernoulli(), samples=8, baseline=OptimalConstant())
    est.surrogate.backward()      # logits.grad <- estimate of d E[f(z)] / d logits
    est.n_evals                   # evaluations of f per problem

``logits`` is ``[B, *E]`` (a batch of independent problems), ``f`` maps samples ``[S, B, *E]`` to values ``[S, B]``.
:mod:`.exact` computes exact expectations and gradients by enumeration to test any estimator; :func:`loo_sum` forms
leave-one-out sums without ``total - own`` (whose round-off would make a baseline depend on its own sample).
"""

from . import exact
from ._types import Estimate
from .arm import arm, disarm, stick_breaking_logits
from .baselines import (
    Baseline,
    BaselineOutput,
    ControlVariate,
    LearnedBaseline,
    LeaveOneOut,
    MovingAverage,
    NoBaseline,
    OptimalConstant,
)
from .evolution import evolution_strategies
from .exact import assert_unbiased, check_unbiased
from .families import Bernoulli, Categorical, Family, KSubset
from .loo import loo_mean, loo_sum
from .measure_valued import measure_valued, measure_valued_gaussian
from .multisample import rloo, vimco
from .pathwise import pathwise
from .policy_gradient import group_advantages, grpo_surrogate, kl_k3, ppo_surrogate
from .rebar_relax import ConcreteControlVariate, NeuralControlVariate, rebar, relax
from .relaxations import (
    TemperatureSchedule,
    anneal_tau,
    concrete,
    gumbel_sigmoid,
    gumbel_softmax,
    l2x_subset,
    relaxed_topk_l2x,
    relaxed_topk_softsub,
    softsub,
    straight_through_gumbel,
)
from .score_function import rao_blackwell, reinforce, score_function_gradient

__all__ = [
    "Baseline", "BaselineOutput", "Bernoulli", "Categorical", "ConcreteControlVariate", "ControlVariate",
    "Estimate", "Family", "KSubset", "LearnedBaseline", "LeaveOneOut", "MovingAverage", "NeuralControlVariate",
    "NoBaseline", "OptimalConstant", "TemperatureSchedule", "anneal_tau", "arm", "assert_unbiased",
    "check_unbiased", "concrete", "disarm", "evolution_strategies", "exact", "group_advantages",
    "grpo_surrogate", "gumbel_sigmoid", "gumbel_softmax", "kl_k3", "l2x_subset", "loo_mean", "loo_sum",
    "measure_valued", "measure_valued_gaussian", "pathwise", "ppo_surrogate", "rao_blackwell", "rebar",
    "reinforce", "relax", "relaxed_topk_l2x", "relaxed_topk_softsub", "rloo", "score_function_gradient", "softsub",
    "stick_breaking_logits", "straight_through_gumbel", "vimco",
]
