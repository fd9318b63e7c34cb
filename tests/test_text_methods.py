"""NLP methods on text in their native form, by hand and on `sentiment`: Hahn & Choi's output-embedding self-KD,
Mou et al.'s distilled word embeddings, dataset distillation into sentences of word vectors (Li & Li)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kdviz.data.cache import get_dataset
from kdviz.distill import MethodError, TrainConfig, fit, get_method, method_class
from kdviz.distill.losses import self as self_losses
from kdviz.distill.methods.compress import encoded_embeddings
from kdviz.distill.methods.dataset import (
    distill_dataset,
    evaluate_synthetic,
    frozen_word_table,
    train_on_set,
)
from kdviz.distill.methods.dataset import test_accuracy as accuracy_on_test  # not collected as a test
from kdviz.distill.trainer import _fit
from kdviz.models import build_model

E = math.e


@pytest.fixture(scope="module")
def sentiment():
    return get_dataset({"name": "sentiment", "n_samples": 300})


# ---- embedding_self_kd_native: Hahn & Choi's soft targets from the output embeddings -------------------------


def test_output_embedding_targets_by_hand():
    # e = [[1, 0], [0, 1], [1, 1]]; y = 0: scores e_k·e_0 = [1, 0, 1] -> [e, 1, e] / (2e + 1)
    # y = 2: scores [1, 1, 2] -> [e, e, e²] / (2e + e²)
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    targets = self_losses.output_embedding_targets(embeddings, torch.tensor([0, 2]))
    expected = torch.tensor([[E, 1.0, E], [E, E, E * E]])
    torch.testing.assert_close(targets, expected / expected.sum(dim=1, keepdim=True))
    assert not targets.requires_grad  # detached: the targets do not pull on the output embeddings
    # T = 2 halves the scores: y = 0 -> [e^½, 1, e^½] / (2e^½ + 1)
    half = self_losses.output_embedding_targets(embeddings, torch.tensor([0]), temperature=2.0)
    root = math.sqrt(E)
    torch.testing.assert_close(half, torch.tensor([[root, 1.0, root]]) / (2 * root + 1))
    # top-2 for y = 2 keeps words 2 (score 2) and one of the score-1 words; their shares are e² and e
    top = self_losses.output_embedding_targets(embeddings, torch.tensor([2]), top_k=2)
    assert (top > 0).sum().item() == 2 and top[0, 2].item() == pytest.approx(E * E / (E * E + E))
    with pytest.raises(ValueError, match=r"top_k must be in 0..3 \(0 keeps every word\), got 4"):
        self_losses.output_embedding_targets(embeddings, torch.tensor([0]), top_k=4)


def test_native_embedding_self_kd_terms_by_hand():
    # Uniform student over 3 words, y = 0, q = [e, 1, e] / (2e + 1) = [0.422319, 0.155362, 0.422319], α = 0.5.
    #   ce = 0.5·ln 3 = 0.549306
    #   KL(q ‖ u) = Σ q ln(3q) = 2·0.422319·ln 1.266956 + 0.155362·ln 0.466087 = 0.199856 - 0.118601 = 0.081255
    #   embedding_kd = 0.5·0.081255 = 0.040628
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    terms = self_losses.embedding_self_kd_native(torch.zeros(1, 3), torch.tensor([0]), embeddings, 0.5)
    assert terms["ce"].item() == pytest.approx(0.5 * math.log(3), abs=1e-6)
    assert terms["embedding_kd"].item() == pytest.approx(0.040628, abs=1e-6)
    # top-2 (words 0 and 2, q = [½, 0, ½]): KL = ln(½ · 3) = ln 1.5; the dropped word adds nothing
    top = self_losses.embedding_self_kd_native(torch.zeros(1, 3), torch.tensor([0]), embeddings, 1.0, top_k=2)
    assert top["embedding_kd"].item() == pytest.approx(math.log(1.5), abs=1e-6) and top["ce"].item() == 0.0


@settings(max_examples=30, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 5),
    st.floats(0.3, 3.0),
    st.integers(0, 2**16),
)
def test_native_term_is_zero_when_the_student_predicts_the_targets(words, dim, temperature, seed):
    """Law: a student whose logits are e·e_y / T (the softmax layer on the gold word's embedding) scores 0."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(words, dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, words, (4,), generator=generator)
    logits = embeddings[labels] @ embeddings.T / temperature
    terms = self_losses.embedding_self_kd_native(logits, labels, embeddings, 1.0, temperature)
    assert abs(terms["embedding_kd"].item()) < 1e-9


def test_native_method_reads_the_heads_rows_and_checks_top_k():
    cls = method_class("embedding_self_kd_native")
    assert cls.card.family == "self-distillation" and "Hahn & Choi" in cls.card.paper and not cls.needs_teacher
    student = SimpleNamespace(body=nn.Identity(), head=nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        student.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    ctx = SimpleNamespace(student=student, teacher=None, device=torch.device("cpu"))
    method = get_method("embedding_self_kd_native")
    method.setup(ctx)
    terms = method.loss_terms(ctx, SimpleNamespace(y=torch.tensor([0])), torch.zeros(1, 3))
    assert terms["embedding_kd"].item() == pytest.approx(0.040628, abs=1e-6)
    with pytest.raises(MethodError, match="'embedding_self_kd_native': top_k=4 exceeds the student's 3 classes"):
        get_method("embedding_self_kd_native", {"top_k": 4}).setup(ctx)
    headless = SimpleNamespace(body=nn.Identity(), head=nn.Identity())
    with pytest.raises(MethodError, match="'embedding_self_kd_native' needs a student .* Linear `head`"):
        get_method("embedding_self_kd_native").setup(SimpleNamespace(student=headless, teacher=None, device="cpu"))


def test_native_embedding_self_kd_trains_a_text_student(sentiment):
    config = TrainConfig(
        dataset=sentiment.spec, student="text-cnn", method="embedding_self_kd_native", epochs=2, batch_size=64, seed=0
    )
    _, history, _ = fit(config, sentiment, device="cpu")
    last = history[-1]
    assert last["loss"] == pytest.approx(last["loss/ce"] + last["loss/embedding_kd"], rel=1e-6)
    assert last["loss/embedding_kd"] > 0.0 and math.isfinite(last["test_accuracy"])


# ---- word_embedding_distill: Mou et al.'s encoded embeddings ---------------------------------------------------


def test_encoded_embeddings_by_hand():
    # W = [[1, -1]], b = 0: row 1 [2, 1] -> tanh(1) = 0.761594; row 2 [0, 3] -> tanh(-3) = -0.995055;
    # row 0 (padding) -> 0; row 3 is beyond the student's 3 rows
    teacher_table = torch.tensor([[5.0, 5.0], [2.0, 1.0], [0.0, 3.0], [9.0, 9.0]])
    encoder = nn.Sequential(nn.Linear(2, 1), nn.Tanh())
    with torch.no_grad():
        encoder[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
        encoder[0].bias.zero_()
    table = encoded_embeddings(teacher_table, encoder, rows=3)
    torch.testing.assert_close(table, torch.tensor([[0.0], [0.761594], [-0.995055]]), atol=1e-6, rtol=0)


def test_word_embedding_distill_refuses_models_without_tables_or_a_larger_vocabulary(sentiment):
    method = get_method("word_embedding_distill")
    text = build_model("text-bag", sentiment, seed=0)
    plain = SimpleNamespace(head=nn.Linear(2, 3))
    ctx = SimpleNamespace(student=text, teacher=plain, device="cpu")
    with pytest.raises(MethodError, match="'word_embedding_distill' needs a text teacher .* the teacher has none"):
        method.setup(ctx)
    small = build_model({"arch": "text", "encoder": "bag", "vocab_size": 100}, sentiment, seed=0)
    with pytest.raises(MethodError, match="the student's embedding table has 512 words, more than the teacher's 100"):
        method.setup(SimpleNamespace(student=text, teacher=small, device="cpu"))


def test_word_embedding_distill_trains_and_saves_the_encoded_table(sentiment):
    teacher = build_model("text-gru", sentiment, seed=1).eval()  # a 64-wide table, encoded to the bag's 32
    config = TrainConfig(
        dataset=sentiment.spec, student="text-bag", method="word_embedding_distill", epochs=2, batch_size=64, seed=0
    )
    fitted = _fit(config, sentiment, [teacher], None, "cpu", None, None)
    assert set(fitted.history[-1]) >= {"loss/ce", "test_accuracy"} and math.isfinite(fitted.history[-1]["loss"])
    student, method = fitted.model, fitted.method
    # the saved student holds exactly the encoder's output on the teacher's table, padding row zero
    torch.testing.assert_close(student.body.embedding.weight, method.student_table().detach())
    assert student.body.embedding.weight[0].abs().max().item() == 0.0
    # the plain student now computes what the training forward computed
    batch = SimpleNamespace(x=sentiment.x_test[:8])
    torch.testing.assert_close(student(batch.x), method.forward(SimpleNamespace(student=student), batch))
    # the last checkpoint holds the distilled table too
    torch.testing.assert_close(fitted.checkpoints[2]["body.embedding.weight"], student.body.embedding.weight.detach())


# ---- dataset_distill on text: synthetic sentences of word vectors ---------------------------------------------


@pytest.mark.parametrize("name", ["text-bag", "text-cnn", "text-gru", "text-tf"])
def test_from_embeddings_of_the_tables_rows_is_the_models_forward(sentiment, name):
    model = build_model(name, sentiment, seed=0).eval()
    tokens = sentiment.x_test[:6]
    vectors = model.body.embedding.weight[tokens]
    torch.testing.assert_close(model.from_embeddings(vectors, tokens != 0), model(tokens), atol=1e-5, rtol=1e-5)


def test_text_synthetic_set_starts_from_real_sentences_in_the_frozen_word_space(sentiment):
    table = frozen_word_table("text-bag", sentiment, seed=3, device="cpu")
    torch.testing.assert_close(table, build_model("text-bag", sentiment, seed=3).body.embedding.weight.detach())
    start = distill_dataset(sentiment, ipc=2, model_spec="text-bag", steps=0, seed=3)
    assert start.x.shape == (6, sentiment.x_train.shape[1], 32) and start.y.tolist() == [0, 0, 1, 1, 2, 2]
    torch.testing.assert_close(start.word_table, table)
    # steps = 0: each synthetic sentence is a real one of its class, row by row of the table, with its mask
    matches = [
        row
        for row in range(len(sentiment.x_train))
        if sentiment.y_train[row] == start.y[0]
        and torch.equal(sentiment.x_train[row] != 0, start.mask[0])
        and torch.equal(table[sentiment.x_train[row]], start.x[0])
    ]
    assert matches
    with pytest.raises(ValueError, match="soft labels from a label_model are not available on text"):
        distill_dataset(sentiment, ipc=1, model_spec="text-bag", steps=0, label_model=nn.Identity())


def test_text_distribution_matching_pulls_the_class_means_together(sentiment):
    # text-bag's ψ has no parameters before the head: its embedding is the masked mean of the word vectors,
    # so DM can match every class's mean exactly and the loss falls far
    synthetic = distill_dataset(sentiment, ipc=2, model_spec="text-bag", steps=60, seed=0, lr=0.05, real_per_class=32)
    first, last = synthetic.loss_history[0], synthetic.loss_history[-1]
    assert last < first / 5, (first, last)
    assert torch.equal(synthetic.mask.any(dim=1), torch.ones(6, dtype=torch.bool))


def test_text_training_on_a_set_keeps_the_word_space_frozen(sentiment):
    table = frozen_word_table("text-bag", sentiment, seed=0, device="cpu")
    tokens, labels = sentiment.x_train[:12], sentiment.y_train[:12]
    targets = torch.nn.functional.one_hot(labels, 3).float()
    model = train_on_set(
        table[tokens], targets, sentiment, model_spec="text-bag", seed=1, steps=5, mask=tokens != 0, word_table=table
    )
    torch.testing.assert_close(model.body.embedding.weight, table)  # trained through from_embeddings, table frozen
    assert 0.0 <= accuracy_on_test(model, sentiment) <= 1.0
    with pytest.raises(ValueError, match="needs both the sentences' mask and their word_table"):
        train_on_set(table[tokens], targets, sentiment, model_spec="text-bag", seed=1, steps=1, mask=tokens != 0)
    evaluation = evaluate_synthetic(
        sentiment,
        distill_dataset(sentiment, ipc=1, model_spec="text-bag", steps=3, seed=0),
        model_spec="text-bag",
        seeds=[0],
        steps=5,
    )
    assert evaluation.size == 3 and all(
        0.0 <= a <= 1.0 for a in evaluation.synthetic_accuracy + evaluation.random_real_accuracy
    )


def test_dataset_distill_method_trains_a_text_student_on_synthetic_sentences(sentiment):
    config = TrainConfig(
        dataset=sentiment.spec,
        student="text-bag",
        method="dataset_distill",
        hparams={"ipc": 2, "distill_steps": 5, "real_per_class": 16},
        epochs=2,
        batch_size=64,
        train_subset=120,
        seed=0,
    )
    fitted = _fit(config, sentiment, [], None, "cpu", None, None)
    assert {"loss/ce_synthetic", "test_accuracy"} <= set(fitted.history[-1])
    synthetic = fitted.method.synthetic
    assert synthetic.x.shape[0] == 6 and synthetic.mask is not None
    # the student learnt in the set's word space: its table is that space, unchanged by training
    torch.testing.assert_close(fitted.model.body.embedding.weight, synthetic.word_table)
    teacher = build_model("text-bag", sentiment, seed=0)
    refused = dataclasses.replace(config, hparams={"ipc": 1, "distill_steps": 0, "teacher_labels": 1})
    with pytest.raises(MethodError, match="'dataset_distill' on text .* teacher_labels=1 is not available for text"):
        fit(refused, sentiment, teacher, device="cpu")
