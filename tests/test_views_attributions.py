"""kdviz.views.attributions: sample choice, maps, agreement and localisation, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdviz.analysis import attribute
from kdviz.samples import install_samples
from kdviz.store import RunStore
from kdviz.views import attributions as av
from kdviz.workspace import Workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    store = RunStore(tmp_path_factory.mktemp("attr-home"))
    install_samples(store)
    return Workspace(store)


def roles(ws: Workspace, dataset: str) -> dict[str, str]:
    return ws.default_selection(dataset).roles


class FakeWorkspace:
    """Only what `pick_samples` reads: labels and test probabilities per run."""

    def __init__(self, probs: dict[str, np.ndarray]) -> None:
        self._probs = probs

    def labels(self, run_id: str) -> np.ndarray:
        return np.zeros(len(self._probs[run_id]), dtype=np.int64)

    def probs(self, run_id: str) -> np.ndarray:
        return self._probs[run_id]


def test_pick_samples_by_index_and_where_they_disagree_by_hand() -> None:
    teacher = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5], [0.7, 0.3]])
    student = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.5, 0.5], [0.1, 0.9]])
    fake = FakeWorkspace({"t": teacher, "s": student})
    np.testing.assert_array_equal(av.pick_samples(fake, "t", ["s"], 3, "by index", start=3), [3, 4])
    # Disagreements: samples 1 and 4 (teacher argmax 0, student 1). KL(t‖s) of 4 is larger than of 1.
    kl = (teacher * np.log(teacher / student)).sum(1)
    assert kl[4] > kl[1] and kl[2] > kl[0] == kl[3] == 0
    # Then the agreeing samples by KL: 2, then 0 and 3 (KL 0) in index order.
    np.testing.assert_array_equal(av.pick_samples(fake, "t", ["s"], 5, "where they disagree"), [4, 1, 2, 0, 3])
    with pytest.raises(ValueError, match="valid choices: by index, where they disagree"):
        av.pick_samples(fake, "t", ["s"], 3, "random")
    with pytest.raises(ValueError, match="out of range 0..4"):
        av.pick_samples(fake, "t", ["s"], 3, "by index", start=5)
    with pytest.raises(ValueError, match="at least one student"):
        av.pick_samples(fake, "t", [], 3, "where they disagree")


def test_display_maps_sums_channels_of_images_and_signals_only() -> None:
    image = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(av.display_maps(image, "image"), image[:, 0] + image[:, 1] + image[:, 2])
    signal = np.array([[[1.0, -2.0, 3.0], [1.0, 1.0, 1.0]]])
    np.testing.assert_array_equal(av.display_maps(signal, "signal"), [[2.0, -1.0, 4.0]])
    gradcam = np.ones((2, 4, 4))
    np.testing.assert_array_equal(av.display_maps(gradcam, "image"), gradcam)
    tabular = np.array([[0.5, -0.5]])
    np.testing.assert_array_equal(av.display_maps(tabular, "points"), tabular)


def test_method_options_and_default(ws: Workspace) -> None:
    moons = list(roles(ws, "moons").values())
    options = av.method_options(ws, moons)
    assert "grad_cam" not in options and "saliency" in options
    assert av.default_method(options) == "saliency"
    shapes = av.method_options(ws, list(roles(ws, "shapes").values()))
    assert av.default_method(shapes) == "grad_cam"
    assert av.signed_method("input_x_gradient") and not av.signed_method("saliency")
    with pytest.raises(ValueError, match="valid methods"):
        av.signed_method("lime")


def test_raw_attributions_explain_the_label_or_the_prediction(ws: Workspace) -> None:
    teacher = roles(ws, "moons")["teacher"]
    x, y = ws.inputs(teacher)
    rows = [0, 5, 7]
    by_label = av.raw_attributions(ws, teacher, "input_x_gradient", rows)
    expected = attribute(ws.model(teacher), x[rows], y[rows], "input_x_gradient").numpy()
    np.testing.assert_allclose(by_label, expected, atol=1e-6)
    predicted = ws.logits(teacher)[rows].argmax(1)
    by_prediction = av.raw_attributions(ws, teacher, "input_x_gradient", rows, target="prediction")
    expected = attribute(ws.model(teacher), x[rows], torch.as_tensor(predicted), "input_x_gradient").numpy()
    np.testing.assert_allclose(by_prediction, expected, atol=1e-6)
    assert av.raw_attributions(ws, teacher, "input_x_gradient", rows) is by_label  # cached
    with pytest.raises(ValueError, match="valid targets: label, prediction"):
        av.raw_attributions(ws, teacher, "saliency", rows, target="teacher")
    with pytest.raises(ValueError, match="out of range"):
        av.raw_attributions(ws, teacher, "saliency", [10**6])
    with pytest.raises(ValueError, match="at least one sample"):
        av.raw_attributions(ws, teacher, "saliency", [])


def test_agreement_of_a_model_with_itself_is_perfect(ws: Workspace) -> None:
    teacher = roles(ws, "moons")["teacher"]
    frame = av.agreement_scores(ws, teacher, teacher, "saliency", n_samples=30)
    assert len(frame) == 30 and frame["index"].is_monotonic_increasing
    np.testing.assert_allclose(frame["cosine"].dropna(), 1.0, atol=1e-9)
    np.testing.assert_allclose(frame["spearman"].dropna(), 1.0, atol=1e-9)


def test_agreement_matches_a_hand_cosine(ws: Workspace) -> None:
    r = roles(ws, "moons")
    frame = av.agreement_scores(ws, r["teacher"], r["distilled"], "saliency", n_samples=20)
    rows = frame["index"].tolist()
    a = np.abs(av.raw_attributions(ws, r["teacher"], "saliency", rows)).astype(np.float64)
    b = np.abs(av.raw_attributions(ws, r["distilled"], "saliency", rows)).astype(np.float64)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(frame["cosine"], cosine, atol=1e-9)


def test_localization_table_by_hand_on_shapes(ws: Workspace) -> None:
    teacher = roles(ws, "shapes")["teacher"]
    table = av.localization_table(ws, {"Teacher": teacher}, "saliency", n_samples=8)
    row = table.iloc[0]
    assert row["model"] == "Teacher" and row["run"] == teacher and row["n_samples"] == 8
    rows = list(av._subsample(1000, 8))
    relevance = np.maximum(av.raw_attributions(ws, teacher, "saliency", rows).sum(1), 0)
    masks = ws.dataset(teacher).masks("test")[rows].numpy()
    mass = [(r * m).sum() / r.sum() for r, m in zip(relevance, masks)]
    hits = [m.ravel()[r.argmax()] for r, m in zip(relevance, masks)]
    assert row["relevance_mass"] == pytest.approx(np.mean(mass))
    assert row["pointing_game"] == pytest.approx(np.mean(hits))
    assert av.mask_share(ws, teacher, n_samples=8) == pytest.approx(masks.mean())


def test_localization_needs_masks(ws: Workspace) -> None:
    with pytest.raises(ValueError, match="no ground-truth masks"):
        av.localization_table(ws, {"teacher": roles(ws, "moons")["teacher"]}, "saliency")
    with pytest.raises(ValueError, match="no ground-truth masks"):
        av.mask_share(ws, roles(ws, "moons")["teacher"])


def test_predicted_classes_match_the_cached_logits(ws: Workspace) -> None:
    teacher = roles(ws, "moons")["teacher"]
    rows = [3, 1, 4, 1, 5]
    np.testing.assert_array_equal(av.predicted_classes(ws, teacher, rows), ws.logits(teacher)[rows].argmax(1))
