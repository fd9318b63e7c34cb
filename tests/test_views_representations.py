"""kdviz.views.representations: CKA grids, projections, concept maps and TCAV on the shipped sample models."""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.analysis import ConceptDynamics, ConceptQuantification, linear_cka
from kdviz.data.dataset import Dataset
from kdviz.models import extract_features
from kdviz.samples import install_samples
from kdviz.store import RunStore
from kdviz.views import representations as rv
from kdviz.workspace import Workspace

N = 60  # test samples per CKA / projection: enough for the checks, fast on 2 cores


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    store = RunStore(tmp_path_factory.mktemp("repr-home"))
    install_samples(store)
    return Workspace(store)


def roles(ws: Workspace, dataset: str) -> dict[str, str]:
    return ws.default_selection(dataset).roles


# --------------------------------------------------------------------------- subsample and alignment


def test_subsample_is_fixed_sorted_and_bounded() -> None:
    a = rv.subsample(100, 10)
    assert len(a) == 10 and len(set(a)) == 10
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 100
    np.testing.assert_array_equal(a, rv.subsample(100, 10))
    np.testing.assert_array_equal(rv.subsample(5, 10), np.arange(5))
    with pytest.raises(ValueError, match="positive"):
        rv.subsample(5, 0)
    with pytest.raises(ValueError, match="no samples"):
        rv.subsample(0, 3)


def test_align_points_undoes_a_reflection_by_hand() -> None:
    reference = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    mirrored = reference * np.array([-1.0, 1.0]) + 5.0  # x flipped, then shifted
    aligned = rv.align_points(reference, mirrored)
    # The centroid stays where `mirrored` had it; the shape is the reference's again.
    np.testing.assert_allclose(aligned - aligned.mean(0), reference - reference.mean(0), atol=1e-12)
    np.testing.assert_allclose(aligned.mean(0), mirrored.mean(0), atol=1e-12)
    with pytest.raises(ValueError, match="matching n×2"):
        rv.align_points(reference, mirrored[:2])


@settings(max_examples=30, deadline=None)
@given(
    angle=st.floats(0, 2 * np.pi),
    reflect=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_align_points_recovers_any_orthogonal_transform(angle: float, reflect: bool, seed: int) -> None:
    reference = np.random.default_rng(seed).normal(size=(12, 2))
    q = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if reflect:
        q = q @ np.diag([1.0, -1.0])
    moved = reference @ q
    aligned = rv.align_points(reference, moved)
    np.testing.assert_allclose(aligned - aligned.mean(0), reference - reference.mean(0), atol=1e-8)


# --------------------------------------------------------------------------- CKA


def test_cka_grid_matches_linear_cka_of_each_layer_pair(ws: Workspace) -> None:
    r = roles(ws, "moons")
    grid = rv.cka_grid(ws, r["teacher"], r["distilled"], n_samples=N)
    teacher_layers = ws.model(r["teacher"]).feature_layer_names
    student_layers = ws.model(r["distilled"]).feature_layer_names
    assert list(grid.index) == teacher_layers and list(grid.columns) == student_layers
    for t in teacher_layers:
        for s in student_layers:
            expected = linear_cka(
                rv.layer_features(ws, r["teacher"], t, n_samples=N),
                rv.layer_features(ws, r["distilled"], s, n_samples=N),
            )
            assert grid.loc[t, s] == pytest.approx(expected, abs=1e-9)
    assert rv.cka_grid(ws, r["teacher"], r["distilled"], n_samples=N) is grid  # cached


def test_cka_of_a_model_with_itself_is_one_on_the_diagonal(ws: Workspace) -> None:
    r = roles(ws, "moons")
    grid = rv.cka_grid(ws, r["teacher"], r["teacher"], n_samples=N)
    np.testing.assert_allclose(np.diag(grid.to_numpy()), 1.0, atol=1e-9)


def test_cka_over_training_ends_at_the_final_model(ws: Workspace) -> None:
    r = roles(ws, "moons")
    curves = rv.cka_over_training(ws, r["teacher"], {"distilled": r["distilled"], "scratch": r["scratch"]}, n_samples=N)
    assert set(curves) == {"distilled", "scratch"}
    epochs = ws.record(r["distilled"]).checkpoints
    assert [row["epoch"] for row in curves["distilled"]] == epochs
    final = rv.cka_grid(ws, r["teacher"], r["distilled"], n_samples=N)
    last_t, last_s = final.index[-1], final.columns[-1]
    assert curves["distilled"][-1]["CKA to the teacher"] == pytest.approx(final.loc[last_t, last_s], abs=1e-9)
    assert all(0 <= row["CKA to the teacher"] <= 1 + 1e-9 for row in curves["scratch"])


def test_cka_student_checkpoints_is_symmetric_with_unit_diagonal(ws: Workspace) -> None:
    r = roles(ws, "moons")
    frame = rv.cka_student_checkpoints(ws, r["distilled"], "body.hidden1", n_samples=N)
    assert list(frame.index) == [f"epoch {e}" for e in ws.record(r["distilled"]).checkpoints]
    np.testing.assert_allclose(frame.to_numpy(), frame.to_numpy().T, atol=1e-9)
    np.testing.assert_allclose(np.diag(frame.to_numpy()), 1.0, atol=1e-9)


def test_layer_features_rejects_unknown_layers(ws: Workspace) -> None:
    r = roles(ws, "moons")
    with pytest.raises(ValueError, match="feature layers: body.hidden1"):
        rv.layer_features(ws, r["distilled"], "body.hidden9", n_samples=N)


def test_common_layers_keeps_shared_names_in_order(ws: Workspace) -> None:
    r = roles(ws, "moons")
    assert rv.common_layers(ws, [r["teacher"], r["distilled"]]) == ["body.hidden1"]
    assert rv.common_layers(ws, [r["teacher"]]) == ["body.hidden1", "body.hidden2"]


# --------------------------------------------------------------------------- projections


def test_projection_frame_agrees_with_the_models_predictions(ws: Workspace) -> None:
    r = roles(ws, "moons")
    frame = rv.projection_frame(ws, r["teacher"], r["distilled"], n_samples=N)
    idx = rv.subsample(len(ws.labels(r["teacher"])), N)
    np.testing.assert_array_equal(frame["index"], idx)
    names = np.array(ws.dataset(r["teacher"]).class_names, dtype=object)
    teacher_pred = names[ws.probs(r["teacher"])[idx].argmax(1)]
    student_pred = names[ws.probs(r["distilled"])[idx].argmax(1)]
    np.testing.assert_array_equal(frame["teacher_pred"], teacher_pred)
    np.testing.assert_array_equal(frame["agree"], teacher_pred == student_pred)
    labels = ws.labels(r["teacher"])[idx]
    both_right = (teacher_pred == names[labels]) & (student_pred == names[labels])
    np.testing.assert_array_equal(frame["category"] == "both right", both_right)


def test_projection_is_the_pca_of_the_layer_features(ws: Workspace) -> None:
    r = roles(ws, "moons")
    points = rv.projection(ws, r["teacher"], "body.hidden2", n_samples=N)
    features = rv.layer_features(ws, r["teacher"], "body.hidden2", n_samples=N).astype(np.float64)
    centred = features - features.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    assert points.shape == (N, 2)
    # PCA components are defined up to sign.
    for j in range(2):
        assert np.allclose(points[:, j], expected[:, j], atol=1e-4) or np.allclose(
            points[:, j], -expected[:, j], atol=1e-4
        )


# --------------------------------------------------------------------------- concepts


def test_foreground_masks_per_dataset(ws: Workspace) -> None:
    shapes = ws.dataset(roles(ws, "shapes")["teacher"])
    masks, why = rv.foreground_masks(shapes)
    assert masks is not None and torch.equal(masks, shapes.masks("test").bool()) and "ground-truth" in why

    digits = ws.dataset(roles(ws, "digits")["teacher"])
    ink, why = rv.foreground_masks(digits)
    x, _ = digits.split("test")
    raw = x[:, 0] * digits.normalization["std"][0] + digits.normalization["mean"][0]
    assert torch.equal(ink, raw >= 8.0) and "ink" in why
    assert 0.1 < float(ink.float().mean()) < 0.7  # strokes, not the whole image nor nothing

    moons = ws.dataset(roles(ws, "moons")["teacher"])
    none, why = rv.foreground_masks(moons)
    assert none is None and "points" in why


def test_concept_grid_size_per_image_size(ws: Workspace) -> None:
    assert rv.concept_grid_size(ws.dataset(roles(ws, "shapes")["teacher"])) == 8
    assert rv.concept_grid_size(ws.dataset(roles(ws, "digits")["teacher"])) == 4
    x, y = torch.zeros(2, 1, 40), torch.tensor([0, 1])
    signals = Dataset("signals", x, y, x, y, x, y, class_names=["a", "b"], input_kind="signal")
    with pytest.raises(ValueError, match="image inputs"):
        rv.concept_grid_size(signals)


def test_concept_inputs_rejects_bad_requests(ws: Workspace) -> None:
    with pytest.raises(ValueError, match="points"):
        rv.concept_inputs(ws, roles(ws, "moons")["teacher"], [0])
    shapes = roles(ws, "shapes")["teacher"]
    with pytest.raises(ValueError, match="out of range 0..999"):
        rv.concept_inputs(ws, shapes, [0, 1000])
    with pytest.raises(ValueError, match="at least one image"):
        rv.concept_inputs(ws, shapes, [])


def test_concept_quantification_on_a_digit_is_cached(ws: Workspace) -> None:
    teacher = roles(ws, "digits")["teacher"]
    result = rv.concept_quantification(ws, teacher, "body.block2", [3])
    assert result.grid == (4, 4) and result.entropy_maps.shape == (1, 4, 4)
    assert result.n_foreground[0] + result.n_background[0] == result.concept_masks[0].sum()
    assert rv.concept_quantification(ws, teacher, "body.block2", [3]) is result


def _quantification(n_fg: list[int], n_bg: list[int], distortion: list[float]) -> ConceptQuantification:
    n = len(n_fg)
    total = np.array(n_fg) + np.array(n_bg)
    ratio = np.where(total > 0, np.array(n_fg) / np.maximum(total, 1), np.nan)
    empty = np.zeros((n, 2, 2))
    return ConceptQuantification(
        layer="l",
        grid=(2, 2),
        b=0.25,
        target_entropy=0.75,
        entropy_maps=empty,
        foreground_regions=empty.astype(bool),
        concept_masks=empty.astype(bool),
        background_entropy=np.zeros(n),
        n_foreground=np.array(n_fg),
        n_background=np.array(n_bg),
        ratio=ratio,
        mean_entropy=np.zeros(n),
        distortion=np.array(distortion),
        lagrange_multiplier=np.zeros(n),
        feature_variance=1.0,
    )


def test_concept_summary_by_hand() -> None:
    table = rv.concept_summary(
        {"teacher": _quantification([3, 1], [1, 1], [0.2, 0.4]), "student": _quantification([0], [0], [1.0])}
    )
    teacher = table.set_index("model").loc["teacher"]
    assert teacher["foreground concepts"] == 2.0 and teacher["background concepts"] == 1.0
    assert teacher["λ (foreground share)"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert teacher["distortion"] == pytest.approx(0.3)
    assert np.isnan(table.set_index("model").loc["student", "λ (foreground share)"])
    with pytest.raises(ValueError, match="empty"):
        rv.concept_summary({})


def test_dynamics_summary_by_hand() -> None:
    dynamics = ConceptDynamics(
        epochs=[1, 5],
        weight_distance=np.array([0.0, 0.5]),
        n_foreground=np.zeros((2, 2)),
        n_background=np.zeros((2, 2)),
        ratio=np.zeros((2, 2)),
        peak_epoch=[1, 5],
        peak_distance=np.array([0.0, 0.5]),
        d_mean=0.25,
        d_std=0.25,
        stability=np.array([1.0, 0.5]),
        rho=0.75,
        results=[],
    )
    row = rv.dynamics_summary({"distilled": dynamics}).iloc[0]
    assert row["model"] == "distilled" and row["D_mean"] == 0.25
    assert row["ρ (stability)"] == 0.75 and row["peak epochs"] == "1, 5"


# --------------------------------------------------------------------------- TCAV


def test_clutter_only_fills_the_shape_from_the_next_image_by_hand() -> None:
    x = torch.arange(3 * 1 * 1 * 2, dtype=torch.float32).reshape(3, 1, 1, 2)  # images [0,1], [2,3], [4,5]
    masks = torch.tensor([[[True, False]], [[True, False]], [[False, False]]])
    out = rv._clutter_only(x, masks)
    # image 0, pixel 0: image 1 covers it too, so it comes from image 2 (value 4); image 1 from image 2 (4).
    assert out[:, 0, 0].tolist() == [[4.0, 1.0], [4.0, 3.0], [4.0, 5.0]]


def test_tcav_concepts_on_shapes_hold_what_their_names_say(ws: Workspace) -> None:
    teacher = roles(ws, "shapes")["teacher"]
    concepts = rv.tcav_concepts(ws, teacher, per_concept=20)
    for name in ("shape only", "clutter only", "red shapes", "blue shapes", "class circle"):
        assert name in concepts, name
        assert concepts[name].examples.shape[1:] == (3, 32, 32)
    data = ws.dataset(teacher)
    mean = torch.tensor(data.normalization["mean"]).reshape(1, 3, 1, 1)
    std = torch.tensor(data.normalization["std"]).reshape(1, 3, 1, 1)
    # "shape only" images are black outside the shape: every pixel is either black or the shape's colour.
    raw = concepts["shape only"].examples * std + mean
    dark = raw.abs().amax(dim=1) < 1e-4
    assert dark.float().mean() > 0.5
    # "red shapes" are validation images whose clean view (shape on black) has a red brightest pixel.
    clean = data.privileged_val * std + mean
    flat = clean.reshape(len(clean), 3, -1)
    brightest = flat.gather(2, flat.sum(1).argmax(1)[:, None, None].expand(-1, 3, 1))[:, :, 0].clamp(0, 1)
    hues = np.array([colorsys.rgb_to_hsv(*c.tolist())[0] for c in brightest])
    red_rows = data.x_val[torch.as_tensor(np.minimum(hues, 1 - hues) < 1 / 12)]
    for example in concepts["red shapes"].examples:
        assert (red_rows - example).abs().amax(dim=(1, 2, 3)).min() == 0


def test_tcav_concepts_on_digits_and_points(ws: Workspace) -> None:
    digits = rv.tcav_concepts(ws, roles(ws, "digits")["teacher"], per_concept=30)
    assert {"bold strokes", "thin strokes", "class 0"} <= set(digits)
    data = ws.dataset(roles(ws, "digits")["teacher"])
    ink = lambda x: (x * data.normalization["std"][0] + data.normalization["mean"][0]).sum()  # noqa: E731
    assert min(ink(x) for x in digits["bold strokes"].examples) > max(ink(x) for x in digits["thin strokes"].examples)
    moons = ws.dataset(roles(ws, "moons")["teacher"])
    assert set(rv.tcav_concepts(ws, roles(ws, "moons")["teacher"])) == {f"class {c}" for c in moons.class_names}


def test_tcav_table_has_one_block_per_model(ws: Workspace) -> None:
    r = roles(ws, "moons")
    runs = {"teacher": r["teacher"], "distilled": r["distilled"]}
    layers = {"teacher": "body.hidden2", "distilled": "body.hidden1"}
    concepts = [f"class {c}" for c in ws.dataset(r["teacher"]).class_names]
    table = rv.tcav_table(ws, runs, layers, 1, concepts, n_inputs=40, n_random=60)
    assert list(table["model"]) == ["teacher", "teacher", "distilled", "distilled"]
    assert table["score"].between(0, 1).all() and list(table["concept"]) == concepts * 2
    assert (table["n_inputs"] == 40).all() and (table["target_class"] == 1).all()
    with pytest.raises(ValueError, match=f"available: {concepts[0]}, {concepts[1]}"):
        rv.tcav_table(ws, runs, layers, 1, ["red shapes"])
    with pytest.raises(ValueError, match="at least one concept"):
        rv.tcav_table(ws, runs, layers, 1, [])


def test_tcav_layer_skips_layers_the_logits_are_linear_in(ws: Workspace) -> None:
    moons = roles(ws, "moons")
    # mlp-8: logits = head(hidden1), so d(sum of logits)/d(hidden1) is the column sum of the head, for every input.
    head = ws.model(moons["distilled"]).head.weight.detach()
    gradient = rv._logit_gradients(ws, moons["distilled"], "body.hidden1")
    torch.testing.assert_close(gradient, head.sum(0).expand_as(gradient))
    assert rv.tcav_layer(ws, moons["distilled"]) == ("body.hidden1", False)
    assert rv.tcav_layer(ws, moons["teacher"]) == ("body.hidden1", True)  # hidden2 feeds the linear head
    # cnn: block3 is followed only by average pooling and the head, so block2 is the deepest usable layer.
    assert rv.tcav_layer(ws, roles(ws, "shapes")["teacher"]) == ("body.block2", True)


def test_cka_grid_with_a_privileged_teacher_uses_each_models_own_view(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = roles(ws, "shapes")
    private = Workspace(ws.store)  # own caches: the same run ids mean something else here
    real_record = private.record

    def record(run_id: str):
        found = real_record(run_id)
        if run_id != r["teacher"]:
            return found
        return dataclasses.replace(found, config={**found.config, "inputs": "privileged"})

    monkeypatch.setattr(private, "record", record)
    n = 40
    grid = rv.cka_grid(private, r["teacher"], r["distilled"], n_samples=n)
    idx = rv.subsample(1000, n)
    clean = private.dataset(r["teacher"]).privileged_test[torch.as_tensor(idx)]
    teacher_features = extract_features(private.model(r["teacher"]), clean, layers=["body.block2"])["body.block2"]
    student_features = rv.layer_features(private, r["distilled"], "body.pool", n_samples=n)
    expected = linear_cka(teacher_features, student_features)
    assert grid.loc["body.block2", "body.pool"] == pytest.approx(expected, abs=1e-9)
    assert grid.loc["body.block2", "body.pool"] != pytest.approx(
        rv.cka_grid(ws, r["teacher"], r["distilled"], n_samples=n).loc["body.block2", "body.pool"], abs=1e-6
    )
