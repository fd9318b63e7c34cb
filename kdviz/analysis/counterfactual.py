"""Counterfactual sweeps on `shapes`: change one generating factor of a test image and watch the models respond."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdviz.data.shapes import render_counterfactual

__all__ = ["factor_sweep", "normalise_images"]


def normalise_images(images: np.ndarray, normalization: Mapping[str, Sequence[float]]) -> torch.Tensor:
    """Raw [0, 1] images N×C×H×W normalised with a dataset's per-channel mean and std (float32, as the loader does)."""
    mean = np.asarray(normalization["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(normalization["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    return torch.from_numpy(np.ascontiguousarray((images.astype(np.float32) - mean) / std))


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
) -> pd.DataFrame:
    """Each model's probability of `label` as `factor` of sample `index` takes each of `values`.

    One row per (value, model): `value`, `model`, `p_true` (probability of `label`), `prediction`.
    The images are re-rendered by `kdviz.data.shapes.render_counterfactual`; where a student's
    curve leaves the teacher's is where the factor starts to matter to one and not the other.
    """
    images = np.concatenate(
        [render_counterfactual(dataset_spec, split, index, **{factor: float(v)}).images for v in values]
    )
    x = normalise_images(images, normalization)
    rows = []
    for name, model in models.items():
        probs = torch.softmax(model(x).float(), dim=1).numpy()
        for value, p in zip(values, probs):
            rows.append(
                {"value": float(value), "model": name, "p_true": float(p[label]), "prediction": int(p.argmax())}
            )
    return pd.DataFrame(rows, columns=["value", "model", "p_true", "prediction"])
