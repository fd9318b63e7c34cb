"""Text data: tokeniser, vocabulary and padding, the `sentiment` task's annotators, the human-distribution metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdviz.analysis.calibration import posterior_kl, posterior_tv
from kdviz.data import DatasetError, load_dataset
from kdviz.data import text as data_text
from kdviz.data.text import (
    BLOCKED_STEMS,
    COPULAS,
    INTENSIFIERS,
    NEGATION_SCALE,
    NEGATIONS,
    PAD_ID,
    SUBJECTS,
    UNK_ID,
    Clause,
    Vocabulary,
    allowed_word,
    annotator_scores,
    human_distribution,
    score_labels,
    text_dataset,
    tokenize,
    vader_lexicon,
)
from kdviz.models import text as model_text


@pytest.fixture(scope="module")
def sentiment():
    return load_dataset("sentiment", n_samples=600)


def test_tokenize_lowercases_words_and_splits_punctuation():
    assert tokenize("The movie wasn't GOOD!  Really.") == ["the", "movie", "wasn't", "good", "!", "really", "."]
    assert tokenize("   ") == []


def test_vocabulary_orders_by_count_then_alphabet_with_pad_and_unk_first():
    vocabulary = Vocabulary.build(["b a", "a c", "c a"])
    assert vocabulary.tokens == ("<pad>", "<unk>", "a", "c", "b")
    assert Vocabulary.build(["b a", "a c", "c a"], max_size=4).tokens == ("<pad>", "<unk>", "a", "c")
    assert (PAD_ID, UNK_ID) == (data_text.PAD_ID, data_text.UNK_ID) == (model_text.PAD_ID, model_text.UNK_ID)
    assert data_text.DEFAULT_MAX_VOCAB == model_text.DEFAULT_VOCAB_SIZE  # a default vocabulary fits a default model


def test_encode_pads_cuts_and_maps_unknown_words():
    vocabulary = Vocabulary.build(["good movie", "bad movie"])  # movie=2, bad=3, good=4
    ids = vocabulary.encode(["good film", "movie movie movie movie bad", ""], max_length=4)
    assert ids.dtype == torch.int64
    assert ids.tolist() == [[4, UNK_ID, 0, 0], [2, 2, 2, 2], [0, 0, 0, 0]]
    assert model_text.padding_mask(ids).tolist() == [[True, True, False, False], [True] * 4, [False] * 4]
    assert vocabulary.decode(ids[0]) == ["good", "<unk>"]


def test_vocabulary_comes_from_the_train_split_only():
    texts = [f"common word{i % 3}" for i in range(30)] + ["rare"] * 0
    labels = np.array([i % 3 for i in range(30)])
    texts[0] = "only once"  # lands in exactly one split
    dataset = text_dataset("t", texts, labels, ["a", "b", "c"], seed=0, max_length=4, max_vocab=100)
    train_texts = set(dataset.metadata_train["text"])
    assert ("only" in dataset.vocabulary) == ("only once" in train_texts)
    for split in ("train", "val", "test"):
        x = getattr(dataset, f"x_{split}")
        decoded = [" ".join(dataset.vocabulary[i] for i in row if i) for row in x.tolist()]
        expected = [
            " ".join(w if w in dataset.vocabulary else "<unk>" for w in t.split())
            for t in getattr(dataset, f"metadata_{split}")["text"]
        ]
        assert decoded == expected


def test_sentiment_shapes_and_human_distribution(sentiment):
    assert sentiment.input_kind == "text"
    assert sentiment.class_names == ["negative", "neutral", "positive"]
    assert sentiment.x_train.dtype == torch.int64 and sentiment.input_shape == (16,)
    assert sentiment.vocabulary[:2] == ["<pad>", "<unk>"]
    for split in ("train", "val", "test"):
        x, y = sentiment.split(split)
        posterior = getattr(sentiment, f"true_posterior_{split}")
        assert posterior.shape == (len(y), 3)
        torch.testing.assert_close(posterior.sum(dim=1), torch.ones(len(y)))
        # every label is some annotator's: the human distribution gives it a positive share
        assert (posterior[torch.arange(len(y)), y] > 0).all()
        assert len(sentiment.metadata(split)) == len(y)
        assert int(x.max()) < len(sentiment.vocabulary)


def test_sentiment_is_deterministic_and_seeded(sentiment):
    again = load_dataset("sentiment", n_samples=600)
    assert torch.equal(again.x_train, sentiment.x_train) and again.vocabulary == sentiment.vocabulary
    other = load_dataset("sentiment", n_samples=600, seed=1)
    assert list(other.metadata_train["text"]) != list(sentiment.metadata_train["text"])
    with pytest.raises(DatasetError, match="n_words"):
        load_dataset("sentiment", n_words=1)


def test_lexicon_is_vaders_ten_ratings():
    lexicon = vader_lexicon()
    assert len(lexicon) > 5000
    assert lexicon["good"] == (2, 1, 1, 3, 2, 4, 2, 2, 1, 1)  # vader_lexicon.txt: good 1.9 0.9434 [...]
    assert np.mean(lexicon["good"]) == pytest.approx(1.9)
    assert "not" not in lexicon and "very" not in lexicon  # grammar words never act as sentiment words


def test_annotator_scores_by_hand():
    lexicon = {"good": (1, 2, 3, 0, 0, 0, 0, 0, 0, -1), "bad": (-2,) * 10}
    negated = Clause("the movie", "was", "not", "very", "good")
    assert negated.text() == "the movie was not very good"
    scores = annotator_scores([negated], None, lexicon)
    np.testing.assert_allclose(scores, 1.5 * NEGATION_SCALE * np.array(lexicon["good"]))
    assert score_labels(scores).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 2]
    np.testing.assert_allclose(human_distribution(scores), [0.3, 0.6, 0.1])
    # "but": the first clause counts half, the second one and a half
    plain, bad = Clause("the food", "is", None, None, "good"), Clause("the plot", "is", None, "somewhat", "bad")
    np.testing.assert_allclose(
        annotator_scores([plain, bad], "but", lexicon), 0.5 * np.array(lexicon["good"]) + 1.5 * 0.5 * -2
    )
    np.testing.assert_allclose(annotator_scores([plain, bad], "and", lexicon), np.array(lexicon["good"]) - 1.0)


def test_posterior_tv_and_kl_by_hand():
    human = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    model = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    assert posterior_tv(human, model) == pytest.approx((0.5 * 0.6 + 0.5 * 0.4) / 2)
    assert posterior_kl(human, model) == pytest.approx((0.5 * math.log(0.5 / 0.2) + math.log(1 / 0.8)) / 2)
    assert posterior_tv(human, human) == 0.0
    assert posterior_tv([[1.0, 0.0]], [[0.0, 1.0]]) == 1.0
    with pytest.raises(ValueError, match="classes"):
        posterior_tv(human, model[:, :2] / model[:, :2].sum(1, keepdims=True))


def test_blocked_and_short_words_are_never_drawn():
    assert not allowed_word("bastards") and not allowed_word("whoredom") and not allowed_word("rotflmfao")
    assert not allowed_word("bsod") and not allowed_word("good")  # shorter than MIN_WORD_LENGTH
    assert allowed_word("good", min_length=4) and allowed_word("splendid") and not allowed_word("don't")
    lexicon = vader_lexicon()
    assert {"bastards", "pricks", "whoredom"} <= set(lexicon)  # the lexicon has them; the filter keeps them out
    data = load_dataset("sentiment", n_samples=3000)  # the default pool of 150 words
    words = {w for split in ("train", "val", "test") for t in data.metadata(split)["text"] for w in t.split()}
    drawn = words - {w for s in SUBJECTS for w in s.split()} - set(COPULAS) - set(NEGATIONS) - set(INTENSIFIERS)
    drawn -= {"and", "but"}
    assert len(drawn) == 150 and all(allowed_word(w) for w in drawn)
    assert not any(stem in w for w in drawn for stem in BLOCKED_STEMS)


def test_sentiment_metadata_describes_each_sentence(sentiment):
    meta = sentiment.metadata("test")
    assert list(meta.columns) == [
        "text", "majority", "agreement", "n_clauses", "n_words", "negation", "intensifier", "conjunction",
    ]  # fmt: skip
    assert (meta["n_words"] == meta["text"].str.split().str.len()).all()
    assert (meta["negation"] == meta["text"].str.contains(r"\b(?:not|never)\b")).all()
    assert (meta["conjunction"] == meta["text"].str.extract(r"\b(and|but)\b")[0].fillna("none")).all()
    assert ((meta["n_clauses"] == 2) == (meta["conjunction"] != "none")).all()
    with pytest.raises(DatasetError, match="min_word_length"):
        load_dataset("sentiment", min_word_length=2)
