"""Run cards: a run packed as a zip for download, and the strict reader for uploaded ones.

A card holds flat files only: ``config.json``, ``metrics.json``, ``summary.json``, ``meta.json``
(the run id and every other file's size and sha256) and ``ckpt-<epoch>.safetensors``. The reader
never extracts to disk and never unpickles; it rejects folders, ``..``, unknown names, encryption,
oversized members, anything that does not parse, files that do not match meta.json, and configs or
summaries the store would not have written (`kdviz.store.runconfig`), naming the file at fault.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

import torch
from safetensors.torch import load as load_safetensors

from kdviz.hashing import ConfigError, config_hash
from kdviz.store import runconfig
from kdviz.store.errors import InvalidRunError, RunCardError
from kdviz.store.validate import metrics_value, run_name, summary_value

JSON_FILES = ("config.json", "metrics.json", "summary.json", "meta.json")
REQUIRED_FILES = ("config.json", "metrics.json", "summary.json", "meta.json")
CHECKPOINT_NAME = re.compile(r"ckpt-(0|[1-9][0-9]{0,8})\.safetensors")
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB, compressed and uncompressed
MAX_JSON_BYTES = 64 << 20
MAX_MEMBERS = 1000
_EXPECTED = "config.json, metrics.json, summary.json, meta.json and ckpt-<epoch>.safetensors"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the same run always exports to the same bytes


@dataclass
class RunCard:
    """The validated contents of a run card."""

    run_id: str
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    checkpoints: dict[int, dict[str, torch.Tensor]]
    name: str | None
    meta: dict[str, Any]


def checkpoint_file(epoch: int) -> str:
    """The file name of the checkpoint at `epoch`."""
    return f"ckpt-{epoch}.safetensors"


def pack_run_card(files: dict[str, bytes]) -> bytes:
    """A zip of `files` (name -> bytes), JSON deflated, weights stored (they barely compress)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()


def _check_member_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or ":" in name or name.startswith("..") or "\x00" in name:
        raise RunCardError(
            f"unsafe file name {name!r} in the run card: folders, absolute paths and '..' are not allowed"
        )
    if not name.endswith((".json", ".safetensors")):
        raise RunCardError(f"unexpected file {name!r} in the run card: only .json and .safetensors files are allowed")
    if name not in JSON_FILES and not CHECKPOINT_NAME.fullmatch(name):
        raise RunCardError(f"unexpected file {name!r} in the run card; a run card holds {_EXPECTED}")


def _card_bytes(data: bytes | bytearray | memoryview | IO[bytes], max_bytes: int) -> bytes:
    if hasattr(data, "read"):
        data = data.read(max_bytes + 1)  # an upload widget's file object
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a run card must be bytes or a binary file object, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise RunCardError("the run card is empty")
    if len(data) > max_bytes:
        raise RunCardError(f"the run card is larger than the limit of {max_bytes:,} bytes")
    return data


def _list_members(archive: zipfile.ZipFile, max_bytes: int) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise RunCardError(f"the run card holds {len(members)} files; at most {MAX_MEMBERS} are allowed")
    seen: set[str] = set()
    total = 0
    for info in members:
        name = info.filename
        _check_member_name(name)
        if name in seen:
            raise RunCardError(f"{name} appears twice in the run card")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise RunCardError(f"{name} in the run card is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise RunCardError(f"{name} in the run card uses an unsupported compression (use stored or deflate)")
        if name.endswith(".json") and info.file_size > MAX_JSON_BYTES:
            raise RunCardError(f"{name} in the run card is {info.file_size:,} bytes; the limit is {MAX_JSON_BYTES:,}")
        total += info.file_size
        if total > max_bytes:
            raise RunCardError(f"the run card unpacks to more than the limit of {max_bytes:,} bytes")
    missing = [name for name in REQUIRED_FILES if name not in seen]
    if missing:
        raise RunCardError(f"the run card lacks {', '.join(missing)}; a run card holds {_EXPECTED}")
    return members


def _read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError) as exc:
        raise RunCardError(f"{name} in the run card is damaged: {exc}") from exc


def _parse_json(name: str, raw: bytes, expected: type) -> Any:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RunCardError(f"{name} in the run card is not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise RunCardError(
            f"{name} in the run card is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except RecursionError:
        raise RunCardError(f"{name} in the run card is nested too deeply to be a run's JSON") from None
    if not isinstance(value, expected):
        raise RunCardError(f"{name} in the run card must hold a JSON {expected.__name__}, got {type(value).__name__}")
    if runconfig.depth(value) > runconfig.MAX_DEPTH:
        raise RunCardError(f"{name} in the run card is nested more than {runconfig.MAX_DEPTH} levels deep")
    return value


def _verify_meta(meta: dict[str, Any], raw_files: dict[str, bytes]) -> None:
    """Every file of the card has the size and sha256 that meta.json records, and meta.json lists them all."""
    files, digests = meta.get("files"), meta.get("sha256")
    if not isinstance(files, dict) or not isinstance(digests, dict):
        raise RunCardError("meta.json in the run card lacks the 'files' sizes and 'sha256' checksums of its files")
    names = set(raw_files)
    for listing, what in ((files, "files"), (digests, "sha256")):
        if set(listing) != names:
            missing, extra = sorted(names - set(listing)), sorted(set(listing) - names)
            detail = "; ".join(
                part for part in (f"not listed: {', '.join(missing)}" if missing else "",
                                  f"listed but absent: {', '.join(extra)}" if extra else "") if part
            )  # fmt: skip
            raise RunCardError(f"meta.json in the run card: its '{what}' do not match the card's files ({detail})")
    for name in sorted(names):
        size, digest = files[name], digests[name]
        if isinstance(size, bool) or not isinstance(size, int) or size != len(raw_files[name]):
            raise RunCardError(
                f"{name} in the run card has {len(raw_files[name]):,} bytes but meta.json records {size!r}: "
                "it was modified after export"
            )
        if not isinstance(digest, str) or hashlib.sha256(raw_files[name]).hexdigest() != digest:
            raise RunCardError(
                f"{name} in the run card does not match its sha256 in meta.json: it was modified after export"
            )


def _parse_checkpoint(name: str, raw: bytes) -> dict[str, torch.Tensor]:
    try:
        state = load_safetensors(raw)
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise RunCardError(f"{name} in the run card is not a valid safetensors file: {exc}") from exc
    if not state:
        raise RunCardError(f"{name} in the run card holds no tensors")
    return state


def read_run_card(data: bytes | bytearray | memoryview | IO[bytes], max_bytes: int = DEFAULT_MAX_BYTES) -> RunCard:
    """Validate and unpack a run card; raises `RunCardError` naming the file at fault."""
    raw_card = _card_bytes(data, max_bytes)
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw_card))
    except zipfile.BadZipFile:
        raise RunCardError("not a zip file: a run card is the .zip that exporting a run produces") from None
    except (zipfile.LargeZipFile, NotImplementedError, OSError, ValueError) as exc:
        raise RunCardError(f"the run card is a zip this reader cannot open ({exc})") from exc
    with archive:
        members = _list_members(archive, max_bytes)
        config = _parse_json("config.json", _read_member(archive, "config.json"), dict)
        metrics = _parse_json("metrics.json", _read_member(archive, "metrics.json"), list)
        summary = _parse_json("summary.json", _read_member(archive, "summary.json"), dict)
        meta = _parse_json("meta.json", _read_member(archive, "meta.json"), dict)
        raw_files = {
            info.filename: _read_member(archive, info.filename) for info in members if info.filename != "meta.json"
        }
        checkpoints = {}
        for info in members:
            match = CHECKPOINT_NAME.fullmatch(info.filename)
            if match:
                checkpoints[int(match.group(1))] = _parse_checkpoint(info.filename, raw_files[info.filename])
    try:
        run_id = config_hash(config)
    except ConfigError as exc:
        raise RunCardError(f"config.json in the run card: {exc}") from exc
    try:
        metrics = metrics_value(metrics, source="metrics.json")
        summary = summary_value(summary, source="summary.json")
        name = run_name(meta.get("name"))
    except InvalidRunError as exc:
        raise RunCardError(f"{exc} (in the run card)") from exc
    if "id" not in meta:
        raise RunCardError("meta.json in the run card lacks the run's 'id'")
    if meta.get("id") != run_id:
        raise RunCardError(
            f"config.json in the run card hashes to {run_id} but meta.json names run {meta.get('id')!r}: "
            "the config was edited after export"
        )
    listed = meta.get("checkpoints")
    if listed is not None and not (
        isinstance(listed, list) and all(type(epoch) is int for epoch in listed)  # noqa: E721 (bool is no epoch)
    ):
        raise RunCardError(f"meta.json in the run card: 'checkpoints' must be a list of int epochs, got {listed!r}")
    if listed is not None and sorted(listed) != sorted(checkpoints):
        raise RunCardError(
            f"meta.json in the run card lists checkpoints {sorted(listed)} but the card holds {sorted(checkpoints)}"
        )
    _verify_meta(meta, raw_files)
    try:
        runconfig.check_config(config)
        runconfig.check_summary(summary)
    except runconfig.ConfigProblem as exc:
        source = "" if str(exc).startswith("summary.json") else "config.json: "
        raise RunCardError(f"{source}{exc} (in the run card)") from exc
    return RunCard(run_id, config, metrics, summary, checkpoints, name, meta)
