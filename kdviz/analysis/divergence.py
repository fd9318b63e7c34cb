"""Rank samples by teacher → student divergence (KL(teacher ‖ student)), with correctness categories."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kdviz.analysis._validate import check_labels, check_probs_pair
from kdviz.analysis.fidelity import kl_per_sample

__all__ = ["DIVERGENCE_CATEGORIES", "rank_divergence"]

#: Values of the `category` column, in display order.
DIVERGENCE_CATEGORIES = ("both right", "teacher right only", "student right only", "both wrong")


def rank_divergence(teacher_probs: Any, student_probs: Any, labels: Any) -> pd.DataFrame:
    """One row per sample, sorted by KL(teacher ‖ student) in nats, largest first (ties keep sample order).

    Columns: `index` (position in the inputs), `kl`, `teacher_pred`, `student_pred`,
    `teacher_conf`, `student_conf` (top-label probabilities), `teacher_correct`,
    `student_correct` (bool) and `category`, one of `DIVERGENCE_CATEGORIES`.
    """
    t, s = check_probs_pair(teacher_probs, student_probs)
    y = check_labels(labels, t.shape[0], t.shape[1], "labels")
    rows = np.arange(t.shape[0])
    teacher_pred, student_pred = t.argmax(axis=1), s.argmax(axis=1)
    teacher_correct, student_correct = teacher_pred == y, student_pred == y
    # Index into DIVERGENCE_CATEGORIES: 0 both right, 1 teacher only, 2 student only, 3 both wrong.
    code = np.where(teacher_correct, np.where(student_correct, 0, 1), np.where(student_correct, 2, 3))
    frame = pd.DataFrame(
        {
            "index": rows,
            "kl": kl_per_sample(t, s),
            "teacher_pred": teacher_pred,
            "student_pred": student_pred,
            "teacher_conf": t[rows, teacher_pred],
            "student_conf": s[rows, student_pred],
            "teacher_correct": teacher_correct,
            "student_correct": student_correct,
            "category": np.asarray(DIVERGENCE_CATEGORIES, dtype=object)[code],
        }
    )
    order = np.argsort(-frame["kl"].to_numpy(), kind="stable")
    return frame.iloc[order].reset_index(drop=True)
