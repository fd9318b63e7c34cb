"""Divergence inspector: every test sample by teacher/student confidence, and a drill-down into one sample."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdviz.analysis import (
    DIVERGENCE_CATEGORIES,
    SLICE_TARGETS,
    DecisionGrid,
    SliceSet,
    attribute,
    cluster_slices,
    explain_divergence,
    rank_divergence,
    rule_slices,
    slice_rates,
    slice_targets,
)
from kdviz.analysis.attributions import module_lock
from kdviz.analysis.token_attributions import TOKEN_METHODS, token_attributions
from kdviz.data.shapes import FACTOR_COLUMNS
from kdviz.data.text import PAD_ID
from kdviz.views.counterfactual import feature_names
from kdviz.workspace import ROLE_ORDER, Workspace

__all__ = [
    "ATTRIBUTION_TITLES",
    "CHEAP_ATTRIBUTIONS",
    "CLASS_FILTERS",
    "MAX_NEIGHBOUR_BANK",
    "SCATTER_AXES",
    "SLICE_SOURCES",
    "SLICE_TARGET_TITLES",
    "TEXT_ATTRIBUTIONS",
    "TEXT_COLUMNS",
    "SampleDrill",
    "ScatterAxes",
    "attribution_choices",
    "category_counts",
    "cosine_neighbours",
    "default_sample",
    "divergence_frame",
    "drill_down",
    "filter_divergence",
    "find_slices",
    "slice_checkpoints",
    "slice_comparison",
    "slice_metadata",
    "slice_sources",
    "slice_table_view",
    "neighbour_bank",
    "points_frame",
    "selected_indices",
    "student_choices",
    "table_view",
]

#: Attribution methods cheap enough for one click (one backward pass per model).
CHEAP_ATTRIBUTIONS = ("saliency", "input_x_gradient", "grad_cam")
#: Token attribution methods offered for text, gradient × embedding first (one backward pass per model).
TEXT_ATTRIBUTIONS = ("gradient_x_input", "integrated_gradients", "occlusion")
#: How the page names the token attribution methods (others go by their registered names).
ATTRIBUTION_TITLES = {
    "gradient_x_input": "gradient × embedding",
    "integrated_gradients": "integrated gradients",
    "occlusion": "occlusion by <unk>",
}
#: Metadata columns of text data that slice rules may use (the sentence itself is left out): name -> (label, unit).
TEXT_COLUMNS: dict[str, tuple[str, str]] = {
    "n_words": ("words", ""),
    "negation": ("negated", ""),
    "intensifier": ("intensified", ""),
    "conjunction": ("conjunction", ""),
    "n_clauses": ("clauses", ""),
    "majority": ("annotators' majority", ""),
    "agreement": ("annotator agreement", ""),
}
#: At most this many training samples are searched for neighbours (an evenly strided subset beyond it).
MAX_NEIGHBOUR_BANK = 1500
#: Which class column the class filter looks at.
CLASS_FILTERS = {"true class": "label", "teacher prediction": "teacher_pred", "student prediction": "student_pred"}


@dataclass(frozen=True)
class ScatterAxes:
    """Columns of `divergence_frame` drawn on x and y, with their axis titles."""

    x: str
    y: str
    x_title: str
    y_title: str


SCATTER_AXES: dict[str, ScatterAxes] = {
    "confidence": ScatterAxes(
        "teacher_conf", "student_conf", "Teacher confidence (top-label probability)", "Student confidence"
    ),
    "true-class probability": ScatterAxes(
        "teacher_true_prob",
        "student_true_prob",
        "Teacher probability of the true class",
        "Student probability of the true class",
    ),
    "KL vs teacher confidence": ScatterAxes(
        "teacher_conf", "kl", "Teacher confidence (top-label probability)", "KL(teacher ‖ student) (nats)"
    ),
}


def student_choices(roles: Mapping[str, str]) -> list[str]:
    """The student roles of a selection (everything but the teacher), in the app's role order."""
    known = [role for role in ROLE_ORDER if role != "teacher" and role in roles]
    return known + sorted(role for role in roles if role not in ROLE_ORDER)


def _check_pair(ws: Workspace, teacher_id: str, student_id: str, split: str) -> None:
    teacher, student = ws.record(teacher_id).config, ws.record(student_id).config
    if teacher["dataset"] != student["dataset"]:
        raise ValueError(
            f"teacher and student were trained on different datasets ({teacher['dataset'].get('name')} vs "
            f"{student['dataset'].get('name')}); pick two runs of one dataset"
        )
    if teacher_id == student_id:
        raise ValueError("teacher and student are the same run; pick a student run to compare with the teacher")


def divergence_frame(ws: Workspace, teacher_id: str, student_id: str, split: str = "test") -> pd.DataFrame:
    """One row per sample of `split`, most divergent (KL(teacher ‖ student)) first; shared, do not modify.

    Columns of `kdviz.analysis.rank_divergence` plus `label`, the class names `label_name`,
    `teacher_pred_name`, `student_pred_name`, and each model's probability of the true class
    (`teacher_true_prob`, `student_true_prob`); for text, the sentence (`text`).
    """

    def make() -> pd.DataFrame:
        _check_pair(ws, teacher_id, student_id, split)
        teacher_probs, student_probs = ws.probs(teacher_id, split), ws.probs(student_id, split)
        labels = ws.labels(teacher_id, split)
        frame = rank_divergence(teacher_probs, student_probs, labels)
        rows = frame["index"].to_numpy()
        names = np.asarray([str(name) for name in ws.dataset(teacher_id).class_names], dtype=object)
        frame.insert(1, "label", labels[rows].astype(np.int64))
        frame["teacher_true_prob"] = teacher_probs[rows, labels[rows]].astype(np.float64)
        frame["student_true_prob"] = student_probs[rows, labels[rows]].astype(np.float64)
        frame["label_name"] = names[frame["label"].to_numpy()]
        frame["teacher_pred_name"] = names[frame["teacher_pred"].to_numpy()]
        frame["student_pred_name"] = names[frame["student_pred"].to_numpy()]
        texts = _texts(ws, teacher_id, split)
        if texts is not None:
            frame["text"] = texts[rows]
        return frame

    return ws.cached(("divergence_frame", teacher_id, student_id, split), make)


def _texts(ws: Workspace, run_id: str, split: str) -> np.ndarray | None:
    """The sentences of a text split (its metadata's ``text`` column), None for other data."""
    data = ws.dataset(run_id)
    meta = data.metadata(split) if getattr(data, "input_kind", None) == "text" else None
    if meta is None or "text" not in meta:
        return None
    return meta["text"].astype(str).to_numpy(dtype=object)


def filter_divergence(
    frame: pd.DataFrame,
    *,
    classes: Iterable[int] | None = None,
    categories: Iterable[str] | None = None,
    class_filter: str = "true class",
) -> pd.DataFrame:
    """Rows whose class (see `CLASS_FILTERS`) is in `classes` and category in `categories` (None: all)."""
    if class_filter not in CLASS_FILTERS:
        raise ValueError(f"unknown class filter {class_filter!r}; valid filters: {', '.join(CLASS_FILTERS)}")
    keep = np.ones(len(frame), dtype=bool)
    if categories is not None:
        categories = list(categories)
        unknown = sorted(set(categories) - set(DIVERGENCE_CATEGORIES))
        if unknown:
            raise ValueError(
                f"unknown categories {', '.join(map(repr, unknown))}; valid: {', '.join(DIVERGENCE_CATEGORIES)}"
            )
        keep &= frame["category"].isin(categories).to_numpy()
    if classes is not None:
        keep &= frame[CLASS_FILTERS[class_filter]].isin([int(c) for c in classes]).to_numpy()
    return frame.loc[keep].reset_index(drop=True)


def category_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Samples per divergence category (every category listed, in display order), with their share."""
    counts = frame["category"].value_counts().reindex(list(DIVERGENCE_CATEGORIES), fill_value=0)
    total = max(int(counts.sum()), 1)
    return pd.DataFrame(
        {"category": list(DIVERGENCE_CATEGORIES), "samples": counts.to_numpy(), "share": counts.to_numpy() / total}
    )


def selected_indices(event: Any) -> list[int]:
    """Sample indices (the points' `customdata`) picked in a Plotly selection event, in order, without repeats.

    Accepts Streamlit's event object or a plain ``{"selection": {"points": [...]}}`` dict; a point's
    customdata may be the index itself or a list whose first entry is the index.
    """
    if event is None:
        return []
    selection = event.get("selection") if isinstance(event, Mapping) else getattr(event, "selection", None)
    if selection is None:
        return []
    points = selection.get("points") if isinstance(selection, Mapping) else getattr(selection, "points", None)
    indices: list[int] = []
    for point in points or []:
        custom = point.get("customdata") if isinstance(point, Mapping) else None
        if isinstance(custom, list | tuple | np.ndarray):
            custom = custom[0] if len(custom) else None
        if custom is None:
            continue
        try:
            index = int(custom)
        except (TypeError, ValueError):
            continue
        if index not in indices:
            indices.append(index)
    return indices


def attribution_choices(ws: Workspace, teacher_id: str, student_id: str) -> list[str]:
    """The cheap attribution methods both models support (Grad-CAM needs a conv layer in each); for text,
    the token attributions of `TEXT_ATTRIBUTIONS`."""
    if ws.dataset(teacher_id).input_kind == "text":
        return list(TEXT_ATTRIBUTIONS)
    has_conv = all(getattr(ws.model(rid), "last_conv_layer", None) for rid in (teacher_id, student_id))
    return [name for name in CHEAP_ATTRIBUTIONS if name != "grad_cam" or has_conv]


# --------------------------------------------------------------------------- neighbours


def cosine_neighbours(query: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `bank` (N×D) most cosine-similar to `query` (D): (positions, similarities), most similar first.

    Ties keep bank order. A zero vector has similarity 0 to everything.
    """
    if bank.ndim != 2 or query.ndim != 1 or query.shape[0] != bank.shape[1]:
        raise ValueError(
            f"query must be a D vector and bank an N×D matrix, got {tuple(query.shape)} and {tuple(bank.shape)}"
        )
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k must be in 1..{bank.shape[0]} (the number of candidates), got {k}")
    similarity = _unit_rows(bank) @ _unit_rows(query[None])[0]
    order = torch.argsort(-similarity, stable=True)[:k]
    return order.numpy().astype(np.int64), similarity[order].numpy()


def _unit_rows(rows: torch.Tensor) -> torch.Tensor:
    """Each row scaled to length 1 in float64 (zero rows stay zero), exact however short or long the row is.

    Rows are divided by their largest entry first, so tiny vectors (1e-200) neither underflow when
    squared nor get clamped by a fixed epsilon: the direction of a vector is what counts.
    """
    rows = rows.double()
    peak = rows.abs().amax(dim=1, keepdim=True)
    scaled = torch.where(peak > 0, rows / torch.where(peak > 0, peak, 1.0), 0.0)
    length = scaled.norm(dim=1, keepdim=True)
    return torch.where(length > 0, scaled / torch.where(length > 0, length, 1.0), 0.0)


@torch.no_grad()
def _embed(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    embed = getattr(model, "embed", model)
    with module_lock(model):
        parts = [embed(x[i : i + batch_size]).flatten(start_dim=1).float() for i in range(0, len(x), batch_size)]
    return torch.cat(parts)


def neighbour_bank(ws: Workspace, teacher_id: str) -> tuple[np.ndarray, torch.Tensor]:
    """(training indices, their teacher embeddings) searched for neighbours; cached per teacher.

    At most `MAX_NEIGHBOUR_BANK` training samples: all of them, or an evenly strided subset.
    """

    def make() -> tuple[np.ndarray, torch.Tensor]:
        x_train, _ = ws.inputs(teacher_id, "train")
        n = len(x_train)
        rows = np.arange(n) if n <= MAX_NEIGHBOUR_BANK else np.linspace(0, n - 1, MAX_NEIGHBOUR_BANK).astype(np.int64)
        features = _embed(ws.model(teacher_id), x_train[torch.from_numpy(rows)])
        return rows, features

    return ws.cached(("neighbour_bank", teacher_id), make)


# --------------------------------------------------------------------------- one sample


@dataclass
class SampleDrill:
    """One sample seen by teacher and student: predictions, attributions, neighbours, decision regions.

    `input` is the sample as the teacher sees it (normalised). Attributions explain each model's
    own predicted class and have the shape `attribute` returns for one sample. `neighbours` lists
    the nearest training samples in the teacher's embedding space (cosine): ``train_index,
    similarity, label, label_name``; `neighbour_inputs` holds their inputs (k×…) and
    `bank_size`/`train_size` say how many training samples were searched out of how many.
    `grid` is set for 2-D point data only. For text, `input` holds the token ids, `text` the sentence,
    `words` the tokens the models see (unknown words as ``<unk>``), the attributions one score per
    word (`kdviz.analysis.token_attributions`), and `neighbours` a ``text`` column.
    """

    index: int
    label: int
    class_names: list[str]
    input_kind: str
    input: np.ndarray
    teacher_probs: np.ndarray
    student_probs: np.ndarray
    kl: float
    attribution_method: str
    teacher_attribution: np.ndarray
    student_attribution: np.ndarray
    neighbours: pd.DataFrame
    neighbour_inputs: np.ndarray
    bank_size: int
    train_size: int
    grid: DecisionGrid | None
    text: str | None = None
    words: list[str] | None = None

    @property
    def teacher_prediction(self) -> int:
        return int(self.teacher_probs.argmax())

    @property
    def student_prediction(self) -> int:
        return int(self.student_probs.argmax())


def _attribution(ws: Workspace, run_id: str, split: str, index: int, target: int, method: str) -> np.ndarray:
    x, _ = ws.inputs(run_id, split)
    if ws.dataset(run_id).input_kind == "text":
        if method not in TOKEN_METHODS:
            raise ValueError(f"text takes token attributions: {', '.join(TEXT_ATTRIBUTIONS)}; got {method!r}")
        return token_attributions(ws.model(run_id), x[index : index + 1], [target], method)[0]
    return attribute(ws.model(run_id), x[index : index + 1], target, method)[0].numpy()


def _neighbours(ws: Workspace, teacher_id: str, sample: torch.Tensor, k: int) -> tuple[pd.DataFrame, np.ndarray, int]:
    rows, bank = neighbour_bank(ws, teacher_id)
    query = _embed(ws.model(teacher_id), sample)[0]
    positions, similarity = cosine_neighbours(query, bank, min(k, len(rows)))
    train_index = rows[positions]
    x_train, y_train = ws.inputs(teacher_id, "train")
    labels = y_train.numpy()[train_index]
    names = [str(name) for name in ws.dataset(teacher_id).class_names]
    table = pd.DataFrame(
        {
            "train_index": train_index,
            "similarity": similarity,
            "label": labels.astype(np.int64),
            "label_name": [names[label] for label in labels],
        }
    )
    texts = _texts(ws, teacher_id, "train")
    if texts is not None:
        table["text"] = texts[train_index]
    return table, x_train[torch.from_numpy(train_index)].numpy(), len(x_train)


def drill_down(
    ws: Workspace,
    teacher_id: str,
    student_id: str,
    index: int,
    *,
    method: str = "saliency",
    k_neighbours: int = 6,
    neighbours: bool = True,
    split: str = "test",
    grid_size: int = 80,
) -> SampleDrill:
    """Everything the inspector shows for sample `index` of `split` (cached per pair, sample and options).

    `neighbours=False` skips the neighbour search (the first search embeds the training set once per
    teacher). Attributions use `method` (any registered name; the app offers `CHEAP_ATTRIBUTIONS`, and
    `TEXT_ATTRIBUTIONS` for text).
    """
    _check_pair(ws, teacher_id, student_id, split)
    x, y = ws.inputs(teacher_id, split)
    if not (isinstance(index, int | np.integer) and 0 <= int(index) < len(x)):
        raise ValueError(f"sample {index} is out of range: split {split!r} has {len(x)} samples (0..{len(x) - 1})")
    if k_neighbours < 1:
        raise ValueError(f"k_neighbours must be at least 1, got {k_neighbours}")
    index = int(index)

    def make() -> SampleDrill:
        data = ws.dataset(teacher_id)
        teacher_probs = np.asarray(ws.probs(teacher_id, split)[index], dtype=np.float64)
        student_probs = np.asarray(ws.probs(student_id, split)[index], dtype=np.float64)
        frame = divergence_frame(ws, teacher_id, student_id, split)
        kl = float(frame.loc[frame["index"] == index, "kl"].iloc[0])
        teacher_attr = _attribution(ws, teacher_id, split, index, int(teacher_probs.argmax()), method)
        student_attr = _attribution(ws, student_id, split, index, int(student_probs.argmax()), method)
        table, inputs, train_size = pd.DataFrame(columns=["train_index", "similarity", "label", "label_name"]), None, 0
        if neighbours:
            table, inputs, train_size = _neighbours(ws, teacher_id, x[index : index + 1], k_neighbours)
        grid = None
        if data.input_kind == "points" and tuple(data.input_shape) == (2,):
            teacher, student = ws.model(teacher_id), ws.model(student_id)
            explained = explain_divergence(
                teacher, student, data, index, split=split, k_neighbours=1, grid_size=grid_size
            )
            grid = explained.decision_grid
        texts = _texts(ws, teacher_id, split)
        words = None
        if data.input_kind == "text":
            words = [data.vocabulary[int(t)] for t in x[index] if int(t) != PAD_ID]
        return SampleDrill(
            index=index,
            label=int(y[index]),
            class_names=[str(name) for name in data.class_names],
            input_kind=data.input_kind,
            input=x[index].numpy(),
            teacher_probs=teacher_probs,
            student_probs=student_probs,
            kl=kl,
            attribution_method=method,
            teacher_attribution=teacher_attr,
            student_attribution=student_attr,
            neighbours=table,
            neighbour_inputs=inputs if inputs is not None else np.zeros((0, *x.shape[1:]), dtype=np.float32),
            bank_size=len(neighbour_bank(ws, teacher_id)[0]) if neighbours else 0,
            train_size=train_size,
            grid=grid,
            text=None if texts is None else str(texts[index]),
            words=words,
        )

    key = ("drill_down", teacher_id, student_id, split, index, method, k_neighbours if neighbours else 0, grid_size)
    return ws.cached(key, make)


def default_sample(frame: pd.DataFrame, wanted: int | None) -> int | None:
    """`wanted` when it is a sample of `frame`, else the most divergent one (None for an empty frame)."""
    if wanted is not None and int(wanted) in set(frame["index"].tolist()):
        return int(wanted)
    return int(frame["index"].iloc[0]) if len(frame) else None


def table_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns the sortable table shows, renamed for people."""
    columns = {
        "index": "sample",
        "text": "sentence",
        "label_name": "true class",
        "teacher_pred_name": "teacher predicts",
        "student_pred_name": "student predicts",
        "category": "category",
        "kl": "KL(teacher‖student)",
        "teacher_conf": "teacher confidence",
        "student_conf": "student confidence",
        "teacher_true_prob": "teacher p(true)",
        "student_true_prob": "student p(true)",
    }
    return frame[[c for c in columns if c in frame]].rename(columns=columns)


def points_frame(ws: Workspace, run_id: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(x N×2, labels) of 2-D point data for drawing behind decision regions."""
    x, y = ws.inputs(run_id, split)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision regions need 2-D point data; this dataset's inputs have shape {tuple(x.shape[1:])}")
    return x.numpy(), y.numpy()


# --------------------------------------------------------------------------- slices

#: Where slices come from: rules over per-sample metadata, or clusters of a model's features.
SLICE_SOURCES = {
    "metadata rules": "rules",
    "teacher feature clusters": "teacher",
    "student feature clusters": "student",
}
#: What a slice explains, as the page names it.
SLICE_TARGET_TITLES = {
    "disagreement": "disagreement with the teacher",
    "student_error": "student error",
    "kl": "KL(teacher ‖ student)",
}


def slice_metadata(ws: Workspace, run_id: str, split: str = "test") -> tuple[pd.DataFrame | None, dict]:
    """(metadata frame or None, column -> (label, unit)) that rules may use for `split` of the run's dataset.

    The dataset's own metadata (the generating factors of `shapes`, columns a user marked) with the
    true class added when it is not already there; for tabular and 2-D point data without metadata,
    the input features in their original units; for text, the sentence's columns of `TEXT_COLUMNS`
    (a sentence's length in words always, from the text itself), never the sentence. None for images,
    signals and own pairs without metadata: they get feature-space clusters instead.
    """

    def make() -> tuple[pd.DataFrame | None, dict]:
        data = ws.dataset(run_id)
        names = np.asarray([str(name) for name in data.class_names], dtype=object)
        labels = ws.labels(run_id, split)
        meta = data.metadata(split)
        columns = dict(FACTOR_COLUMNS) if data.name == "shapes" else {}
        if data.input_kind in ("tabular", "points"):  # the features in their own units, then any metadata
            x, _ = data.split(split)
            mean = np.asarray(data.normalization.get("mean", [0.0]), dtype=np.float64)
            std = np.asarray(data.normalization.get("std", [1.0]), dtype=np.float64)
            raw = x.numpy().astype(np.float64) * std + mean
            features = pd.DataFrame({name: raw[:, j] for j, name in enumerate(feature_names(ws, run_id))})
            if meta is not None:
                extra = meta.reset_index(drop=True)
                features = pd.concat([features.drop(columns=[c for c in extra if c in features]), extra], axis=1)
            meta = features
        if data.input_kind == "text" and meta is not None:
            meta = meta.reset_index(drop=True)
            if "n_words" not in meta and "text" in meta:
                meta = meta.assign(n_words=meta["text"].astype(str).str.split().str.len())
            meta = meta[[c for c in TEXT_COLUMNS if c in meta]]
            columns.update({c: TEXT_COLUMNS[c] for c in meta})
        if meta is None:
            return None, {}
        meta = meta.reset_index(drop=True).copy()
        if "shape" not in meta.columns or data.name != "shapes":
            meta.insert(0, "class", pd.Categorical(names[labels], categories=list(names)))
            columns["class"] = ("class", "")
        return meta, columns

    return ws.cached(("slice_metadata", run_id, split), make)


def slice_sources(ws: Workspace, teacher_id: str, split: str = "test") -> list[str]:
    """The names of `SLICE_SOURCES` that work for this dataset (rules need metadata), rules first."""
    names = list(SLICE_SOURCES)
    if slice_metadata(ws, teacher_id, split)[0] is None:
        names.remove("metadata rules")
    return names


def _features(ws: Workspace, run_id: str, split: str) -> np.ndarray:
    def make() -> np.ndarray:
        x, _ = ws.inputs(run_id, split)
        return _embed(ws.model(run_id), x).numpy()

    return ws.cached(("slice_features", run_id, split), make)


def _check_slice_options(target: str, source: str) -> None:
    if target not in SLICE_TARGETS:
        raise ValueError(f"unknown slice target {target!r}; valid: {', '.join(SLICE_TARGETS)}")
    if source not in ("auto", *SLICE_SOURCES.values()):
        raise ValueError(f"unknown slice source {source!r}; valid: auto, {', '.join(SLICE_SOURCES.values())}")


def find_slices(
    ws: Workspace,
    teacher_id: str,
    student_id: str,
    *,
    target: str = "disagreement",
    source: str = "auto",
    split: str = "test",
    max_slices: int = 6,
    n_clusters: int = 8,
) -> SliceSet:
    """Slices of `split` where the student's `target` (see `SLICE_TARGETS`) is well above its base rate.

    `source`: ``rules`` (a shallow tree over `slice_metadata`), ``teacher`` / ``student`` (k-means
    clusters of that model's penultimate features), or ``auto`` (rules when there is metadata, else
    teacher clusters). Cached per run ids and options.
    """
    _check_slice_options(target, source)

    def make() -> SliceSet:
        _check_pair(ws, teacher_id, student_id, split)
        targets = slice_targets(ws.probs(teacher_id, split), ws.probs(student_id, split), ws.labels(teacher_id, split))
        meta, columns = slice_metadata(ws, teacher_id, split)
        kind = source if source != "auto" else ("rules" if meta is not None else "teacher")
        common = dict(
            target_name=target,
            teacher_correct=targets["teacher_correct"],
            student_correct=targets["student_correct"],
            max_slices=max_slices,
        )
        if kind == "rules":
            if meta is None:
                raise ValueError(
                    "this dataset has no per-sample metadata to write rules over; use feature clusters instead"
                )
            return rule_slices(meta, targets[target], labels=columns, **common)
        features = _features(ws, teacher_id if kind == "teacher" else student_id, split)
        names = [str(name) for name in ws.dataset(teacher_id).class_names]
        return cluster_slices(
            features, targets[target], class_names=names, labels=ws.labels(teacher_id, split), metadata=meta,
            metadata_labels=columns, n_clusters=min(n_clusters, len(features)), **common,
        )  # fmt: skip

    key = ("find_slices", teacher_id, student_id, target, source, split, max_slices, n_clusters)
    return ws.cached(key, make)


def slice_comparison(
    ws: Workspace,
    teacher_id: str,
    student_id: str,
    students: Mapping[str, str],
    *,
    target: str = "disagreement",
    source: str = "auto",
    split: str = "test",
) -> pd.DataFrame:
    """The slices found for `student_id`, measured on every student of `students` (role -> run id).

    One row per (slice, role): `slice` ("all" first, then R1/C1…), `role`, `size`, `rate`,
    `ci_low`, `ci_high`; for the student-error target the teacher's error joins as role
    ``teacher``. Does distillation close the gap on a slice? Compare the roles' rates there.
    """
    _check_slice_options(target, source)

    def make() -> pd.DataFrame:
        slices = find_slices(ws, teacher_id, student_id, target=target, source=source, split=split)
        n = len(ws.labels(teacher_id, split))
        masks = np.vstack([np.ones((1, n), dtype=bool), slices.masks]) if len(slices.masks) else np.ones((1, n), bool)
        names = ["all", *slices.table["slice"].tolist()]
        roles = dict(students)
        frames = []
        if target == "student_error":
            teacher_error = ~slice_targets(
                ws.probs(teacher_id, split), ws.probs(teacher_id, split), ws.labels(teacher_id, split)
            )["teacher_correct"]
            frames.append(slice_rates(masks, teacher_error).assign(role="teacher"))
        for role, run_id in roles.items():
            _check_pair(ws, teacher_id, run_id, split)
            values = slice_targets(ws.probs(teacher_id, split), ws.probs(run_id, split), ws.labels(teacher_id, split))
            frames.append(slice_rates(masks, values[target]).assign(role=role))
        frame = pd.concat(frames, ignore_index=True)
        frame["slice"] = [names[i] for i in frame["slice"]]
        return frame[["slice", "role", "size", "rate", "ci_low", "ci_high"]]

    key = ("slice_comparison", teacher_id, student_id, tuple(sorted(students.items())), target, source, split)
    return ws.cached(key, make)


def slice_checkpoints(
    ws: Workspace,
    teacher_id: str,
    student_id: str,
    *,
    target: str = "disagreement",
    source: str = "auto",
    split: str = "test",
) -> pd.DataFrame:
    """The student's rate on each slice at each of its saved checkpoints (against the final teacher).

    One row per (epoch, slice) with `epoch`, `slice` ("all" and the slice names), `rate`,
    `ci_low`, `ci_high`: when does a slice open, and does it close?
    """
    _check_slice_options(target, source)

    def make() -> pd.DataFrame:
        slices = find_slices(ws, teacher_id, student_id, target=target, source=source, split=split)
        n = len(ws.labels(teacher_id, split))
        masks = np.vstack([np.ones((1, n), dtype=bool), slices.masks]) if len(slices.masks) else np.ones((1, n), bool)
        names = ["all", *slices.table["slice"].tolist()]
        frames = []
        for epoch in ws.record(student_id).checkpoints:
            values = slice_targets(
                ws.probs(teacher_id, split), ws.probs(student_id, split, epoch), ws.labels(teacher_id, split)
            )
            frames.append(slice_rates(masks, values[target]).assign(epoch=int(epoch)))
        frame = pd.concat(frames, ignore_index=True)
        frame["slice"] = [names[i] for i in frame["slice"]]
        return frame[["epoch", "slice", "size", "rate", "ci_low", "ci_high"]]

    return ws.cached(("slice_checkpoints", teacher_id, student_id, target, source, split), make)


def slice_table_view(slices: SliceSet) -> pd.DataFrame:
    """The ranked slice table as the page shows it, columns renamed for people."""
    rate = SLICE_TARGET_TITLES.get(slices.target, slices.target)
    columns = {
        "slice": "slice",
        "rule": "where" if slices.source == "rules" else "cluster",
        "size": "samples",
        "rate": rate,
        "ci_low": "95% CI low",
        "ci_high": "95% CI high",
        "lift": "× base rate",
        "teacher_accuracy": "teacher accuracy",
        "student_accuracy": "student accuracy",
    }
    view = slices.table[list(columns)].rename(columns=columns)
    if "examples" in slices.table:
        view["nearest samples"] = [", ".join(f"#{i}" for i in ex) for ex in slices.table["examples"]]
    return view
