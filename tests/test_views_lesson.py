"""The dark-knowledge lesson's numbers against hand computations on small fixed logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.views.lesson import (
    class_similarity,
    collapse,
    dkd_split,
    instructive_samples,
    kd_loss_and_gradient,
    lesson_sample,
    loss_over_temperature,
    mean_soft_targets,
    smoothing_vs_kd,
    soften,
    top_classes,
)

LN = np.log


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


# --------------------------------------------------------------------------- soft targets


def test_soften_matches_hand_values():
    logits = LN([1.0, 2.0, 4.0])
    np.testing.assert_allclose(soften(logits, 1.0), [1 / 7, 2 / 7, 4 / 7])
    # T = 2 takes square roots of the T = 1 odds: 1 : √2 : 2
    np.testing.assert_allclose(soften(logits, 2.0), np.array([1, math.sqrt(2), 2]) / (3 + math.sqrt(2)))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_soften_rejects_bad_temperatures(bad):
    with pytest.raises(ValueError, match="temperature"):
        soften([0.0, 1.0], bad)


def test_mean_soft_targets_averages_per_true_class():
    logits = LN([[0.5, 0.3, 0.2], [0.7, 0.1, 0.2], [0.1, 0.8, 0.1]])
    matrix = mean_soft_targets(logits, np.array([0, 0, 1]), 1.0)
    np.testing.assert_allclose(matrix[0], [0.6, 0.2, 0.2])
    np.testing.assert_allclose(matrix[1], [0.1, 0.8, 0.1])
    assert np.isnan(matrix[2]).all()  # no sample of class 2


def test_mean_soft_targets_non_target_renormalises_without_the_true_class():
    logits = LN([[0.5, 0.3, 0.2], [0.7, 0.1, 0.2], [0.1, 0.8, 0.1]])
    matrix = mean_soft_targets(logits, np.array([0, 0, 1]), 1.0, non_target=True)
    # sample 0: [0, .6, .4]; sample 1: [0, 1/3, 2/3] -> mean [0, .4667, .5333]
    np.testing.assert_allclose(matrix[0], [0.0, (0.6 + 1 / 3) / 2, (0.4 + 2 / 3) / 2])
    np.testing.assert_allclose(matrix[1], [0.5, 0.0, 0.5])


def test_mean_soft_targets_rejects_bad_labels():
    with pytest.raises(ValueError, match="class indices in 0..1"):
        mean_soft_targets(np.zeros((2, 2)), np.array([0, 2]), 1.0)
    with pytest.raises(ValueError, match="shape"):
        mean_soft_targets(np.zeros((2, 2)), np.array([0]), 1.0)


def test_instructive_samples_rank_right_answers_by_runner_up():
    probs = np.array(
        [
            [0.6, 0.3, 0.1],  # right, runner-up .3
            [0.9, 0.05, 0.05],  # right, runner-up .05
            [0.3, 0.4, 0.3],  # wrong (label 0)
            [0.45, 0.35, 0.2],  # right but below 0.5
            [0.1, 0.7, 0.2],  # right (label 1), runner-up .2
        ]
    )
    labels = np.array([0, 0, 0, 0, 1])
    assert instructive_samples(LN(probs), labels).tolist() == [0, 4, 1]
    assert instructive_samples(LN(probs), labels, count=1).tolist() == [0]
    with pytest.raises(ValueError, match="positive integer"):
        instructive_samples(LN(probs), labels, 0)
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        instructive_samples(LN(probs), labels[:2])


def test_top_classes_keeps_the_label_and_the_most_probable():
    probs = np.array([0.05, 0.4, 0.01, 0.3, 0.24])
    assert top_classes(probs, 2, limit=3).tolist() == [1, 2, 3]  # label 2 + the two most probable others
    assert top_classes(probs, 1, limit=3).tolist() == [1, 3, 4]
    assert top_classes(probs, 0, limit=5).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="limit must be an integer >= 2"):
        top_classes(probs, 0, limit=1)
    np.testing.assert_allclose(collapse(probs, [1, 2, 3]), [0.4, 0.01, 0.3, 0.29])


# --------------------------------------------------------------------------- KD loss and gradient


def test_kd_loss_and_gradient_by_hand():
    # p_s = [.5, .5], p_t = [.75, .25], label 0, T = 1, α = .5
    terms = kd_loss_and_gradient([0.0, 0.0], LN([3.0, 1.0]), 0, temperature=1.0, alpha=0.5)
    assert terms.ce == pytest.approx(0.5 * math.log(2))
    assert terms.kd == pytest.approx(0.5 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5)))
    assert terms.total == pytest.approx(terms.ce + terms.kd)
    # .5·(p_s − p_t) + .5·(p_s − y) = .5·[−.25, .25] + .5·[−.5, .5]
    np.testing.assert_allclose(terms.grad, [-0.375, 0.375])


def closed_form_grad(student, teacher, label, temperature, alpha):
    p_s_t, p_t_t = softmax(student / temperature), softmax(teacher / temperature)
    onehot = np.eye(len(student))[label]
    return alpha * temperature * (p_s_t - p_t_t) + (1 - alpha) * (softmax(student) - onehot)


logit_vectors = st.integers(2, 6).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(-8, 8), min_size=k, max_size=k),
        st.lists(st.floats(-8, 8), min_size=k, max_size=k),
        st.integers(0, k - 1),
    )
)


@settings(max_examples=60, deadline=None)
@given(logit_vectors, st.floats(0.5, 20.0), st.floats(0.0, 1.0))
def test_autograd_gradient_equals_closed_form(case, temperature, alpha):
    student, teacher, label = (np.array(case[0]), np.array(case[1]), case[2])
    terms = kd_loss_and_gradient(student, teacher, label, temperature, alpha)
    np.testing.assert_allclose(
        terms.grad, closed_form_grad(student, teacher, label, temperature, alpha), atol=1e-9, rtol=1e-7
    )
    assert terms.grad.sum() == pytest.approx(0.0, abs=1e-9)  # softmax gradients sum to zero


def test_kd_term_vanishes_when_student_equals_teacher():
    terms = kd_loss_and_gradient([1.0, -2.0, 0.5], [1.0, -2.0, 0.5], 2, temperature=4.0, alpha=1.0)
    assert terms.kd == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(terms.grad, 0.0, atol=1e-12)


def test_kd_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha must be in"):
        kd_loss_and_gradient([0.0, 1.0], [0.0, 1.0], 0, 2.0, 1.5)
    with pytest.raises(ValueError, match="label must be a class index in 0..1"):
        kd_loss_and_gradient([0.0, 1.0], [0.0, 1.0], 2, 2.0, 0.5)
    with pytest.raises(ValueError, match="3 classes but teacher_logits has 2"):
        kd_loss_and_gradient([0.0, 1.0, 2.0], [0.0, 1.0], 0, 2.0, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        kd_loss_and_gradient([0.0, float("nan")], [0.0, 1.0], 0, 2.0, 0.5)


def test_loss_over_temperature_matches_pointwise_values():
    student, teacher = np.array([2.0, 0.0, -1.0]), np.array([3.0, 1.5, -2.0])
    temperatures = [0.5, 1.0, 4.0, 20.0]
    curves = loss_over_temperature(student, teacher, 1, 0.7, temperatures)
    assert set(curves) == {"KD term α·T²·KL", "CE term (1−α)·CE", "total"}
    for i, t in enumerate(temperatures):
        terms = kd_loss_and_gradient(student, teacher, 1, t, 0.7)
        assert curves["KD term α·T²·KL"][i] == pytest.approx(terms.kd)
        assert curves["total"][i] == pytest.approx(terms.total)
    # the CE term does not depend on T
    np.testing.assert_allclose(curves["CE term (1−α)·CE"], curves["CE term (1−α)·CE"][0])
    with pytest.raises(ValueError, match="empty"):
        loss_over_temperature(student, teacher, 1, 0.7, [])


# --------------------------------------------------------------------------- DKD


def test_dkd_split_by_hand():
    # teacher [.5, .4, .1], student uniform, label 0, T = 1
    split = dkd_split([0.0, 0.0, 0.0], LN([0.5, 0.4, 0.1]), 0, 1.0)
    assert split.tckd == pytest.approx(0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3)))
    assert split.nckd == pytest.approx(0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5))
    np.testing.assert_allclose(split.teacher_binary, [0.5, 0.5])
    np.testing.assert_allclose(split.student_binary, [1 / 3, 2 / 3])
    np.testing.assert_allclose(split.teacher_non_target, [0.8, 0.2])
    np.testing.assert_allclose(split.student_non_target, [0.5, 0.5])
    assert split.non_target_classes == [1, 2]


def test_dkd_split_has_no_non_target_term_with_two_classes():
    split = dkd_split([0.3, -0.2], [2.0, -1.0], 1, 2.0)
    assert split.nckd == pytest.approx(0.0, abs=1e-12)
    assert split.kd == pytest.approx(split.tckd)


@settings(max_examples=40, deadline=None)
@given(logit_vectors, st.floats(0.5, 20.0))
def test_kd_is_tckd_plus_weighted_nckd(case, temperature):
    # Zhao et al. (2022), eq. 7: KD = TCKD + (1 − p_target^teacher) · NCKD
    student, teacher, label = case
    split = dkd_split(student, teacher, label, temperature)
    assert split.kd == pytest.approx(split.tckd + split.teacher_binary[1] * split.nckd, rel=1e-6, abs=1e-9)


# --------------------------------------------------------------------------- label smoothing vs KD


def test_smoothing_matches_the_teachers_non_target_mass():
    comparison = smoothing_vs_kd(LN([0.7, 0.2, 0.1]), 0, 1.0)
    assert comparison.epsilon == pytest.approx(0.3)
    assert comparison.smoothing == pytest.approx(0.45)  # s·(K−1)/K = .3
    np.testing.assert_allclose(comparison.kd_targets, [0.7, 0.2, 0.1])
    np.testing.assert_allclose(comparison.ls_targets, [0.7, 0.15, 0.15], atol=1e-6)
    assert comparison.ls_non_target_entropy == pytest.approx(math.log(2), abs=1e-6)
    assert comparison.kd_non_target_entropy == pytest.approx(-(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3))


def test_smoothing_with_a_chosen_epsilon_and_its_bounds():
    comparison = smoothing_vs_kd(LN([0.7, 0.2, 0.1]), 0, 1.0, epsilon=0.0)
    np.testing.assert_allclose(comparison.ls_targets, [1.0, 0.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"epsilon \(non-target mass\) must be in \[0, 0.6667\]"):
        smoothing_vs_kd(LN([0.7, 0.2, 0.1]), 0, 1.0, epsilon=0.9)
    # a teacher that puts less than 1/K on the label: label smoothing can at most be uniform
    capped = smoothing_vs_kd(LN([0.1, 0.45, 0.45]), 0, 1.0)
    assert capped.teacher_non_target_mass == pytest.approx(0.9)
    assert capped.epsilon == pytest.approx(2 / 3)
    np.testing.assert_allclose(capped.ls_targets, [1 / 3] * 3, atol=1e-6)


# --------------------------------------------------------------------------- real sample runs


@pytest.fixture(scope="module")
def gaussians(app_home):
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    ws = Workspace(RunStore(app_home))
    return ws, ws.default_selection("gaussians")


def test_lesson_sample_reads_the_runs_real_logits(gaussians):
    ws, selection = gaussians
    sample = lesson_sample(ws, selection.teacher, selection.roles["distilled"], 7)
    np.testing.assert_allclose(sample.teacher_logits, ws.logits(selection.teacher)[7])
    np.testing.assert_allclose(sample.student_logits, ws.logits(selection.roles["distilled"])[7])
    assert sample.label == int(ws.labels(selection.teacher)[7])
    assert sample.input_kind == "points" and sample.x.shape == (2,)
    assert lesson_sample(ws, selection.teacher, None, 0).student_logits is None
    n = len(ws.labels(selection.teacher))
    with pytest.raises(ValueError, match=f"sample index must be in 0..{n - 1}"):
        lesson_sample(ws, selection.teacher, None, n)


def test_class_similarity_of_the_teacher_is_cached_mean_soft_targets(gaussians):
    ws, selection = gaussians
    matrix = class_similarity(ws, selection.teacher, 4.0)
    expected = mean_soft_targets(ws.logits(selection.teacher), ws.labels(selection.teacher), 4.0)
    np.testing.assert_allclose(matrix, expected)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert class_similarity(ws, selection.teacher, 4.0) is matrix  # cached, not recomputed
    assert np.trace(class_similarity(ws, selection.teacher, 4.0, non_target=True)) == 0.0


# --------------------------------------------------------------------------- the input picture


def _axis_titles(fig) -> list[str]:
    layout = fig.to_dict()["layout"]
    return [layout[k].get("title", {}).get("text", "") for k in layout if k.startswith(("xaxis", "yaxis"))]


@pytest.mark.parametrize(
    ("kind", "x", "extra"),
    [
        ("image", np.arange(48.0).reshape(3, 4, 4), {}),
        ("signal", np.sin(np.arange(40.0))[None], {}),
        ("points", np.array([0.5, -1.0]), {"points": np.eye(2) * 3, "point_labels": [0, 1]}),
        ("tabular", np.array([0.1, -2.0, 3.0]), {"feature_names": ["a", "b", "c"]}),
    ],
)
def test_sample_input_figure_draws_every_kind_with_titled_axes(kind, x, extra):
    from kdviz.plots import sample_input_figure

    fig = sample_input_figure(x, kind, label=1, class_names=["cat", "dog"], **extra)
    assert fig.layout.title.text == "true class: dog"
    titles = _axis_titles(fig)
    assert titles and all(titles)
    if kind == "points":
        star = fig.data[-1]
        assert star.name == "this sample" and (star.x[0], star.y[0]) == (0.5, -1.0)
        assert [t.name for t in fig.data[:-1]] == ["cat", "dog"]
    if kind == "tabular":
        assert list(fig.data[0].x) == ["a", "b", "c"] and list(fig.data[0].y) == [0.1, -2.0, 3.0]


def test_sample_input_figure_rejects_unknown_kinds():
    from kdviz.plots import sample_input_figure

    with pytest.raises(ValueError, match="image, signal, points, tabular"):
        sample_input_figure(np.zeros(3), "video")
    with pytest.raises(ValueError, match="points must be N×2"):
        sample_input_figure(np.zeros(3), "points", points=np.zeros((4, 2)))
