"""Counterfactuals on the Divergence page: edit one test sample and watch every selected model respond.

`shapes`: re-render a test image with one generating factor changed (`kdviz.data.shapes.render_counterfactual`),
compare each model's probabilities (cheap) and Grad-CAM (behind a button), and sweep the factor over its
range. Tabular and 2-D point data (own pairs included): move feature sliders in the data's units, evaluate
every model on the edited point, and find the nearest training example that a model predicts differently.
Shared results are cached per run ids and edit (never per tensor); Grad-CAM goes through
`kdviz.analysis.attribute`, which holds each model's `module_lock`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from kdviz.analysis import attribute
from kdviz.analysis.attributions import module_lock
from kdviz.analysis.counterfactual import (
    DIVERGENCE_GAP,
    factor_sweep,
    first_divergence,
    model_view,
    nearest_counterfactual,
    normalise_images,
)
from kdviz.data.shapes import EDITABLE_FACTORS, NO_CUE, SHAPE_NAMES, render_counterfactual
from kdviz.data.text import UNK, Vocabulary, tokenize
from kdviz.distill.evaluation import predict_logits
from kdviz.workspace import Workspace

__all__ = [
    "FACTOR_RANGES",
    "SWEEP_POINTS",
    "FeatureEdit",
    "TextEdit",
    "ImageEdit",
    "NearestCounterfactual",
    "counterfactual_kind",
    "edit_cams",
    "edit_image",
    "evaluate_point",
    "evaluate_text",
    "feature_names",
    "feature_ranges",
    "nearest_training_counterfactual",
    "original_factors",
    "sample_point",
    "sweep_factor",
    "sweep_values",
]

#: Range of each editable `shapes` factor offered by the page and swept (cue: -1 none, else the class).
FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "size": (4.0, 13.0),
    "x": (0.0, 31.0),
    "y": (0.0, 31.0),
    "rotation": (0.0, 360.0),
    "hue": (0.0, 360.0),
    "clutter": (0.0, 2.0),
    "noise": (0.0, 3.0),
    "cue": (float(NO_CUE), float(len(SHAPE_NAMES) - 1)),
}
#: Points along a continuous factor's range in a sweep.
SWEEP_POINTS = 13


def counterfactual_kind(ws: Workspace, run_id: str) -> str | None:
    """``"shapes"`` (factor edits), ``"features"`` (tabular or point vectors), ``"text"`` (an edited
    sentence), or None (no counterfactuals)."""
    data = ws.dataset(run_id)
    if data.name == "shapes" and data.input_kind == "image":
        return "shapes"
    if data.input_kind == "text":
        return "text"
    if data.input_kind in ("tabular", "points") and len(data.input_shape) == 1:
        return "features"
    return None


def _inputs_of(ws: Workspace, run_id: str) -> str:
    return str(ws.record(run_id).config.get("inputs", "standard"))


def _check_factor(factor: str) -> None:
    if factor not in EDITABLE_FACTORS:
        raise ValueError(f"unknown factor {factor!r}; editable: {', '.join(EDITABLE_FACTORS)}")


def _check_index(ws: Workspace, run_id: str, index: int, split: str) -> int:
    n = len(ws.labels(run_id, split))
    if not (isinstance(index, int | np.integer) and 0 <= int(index) < n):
        raise ValueError(f"sample {index} is out of range: split {split!r} has {n} samples (0..{n - 1})")
    return int(index)


@torch.no_grad()
def _probabilities(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Softmax of a shared model's logits, holding its lock (another thread may be attributing with hooks)."""
    with module_lock(model):
        return torch.softmax(predict_logits(model, x).float(), dim=1).numpy()


# --------------------------------------------------------------------------- shapes


def original_factors(ws: Workspace, run_id: str, index: int, split: str = "test") -> dict[str, float]:
    """The recorded value of every editable factor of `shapes` sample `index` (clutter and noise: scale 1)."""
    index = _check_index(ws, run_id, index, split)
    row = ws.dataset(run_id).metadata(split).iloc[index]
    cue = str(row["cue"])
    return {
        "size": float(row["size"]),
        "x": float(row["x"]),
        "y": float(row["y"]),
        "rotation": float(row["rotation"]) % 360.0,
        "hue": float(row["hue"]),
        "clutter": 1.0,
        "noise": 1.0,
        "cue": float(NO_CUE if cue == "none" else SHAPE_NAMES.index(cue.removesuffix(" cue"))),
    }


def sweep_values(factor: str) -> list[float]:
    """The values a sweep of `factor` visits: every cue, or `SWEEP_POINTS` evenly over `FACTOR_RANGES`."""
    _check_factor(factor)
    low, high = FACTOR_RANGES[factor]
    if factor == "cue":
        return [float(v) for v in range(int(low), int(high) + 1)]
    return [float(v) for v in np.linspace(low, high, SWEEP_POINTS)]


@dataclass
class ImageEdit:
    """A `shapes` test sample and its edit: raw [0, 1] images (3×H×W) and each role's probabilities."""

    index: int
    label: int
    class_names: list[str]
    factor: str
    original_value: float
    value: float
    original_image: np.ndarray
    edited_image: np.ndarray
    original_probs: dict[str, np.ndarray]  # role -> K probabilities
    edited_probs: dict[str, np.ndarray]

    def table(self) -> pd.DataFrame:
        """One row per role: prediction and probability of the true class before and after the edit."""
        names = self.class_names
        rows = []
        for role, before in self.original_probs.items():
            after = self.edited_probs[role]
            rows.append(
                {
                    "model": role,
                    "predicts (original)": names[int(before.argmax())],
                    "p(true) original": float(before[self.label]),
                    "predicts (edited)": names[int(after.argmax())],
                    "p(true) edited": float(after[self.label]),
                    "change": float(after[self.label] - before[self.label]),
                }
            )
        return pd.DataFrame(rows)


def _role_inputs(ws: Workspace, roles: Mapping[str, str], spec: dict, split: str, index: int, changes: dict):
    """Each role's normalised input for one edit (cached: rendering replays the split's generator)."""
    rendered = render_counterfactual(spec, split, index, **changes)
    normalization = ws.dataset(next(iter(roles.values()))).normalization
    return rendered, {
        role: normalise_images(model_view(rendered, _inputs_of(ws, run_id)), normalization)
        for role, run_id in roles.items()
    }


def edit_image(
    ws: Workspace, roles: Mapping[str, str], index: int, factor: str, value: float, split: str = "test"
) -> ImageEdit:
    """Sample `index` with `factor` set to `value`, and every role's (role -> run id) probabilities before and
    after; cached per runs and edit. The original probabilities are the workspace's own outputs."""
    _check_factor(factor)
    if not roles:
        raise ValueError("pick at least one model")
    first = next(iter(roles.values()))
    index = _check_index(ws, first, index, split)
    low, high = FACTOR_RANGES[factor]
    if not low <= float(value) <= high:
        raise ValueError(f"{factor} must be in {low:g}..{high:g}, got {value}")

    def make() -> ImageEdit:
        spec = ws.record(first).config["dataset"]
        data = ws.dataset(first)
        original = render_counterfactual(spec, split, index)
        rendered, inputs = _role_inputs(ws, roles, spec, split, index, {factor: float(value)})
        edited = {}
        with torch.no_grad():
            for role, run_id in roles.items():
                edited[role] = _probabilities(ws.model(run_id), inputs[role])[0].astype(np.float64)
        return ImageEdit(
            index=index,
            label=int(ws.labels(first, split)[index]),
            class_names=[str(c) for c in data.class_names],
            factor=factor,
            original_value=original_factors(ws, first, index, split)[factor],
            value=float(value),
            original_image=original.images[0],
            edited_image=rendered.images[0],
            original_probs={r: np.asarray(ws.probs(rid, split)[index], dtype=np.float64) for r, rid in roles.items()},
            edited_probs=edited,
        )

    key = ("cf_edit", tuple(sorted(roles.items())), split, index, factor, float(value))
    return ws.cached(key, make)


def edit_cams(
    ws: Workspace, roles: Mapping[str, str], index: int, factor: str, value: float, split: str = "test"
) -> dict[str, np.ndarray]:
    """Grad-CAM of the true class, role -> 2×H×W (original, edit); cached per runs and edit.

    Roles whose model has no conv layer are left out.
    """
    edit = edit_image(ws, roles, index, factor, value, split)

    def make() -> dict[str, np.ndarray]:
        spec = ws.record(next(iter(roles.values()))).config["dataset"]
        _, before = _role_inputs(ws, roles, spec, split, edit.index, {})
        _, after = _role_inputs(ws, roles, spec, split, edit.index, {factor: float(value)})
        maps = {}
        for role, run_id in roles.items():
            model = ws.model(run_id)
            if not getattr(model, "last_conv_layer", None):
                continue
            both = torch.cat([before[role], after[role]])
            maps[role] = attribute(model, both, edit.label, "grad_cam").numpy()
        return maps

    key = ("cf_cams", tuple(sorted(roles.items())), split, edit.index, factor, float(value))
    return ws.cached(key, make)


def sweep_factor(
    ws: Workspace, roles: Mapping[str, str], index: int, factor: str, split: str = "test"
) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """(`factor_sweep` of every role over `sweep_values(factor)`, where each student leaves the teacher).

    The second item maps each role but the teacher to the values nearest the sample's own value, below
    and above it, where its probability of the true class is more than `DIVERGENCE_GAP` from the
    teacher's (`first_divergence`; empty: never). Cached per runs.
    """
    _check_factor(factor)
    first = next(iter(roles.values()))
    index = _check_index(ws, first, index, split)

    def make() -> tuple[pd.DataFrame, dict[str, list[float]]]:
        spec = ws.record(first).config["dataset"]
        models = {role: ws.model(run_id) for role, run_id in roles.items()}
        inputs = {role: _inputs_of(ws, run_id) for role, run_id in roles.items()}
        label = int(ws.labels(first, split)[index])
        sweep = factor_sweep(
            models, spec, ws.dataset(first).normalization, split, index, factor, sweep_values(factor), label, inputs
        )
        own = original_factors(ws, first, index, split)[factor]
        parts = first_divergence(sweep, "teacher", DIVERGENCE_GAP, start=own) if "teacher" in roles else {}
        return sweep, parts

    return ws.cached(("cf_sweep", tuple(sorted(roles.items())), split, index, factor), make)


# --------------------------------------------------------------------------- feature vectors


def feature_names(ws: Workspace, run_id: str) -> list[str]:
    """The input features' names: a CSV's column names, else x1, x2, …"""
    data = ws.dataset(run_id)
    names = data.feature_names or (data.spec.get("feature_names") if isinstance(data.spec, dict) else None)
    n = int(data.input_shape[0])
    if isinstance(names, list) and len(names) == n:
        return [str(name) for name in names]
    return [f"x{j + 1}" for j in range(n)]


def _raw_scale(ws: Workspace, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) that turn the model's normalised features back into the data's units."""
    data = ws.dataset(run_id)
    n = int(data.input_shape[0])
    mean = np.broadcast_to(np.asarray(data.normalization.get("mean", [0.0]), dtype=np.float64), (n,))
    std = np.broadcast_to(np.asarray(data.normalization.get("std", [1.0]), dtype=np.float64), (n,))
    return mean, std


def _raw_inputs(ws: Workspace, run_id: str, split: str) -> np.ndarray:
    def make() -> np.ndarray:
        x, _ = ws.inputs(run_id, split)
        mean, std = _raw_scale(ws, run_id)
        raw = x.numpy().astype(np.float64) * std + mean
        raw.setflags(write=False)
        return raw

    return ws.cached(("cf_raw_inputs", run_id, split), make)


def feature_ranges(ws: Workspace, run_id: str) -> pd.DataFrame:
    """Per feature (in the data's units): `feature`, `min`, `max`, `std` over the training split."""
    raw = _raw_inputs(ws, run_id, "train")
    return pd.DataFrame(
        {"feature": feature_names(ws, run_id), "min": raw.min(axis=0), "max": raw.max(axis=0), "std": raw.std(axis=0)}
    )


def sample_point(ws: Workspace, run_id: str, index: int, split: str = "test") -> np.ndarray:
    """Test sample `index` in the data's units (where the sliders start)."""
    index = _check_index(ws, run_id, index, split)
    return np.array(_raw_inputs(ws, run_id, split)[index])


@dataclass
class FeatureEdit:
    """An edited feature vector and every role's probabilities on it."""

    point: np.ndarray  # D, the data's units
    probs: dict[str, np.ndarray]  # role -> K

    def predictions(self) -> dict[str, int]:
        return {role: int(p.argmax()) for role, p in self.probs.items()}


def evaluate_point(ws: Workspace, roles: Mapping[str, str], point: np.ndarray) -> FeatureEdit:
    """Every role's probabilities on `point` (features in the data's units); cheap, not cached."""
    first = next(iter(roles.values()))
    raw = np.asarray(point, dtype=np.float64)
    names = feature_names(ws, first)
    if raw.shape != (len(names),) or not np.isfinite(raw).all():
        raise ValueError(f"the point must hold {len(names)} finite feature values ({', '.join(names)}), got {raw}")
    mean, std = _raw_scale(ws, first)
    x = torch.from_numpy(((raw - mean) / std).astype(np.float32))[None]
    probs = {role: _probabilities(ws.model(run_id), x)[0].astype(np.float64) for role, run_id in roles.items()}
    return FeatureEdit(point=raw, probs=probs)


@dataclass
class NearestCounterfactual:
    """The nearest training example predicted differently from an edited point."""

    train_index: int
    distance: float  # Euclidean, in training standard deviations
    features: pd.DataFrame  # feature, edited point, counterfactual, difference
    predictions: pd.DataFrame  # model, edited point, counterfactual (class names)


def nearest_training_counterfactual(
    ws: Workspace, roles: Mapping[str, str], edit: FeatureEdit
) -> NearestCounterfactual | None:
    """The nearest training example (Euclidean in training-std units) that some role of `roles` (role -> run
    id, the roles of `edit`) predicts differently from the edited point; None if there is none."""
    first = next(iter(roles.values()))
    candidates = _raw_inputs(ws, first, "train")
    std = feature_ranges(ws, first)["std"].to_numpy()
    train_predictions = {role: ws.probs(run_id, "train").argmax(axis=1) for role, run_id in roles.items()}
    predicted = edit.predictions()
    found = nearest_counterfactual(
        candidates, edit.point, train_predictions, {r: predicted[r] for r in roles}, np.where(std > 0, std, 1.0)
    )
    if found is None:
        return None
    row, distance = found
    names = [str(c) for c in ws.dataset(first).class_names]
    other = np.array(candidates[row])
    features = pd.DataFrame(
        {
            "feature": feature_names(ws, first),
            "edited point": edit.point,
            "counterfactual": other,
            "difference": other - edit.point,
        }
    )
    predictions = pd.DataFrame(
        {
            "model": list(roles),
            "edited point": [names[predicted[r]] for r in roles],
            "counterfactual": [names[int(train_predictions[r][row])] for r in roles],
        }
    )
    return NearestCounterfactual(row, distance, features, predictions)


# --------------------------------------------------------------------------- text


@dataclass
class TextEdit:
    """Every role's probabilities on a sentence the user wrote, and what the models saw of it."""

    text: str
    words: list[str]  # the tokens the models see: words outside the vocabulary as <unk>, cut at the length
    unknown: list[str]  # the user's words missing from the vocabulary (each once, in order)
    cut: int  # words beyond the models' length, left out
    probs: dict[str, np.ndarray]  # role -> probabilities

    def predictions(self) -> dict[str, int]:
        return {role: int(p.argmax()) for role, p in self.probs.items()}


def evaluate_text(ws: Workspace, roles: Mapping[str, str], text: str) -> TextEdit:
    """Every role's probabilities on `text`, encoded with the dataset's vocabulary (cheap, not cached)."""
    first = next(iter(roles.values()))
    data = ws.dataset(first)
    if data.input_kind != "text" or not data.vocabulary:
        raise ValueError(f"dataset {data.name!r} is not text; sentence edits need a text dataset")
    tokens = tokenize(str(text))
    if not tokens:
        raise ValueError("the sentence is empty: write at least one word")
    vocabulary = Vocabulary(tuple(data.vocabulary))
    length = int(data.input_shape[0])
    x = vocabulary.encode([str(text)], length)
    known = vocabulary.index
    unknown = list(dict.fromkeys(w for w in tokens if w not in known))
    words = [w if w in known else UNK for w in tokens[:length]]
    probs = {role: _probabilities(ws.model(run_id), x)[0].astype(np.float64) for role, run_id in roles.items()}
    return TextEdit(text=str(text), words=words, unknown=unknown, cut=max(0, len(tokens) - length), probs=probs)
