"""A small bounded, thread-safe cache of loaded datasets, keyed by their JSON spec."""

from __future__ import annotations

import json
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
