"""One sample where teacher and student diverge: both predictions, attributions, neighbours and boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdviz.analysis.attributions import attribute, eval_mode, module_lock, to_model_inputs
from kdviz.analysis.fidelity import _kl_rows
from kdviz.data.dataset import Dataset

__all__ = ["DecisionGrid", "DivergenceExplanation", "explain_divergence"]


@dataclass
class DecisionGrid:
    """Both models' predictions on a regular grid over 2-D inputs (for drawing decision regions).

    `x` (G) and `y` (G) are the grid coordinates (in the dataset's normalised units); the
    probability arrays are G×G×K indexed [row = y, column = x]; `*_class` are their argmaxes.
    `point` is the explained sample. `*_boundary_distance` says where the sample sits relative to
    each model's decision boundary: the Euclidean distance from `point` to the nearest grid point
    that the model assigns to another class than the sample's own prediction (accurate to about
    one grid step; NaN when the whole grid gets that class).
    """

    x: np.ndarray
    y: np.ndarray
    teacher_probs: np.ndarray
    student_probs: np.ndarray
    teacher_class: np.ndarray
    student_class: np.ndarray
    point: np.ndarray
    teacher_boundary_distance: float
    student_boundary_distance: float


@dataclass
class DivergenceExplanation:
    """One sample seen by teacher and student (`explain_divergence`).

    Attributions explain each model's `*_target` logit and have the shape `attribute` returns.
    Neighbour tables list the `k` nearest training samples in each model's penultimate feature
    space (Euclidean): ``train_index, distance, label``; `shared_neighbours` counts the training
    samples both lists contain. `decision_grid` is set for 2-D point data only.
    """

    index: int
    split: str
    label: int
    class_names: list[str]
    input: np.ndarray
    teacher_probs: np.ndarray
    student_probs: np.ndarray
    kl_teacher_student: float
    attribution_method: str
    teacher_target: int
    student_target: int
    teacher_attribution: np.ndarray
    student_attribution: np.ndarray
    teacher_neighbours: pd.DataFrame
    student_neighbours: pd.DataFrame
    shared_neighbours: int
    decision_grid: DecisionGrid | None

    @property
    def teacher_prediction(self) -> int:
        return int(self.teacher_probs.argmax())

    @property
    def student_prediction(self) -> int:
        return int(self.student_probs.argmax())


@torch.no_grad()
def _probs(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    with module_lock(model), eval_mode(model):
        parts = [
            torch.softmax(model(to_model_inputs(x[i : i + batch_size], model)).float(), dim=1).cpu()
            for i in range(0, len(x), batch_size)
        ]
    return torch.cat(parts).numpy().astype(np.float64)


@torch.no_grad()
def _embedding(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Penultimate features (`model.embed`), or the logits for a model without `embed`."""
    embed = getattr(model, "embed", model)
    with module_lock(model), eval_mode(model):
        parts = [
            embed(to_model_inputs(x[i : i + batch_size], model)).flatten(start_dim=1).float().cpu()
            for i in range(0, len(x), batch_size)
        ]
    return torch.cat(parts)


def _neighbours(
    model: nn.Module, sample: torch.Tensor, x_train: torch.Tensor, y_train: torch.Tensor, k: int
) -> pd.DataFrame:
    train_features = _embedding(model, x_train)
    query = _embedding(model, sample)
    distance = torch.cdist(query, train_features)[0]
    order = torch.argsort(distance, stable=True)[:k]
    return pd.DataFrame(
        {
            "train_index": order.numpy().astype(np.int64),
            "distance": distance[order].numpy().astype(np.float64),
            "label": y_train[order].cpu().numpy().astype(np.int64),
        }
    )


def _decision_grid(
    teacher: nn.Module,
    student: nn.Module,
    x_train: torch.Tensor,
    point: torch.Tensor,
    size: int,
    teacher_point_class: int,
    student_point_class: int,
) -> DecisionGrid:
    both = torch.cat([x_train.float().cpu(), point.float().cpu()])
    low, high = both.min(dim=0).values, both.max(dim=0).values
    margin = 0.1 * (high - low).clamp_min(1e-6)
    xs = torch.linspace(float(low[0] - margin[0]), float(high[0] + margin[0]), size)
    ys = torch.linspace(float(low[1] - margin[1]), float(high[1] + margin[1]), size)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    teacher_probs = _probs(teacher, points).reshape(size, size, -1)
    student_probs = _probs(student, points).reshape(size, size, -1)
    point_xy = point[0].float().cpu().numpy().astype(np.float64)
    grid_xy = points.double().numpy()
    return DecisionGrid(
        x=xs.numpy().astype(np.float64),
        y=ys.numpy().astype(np.float64),
        teacher_probs=teacher_probs,
        student_probs=student_probs,
        teacher_class=teacher_probs.argmax(axis=2),
        student_class=student_probs.argmax(axis=2),
        point=point_xy,
        teacher_boundary_distance=_boundary_distance(teacher_probs, int(teacher_point_class), grid_xy, point_xy),
        student_boundary_distance=_boundary_distance(student_probs, int(student_point_class), grid_xy, point_xy),
    )


def _boundary_distance(grid_probs: np.ndarray, point_class: int, grid_xy: np.ndarray, point_xy: np.ndarray) -> float:
    """Distance from the point to the nearest grid point predicted as another class (NaN if none)."""
    other = grid_probs.reshape(-1, grid_probs.shape[-1]).argmax(axis=1) != point_class
    if not other.any():
        return float("nan")
    return float(np.linalg.norm(grid_xy[other] - point_xy, axis=1).min())


def explain_divergence(
    teacher: nn.Module,
    student: nn.Module,
    dataset: Dataset,
    index: int,
    *,
    split: str = "test",
    attribution: str = "saliency",
    k_neighbours: int = 5,
    target: Literal["predicted", "label"] | int = "predicted",
    grid_size: int = 100,
    **attribution_options: Any,
) -> DivergenceExplanation:
    """Explain sample `index` of `split`: both models' probabilities, attributions, neighbours, boundaries.

    Attributions use `attribution` (any name in `ATTRIBUTION_METHODS`, options passed through) for
    ``target="predicted"`` (each model's own predicted class, default), ``"label"`` (the true
    class) or a fixed class index. Neighbours are the `k_neighbours` nearest training samples in
    each model's `embed` space (logits for a model without `embed`). For 2-D point data,
    `decision_grid` holds both models' predictions on a `grid_size`² grid spanning the training
    data (10% margin) and the sample, and each model's distance from the sample to its decision
    boundary. `kl_teacher_student` is KL(teacher‖student) in nats. Models and dataset may live on
    any devices; every returned array is on the CPU.
    """
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be a kdviz Dataset (see kdviz.data.load_dataset), got {type(dataset).__name__}")
    x_split, y_split = dataset.split(split)
    n = len(x_split)
    if not (isinstance(index, int | np.integer) and 0 <= int(index) < n):
        raise ValueError(f"index {index} is out of range for split {split!r} with {n} samples (0..{n - 1})")
    index = int(index)
    if not 1 <= k_neighbours <= len(dataset.x_train):
        raise ValueError(
            f"k_neighbours must be in 1..{len(dataset.x_train)} (the training set size), got {k_neighbours}"
        )
    draws_grid = dataset.input_kind == "points" and tuple(dataset.input_shape) == (2,)
    if draws_grid and grid_size < 2:
        raise ValueError(f"grid_size must be at least 2, got {grid_size}")
    sample = x_split[index : index + 1]
    label = int(y_split[index])

    teacher_probs = _probs(teacher, sample)[0]
    student_probs = _probs(student, sample)[0]
    if teacher_probs.shape != student_probs.shape:
        raise ValueError(
            f"teacher has {teacher_probs.shape[0]} outputs but student has {student_probs.shape[0]}; they must match"
        )
    kl = float(_kl_rows(teacher_probs[None], student_probs[None])[0])

    def target_for(probs: np.ndarray) -> int:
        if target == "predicted":
            return int(probs.argmax())
        if target == "label":
            return label
        if isinstance(target, int | np.integer) and 0 <= int(target) < len(probs):
            return int(target)
        raise ValueError(f"target must be 'predicted', 'label' or a class index in 0..{len(probs) - 1}, got {target!r}")

    teacher_target, student_target = target_for(teacher_probs), target_for(student_probs)
    teacher_attr = attribute(teacher, sample, teacher_target, attribution, **attribution_options)[0].numpy()
    student_attr = attribute(student, sample, student_target, attribution, **attribution_options)[0].numpy()

    teacher_nn = _neighbours(teacher, sample, dataset.x_train, dataset.y_train, k_neighbours)
    student_nn = _neighbours(student, sample, dataset.x_train, dataset.y_train, k_neighbours)
    shared = len(set(teacher_nn["train_index"]) & set(student_nn["train_index"]))

    grid = None
    if draws_grid:
        grid = _decision_grid(
            teacher, student, dataset.x_train, sample, grid_size, teacher_probs.argmax(), student_probs.argmax()
        )

    return DivergenceExplanation(
        index=index,
        split=split,
        label=label,
        class_names=list(dataset.class_names),
        input=sample[0].float().cpu().numpy(),
        teacher_probs=teacher_probs,
        student_probs=student_probs,
        kl_teacher_student=kl,
        attribution_method=attribution,
        teacher_target=teacher_target,
        student_target=student_target,
        teacher_attribution=teacher_attr,
        student_attribution=student_attr,
        teacher_neighbours=teacher_nn,
        student_neighbours=student_nn,
        shared_neighbours=shared,
        decision_grid=grid,
    )
