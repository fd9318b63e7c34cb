"""Teacher ↔ student fidelity: agreement and KL against hand values and laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdviz.analysis import agreement, agreement_per_class, kl_divergence, kl_per_class, kl_per_sample

TEACHER = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.5, 0.5, 0.0]])
STUDENT = np.array([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6], [0.1, 0.1, 0.8], [0.25, 0.5, 0.25]])
LABELS = np.array([0, 1, 2, 0])


def test_agreement_hand_value_and_self_agreement():
    # teacher argmax 0 1 2 0 (row 3 ties -> first index); student argmax 0 2 2 1 -> 2 of 4 agree
    assert agreement(TEACHER, STUDENT) == 0.5
    assert agreement(TEACHER, TEACHER) == 1.0


def test_kl_hand_values():
    # KL([.5,.5] ‖ [.9,.1]) = .5 ln(.5/.9) + .5 ln(.5/.1) = .5 ln(25/9)
    assert kl_divergence([[0.5, 0.5]], [[0.9, 0.1]]) == pytest.approx(0.5 * math.log(25 / 9))
    # zero teacher mass contributes nothing: KL([1,0] ‖ [.5,.5]) = ln 2
    assert kl_divergence([[1.0, 0.0]], [[0.5, 0.5]]) == pytest.approx(math.log(2))
    # zero student mass where the teacher has some: clipped at 1e-12, large but finite
    assert kl_divergence([[0.5, 0.5]], [[1.0, 0.0]]) == pytest.approx(0.5 * math.log(0.5 / 1e-12) + 0.5 * math.log(0.5))
    row3 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.5)
    assert kl_per_sample(TEACHER, STUDENT)[3] == pytest.approx(row3)


def test_kl_of_identical_predictions_is_zero():
    assert kl_divergence(TEACHER, TEACHER) == 0.0
    assert np.all(kl_per_sample(STUDENT, STUDENT) == 0.0)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, (5, 4), elements=st.floats(0.0, 1.0)),
    arrays(np.float64, (5, 4), elements=st.floats(1e-3, 1.0)),
)
def test_kl_is_non_negative(raw_teacher, raw_student):
    raw_teacher[:, 0] += 1e-3  # keep every row normalisable
    teacher = raw_teacher / raw_teacher.sum(1, keepdims=True)
    student = raw_student / raw_student.sum(1, keepdims=True)
    assert np.all(kl_per_sample(teacher, student) >= 0.0)
    assert kl_divergence(teacher, teacher) == pytest.approx(0.0, abs=1e-12)


def test_per_class_tables():
    table = agreement_per_class(TEACHER, STUDENT, LABELS, class_names=["cat", "dog", "fox"])
    assert list(table.columns) == ["class", "class_name", "count", "agreement"]
    assert table["count"].tolist() == [2, 1, 1]
    # class 0: rows 0 (agree) and 3 (disagree) -> .5; class 1: row 1 disagrees; class 2: row 2 agrees
    assert table["agreement"].tolist() == [0.5, 0.0, 1.0]
    kl = kl_per_sample(TEACHER, STUDENT)
    kl_table = kl_per_class(TEACHER, STUDENT, LABELS)
    assert list(kl_table.columns) == ["class", "count", "kl"]
    np.testing.assert_allclose(kl_table["kl"], [(kl[0] + kl[3]) / 2, kl[1], kl[2]])


def test_per_class_absent_class_is_nan():
    table = kl_per_class(TEACHER, STUDENT, [0, 0, 1, 1])
    assert table["count"].tolist() == [2, 2, 0]
    assert math.isnan(table["kl"].iloc[2])


def test_torch_inputs():
    t, s = torch.tensor(TEACHER, dtype=torch.float32), torch.tensor(STUDENT, dtype=torch.float32)
    assert agreement(t, s) == 0.5
    assert kl_divergence(t, s) == pytest.approx(kl_divergence(TEACHER, STUDENT), abs=1e-6)


@pytest.mark.parametrize(
    ("teacher", "student", "message"),
    [
        (TEACHER, STUDENT[:3], "length mismatch: teacher_probs=4, student_probs=3"),
        (TEACHER, np.full((4, 4), 0.25), "teacher_probs has 3 classes but student_probs has 4"),
        (TEACHER * 2, STUDENT, "teacher_probs rows must sum to 1"),
        (TEACHER, np.where(STUDENT == 0.6, np.nan, STUDENT), "student_probs contains NaN"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "teacher_probs is empty"),
    ],
)
def test_bad_inputs(teacher, student, message):
    with pytest.raises(ValueError, match=message):
        kl_divergence(teacher, student)
    with pytest.raises(ValueError, match=message):
        agreement(teacher, student)


def test_per_class_bad_labels():
    with pytest.raises(ValueError, match="labels has 3 entries but there are 4 samples"):
        agreement_per_class(TEACHER, STUDENT, [0, 1, 2])
    with pytest.raises(ValueError, match="out-of-range class index 3"):
        kl_per_class(TEACHER, STUDENT, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="class_names has 2 entries but the probabilities have 3 classes"):
        kl_per_class(TEACHER, STUDENT, LABELS, class_names=["a", "b"])


@pytest.mark.parametrize(
    "function",
    [
        kl_per_sample,
        lambda t, s: agreement_per_class(t, s, LABELS[: len(t)] if len(t) <= 4 else np.zeros(len(t), int)),
        lambda t, s: kl_per_class(t, s, LABELS[: len(t)] if len(t) <= 4 else np.zeros(len(t), int)),
    ],
    ids=["kl_per_sample", "agreement_per_class", "kl_per_class"],
)
@pytest.mark.parametrize(
    ("teacher", "student", "message"),
    [
        (TEACHER, STUDENT[:3], "length mismatch: teacher_probs=4, student_probs=3"),
        (TEACHER, STUDENT * 0.5, "student_probs rows must sum to 1"),
        (np.where(TEACHER == 0.8, np.inf, TEACHER), STUDENT, "teacher_probs contains infinite values"),
        (TEACHER[0], STUDENT[0], "teacher_probs must be 2-D"),
    ],
)
def test_every_fidelity_function_rejects_bad_probabilities(function, teacher, student, message):
    with pytest.raises(ValueError, match=message):
        function(teacher, student)


def test_agreement_of_a_model_with_itself_is_one_and_kl_zero():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4)
    with torch.no_grad():
        probs = torch.softmax(model(torch.randn(50, 5)), dim=1)
    assert agreement(probs, probs.clone()) == 1.0
    assert kl_divergence(probs, probs.clone()) == 0.0
    assert (agreement_per_class(probs, probs, probs.argmax(1))["agreement"].dropna() == 1.0).all()
