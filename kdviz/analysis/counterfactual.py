"""Counterfactuals: change one generating factor of a `shapes` test image (or one feature of a tabular point)
and watch the models respond; find the nearest training example the models call differently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdviz.analysis.attributions import module_lock
from kdviz.data.shapes import ShapeImages, render_counterfactual

__all__ = [
    "DIVERGENCE_GAP",
    "factor_sweep",
    "first_divergence",
    "model_view",
    "nearest_counterfactual",
    "normalise_images",
]

#: A student's curve "leaves" the teacher's where their probabilities of the true class differ by more than this.
DIVERGENCE_GAP = 0.2


def normalise_images(images: np.ndarray, normalization: Mapping[str, Sequence[float]]) -> torch.Tensor:
    """Raw [0, 1] images N×C×H×W normalised with a dataset's per-channel mean and std (float32, as the loader does)."""
    mean = np.asarray(normalization["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(normalization["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    return torch.from_numpy(np.ascontiguousarray((images.astype(np.float32) - mean) / std))


def model_view(rendered: ShapeImages, inputs: str = "standard") -> np.ndarray:
    """The raw images a model of input kind `inputs` sees: the scene, or (``privileged``) the clean shape."""
    if inputs not in ("standard", "privileged"):
        raise ValueError(f"unknown inputs {inputs!r}; valid: standard, privileged")
    return rendered.images if inputs == "standard" else rendered.clean_images


@torch.no_grad()
def factor_sweep(
    models: Mapping[str, torch.nn.Module],
    dataset_spec: dict[str, Any],
    normalization: Mapping[str, Sequence[float]],
    split: str,
    index: int,
    factor: str,
    values: Sequence[float],
    label: int,
    inputs: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Each model's probability of `label` as `factor` of sample `index` takes each of `values`.

    One row per (value, model): `value`, `model`, `p_true` (probability of `label`), `prediction`.
    The images are re-rendered by `kdviz.data.shapes.render_counterfactual`; `inputs` maps a model to
    its input kind (default standard; a privileged model sees the clean shape of the same scene).
    Where a student's curve leaves the teacher's is where the factor starts to matter to one and not
    the other (`first_divergence`).
    """
    rendered = [render_counterfactual(dataset_spec, split, index, **{factor: float(v)}) for v in values]
    rows = []
    for name, model in models.items():
        view = (inputs or {}).get(name, "standard")
        x = normalise_images(np.concatenate([model_view(r, view) for r in rendered]), normalization)
        with module_lock(model):  # a shared model may be under a hook-based attribution in another thread
            probs = torch.softmax(model(x).float(), dim=1).numpy()
        for value, p in zip(values, probs):
            rows.append(
                {"value": float(value), "model": name, "p_true": float(p[label]), "prediction": int(p.argmax())}
            )
    return pd.DataFrame(rows, columns=["value", "model", "p_true", "prediction"])


def first_divergence(
    sweep: pd.DataFrame, reference: str = "teacher", gap: float = DIVERGENCE_GAP, start: float | None = None
) -> dict[str, list[float]]:
    """Per model other than `reference`: where its `p_true` first differs from the reference's by more than `gap`.

    Without `start`: the first such value in the sweep's order (a list of one, or empty). With
    `start` (the sample's own value): walking outward from it, the nearest such value at or below it
    and the nearest at or above it (zero, one or two values, ascending) — how far the factor can move
    before the student parts ways with the teacher.
    """
    if reference not in set(sweep["model"]):
        models = ", ".join(map(str, sweep["model"].unique()))
        raise ValueError(f"the sweep has no model {reference!r}; models: {models}")
    base = sweep[sweep["model"] == reference].set_index("value")["p_true"]
    found: dict[str, list[float]] = {}
    for name in dict.fromkeys(sweep["model"]):
        if name == reference:
            continue
        curve = sweep[sweep["model"] == name]
        apart = [float(v) for v, p in zip(curve["value"], curve["p_true"]) if abs(p - base[v]) > gap]
        if start is None:
            found[name] = apart[:1]
            continue
        below = [v for v in apart if v <= start]
        above = [v for v in apart if v >= start]
        found[name] = sorted({*([max(below)] if below else []), *([min(above)] if above else [])})
    return found


def nearest_counterfactual(
    candidates: np.ndarray,
    point: np.ndarray,
    candidate_predictions: Mapping[str, np.ndarray],
    point_predictions: Mapping[str, int],
    scale: np.ndarray | None = None,
) -> tuple[int, float] | None:
    """The candidate row nearest to `point` whose prediction differs from the point's for some model.

    `candidates` N×D and `point` D in the same units; distance is Euclidean after dividing each
    feature by `scale` (e.g. the training standard deviation; None: unscaled). Returns (row,
    distance), the lowest row on ties, or None when every candidate is predicted like the point.
    """
    x = np.asarray(candidates, dtype=np.float64)
    p = np.asarray(point, dtype=np.float64)
    if x.ndim != 2 or p.shape != (x.shape[1],):
        raise ValueError(f"candidates must be N×D and point a D vector, got {x.shape} and {p.shape}")
    s = np.ones(x.shape[1]) if scale is None else np.asarray(scale, dtype=np.float64)
    if s.shape != (x.shape[1],) or not (s > 0).all():
        raise ValueError(f"scale must hold {x.shape[1]} positive numbers, got {s}")
    missing = sorted(set(point_predictions) - set(candidate_predictions))
    if missing:
        raise ValueError(f"no candidate predictions for {', '.join(missing)}")
    differs = np.zeros(len(x), dtype=bool)
    for name, predicted in point_predictions.items():
        differs |= np.asarray(candidate_predictions[name]) != int(predicted)
    if not differs.any():
        return None
    distance = np.sqrt((((x - p) / s) ** 2).sum(axis=1))
    distance[~differs] = np.inf
    row = int(np.argmin(distance))
    return row, float(distance[row])
