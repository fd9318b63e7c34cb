"""2-D projections of feature tables (PCA, t-SNE) for scatter views coloured by class or disagreement."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from kdviz.analysis._validate import as_numpy, check_matrix

__all__ = ["PROJECTION_METHODS", "project_features"]

PROJECTION_METHODS = ("pca", "tsne")

#: t-SNE inputs wider than this are first reduced by PCA (standard practice; much faster).
TSNE_PCA_DIMS = 50


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    if x.shape[0] < 2:  # a single point has no principal directions
        return np.zeros((x.shape[0], 2))
    n_components = min(2, *x.shape)
    out = PCA(n_components=n_components, random_state=seed).fit_transform(x)
    if n_components < 2:  # one feature dim: pad so callers always get N×2
        out = np.hstack([out, np.zeros((x.shape[0], 2 - n_components))])
    return out


def project_features(
    features: Any, method: str = "pca", seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000
) -> np.ndarray:
    """Project features (N×D, or N×... flattened) to an N×2 float64 array.

    - `pca`: the first two principal components (zeros where D < 2 or N < 2 leave no component).
    - `tsne`: scikit-learn t-SNE with PCA initialisation, seeded; inputs wider than 50 dims are
      first reduced to 50 by PCA; `perplexity` is clamped to (N - 1) / 3 so small N works
      (t-SNE needs N >= 4); `max_iter` (>= 250) trades quality for time (about 5-30 s for
      N = 1,000 on two CPU cores).
    Deterministic for a given `seed`.
    """
    if method not in PROJECTION_METHODS:
        raise ValueError(f"unknown projection method {method!r}; valid methods: {', '.join(PROJECTION_METHODS)}")
    arr = as_numpy(features, "features")
    if arr.ndim > 2:  # e.g. N×C×H×W conv maps: one row per sample
        arr = arr.reshape(arr.shape[0], -1)
    x = check_matrix(arr, "features")
    if method == "pca":
        return _pca(x, seed)
    if x.shape[0] < 4:
        raise ValueError(f"t-SNE needs at least 4 samples, features has {x.shape[0]}")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be positive, got {perplexity!r}")
    if x.shape[1] > TSNE_PCA_DIMS:
        x = PCA(n_components=min(TSNE_PCA_DIMS, x.shape[0]), random_state=seed).fit_transform(x)
    tsne = TSNE(
        n_components=2,
        perplexity=min(float(perplexity), (x.shape[0] - 1) / 3),
        init="pca",
        max_iter=max(250, int(max_iter)),
        random_state=seed,
    )
    return tsne.fit_transform(x).astype(np.float64)
