"""Teacher ↔ student fidelity: top-1 agreement and KL(teacher ‖ student), overall and per true class.

KL is in nats: sum_k t_k (log t_k - log s_k), where terms with t_k = 0 contribute 0 and both
probabilities are clipped below at `PROB_EPS` (1e-12) before the log, so a student that puts
exactly zero mass on a class the teacher supports costs a large but finite amount.
Predictions are argmaxes (first index on ties, as `numpy.argmax`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kdviz.analysis._validate import PROB_EPS, check_labels, check_probs_pair

__all__ = ["agreement", "agreement_per_class", "kl_divergence", "kl_per_class", "kl_per_sample"]


def _kl_rows(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    log_ratio = np.log(np.clip(t, PROB_EPS, 1.0)) - np.log(np.clip(s, PROB_EPS, 1.0))
    # Clip tiny negatives from rounding (t ≈ s): KL is non-negative by definition.
    return np.maximum(np.sum(np.where(t > 0, t * log_ratio, 0.0), axis=1), 0.0)


def kl_per_sample(teacher_probs: Any, student_probs: Any) -> np.ndarray:
    """KL(teacher ‖ student) in nats for each sample, as a float64 array of shape (N,)."""
    t, s = check_probs_pair(teacher_probs, student_probs)
    return _kl_rows(t, s)


def kl_divergence(teacher_probs: Any, student_probs: Any) -> float:
    """Mean over samples of KL(teacher ‖ student), in nats."""
    return float(kl_per_sample(teacher_probs, student_probs).mean())


def agreement(teacher_probs: Any, student_probs: Any) -> float:
    """Share of samples where teacher and student predict the same class (top-1 agreement)."""
    t, s = check_probs_pair(teacher_probs, student_probs)
    return float(np.mean(t.argmax(axis=1) == s.argmax(axis=1)))


def _per_class(values: np.ndarray, labels: np.ndarray, n_classes: int, column: str, class_names) -> pd.DataFrame:
    """Mean of `values` grouped by true class; classes without samples get count 0 and NaN."""
    count = np.bincount(labels, minlength=n_classes)
    total = np.bincount(labels, weights=values, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    frame = pd.DataFrame({"class": np.arange(n_classes), "count": count.astype(np.int64), column: mean})
    if class_names is not None:
        if len(class_names) != n_classes:
            raise ValueError(
                f"class_names has {len(class_names)} entries but the probabilities have {n_classes} classes"
            )
        frame.insert(1, "class_name", [str(name) for name in class_names])
    return frame


def agreement_per_class(
    teacher_probs: Any, student_probs: Any, labels: Any, class_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Top-1 agreement per true class: columns `class, [class_name,] count, agreement` (NaN for absent classes)."""
    t, s = check_probs_pair(teacher_probs, student_probs)
    y = check_labels(labels, t.shape[0], t.shape[1], "labels")
    same = (t.argmax(axis=1) == s.argmax(axis=1)).astype(np.float64)
    return _per_class(same, y, t.shape[1], "agreement", class_names)


def kl_per_class(
    teacher_probs: Any, student_probs: Any, labels: Any, class_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean KL(teacher ‖ student) per true class: columns `class, [class_name,] count, kl` (NaN for absent classes)."""
    t, s = check_probs_pair(teacher_probs, student_probs)
    y = check_labels(labels, t.shape[0], t.shape[1], "labels")
    return _per_class(_kl_rows(t, s), y, t.shape[1], "kl", class_names)
