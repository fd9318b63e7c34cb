"""Per-page computations for text datasets: sentences and each model's token attributions (cached per run)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdviz.analysis.token_attributions import token_agreement, token_attributions
from kdviz.workspace import Workspace


def sentence_words(ws: Workspace, run_id: str, indices: Sequence[int]) -> list[list[str]]:
    """The tokens each model sees for test sentences `indices` (words missing from the vocabulary as <unk>)."""
    data = ws.dataset(run_id)
    x, _ = ws.inputs(run_id)
    return [[data.vocabulary[int(t)] for t in x[i] if int(t) != 0] for i in indices]


def token_maps(ws: Workspace, run_id: str, method: str, indices: Sequence[int], target: np.ndarray) -> np.ndarray:
    """Token attributions (N×L) of run `run_id` for test sentences `indices` towards classes `target`."""
    key = ("text/token_maps", run_id, method, tuple(int(i) for i in indices), tuple(int(c) for c in target))

    def make() -> np.ndarray:
        x, _ = ws.inputs(run_id)
        maps = token_attributions(ws.model(run_id), x[list(indices)], target, method)
        maps.setflags(write=False)
        return maps

    return ws.cached(key, make)


def agreement_with_teacher(
    ws: Workspace, teacher_id: str, student_id: str, method: str, n: int = 200, top_k: int = 1
) -> float:
    """Mean top-`top_k` token agreement of a student with the teacher over the first `n` test sentences
    (both explain the true class)."""
    x, y = ws.inputs(teacher_id)
    indices = list(range(min(n, len(y))))
    target = y[indices].numpy()
    teacher = token_maps(ws, teacher_id, method, indices, target)
    student = token_maps(ws, student_id, method, indices, target)
    return float(np.nanmean(token_agreement(teacher, student, x[indices].numpy(), top_k)))
