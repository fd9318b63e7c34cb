"""Input validation shared by the analysis modules: conversion to numpy and shape/value checks.

Every check raises `ValueError` whose message names the argument and the problem (which row,
which value, what was expected), so a notebook user or the app can show it as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Default tolerance on |row sum - 1| for probability rows. Loose enough for float16/float32
#: softmax outputs, tight enough to catch logits or unnormalised scores passed by mistake.
PROB_SUM_ATOL = 1e-3

#: Floor applied to probabilities before taking a log (NLL, KL), so a confident wrong
#: prediction costs -log(1e-12) ≈ 27.6 nats instead of infinity.
PROB_EPS = 1e-12


def as_numpy(x: Any, name: str, dtype: Any = None) -> np.ndarray:
    """Return `x` (numpy array, torch tensor on any device, or nested sequence) as a numpy array.

    Torch tensors are detached and copied to the CPU; bfloat16/float16 tensors are widened to
    float32 first because numpy has no bfloat16. `dtype`, if given, is the dtype of the result.
    """
    if x is None:
        raise ValueError(f"{name} is None; expected an array or tensor")
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency, but keep this usable without it
        torch = None
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        arr = t.cpu().numpy()
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} could not be converted to an array: {err}") from err
    if arr.dtype == object:
        raise ValueError(f"{name} could not be converted to a numeric array (ragged or non-numeric values)")
    if dtype is not None:
        try:
            arr = arr.astype(dtype, copy=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} could not be converted to {np.dtype(dtype).name}: {err}") from err
    return arr


def _first_bad_row(mask: np.ndarray) -> int:
    """Index of the first row holding a True in a boolean (N,) or (N, K) mask."""
    rows = mask.reshape(mask.shape[0], -1).any(axis=1) if mask.ndim > 1 else mask
    return int(np.flatnonzero(rows)[0])


def check_finite(arr: np.ndarray, name: str) -> np.ndarray:
    """Raise if `arr` holds NaN or ±inf, naming the count and the first offending row."""
    bad = ~np.isfinite(arr)
    if bad.any():
        kind = "NaN" if np.isnan(arr).any() else "infinite values"
        where = "index" if arr.ndim == 1 else "row"
        raise ValueError(
            f"{name} contains {kind} ({int(bad.sum())} non-finite entries, first at {where} {_first_bad_row(bad)})"
        )
    return arr


def check_matrix(x: Any, name: str, min_rows: int = 1, min_cols: int = 1) -> np.ndarray:
    """Return `x` as a finite float64 2-D array (N×D), N >= `min_rows`, D >= `min_cols`."""
    arr = as_numpy(x, name, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples × dims), got shape {tuple(arr.shape)}")
    if arr.shape[0] < min_rows:
        what = "is empty (0 samples)" if arr.shape[0] == 0 else f"has {arr.shape[0]} samples"
        raise ValueError(f"{name} {what}; need at least {min_rows}")
    if arr.shape[1] < min_cols:
        raise ValueError(f"{name} has {arr.shape[1]} columns; need at least {min_cols}")
    return check_finite(arr, name)


def check_logits(logits: Any, name: str = "logits") -> np.ndarray:
    """Return logits as a finite float64 N×K array with N >= 1 and K >= 2."""
    return check_matrix(logits, name, min_rows=1, min_cols=2)


def check_probs(probs: Any, name: str = "probs", atol: float = PROB_SUM_ATOL) -> np.ndarray:
    """Return class probabilities as a float64 N×K array, after checking they are a valid distribution.

    Requires: 2-D, N >= 1 samples, K >= 2 classes, finite, non-negative, and each row summing
    to 1 within `atol`. Rows are *not* renormalised (callers see the numbers they passed in).
    """
    arr = as_numpy(probs, name, dtype=np.float64)
    if arr.ndim != 2:
        hint = " (for a single sample, pass shape (1, K))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (samples × classes), got shape {tuple(arr.shape)}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} has {arr.shape[1]} class column(s); need at least 2")
    check_finite(arr, name)
    if (arr < 0).any():
        row = _first_bad_row(arr < 0)
        raise ValueError(
            f"{name} has negative entries (min {arr.min():.4g}, first at row {row}); expected probabilities"
        )
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"{name} rows must sum to 1 (tolerance {atol:g}); {int(off.sum())} rows do not, "
            f"first is row {row} summing to {sums[row]:.6g} (did you pass logits? apply softmax first)"
        )
    return arr


def check_labels(labels: Any, n: int | None, n_classes: int | None, name: str = "labels") -> np.ndarray:
    """Return integer class labels as an int64 1-D array of length `n` with values in [0, n_classes).

    Float arrays are accepted only if every value is a whole number. `n` / `n_classes` may be
    None to skip that check.
    """
    arr = as_numpy(labels, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class index per sample), got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if arr.dtype == bool:
        raise ValueError(f"{name} must hold integer class indices, got booleans")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
        check_finite(arr, name)
        if not np.all(arr == np.round(arr)):
            example = arr[arr != np.round(arr)][0]
            raise ValueError(f"{name} must hold integer class indices, got non-integer values such as {example}")
    arr = arr.astype(np.int64)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} samples; lengths must match")
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or (n_classes is not None and high >= n_classes):
        bad = low if low < 0 else high
        bound = f"[0, {n_classes - 1}]" if n_classes is not None else ">= 0"
        raise ValueError(f"{name} has out-of-range class index {bad}; expected values in {bound}")
    return arr


def check_same_length(**arrays: Any) -> int:
    """Raise unless all keyword arrays have the same first dimension; return that length.

    Usage: `check_same_length(teacher_probs=t, student_probs=s, labels=y)`; the message lists
    each name with its length.
    """
    if not arrays:
        raise ValueError("check_same_length needs at least one array")
    lengths = {}
    for name, value in arrays.items():
        shape = getattr(value, "shape", None)
        lengths[name] = int(shape[0]) if shape is not None and len(shape) > 0 else len(value)
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"length mismatch: {listed}; all must have the same number of samples")
    return next(iter(lengths.values()))


def check_probs_pair(
    teacher_probs: Any, student_probs: Any, names: tuple[str, str] = ("teacher_probs", "student_probs")
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two probability matrices over the same samples and classes."""
    a = check_probs(teacher_probs, names[0])
    b = check_probs(student_probs, names[1])
    check_same_length(**{names[0]: a, names[1]: b})
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} has {a.shape[1]} classes but {names[1]} has {b.shape[1]}; they must match")
    return a, b
