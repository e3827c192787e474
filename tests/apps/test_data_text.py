"""Offline text data of the explanation use case: synthetic generator, vocabulary, BeerAdvocate loader, digits."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from discreteopt.data import TextData, Vocabulary, generate_synthetic_text, load_beer, load_digits_data
from discreteopt.data.beer import read_annotations, read_reviews

# --------------------------------------------------------------------------------------------- synthetic text
N_NEUTRAL, N_LEVELS, WORDS = 200, 5, 8
ASPECT0 = 1 + N_NEUTRAL
DECOY0 = ASPECT0 + N_LEVELS * WORDS


def test_synthetic_text_label_is_a_function_of_the_relevant_tokens():
    d = generate_synthetic_text(300, length=40, n_relevant=12, n_decoy=8, seed=3)
    assert d.tokens.shape == (300, 40) and d.labels.shape == (300,) and d.relevant.shape == (300, 40)
    assert d.vocab_size == DECOY0 + N_LEVELS * WORDS
    assert (d.relevant.sum(1) == 12).all()
    # relevant positions hold exactly the aspect tokens, the others neutral or decoy tokens
    aspect = (d.tokens >= ASPECT0) & (d.tokens < DECOY0)
    np.testing.assert_array_equal(aspect, d.relevant)
    assert ((d.tokens >= DECOY0).sum(1) == 8).all()
    assert d.tokens.min() >= 1 and d.tokens.max() < d.vocab_size
    # the label is recomputed exactly from the relevant tokens alone: mean of (level + 0.5) / n_levels
    level = (d.tokens - ASPECT0) // WORDS
    values = np.where(d.relevant, (level + 0.5) / N_LEVELS, 0.0)
    np.testing.assert_allclose(d.labels, values.sum(1) / 12, rtol=1e-6)


def test_synthetic_text_is_seeded_and_positions_are_shuffled():
    a, b = generate_synthetic_text(50, seed=1), generate_synthetic_text(50, seed=1)
    c = generate_synthetic_text(50, seed=2)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    # relevant positions differ between rows (not always the first n_relevant)
    assert len({tuple(np.flatnonzero(r)) for r in a.relevant}) > 40


def test_synthetic_text_decoy_correlates_with_the_label():
    d = generate_synthetic_text(2000, seed=0)
    level = (d.tokens - DECOY0) // WORDS
    decoy_mean = np.where(d.tokens >= DECOY0, (level + 0.5) / N_LEVELS, 0.0).sum(1) / 10
    r = np.corrcoef(decoy_mean, d.labels)[0, 1]
    assert 0.5 < r < 0.95  # informative but weaker than the aspect tokens (correlation 1 by construction)


@pytest.mark.parametrize("kwargs, name", [({"n": 0}, "n"), ({"n": 5, "length": 1}, "length"),
                                          ({"n": 5, "n_relevant": 60}, "n_relevant"),
                                          ({"n": 5, "n_decoy": 40}, "n_decoy"), ({"n": 2.5}, "n")])
def test_synthetic_text_rejects_bad_sizes(kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_synthetic_text(**kwargs)


def test_textdata_checks_shapes():
    with pytest.raises(ValueError, match="tokens"):
        TextData(np.zeros(5, dtype=np.int64), np.zeros(5, np.float32), None, 3)
    with pytest.raises(ValueError, match="labels"):
        TextData(np.zeros((5, 4), dtype=np.int64), np.zeros(4, np.float32), None, 3)
    with pytest.raises(ValueError, match="relevant"):
        TextData(np.zeros((5, 4), dtype=np.int64), np.zeros(5, np.float32), np.zeros((5, 3), bool), 3)


def test_vocabulary_orders_by_frequency_and_encodes_with_padding():
    v = Vocabulary.build([["b", "a", "b"], ["c", "b", "a"]], max_size=4)
    assert v.itos == ["<pad>", "<unk>", "b", "a"]  # c dropped (max_size), ties alphabetical
    np.testing.assert_array_equal(v.encode(["a", "c", "b"], 5), [3, 1, 2, 0, 0])
    np.testing.assert_array_equal(v.encode(["a", "b", "a"], 2), [3, 2])


# --------------------------------------------------------------------------------------------- BeerAdvocate
REVIEWS = [
    ("0.8 0.6 0.7 0.9 0.8", "pours a hazy gold . aroma of citrus and pine ."),
    ("0.4 0.2 0.5 0.3 0.4", "smell is faint , some malt . thin body ."),
    ("0.9 1.0 0.8 0.9 0.9", "huge hop nose , grapefruit . great beer"),
]


def write_reviews(path, rows=REVIEWS, opener=open):
    with opener(path, "wt", encoding="utf-8") as fh:
        for scores, text in rows:
            fh.write(f"{scores}\t{text}\n")
        fh.write("\n")  # blank lines are skipped
    return path


def write_annotations(path, opener=open):
    rows = [
        {"x": "aroma of citrus and pine . nice".split(), "y": [0.8, 0.6, 0.7], "0": [], "1": [[0, 5]], "2": []},
        {"x": "smell is faint . bitter".split(), "y": [0.4, 0.2, 0.5], "1": [[0, 3], [4, 5]]},
    ]
    with opener(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


def test_read_reviews_picks_the_aroma_score(tmp_path):
    docs, labels = read_reviews(write_reviews(tmp_path / "reviews.aspect1.train.txt"), aspect=1)
    assert docs[0][:3] == ["pours", "a", "hazy"] and len(docs) == 3
    np.testing.assert_allclose(labels, [0.6, 0.2, 1.0])
    _, overall = read_reviews(tmp_path / "reviews.aspect1.train.txt", aspect=4)
    np.testing.assert_allclose(overall, [0.8, 0.4, 0.9])


def test_read_reviews_single_score_and_gzip(tmp_path):
    p = write_reviews(tmp_path / "r.txt.gz", rows=[("0.3", "a b c"), ("0.7", "d e")], opener=gzip.open)
    docs, labels = read_reviews(p, aspect=1)  # one score per line: taken whatever the aspect
    assert docs == [["a", "b", "c"], ["d", "e"]]
    np.testing.assert_allclose(labels, [0.3, 0.7])


@pytest.mark.parametrize("line, match", [("0.5 0.5 no tab here", "no tab"), ("0.5 x\ta b", "numbers"),
                                         ("\ta b", "no score"), ("0.5 nan\ta b", "finite")])
def test_read_reviews_rejects_malformed_lines(tmp_path, line, match):
    p = tmp_path / "bad.txt"
    p.write_text("0.1 0.2\tok line\n" + line + "\n")
    with pytest.raises(ValueError, match=match) as info:
        read_reviews(p)
    assert "bad.txt:2" in str(info.value)


def test_read_reviews_errors_for_aspect_empty_and_missing(tmp_path):
    p = write_reviews(tmp_path / "r.txt")
    with pytest.raises(ValueError, match="aspect"):
        read_reviews(p, aspect=7)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no review"):
        read_reviews(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_reviews(tmp_path / "missing.txt")


def test_read_annotations_builds_rationale_masks(tmp_path):
    docs, labels, masks = read_annotations(write_annotations(tmp_path / "annotations.json"), aspect=1)
    np.testing.assert_allclose(labels, [0.6, 0.2])
    np.testing.assert_array_equal(masks[0], [1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(masks[1], [1, 1, 1, 0, 1])
    _, _, appearance = read_annotations(tmp_path / "annotations.json", aspect=0)
    assert not appearance[0].any() and not appearance[1].any()  # key "0" empty / absent


@pytest.mark.parametrize("line", ["not json", json.dumps({"y": [0.1]}),
                                  json.dumps({"x": ["a", "b"], "y": [0.1, 0.2], "1": [[1, 5]]}),
                                  json.dumps({"x": ["a", "b"], "y": [0.1, 0.2], "1": [[2, 1]]})])
def test_read_annotations_rejects_malformed_lines(tmp_path, line):
    p = tmp_path / "ann.json"
    p.write_text(line + "\n")
    with pytest.raises(ValueError, match="ann.json:1"):
        read_annotations(p, aspect=1)


def test_load_beer_shares_one_vocabulary_and_pads(tmp_path):
    train, annotated, vocab = load_beer(write_reviews(tmp_path / "train.txt"),
                                        write_annotations(tmp_path / "annotations.json"), aspect=1, max_len=8)
    assert train.tokens.shape == (3, 8) and train.relevant is None
    assert annotated.tokens.shape == (2, 8) and annotated.relevant.shape == (2, 8)
    assert train.vocab_size == annotated.vocab_size == len(vocab)
    # the first review is 12 tokens long: truncated; the annotation's "nice" was never seen in training: <unk>
    assert (train.tokens[0] > 0).all()
    assert annotated.tokens[0][6] == vocab.stoi["<unk>"] and annotated.tokens[0][7] == 0
    assert vocab.itos[annotated.tokens[0][0]] == "aroma"
    np.testing.assert_array_equal(annotated.relevant[1], [1, 1, 1, 0, 1, 0, 0, 0])
    np.testing.assert_allclose(annotated.labels, [0.6, 0.2])


# ------------------------------------------------------------------------------------------- bad Beer files
def _ann(**fields):
    row = {"x": ["aroma", "of", "pine"], "y": [0.8, 0.6, 0.7], "1": [[0, 2]]}
    row.update(fields)
    return json.dumps({k: v for k, v in row.items() if v is not None})


BAD_ANNOTATIONS = {
    "empty_y": (_ann(y=[]), r"'y' holds no score"),
    "short_y": (_ann(y=[0.8]), None),  # one score: taken whatever the aspect (as for reviews)
    "y_too_short_for_aspect": (_ann(y=[0.8, 0.6]), r"aspect=2 needs at least 3 scores in 'y'; got 2"),
    "nan_label": ('{"x": ["a", "b"], "y": [0.8, NaN, 0.7]}', r"'y' scores must be finite"),
    "label_out_of_range": (_ann(y=[0.8, 4.0, 0.7]), r"'y' scores must lie in \[0, 1\]"),
    "y_strings": (_ann(y=["0.8", "0.6"]), r"'y' must be a list of numbers"),
    "y_bools": (_ann(y=[True, False]), r"'y' must be a list of numbers"),
    "y_not_list": (_ann(y=0.5), r"'y' must be a list of numbers"),
    "spans_not_list": (_ann(**{"1": 5}), r"spans of aspect 1 \(key '1'\) must be a list"),
    "spans_string": (_ann(**{"1": "0 2"}), r"spans of aspect 1 \(key '1'\) must be a list"),
    "span_not_pair": (_ann(**{"1": [[0, 1, 2]]}), r"must be \[start, end\) integer pairs"),
    "span_floats": (_ann(**{"1": [[0.5, 2]]}), r"must be \[start, end\) integer pairs"),
    "span_out_of_range": (_ann(**{"1": [[1, 9]]}), r"must satisfy 0 <= start <= end <= 3"),
    "x_string": (_ann(x="aroma of pine"), r"'x' must be a non-empty list of token strings"),
    "x_empty": (_ann(x=[]), r"'x' must be a non-empty list of token strings"),
    "x_numbers": (_ann(x=[1, 2]), r"'x' must be a non-empty list of token strings"),
    "not_object": ("[1, 2, 3]", r"expected a JSON object .*got list"),
    "missing_y": (_ann(y=None), r"expected a JSON object .*keys \['1', 'x'\]"),
}


@pytest.mark.parametrize("case", list(BAD_ANNOTATIONS))
def test_read_annotations_names_file_line_and_field(tmp_path, case):
    """Old behaviour: IndexError (short/empty y), TypeError (spans not a list), NaN labels accepted, a string x
    split into characters. Now a ValueError naming ``file:line`` and the field."""
    line, match = BAD_ANNOTATIONS[case]
    p = tmp_path / "ann.json"
    p.write_text(_ann() + "\n" + line + "\n")
    aspect = 2 if case == "y_too_short_for_aspect" else 1
    if match is None:
        _, labels, _ = read_annotations(p, aspect=aspect)
        np.testing.assert_allclose(labels, [0.6, 0.8])
        return
    with pytest.raises(ValueError, match=match) as info:
        read_annotations(p, aspect=aspect)
    assert "ann.json:2" in str(info.value)


@pytest.mark.parametrize("which", ["reviews", "annotations"])
def test_empty_truncated_and_undecodable_files_name_the_file(tmp_path, which):
    reader = read_reviews if which == "reviews" else read_annotations
    empty = tmp_path / f"{which}_empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=rf"{which} file .*{which}_empty.txt.* has no"):
        reader(empty)
    good = tmp_path / f"{which}.txt.gz"
    if which == "reviews":
        write_reviews(good, rows=REVIEWS * 200, opener=gzip.open)
    else:
        with gzip.open(good, "wt", encoding="utf-8") as fh:
            fh.write((_ann() + "\n") * 500)
    assert len(reader(good)[0]) > 1
    cut = tmp_path / f"{which}_cut.txt.gz"
    cut.write_bytes(good.read_bytes()[:-40])  # truncated .gz: EOFError in gzip, with no file name
    with pytest.raises(ValueError, match=rf"{which} file .*{which}_cut.txt.gz.* cannot be read \(EOFError"):
        reader(cut)
    junk = tmp_path / f"{which}_junk.txt.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=rf"{which}_junk.txt.gz.* cannot be read"):
        reader(junk)
    latin = tmp_path / f"{which}_latin.txt"
    latin.write_bytes("0.5\tcaf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{which}_latin.txt.* cannot be read \(UnicodeDecodeError"):
        reader(latin)


@pytest.mark.parametrize("line, match", [("0.5 1.7\ta b", r"scores must lie in \[0, 1\]"),
                                         ("0.5 -0.1\ta b", r"scores must lie in \[0, 1\]"),
                                         ("0.5 0.6\t   ", "no token after the tab"),
                                         ("0.5 0.6 0.7\ta b", None)])
def test_read_reviews_checks_score_range_and_tokens(tmp_path, line, match):
    p = tmp_path / "r.txt"
    p.write_text("0.1 0.2\tok line\n" + line + "\n")
    if match is None:
        np.testing.assert_allclose(read_reviews(p, aspect=1)[1], [0.2, 0.6])
        with pytest.raises(ValueError, match=r"r.txt:1: aspect=2 needs at least 3 scores"):
            read_reviews(p, aspect=2)
        return
    with pytest.raises(ValueError, match=match) as info:
        read_reviews(p)
    assert "r.txt:2" in str(info.value)


@pytest.mark.parametrize("kwargs, match", [({"aspect": -1}, "aspect must be a non-negative integer"),
                                           ({"aspect": "1"}, "aspect must be"), ({"aspect": True}, "aspect must"),
                                           ({"max_len": 0}, "max_len"), ({"max_vocab": 2}, "max_vocab"),
                                           ({"vocab": {"a": 1}}, "vocab must be"), ({"reviews": 3}, "reviews file")])
def test_load_beer_rejects_bad_arguments(tmp_path, kwargs, match):
    args = {"reviews": write_reviews(tmp_path / "r.txt"), **kwargs}
    with pytest.raises(ValueError, match=match):
        load_beer(**args)


def test_text_data_and_vocabulary_validate_their_fields():
    tok = np.array([[2, 1, 0]])
    with pytest.raises(ValueError, match=r"labels must be finite real numbers.*1 NaN"):
        TextData(tok, np.array([np.nan], np.float32), None, 3)
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, vocab_size=3\); got values in \[0, 3\]"):
        TextData(np.array([[3, 0]]), np.zeros(1, np.float32), None, 3)
    with pytest.raises(ValueError, match="tokens must be integer ids"):
        TextData(tok.astype(np.float32), np.zeros(1, np.float32), None, 3)
    with pytest.raises(ValueError, match="relevant must be a bool"):
        TextData(tok, np.zeros(1, np.float32), np.full((1, 3), 2), 3)
    with pytest.raises(ValueError, match="N >= 1"):
        TextData(tok[:0], np.zeros(0, np.float32), None, 3)
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["<pad>", "<unk>", "a", "a"])
    v = Vocabulary.build([["<unk>", "a", "<pad>"]])  # literal special tokens in the text map to their ids
    assert v.itos == ["<pad>", "<unk>", "a"]


# --------------------------------------------------------------------------------------------- digits
def test_digits_split_and_binarisation():
    xtr, ytr, xte, yte = load_digits_data(seed=0)
    assert xtr.shape[1] == 64 and len(xtr) + len(xte) == 1797 and len(xte) == 359
    assert xtr.dtype == np.float32 and 0.0 <= xtr.min() and xtr.max() <= 1.0
    assert set(np.unique(ytr)) == set(range(10))
    xb, _, _, _ = load_digits_data(seed=0, binarize=True)
    np.testing.assert_array_equal(xb, (xtr > 0.5).astype(np.float32))
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_data(test_fraction=1.5)
