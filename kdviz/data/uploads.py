"""Users' own data files kept next to the run store, so runs trained on them can be reloaded by spec.

`save_upload` validates a file with the strict loaders of `kdviz.data.files` (nothing is unpickled),
then stores its bytes under ``<KDVIZ_HOME>/uploads/<sha256><suffix>`` with a small JSON sidecar.
The returned spec ``{"name": "upload-<stem>-<hash8>", "upload": <sha256>, "filename": ..., **options}``
works with `kdviz.data.cache.get_dataset` like a built-in dataset's spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kdviz.data.dataset import Dataset, DatasetError
from kdviz.data.files import USER_FILE_LOADERS, load_user_file

META_SUFFIX = ".json"


def uploads_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/uploads`` (root defaults to $KDVIZ_HOME, else ~/.kdviz)."""
    if root is None:
        from kdviz.paths import default_home

        root = default_home()
    return Path(root) / "uploads"


def _name(filename: str, sha256: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "_", PurePosixPath(filename).stem.lower()).strip("_")[:32] or "data"
    return f"upload-{stem}-{sha256[:8]}"


def _suffix(filename: str) -> str:
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if suffix not in USER_FILE_LOADERS:
        raise DatasetError(f"unsupported file type {suffix or '(none)'!r}; accepted: {', '.join(USER_FILE_LOADERS)}")
    return suffix


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a fsynced temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".tmp-") as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def save_upload(
    filename: str, data: bytes, *, root: str | os.PathLike[str] | None = None, **options: Any
) -> tuple[dict[str, Any], Dataset]:
    """Validate and keep an uploaded file; returns (its dataset spec, the loaded dataset).

    A file that does not load raises `DatasetError` (naming what is wrong) and nothing is written.
    Saving the same bytes with the same options again returns the same spec.
    """
    suffix = _suffix(filename)
    dataset = load_user_file(filename, data, **options)  # validates; raises DatasetError
    sha256 = hashlib.sha256(data).hexdigest()
    folder = uploads_dir(root)
    spec = {"name": _name(filename, sha256), "upload": sha256, "filename": PurePosixPath(filename).name, **options}
    file_path = folder / f"{sha256}{suffix}"
    if not file_path.exists():
        write_atomic(file_path, data)
    meta = {
        "spec": spec,
        "input_kind": dataset.input_kind,
        "classes": dataset.num_classes,
        "samples": int(len(dataset.y_train) + len(dataset.y_val) + len(dataset.y_test)),
    }
    write_atomic(folder / f"{spec['name']}{META_SUFFIX}", json.dumps(meta, sort_keys=True).encode())
    dataset.spec, dataset.name = spec, spec["name"]
    return spec, dataset


def load_upload(spec: dict[str, Any], root: str | os.PathLike[str] | None = None) -> Dataset:
    """The dataset of a spec made by `save_upload` (the file must still be in the uploads folder)."""
    sha256 = spec.get("upload")
    filename = spec.get("filename")
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256) or not isinstance(filename, str):
        raise DatasetError(f"not an uploaded-dataset spec: {spec!r}")
    path = uploads_dir(root) / f"{sha256}{_suffix(filename)}"
    if not path.is_file():
        raise DatasetError(f"uploaded dataset {spec.get('name')!r} is gone: {path} no longer exists; upload it again")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DatasetError(f"uploaded dataset {spec.get('name')!r} is damaged: {path} does not match its checksum")
    options = {k: v for k, v in spec.items() if k not in ("name", "upload", "filename")}
    dataset = load_user_file(filename, data, **options)
    dataset.spec, dataset.name = dict(spec), str(spec.get("name"))
    return dataset


def list_uploads(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Saved uploads' metadata (spec, input kind, classes, samples), by name; unreadable sidecars are skipped."""
    folder = uploads_dir(root)
    entries = []
    for path in sorted(folder.glob(f"upload-*{META_SUFFIX}")) if folder.is_dir() else []:
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("spec"), dict):
            entries.append(meta)
    return entries
