"""Comparing attribution maps: teacher ↔ student agreement, and localisation against ground-truth masks.

Both take attributions as returned by `attribute` (N×C×H×W, N×H×W, N×C×L, N×D; tensors or arrays).
Image attributions (4-D) are pooled over the channel axis first, so a pixel is one position:
agreement sums the channels' absolute values, localisation sums the signed values (then keeps
the positive or absolute part, see `localization`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from kdviz.analysis._validate import as_numpy, check_finite

__all__ = ["attribution_agreement", "localization", "localization_summary"]


def _attribution_array(attr: Any, name: str) -> np.ndarray:
    arr = as_numpy(attr, name, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have a sample axis (N×…), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr[0].size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(arr.shape)})")
    return check_finite(arr, name)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


def attribution_agreement(attr_a: Any, attr_b: Any, k: float = 0.1) -> pd.DataFrame:
    """Per-sample agreement of two attribution maps of the same inputs (e.g. teacher vs student).

    Positions are compared on absolute attributions; image maps (N×C×H×W) are first reduced to
    N×H×W by summing |a| over channels, other shapes are flattened per sample as they are.
    Columns:

    - ``spearman``: Spearman rank correlation of the absolute maps (ties get average ranks; NaN
      when either map is constant);
    - ``topk_iou``: intersection over union of the top ``k`` share of positions by absolute value
      (``max(1, round(k·P))`` positions of P; ties broken by position order; NaN when either map
      is constant, e.g. an all-zero Grad-CAM, since its "top" positions would be arbitrary);
    - ``cosine``: cosine similarity of the absolute maps (NaN when either map is all zero).
    """
    a = _attribution_array(attr_a, "attr_a")
    b = _attribution_array(attr_b, "attr_b")
    if a.shape != b.shape:
        raise ValueError(f"attr_a has shape {tuple(a.shape)} but attr_b has shape {tuple(b.shape)}; they must match")
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k is the share of top positions and must be in (0, 1], got {k}")
    a, b = np.abs(a), np.abs(b)
    if a.ndim == 4:
        a, b = a.sum(axis=1), b.sum(axis=1)
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    n_positions = a.shape[1]

    spearman = _rowwise_pearson(rankdata(a, axis=1), rankdata(b, axis=1))

    n_top = max(1, int(round(k * n_positions)))
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :n_top]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :n_top]
    in_a = np.zeros_like(a, dtype=bool)
    in_b = np.zeros_like(b, dtype=bool)
    rows = np.arange(a.shape[0])[:, None]
    in_a[rows, top_a] = True
    in_b[rows, top_b] = True
    iou = (in_a & in_b).sum(axis=1) / (in_a | in_b).sum(axis=1)
    constant = (a.max(axis=1) == a.min(axis=1)) | (b.max(axis=1) == b.min(axis=1))
    iou = np.where(constant, np.nan, iou)

    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0), np.nan)
    return pd.DataFrame({"spearman": spearman, "topk_iou": iou, "cosine": cosine})


def localization(attr: Any, masks: Any, *, mode: Literal["positive", "absolute"] = "positive") -> pd.DataFrame:
    """Per-sample localisation of attributions against ground-truth foreground masks.

    `attr` is N×C×H×W (summed over channels first, keeping signs) or N×H×W (e.g. Grad-CAM);
    `masks` is boolean N×H×W (any shape equal to the pooled map works, e.g. N×L for signals).
    With ``mode="positive"`` only positive relevance counts (the relevance-mass accuracy of
    Arras et al., 2022); ``"absolute"`` uses |relevance| instead. Columns:

    - ``relevance_mass``: share of the (positive or absolute) relevance inside the mask; NaN where a
      map has none;
    - ``pointing_hit``: 1.0 if the position of maximal relevance lies inside the mask, else 0.0
      (first maximum on ties, no tolerance margin); NaN where a map has no relevance.
    """
    if mode not in ("positive", "absolute"):
        raise ValueError(f"mode must be 'positive' or 'absolute', got {mode!r}")
    relevance = _attribution_array(attr, "attr")
    mask = as_numpy(masks, "masks")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("masks must be boolean (or 0/1) foreground masks")
        mask = mask.astype(bool)
    if relevance.ndim == mask.ndim + 1:
        relevance = relevance.sum(axis=1)
    if relevance.shape != mask.shape:
        raise ValueError(
            f"masks have shape {tuple(mask.shape)} but the attributions (pooled over channels) have shape "
            f"{tuple(relevance.shape)}; expected one mask per sample of the same spatial size"
        )
    relevance = np.maximum(relevance, 0.0) if mode == "positive" else np.abs(relevance)
    relevance = relevance.reshape(relevance.shape[0], -1)
    mask = mask.reshape(mask.shape[0], -1)
    total = relevance.sum(axis=1)
    has_relevance = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(has_relevance, (relevance * mask).sum(axis=1) / np.where(has_relevance, total, 1.0), np.nan)
    peak = relevance.argmax(axis=1)
    hit = mask[np.arange(mask.shape[0]), peak].astype(float)
    hit[~has_relevance] = np.nan
    return pd.DataFrame({"relevance_mass": mass, "pointing_hit": hit})


def localization_summary(per_sample: pd.DataFrame) -> dict[str, float]:
    """Means of a `localization` table: mean relevance mass and pointing-game hit rate (NaN rows skipped)."""
    missing = {"relevance_mass", "pointing_hit"} - set(per_sample.columns)
    if missing:
        raise ValueError(f"per_sample lacks column(s) {', '.join(sorted(missing))}; pass the output of localization()")
    return {
        "relevance_mass": float(per_sample["relevance_mass"].mean()),
        "pointing_game": float(per_sample["pointing_hit"].mean()),
        "n_samples": int(per_sample["relevance_mass"].notna().sum()),
    }
