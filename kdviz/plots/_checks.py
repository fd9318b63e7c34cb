"""Input checks shared by the figure builders; every failure is a ValueError naming the argument.

Tensors are converted by duck typing (`.detach().cpu().numpy()`) rather than through
`kdviz.analysis._validate.as_numpy`: importing `kdviz.analysis` loads torch and captum (seconds),
and drawing a figure must stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def to_array(x: Any, name: str, ndim: int | tuple[int, ...] | None = None, finite: bool = True) -> np.ndarray:
    """`x` (array, tensor on any device, sequence) as a float64 numpy array with the given number of dims."""
    if x is None:
        raise ValueError(f"{name} is None; expected an array")
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if hasattr(x, "float") and str(getattr(x, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} could not be converted to a numeric array: {err}") from err
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            wanted = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {wanted}, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(arr.shape)})")
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values ({int((~np.isfinite(arr)).sum())} entries)")
    return arr


def nonempty_mapping(value: Any, name: str, example: str = "{'teacher': ..., 'student': ...}") -> dict[str, Any]:
    """A non-empty mapping name -> data, as a dict with string keys."""
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{name} must be a mapping of model name to data such as {example}, got {type(value).__name__}"
        )
    if not value:
        raise ValueError(f"{name} is empty; pass at least one entry, e.g. {example}")
    return {str(k): v for k, v in value.items()}


def same_length(first: int, second: int, what: str) -> None:
    if first != second:
        raise ValueError(f"length mismatch: {what} ({first} vs {second}); they must match")


def names_for(values: Sequence[Any] | None, n: int, name: str, default: str = "{}") -> list[str]:
    """`n` display names: `values` as strings (length checked), or `default` formatted with 0..n-1."""
    if values is None:
        return [default.format(i) for i in range(n)]
    names = [str(v) for v in values]
    same_length(len(names), n, f"{name} has {len(names)} entries for {n} items")
    return names


def require_columns(df: Any, columns: Sequence[str], name: str, hint: str = "") -> pd.DataFrame:
    """`df` as a non-empty DataFrame holding every column of `columns`."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns)) or 'none'}{hint}"
        )
    if df.empty:
        raise ValueError(f"{name} is empty (0 rows)")
    return df


def probability_vector(p: Any, name: str, n_classes: int | None = None, atol: float = 1e-3) -> np.ndarray:
    """A 1-D probability vector: non-negative, summing to 1 within `atol`, of length `n_classes` if given."""
    arr = to_array(p, name, ndim=1)
    if n_classes is not None:
        same_length(arr.shape[0], n_classes, f"{name} has {arr.shape[0]} probabilities for {n_classes} class names")
    if (arr < 0).any() or abs(arr.sum() - 1.0) > atol:
        raise ValueError(
            f"{name} must be probabilities (non-negative, summing to 1), got sum {arr.sum():.6g}, min {arr.min():.4g};"
            " did you pass logits? apply softmax first"
        )
    return arr
