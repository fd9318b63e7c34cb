"""The verdict rule shared by the packaged experiments (`papers`, `seqkd`): the paired 95 % t-interval and
its verdict, and JSON-safe results (no experiment imports another to get them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FAILS", "HOLDS", "clean", "interval", "verdict"]

HOLDS = "holds"
FAILS = "does not hold at this scale"

# Two-sided 95 % Student-t quantiles t_{0.975, df} (scipy is not a dependency of the backend).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def _t975(df: int) -> float:
    return _T975.get(df, 1.96 + 2.4 / df)  # within 0.01 of the exact quantile for df > 10


def interval(diffs: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % Student-t interval of the mean of the paired differences."""
    d = np.asarray([float(x) for x in diffs], dtype=float)
    if d.size < 2 or not np.isfinite(d).all():
        raise ValueError(f"need at least two finite paired differences, got {list(d)}")
    mean = float(d.mean())
    half = _t975(d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return mean, mean - half, mean + half


def verdict(diffs: Sequence[float], direction: str, margin: float = 0.0) -> str:
    """`HOLDS` or `FAILS` for one test by the stated rule; direction: higher, lower or equal (within ±margin)."""
    _mean, low, high = interval(diffs)
    if direction == "higher":
        return HOLDS if low > 0 else FAILS
    if direction == "lower":
        return HOLDS if high < 0 else FAILS
    if direction == "equal":
        if margin <= 0:
            raise ValueError("an 'equal' claim needs a margin > 0")
        return HOLDS if -margin < low and high < margin else FAILS
    raise ValueError(f"direction must be higher, lower or equal, got {direction!r}")


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars plain numbers, tuples lists."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
