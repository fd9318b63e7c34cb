"""Divergence inspector computations: the per-sample frame, filters, selection parsing, neighbours, drill-down."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdviz.analysis import DIVERGENCE_CATEGORIES
from kdviz.samples import SAMPLES_DIR, sample_roles
from kdviz.store import RunStore
from kdviz.views import divergence as dv
from kdviz.workspace import Workspace

TEACHER_P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], dtype=np.float32)
STUDENT_P = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]], dtype=np.float32)
LABELS = np.array([0, 1, 2])


class FakeWorkspace:
    """Just what `divergence_frame` reads: two runs of one dataset with fixed probabilities."""

    def __init__(self) -> None:
        self.builds = 0
        self._cache: dict = {}
        self._probs = {"t": TEACHER_P, "s": STUDENT_P}

    def record(self, run_id: str) -> SimpleNamespace:
        return SimpleNamespace(config={"dataset": {"name": "toy"}})

    def probs(self, run_id: str, split: str = "test") -> np.ndarray:
        return self._probs[run_id]

    def labels(self, run_id: str, split: str = "test") -> np.ndarray:
        return LABELS

    def dataset(self, run_id: str) -> SimpleNamespace:
        return SimpleNamespace(class_names=["cat", "dog", "eel"])

    def cached(self, key, make):
        if key not in self._cache:
            self.builds += 1
            self._cache[key] = make()
        return self._cache[key]


def kl(t: list[float], s: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(t, s))


def test_divergence_frame_by_hand() -> None:
    ws = FakeWorkspace()
    frame = dv.divergence_frame(ws, "t", "s")
    expected_kl = [kl(TEACHER_P[i].tolist(), STUDENT_P[i].tolist()) for i in range(3)]
    # sample 1 (0.394 nats) > sample 2 (0.083) > sample 0 (0.027)
    assert frame["index"].tolist() == [1, 2, 0]
    assert frame["kl"].to_numpy() == pytest.approx([expected_kl[1], expected_kl[2], expected_kl[0]], rel=1e-5)
    assert frame["kl"].iloc[0] == pytest.approx(0.393574, abs=1e-5)
    assert frame["label"].tolist() == [1, 2, 0]
    assert frame["teacher_true_prob"].to_numpy() == pytest.approx([0.8, 0.4, 0.7])
    assert frame["student_true_prob"].to_numpy() == pytest.approx([0.4, 0.3, 0.6])
    assert frame["category"].tolist() == ["teacher right only", "teacher right only", "both right"]
    assert frame["student_pred_name"].tolist() == ["cat", "dog", "cat"]
    assert frame["label_name"].tolist() == ["dog", "eel", "cat"]
    dv.divergence_frame(ws, "t", "s")
    assert ws.builds == 1  # cached by run ids


def test_divergence_frame_rejects_same_run() -> None:
    with pytest.raises(ValueError, match="same run"):
        dv.divergence_frame(FakeWorkspace(), "t", "t")


def test_filters_and_counts() -> None:
    frame = dv.divergence_frame(FakeWorkspace(), "t", "s")
    assert dv.filter_divergence(frame, categories=["both right"])["index"].tolist() == [0]
    assert dv.filter_divergence(frame, classes=[1, 2])["index"].tolist() == [1, 2]
    # student predicts "cat" (0) on samples 1 and 0
    assert dv.filter_divergence(frame, classes=[0], class_filter="student prediction")["index"].tolist() == [1, 0]
    both = dv.filter_divergence(frame, classes=[2], categories=["teacher right only"])
    assert both["index"].tolist() == [2]
    assert dv.filter_divergence(frame, classes=[], categories=None).empty
    counts = dv.category_counts(frame)
    assert counts["category"].tolist() == list(DIVERGENCE_CATEGORIES)
    assert counts["samples"].tolist() == [1, 2, 0, 0]
    assert counts["share"].to_numpy() == pytest.approx([1 / 3, 2 / 3, 0, 0])
    with pytest.raises(ValueError, match="valid: both right"):
        dv.filter_divergence(frame, categories=["half right"])
    with pytest.raises(ValueError, match="valid filters: true class"):
        dv.filter_divergence(frame, classes=[0], class_filter="label")


def test_table_view_and_default_sample() -> None:
    frame = dv.divergence_frame(FakeWorkspace(), "t", "s")
    view = dv.table_view(frame)
    assert view["sample"].tolist() == [1, 2, 0]
    assert "KL(teacher‖student)" in view.columns
    assert dv.default_sample(frame, 0) == 0
    assert dv.default_sample(frame, 7) == 1  # not a sample: the most divergent one
    assert dv.default_sample(frame, None) == 1
    assert dv.default_sample(frame.iloc[:0], 3) is None


def test_selected_indices() -> None:
    event = {"selection": {"points": [{"customdata": [5, 0.3]}, {"customdata": 2}, {"customdata": [5]}, {"x": 1}]}}
    assert dv.selected_indices(event) == [5, 2]
    assert dv.selected_indices(SimpleNamespace(selection=SimpleNamespace(points=[{"customdata": [7]}]))) == [7]
    assert dv.selected_indices({"selection": {"points": []}}) == []
    assert dv.selected_indices(None) == []


def test_student_choices_order() -> None:
    roles = {"self": "d", "teacher": "a", "distilled": "c", "scratch": "b", "extra": "e"}
    assert dv.student_choices(roles) == ["scratch", "distilled", "self", "extra"]


def test_cosine_neighbours_by_hand() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    positions, similarity = dv.cosine_neighbours(torch.tensor([2.0, 0.0]), bank, 3)
    assert positions.tolist() == [0, 2, 1]
    assert similarity == pytest.approx([1.0, 1 / math.sqrt(2), 0.0])
    tie_positions, _ = dv.cosine_neighbours(torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 0.0], [3.0, 0.0]]), 2)
    assert tie_positions.tolist() == [0, 1]  # ties keep bank order
    _, zero = dv.cosine_neighbours(torch.zeros(2), bank, 1)
    assert zero == pytest.approx([0.0])
    with pytest.raises(ValueError, match="k must be in 1..4"):
        dv.cosine_neighbours(torch.tensor([1.0, 0.0]), bank, 5)
    with pytest.raises(ValueError, match="D vector"):
        dv.cosine_neighbours(torch.ones(3), bank, 1)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, (6, 3), elements=st.floats(-5, 5)),
    arrays(np.float64, 3, elements=st.floats(-5, 5)),
    st.floats(0.1, 10),
)
def test_cosine_neighbours_properties(bank: np.ndarray, query: np.ndarray, scale: float) -> None:
    positions, similarity = dv.cosine_neighbours(torch.from_numpy(query), torch.from_numpy(bank), 6)
    assert sorted(positions.tolist()) == list(range(6))
    assert np.all(np.diff(similarity) <= 1e-12)
    assert np.all(np.abs(similarity) <= 1 + 1e-9)
    _, scaled = dv.cosine_neighbours(torch.from_numpy(query * scale), torch.from_numpy(bank), 6)
    assert scaled == pytest.approx(similarity, abs=1e-9)  # cosine ignores the query's length


# --------------------------------------------------------------------------- real sample models


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    store = RunStore(tmp_path_factory.mktemp("div-store"))
    for dataset in ("moons", "digits"):
        for role in ("teacher", "scratch", "distilled"):
            store.import_run((Path(SAMPLES_DIR) / dataset / f"{role}.kdrun").read_bytes())
    return Workspace(store)


def test_drill_down_on_moons(ws: Workspace) -> None:
    roles = sample_roles("moons")
    teacher, student = roles["teacher"], roles["distilled"]
    frame = dv.divergence_frame(ws, teacher, student)
    index = int(frame["index"].iloc[0])
    drill = dv.drill_down(ws, teacher, student, index, k_neighbours=4)
    assert drill.teacher_probs == pytest.approx(ws.probs(teacher)[index].astype(np.float64))
    assert drill.student_probs == pytest.approx(ws.probs(student)[index].astype(np.float64))
    assert drill.kl == pytest.approx(float(frame["kl"].iloc[0]))
    assert drill.teacher_attribution.shape == (2,)
    assert drill.grid is not None and drill.grid.teacher_class.shape == (80, 80)
    assert drill.grid.point == pytest.approx(ws.inputs(teacher)[0][index].numpy().astype(np.float64))
    # neighbours: recompute the cosine similarities by hand from the teacher's embeddings
    x_train, y_train = ws.inputs(teacher, "train")
    model = ws.model(teacher)
    with torch.no_grad():
        train_features = model.embed(x_train).double()
        query = model.embed(ws.inputs(teacher)[0][index : index + 1]).double()[0]
    cosine = (train_features @ query) / (train_features.norm(dim=1) * query.norm())
    best = torch.argsort(-cosine, stable=True)[:4].numpy()
    assert drill.neighbours["train_index"].tolist() == best.tolist()
    assert drill.neighbours["similarity"].to_numpy() == pytest.approx(cosine[best].numpy(), abs=1e-5)
    assert drill.neighbours["label"].tolist() == y_train[best].tolist()
    assert drill.neighbour_inputs == pytest.approx(x_train[best].numpy())
    assert drill.bank_size == drill.train_size == len(x_train)
    assert dv.attribution_choices(ws, teacher, student) == ["saliency", "input_x_gradient"]


def test_drill_down_on_digits_without_neighbours(ws: Workspace) -> None:
    roles = sample_roles("digits")
    teacher, student = roles["teacher"], roles["scratch"]
    assert "grad_cam" in dv.attribution_choices(ws, teacher, student)
    drill = dv.drill_down(ws, teacher, student, 3, method="grad_cam", neighbours=False)
    assert drill.grid is None and drill.neighbours.empty and drill.bank_size == 0
    assert drill.teacher_attribution.shape == (8, 8)  # Grad-CAM drops the channel axis
    assert drill.label == int(ws.labels(teacher)[3])
    with pytest.raises(ValueError, match=r"out of range: split 'test' has 269 samples \(0..268\)"):
        dv.drill_down(ws, teacher, student, 269)
    with pytest.raises(ValueError, match="different datasets"):
        dv.drill_down(ws, teacher, sample_roles("moons")["distilled"], 0)


# --------------------------------------------------------------------------- slices


@pytest.fixture(scope="module")
def shapes_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    store = RunStore(tmp_path_factory.mktemp("slice-store"))
    for role in ("teacher", "scratch", "distilled", "self"):
        store.import_run((Path(SAMPLES_DIR) / "shapes" / f"{role}.kdrun").read_bytes())
    return Workspace(store)


def test_slices_of_the_shipped_shapes_pair_match_direct_counts(shapes_ws: Workspace) -> None:
    ws, roles = shapes_ws, sample_roles("shapes")
    teacher, student = roles["teacher"], roles["distilled"]
    slices = dv.find_slices(ws, teacher, student)
    assert slices.source == "rules" and len(slices.table) >= 1
    disagree = ws.probs(teacher).argmax(1) != ws.probs(student).argmax(1)
    assert slices.base_rate == pytest.approx(disagree.mean())
    assert slices.base_rate == pytest.approx(1 - ws.record(student).summary["test_agreement"], abs=1e-6)
    for row, mask in zip(slices.table.itertuples(), slices.masks):
        assert row.size == mask.sum() and row.rate == pytest.approx(disagree[mask].mean())
        assert row.lift == pytest.approx(disagree[mask].mean() / disagree.mean())
        assert row.ci_low <= row.rate <= row.ci_high and row.z >= 3
    meta, _ = dv.slice_metadata(ws, teacher)
    assert "size" in meta and "clutter" in meta and len(meta) == len(disagree)
    assert dv.find_slices(ws, teacher, student) is slices  # cached by run ids and options

    students = {role: roles[role] for role in ("scratch", "distilled", "self")}
    comparison = dv.slice_comparison(ws, teacher, student, students)
    assert set(comparison["role"]) == set(students)
    for role, run_id in students.items():
        other = ws.probs(teacher).argmax(1) != ws.probs(run_id).argmax(1)
        rows = comparison[comparison["role"] == role].set_index("slice")
        assert rows.loc["all", "rate"] == pytest.approx(other.mean())
        for name, mask in zip(slices.table["slice"], slices.masks):
            assert rows.loc[name, "rate"] == pytest.approx(other[mask].mean())
    errors = dv.slice_comparison(ws, teacher, student, students, target="student_error")
    teacher_rows = errors[errors["role"] == "teacher"].set_index("slice")
    assert teacher_rows.loc["all", "rate"] == pytest.approx(1 - ws.record(teacher).summary["test_accuracy"], abs=1e-6)

    epochs = dv.slice_checkpoints(ws, teacher, student)
    assert sorted(set(epochs["epoch"])) == ws.record(student).checkpoints
    last = epochs[epochs["epoch"] == max(epochs["epoch"])].set_index("slice")
    assert last.loc["all", "rate"] == pytest.approx(slices.base_rate)
    view = dv.slice_table_view(slices)
    assert view["where"].tolist() == slices.table["rule"].tolist()


def test_slices_without_metadata_fall_back_to_feature_clusters(ws: Workspace) -> None:
    roles = sample_roles("digits")
    teacher, student = roles["teacher"], roles["scratch"]
    assert dv.slice_metadata(ws, teacher)[0] is None
    assert dv.slice_sources(ws, teacher) == ["teacher feature clusters", "student feature clusters"]
    slices = dv.find_slices(ws, teacher, student, target="student_error")
    assert slices.source == "clusters" and slices.table["slice"].str.startswith("C").all()
    wrong = ws.probs(student).argmax(1) != ws.labels(student)
    for row, mask in zip(slices.table.itertuples(), slices.masks):
        assert row.rate == pytest.approx(wrong[mask].mean()) and row.rate > wrong.mean()
        assert all(mask[i] for i in row.examples)
    with pytest.raises(ValueError, match="no per-sample metadata"):
        dv.find_slices(ws, teacher, student, source="rules")
    with pytest.raises(ValueError, match="unknown slice target"):
        dv.find_slices(ws, teacher, student, target="loss")


def test_points_data_gets_rules_over_its_features_in_original_units(ws: Workspace) -> None:
    roles = sample_roles("moons")
    meta, columns = dv.slice_metadata(ws, roles["teacher"])
    data = ws.dataset(roles["teacher"])
    x = data.x_test.double().numpy() * np.array(data.normalization["std"]) + np.array(data.normalization["mean"])
    assert list(meta.columns) == ["class", "x1", "x2"] and columns["class"] == ("class", "")
    assert meta[["x1", "x2"]].to_numpy() == pytest.approx(x)
    slices = dv.find_slices(ws, roles["teacher"], roles["scratch"])
    assert slices.source == "rules"
