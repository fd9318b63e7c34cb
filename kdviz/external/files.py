"""Files a researcher brings on the command line: weights (safetensors, or a state dict read without pickle)
and an ``.npz`` of data splits (read with ``allow_pickle=False``)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdviz.data.dataset import DatasetError
from kdviz.models.external import ExternalModelError

MAX_WEIGHT_BYTES = 2 * 1024**3


def load_weights(model: nn.Module, path: str | Path, role: str) -> None:
    """Load a state dict into `model` (strict): ``.safetensors``, or ``.pt``/``.pth`` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ExternalModelError(f"the {role}'s weights file {str(path)!r} does not exist")
    if path.stat().st_size > MAX_WEIGHT_BYTES:
        raise ExternalModelError(f"the {role}'s weights file is larger than {MAX_WEIGHT_BYTES // 1024**3} GB")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles arbitrary objects
    except Exception as error:
        raise ExternalModelError(f"the {role}'s weights {path.name!r} could not be read: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExternalModelError(f"the {role}'s weights {path.name!r} are not a state dict of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ExternalModelError(
            f"the {role}'s weights {path.name!r} do not match the architecture its factory builds: "
            + " ".join(lines[1:3])
        ) from error


def load_pair_data(path: str | Path) -> dict[str, Any]:
    """Keyword arguments for `kdviz.Pair` from an ``.npz``: ``x_test``/``y_test`` (or ``x``/``y``), optionally
    ``x_train``/``y_train``, ``x_val``/``y_val``, ``masks_test`` and ``class_names``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"data file {str(path)!r} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{path.name!r} is not a readable .npz archive ({error})") from error
    if not hasattr(archive, "files"):
        raise DatasetError(f"{path.name!r} is a single .npy array, not an .npz with x_test and y_test")
    with archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except ValueError as error:
            raise DatasetError(f"{path.name!r} holds object arrays (pickles), which are not read: {error}") from error
    if "x_test" not in arrays and "x" in arrays:
        arrays["x_test"], arrays["y_test"] = arrays.pop("x"), arrays.pop("y", None)
    if "x_test" not in arrays or arrays.get("y_test") is None:
        raise DatasetError(f"{path.name!r} needs arrays x_test and y_test (or x and y); found {', '.join(arrays)}")
    data: dict[str, Any] = {"test": (arrays["x_test"], arrays["y_test"])}
    for split in ("train", "val"):
        if f"x_{split}" in arrays:
            if f"y_{split}" not in arrays:
                raise DatasetError(f"{path.name!r} has x_{split} but no y_{split}")
            data[split] = (arrays[f"x_{split}"], arrays[f"y_{split}"])
    if "masks_test" in arrays:
        data["masks"] = arrays["masks_test"]
    if "class_names" in arrays:
        data["class_names"] = [str(name) for name in arrays["class_names"].tolist()]
    return data
