"""explain_divergence on tiny 2-D points and tiny images: probabilities, KL, neighbours, attributions, grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdviz.analysis.explain import explain_divergence
from kdviz.data import load_dataset
from kdviz.models import build_model


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons", n_samples=120, seed=0)


def test_points_explanation_has_probs_kl_attributions_neighbours_and_grid(moons):
    teacher = build_model("mlp-16", moons, seed=0)
    student = build_model("mlp-8", moons, seed=1)
    result = explain_divergence(teacher, student, moons, 3, k_neighbours=4, grid_size=20)
    sample = moons.x_test[3:4]
    with torch.no_grad():
        t = torch.softmax(teacher(sample), 1)[0].numpy()
        s = torch.softmax(student(sample), 1)[0].numpy()
    np.testing.assert_allclose(result.teacher_probs, t, atol=1e-6)
    np.testing.assert_allclose(result.student_probs, s, atol=1e-6)
    assert result.kl_teacher_student == pytest.approx(float(np.sum(t * np.log(t / s))), abs=1e-6)
    assert result.label == int(moons.y_test[3]) and result.class_names == ["upper moon", "lower moon"]
    assert result.teacher_target == result.teacher_prediction and result.student_target == result.student_prediction
    assert result.teacher_attribution.shape == (2,) and result.student_attribution.shape == (2,)
    for table in (result.teacher_neighbours, result.student_neighbours):
        assert list(table.columns) == ["train_index", "distance", "label"] and len(table) == 4
        assert table["distance"].is_monotonic_increasing
        np.testing.assert_array_equal(table["label"], moons.y_train[table["train_index"]].numpy())
    grid = result.decision_grid
    assert grid is not None and grid.x.shape == (20,) and grid.teacher_probs.shape == (20, 20, 2)
    np.testing.assert_allclose(grid.student_probs.sum(axis=2), 1.0, atol=1e-5)
    assert grid.x[0] <= grid.point[0] <= grid.x[-1] and grid.y[0] <= grid.point[1] <= grid.y[-1]
    # Row = y, column = x: the grid cell at (row 0, column 19) is the point (x[19], y[0]).
    corner = torch.tensor([[grid.x[19], grid.y[0]]], dtype=torch.float32)
    with torch.no_grad():
        np.testing.assert_allclose(grid.teacher_probs[0, 19], torch.softmax(teacher(corner), 1)[0].numpy(), atol=1e-5)


def test_identical_models_agree_everywhere(moons):
    model = build_model("mlp-8", moons, seed=0)
    result = explain_divergence(model, model, moons, 0, k_neighbours=3, grid_size=10)
    assert result.kl_teacher_student == pytest.approx(0.0, abs=1e-9)
    assert result.shared_neighbours == 3
    np.testing.assert_array_equal(result.decision_grid.teacher_class, result.decision_grid.student_class)
    np.testing.assert_allclose(result.teacher_attribution, result.student_attribution)


def test_neighbours_of_a_linear_model_are_nearest_in_input_space(moons):
    model = build_model("linear", moons, seed=0)  # embed = the flattened input itself
    result = explain_divergence(model, model, moons, 5, k_neighbours=5, grid_size=2)
    distances = np.linalg.norm(moons.x_train.numpy() - moons.x_test[5].numpy(), axis=1)
    np.testing.assert_array_equal(result.teacher_neighbours["train_index"], np.argsort(distances, kind="stable")[:5])
    np.testing.assert_allclose(result.teacher_neighbours["distance"], np.sort(distances)[:5], atol=1e-5)


def test_images_get_grad_cam_maps_and_no_grid():
    shapes = load_dataset("shapes", n_train=16, n_val=8, n_test=8, seed=0)
    teacher = build_model("cnn-s", shapes, seed=0)
    student = build_model("cnn-s", shapes, seed=1)
    result = explain_divergence(teacher, student, shapes, 2, attribution="grad_cam", target="label", k_neighbours=2)
    assert result.teacher_attribution.shape == (32, 32) and result.decision_grid is None
    assert result.teacher_target == result.student_target == result.label


def test_bad_requests_raise(moons):
    model = build_model("mlp-8", moons, seed=0)
    n_test = len(moons.x_test)
    with pytest.raises(ValueError, match=f"index {n_test} is out of range for split 'test' with {n_test} samples"):
        explain_divergence(model, model, moons, n_test)
    with pytest.raises(ValueError, match="k_neighbours must be in 1..") as info:
        explain_divergence(model, model, moons, 0, k_neighbours=0)
    assert f"1..{len(moons.x_train)}" in str(info.value)
    with pytest.raises(ValueError, match="target must be 'predicted', 'label' or a class index in 0..1, got 7"):
        explain_divergence(model, model, moons, 0, target=7)
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        explain_divergence(model, model, moons, 0, split="nope")
