"""Distillation losses against hand computations and the laws they obey."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.distill.losses import response as response_losses

LN3 = math.log(3.0)


def test_kd_kl_hand_computation_t1():
    # p_teacher = softmax([ln 3, 0]) = [0.75, 0.25]; p_student = [0.5, 0.5]
    # KL = 0.75·ln(0.75/0.5) + 0.25·ln(0.25/0.5) = 0.304099 - 0.173287 = 0.130812
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[LN3, 0.0]])
    assert response_losses.kd_kl(student, teacher, 1.0).item() == pytest.approx(0.130812, abs=1e-6)


def test_kd_kl_temperature_and_t_squared_scaling():
    # At T = 2 the teacher [2·ln 3, 0] softens to the same [0.75, 0.25]; the T² factor gives 4 × 0.130812.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * LN3, 0.0]])
    assert response_losses.kd_kl(student, teacher, 2.0).item() == pytest.approx(4 * 0.130812, abs=1e-5)


def test_kd_kl_is_batchmean():
    # Two samples: the first as above (0.130812), the second identical logits (0) -> mean 0.065406.
    student = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    teacher = torch.tensor([[LN3, 0.0], [1.0, 2.0]])
    assert response_losses.kd_kl(student, teacher, 1.0).item() == pytest.approx(0.065406, abs=1e-6)


def test_hinton_kd_terms_hand_computation():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * LN3, 0.0]])
    terms = response_losses.hinton_kd(student, teacher, torch.tensor([0]), temperature=2.0, alpha=0.9)
    assert set(terms) == {"ce", "kd"}
    assert terms["ce"].item() == pytest.approx(0.1 * math.log(2), abs=1e-6)  # CE of [0.5, 0.5] is ln 2
    assert terms["kd"].item() == pytest.approx(0.9 * 4 * 0.130812, abs=1e-5)


def test_label_smoothing_hand_computation():
    # p = softmax([ln 2, 0, 0]) = [0.5, 0.25, 0.25]; target (ε = 0.3, K = 3) = [0.8, 0.1, 0.1]
    # CE = -(0.8·ln 0.5 + 0.2·ln 0.25) = 0.554518 + 0.277259 = 0.831777
    logits = torch.tensor([[math.log(2), 0.0, 0.0]])
    assert response_losses.label_smoothing_ce(logits, torch.tensor([0]), 0.3).item() == pytest.approx(
        0.831777, abs=1e-6
    )
    targets = response_losses.label_smoothing_targets(torch.tensor([0]), 3, 0.3)
    torch.testing.assert_close(targets, torch.tensor([[0.8, 0.1, 0.1]]))


def test_label_smoothing_zero_is_cross_entropy():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    labels = torch.tensor([2, 1])
    ce = response_losses.cross_entropy(logits, labels)
    assert response_losses.label_smoothing_ce(logits, labels, 0.0).item() == pytest.approx(ce.item(), abs=1e-6)


def test_bad_hyperparameters_raise_named_errors():
    logits = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="temperature must be positive"):
        response_losses.kd_kl(logits, logits, 0.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        response_losses.hinton_kd(logits, logits, torch.tensor([0]), alpha=1.5)
    with pytest.raises(ValueError, match="label smoothing must be in"):
        response_losses.label_smoothing_targets(torch.tensor([0]), 2, 1.0)


logit_rows = st.lists(
    st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=3, max_size=3), min_size=1, max_size=4
)


@settings(max_examples=50, deadline=None)
@given(logit_rows, st.floats(0.5, 10.0))
def test_kd_loss_is_zero_when_student_equals_teacher(rows, temperature):
    logits = torch.tensor(rows)
    assert response_losses.kd_kl(logits, logits.clone(), temperature).item() == pytest.approx(0.0, abs=1e-5)


@settings(max_examples=50, deadline=None)
@given(logit_rows, logit_rows, st.floats(0.5, 10.0), st.floats(-5, 5))
def test_kd_loss_nonnegative_and_shift_invariant(student_rows, teacher_rows, temperature, shift):
    n = min(len(student_rows), len(teacher_rows))
    student, teacher = torch.tensor(student_rows[:n]), torch.tensor(teacher_rows[:n])
    value = response_losses.kd_kl(student, teacher, temperature).item()
    assert value >= -1e-5
    shifted = response_losses.kd_kl(student + shift, teacher - shift, temperature).item()
    assert shifted == pytest.approx(value, rel=1e-3, abs=1e-4)
