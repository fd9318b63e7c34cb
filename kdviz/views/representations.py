"""Representations & concepts page: teacher × student CKA, feature projections, concept maps and TCAV.

Every function takes the shared `Workspace` and run ids, works on a fixed subsample of the test
split (the same samples for every model, each seen through the model's own input view) and
caches its result with `ws.cached` under the run ids and options.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.linalg import orthogonal_procrustes

from kdviz.analysis import (
    ConceptDynamics,
    ConceptQuantification,
    cka_across_checkpoints,
    cka_matrix,
    concept_dynamics,
    debiased_cka,
    linear_cka,
    project_features,
    quantify_concepts,
    rank_divergence,
    tcav_scores,
)
from kdviz.analysis.attributions import module_lock
from kdviz.data.dataset import Dataset
from kdviz.models import FeatureTap, extract_features
from kdviz.workspace import Workspace

__all__ = [
    "COLOR_BY",
    "DEFAULT_SAMPLES",
    "TcavConcept",
    "align_points",
    "cka_grid",
    "cka_over_training",
    "cka_student_checkpoints",
    "common_layers",
    "concept_dynamics_for",
    "concept_path_epochs",
    "concept_grid_size",
    "concept_inputs",
    "concept_quantification",
    "concept_summary",
    "dynamics_resolution",
    "dynamics_summary",
    "foreground_masks",
    "layer_features",
    "projection",
    "projection_frame",
    "subsample",
    "tcav_concepts",
    "tcav_layer",
    "tcav_table",
]

#: Test samples used for CKA and projections (fixed subsample; CKA's Gram matrices grow as n²).
DEFAULT_SAMPLES = 500
#: How the projection scatter is coloured.
COLOR_BY = ("class", "disagreement")
#: Hue bins of the shape colour concepts on `shapes` (hue in [0, 1), bins centred on these hues).
HUE_CONCEPTS = {"red": 0.0, "yellow": 1 / 6, "green": 2 / 6, "cyan": 3 / 6, "blue": 4 / 6, "magenta": 5 / 6}
#: Fewer examples than this and a concept is not offered (CAVs need enough examples per side).
MIN_CONCEPT_EXAMPLES = 10
#: Most epochs whose concepts are quantified for learning speed (each costs one `quantify_concepts`).
MAX_CONCEPT_EPOCHS = 11
#: Most saved checkpoints the weight path runs through (each is read from the store once per analysis).
MAX_PATH_EPOCHS = 1000


def subsample(n_total: int, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a fixed random subsample of min(`n`, `n_total`) of `n_total` samples."""
    if n_total < 1:
        raise ValueError(f"there are no samples to draw from (n_total={n_total})")
    if n < 1:
        raise ValueError(f"the subsample size must be positive, got {n}")
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def _same_dataset(ws: Workspace, run_ids: Sequence[str]) -> None:
    specs = {repr(sorted(ws.record(rid).config["dataset"].items())) for rid in run_ids}
    if len(specs) > 1:
        names = ", ".join(f"{rid[:6]} ({ws.record(rid).config['dataset'].get('name')})" for rid in run_ids)
        raise ValueError(f"the runs were trained on different datasets ({names}); pick runs of one dataset")


def _inputs(ws: Workspace, run_id: str, indices: np.ndarray, split: str = "test") -> torch.Tensor:
    x, _ = ws.inputs(run_id, split)
    return x[torch.as_tensor(indices, dtype=torch.long)]


def _key(indices: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in indices)


def common_layers(ws: Workspace, run_ids: Sequence[str]) -> list[str]:
    """Feature layer names every run's model has, in the first model's order (shallow to deep)."""
    names = [list(ws.model(rid).feature_layer_names) for rid in run_ids]
    return [name for name in names[0] if all(name in other for other in names[1:])]


# --------------------------------------------------------------------------- features and CKA


def layer_features(
    ws: Workspace, run_id: str, layer: str, *, n_samples: int = DEFAULT_SAMPLES, epoch: int | None = None
) -> np.ndarray:
    """Flattened features (n × d, float32, read-only) of `layer` on the fixed test subsample."""

    def make() -> np.ndarray:
        model = ws.model(run_id, epoch)
        if layer not in model.feature_layer_names:
            valid = ", ".join(model.feature_layer_names)
            raise ValueError(f"run {run_id[:6]} has no feature layer {layer!r}; its feature layers: {valid}")
        idx = subsample(len(ws.labels(run_id)), n_samples)
        with module_lock(model):
            features = extract_features(model, _inputs(ws, run_id, idx), layers=[layer])[layer]
        array = features.float().numpy()
        array.setflags(write=False)
        return array

    return ws.cached(("repr_features", run_id, epoch, layer, n_samples), make)


def cka_grid(
    ws: Workspace,
    teacher_id: str,
    student_id: str,
    *,
    student_epoch: int | None = None,
    n_samples: int = DEFAULT_SAMPLES,
    debiased: bool = False,
) -> pd.DataFrame:
    """CKA between every feature layer of the teacher (rows) and of the student at `student_epoch` (columns).

    Both models see the same test samples. When their input views differ (a privileged teacher),
    each layer pair is computed from each model's own features.
    """

    def make() -> pd.DataFrame:
        _same_dataset(ws, [teacher_id, student_id])
        teacher, student = ws.model(teacher_id), ws.model(student_id, student_epoch)
        idx = subsample(len(ws.labels(teacher_id)), n_samples)
        same_view = ws.record(teacher_id).config.get("inputs") == ws.record(student_id).config.get("inputs")
        if same_view:
            frame = cka_matrix(teacher, student, _inputs(ws, teacher_id, idx), debiased=debiased)
        else:
            measure = debiased_cka if debiased else linear_cka
            rows = {
                name: layer_features(ws, teacher_id, name, n_samples=n_samples) for name in teacher.feature_layer_names
            }
            cols = {
                name: layer_features(ws, student_id, name, n_samples=n_samples, epoch=student_epoch)
                for name in student.feature_layer_names
            }
            values = [[measure(a, b) for b in cols.values()] for a in rows.values()]
            frame = pd.DataFrame(values, index=list(rows), columns=list(cols))
        frame.index.name, frame.columns.name = "teacher layer", "student layer"
        return frame

    return ws.cached(("repr_cka", teacher_id, student_id, student_epoch, n_samples, debiased), make)


def cka_over_training(
    ws: Workspace,
    teacher_id: str,
    students: Mapping[str, str],
    *,
    teacher_layer: str | None = None,
    student_layer: str | None = None,
    n_samples: int = DEFAULT_SAMPLES,
) -> dict[str, list[dict[str, float]]]:
    """Linear CKA between a teacher layer and each student's layer at every saved checkpoint.

    `students` maps a name (e.g. a role) to a run id; layers default to each model's last feature
    layer (the penultimate representation). Returns name → ``[{"epoch": e, "CKA to the teacher": v}]``,
    the history format of `kdviz.plots.learning_curves`.
    """
    teacher_layer = teacher_layer or ws.model(teacher_id).feature_layer_names[-1]
    reference = layer_features(ws, teacher_id, teacher_layer, n_samples=n_samples)
    curves: dict[str, list[dict[str, float]]] = {}
    for name, run_id in students.items():
        _same_dataset(ws, [teacher_id, run_id])
        layer = student_layer or ws.model(run_id).feature_layer_names[-1]

        def make(run_id: str = run_id, layer: str = layer) -> list[dict[str, float]]:
            return [
                {
                    "epoch": int(epoch),
                    "CKA to the teacher": linear_cka(
                        reference, layer_features(ws, run_id, layer, n_samples=n_samples, epoch=epoch)
                    ),
                }
                for epoch in ws.record(run_id).checkpoints
            ]

        curves[name] = ws.cached(("repr_cka_training", teacher_id, teacher_layer, run_id, layer, n_samples), make)
    return curves


def cka_student_checkpoints(
    ws: Workspace, run_id: str, layer: str, *, n_samples: int = DEFAULT_SAMPLES
) -> pd.DataFrame:
    """CKA of one layer of a run between every pair of its saved checkpoints (labelled ``epoch N``)."""

    def make() -> pd.DataFrame:
        checkpoints = {f"epoch {e}": ws.model(run_id, e) for e in ws.record(run_id).checkpoints}
        idx = subsample(len(ws.labels(run_id)), n_samples)
        return cka_across_checkpoints(checkpoints, _inputs(ws, run_id, idx), layer)

    return ws.cached(("repr_cka_checkpoints", run_id, layer, n_samples), make)


# --------------------------------------------------------------------------- projections


def projection(
    ws: Workspace,
    run_id: str,
    layer: str,
    *,
    method: str = "pca",
    n_samples: int = DEFAULT_SAMPLES,
    epoch: int | None = None,
) -> np.ndarray:
    """2-D projection (n × 2) of `layer`'s features on the fixed test subsample (`project_features`)."""

    def make() -> np.ndarray:
        points = project_features(layer_features(ws, run_id, layer, n_samples=n_samples, epoch=epoch), method)
        points.setflags(write=False)
        return points

    return ws.cached(("repr_projection", run_id, epoch, layer, method, n_samples), make)


def align_points(reference: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`points` rotated/reflected (orthogonal Procrustes, about their centroid) to best match `reference`.

    PCA axes have arbitrary signs and t-SNE an arbitrary orientation; aligning the student's
    projection to the teacher's puts matching structure on the same side without changing
    distances. Both arrays are n × 2 rows of the same samples.
    """
    reference, points = np.asarray(reference, float), np.asarray(points, float)
    if reference.shape != points.shape or reference.ndim != 2:
        raise ValueError(f"reference and points must be matching n×2 arrays, got {reference.shape} and {points.shape}")
    centred = points - points.mean(axis=0)
    rotation, _ = orthogonal_procrustes(centred, reference - reference.mean(axis=0))
    return centred @ rotation + points.mean(axis=0)


def projection_frame(
    ws: Workspace, teacher_id: str, student_id: str, *, n_samples: int = DEFAULT_SAMPLES
) -> pd.DataFrame:
    """Per-sample facts of the fixed test subsample, for colouring and hovering the projections.

    Columns: ``index`` (test-set position), ``label``, ``class`` (name), ``teacher_pred``,
    ``student_pred``, ``agree`` (same top-1) and ``category`` (`kdviz.analysis.rank_divergence`).
    """

    def make() -> pd.DataFrame:
        _same_dataset(ws, [teacher_id, student_id])
        idx = subsample(len(ws.labels(teacher_id)), n_samples)
        labels = ws.labels(teacher_id)[idx]
        ranked = rank_divergence(ws.probs(teacher_id)[idx], ws.probs(student_id)[idx], labels)
        ranked = ranked.sort_values("index").reset_index(drop=True)
        names = np.asarray([str(c) for c in ws.dataset(teacher_id).class_names], dtype=object)
        return pd.DataFrame(
            {
                "index": idx,
                "label": labels.astype(np.int64),
                "class": names[labels],
                "teacher_pred": names[ranked["teacher_pred"].to_numpy()],
                "student_pred": names[ranked["student_pred"].to_numpy()],
                "agree": (ranked["teacher_pred"] == ranked["student_pred"]).to_numpy(),
                "category": ranked["category"].to_numpy(),
            }
        )

    return ws.cached(("repr_projection_frame", teacher_id, student_id, n_samples), make)


# --------------------------------------------------------------------------- concept quantification


def _raw_images(dataset: Dataset, x: torch.Tensor) -> torch.Tensor:
    """Normalised images back in the dataset's original units (per-channel mean/std undone)."""
    norm = dataset.normalization
    if not norm:
        return x
    mean = torch.as_tensor(norm["mean"], dtype=x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    std = torch.as_tensor(norm["std"], dtype=x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    return x * std + mean


def foreground_masks(dataset: Dataset, split: str = "test") -> tuple[torch.Tensor | None, str]:
    """Foreground masks of a split and where they come from, or (None, why there are none).

    The dataset's ground-truth masks when it has them (`shapes`); for `digits`, the ink: pixels
    at least half as dark as the darkest possible stroke (values ≥ 8 of 16). Other data has no
    foreground to speak of.
    """
    masks = dataset.masks(split)
    if masks is not None:
        return masks.bool(), "the ground-truth shape masks"
    if dataset.name == "digits":
        x, _ = dataset.split(split)
        return _raw_images(dataset, x)[:, 0] >= 8.0, "the ink of each digit (pixel value ≥ 8 of 16)"
    if dataset.input_kind != "image":
        return None, f"{dataset.name} holds {dataset.input_kind} inputs; concepts are regions of images"
    return None, f"{dataset.name} has no foreground masks, so concepts cannot be split into foreground and background"


def concept_grid_size(dataset: Dataset) -> int:
    """Regions per side for concept maps: 8 on 32×32 images (4×4-pixel cells), 4 on 8×8 digits."""
    if dataset.input_kind != "image":
        raise ValueError(f"concept maps need image inputs; {dataset.name} holds {dataset.input_kind} inputs")
    return max(1, min(8, min(dataset.input_shape[1:]) // 2))


def concept_inputs(ws: Workspace, run_id: str, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, foreground masks) of the test samples at `indices`, as `run_id` sees them."""
    dataset = ws.dataset(run_id)
    masks, why = foreground_masks(dataset)
    if masks is None:
        raise ValueError(f"no concept maps here: {why}")
    idx = np.asarray(list(indices), dtype=np.int64)
    if idx.size == 0:
        raise ValueError("pick at least one image")
    n = len(masks)
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"image index {int(idx.max() if idx.max() >= n else idx.min())} is out of range 0..{n - 1}")
    return _inputs(ws, run_id, idx), masks[torch.as_tensor(idx)]


def concept_quantification(
    ws: Workspace, run_id: str, layer: str, indices: Sequence[int], *, epoch: int | None = None, b: float = 0.25
) -> ConceptQuantification:
    """`quantify_concepts` of `layer` for the chosen test images (default options, grid per dataset)."""
    key = _key(np.asarray(list(indices)))

    def make() -> ConceptQuantification:
        images, masks = concept_inputs(ws, run_id, key)
        grid = concept_grid_size(ws.dataset(run_id))
        return quantify_concepts(ws.model(run_id, epoch), images, masks, layer, grid=grid, b=b)

    return ws.cached(("repr_concepts", run_id, epoch, layer, key, b), make)


def concept_summary(results: Mapping[str, ConceptQuantification]) -> pd.DataFrame:
    """One row per model: mean foreground / background concepts, λ = N_fg / (N_fg + N_bg), and distortion."""
    if not results:
        raise ValueError("results is empty; quantify concepts of at least one model first")
    rows = []
    for name, result in results.items():
        summary = result.summary()
        rows.append(
            {
                "model": name,
                "foreground concepts": summary["n_foreground"],
                "background concepts": summary["n_background"],
                "λ (foreground share)": summary["ratio"],
                "distortion": float(np.mean(result.distortion)),
                "images": summary["n_images"],
            }
        )
    return pd.DataFrame(rows)


def _spread(epochs: Sequence[int], most: int) -> list[int]:
    """At most `most` of `epochs`, evenly spread, the first and the last always among them."""
    epochs = list(epochs)
    if len(epochs) <= most:
        return epochs
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, most)).astype(int))
    return [epochs[i] for i in picks]


def concept_path_epochs(ws: Workspace, run_id: str) -> tuple[list[int], list[int]]:
    """(epochs of the weight path, epochs whose concepts are quantified) for a run's learning speed.

    The path runs through every saved checkpoint (at most `MAX_PATH_EPOCHS`, spread evenly): the
    paper's path when the run recorded epoch 0 and every epoch (``checkpoints`` = 0..epochs when
    it was trained), chords otherwise, from the first saved epoch. Concepts are quantified at up
    to `MAX_CONCEPT_EPOCHS` of them, spread evenly (each costs one `quantify_concepts`).
    """
    saved = sorted(int(epoch) for epoch in ws.record(run_id).checkpoints)
    if not saved:
        raise ValueError(f"run {run_id[:10]} has no saved checkpoints")
    path = _spread(saved, MAX_PATH_EPOCHS)
    return path, _spread(path, MAX_CONCEPT_EPOCHS)


class _StoredWeights(Mapping[int, dict[str, torch.Tensor]]):
    """A run's checkpoints as a mapping epoch → state dict, each read from the store only when asked for."""

    def __init__(self, ws: Workspace, run_id: str, epochs: Sequence[int]) -> None:
        self._ws, self._run_id, self._epochs = ws, run_id, list(epochs)

    def __getitem__(self, epoch: int) -> dict[str, torch.Tensor]:
        if epoch not in self._epochs:
            raise KeyError(epoch)
        return self._ws.store.load_weights(self._run_id, epoch)

    def __iter__(self):
        return iter(self._epochs)

    def __len__(self) -> int:
        return len(self._epochs)


def concept_dynamics_for(
    ws: Workspace, run_id: str, layer: str, indices: Sequence[int], *, b: float = 0.25
) -> ConceptDynamics:
    """`concept_dynamics` of a run: the distance along its saved weight path, concepts at up to 11 epochs.

    Which path and which epochs (`concept_path_epochs`) are in the result's `resolution`: "path
    over N epochs from initialisation" for a run that recorded epoch 0 and every epoch, "chords
    between K checkpoints, epoch 1 standing in for initialisation" for one that saved a few.
    """
    key = _key(np.asarray(list(indices)))

    def make() -> ConceptDynamics:
        images, masks = concept_inputs(ws, run_id, key)
        path, counted = concept_path_epochs(ws, run_id)
        models = {epoch: ws.model(run_id, epoch) for epoch in counted}
        grid = concept_grid_size(ws.dataset(run_id))
        weights = _StoredWeights(ws, run_id, path)
        return concept_dynamics(models, images, masks, layer, weights, grid=grid, b=b)

    return ws.cached(("repr_concept_dynamics", run_id, layer, key, b), make)


def dynamics_resolution(results: Mapping[str, ConceptDynamics]) -> str:
    """One line saying which weight path and epochs each model's D_mean / D_std rest on (shared when equal)."""
    if not results:
        raise ValueError("results is empty; compute concept dynamics of at least one model first")
    by_resolution: dict[str, list[str]] = {}
    for name, dynamics in results.items():
        by_resolution.setdefault(dynamics.resolution, []).append(name)
    if len(by_resolution) == 1:
        return f"Resolution: {next(iter(by_resolution))}."
    return (
        "Resolution: "
        + "; ".join(f"{', '.join(names)}: {resolution}" for resolution, names in by_resolution.items())
        + "."
    )


def dynamics_summary(results: Mapping[str, ConceptDynamics]) -> pd.DataFrame:
    """One row per model: learning speed (D_mean, D_std: weight distance until N_fg peaks) and stability ρ."""
    if not results:
        raise ValueError("results is empty; compute concept dynamics of at least one model first")
    return pd.DataFrame(
        [
            {
                "model": name,
                "D_mean": d.d_mean,
                "D_std": d.d_std,
                "ρ (stability)": d.rho,
                "peak epochs": ", ".join(str(e) for e in d.peak_epoch),
            }
            for name, d in results.items()
        ]
    )


# --------------------------------------------------------------------------- TCAV


@dataclass(frozen=True)
class TcavConcept:
    """A concept for TCAV: a name, what its examples show, and the examples (normalised model inputs)."""

    name: str
    description: str
    examples: torch.Tensor


def _shape_hues(dataset: Dataset, split: str) -> np.ndarray:
    """Hue in [0, 1) of each image's shape colour, read from the privileged clean view (shape on black)."""
    clean = getattr(dataset, f"privileged_{split}")
    raw = _raw_images(dataset, clean).clamp(0, 1)
    masks = dataset.masks(split)
    area = masks.sum(dim=(1, 2)).clamp(min=1)
    colour = (raw * masks[:, None]).sum(dim=(2, 3)) / area[:, None]
    return np.array([colorsys.rgb_to_hsv(*map(float, c))[0] for c in colour])


def _clutter_only(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Images with the shape replaced by other images' clutter at the same pixels (no shape left to see).

    Image i takes each shape pixel from the next image (i+1, i+2, ... cyclically) whose own shape
    does not cover that pixel; pixels covered in all of a few donors get the image's mean colour.
    """
    out = x.clone()
    todo = masks.clone()
    for shift in range(1, 6):
        donor, donor_masks = torch.roll(x, -shift, dims=0), torch.roll(masks, -shift, dims=0)
        take = todo & ~donor_masks
        out = torch.where(take[:, None], donor, out)
        todo &= ~take
    mean = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    return torch.where(todo[:, None], mean, out)


def _take(x: torch.Tensor, members: np.ndarray, n: int, seed: int) -> torch.Tensor:
    chosen = np.sort(np.random.default_rng(seed).permutation(np.flatnonzero(members))[:n])
    return x[torch.as_tensor(chosen, dtype=torch.long)]


def tcav_concepts(ws: Workspace, run_id: str, *, per_concept: int = 50, seed: int = 0) -> dict[str, TcavConcept]:
    """Concepts built from the validation split of the run's dataset, name → `TcavConcept`.

    Every dataset: ``class <name>`` (examples of one class — does looking like class j push class k?).
    `shapes` adds ``shape only`` (the clean shape on black), ``clutter only`` (the shape replaced by
    other images' clutter) and shape colours (``red shapes``, ... by the hue of the shape); `digits`
    adds ``bold strokes`` / ``thin strokes`` (top / bottom quarter by total ink).
    """

    def make() -> dict[str, TcavConcept]:
        dataset = ws.dataset(run_id)
        x, y = dataset.split("val")
        y_np = y.numpy()
        concepts: dict[str, TcavConcept] = {}

        def add(name: str, description: str, members: np.ndarray, source: torch.Tensor = x) -> None:
            if members.sum() >= MIN_CONCEPT_EXAMPLES:
                examples = _take(source, members, per_concept, seed)
                concepts[name] = TcavConcept(name, description, examples)

        masks = dataset.masks("val")
        if masks is not None and dataset.privileged_val is not None and dataset.name == "shapes":
            everyone = np.ones(len(y_np), dtype=bool)
            add("shape only", "the shape alone on black (no clutter)", everyone, dataset.privileged_val)
            add("clutter only", "background clutter with the shape removed", everyone, _clutter_only(x, masks.bool()))
            hues = _shape_hues(dataset, "val")
            for colour, centre in HUE_CONCEPTS.items():
                distance = np.minimum(np.abs(hues - centre), 1 - np.abs(hues - centre))
                add(
                    f"{colour} shapes",
                    f"shapes whose colour is {colour} (hue within 1/12 of {centre:.2f})",
                    distance < 1 / 12,
                )
        if dataset.name == "digits":
            ink = _raw_images(dataset, x).sum(dim=(1, 2, 3)).numpy()
            low, high = np.quantile(ink, [0.25, 0.75])
            add("bold strokes", "digits with the most ink (top quarter)", ink >= high)
            add("thin strokes", "digits with the least ink (bottom quarter)", ink <= low)
        for k, name in enumerate(dataset.class_names):
            add(f"class {name}", f"validation examples of class {name}", y_np == k)
        return concepts

    return ws.cached(("repr_tcav_concepts", run_id, per_concept, seed), make)


def _logit_gradients(ws: Workspace, run_id: str, layer: str, n: int = 8) -> torch.Tensor:
    """Gradient of the summed logits w.r.t. `layer`'s output on `n` fixed test inputs (n × features)."""
    model = ws.model(run_id)
    x, _ = ws.inputs(run_id)
    inputs = x[torch.as_tensor(subsample(len(x), n, seed=1))].clone().requires_grad_(True)
    with module_lock(model), FeatureTap(model, [layer]) as tap, torch.enable_grad():
        logits = model(inputs)
        (gradient,) = torch.autograd.grad(logits.sum(), tap.features[layer])
    return gradient.flatten(start_dim=1)


def tcav_layer(ws: Workspace, run_id: str) -> tuple[str, bool]:
    """The layer TCAV uses for a run, and whether its scores can vary between inputs.

    TCAV counts inputs whose class logit rises along the concept direction. Where the logits are
    a linear function of a layer (the penultimate vector, or a conv map followed only by average
    pooling), that derivative is the same for every input and each score is 0 or 1. So this picks
    the deepest feature layer whose logit gradient differs between inputs; if none does (e.g. a
    one-hidden-layer MLP), the deepest layer and False.
    """

    def make() -> tuple[str, bool]:
        names = list(ws.model(run_id).feature_layer_names)
        for layer in reversed(names):
            gradient = _logit_gradients(ws, run_id, layer)
            spread = float((gradient - gradient[:1]).abs().max())
            if spread > 1e-6 * max(float(gradient.abs().max()), 1e-12):
                return layer, True
        return names[-1], False

    return ws.cached(("repr_tcav_layer", run_id), make)


def tcav_table(
    ws: Workspace,
    runs: Mapping[str, str],
    layers: Mapping[str, str],
    target_class: int,
    concepts: Sequence[str],
    *,
    n_inputs: int = 100,
    n_random: int = 150,
    seed: int = 0,
) -> pd.DataFrame:
    """TCAV scores of `concepts` for `target_class`, one block of rows per model (`runs`: name → run id).

    Inputs are up to `n_inputs` test samples labelled `target_class` (Kim et al.'s X_k); random
    examples are `n_random` validation samples of all classes. `layers` gives each model's layer.
    Columns of `tcav_scores` plus ``model`` and ``run``.
    """
    if not concepts:
        raise ValueError("pick at least one concept")
    frames = []
    for name, run_id in runs.items():
        if ws.record(run_id).config.get("inputs") == "privileged":
            raise ValueError(f"{name} sees privileged inputs; TCAV concepts are built from the standard inputs")
        available = tcav_concepts(ws, run_id, seed=seed)
        unknown = [c for c in concepts if c not in available]
        if unknown:
            raise ValueError(f"unknown concept(s) {', '.join(unknown)}; available: {', '.join(available)}")
        layer = layers[name]
        key = ("repr_tcav", run_id, layer, int(target_class), tuple(concepts), n_inputs, n_random, seed)

        def make(run_id: str = run_id, layer: str = layer, available=available) -> pd.DataFrame:
            dataset = ws.dataset(run_id)
            x_test, y_test = dataset.split("test")
            x_val, _ = dataset.split("val")
            n_classes = dataset.num_classes
            if not 0 <= int(target_class) < n_classes:
                raise ValueError(f"target class {target_class} is out of range 0..{n_classes - 1}")
            inputs = _take(x_test, y_test.numpy() == int(target_class), n_inputs, seed)
            randoms = x_val[torch.as_tensor(subsample(len(x_val), n_random, seed + 1))]
            examples = {c: available[c].examples for c in concepts}
            return tcav_scores(ws.model(run_id), layer, examples, randoms, int(target_class), inputs, seed=seed)

        frame = ws.cached(key, make).copy()
        frame.insert(0, "model", name)
        frame.insert(1, "run", run_id)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
