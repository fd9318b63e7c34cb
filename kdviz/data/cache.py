"""A small bounded, thread-safe cache of loaded datasets, keyed by their JSON spec."""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import PurePosixPath
from typing import Any

from kdviz.data.dataset import Dataset, DatasetError, load_dataset
from kdviz.lru import BoundedCache

_cache = BoundedCache(8)


def spec_key(spec: dict[str, Any]) -> str:
    """Canonical JSON of a dataset spec (the cache key)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def get_dataset(spec: dict[str, Any] | str) -> Dataset:
    """The dataset for `spec` (``{"name": ..., **options}`` or a bare name), loaded once and shared.

    Callers must treat the returned tensors as read-only: the object is shared between users.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if "name" not in spec:
        raise DatasetError("a dataset spec needs a 'name' key, e.g. {'name': 'shapes'}")
    dataset = _cache.get(spec_key(spec), lambda: _load(spec))
    _cache.put(spec_key(dataset.spec), dataset)  # the full spec (defaults filled in) finds it too
    return dataset


def _load(spec: dict[str, Any]) -> Dataset:
    if "arrays" in spec:  # a researcher's own splits kept by kdviz.data.arrays
        from kdviz.data.arrays import load_arrays

        return load_arrays(spec)
    if "upload" in spec:  # a user's file kept by kdviz.data.uploads
        from kdviz.data.uploads import load_upload

        return load_upload(spec)
    options = {k: v for k, v in spec.items() if k != "name"}
    return load_dataset(spec["name"], **options)


def clear_dataset_cache() -> None:
    _cache.clear()


_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_NAME_CHARS = 200


def check_spec(spec: Any, where: str = "dataset") -> None:
    """Check a stored dataset spec without loading anything; `DatasetError` names the field at fault.

    The rules of `get_dataset`: a built-in's name with known options of the right types; an upload
    (``upload``: a 64-hex sha256, ``filename``: a bare .csv/.npz/.zip name, that loader's options);
    or saved arrays (``arrays``: a 64-hex sha256). Paths are never accepted.
    """
    from kdviz.data.dataset import _REGISTRY
    from kdviz.data.files import USER_FILE_LOADERS

    if not isinstance(spec, dict):
        raise DatasetError(f"{where} must be a dataset spec (a dict with a 'name'), got {type(spec).__name__}")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or "\n" in name:
        raise DatasetError(f"{where}.name must be a non-empty single-line str, got {name!r}")
    if "arrays" in spec or "upload" in spec:
        key = "arrays" if "arrays" in spec else "upload"
        digest = spec[key]
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise DatasetError(f"{where}.{key} must be the 64-hex sha256 of the stored file, got {digest!r}")
        if key == "arrays":
            extra = sorted(set(spec) - {"name", "arrays"})
            if extra:
                raise DatasetError(f"unknown key(s) {', '.join(extra)} in {where} (saved arrays have name, arrays)")
            return
        filename = spec.get("filename")
        suffix = PurePosixPath(filename).suffix.lower() if isinstance(filename, str) else ""
        if (
            not isinstance(filename, str)
            or not filename
            or any(c in filename for c in "/\\:\x00")
            or filename.startswith(".")
            or suffix not in USER_FILE_LOADERS
        ):
            raise DatasetError(
                f"{where}.filename must be a bare file name ending in {', '.join(USER_FILE_LOADERS)}, got {filename!r}"
            )
        parameters = inspect.signature(USER_FILE_LOADERS[suffix]).parameters
        valid = {key for key in parameters if key not in ("source", "filename")}
        extra = sorted(set(spec) - valid - {"name", "upload", "filename"})
        if extra:
            raise DatasetError(f"unknown option(s) {', '.join(extra)} in {where} for {suffix} files")
        if "seed" in spec:
            _check_option(where, "seed", spec["seed"], 0)
        return
    info = _REGISTRY.get(name)
    if info is None:
        raise DatasetError(f"{where}.name {name!r} is not a built-in dataset; valid: {', '.join(_REGISTRY)}")
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in info.options:
            valid = ", ".join(info.options) or "none"
            raise DatasetError(f"unknown option {key!r} in {where} for dataset {name!r}; valid options: {valid}")
        _check_option(where, key, value, info.options[key])


def _check_option(where: str, key: str, value: Any, default: Any) -> None:
    """`value` has the type of the option's default (ints for ints, finite numbers for floats, ...)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and (key != "seed" or value >= 0)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = value is None or isinstance(value, str | int | float | bool)
    if not ok:
        kind = "a non-negative int" if key == "seed" else f"a {type(default).__name__}"
        raise DatasetError(f"{where}.{key} must be {kind}, got {value!r}")
