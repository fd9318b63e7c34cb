"""Validation of dataset options: each check raises `DatasetError` naming the option and the allowed range."""

from __future__ import annotations

import math
from typing import Any

from kdviz.data.dataset import DatasetError


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum]; bools and non-integral numbers are rejected."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise DatasetError(f"option {name!r} must be an integer, got {value!r}")
    upper = "" if maximum is None else f" and <= {maximum}"
    if value < minimum or (maximum is not None and value > maximum):
        raise DatasetError(f"option {name!r} must be >= {minimum}{upper}, got {value}")
    return value


def check_float(name: str, value: Any, minimum: float, maximum: float | None = None) -> float:
    """`value` as a finite float in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DatasetError(f"option {name!r} must be a finite number, got {value!r}")
    upper = "" if maximum is None else f" and <= {maximum}"
    if value < minimum or (maximum is not None and value > maximum):
        raise DatasetError(f"option {name!r} must be >= {minimum}{upper}, got {value}")
    return float(value)


def check_seed(seed: Any) -> int:
    """A non-negative integer seed."""
    return check_int("seed", seed, 0)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise DatasetError(f"option {name!r} must be true or false, got {value!r}")
    return value
