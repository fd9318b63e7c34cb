"""The toy translation corpus: generator, vocabularies, padding masks and the grammar-exact metrics."""

from __future__ import annotations

import math

import pytest
import torch

from kdviz.data.translation import (
    BOS,
    EOS,
    PAD,
    UNK,
    VARIANTS,
    Example,
    TranslationConfig,
    Vocab,
    exact_match,
    exact_match_rate,
    make_corpus,
    pad_batch,
    segment,
    variant_choices,
    variant_entropy,
)

SMALL = TranslationConfig(n_train=300, n_valid=20, n_test=40, seed=3)

# "the old dog often sees a cat": old and often are multimodal
EXAMPLE = Example(
    source=("the", "old", "dog", "often", "sees", "a", "cat"),
    reference=("inu", "furui", "ta", "neko", "na", "wo", "yoku", "miru"),
    slots=(
        ("", (("inu",),)),
        ("old", (("furui",), ("toshi", "yori"))),
        ("", (("ta",),)),
        ("", (("neko",),)),
        ("", (("na",),)),
        ("", (("wo",),)),
        ("often", (("yoku",), ("shiba", "shiba"), ("tabi", "tabi"))),
        ("sees", (("miru",), ("nagameru",))),
    ),
)


def test_corpus_is_deterministic_and_held_out_sources_are_unseen():
    a, b = make_corpus(SMALL), make_corpus(SMALL)
    assert [e.reference for e in a.train] == [e.reference for e in b.train]
    assert a.target_vocab.itos == b.target_vocab.itos
    train_sources = {e.source for e in a.train}
    assert not train_sources & {e.source for e in a.test + a.valid}
    assert len(a.train) == 300 and len(a.valid) == 20 and len(a.test) == 40
    assert make_corpus(TranslationConfig(n_train=300, n_valid=20, n_test=40, seed=4)).train != a.train


def test_every_reference_is_a_valid_translation_and_the_data_is_multimodal():
    corpus = make_corpus(SMALL)
    assert all(exact_match(e.reference, e) for e in corpus.train + corpus.test)
    # several references of a multimodal word use different variants
    entropy = variant_entropy(variant_choices([e.reference for e in corpus.train], corpus.train))
    assert entropy > 0.7


def test_reordering_puts_the_verb_last_and_adjectives_after_nouns():
    corpus = make_corpus(SMALL)
    example = next(e for e in corpus.train if e.source[1] == "red")  # "DET red NOUN ..."
    assert example.reference[1] == "aka"  # NOUN aka DET
    assert example.slots[-1][1][0][0] in {"miru", "nagameru", "suku", "ou", "tsuite", "tasukeru"} | {
        "mitsukeru", "hakken", "yobu", "osoreru",
    }  # fmt: skip


def test_vocab_specials_unknown_words_and_decode():
    vocab = Vocab(["b", "a", "b", "<pad>"])
    assert vocab.itos[:6] == ["<pad>", "<bos>", "<eos>", "<unk>", "b", "a"]
    assert vocab.encode(["a", "zzz"], bos=True, eos=True) == [BOS, 5, UNK, EOS]
    assert vocab.decode([BOS, 4, PAD, 5, EOS, 4]) == ["b", "a"]
    assert len(vocab) == 6


def test_pad_batch_ids_and_mask():
    ids, mask = pad_batch([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_batch([])


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="n_test must be at least 1"):
        make_corpus(TranslationConfig(n_test=0))
    with pytest.raises(ValueError, match="p_adverb"):
        make_corpus(TranslationConfig(p_adverb=1.5))


def test_segment_and_exact_match_accept_any_variant_combination():
    valid = ["inu", "toshi", "yori", "ta", "neko", "na", "wo", "tabi", "tabi", "nagameru"]
    assert segment(valid, EXAMPLE) == [0, 1, 0, 0, 0, 0, 2, 1]
    assert exact_match(EXAMPLE.reference, EXAMPLE)
    mixed = ["inu", "furui", "ta", "neko", "na", "wo", "shiba", "tabi", "miru"]  # half of two variants
    assert not exact_match(mixed, EXAMPLE)
    assert not exact_match([*EXAMPLE.reference, "wo"], EXAMPLE)
    assert exact_match_rate([valid, mixed], [EXAMPLE, EXAMPLE]) == 0.5
    with pytest.raises(ValueError, match="one output per example"):
        exact_match_rate([valid], [EXAMPLE, EXAMPLE])


def test_variant_choices_by_hand():
    valid = ["inu", "toshi", "yori", "ta", "neko", "na", "wo", "tabi", "tabi", "nagameru"]
    broken = ["inu", "toshi", "ta", "wo", "shiba", "shiba", "miru"]  # not valid: old unrealised
    choices = variant_choices([valid, broken], [EXAMPLE, EXAMPLE])
    assert choices == {"old": [1, -1], "often": [2, 1], "sees": [1, 0]}


def test_variant_entropy_by_hand():
    assert variant_entropy({"big": [0, 0, 1, 1]}) == pytest.approx(1.0)
    assert variant_entropy({"big": [0, 0, 0]}) == 0.0
    assert variant_entropy({"often": [0, 1, 2]}) == pytest.approx(1.0)  # k = 3
    # p = (3/4, 1/4) over k = 2 → H / log 2; the −1 (no valid variant) is left out; mean over words
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    assert variant_entropy({"big": [0, 0, 0, 1, -1], "horse": [1, 1]}) == pytest.approx(h / 2)
    # "often" has 3 variants: two used evenly → log 2 / log 3
    assert variant_entropy({"often": [0, 1]}) == pytest.approx(math.log(2) / math.log(3))
    assert len(VARIANTS["often"]) == 3
    assert math.isnan(variant_entropy({"big": [-1]}))
