"""Counterfactuals: factor sweeps equal a direct evaluation of the models on re-rendered images, an edit to a
sample's recorded value changes nothing, and the nearest counterfactual on a hand-made 2-D example."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from kdviz.analysis import factor_sweep, normalise_images
from kdviz.analysis.attributions import attribute
from kdviz.analysis.counterfactual import first_divergence, nearest_counterfactual
from kdviz.data.cache import get_dataset
from kdviz.data.shapes import EDITABLE_FACTORS, load_shapes, render_counterfactual
from kdviz.views import counterfactual as cfv

SPEC = {"name": "shapes", "n_train": 16, "n_val": 16, "n_test": 32, "seed": 0}


def test_a_sweep_equals_direct_model_evaluation() -> None:
    ds = load_shapes(**{k: v for k, v in SPEC.items() if k != "name"})
    torch.manual_seed(0)
    models = {
        "teacher": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8)).eval(),
        "student": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8)).eval(),
    }
    label = int(ds.y_test[5])
    values = [6.0, 8.0, 10.0]
    sweep = factor_sweep(models, SPEC, ds.normalization, "test", 5, "size", values, label)
    assert len(sweep) == 6 and sweep["value"].tolist() == values * 2
    for name, model in models.items():
        for value in values:
            image = render_counterfactual(SPEC, "test", 5, size=value).images
            with torch.no_grad():
                p = torch.softmax(model(normalise_images(image, ds.normalization)), dim=1)[0].numpy()
            row = sweep[(sweep["model"] == name) & (sweep["value"] == value)].iloc[0]
            assert row["p_true"] == pytest.approx(float(p[label]), abs=1e-6)
            assert row["prediction"] == int(np.argmax(p))
    # the unchanged image normalises to exactly the dataset's input
    same = normalise_images(render_counterfactual(SPEC, "test", 5).images, ds.normalization)
    assert torch.equal(same[0], ds.x_test[5])


# --------------------------------------------------------------------------- pure helpers


def test_first_divergence_is_the_first_value_past_the_gap() -> None:
    sweep = pd.DataFrame(
        {
            "value": [1.0, 2.0, 3.0] * 3,
            "model": ["teacher"] * 3 + ["a"] * 3 + ["b"] * 3,
            "p_true": [0.9, 0.8, 0.7, 0.85, 0.55, 0.1, 0.9, 0.75, 0.6],
        }
    )
    # a: |0.85-0.9|=0.05, |0.55-0.8|=0.25 > 0.2 -> leaves at 2; b stays within 0.1
    assert first_divergence(sweep, "teacher", 0.2) == {"a": [2.0], "b": []}
    assert first_divergence(sweep, "teacher", 0.04) == {"a": [1.0], "b": [2.0]}
    # from the sample's own value outward, gap 0.04: a is apart at 1, 2, 3 and b at 2, 3; from 2.5 the nearest
    # apart values are 2 (below) and 3 (above)
    assert first_divergence(sweep, "teacher", 0.04, start=2.5) == {"a": [2.0, 3.0], "b": [2.0, 3.0]}
    assert first_divergence(sweep, "teacher", 0.2, start=1.0) == {"a": [2.0], "b": []}
    assert first_divergence(sweep, "teacher", 0.2, start=3.0) == {"a": [3.0], "b": []}
    with pytest.raises(ValueError, match="no model 'nobody'"):
        first_divergence(sweep, "nobody")


def test_nearest_counterfactual_on_a_hand_made_2d_example() -> None:
    candidates = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
    predictions = {"teacher": np.array([0, 0, 1, 1]), "student": np.array([0, 1, 0, 1])}
    point = np.array([0.2, 0.0])
    # row 0 is predicted like the point by both; row 1 (student differs) is 0.8 away, row 2 (teacher) 3.007
    row, distance = nearest_counterfactual(candidates, point, predictions, {"teacher": 0, "student": 0})
    assert row == 1 and distance == pytest.approx(0.8)
    # in standardised units (x / 0.1, y / 10) row 2 is nearer: sqrt(2² + 0.3²)
    row, distance = nearest_counterfactual(
        candidates, point, predictions, {"teacher": 0, "student": 0}, scale=np.array([0.1, 10.0])
    )
    assert row == 2 and distance == pytest.approx(np.sqrt(4.0 + 0.09))
    # only the teacher counts: row 1 is predicted like the point, so row 2
    assert nearest_counterfactual(candidates, point, predictions, {"teacher": 0})[0] == 2
    # nothing differs
    same = {"teacher": np.zeros(4, int), "student": np.zeros(4, int)}
    assert nearest_counterfactual(candidates, point, same, {"teacher": 0, "student": 0}) is None
    with pytest.raises(ValueError, match="N×D"):
        nearest_counterfactual(candidates, np.zeros(3), predictions, {"teacher": 0})
    with pytest.raises(ValueError, match="positive"):
        nearest_counterfactual(candidates, point, predictions, {"teacher": 0}, scale=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="no candidate predictions for scratch"):
        nearest_counterfactual(candidates, point, predictions, {"scratch": 0})


# --------------------------------------------------------------------------- views, on a tiny shapes set


class TinyCam(torch.nn.Module):
    """A conv layer, pooling and a linear head: enough for Grad-CAM."""

    last_conv_layer = "conv"

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class TinyWorkspace:
    """What the counterfactual views read from a `Workspace`: two runs on a tiny `shapes` spec."""

    def __init__(self, spec: dict, inputs: dict[str, str]) -> None:
        self.spec, self.inputs_of = spec, inputs
        self.models = {run_id: TinyCam(seed).eval() for seed, run_id in enumerate(inputs)}
        self.builds = 0
        self._cache: dict = {}

    def record(self, run_id: str) -> SimpleNamespace:
        return SimpleNamespace(config={"dataset": self.spec, "inputs": self.inputs_of[run_id]})

    def dataset(self, run_id: str):
        return get_dataset(self.spec)

    def model(self, run_id: str) -> torch.nn.Module:
        return self.models[run_id]

    def inputs(self, run_id: str, split: str = "test"):
        data = self.dataset(run_id)
        x = data.x_test if self.inputs_of[run_id] == "standard" else data.privileged_test
        return x, data.y_test

    def labels(self, run_id: str, split: str = "test") -> np.ndarray:
        return self.dataset(run_id).y_test.numpy()

    def probs(self, run_id: str, split: str = "test") -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(self.models[run_id](self.inputs(run_id)[0]), dim=1).numpy()

    def cached(self, key, make):
        if key not in self._cache:
            self.builds += 1
            self._cache[key] = make()
        return self._cache[key]


@pytest.fixture(scope="module")
def tiny() -> TinyWorkspace:
    return TinyWorkspace(dict(SPEC), {"t": "privileged", "s": "standard"})


def test_an_edit_to_the_recorded_value_changes_nothing(tiny: TinyWorkspace) -> None:
    roles = {"teacher": "t", "student": "s"}
    recorded = cfv.original_factors(tiny, "t", 5)
    assert recorded["clutter"] == recorded["noise"] == 1.0
    for factor in EDITABLE_FACTORS:
        edit = cfv.edit_image(tiny, roles, 5, factor, recorded[factor])
        assert np.array_equal(edit.edited_image, edit.original_image), factor
        for role in roles:
            assert np.allclose(edit.edited_probs[role], edit.original_probs[role], atol=1e-6), (factor, role)
    table = cfv.edit_image(tiny, roles, 5, "size", 5.0).table()
    assert list(table["model"]) == ["teacher", "student"]
    assert np.allclose(table["change"], table["p(true) edited"] - table["p(true) original"])
    with pytest.raises(ValueError, match="size must be in 4..13"):
        cfv.edit_image(tiny, roles, 5, "size", 20.0)
    with pytest.raises(ValueError, match="unknown factor 'colour'"):
        cfv.edit_image(tiny, roles, 5, "colour", 1.0)
    with pytest.raises(ValueError, match="out of range"):
        cfv.edit_image(tiny, roles, 99, "size", 6.0)


def test_sweep_and_cams_equal_direct_evaluation_through_each_models_view(tiny: TinyWorkspace) -> None:
    roles = {"teacher": "t", "student": "s"}
    data = get_dataset(SPEC)
    label = int(data.y_test[5])
    sweep, leaves = cfv.sweep_factor(tiny, roles, 5, "hue")
    assert sweep["value"].tolist() == cfv.sweep_values("hue") * 2
    assert set(leaves) == {"student"}
    for role, run_id in roles.items():
        for value in (0.0, 180.0):
            rendered = render_counterfactual(SPEC, "test", 5, hue=value)
            raw = rendered.clean_images if run_id == "t" else rendered.images  # the teacher is privileged
            with torch.no_grad():
                p = torch.softmax(tiny.models[run_id](normalise_images(raw, data.normalization)), dim=1)[0]
            row = sweep[(sweep["model"] == role) & (sweep["value"] == value)].iloc[0]
            assert row["p_true"] == pytest.approx(float(p[label]), abs=1e-6)
    builds = tiny.builds
    assert cfv.sweep_factor(tiny, roles, 5, "hue")[0] is sweep and tiny.builds == builds  # cached
    cams = cfv.edit_cams(tiny, roles, 5, "size", 6.0)
    assert {k: v.shape for k, v in cams.items()} == {"teacher": (2, 32, 32), "student": (2, 32, 32)}
    direct = attribute(tiny.models["s"], data.x_test[5:6], label, "grad_cam")[0].numpy()
    assert np.allclose(cams["student"][0], direct, atol=1e-6)  # the unedited image is the test image
    assert cfv.sweep_values("cue") == [float(v) for v in range(-1, 8)]


def test_edits_wait_for_an_attribution_holding_the_models_lock(tiny: TinyWorkspace) -> None:
    import threading

    from kdviz.analysis.attributions import module_lock

    holding, release, done = threading.Event(), threading.Event(), threading.Event()

    def attribution_in_progress() -> None:
        with module_lock(tiny.models["s"]):
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=attribution_in_progress)
    holder.start()
    holding.wait(5)
    worker = threading.Thread(target=lambda: (cfv.edit_image(tiny, {"student": "s"}, 2, "size", 7.0), done.set()))
    worker.start()
    assert not done.wait(0.5)  # the student's forward pass waits for the lock
    release.set()
    holder.join(5)
    assert done.wait(10)
    worker.join(5)


class PointsWorkspace:
    """Two linear models on four 2-D training points, normalised with mean (1, 2) and std (2, 4)."""

    raw_train = np.array([[1.0, 2.0], [3.0, 2.0], [1.0, 10.0], [-5.0, 2.0]])

    def __init__(self) -> None:
        mean, std = np.array([1.0, 2.0]), np.array([2.0, 4.0])
        x = torch.tensor((self.raw_train - mean) / std, dtype=torch.float32)
        self.data = SimpleNamespace(
            name="toy", input_kind="points", input_shape=(2,), class_names=["left", "right"], spec={},
            feature_names=None, normalization={"mean": mean.tolist(), "std": std.tolist()}, x=x,
        )  # fmt: skip
        # teacher: class 1 when the first normalised feature > 0.5; student: when the second is
        self.models = {"t": torch.nn.Linear(2, 2), "s": torch.nn.Linear(2, 2)}
        with torch.no_grad():
            for run_id, column in (("t", 0), ("s", 1)):
                weight = torch.zeros(2, 2)
                weight[1, column] = 10.0
                self.models[run_id].weight.copy_(weight)
                self.models[run_id].bias.copy_(torch.tensor([0.0, -5.0]))
        self._cache: dict = {}

    def dataset(self, run_id: str):
        return self.data

    def model(self, run_id: str) -> torch.nn.Module:
        return self.models[run_id]

    def inputs(self, run_id: str, split: str = "test"):
        return self.data.x, torch.zeros(4, dtype=torch.int64)

    def labels(self, run_id: str, split: str = "test") -> np.ndarray:
        return np.zeros(4, dtype=np.int64)

    def probs(self, run_id: str, split: str = "test") -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(self.models[run_id](self.data.x), dim=1).numpy()

    def cached(self, key, make):
        return self._cache.setdefault(key, make())


def test_feature_edits_and_the_nearest_counterfactual_in_the_datas_units() -> None:
    ws = PointsWorkspace()
    roles = {"teacher": "t", "student": "s"}
    assert cfv.counterfactual_kind(ws, "t") == "features"
    assert cfv.feature_names(ws, "t") == ["x1", "x2"]
    ranges = cfv.feature_ranges(ws, "t")
    assert ranges["min"].tolist() == pytest.approx([-5.0, 2.0]) and ranges["max"].tolist() == pytest.approx([3.0, 10.0])
    assert cfv.sample_point(ws, "t", 1) == pytest.approx([3.0, 2.0])
    # (1, 2) normalises to (0, 0): both models say "left"
    edit = cfv.evaluate_point(ws, roles, np.array([1.0, 2.0]))
    assert edit.predictions() == {"teacher": 0, "student": 0}
    nearest = cfv.nearest_training_counterfactual(ws, roles, edit)
    # training rows 1 (teacher says right) and 2 (student says right) differ; in training-std units
    # (std 3 and 3.46) row 1 is 2/3 = 0.67 away, row 2 is 8/3.46 = 2.31: row 1
    assert nearest.train_index == 1
    assert ranges["std"].tolist() == pytest.approx([3.0, np.sqrt(12.0)])
    assert nearest.distance == pytest.approx(2.0 / 3.0)
    assert nearest.features["difference"].tolist() == pytest.approx([2.0, 0.0])
    assert nearest.predictions.set_index("model")["counterfactual"].to_dict() == {"teacher": "right", "student": "left"}
    with pytest.raises(ValueError, match="2 finite feature values"):
        cfv.evaluate_point(ws, roles, np.array([1.0, np.nan]))
