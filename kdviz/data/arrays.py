"""Datasets given as arrays (a researcher's own splits), used as they are, and kept in the home folder.

`dataset_from_arrays` builds a `Dataset` from already-split arrays **without normalising them**:
a user's own model expects its own preprocessing, so inputs reach it exactly as given.
`save_arrays` keeps such a dataset under ``<home>/arrays/<sha256>.npz`` (written with numpy, read
back with ``allow_pickle=False``) plus a JSON sidecar; its spec ``{"name": ..., "arrays": <sha256>}``
works with `kdviz.data.cache.get_dataset` like any other dataset spec.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdviz.data.dataset import SPLITS, Dataset, DatasetError, InputKind
from kdviz.data.uploads import write_atomic
from kdviz.paths import default_home

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def input_kind_of(x: torch.Tensor | np.ndarray) -> InputKind:
    """N×C×H×W: image, N×C×L: signal, N×2: points, other N×D: tabular."""
    if x.ndim == 4:
        return "image"
    if x.ndim == 3:
        return "signal"
    if x.ndim == 2:
        return "points" if x.shape[1] == 2 else "tabular"
    raise DatasetError(f"inputs of shape {tuple(x.shape)}: expected N×D, N×C×L or N×C×H×W")


def dataset_from_arrays(
    name: str,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    class_names: list[str] | None = None,
    masks: dict[str, torch.Tensor] | None = None,
    input_kind: InputKind | None = None,
) -> Dataset:
    """A `Dataset` of the given splits (``"test"`` required; a missing train or val split reuses test).

    Inputs are float32 as given (no normalisation); labels int64 in 0..K-1. `masks` maps a split to
    its foreground masks (bool N×H×W). Raises `DatasetError` naming the split and the problem.
    """
    if "test" not in splits:
        raise DatasetError("a test split (x, y) is needed to compare the models")
    checked = {split: _check_split(split, *xy) for split, xy in splits.items()}
    shapes = {split: tuple(x.shape[1:]) for split, (x, _) in checked.items()}
    if len(set(shapes.values())) > 1:
        raise DatasetError(f"the splits' inputs have different shapes: {shapes}")
    labels = torch.cat([y for _, y in checked.values()])
    n_classes = int(labels.max()) + 1 if class_names is None else len(class_names)
    if class_names is not None and int(labels.max()) >= n_classes:
        raise DatasetError(f"labels go up to {int(labels.max())} but {n_classes} class names were given")
    names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    x_test, y_test = checked["test"]
    fields: dict[str, Any] = {}
    for split in SPLITS:
        x, y = checked.get(split, (x_test, y_test))
        fields[f"x_{split}"], fields[f"y_{split}"] = x, y
        mask = (masks or {}).get(split)
        if mask is not None:
            mask = torch.as_tensor(mask).bool()
            if len(mask) != len(x) or mask.shape[1:] != x.shape[2:]:
                raise DatasetError(
                    f"{split} masks have shape {tuple(mask.shape)}; expected {(len(x), *x.shape[2:])} (N×H×W)"
                )
        fields[f"masks_{split}"] = mask
    kind = input_kind or input_kind_of(x_test)
    return Dataset(name=name, class_names=names, input_kind=kind, **fields)


def _check_split(split: str, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach().cpu()
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise DatasetError(f"{split} inputs have dtype {x.dtype}; expected numbers")
    x = x.float()
    if x.ndim < 2:
        raise DatasetError(f"{split} inputs have shape {tuple(x.shape)}; expected one row per sample (N×...)")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"{split} has {len(x)} inputs but labels of shape {tuple(y.shape)}; expected ({len(x)},)")
    if len(x) == 0:
        raise DatasetError(f"{split} split is empty")
    if y.is_floating_point() and not torch.all(y == y.round()):
        raise DatasetError(f"{split} labels must be class indices (whole numbers), got fractional values")
    y = y.long()
    if int(y.min()) < 0:
        raise DatasetError(f"{split} labels must be 0..K-1, found {int(y.min())}")
    bad = (~torch.isfinite(x.reshape(len(x), -1))).any(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise DatasetError(f"{split} inputs have NaN or infinite values in {int(bad.sum())} sample(s) (first: {first})")
    return x.contiguous(), y.contiguous()


def arrays_dir(home: str | os.PathLike[str] | None = None) -> Path:
    return Path(home if home is not None else default_home()) / "arrays"


def save_arrays(dataset: Dataset, name: str, home: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Keep `dataset`'s splits under the home folder; returns its spec (same content, same spec)."""
    if not _NAME.match(name):
        raise DatasetError(f"a dataset name is 1-64 letters, digits, '_', '-' or '.', got {name!r}")
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        arrays[f"x_{split}"] = getattr(dataset, f"x_{split}").cpu().numpy()
        arrays[f"y_{split}"] = getattr(dataset, f"y_{split}").cpu().numpy()
        mask = getattr(dataset, f"masks_{split}")
        if mask is not None:
            arrays[f"masks_{split}"] = mask.cpu().numpy()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    meta = {"class_names": list(dataset.class_names), "input_kind": dataset.input_kind, "name": name}
    frames = {split: dataset.metadata(split) for split in SPLITS if dataset.metadata(split) is not None}
    if frames:  # per-sample metadata as JSON (orient "split"), never pickled
        meta["metadata"] = {s: json.loads(frame.to_json(orient="split", index=False)) for s, frame in frames.items()}
    sha256 = hashlib.sha256(data + json.dumps(meta, sort_keys=True).encode()).hexdigest()
    folder = arrays_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / f"{sha256}.npz").is_file():
        write_atomic(folder / f"{sha256}.json", json.dumps(meta, sort_keys=True).encode())
        write_atomic(folder / f"{sha256}.npz", data)
    return {"name": name, "arrays": sha256}


def load_arrays(spec: dict[str, Any], home: str | os.PathLike[str] | None = None) -> Dataset:
    """The dataset of a spec made by `save_arrays` (no pickle is ever read)."""
    sha256 = spec.get("arrays")
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DatasetError(f"not a saved-arrays dataset spec: {spec!r}")
    folder = arrays_dir(home)
    path = folder / f"{sha256}.npz"
    if not path.is_file():
        raise DatasetError(f"dataset {spec.get('name')!r} is gone: {path} no longer exists; save the pair again")
    meta = json.loads((folder / f"{sha256}.json").read_text())
    with np.load(path, allow_pickle=False) as archive:
        splits = {s: (torch.from_numpy(archive[f"x_{s}"]), torch.from_numpy(archive[f"y_{s}"])) for s in SPLITS}
        masks = {s: torch.from_numpy(archive[f"masks_{s}"]) for s in SPLITS if f"masks_{s}" in archive.files}
    dataset = dataset_from_arrays(
        str(spec.get("name")), splits, class_names=meta["class_names"], masks=masks, input_kind=meta["input_kind"]
    )
    if "metadata" in meta:
        import pandas as pd

        for split, frame in meta["metadata"].items():
            setattr(dataset, f"metadata_{split}", pd.DataFrame(frame["data"], columns=frame["columns"]))
    dataset.spec = dict(spec)
    return dataset
