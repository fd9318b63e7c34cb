"""Attributions page: maps of teacher and students side by side, their agreement, and localisation on masks.

Attributions come from `kdviz.analysis.attribute` (which holds the model's `module_lock`), are
computed on the test split through each model's own input view, and are cached under the run id,
method, target rule and sample indices — never under tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from kdviz.analysis import (
    ATTRIBUTION_METHODS,
    attribute,
    attribution_agreement,
    kl_per_sample,
    list_attribution_methods,
    localization,
    localization_summary,
)
from kdviz.analysis.attributions import module_lock
from kdviz.workspace import Workspace

__all__ = [
    "AGREEMENT_SAMPLES",
    "CHEAP_METHODS",
    "SAMPLE_CHOICES",
    "TARGETS",
    "agreement_scores",
    "attribution_maps",
    "default_method",
    "display_maps",
    "localization_table",
    "mask_share",
    "method_options",
    "pick_samples",
    "predicted_classes",
    "raw_attributions",
    "signed_method",
]

#: One backward pass per sample: fine for a few hundred samples on CPU. The others cost 10–200× more
#: (integrated gradients: 32 steps; gradient SHAP: 16 draws; occlusion: one forward per window).
CHEAP_METHODS = ("saliency", "grad_cam", "input_x_gradient")
#: Test samples whose teacher–student agreement and localisation are measured.
AGREEMENT_SAMPLES = 200
#: Which class a map explains: the true label (the same class for every model), or each model's own prediction.
TARGETS = ("label", "prediction")
#: How the grid's samples are chosen.
SAMPLE_CHOICES = ("by index", "where they disagree")


def method_options(ws: Workspace, run_ids: Sequence[str]) -> list[str]:
    """Registered attribution methods every model supports (Grad-CAM needs a conv layer in each)."""
    has_conv = all(getattr(ws.model(rid), "last_conv_layer", None) for rid in run_ids)
    return [name for name in list_attribution_methods() if name != "grad_cam" or has_conv]


def default_method(options: Sequence[str]) -> str:
    """The cheap default: Grad-CAM where every model has a conv layer, saliency otherwise."""
    for name in ("grad_cam", "saliency"):
        if name in options:
            return name
    if not options:
        raise ValueError("no attribution method is available for these models")
    return options[0]


def signed_method(method: str) -> bool:
    """Whether `method`'s maps (as displayed) can be negative: saliency and Grad-CAM are non-negative."""
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; valid methods: {', '.join(ATTRIBUTION_METHODS)}")
    return method not in ("saliency", "grad_cam")


def _check_indices(indices: Sequence[int], n: int) -> tuple[int, ...]:
    idx = tuple(int(i) for i in indices)
    if not idx:
        raise ValueError("pick at least one sample")
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"sample index {bad[0]} is out of range; the test split has {n} samples (0..{n - 1})")
    return idx


def pick_samples(
    ws: Workspace, teacher_id: str, student_ids: Sequence[str], n: int, how: str = "by index", start: int = 0
) -> np.ndarray:
    """`n` test-sample indices: consecutive from `start` ("by index"), or where teacher and students
    disagree ("where they disagree": top-1 differs from the teacher's for some student, largest
    KL(teacher ‖ student) first; topped up with the most divergent agreeing samples)."""
    if how not in SAMPLE_CHOICES:
        raise ValueError(f"unknown sample choice {how!r}; valid choices: {', '.join(SAMPLE_CHOICES)}")
    n_total = len(ws.labels(teacher_id))
    if n < 1:
        raise ValueError(f"the number of samples must be positive, got {n}")
    if how == "by index":
        if not 0 <= start < n_total:
            raise ValueError(f"start index {start} is out of range 0..{n_total - 1}")
        return np.arange(start, min(start + n, n_total))
    if not student_ids:
        raise ValueError("pick at least one student to find samples where it disagrees with the teacher")
    teacher = ws.probs(teacher_id)
    kl = np.zeros(n_total)
    disagree = np.zeros(n_total, dtype=bool)
    for rid in student_ids:
        student = ws.probs(rid)
        kl = np.maximum(kl, kl_per_sample(teacher, student))
        disagree |= teacher.argmax(axis=1) != student.argmax(axis=1)
    # Disagreements first, then by KL, largest first (stable: ties keep index order).
    order = np.lexsort((np.arange(n_total), -kl, ~disagree))
    return order[:n]


def predicted_classes(ws: Workspace, run_id: str, indices: Sequence[int]) -> np.ndarray:
    """Top-1 class of `run_id` on the test samples at `indices` (a forward pass on those samples only)."""
    idx = _check_indices(indices, len(ws.labels(run_id)))

    def make() -> np.ndarray:
        model = ws.model(run_id)
        x, _ = ws.inputs(run_id)
        # The lock keeps this forward pass out of another thread's captum hooks on the shared model.
        with module_lock(model), torch.no_grad():
            return model(x[list(idx)]).argmax(dim=1).numpy()

    return ws.cached(("attr_predictions", run_id, idx), make)


def raw_attributions(
    ws: Workspace, run_id: str, method: str, indices: Sequence[int], target: str = "label"
) -> np.ndarray:
    """Attributions of `run_id` on the test samples at `indices` (as `attribute` returns them; read-only)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; valid methods: {', '.join(ATTRIBUTION_METHODS)}")
    idx = _check_indices(indices, len(ws.labels(run_id)))

    def make() -> np.ndarray:
        x, y = ws.inputs(run_id)
        rows = list(idx)
        classes = y[rows] if target == "label" else torch.as_tensor(predicted_classes(ws, run_id, idx))
        array = attribute(ws.model(run_id), x[rows], classes, method).numpy()
        array.setflags(write=False)
        return array

    return ws.cached(("attr_raw", run_id, method, target, idx), make)


def display_maps(attributions: np.ndarray, input_kind: str) -> np.ndarray:
    """Maps to draw: images N×H×W and signals N×L (channels summed, sign kept), tabular/points N×D as is."""
    a = np.asarray(attributions, dtype=np.float64)
    if (input_kind == "image" and a.ndim == 4) or (input_kind == "signal" and a.ndim == 3):
        return a.sum(axis=1)
    return a


def attribution_maps(
    ws: Workspace, run_id: str, method: str, indices: Sequence[int], target: str = "label"
) -> np.ndarray:
    """`display_maps` of `raw_attributions` for one model."""
    raw = raw_attributions(ws, run_id, method, indices, target)
    return display_maps(raw, ws.dataset(run_id).input_kind)


def _subsample(n_total: int, n: int, seed: int = 0) -> tuple[int, ...]:
    if n >= n_total:
        return tuple(range(n_total))
    return tuple(int(i) for i in np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False)))


def agreement_scores(
    ws: Workspace,
    teacher_id: str,
    student_id: str,
    method: str,
    *,
    n_samples: int = AGREEMENT_SAMPLES,
    k: float = 0.1,
) -> pd.DataFrame:
    """Per-sample teacher–student agreement (`attribution_agreement`) on a fixed test subsample.

    Both maps explain the true label. Columns ``index``, ``spearman``, ``topk_iou`` (top `k` share
    of positions), ``cosine``.
    """
    idx = _subsample(len(ws.labels(teacher_id)), n_samples)

    def make() -> pd.DataFrame:
        teacher = raw_attributions(ws, teacher_id, method, idx)
        student = raw_attributions(ws, student_id, method, idx)
        frame = attribution_agreement(teacher, student, k=k)
        frame.insert(0, "index", np.asarray(idx))
        return frame

    return ws.cached(("attr_agreement", teacher_id, student_id, method, n_samples, k), make)


def mask_share(ws: Workspace, run_id: str, n_samples: int = AGREEMENT_SAMPLES) -> float:
    """Mean share of the image inside the mask on the subsample: what a uniform map scores on both metrics."""
    masks = ws.dataset(run_id).masks("test")
    if masks is None:
        raise ValueError(f"{ws.dataset(run_id).name} has no ground-truth masks")
    idx = list(_subsample(len(masks), n_samples))
    return float(masks[idx].float().mean())


def localization_table(
    ws: Workspace, runs: Mapping[str, str], method: str, *, n_samples: int = AGREEMENT_SAMPLES
) -> pd.DataFrame:
    """Relevance mass in the mask and pointing-game rate per model (`localization_summary`), true-label maps.

    `runs` maps a display name to a run id. Only datasets with ground-truth masks (`shapes`).
    Columns: ``model``, ``run``, ``relevance_mass``, ``pointing_game``, ``n_samples``.
    """
    rows = []
    for name, run_id in runs.items():
        masks = ws.dataset(run_id).masks("test")
        if masks is None:
            raise ValueError(
                f"{ws.dataset(run_id).name} has no ground-truth masks; localisation needs a dataset like shapes"
            )
        idx = _subsample(len(masks), n_samples)

        def make(run_id: str = run_id, idx: tuple[int, ...] = idx, masks=masks) -> dict[str, float]:
            per_sample = localization(raw_attributions(ws, run_id, method, idx), masks[list(idx)])
            return localization_summary(per_sample)

        summary = ws.cached(("attr_localization", run_id, method, n_samples), make)
        rows.append({"model": name, "run": run_id, **summary})
    return pd.DataFrame(rows)
