"""Loader for the BeerAdvocate multi-aspect reviews in the format of Lei et al. (2016), used by L2X.

Accepted files (plain text, UTF-8, optionally ``.gz``):

* **reviews** (``reviews.aspect1.train.txt`` ...): one review per line, ``SCORES<TAB>TOKENS``, where ``SCORES`` is
  one score or several space-separated scores in ``[0, 1]`` (the published files give five: appearance, aroma,
  palate, taste, overall) and ``TOKENS`` the space-separated, already tokenised text. ``aspect`` picks the score
  (``1`` = aroma) when several are present.
* **annotations** (``annotations.json``, optional): one JSON object per line with ``"x"`` (list of tokens),
  ``"y"`` (list of scores) and, per aspect id as a string key (``"0"``, ``"1"``, ``"2"``), a list of
  ``[start, end)`` token spans forming the human rationale for that aspect.

Reviews are encoded with a :class:`~discreteopt.data.text.Vocabulary` built on the training file (or the one
passed in), truncated/padded to ``max_len`` tokens; annotated data carries ``relevant [N, L]`` from the spans.
Reference: Lei, Barzilay & Jaakkola, "Rationalizing Neural Predictions" (EMNLP 2016); Chen et al., "Learning to
Explain" (ICML 2018).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np

from .text import TextData, Vocabulary


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _check_file(path: str | Path, name: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{name} {str(p)!r} does not exist (expected a BeerAdvocate file, see "
                                "discreteopt.data.beer for the format)")
    return p


def read_reviews(path: str | Path, aspect: int = 1) -> tuple[list[list[str]], np.ndarray]:
    """Token lists and the ``aspect`` score of every line ``SCORES<TAB>TOKENS`` of a review file."""
    p = _check_file(path, "reviews file")
    docs, labels = [], []
    with _open(p) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            head, sep, text = line.partition("\t")
            if not sep:
                raise ValueError(f"{p}:{lineno}: expected 'SCORES<TAB>TOKENS'; no tab found")
            try:
                scores = [float(s) for s in head.split()]
            except ValueError as exc:
                raise ValueError(f"{p}:{lineno}: scores must be numbers; got {head!r}") from exc
            if not scores:
                raise ValueError(f"{p}:{lineno}: no score before the tab")
            if not all(math.isfinite(v) for v in scores):
                raise ValueError(f"{p}:{lineno}: scores must be finite; got {head!r}")
            if len(scores) > 1 and not 0 <= aspect < len(scores):
                raise ValueError(f"aspect must be in [0, {len(scores) - 1}] for {p}; got {aspect}")
            labels.append(scores[aspect] if len(scores) > 1 else scores[0])
            docs.append(text.split())
    if not docs:
        raise ValueError(f"reviews file {str(p)!r} has no review")
    return docs, np.asarray(labels, dtype=np.float32)


def _span(span, n_tokens: int, where: str, aspect: int) -> tuple[int, int]:
    """A ``[start, end)`` token span checked against the review length."""
    try:
        start, end = (int(v) for v in span)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: spans of aspect {aspect} must be [start, end) integer pairs; got {span!r}") from None
    if not 0 <= start <= end <= n_tokens:
        raise ValueError(f"{where}: span {span!r} of aspect {aspect} must satisfy 0 <= start <= end <= "
                         f"{n_tokens} (the number of tokens)")
    return start, end


def read_annotations(path: str | Path, aspect: int = 1) -> tuple[list[list[str]], np.ndarray, list[np.ndarray]]:
    """Tokens, ``aspect`` scores and rationale masks (bool per token) of an ``annotations.json`` file."""
    p = _check_file(path, "annotations file")
    docs, labels, masks = [], [], []
    with _open(p) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                toks, scores = list(obj["x"]), list(obj["y"])
                spans = obj.get(str(aspect), [])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{p}:{lineno}: expected a JSON object with 'x', 'y' and span lists") from exc
            mask = np.zeros(len(toks), dtype=bool)
            for span in spans:
                start, end = _span(span, len(toks), f"{p}:{lineno}", aspect)
                mask[start:end] = True
            docs.append(toks)
            labels.append(float(scores[aspect]) if len(scores) > 1 else float(scores[0]))
            masks.append(mask)
    return docs, np.asarray(labels, dtype=np.float32), masks


def _encode(docs, labels, masks, vocab: Vocabulary, max_len: int) -> TextData:
    tokens = np.stack([vocab.encode(d, max_len) for d in docs])  # [N, max_len]
    relevant = None
    if masks is not None:
        relevant = np.zeros(tokens.shape, dtype=bool)
        for i, m in enumerate(masks):
            relevant[i, : min(len(m), max_len)] = m[:max_len]
    return TextData(tokens, labels, relevant, len(vocab))


def load_beer(reviews: str | Path, annotations: str | Path | None = None, aspect: int = 1,
              max_len: int = 100, vocab: Vocabulary | None = None,
              max_vocab: int = 20000) -> tuple[TextData, TextData | None, Vocabulary]:
    """Load a review file and, optionally, the annotation file, encoded with one vocabulary.

    Returns ``(reviews, annotated_or_None, vocab)``; the annotated set has ``relevant`` filled in.
    """
    docs, labels = read_reviews(reviews, aspect)
    vocab = vocab or Vocabulary.build(docs, max_size=max_vocab)
    train = _encode(docs, labels, None, vocab, max_len)
    annotated = None
    if annotations is not None:
        adocs, alabels, masks = read_annotations(annotations, aspect)
        annotated = _encode(adocs, alabels, masks, vocab, max_len)
    return train, annotated, vocab
