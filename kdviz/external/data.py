"""Turn what a researcher has (arrays, tensors, a torch Dataset or DataLoader, a kdviz spec) into splits."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kdviz.data.dataset import Dataset, DatasetError

MAX_SAMPLES = 200_000  # per split: the analyses keep logits and features of every sample in memory


def as_split(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from ``(x, y)`` arrays/tensors, a map-style torch ``Dataset`` of (x, y) items, or a ``DataLoader``."""
    if isinstance(data, tuple | list) and len(data) == 2 and not _is_item(data):
        x, y = data
        return _tensor(x, f"{what} inputs"), _tensor(y, f"{what} labels")
    if isinstance(data, torch.utils.data.DataLoader):
        return _collect(iter(data), what, batched=True)
    if isinstance(data, torch.utils.data.Dataset):
        if not hasattr(data, "__len__"):
            raise DatasetError(f"{what}: an iterable Dataset has no length; wrap it in a DataLoader")
        if len(data) > MAX_SAMPLES:  # type: ignore[arg-type]
            raise DatasetError(f"{what} has {len(data):,} samples; at most {MAX_SAMPLES:,} are analysed")  # type: ignore[arg-type]
        return _collect((data[i] for i in range(len(data))), what, batched=False)  # type: ignore[arg-type]
    raise DatasetError(
        f"{what}: expected (x, y) arrays or tensors, a torch Dataset or a DataLoader, got {type(data).__name__}"
    )


def _is_item(data: Any) -> bool:
    """A single (x, y) sample rather than (inputs, labels) arrays: y is a scalar."""
    y = data[1]
    return isinstance(y, int) or (isinstance(y, torch.Tensor | np.ndarray) and np.ndim(y) == 0)


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        array = np.asarray(value)
    except Exception as error:
        raise DatasetError(f"{what} cannot be read as an array ({error})") from error
    if array.dtype == object:
        raise DatasetError(f"{what} are not numbers (an object array); pass numeric arrays")
    return torch.from_numpy(np.ascontiguousarray(array))


def _collect(items: Any, what: str, batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, count = [], [], 0
    for item in items:
        if isinstance(item, dict):
            keys = [k for k in ("x", "input", "inputs", "image", "pixel_values") if k in item]
            label_keys = [k for k in ("y", "label", "labels", "target") if k in item]
            if not keys or not label_keys:
                raise DatasetError(f"{what}: a dict item needs an input key (x/input/image) and a label key (y/label)")
            item = (item[keys[0]], item[label_keys[0]])
        if not isinstance(item, tuple | list) or len(item) < 2:
            raise DatasetError(f"{what}: each item must be (x, y), got {type(item).__name__}")
        x, y = _tensor(item[0], f"{what} inputs"), _tensor(item[1], f"{what} labels")
        xs.append(x if batched else x[None])
        ys.append(y.reshape(-1) if batched else y.reshape(1))
        count += len(xs[-1])
        if count > MAX_SAMPLES:
            raise DatasetError(f"{what} has more than {MAX_SAMPLES:,} samples; pass a subset to analyse")
    if not xs:
        raise DatasetError(f"{what} is empty")
    return torch.cat(xs), torch.cat(ys)


def splits_from(data: Dataset) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three splits of a kdviz `Dataset`."""
    return {split: data.split(split) for split in ("train", "val", "test")}
