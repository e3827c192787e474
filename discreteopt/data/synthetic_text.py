"""A synthetic text-like regression task whose rationale is known exactly (for subset precision).

It mimics the BeerAdvocate aroma task of L2X (Chen et al., ICML 2018): a review mixes neutral words, words about the
target aspect, and words about a correlated *other* aspect. Generation of one sequence of length ``L``:

* a target rating ``r ~ U(0, 1)`` and a decoy rating ``r' = rho * r + (1 - rho) * u``, ``u ~ U(0, 1)``;
* ``n_relevant`` positions hold *aspect* tokens: token values ``v_j = clip(r + N(0, sigma^2), 0, 1)`` quantised to
  one of ``n_levels`` levels, each level owning ``words_per_level`` synonyms;
* ``n_decoy`` positions hold tokens of a second aspect vocabulary carrying ``r'`` the same way;
* the remaining positions are neutral tokens drawn uniformly;
* the label is ``y = mean_j value(v_j)`` over the aspect tokens -- exactly a function of the relevant tokens.

Id layout: 0 padding (unused), ``1 .. n_neutral`` neutral, then aspect tokens, then decoy tokens.
Subset precision of a selection ``S`` of ``k`` positions is ``|S ∩ R| / k`` with ``R`` the aspect positions.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int_in_range
from .text import TextData


def generate_synthetic_text(n: int, length: int = 50, n_relevant: int = 15, n_decoy: int = 10,
                            n_neutral: int = 200, n_levels: int = 5, words_per_level: int = 8,
                            sigma: float = 0.15, rho: float = 0.6, seed: int = 0) -> TextData:
    """``n`` sequences of ``length`` tokens; see the module docstring for the generative model."""
    n = check_int_in_range(n, "n", 1, 10**8)
    length = check_int_in_range(length, "length", 2, 10**6)
    n_relevant = check_int_in_range(n_relevant, "n_relevant", 1, length)
    n_decoy = check_int_in_range(n_decoy, "n_decoy", 0, length - n_relevant)
    rng = np.random.default_rng(seed)
    aspect0 = 1 + n_neutral
    decoy0 = aspect0 + n_levels * words_per_level
    vocab_size = decoy0 + n_levels * words_per_level

    def aspect_tokens(rating: np.ndarray, count: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        val = np.clip(rating[:, None] + sigma * rng.standard_normal((n, count)), 0.0, 1.0)  # [n, count]
        level = np.minimum((val * n_levels).astype(np.int64), n_levels - 1)
        word = rng.integers(0, words_per_level, (n, count))
        return offset + level * words_per_level + word, (level + 0.5) / n_levels

    r = rng.uniform(0.0, 1.0, n)
    r_decoy = rho * r + (1.0 - rho) * rng.uniform(0.0, 1.0, n)
    tok_rel, val_rel = aspect_tokens(r, n_relevant, aspect0)  # [n, n_relevant]
    tok_dec, _ = aspect_tokens(r_decoy, n_decoy, decoy0)  # [n, n_decoy]
    tok_neu = 1 + rng.integers(0, n_neutral, (n, length - n_relevant - n_decoy))
    tokens = np.concatenate([tok_rel, tok_dec, tok_neu], axis=1)  # [n, L], relevant first before shuffling
    relevant = np.zeros((n, length), dtype=bool)
    relevant[:, :n_relevant] = True
    perm = np.argsort(rng.random((n, length)), axis=1)  # a random permutation of positions per row
    tokens = np.take_along_axis(tokens, perm, axis=1)
    relevant = np.take_along_axis(relevant, perm, axis=1)
    labels = val_rel.mean(axis=1).astype(np.float32)
    return TextData(tokens.astype(np.int64), labels, relevant, vocab_size)
