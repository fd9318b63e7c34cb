"""The dark-knowledge lesson: a teacher's softened targets, class similarity, the KD loss and its gradient,
DKD's target / non-target split and label smoothing vs KD targets, for one sample of a real run.

Per-sample functions take 1-D logit vectors (numpy or torch) and return numpy values; the two
workspace functions (`lesson_sample`, `class_similarity`) read cached logits by run id.
All losses go through `kdviz.distill.losses.response`, so the lesson shows exactly
what training optimises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kdviz.distill.losses.response import (
    check_alpha,
    dkd_parts,
    hinton_kd,
    kd_kl,
    label_smoothing_targets,
    soft_targets,
)
from kdviz.workspace import Workspace

__all__ = [
    "DKDSplit",
    "KDTerms",
    "LessonSample",
    "SmoothingComparison",
    "class_similarity",
    "collapse",
    "dkd_split",
    "instructive_samples",
    "kd_loss_and_gradient",
    "lesson_sample",
    "loss_over_temperature",
    "max_label_smoothing",
    "mean_soft_targets",
    "soften",
    "top_classes",
    "smoothing_vs_kd",
]

#: Temperatures of the loss-vs-T curve: geometric from 0.5 to 20, the range of the lesson's slider.
DEFAULT_TEMPERATURES = tuple(float(t) for t in np.geomspace(0.5, 20.0, 60))


# --------------------------------------------------------------------------- input checks


def _temperature(temperature: float) -> float:
    if not isinstance(temperature, (int, float, np.floating, np.integer)) or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite positive number, got {temperature!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return float(temperature)


def _logit_vector(logits: Any, name: str) -> torch.Tensor:
    """`logits` as a finite float64 1-D tensor of at least two classes."""
    if isinstance(logits, torch.Tensor):
        vector = logits.detach().cpu().to(torch.float64)
    else:
        try:
            vector = torch.as_tensor(np.asarray(logits, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} could not be converted to a vector of logits: {err}") from err
    if vector.ndim != 1 or vector.shape[0] < 2:
        shape = tuple(vector.shape)
        raise ValueError(f"{name} must be a 1-D vector of logits over at least 2 classes, got shape {shape}")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return vector


def _pair(student_logits: Any, teacher_logits: Any) -> tuple[torch.Tensor, torch.Tensor]:
    student = _logit_vector(student_logits, "student_logits")
    teacher = _logit_vector(teacher_logits, "teacher_logits")
    if student.shape != teacher.shape:
        raise ValueError(
            f"student_logits has {student.shape[0]} classes but teacher_logits has {teacher.shape[0]}; they must match"
        )
    return student, teacher


def _label(label: Any, num_classes: int) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < num_classes:
        raise ValueError(f"label must be a class index in 0..{num_classes - 1}, got {label!r}")
    return int(label)


# --------------------------------------------------------------------------- soft targets


def soften(logits: Any, temperature: float) -> np.ndarray:
    """softmax(logits / T) over the last axis, as float64 numpy (a K vector or an N×K matrix)."""
    t = _temperature(temperature)
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    if z.ndim not in (1, 2) or z.shape[-1] < 2:
        raise ValueError(f"logits must be a K vector or an N×K matrix with K >= 2, got shape {tuple(z.shape)}")
    return soft_targets(z, t).numpy()


def mean_soft_targets(logits: Any, labels: Any, temperature: float, *, non_target: bool = False) -> np.ndarray:
    """K×K matrix: row i is the mean soft target (at T) of the samples whose true class is i.

    With `non_target=True` each soft target first loses its true-class entry and is renormalised
    over the other classes, so row i shows which wrong classes the teacher finds close to class i
    (the diagonal is 0). A class without samples gets a row of NaN.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be an N×K matrix with K >= 2, got shape {tuple(z.shape)}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},) to match the logits, got {tuple(y.shape)}")
    k = z.shape[1]
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= k)):
        raise ValueError(f"labels must be integer class indices in 0..{k - 1}")
    probs = soften(z, temperature)
    if non_target:
        probs = probs.copy()
        probs[np.arange(len(y)), y] = 0.0
        probs /= probs.sum(axis=1, keepdims=True)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sums = np.zeros((k, k))
    np.add.at(sums, y, probs)
    with np.errstate(invalid="ignore"):
        return sums / counts[:, None]


def instructive_samples(teacher_logits: Any, labels: Any, count: int = 50) -> np.ndarray:
    """Samples whose soft targets (T = 1) teach the most: the teacher is right with probability >= 0.5 and
    gives the most to a runner-up class. Indices, largest runner-up probability first (at most `count`).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    probs = soften(teacher_logits, 1.0)
    if probs.ndim != 2:
        raise ValueError(f"teacher_logits must be an N×K matrix, got shape {tuple(probs.shape)}")
    y = np.asarray(labels)
    if y.shape != (probs.shape[0],):
        raise ValueError(f"labels must have shape ({probs.shape[0]},) to match the logits, got {tuple(y.shape)}")
    ranked = np.sort(probs, axis=1)
    eligible = (probs.argmax(axis=1) == y) & (ranked[:, -1] >= 0.5)
    order = np.argsort(-ranked[:, -2], kind="stable")
    return order[eligible[order]][: int(count)]


def top_classes(probs: Any, label: int, limit: int = 20) -> np.ndarray:
    """The classes to draw when there are too many: the true class and the most probable others, in class order.

    With at most `limit` classes, all of them.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"probs must be a K vector, got shape {tuple(p.shape)}")
    y = _label(label, p.shape[0])
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 2:
        raise ValueError(f"limit must be an integer >= 2, got {limit!r}")
    if p.shape[0] <= limit:
        return np.arange(p.shape[0])
    others = [k for k in np.argsort(-p, kind="stable") if k != y][: limit - 1]
    return np.sort(np.array([y, *others]))


def collapse(probs: Any, classes: Sequence[int]) -> np.ndarray:
    """`probs` of `classes` followed by the total probability of all other classes (still sums to 1)."""
    p = np.asarray(probs, dtype=np.float64)
    kept = p[np.asarray(classes, dtype=np.int64)]
    return np.append(kept, max(float(p.sum() - kept.sum()), 0.0))


# --------------------------------------------------------------------------- one sample of real runs


@dataclass(frozen=True)
class LessonSample:
    """One test sample: its input (normalised, as the dataset stores it), label and both models' logits."""

    index: int
    label: int
    x: np.ndarray
    teacher_logits: np.ndarray
    student_logits: np.ndarray | None
    class_names: list[str]
    input_kind: str


def lesson_sample(
    ws: Workspace, teacher_id: str, student_id: str | None, index: int, split: str = "test"
) -> LessonSample:
    """Sample `index` of `split` with the teacher's (and the student's, if any) real logits."""
    data = ws.dataset(teacher_id)
    x, y = data.split(split)
    n = int(y.shape[0])
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
        raise ValueError(f"sample index must be in 0..{n - 1} for the {split} split of {data.name}, got {index!r}")
    index = int(index)
    teacher = ws.logits(teacher_id, split)
    student = None
    if student_id is not None:
        student_all = ws.logits(student_id, split)
        if student_all.shape != teacher.shape:
            raise ValueError(
                f"student logits {student_all.shape} do not match the teacher's {teacher.shape}: "
                "pick a student trained on the same dataset"
            )
        student = np.array(student_all[index], dtype=np.float64)
    return LessonSample(
        index=index,
        label=int(y[index]),
        x=x[index].numpy(),
        teacher_logits=np.array(teacher[index], dtype=np.float64),
        student_logits=student,
        class_names=list(data.class_names),
        input_kind=data.input_kind,
    )


def class_similarity(
    ws: Workspace, teacher_id: str, temperature: float, *, split: str = "test", non_target: bool = False
) -> np.ndarray:
    """`mean_soft_targets` of the teacher's real logits on `split` (cached by run id, split, T, mode)."""
    t = round(_temperature(temperature), 4)

    def make() -> np.ndarray:
        matrix = mean_soft_targets(ws.logits(teacher_id, split), ws.labels(teacher_id, split), t, non_target=non_target)
        matrix.setflags(write=False)
        return matrix

    return ws.cached(("lesson/class_similarity", teacher_id, split, t, non_target), make)


# --------------------------------------------------------------------------- KD loss and gradient


@dataclass(frozen=True)
class KDTerms:
    """Hinton KD on one sample: the weighted terms, their sum and ∂total/∂(student logits)."""

    ce: float
    kd: float
    total: float
    grad: np.ndarray


def kd_loss_and_gradient(
    student_logits: Any, teacher_logits: Any, label: int, temperature: float, alpha: float
) -> KDTerms:
    """(1−α)·CE(y, s) + α·T²·KL(p_t^T ‖ p_s^T) and its gradient on the student's logits, by autograd.

    The gradient equals α·T·(p_s^T − p_t^T) + (1−α)·(p_s − onehot(y)).
    """
    t = _temperature(temperature)
    check_alpha(alpha)
    student, teacher = _pair(student_logits, teacher_logits)
    y = _label(label, student.shape[0])
    z = student.unsqueeze(0).clone().requires_grad_(True)
    with torch.enable_grad():
        terms = hinton_kd(z, teacher.unsqueeze(0), torch.tensor([y]), temperature=t, alpha=float(alpha))
        total = terms["ce"] + terms["kd"]
        (grad,) = torch.autograd.grad(total, z)
    return KDTerms(ce=terms["ce"].item(), kd=terms["kd"].item(), total=total.item(), grad=grad[0].detach().numpy())


def loss_over_temperature(
    student_logits: Any,
    teacher_logits: Any,
    label: int,
    alpha: float,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
) -> dict[str, np.ndarray]:
    """The KD loss's terms at each temperature: {"KD term α·T²·KL": ..., "CE term (1−α)·CE": ..., "total": ...}."""
    if len(temperatures) == 0:
        raise ValueError("temperatures is empty; pass at least one temperature")
    values = [kd_loss_and_gradient(student_logits, teacher_logits, label, t, alpha) for t in temperatures]
    return {
        "KD term α·T²·KL": np.array([v.kd for v in values]),
        "CE term (1−α)·CE": np.array([v.ce for v in values]),
        "total": np.array([v.total for v in values]),
    }


# --------------------------------------------------------------------------- DKD split


@dataclass(frozen=True)
class DKDSplit:
    """DKD's view of KD on one sample (both terms include the T² factor, unweighted by α, β).

    `*_binary` are [p_target, 1 − p_target] at T; `*_non_target` the distributions over the
    other classes (`non_target_classes`), renormalised among themselves. `kd` is T²·KL(teacher ‖
    student) and equals `tckd + (1 − teacher_binary[0]) · nckd`.
    """

    tckd: float
    nckd: float
    kd: float
    teacher_binary: np.ndarray
    student_binary: np.ndarray
    teacher_non_target: np.ndarray
    student_non_target: np.ndarray
    non_target_classes: list[int]


def dkd_split(student_logits: Any, teacher_logits: Any, label: int, temperature: float) -> DKDSplit:
    """TCKD and NCKD (`kdviz.distill.losses.response.dkd_parts`) with the distributions they compare."""
    t = _temperature(temperature)
    student, teacher = _pair(student_logits, teacher_logits)
    y = _label(label, student.shape[0])
    tckd, nckd = dkd_parts(student.unsqueeze(0), teacher.unsqueeze(0), torch.tensor([y]), t)
    kd = kd_kl(student.unsqueeze(0), teacher.unsqueeze(0), t)
    others = [k for k in range(student.shape[0]) if k != y]

    def binary(z: torch.Tensor) -> np.ndarray:
        p_target = float(soft_targets(z, t)[y])
        return np.array([p_target, 1.0 - p_target])

    return DKDSplit(
        tckd=float(tckd),
        nckd=float(nckd),
        kd=float(kd),
        teacher_binary=binary(teacher),
        student_binary=binary(student),
        teacher_non_target=soft_targets(teacher[others], t).numpy(),
        student_non_target=soft_targets(student[others], t).numpy(),
        non_target_classes=others,
    )


# --------------------------------------------------------------------------- label smoothing vs KD


@dataclass(frozen=True)
class SmoothingComparison:
    """Label-smoothing and KD targets with the same non-target mass ε.

    `smoothing` is the label-smoothing parameter s giving that mass: (1 − s)·onehot + s/K puts
    s·(K−1)/K on the wrong classes, so s = ε·K/(K−1). Entropies are of the non-target
    distributions renormalised among themselves (LS's is uniform: log(K−1), the maximum).
    """

    epsilon: float
    smoothing: float
    teacher_non_target_mass: float
    kd_targets: np.ndarray
    ls_targets: np.ndarray
    kd_non_target_entropy: float
    ls_non_target_entropy: float


def max_label_smoothing(num_classes: int) -> float:
    """The largest non-target mass label smoothing can give: (K−1)/K (then every class gets 1/K)."""
    return (num_classes - 1) / num_classes


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) if p.size else 0.0


def smoothing_vs_kd(
    teacher_logits: Any, label: int, temperature: float, epsilon: float | None = None
) -> SmoothingComparison:
    """The teacher's soft target at T next to the label-smoothing target with non-target mass `epsilon`.

    `epsilon=None` uses the teacher's own non-target mass (capped at (K−1)/K, the most label
    smoothing can spread), so both targets agree on the true class and differ only in how the
    rest is spread: by similarity for KD, uniformly for label smoothing.
    """
    t = _temperature(temperature)
    teacher = _logit_vector(teacher_logits, "teacher_logits")
    k = teacher.shape[0]
    y = _label(label, k)
    kd_targets = soft_targets(teacher, t).numpy()
    teacher_mass = float(1.0 - kd_targets[y])
    cap = max_label_smoothing(k)
    if epsilon is None:
        epsilon = min(teacher_mass, cap)
    elif not (isinstance(epsilon, (int, float, np.floating)) and 0.0 <= float(epsilon) <= cap):
        raise ValueError(f"epsilon (non-target mass) must be in [0, {cap:.4g}] for {k} classes, got {epsilon!r}")
    smoothing = min(float(epsilon) * k / (k - 1), 1.0 - 1e-12)  # s = 1 is uniform; the loss API wants s < 1
    ls_targets = label_smoothing_targets(torch.tensor([y]), k, smoothing)[0].to(torch.float64).numpy()
    others = np.arange(k) != y
    kd_rest = kd_targets[others] / max(kd_targets[others].sum(), 1e-300)
    ls_rest = ls_targets[others] / max(ls_targets[others].sum(), 1e-300)
    return SmoothingComparison(
        epsilon=float(epsilon),
        smoothing=smoothing,
        teacher_non_target_mass=teacher_mass,
        kd_targets=kd_targets,
        ls_targets=ls_targets,
        kd_non_target_entropy=_entropy(kd_rest),
        ls_non_target_entropy=_entropy(ls_rest),
    )
