"""Run-folder files: fsynced writes, and reads that name the damaged file in their errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kdviz.hashing import ConfigError, config_hash
from kdviz.store.errors import CorruptRunError
from kdviz.store.runcard import checkpoint_file
from kdviz.store.validate import storable_state


def fsync_path(path: Path) -> None:
    """Flush a file or folder to disk; folders need it too, or a rename may not survive a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync a file."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: Path, value: Any) -> None:
    """Write and fsync readable JSON (NaN kept as Python's JSON writes it)."""
    write_bytes(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")


def write_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Write and fsync a state dict as safetensors."""
    save_file(storable_state(state), str(path))
    fsync_path(path)


def read_json(path: Path, expected: type) -> Any:
    """Parse a JSON file holding an `expected` value; any problem raises `CorruptRunError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorruptRunError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptRunError(f"{path} cannot be read: {exc}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptRunError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except RecursionError:
        raise CorruptRunError(f"{path} is nested too deeply to be a run's JSON") from None
    if not isinstance(value, expected):
        raise CorruptRunError(f"{path} must hold a JSON {expected.__name__}, got {type(value).__name__}")
    return value


def verified_meta(run_dir: Path, run_id: str) -> dict[str, Any]:
    """meta.json of a run folder after checking every file it lists exists with its recorded size."""
    meta_path = run_dir / "meta.json"
    if not meta_path.exists():
        raise CorruptRunError(f"{meta_path} is missing: the run folder is incomplete")
    meta = read_json(meta_path, dict)
    files, epochs = meta.get("files"), meta.get("checkpoints")
    if (
        meta.get("id") != run_id
        or not isinstance(files, dict)
        or not isinstance(epochs, list)
        or not all(type(epoch) is int for epoch in epochs)  # noqa: E721 (bool is not an epoch)
        or not isinstance(meta.get("created_at"), int | float)
    ):
        raise CorruptRunError(f"{meta_path} is malformed (expected id {run_id}, files, checkpoints, created_at)")
    expected_files = {"config.json", "metrics.json", "summary.json", *(checkpoint_file(epoch) for epoch in epochs)}
    if set(files) != expected_files:
        raise CorruptRunError(f"{meta_path} lists files {sorted(files)}, expected {sorted(expected_files)}")
    for file_name, size in sorted(files.items()):
        path = run_dir / file_name
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise CorruptRunError(f"{path} is missing") from None
        if actual != size:
            raise CorruptRunError(f"{path} has {actual} bytes, expected {size}: it was truncated or modified")
    return meta


def read_config(run_dir: Path, run_id: str) -> dict[str, Any]:
    """config.json of a run folder, checked to hash to the folder's run id."""
    path = run_dir / "config.json"
    config = read_json(path, dict)
    try:
        matches = config_hash(config) == run_id
    except ConfigError as exc:
        raise CorruptRunError(f"{path}: {exc}") from exc
    if not matches:
        raise CorruptRunError(f"{path} does not hash to the run id {run_id}: it was edited")
    return config


def check_safetensors(path: Path) -> None:
    """Raise `CorruptRunError` naming `path` unless its safetensors header parses (data is not read)."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise CorruptRunError(f"{path} is not a readable safetensors file: {exc}") from exc


def load_checkpoint(path: Path, device: str) -> dict[str, torch.Tensor]:
    """The state dict in a safetensors file; damage raises `CorruptRunError` naming the file."""
    try:
        return load_file(str(path), device=device)
    except Exception as exc:
        raise CorruptRunError(f"{path} is not a readable safetensors file: {exc}") from exc


def file_digest(path: Path) -> str:
    """The sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_run_dir(run_dir: Path, run_id: str) -> dict[str, Any]:
    """Check every file of a run folder (sizes, checksums, JSON, safetensors headers); return meta.json.

    Slower than `verified_meta`, which only checks sizes: for repairs and `broken_runs`.
    """
    meta = verified_meta(run_dir, run_id)
    read_config(run_dir, run_id)
    read_json(run_dir / "summary.json", dict)
    read_json(run_dir / "metrics.json", list)
    digests = meta.get("sha256") if isinstance(meta.get("sha256"), dict) else {}
    for file_name in sorted(meta["files"]):
        path = run_dir / file_name
        if file_name in digests and file_digest(path) != digests[file_name]:
            raise CorruptRunError(f"{path} does not match its checksum in meta.json: it was modified")
        if file_name.endswith(".safetensors"):
            check_safetensors(path)
    return meta
