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
import zlib
from pathlib import Path

import numpy as np

from .._validation import check_int_in_range
from .text import TextData, Vocabulary


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _lines(path: Path, what: str):
    """``(lineno, line)`` of a text file (``.gz`` decompressed); a truncated or corrupt ``.gz`` and bytes that are
    not UTF-8 become a ``ValueError`` naming the file (gzip's ``EOFError`` does not)."""
    try:
        with _open(path) as fh:
            yield from enumerate(fh, 1)
    except (EOFError, OSError, UnicodeDecodeError, zlib.error) as exc:
        raise ValueError(f"{what} {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); a truncated or "
                         "corrupt .gz file, or text that is not UTF-8") from exc


def _check_file(path: str | Path, name: str) -> Path:
    if not isinstance(path, (str, Path)):
        raise ValueError(f"{name} must be a path (str or pathlib.Path); got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{name} {str(p)!r} does not exist (expected a BeerAdvocate file, see "
                                "discreteopt.data.beer for the format)")
    return p


def _check_aspect(aspect) -> int:
    if isinstance(aspect, bool) or not isinstance(aspect, int) or aspect < 0:
        raise ValueError(f"aspect must be a non-negative integer (0 appearance, 1 aroma, 2 palate, ...); "
                         f"got {aspect!r}")
    return aspect


def _pick_score(scores: list[float], aspect: int, where: str, field: str) -> float:
    """The ``aspect`` score (or the only one), checked finite and in ``[0, 1]``."""
    if not scores:
        raise ValueError(f"{where}: {field} holds no score")
    for v in scores:
        if not math.isfinite(v):
            raise ValueError(f"{where}: {field} scores must be finite; got {scores!r}")
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{where}: {field} scores must lie in [0, 1] (the published scores are normalised); "
                             f"got {scores!r}")
    if len(scores) == 1:
        return scores[0]
    if aspect >= len(scores):
        raise ValueError(f"{where}: aspect={aspect} needs at least {aspect + 1} scores in {field}; got "
                         f"{len(scores)} ({scores!r})")
    return scores[aspect]


def read_reviews(path: str | Path, aspect: int = 1) -> tuple[list[list[str]], np.ndarray]:
    """Token lists and the ``aspect`` score of every line ``SCORES<TAB>TOKENS`` of a review file.

    Returns ``(docs, labels)``: ``N`` token lists and labels ``[N]`` float32. A line with a single score gives
    that score whatever the aspect. Every malformed line is a ``ValueError`` naming ``file:line``: no tab, no
    score, scores that are not finite numbers in ``[0, 1]``, fewer than ``aspect + 1`` scores, no token; so is a
    file with no review, or a truncated ``.gz`` (naming the file).
    """
    aspect = _check_aspect(aspect)
    p = _check_file(path, "reviews file")
    docs, labels = [], []
    for lineno, line in _lines(p, "reviews file"):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        head, sep, text = line.partition("\t")
        if not sep:
            raise ValueError(f"{where}: expected 'SCORES<TAB>TOKENS'; no tab found")
        try:
            scores = [float(v) for v in head.split()]
        except ValueError as exc:
            raise ValueError(f"{where}: scores must be numbers; got {head!r}") from exc
        if not scores:
            raise ValueError(f"{where}: no score before the tab")
        label = _pick_score(scores, aspect, where, "the line's")
        tokens = text.split()
        if not tokens:
            raise ValueError(f"{where}: no token after the tab")
        labels.append(label)
        docs.append(tokens)
    if not docs:
        raise ValueError(f"reviews file {str(p)!r} has no review")
    return docs, np.asarray(labels, dtype=np.float32)


def _span(span, n_tokens: int, where: str, aspect: int) -> tuple[int, int]:
    """A ``[start, end)`` token span (two JSON integers) checked against the review length."""
    if not isinstance(span, (list, tuple)) or len(span) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in span):
        raise ValueError(f"{where}: spans of aspect {aspect} must be [start, end) integer pairs; got {span!r}")
    start, end = span
    if not 0 <= start <= end <= n_tokens:
        raise ValueError(f"{where}: span {span!r} of aspect {aspect} must satisfy 0 <= start <= end <= "
                         f"{n_tokens} (the number of tokens)")
    return start, end


def read_annotations(path: str | Path, aspect: int = 1) -> tuple[list[list[str]], np.ndarray, list[np.ndarray]]:
    """Tokens, ``aspect`` scores and rationale masks (bool per token) of an ``annotations.json`` file.

    One JSON object per line: ``"x"`` a non-empty list of token strings, ``"y"`` a non-empty list of scores
    (finite numbers in ``[0, 1]``; the ``aspect``-th is taken, or the only one), and under the key ``str(aspect)``
    an optional list of ``[start, end)`` integer token spans (the human rationale). Returns ``(docs, labels [N]
    float32, masks)`` with ``masks[i]`` a bool array of ``len(docs[i])``. Every malformed line is a
    ``ValueError`` naming ``file:line`` and the field; a file without any annotation and a truncated ``.gz`` too.
    """
    aspect = _check_aspect(aspect)
    p = _check_file(path, "annotations file")
    docs, labels, masks = [], [], []
    for lineno, line in _lines(p, "annotations file"):
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: expected a JSON object with 'x', 'y' and span lists ({exc})") from exc
        if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
            raise ValueError(f"{where}: expected a JSON object with 'x' (tokens), 'y' (scores) and span lists; got "
                             f"{type(obj).__name__}" + (f" with keys {sorted(obj)}" if isinstance(obj, dict) else ""))
        toks, scores, spans = obj["x"], obj["y"], obj.get(str(aspect), [])
        if not isinstance(toks, list) or not toks or not all(isinstance(t, str) for t in toks):
            raise ValueError(f"{where}: 'x' must be a non-empty list of token strings; got {toks!r:.80}")
        if not isinstance(scores, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores):
            raise ValueError(f"{where}: 'y' must be a list of numbers (one score per aspect); got {scores!r:.80}")
        label = _pick_score([float(v) for v in scores], aspect, where, "'y'")
        if not isinstance(spans, list):
            raise ValueError(f"{where}: the spans of aspect {aspect} (key {str(aspect)!r}) must be a list of "
                             f"[start, end) pairs; got {spans!r:.80}")
        mask = np.zeros(len(toks), dtype=bool)
        for span in spans:
            start, end = _span(span, len(toks), where, aspect)
            mask[start:end] = True
        docs.append(toks)
        labels.append(label)
        masks.append(mask)
    if not docs:
        raise ValueError(f"annotations file {str(p)!r} has no annotated review")
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

    Arguments: ``reviews`` / ``annotations`` paths (see the module docstring for the formats, ``.gz`` accepted);
    ``aspect`` the score to predict (``1`` = aroma); ``max_len >= 1`` tokens per review (truncated, padded with 0);
    ``vocab`` a :class:`~discreteopt.data.text.Vocabulary` to reuse, else one is built on ``reviews`` with at most
    ``max_vocab >= 3`` entries. Returns ``(reviews, annotated_or_None, vocab)``: :class:`TextData` with tokens
    ``[N, max_len]`` int64 and labels ``[N]`` float32; the annotated set has ``relevant [M, max_len]`` filled in.
    Malformed files raise ``ValueError`` naming the file and line (see :func:`read_reviews`,
    :func:`read_annotations`).

    >>> train, annotated, vocab = load_beer("reviews.aspect1.train.txt.gz", "annotations.json", aspect=1)
    """
    aspect = _check_aspect(aspect)
    max_len = check_int_in_range(max_len, "max_len", 1, 10**7)
    max_vocab = check_int_in_range(max_vocab, "max_vocab", 3, 10**9)
    if vocab is not None and not isinstance(vocab, Vocabulary):
        raise ValueError(f"vocab must be a discreteopt.data.text.Vocabulary or None; got {type(vocab).__name__}")
    docs, labels = read_reviews(reviews, aspect)
    vocab = vocab or Vocabulary.build(docs, max_size=max_vocab)
    train = _encode(docs, labels, None, vocab, max_len)
    annotated = None
    if annotations is not None:
        adocs, alabels, masks = read_annotations(annotations, aspect)
        annotated = _encode(adocs, alabels, masks, vocab, max_len)
    return train, annotated, vocab
