"""Tokenised text data shared by the synthetic text task and the BeerAdvocate loader."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK = "<pad>", "<unk>"


@dataclasses.dataclass
class Vocabulary:
    """Token <-> id map; id 0 is padding, id 1 the unknown token."""

    itos: list[str]

    def __post_init__(self) -> None:
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], max_size: int = 20000, min_count: int = 1) -> Vocabulary:
        """Most frequent tokens first (ties alphabetical), at most ``max_size`` entries including PAD/UNK."""
        counts = Counter(tok for doc in docs for tok in doc)
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls([PAD, UNK, *ranked[: max(0, max_size - 2)]])

    def encode(self, doc: Sequence[str], length: int) -> np.ndarray:
        """Ids ``[length]`` (truncated, right-padded with 0)."""
        ids = np.zeros(length, dtype=np.int64)
        toks = [self.stoi.get(t, 1) for t in doc[:length]]
        ids[: len(toks)] = toks
        return ids


@dataclasses.dataclass
class TextData:
    """Token ids ``[N, L]`` (0 = padding), targets ``[N]`` float32 and, where known, the relevant tokens.

    ``relevant [N, L]`` (bool) marks the ground-truth rationale (the tokens that determine the label); ``None``
    when the data has no annotation.
    """

    tokens: np.ndarray
    labels: np.ndarray
    relevant: np.ndarray | None
    vocab_size: int

    def __post_init__(self) -> None:
        if self.tokens.ndim != 2:
            raise ValueError(f"tokens must have shape [N, L]; got {self.tokens.shape}")
        if self.labels.shape != (len(self.tokens),):
            raise ValueError(f"labels must have shape [N] = ({len(self.tokens)},); got {self.labels.shape}")
        if self.relevant is not None and self.relevant.shape != self.tokens.shape:
            raise ValueError(f"relevant must have the shape of tokens {self.tokens.shape}; got {self.relevant.shape}")

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, idx) -> TextData:
        rel = None if self.relevant is None else self.relevant[idx]
        return TextData(self.tokens[idx], self.labels[idx], rel, self.vocab_size)
