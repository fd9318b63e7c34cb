"""rank_divergence: ordering by KL(teacher ‖ student), predictions, confidences, categories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdviz.analysis import DIVERGENCE_CATEGORIES, rank_divergence

# label 0 everywhere; one sample per category.
TEACHER = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.9, 0.1]])
STUDENT = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
LABELS = np.array([0, 0, 0, 0, 0])


def test_columns_and_order():
    table = rank_divergence(TEACHER, STUDENT, LABELS)
    assert list(table.columns) == [
        "index",
        "kl",
        "teacher_pred",
        "student_pred",
        "teacher_conf",
        "student_conf",
        "teacher_correct",
        "student_correct",
        "category",
    ]
    kl = [
        0.0,
        0.8 * math.log(0.8 / 0.1) + 0.2 * math.log(0.2 / 0.9),
        0.3 * math.log(0.3 / 0.6) + 0.7 * math.log(0.7 / 0.4),
        0.4 * math.log(0.4 / 0.2) + 0.6 * math.log(0.6 / 0.8),
        0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3),
    ]
    expected_order = sorted(range(5), key=lambda i: -kl[i])
    assert table["index"].tolist() == expected_order == [1, 2, 4, 3, 0]
    np.testing.assert_allclose(table["kl"], [kl[i] for i in expected_order])
    assert table.index.tolist() == [0, 1, 2, 3, 4]


def test_predictions_confidences_and_categories():
    table = rank_divergence(TEACHER, STUDENT, LABELS).set_index("index").sort_index()
    assert table["teacher_pred"].tolist() == [0, 0, 1, 1, 0]
    assert table["student_pred"].tolist() == [0, 1, 0, 1, 0]
    np.testing.assert_allclose(table["teacher_conf"], [0.9, 0.8, 0.7, 0.6, 0.9])
    np.testing.assert_allclose(table["student_conf"], [0.9, 0.9, 0.6, 0.8, 0.7])
    assert table["teacher_correct"].tolist() == [True, True, False, False, True]
    assert table["student_correct"].tolist() == [True, False, True, False, True]
    assert table["category"].tolist() == [
        "both right",
        "teacher right only",
        "student right only",
        "both wrong",
        "both right",
    ]
    assert set(table["category"]) == set(DIVERGENCE_CATEGORIES)


def test_ties_keep_sample_order_and_torch_inputs_work():
    same = torch.tensor([[0.5, 0.5]] * 4)
    table = rank_divergence(same, same, torch.tensor([0, 1, 0, 1]))
    assert table["index"].tolist() == [0, 1, 2, 3]
    assert (table["kl"] == 0).all()


@pytest.mark.parametrize(
    ("teacher", "student", "labels", "message"),
    [
        (TEACHER, STUDENT[:4], LABELS, "length mismatch: teacher_probs=5, student_probs=4"),
        (TEACHER, STUDENT, LABELS[:4], "labels has 4 entries but there are 5 samples"),
        (TEACHER, STUDENT, [0, 0, 0, 0, 2], "out-of-range class index 2"),
        (TEACHER + 0.1, STUDENT, LABELS, "teacher_probs rows must sum to 1"),
        (np.zeros((0, 2)), np.zeros((0, 2)), [], "teacher_probs is empty"),
    ],
)
def test_bad_inputs(teacher, student, labels, message):
    with pytest.raises(ValueError, match=message):
        rank_divergence(teacher, student, np.asarray(labels))


def test_nan_and_wrong_rank_inputs():
    with pytest.raises(ValueError, match="student_probs contains NaN"):
        rank_divergence(TEACHER, np.where(STUDENT == 0.9, np.nan, STUDENT), LABELS)
    with pytest.raises(ValueError, match="labels must be 1-D"):
        rank_divergence(TEACHER, STUDENT, LABELS[:, None])
