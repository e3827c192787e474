"""The ``Noise`` contract: perturbations for perturb-and-MAP estimators.

A noise distribution draws i.i.d. entries ``eps`` of a given shape with a caller-supplied
:class:`torch.Generator`, directly on the caller's device and in the caller's dtype (never on the CPU
and then moved), so a seeded generator makes a run reproducible on every device.

Estimators that differentiate through the noise density (perturbed optimizers, score-function
estimators) also need

* ``log_prob(eps)`` -- the element-wise log-density, and
* ``score(eps) = d/d eps log p(eps)`` -- element-wise. The perturbed-optimizer identity
  (Berthet et al., 2020, "Learning with Differentiable Perturbed Optimizers", Prop. 3.1) uses
  ``grad nu(eps) = -score(eps)`` where ``p(eps) ~ exp(-nu(eps))``.

Noises without a tractable density (Sum-of-Gamma) raise ``NotImplementedError`` there.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

from .._validation import check_generator, check_positive


class Noise(abc.ABC):
    """I.i.d. element-wise noise with a ``scale`` (temperature): the base class of every perturbation.

    Args:
        scale: ``> 0`` (default 1). Estimators take their own ``scale`` and perturb with ``scale * eps``; give the
            scale in one place only (both different from 1 raises ``ValueError`` in the estimator).

    Shapes: :meth:`sample` ``(shape)`` -> a tensor of ``shape`` (estimators ask for ``[B, S, *E]``);
    :meth:`log_prob` and :meth:`score` are element-wise; :meth:`weighted_score` ``[B, S], [B, S, *E] -> [B, *E]``.

    Subclasses implement ``_sample(shape, generator, device, dtype)`` and, when the density is tractable,
    ``log_prob`` and ``score``; set ``symmetric = True`` when ``eps`` and ``-eps`` have the same law.
    Reference: Papandreou & Yuille, 2011 (perturb-and-MAP); Berthet et al., 2020 (the score identity).

    Example::

        >>> from discreteopt.noise import Normal
        >>> z = Normal().sample((2, 5, 3), generator=torch.Generator().manual_seed(0))   # [B, S, *E]
    """

    #: True when ``eps`` and ``-eps`` have the same law (allows antithetic sampling)
    symmetric: bool = False

    def __init__(self, scale: float = 1.0):
        self.scale = check_positive(scale, "scale")

    def sample(self, shape: Sequence[int], generator: torch.Generator | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw a tensor of ``shape`` on ``device`` with ``dtype`` using ``generator``."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        check_generator(generator, device)
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype; got {dtype}")
        return self._sample(tuple(int(s) for s in shape), generator, device, dtype)

    @abc.abstractmethod
    def _sample(self, shape: tuple[int, ...], generator: torch.Generator | None,
                device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Draw (arguments already checked)."""

    def log_prob(self, eps: torch.Tensor) -> torch.Tensor:
        """Element-wise log-density of ``eps``."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable density")

    def score(self, eps: torch.Tensor) -> torch.Tensor:
        """Element-wise ``d/d eps log p(eps)``."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable score")

    def weighted_score(self, weights: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``sum_s weights[b, s] * score(eps[b, s])``: ``weights [B, S]``, ``eps [B, S, *E]`` -> ``[B, *E]``.

        One batched matrix product over the samples; noises with a linear score (Normal) skip the
        ``[B, S, *E]`` score tensor altogether.
        """
        b, s = weights.shape
        score = self.score(eps).reshape(b, s, -1)  # [B, S, *E] -> [B, S, prod(E)]
        out = torch.bmm(weights.to(score.dtype).unsqueeze(1), score)  # [B, 1, prod(E)]
        return out.reshape(b, *eps.shape[2:])  # [B, *E]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"


def uniform_open(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """Uniform draws in the open interval (0, 1) (safe for ``log``)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    tiny = torch.finfo(dtype).tiny
    return u.clamp_(min=tiny, max=1.0 - torch.finfo(dtype).eps / 2)


class Antithetic(Noise):
    """Antithetic pairs of a symmetric noise along the sample dimension (variance reduction).

    ``sample([B, S, *E])`` draws ``eps`` for the first ``S/2`` samples and returns ``[eps, -eps]``
    concatenated along dim 1, so every perturbation comes with its mirror image. Both halves have the
    base law, so estimators stay unbiased; for the perturbed-optimizer Jacobian estimate the even part
    of ``y*(theta + scale Z)`` cancels exactly. ``S`` must be even.

    Args:
        base: a symmetric :class:`Noise` (``Normal``, ``Logistic``); its ``scale`` is this noise's scale.

    Reference: Hammersley & Morton, "A new Monte Carlo technique: antithetic variates", 1956.

    Example::

        >>> from discreteopt.noise import Normal
        >>> z = Antithetic(Normal()).sample((1, 4, 3))        # z[:, 2:] == -z[:, :2]
    """

    def __init__(self, base: Noise):
        if not isinstance(base, Noise):
            raise ValueError(f"base must be a Noise; got {type(base).__name__}")
        if not base.symmetric:
            raise ValueError(f"base must be a symmetric noise (Normal, Logistic) for antithetic pairs; "
                             f"got {base!r}")
        self.base = base
        self.scale = base.scale
        self.symmetric = True

    def _sample(self, shape, generator, device, dtype):
        if len(shape) < 2 or shape[1] % 2:
            raise ValueError(f"Antithetic noise needs an even number of samples in dim 1 of [B, S, *E]; "
                             f"got shape {shape}")
        half = self.base._sample((shape[0], shape[1] // 2, *shape[2:]), generator, device, dtype)
        return torch.cat([half, -half], dim=1)  # [B, S/2, *E] x 2 -> [B, S, *E]

    def log_prob(self, eps):
        return self.base.log_prob(eps)

    def score(self, eps):
        return self.base.score(eps)

    def weighted_score(self, weights, eps):
        return self.base.weighted_score(weights, eps)

    def __repr__(self) -> str:
        return f"Antithetic({self.base!r})"
