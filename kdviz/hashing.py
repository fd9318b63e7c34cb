"""Canonical JSON and the config hash that keys every run in the store.

Two configs that mean the same run get the same id: keys are sorted, tuples become lists,
numpy scalars become Python numbers, and floats are normalised (rounded to 12 significant
digits, so slider noise such as ``0.1 + 0.2`` matches ``0.3``; integral floats such as ``4.0``
match the int ``4``). Values that JSON cannot represent are rejected with the key path.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

HASH_LENGTH = 16
_FLOAT_DIGITS = 12
_MAX_EXACT_INT = 2**53  # beyond this an integral float no longer names one int


class ConfigError(ValueError):
    """A config (or metrics/summary) value that cannot be stored as JSON."""


def _child(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def _where(path: str) -> str:
    return f"at {path!r}" if path else "at the top level"


def _normal_float(value: float, path: str, allow_nan: bool, canonical: bool) -> float | int | None:
    if not math.isfinite(value):
        if allow_nan:
            return value
        raise ConfigError(f"{value} {_where(path)} is not allowed in a config (JSON has no NaN/Infinity)")
    if not canonical:
        return value
    rounded = float(f"{value:.{_FLOAT_DIGITS}g}")
    if rounded.is_integer() and abs(rounded) < _MAX_EXACT_INT:
        return int(rounded)  # also folds -0.0 into 0
    return rounded


def to_json_value(value: Any, *, canonical: bool = False, allow_nan: bool = False, path: str = "") -> Any:
    """A plain-JSON copy of `value` (dicts with str keys, lists, str, int, float, bool, None).

    Tuples become lists and numpy/torch scalars become Python numbers. With `canonical`,
    floats are normalised as the module docstring says. Anything else raises `ConfigError`
    naming the key path, e.g. ``model.layers[2]``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _normal_float(value, path, allow_nan, canonical)
    if isinstance(value, np.generic) or _is_torch_scalar(value):
        if isinstance(value, np.floating):
            # str() of a numpy float is its shortest round-trip form, so float32(0.9) -> 0.9
            return _normal_float(float(str(value)), path, allow_nan, canonical)
        return to_json_value(value.item(), canonical=canonical, allow_nan=allow_nan, path=path)
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"key {key!r} {_where(path)} is a {type(key).__name__}; only str keys can be stored as JSON"
                )
            result[key] = to_json_value(item, canonical=canonical, allow_nan=allow_nan, path=_child(path, key))
        return result
    if isinstance(value, list | tuple):
        return [
            to_json_value(item, canonical=canonical, allow_nan=allow_nan, path=_child(path, index))
            for index, item in enumerate(value)
        ]
    raise ConfigError(
        f"value of type {type(value).__name__} {_where(path)} is not JSON-serialisable "
        "(use str, int, float, bool, None, lists and dicts with str keys)"
    )


def _is_torch_scalar(value: Any) -> bool:
    # Avoids importing torch here; a 0-d tensor (e.g. a loss) is fine to store as a number.
    return type(value).__module__ == "torch" and getattr(value, "ndim", None) == 0


def canonical_json(config: dict[str, Any]) -> str:
    """The config as compact JSON with sorted keys and normalised floats."""
    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a dict, got {type(config).__name__}")
    normal = to_json_value(config, canonical=True)
    return json.dumps(normal, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(config: dict[str, Any]) -> str:
    """The run id of `config`: the first 16 hex chars of the sha256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:HASH_LENGTH]
