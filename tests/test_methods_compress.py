"""Encoder compression: the three terms by hand, gradient routing, requirements, and a tiny fit."""

import math

import pytest
import torch
from torch import nn

from kdviz.data.cache import get_dataset
from kdviz.distill import MethodError, TrainConfig, TrainContext, fit, get_method, list_methods
from kdviz.distill.methods.compress import code_encoder, encoder_compression_terms
from kdviz.models import build_model

DIGITS = {"name": "digits"}


@pytest.fixture(scope="module")
def digits():
    return get_dataset(DIGITS)


def identity_modules():
    encoder = code_encoder(2, 2)
    code_head = nn.Linear(2, 2)
    with torch.no_grad():
        encoder[1].weight.copy_(torch.eye(2))
        encoder[1].bias.zero_()
        code_head.weight.copy_(torch.eye(2))
        code_head.bias.zero_()
    return encoder, code_head


def test_terms_hand_computation():
    # teacher features [1, −2] -> code ReLU([1, −2]) = [1, 0]; code head logits [1, 0], y = 0:
    #   ce_code = ln(1 + e^−1) = 0.3132617;   code = w_c · ½ · mean([(3 − 1)², (0 − 0)²]) = 2 · ½ · 2 = 2
    #   ce (student logits [0, 0]) = ln 2;    task weight 0.5 halves ce_code
    encoder, code_head = identity_modules()
    terms = encoder_compression_terms(
        student_embeddings=torch.tensor([[3.0, 0.0]]),
        student_logits=torch.zeros(1, 2),
        teacher_features=torch.tensor([[1.0, -2.0]]),
        labels=torch.tensor([0]),
        encoder=encoder,
        code_head=code_head,
        code_weight=2.0,
        task_weight=0.5,
    )
    assert sorted(terms) == ["ce", "ce_code", "code"]
    assert terms["code"].item() == pytest.approx(2.0)
    assert terms["ce_code"].item() == pytest.approx(0.5 * math.log(1 + math.exp(-1)), rel=1e-6)
    assert terms["ce"].item() == pytest.approx(math.log(2), rel=1e-6)


def test_code_term_trains_only_the_student_and_task_term_only_the_encoder():
    encoder, code_head = identity_modules()
    embeddings = torch.tensor([[3.0, 0.5]], requires_grad=True)
    args = (torch.zeros(1, 2), torch.tensor([[1.0, 2.0]]), torch.tensor([1]), encoder, code_head)
    terms = encoder_compression_terms(embeddings, *args)
    terms["code"].backward()
    assert embeddings.grad.abs().sum() > 0
    assert encoder[1].weight.grad is None  # the code is a stop-gradient target
    terms = encoder_compression_terms(embeddings.detach(), *args)
    terms["ce_code"].backward()
    assert encoder[1].weight.grad.abs().sum() > 0 and code_head.weight.grad.abs().sum() > 0


def test_terms_reject_a_code_of_the_wrong_size():
    encoder, code_head = identity_modules()
    with pytest.raises(ValueError, match=r"code \(1, 2\) and the student's embeddings \(1, 3\) differ"):
        encoder_compression_terms(
            torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([0]), encoder, code_head
        )


def context(dataset, student, teacher):
    return TrainContext(dataset, student, teacher, torch.device("cpu"), {"epochs": 2, "seed": 0})


def test_setup_sizes_the_code_to_the_student_bottleneck(digits):
    student, teacher = build_model("cnn-s", digits, seed=0), build_model("cnn-l", digits, seed=1)
    method = get_method("encoder_compression")
    method.setup(context(digits, student, teacher))
    assert method.teacher_layer == "body.pool" and method.student_layer == "body.pool"
    assert method.encoder[1].in_features == 64 and method.encoder[1].out_features == 32  # cnn-l 64 -> cnn-s 32
    assert method.code_head.in_features == 32 and method.code_head.out_features == 10
    assert method.extra_modules() == [method.encoder, method.code_head]
    deeper = get_method("encoder_compression", {"layer_from_end": 1})
    deeper.setup(context(digits, student, teacher))
    # cnn-l block3 on 8×8 digits: 64 channels × 4 × 4, flattened
    assert deeper.teacher_layer == "body.block3" and deeper.encoder[1].in_features == 64 * 4 * 4


def test_requirements(digits):
    student, teacher = build_model("mlp-16", digits, seed=0), build_model("mlp-64x2", digits, seed=1)
    with pytest.raises(MethodError, match="needs a teacher"):
        get_method("encoder_compression").setup(context(digits, student, None))
    with pytest.raises(MethodError, match=r"layer_from_end=2 is too deep.*body.hidden1, body.hidden2.*use 0..1"):
        get_method("encoder_compression", {"layer_from_end": 2}).setup(context(digits, student, teacher))
    with pytest.raises(MethodError, match="must be a whole number"):
        get_method("encoder_compression", {"layer_from_end": 0.5}).setup(context(digits, student, teacher))


def test_fits_two_epochs_and_reports_each_term(digits):
    teacher = build_model("mlp-64x2", digits, seed=1)
    config = TrainConfig(
        dataset=digits.spec,
        student="mlp-16",
        method="encoder_compression",
        epochs=2,
        batch_size=32,
        train_subset=96,
        seed=0,
    )
    _, history, _ = fit(config, digits, teacher, device="cpu")
    assert set(history[-1]) >= {"loss/ce", "loss/code", "loss/ce_code", "test_accuracy"}
    assert all(math.isfinite(history[-1][f"loss/{name}"]) for name in ("ce", "code", "ce_code"))


def test_both_methods_are_registered_with_cards():
    by_name = {cls.name: cls for cls in list_methods()}
    assert by_name["encoder_compression"].needs_teacher and by_name["encoder_compression"].card.family == "feature"
    assert not by_name["dataset_distill"].needs_teacher and by_name["dataset_distill"].card.family == "data"
    assert "Zhao & Bilen" in by_name["dataset_distill"].card.paper
