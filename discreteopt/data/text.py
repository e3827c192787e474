"""Tokenised text data shared by the synthetic text task and the BeerAdvocate loader."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK = "<pad>", "<unk>"


@dataclasses.dataclass
class Vocabulary:
    """Token <-> id map: ``itos[i]`` is the token of id ``i``; id 0 is padding (``<pad>``), id 1 the unknown token
    (``<unk>``). ``itos`` must be a list of distinct strings starting with those two.

    >>> v = Vocabulary.build([["a", "b", "a"]])        # ['<pad>', '<unk>', 'a', 'b']
    >>> v.encode(["a", "z"], 4)                         # array([2, 1, 0, 0])
    """

    itos: list[str]

    def __post_init__(self) -> None:
        if not isinstance(self.itos, list) or not all(isinstance(t, str) for t in self.itos):
            raise ValueError(f"itos must be a list of token strings; got {type(self.itos).__name__}")
        if self.itos[:2] != [PAD, UNK]:
            raise ValueError(f"itos must start with {PAD!r} (id 0) and {UNK!r} (id 1); got {self.itos[:2]!r}")
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError(f"itos must hold distinct tokens; got {len(self.itos) - len(self.stoi)} duplicates")

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], max_size: int = 20000, min_count: int = 1) -> Vocabulary:
        """Most frequent tokens first (ties alphabetical), at most ``max_size`` entries including PAD/UNK."""
        counts = Counter(tok for doc in docs for tok in doc)
        ranked = sorted((t for t, c in counts.items() if c >= min_count and t not in (PAD, UNK)),
                        key=lambda t: (-counts[t], t))  # a literal "<unk>" in the text maps to id 1
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

    Fields (checked on construction; ``ValueError`` naming the field):

    * ``tokens [N, L]``: integer ids in ``[0, vocab_size)``, ``N >= 1``;
    * ``labels [N]``: finite real targets;
    * ``relevant [N, L]`` (bool, or 0/1) marks the ground-truth rationale (the tokens that determine the label);
      ``None`` when the data has no annotation;
    * ``vocab_size``: a positive integer.

    Built by :func:`~discreteopt.data.generate_synthetic_text` and :func:`~discreteopt.data.load_beer`.
    """

    tokens: np.ndarray
    labels: np.ndarray
    relevant: np.ndarray | None
    vocab_size: int

    def __post_init__(self) -> None:
        for name in ("tokens", "labels"):
            if not isinstance(getattr(self, name), np.ndarray):
                raise ValueError(f"{name} must be a numpy array; got {type(getattr(self, name)).__name__}")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, (int, np.integer)) \
                or self.vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer; got {self.vocab_size!r}")
        if self.tokens.ndim != 2 or len(self.tokens) == 0:
            raise ValueError(f"tokens must have shape [N, L] with N >= 1; got {self.tokens.shape}")
        if self.tokens.dtype.kind not in "iu":
            raise ValueError(f"tokens must be integer ids; got dtype {self.tokens.dtype}")
        if self.tokens.size and (self.tokens.min() < 0 or self.tokens.max() >= self.vocab_size):
            raise ValueError(f"tokens must be ids in [0, vocab_size={self.vocab_size}); got values in "
                             f"[{int(self.tokens.min())}, {int(self.tokens.max())}]")
        if self.labels.shape != (len(self.tokens),):
            raise ValueError(f"labels must have shape [N] = ({len(self.tokens)},); got {self.labels.shape}")
        if self.labels.dtype.kind not in "iuf" or not np.isfinite(self.labels).all():
            raise ValueError(f"labels must be finite real numbers; got dtype {self.labels.dtype}"
                             + (f" with {int((~np.isfinite(self.labels)).sum())} NaN/inf entries"
                                if self.labels.dtype.kind == "f" else ""))
        if self.relevant is not None:
            if not isinstance(self.relevant, np.ndarray) or self.relevant.shape != self.tokens.shape:
                got = self.relevant.shape if isinstance(self.relevant, np.ndarray) else type(self.relevant).__name__
                raise ValueError(f"relevant must have the shape of tokens {self.tokens.shape}; got {got}")
            if self.relevant.dtype.kind != "b" and not np.isin(self.relevant, (0, 1)).all():
                raise ValueError(f"relevant must be a bool (or 0/1) mask; got dtype {self.relevant.dtype} with "
                                 "other values")

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, idx) -> TextData:
        rel = None if self.relevant is None else self.relevant[idx]
        return TextData(self.tokens[idx], self.labels[idx], rel, self.vocab_size)
