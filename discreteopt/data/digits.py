"""scikit-learn's bundled 8x8 handwritten digits (1797 images, no download), as float tensors."""

from __future__ import annotations

import numpy as np


def load_digits_data(seed: int = 0, test_fraction: float = 0.2, binarize: bool = False):
    """Return ``(x_train, y_train, x_test, y_test)``: pixels ``[N, 64]`` float32 in ``[0, 1]``, labels int64.

    ``binarize`` thresholds pixels at 0.5 (for a Bernoulli decoder). The split is a seeded permutation.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the digits examples need scikit-learn: pip install 'discreteopt[examples]'") from exc
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)  # [1797, 64]
    if binarize:
        x = (x > 0.5).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]
