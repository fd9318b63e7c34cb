"""Turning model inputs (normalised C×H×W or H×W arrays) into displayable RGB images."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdviz.plots._checks import to_array


def to_rgb(image: Any, name: str = "image") -> np.ndarray:
    """H×W×3 uint8 image from H×W, 1×H×W, 3×H×W, H×W×1 or H×W×3 values, min–max scaled per image.

    Model inputs are normalised (zero mean, unit variance), so their raw values are not colours;
    scaling each image to [0, 255] keeps its contrast.
    """
    arr = to_array(image, name, ndim=(2, 3))
    if arr.ndim == 3:
        if arr.shape[0] in (1, 3):
            arr = np.moveaxis(arr, 0, -1)
        elif arr.shape[2] not in (1, 3):
            raise ValueError(f"{name} must be H×W, C×H×W or H×W×C with C = 1 or 3 channels, got shape {arr.shape}")
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
    low, high = float(arr.min()), float(arr.max())
    scaled = (arr - low) / (high - low) if high > low else np.zeros_like(arr)
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[:, :, None], 3, axis=2)
    return np.round(scaled * 255).astype(np.uint8)
