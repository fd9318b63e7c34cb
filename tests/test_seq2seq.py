"""The seq2seq model and decoders (hand-set model with a known answer), the KD losses by hand, the trainer."""

from __future__ import annotations

import math

import pytest
import sacrebleu
import torch

from kdviz.data.translation import EOS, PAD, TranslationConfig, make_corpus
from kdviz.distill.seq2seq import (
    GlobalCEQueue,
    Seq2SeqTrainConfig,
    _loss,
    corpus_bleu,
    evaluate_translation,
    masked_mean,
    select_batch,
    seq_inter_choice,
    teacher_cache,
    token_ce,
    token_kl,
    train_seq2seq,
)
from kdviz.models.seq2seq import Seq2Seq, beam_decode, greedy_decode, make_seq2seq

A, B = 3, 4


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# next-token probabilities given the previous token (vocab: <pad>, <bos>, <eos>, A, B)
_TABLE = torch.tensor(
    [
        [0.0, 0.0, 1.0, 0.0, 0.0],  # after <pad>
        [0.0, 0.0, 0.0, 0.6, 0.4],  # after <bos>: A is likelier ...
        [0.0, 0.0, 1.0, 0.0, 0.0],  # after <eos>
        [0.0, 0.0, 0.4, 0.3, 0.3],  # ... but after A nothing is sure
        [0.0, 0.0, 1.0, 0.0, 0.0],  # while B is surely followed by <eos>
    ]
)


class FixedModel:
    """A decoder whose next-token distribution depends only on the previous token (`_TABLE`)."""

    def start(self, src, src_mask):
        return {"rows": torch.zeros(src.shape[0], 1)}

    def step(self, prev, state):
        return torch.log(_TABLE[prev]), state


def test_greedy_and_beam_differ_as_computed_by_hand():
    src, mask = torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool)
    greedy = greedy_decode(FixedModel(), src, mask, max_len=5)
    assert greedy.tokens == [[A, EOS], [A, EOS]]  # 0.6 · 0.4 = 0.24
    assert greedy.probs[0] == pytest.approx([0.6, 0.4])
    assert greedy.scores[0] == pytest.approx(math.log(0.24))
    beam = beam_decode(FixedModel(), src, mask, beam=2, max_len=5, length_alpha=0.0)
    assert beam.tokens == [[B, EOS], [B, EOS]]  # 0.4 · 1.0 beats 0.24
    assert beam.probs[0] == pytest.approx([0.4, 1.0])
    assert beam.scores[0] == pytest.approx(math.log(0.4))
    assert beam.nbest[0] == [[B, EOS], [A, EOS]]
    # beam 1 is greedy
    assert beam_decode(FixedModel(), src, mask, beam=1, max_len=5).tokens == greedy.tokens
    # length normalisation (α = 1): score / length, both hypotheses have length 2
    assert beam_decode(FixedModel(), src, mask, beam=2, max_len=5).scores[0] == pytest.approx(math.log(0.4) / 2)
    with pytest.raises(ValueError, match="beam must be at least 1"):
        beam_decode(FixedModel(), src, mask, beam=0)


def test_max_len_stops_unfinished_outputs():
    table = _TABLE.clone()
    table[3] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])  # A forever
    model = FixedModel()
    model.step = lambda prev, state: (torch.log(table[prev]), state)
    out = greedy_decode(model, torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool), max_len=4)
    assert out.tokens == [[A, A, A, A]]


def test_seq2seq_step_matches_teacher_forcing():
    torch.manual_seed(0)
    model = Seq2Seq(7, 6, embed=5, hidden=8).eval()
    src = torch.tensor([[4, 5, 6], [4, 5, PAD]])
    mask = src != PAD
    tgt_in = torch.tensor([[1, 3, 4], [1, 5, 3]])
    logits = model(src, mask, tgt_in)
    assert logits.shape == (2, 3, 6)
    state = model.start(src, mask)
    for t in range(3):
        log_probs, state = model.step(tgt_in[:, t], state)
        assert torch.allclose(log_probs, torch.log_softmax(logits[:, t], -1), atol=1e-5)
    # padding the source further changes nothing
    wider = torch.cat([src, torch.zeros(2, 2, dtype=torch.long)], 1)
    assert torch.allclose(model(wider, wider != PAD, tgt_in), logits, atol=1e-5)
    with pytest.raises(ValueError, match="unknown seq2seq size"):
        make_seq2seq("gru-xxl", 7, 6)


def test_token_ce_and_masked_mean_by_hand():
    logits = torch.tensor([[[0.0, 0.0, 0.0, math.log(3.0)], [1.0, 2.0, 3.0, 4.0]]])
    targets = torch.tensor([[3, PAD]])
    ce = token_ce(logits, targets)
    assert ce[0, 0].item() == pytest.approx(-math.log(3 / 6))  # p = 3 / (1 + 1 + 1 + 3)
    assert ce[0, 1].item() == 0.0
    assert masked_mean(torch.tensor([1.0, 5.0, 9.0]), torch.tensor([True, False, True])).item() == 5.0


def test_token_kl_by_hand_and_zero_when_student_is_teacher():
    teacher = torch.tensor([[[0.5, 0.5]]])
    student = torch.tensor([[[0.0, math.log(3.0)]]])  # p = (1/4, 3/4)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert token_kl(student, teacher).item() == pytest.approx(expected)
    # temperature 2: teacher probabilities already at T, student logits / 2, times T²
    p = torch.softmax(student / 2, -1)[0, 0]
    at_t = 4 * sum(0.5 * math.log(0.5 / float(q)) for q in p)
    assert token_kl(student, teacher, 2.0).item() == pytest.approx(at_t, rel=1e-5)
    logits = torch.randn(2, 3, 5)
    assert token_kl(logits, torch.softmax(logits / 3, -1), 3.0).abs().max().item() < 1e-5


def test_batch_selection_takes_the_hardest_real_tokens():
    ce = torch.tensor([[3.0, 1.0, 2.0], [5.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert select_batch(ce, mask, 0.5).tolist() == [[True, False, False], [True, False, False]]
    assert select_batch(ce, mask, 1.0).tolist() == mask.tolist()
    with pytest.raises(ValueError, match="select_ratio"):
        select_batch(ce, mask, 0.0)


def test_global_queue_selects_above_its_quantile():
    queue = GlobalCEQueue(size=4, ratio=0.5)
    yes = torch.tensor([[True, True]])
    assert queue.select(torch.tensor([[1.0, 2.0]]), yes).tolist() == [[False, True]]  # median 1.5
    assert queue.select(torch.tensor([[3.0, 4.0]]), yes).tolist() == [[True, True]]  # [1, 2, 3, 4]: 2.5
    # FIFO: 1 leaves, queue [2, 3, 4, 0.5] → median 2.5; padded positions never join
    out = queue.select(torch.tensor([[0.5, 7.0]]), torch.tensor([[True, False]]))
    assert out.tolist() == [[False, False]] and list(queue.values) == [2.0, 3.0, 4.0, 0.5]


def test_losses_by_hand_and_kd_zero_when_student_is_teacher():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6)
    targets = torch.tensor([[3, 4, EOS], [5, EOS, PAD]])
    mask = targets != PAD
    ce = masked_mean(token_ce(logits, targets), mask)
    config = Seq2SeqTrainConfig(alpha=0.25)
    loss, terms = _loss("scratch", logits, targets, None, config, None)
    assert loss.item() == pytest.approx(ce.item()) and set(terms) == {"ce"}
    same = torch.softmax(logits, -1)
    loss, terms = _loss("word_kd", logits, targets, same, config, None)
    assert terms["kd"] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.75 * ce.item(), abs=1e-6)
    other = torch.softmax(torch.randn(2, 3, 6), -1)
    loss, terms = _loss("word_kd", logits, targets, other, config, None)
    kl = masked_mean(token_kl(logits, other), mask).item()
    assert loss.item() == pytest.approx(0.75 * ce.item() + 0.25 * kl, rel=1e-5)
    # selective (batch): KL over the ceil(0.5 · 5) = 3 tokens of highest CE only
    loss, terms = _loss("selective_batch", logits, targets, other, Seq2SeqTrainConfig(alpha=0.25), None)
    chosen = select_batch(token_ce(logits, targets), mask, 0.5)
    assert int(chosen.sum()) == 3 and terms["selected"] == pytest.approx(3 / 5)
    assert terms["kd"] == pytest.approx((token_kl(logits, other) * chosen).sum().item() / 5, rel=1e-5)
    # selecting every token is word-level KD
    all_tokens = _loss(
        "selective_batch", logits, targets, other, Seq2SeqTrainConfig(alpha=0.25, select_ratio=1.0), None
    )
    assert all_tokens[0].item() == pytest.approx(_loss("word_kd", logits, targets, other, config, None)[0].item())
    queue = GlobalCEQueue(100, 0.5)
    _, terms = _loss("selective_global", logits, targets, other, config, queue)
    assert 0 < terms["selected"] <= 1 and len(queue.values) == 5


def test_seq_inter_choice_and_bleu():
    assert seq_inter_choice([["a", "b"], ["x", "y", "z"], ["x", "y"]], ["x", "y", "z"]) == 1
    hyps, refs = [["a", "b", "c", "d"], ["e", "f", "g", "h"]], [["a", "b", "c", "d"], ["e", "f", "g", "x"]]
    expected = sacrebleu.corpus_bleu(["a b c d", "e f g h"], [["a b c d", "e f g x"]], tokenize="none").score
    assert corpus_bleu(hyps, refs) == pytest.approx(expected)
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        corpus_bleu(hyps, refs[:1])


@pytest.fixture(scope="module")
def tiny():
    corpus = make_corpus(TranslationConfig(n_train=64, n_valid=4, n_test=12, seed=1))
    sources = corpus.encode_sources(corpus.train)
    targets = corpus.encode_targets([e.reference for e in corpus.train])
    torch.manual_seed(0)
    teacher = make_seq2seq("gru-s", len(corpus.source_vocab), len(corpus.target_vocab))
    train_seq2seq(teacher, sources, targets, "scratch", Seq2SeqTrainConfig(epochs=2, batch_size=32))
    cache = teacher_cache(teacher, sources, targets, corpus.target_vocab, beam=2)
    return corpus, sources, targets, teacher, cache


@pytest.mark.slow
@pytest.mark.parametrize(
    "method,terms",
    [
        ("scratch", {"ce"}),
        ("word_kd", {"ce", "kd"}),
        ("seq_kd", {"ce"}),
        ("seq_inter", {"ce"}),
        ("selective_batch", {"ce", "kd", "selected"}),
        ("selective_global", {"ce", "kd", "selected"}),
    ],
)
def test_every_method_trains_and_reports_named_terms(tiny, method, terms):
    corpus, sources, targets, _teacher, cache = tiny
    model = make_seq2seq("gru-xs", len(corpus.source_vocab), len(corpus.target_vocab))
    history = train_seq2seq(model, sources, targets, method, Seq2SeqTrainConfig(epochs=2, batch_size=32), cache)
    assert len(history) == 2 and set(history[0]) == {"epoch", "loss", *terms}
    assert history[1]["loss"] < history[0]["loss"]


def test_teacher_cache_shapes_and_sequence_targets(tiny):
    corpus, sources, targets, teacher, cache = tiny
    assert cache.soft.shape == (64, max(len(t) for t in targets), len(corpus.target_vocab))
    real = cache.soft[0, : len(targets[0])].sum(-1)
    assert torch.allclose(real, torch.ones_like(real))
    assert len(cache.beam) == len(cache.inter) == 64
    assert all(seq[-1] == EOS for seq in cache.beam + cache.inter)


def test_trainer_rejects_bad_input(tiny):
    corpus, sources, targets, _teacher, cache = tiny
    model = make_seq2seq("gru-xs", len(corpus.source_vocab), len(corpus.target_vocab))
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        train_seq2seq(model, sources, targets, "nope")
    with pytest.raises(ValueError, match="needs the teacher's soft targets"):
        train_seq2seq(model, sources, targets, "word_kd")
    with pytest.raises(ValueError, match="needs the teacher's beam outputs"):
        train_seq2seq(model, sources, targets, "seq_kd")
    with pytest.raises(ValueError, match="one target per source"):
        train_seq2seq(model, sources, targets[:3])
    with pytest.raises(ValueError, match="alpha must be in"):
        train_seq2seq(model, sources, targets, "scratch", Seq2SeqTrainConfig(alpha=2.0))


def test_evaluate_translation_reports_every_metric(tiny):
    corpus, _sources, _targets, teacher, _cache = tiny
    metrics = evaluate_translation(teacher, corpus.test, corpus.source_vocab, corpus.target_vocab, beam=2)
    for decoding in ("greedy", "beam"):
        assert 0 <= metrics[f"bleu_{decoding}"] <= 100
        assert 0 <= metrics[f"exact_{decoding}"] <= 1
        assert f"multimodality_{decoding}" in metrics and f"invalid_variant_{decoding}" in metrics
    assert 0 < metrics["token_prob_greedy"] <= 1 and 0 <= metrics["greedy_equals_beam"] <= 1
