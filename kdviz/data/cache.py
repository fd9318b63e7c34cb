"""A small bounded, thread-safe cache of loaded datasets, keyed by their JSON spec."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from kdviz.data.dataset import Dataset, DatasetError, load_dataset

_MAX_ENTRIES = 8
_cache: OrderedDict[str, Dataset] = OrderedDict()
_lock = threading.Lock()


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
    key = spec_key(spec)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    if "upload" in spec:  # a user's file kept by kdviz.data.uploads
        from kdviz.data.uploads import load_upload

        dataset = load_upload(spec)
    else:
        options = {k: v for k, v in spec.items() if k != "name"}
        dataset = load_dataset(spec["name"], **options)
    with _lock:
        _cache[key] = dataset
        _cache[spec_key(dataset.spec)] = dataset
        while len(_cache) > _MAX_ENTRIES:
            _cache.popitem(last=False)
    return dataset


def clear_dataset_cache() -> None:
    with _lock:
        _cache.clear()
