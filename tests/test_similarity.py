"""CKA (linear, debiased, layer × layer, across checkpoints) and 2-D feature projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

from kdviz.analysis import cka_across_checkpoints, cka_matrix, debiased_cka, linear_cka, project_features
from kdviz.models import build_model, extract_features


def _correlated(n, d1=6, d2=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d1))
    y = x[:, :d2] @ rng.normal(size=(d2, d2)) + 0.5 * rng.normal(size=(n, d2))
    return x, y


def _song_hsic(x, y):
    """Unbiased HSIC written straight from Song et al. (2012), on uncentred features."""
    n = x.shape[0]
    k, l_ = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l_, 0)
    one = np.ones(n)
    return (
        np.trace(k @ l_) + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ l_ @ one
    ) / (n * (n - 3))


def test_linear_cka_hand_value_one_dimensional():
    # For 1-D features linear CKA is the squared Pearson correlation:
    # xc = [-1, 0, 1], yc = [-2, -1, 3]: (xc·yc)^2 / (|xc|^2 |yc|^2) = 5^2 / (2 * 14) = 25 / 28
    assert linear_cka([[0.0], [1.0], [2.0]], [[0.0], [1.0], [5.0]]) == pytest.approx(25 / 28, abs=1e-12)


def test_cka_of_x_with_itself_is_one_and_symmetric():
    x, y = _correlated(50)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert debiased_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), abs=1e-12)
    assert debiased_cka(x, y) == pytest.approx(debiased_cka(y, x), abs=1e-12)
    assert 0.0 < linear_cka(x, y) < 1.0


@settings(max_examples=25, deadline=None)
@given(st.integers(5, 40), st.integers(1, 8), st.floats(0.01, 100.0), st.integers(0, 10_000))
def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling(n, d, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=(d, 3)) + rng.normal(size=(n, 3))
    q = ortho_group.rvs(d, random_state=seed) if d > 1 else np.array([[-1.0]])
    base = linear_cka(x, y)
    assert linear_cka(scale * x @ q, y) == pytest.approx(base, abs=1e-9)
    assert linear_cka(x, y / scale) == pytest.approx(base, abs=1e-9)
    assert 0.0 <= base <= 1.0 + 1e-12
    debiased = debiased_cka(x, y)
    assert debiased_cka(scale * x @ q, y) == pytest.approx(debiased, abs=1e-9)


def test_debiased_matches_song_formula_and_feature_and_gram_routes_agree():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 5)) + 3.0  # not centred: the estimator is translation invariant
    y = x[:, :2] @ rng.normal(size=(2, 40)) + rng.normal(size=(12, 40))  # 40 dims > 12 samples: Gram route
    expected = _song_hsic(x, y) / np.sqrt(_song_hsic(x, x) * _song_hsic(y, y))
    assert debiased_cka(x, y) == pytest.approx(expected, abs=1e-10)
    # linear CKA via the Gram matrices of centred features, computed independently
    h = np.eye(12) - 1 / 12
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    assert linear_cka(x, y) == pytest.approx(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)), abs=1e-10)


def test_debiased_close_to_linear_for_large_n_and_smaller_for_small_n():
    x, y = _correlated(20_000, seed=2)
    assert debiased_cka(x, y) == pytest.approx(linear_cka(x, y), abs=5e-3)
    # independent wide features, few samples: linear CKA is biased up, debiased stays near 0
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 200)), rng.normal(size=(30, 200))
    assert linear_cka(a, b) > 0.5
    assert abs(debiased_cka(a, b)) < 0.1


def test_torch_float32_input_matches_numpy():
    x, y = _correlated(64)
    assert linear_cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y)) == pytest.approx(
        linear_cka(x, y), abs=1e-6
    )
    assert linear_cka(torch.tensor(x).reshape(64, 2, 3), y) == pytest.approx(linear_cka(x, y))  # trailing dims flatten


@pytest.mark.parametrize(
    ("x", "y", "function", "message"),
    [
        (np.ones((5, 2)), np.ones((4, 2)), linear_cka, "length mismatch: X=5, Y=4"),
        (np.full((5, 2), np.nan), np.ones((5, 2)), linear_cka, "X contains NaN"),
        (np.ones((5, 2)), np.arange(10.0).reshape(5, 2), linear_cka, "X has zero variance"),
        (np.zeros((0, 2)), np.zeros((0, 2)), linear_cka, "X is empty"),
        (np.arange(5.0), np.arange(5.0), linear_cka, "X must be 2-D"),
        (np.eye(3), np.eye(3), debiased_cka, "have 3 samples; need at least 4"),
    ],
)
def test_bad_inputs(x, y, function, message):
    with pytest.raises(ValueError, match=message):
        function(x, y)


# --------------------------------------------------------------------------- models


def _pair():
    teacher = build_model("mlp-32x2", input_shape=(4,), num_classes=3, seed=0)
    student = build_model("mlp-16", input_shape=(4,), num_classes=3, seed=1)
    return teacher, student, torch.randn(40, 4, generator=torch.Generator().manual_seed(0))


def test_cka_matrix_layers_and_values():
    teacher, student, x = _pair()
    frame = cka_matrix(teacher, student, x)
    assert frame.shape == (2, 1)
    assert frame.index.tolist() == teacher.feature_layer_names
    assert frame.columns.tolist() == student.feature_layer_names
    feats_t, feats_s = extract_features(teacher, x), extract_features(student, x)
    expected = linear_cka(feats_t[teacher.feature_layer_names[1]], feats_s[student.feature_layer_names[0]])
    assert frame.iloc[1, 0] == pytest.approx(expected, abs=1e-12)


def test_cka_matrix_of_a_model_with_itself_has_unit_diagonal():
    teacher, _, x = _pair()
    frame = cka_matrix(teacher, teacher, x)
    np.testing.assert_allclose(np.diag(frame.to_numpy()), 1.0)
    np.testing.assert_allclose(frame.to_numpy(), frame.to_numpy().T)
    sub = cka_matrix(teacher, teacher, x.numpy(), layers_a=["body.hidden2"], layers_b=["body.hidden1"], debiased=True)
    assert sub.shape == (1, 1) and sub.index.tolist() == ["body.hidden2"]


def test_cka_across_checkpoints():
    teacher, student, x = _pair()
    first = build_model("mlp-16", input_shape=(4,), num_classes=3, seed=1)  # same weights as `student`
    frame = cka_across_checkpoints([student, first], x, layer=student.feature_layer_names[0])
    np.testing.assert_allclose(frame.to_numpy(), 1.0, atol=1e-12)
    other = build_model("mlp-16", input_shape=(4,), num_classes=3, seed=7)
    checkpoints = {"epoch 1": student.state_dict(), "epoch 2": other.state_dict()}
    frame = cka_across_checkpoints(
        checkpoints, x, "body.hidden1", build_fn=lambda: build_model("mlp-16", input_shape=(4,), num_classes=3)
    )
    assert frame.index.tolist() == ["epoch 1", "epoch 2"] and frame.columns.tolist() == ["epoch 1", "epoch 2"]
    assert frame.iloc[0, 0] == pytest.approx(1.0) and frame.iloc[0, 1] < 1.0
    with pytest.raises(
        ValueError, match="checkpoint 'epoch 1' is not an nn.Module \\(got OrderedDict\\); pass build_fn"
    ):
        cka_across_checkpoints(checkpoints, x, "body.hidden1")
    with pytest.raises(ValueError, match="checkpoints is empty"):
        cka_across_checkpoints([], x, "body.hidden1")


def test_cka_matrix_bad_inputs():
    teacher, student, x = _pair()
    with pytest.raises(ValueError, match="inputs has 1 samples; need at least 2"):
        cka_matrix(teacher, student, x[:1])
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        cka_matrix(teacher, student, x, layers_a=["nope"])


# --------------------------------------------------------------------------- projections


def test_pca_projection_shape_determinism_and_variance():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 10)) * np.array([10, 5] + [0.1] * 8)
    out = project_features(features)
    assert out.shape == (60, 2) and out.dtype == np.float64
    np.testing.assert_array_equal(out, project_features(features))
    # the two kept components carry the two high-variance directions
    assert np.var(out[:, 0]) > np.var(out[:, 1]) > 10
    assert project_features(torch.tensor(features).reshape(60, 2, 5)).shape == (60, 2)
    assert project_features(np.arange(5.0).reshape(5, 1)).shape == (5, 2)  # 1-D features padded


def test_tsne_projection_small_n_is_seeded():
    features = np.random.default_rng(1).normal(size=(12, 5))
    out = project_features(features, method="tsne", seed=3, max_iter=250)
    assert out.shape == (12, 2)
    np.testing.assert_allclose(out, project_features(features, method="tsne", seed=3, max_iter=250))


def test_projection_errors():
    with pytest.raises(ValueError, match="unknown projection method 'umap'; valid methods: pca, tsne"):
        project_features(np.ones((5, 2)), method="umap")
    with pytest.raises(ValueError, match="t-SNE needs at least 4 samples"):
        project_features(np.ones((3, 2)), method="tsne")
    with pytest.raises(ValueError, match="features contains NaN"):
        project_features(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="features is empty"):
        project_features(np.zeros((0, 2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_cpu_numbers():
    x, y = _correlated(200)
    cx, cy = torch.tensor(x, device="cuda", dtype=torch.float32), torch.tensor(y, device="cuda")
    assert linear_cka(cx, cy) == pytest.approx(linear_cka(x, y), abs=1e-6)
    assert debiased_cka(cx, cy) == pytest.approx(debiased_cka(x, y), abs=1e-6)
    teacher, student, inputs = _pair()
    on_cpu = cka_matrix(teacher, student, inputs)
    on_gpu = cka_matrix(teacher.cuda(), student.cuda(), inputs.cuda())
    np.testing.assert_allclose(on_gpu.to_numpy(), on_cpu.to_numpy(), atol=1e-5)
    assert project_features(cx).shape == (200, 2)


def test_cka_matrix_constant_layer_is_nan_not_an_error():
    teacher, student, x = _pair()
    with torch.no_grad():  # a dead layer: constant output for every input
        student.body.hidden1[0].weight.zero_()
    frame = cka_matrix(teacher, student, x)
    assert frame.shape == (2, 1) and frame.isna().all().all()
    assert cka_matrix(teacher, teacher, x).notna().all().all()
    with pytest.raises(ValueError, match="has zero variance"):
        linear_cka(extract_features(student, x)["body.hidden1"], x)


def test_cka_models_bad_inputs_and_float64_inputs():
    teacher, student, x = _pair()
    with pytest.raises(ValueError, match="inputs contains NaN or infinite values"):
        cka_matrix(teacher, student, torch.full((5, 4), float("nan")))
    with pytest.raises(ValueError, match="inputs is empty"):
        cka_matrix(teacher, student, torch.zeros(0, 4))
    with pytest.raises(ValueError, match="inputs contains NaN"):
        cka_across_checkpoints([student], np.full((5, 4), np.nan), "body.hidden1")
    with pytest.raises(ValueError, match="inputs has 3 samples; need at least 4"):
        cka_matrix(teacher, student, x[:3], debiased=True)
    # float64 arrays and tensors run on float32 models and give the float32 numbers
    expected = cka_matrix(teacher, student, x)
    np.testing.assert_allclose(cka_matrix(teacher, student, x.double()).to_numpy(), expected.to_numpy(), atol=1e-12)
    np.testing.assert_allclose(
        cka_matrix(teacher, student, x.double().numpy()).to_numpy(), expected.to_numpy(), atol=1e-12
    )


def test_debiased_cka_bad_inputs():
    with pytest.raises(ValueError, match="length mismatch: X=6, Y=5"):
        debiased_cka(np.random.default_rng(0).normal(size=(6, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="Y contains NaN"):
        debiased_cka(np.eye(5), np.full((5, 2), np.nan))
