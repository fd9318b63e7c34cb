"""explain_divergence on tiny 2-D points and tiny images: probabilities, KL, neighbours, attributions, grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdviz.analysis import attribute, list_attribution_methods
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


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n_train=200, n_val=60, n_test=60, seed=0)


def test_images_get_grad_cam_maps_and_no_grid(shapes):
    teacher = build_model("cnn-s", shapes, seed=0)
    student = build_model("cnn-s", shapes, seed=1)
    result = explain_divergence(teacher, student, shapes, 2, attribution="grad_cam", target="label", k_neighbours=2)
    assert result.teacher_attribution.shape == (32, 32) and result.decision_grid is None
    assert result.teacher_target == result.student_target == result.label
    assert (result.teacher_attribution >= 0).all()


@pytest.mark.parametrize("method", list_attribution_methods())
def test_every_attribution_method_on_shapes_with_cnn_pair(shapes, method):
    teacher = build_model("cnn-m", shapes, seed=0)
    student = build_model("cnn-s", shapes, seed=1)
    result = explain_divergence(teacher, student, shapes, 7, attribution=method, k_neighbours=3)
    expected = (32, 32) if method == "grad_cam" else (3, 32, 32)
    assert result.teacher_attribution.shape == result.student_attribution.shape == expected
    assert np.isfinite(result.teacher_attribution).all() and np.isfinite(result.student_attribution).all()
    direct = attribute(student, shapes.x_test[7:8], result.student_prediction, method)[0].numpy()
    np.testing.assert_allclose(result.student_attribution, direct, rtol=1e-5, atol=1e-6)
    assert len(result.teacher_neighbours) == 3 and result.teacher_neighbours["train_index"].max() < 200


def test_boundary_distance_of_a_known_linear_boundary(moons):
    # Logit 0 minus logit 1 = 2·x: the boundary is the line x = 0, so the distance is |x|.
    model = build_model("linear", moons, seed=0)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        model.head.bias.zero_()
    for index in (0, 4, 9):
        result = explain_divergence(model, model, moons, index, grid_size=81)
        grid = result.decision_grid
        step = float(np.hypot(grid.x[1] - grid.x[0], grid.y[1] - grid.y[0]))
        expected = abs(float(moons.x_test[index, 0]))
        assert abs(grid.teacher_boundary_distance - expected) <= step
        assert grid.student_boundary_distance == grid.teacher_boundary_distance
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([100.0, -100.0]))  # class 0 everywhere: no boundary on the grid
    assert np.isnan(explain_divergence(model, model, moons, 0, grid_size=5).decision_grid.teacher_boundary_distance)


def test_mlp8_pair_on_default_moons_gets_a_decision_grid():
    moons = load_dataset("moons")
    teacher, student = build_model("mlp-8", moons, seed=0), build_model("mlp-8", moons, seed=1)
    result = explain_divergence(teacher, student, moons, 0, attribution="integrated_gradients")
    grid = result.decision_grid
    assert grid.teacher_probs.shape == (100, 100, 2) and grid.point.shape == (2,)
    assert result.teacher_attribution.shape == (2,)
    assert (grid.teacher_class != grid.student_class).any()  # two different random nets disagree somewhere


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
    with pytest.raises(ValueError, match="dataset must be a kdviz Dataset .* got dict"):
        explain_divergence(model, model, {"x": 1}, 0)
    with pytest.raises(ValueError, match="grid_size must be at least 2, got 1"):
        explain_divergence(model, model, moons, 0, grid_size=1)
    with pytest.raises(ValueError, match="grad_cam needs a convolutional layer but model MLP has none"):
        explain_divergence(model, model, moons, 0, attribution="grad_cam")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_models_and_data_on_different_devices(shapes):
    from kdviz.analysis import quantify_concepts, tcav_scores

    teacher, student = build_model("cnn-s", shapes, seed=0), build_model("cnn-s", shapes, seed=1)
    on_cpu = explain_divergence(teacher, student, shapes, 4, attribution="integrated_gradients")
    data_on_gpu = explain_divergence(teacher, student, shapes.to("cuda"), 4, attribution="integrated_gradients")
    models_on_gpu = explain_divergence(teacher.cuda(), student.cuda(), shapes, 4, attribution="integrated_gradients")
    for result in (data_on_gpu, models_on_gpu):
        np.testing.assert_allclose(result.teacher_probs, on_cpu.teacher_probs, atol=1e-5)
        np.testing.assert_allclose(result.student_attribution, on_cpu.student_attribution, atol=1e-4)
        assert result.teacher_neighbours["train_index"].tolist() == on_cpu.teacher_neighbours["train_index"].tolist()
    images, masks = shapes.x_test[:2], shapes.masks_test[:2]
    concepts = quantify_concepts(student, images.cuda(), masks.cuda(), "block2", steps=5)
    assert concepts.entropy_maps.shape == (2, 8, 8)
    table = tcav_scores(student, "block2", images[:6].cuda(), shapes.x_train[:30], 0)
    assert table.loc[0, "n_inputs"] == 30
