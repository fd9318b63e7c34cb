"""The run store: finished runs keyed by the hash of their config, on disk with a SQLite index.

Root: ``RunStore(root)``; with no root, ``$KDVIZ_HOME`` when set, else ``~/.kdviz``.

Layout::

    root/index.sqlite                 SQLite (WAL) table `runs`: one row per finished run
    root/runs/<id>/config.json        the config exactly as given (tuples as lists)
                   metrics.json       per-epoch metric dicts
                   summary.json       final numbers (test accuracy, ...)
                   ckpt-<epoch>.safetensors   weights; never pickled
                   meta.json          id, name, created_at, checkpoints, file sizes and sha256; last

Crash safety: a run is written into ``root/runs/.tmp-<id>-<random>/``, every file is fsynced,
the folder is renamed to ``root/runs/<id>/`` and only then is the index row inserted. A run is
visible (`get`, `find`, `list`) only when its row exists and its folder is there, so a crash at
any step leaves nothing that reads as finished. `delete` renames the folder to ``.trash-*``
before it drops the row. Reads check file sizes (cheap); `save`, `import_run` and `broken_runs`
also check every checksum, and a writer replaces a damaged run of its config.

Recovery when a store is opened (or by `kdviz runs gc`): ``.trash-*`` folders, and ``.tmp-*``
folders whose writer is gone (their name holds the writer's pid and host; a process of this host
that has exited, or any writer after 30 minutes) are removed; rows whose folder is gone are
dropped; a *complete* run folder without a row (a crash between rename and index) is
re-indexed, because its data is whole; an incomplete one is removed. Deleting ``index.sqlite``
therefore rebuilds the index from the folders.

Threads and processes may share a root: every operation opens its own SQLite connection with
a busy timeout, and the same config saved concurrently yields exactly one run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from kdviz import __version__
from kdviz.hashing import canonical_json, config_hash, to_json_value
from kdviz.paths import default_home
from kdviz.store import files as run_files
from kdviz.store import runconfig
from kdviz.store.errors import (
    CheckpointNotFoundError,
    CorruptRunError,
    RunCardError,
    RunExistsError,
    RunNotFoundError,
    RunStoreError,
)
from kdviz.store.runcard import DEFAULT_MAX_BYTES, RunCard, checkpoint_file, pack_run_card, read_run_card
from kdviz.store.validate import checkpoint_states, metrics_value, run_name, same_state, summary_value

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
STALE_TMP_SECONDS = 30 * 60  # a live writer touches its temp folder far more often than this
STALE_CLAIM_SECONDS = 24 * 3600  # a training claim of another host (its process cannot be checked)
SQLITE_TIMEOUT_SECONDS = 30.0
RUN_ID = re.compile(r"[0-9a-f]{16}")
INDEXED_FIELDS = ("name", "kind", "method", "dataset", "status")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        name TEXT,
        kind TEXT,
        method TEXT,
        dataset TEXT,
        created_at REAL NOT NULL,
        status TEXT NOT NULL,
        config_json TEXT NOT NULL,
        summary_json TEXT NOT NULL,
        checkpoints_json TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at)",
    "CREATE INDEX IF NOT EXISTS runs_by_dataset ON runs (dataset)",
    "CREATE INDEX IF NOT EXISTS runs_by_method ON runs (method)",
)
_COLUMNS = "id, name, created_at, config_json, summary_json, checkpoints_json"


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


#: Temp folders are named ``.tmp-<id>-<pid>@<host>-<random>``: recovery removes those whose process is gone.
_TMP_OWNER = re.compile(r"\.tmp-[0-9a-f]{16}-([0-9]+)@([0-9a-f]{8})-[0-9a-f]{8}")


def _owner_is_gone(name: str) -> bool:
    """True when a temp folder's writer was a process on this host that no longer runs.
    Folders of other hosts (a shared store) or of the old naming wait for the 30-minute rule."""
    match = _TMP_OWNER.fullmatch(name)
    return match is not None and _process_is_gone(int(match.group(1)), match.group(2))


def _process_is_gone(pid: int, host: str) -> bool:
    """True when process `pid` of host tag `host` is known to have exited (only this host's can be checked)."""
    if host != _host_tag() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False
    return False


@dataclass(frozen=True)
class RunRecord:
    """A finished run. `metrics` is None in `list` results unless asked for (it can be large)."""

    id: str
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] | None
    checkpoints: list[int]
    created_at: float  # seconds since the epoch
    name: str | None


def spec_name(value: Any) -> str | None:
    """'shapes' for both ``"shapes"`` and ``{"name": "shapes", ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"]
    return None


def index_fields(config: dict[str, Any]) -> dict[str, str | None]:
    """The config's indexed fields: dataset and method names, and the kind of run.

    The kind is ``config["kind"]`` when given, else "student" for a run distilled from a teacher
    run and "standalone" for one trained without.
    """
    kind = config.get("kind") if isinstance(config.get("kind"), str) else None
    if kind is None:
        kind = "student" if config.get("teacher") else "standalone"
    return {"kind": kind, "method": spec_name(config.get("method")), "dataset": spec_name(config.get("dataset"))}


def _matches(value: Any, wanted: Any) -> bool:
    return value == wanted or spec_name(value) == wanted


class RunStore:
    """Finished runs under one root folder; safe to share between threads and processes."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, recover: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else default_home()
        self.runs_dir = self.root / "runs"
        self.claims_dir = self.root / "claims"
        self.index_path = self.root / "index.sqlite"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._writes = 0  # write transactions committed by this object (part of `stamp`)
        self._create_index()
        if recover:
            self.recover()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # -- SQLite ---------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.index_path, timeout=SQLITE_TIMEOUT_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise RunStoreError(f"cannot open the run index {self.index_path}: {exc}") from exc
        try:
            yield connection
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # subclasses (locked, busy, ...) are not damage
                raise
            raise RunStoreError(
                f"the run index {self.index_path} is unreadable ({exc}); move it away and reopen the store "
                "to rebuild it from the run folders"
            ) from exc
        finally:
            connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; BEGIN IMMEDIATE takes the write lock up front, so two writers
        wait for each other (up to the timeout) instead of failing mid-way."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            self._writes += 1

    def _create_index(self) -> None:
        with self._connect() as connection:
            deadline = time.monotonic() + SQLITE_TIMEOUT_SECONDS
            while True:  # switching to WAL needs a moment of exclusive access when first created
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        with self._transaction() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > FORMAT_VERSION:
                raise RunStoreError(
                    f"the run index {self.index_path} has format {version}; this kdviz reads format {FORMAT_VERSION}"
                )
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {FORMAT_VERSION}")

    def stamp(self) -> tuple[Any, ...]:
        """A cheap fingerprint of the store's contents (a few `stat` calls, no reads).

        It changes when this object commits a write, and when any process adds, deletes or renames
        a run (the runs folder's and the index's modification times and sizes, its WAL included).
        File-system clocks are coarse, so callers that cache on it should also expire entries after
        a few seconds (as `Workspace` does).
        """
        parts: list[Any] = [self._writes]
        for path in (self.runs_dir, self.index_path, self.index_path.with_name(self.index_path.name + "-wal")):
            try:
                status = path.stat()
                parts.append((status.st_mtime_ns, status.st_size))
            except OSError:
                parts.append(None)
        return tuple(parts)

    def _has_row(self, run_id: str) -> bool:
        with self._connect() as connection:
            return connection.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def _index_run(self, run_id: str) -> None:
        """Insert (or refresh) the index row of a published run folder, from the folder itself,
        so every writer of one id writes the same row."""
        with self._transaction() as connection:
            run_dir = self.runs_dir / run_id
            meta = run_files.verified_meta(run_dir, run_id)
            config = run_files.read_config(run_dir, run_id)
            summary = run_files.read_json(run_dir / "summary.json", dict)
            fields = index_fields(config)
            connection.execute(
                """INSERT INTO runs (id, name, kind, method, dataset, created_at, status,
                                     config_json, summary_json, checkpoints_json)
                   VALUES (?, ?, ?, ?, ?, ?, 'done', ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET
                     name = excluded.name, kind = excluded.kind, method = excluded.method,
                     dataset = excluded.dataset, created_at = excluded.created_at, status = excluded.status,
                     config_json = excluded.config_json, summary_json = excluded.summary_json,
                     checkpoints_json = excluded.checkpoints_json""",
                (
                    run_id,
                    meta.get("name"),
                    fields["kind"],
                    fields["method"],
                    fields["dataset"],
                    float(meta["created_at"]),
                    json.dumps(config, sort_keys=True),
                    json.dumps(summary, sort_keys=True),
                    json.dumps(sorted(meta["checkpoints"])),
                ),
            )

    # -- folders --------------------------------------------------------------------------

    def _run_dir(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise ValueError(f"{run_id!r} is not a run id (16 lowercase hex characters)")
        return self.runs_dir / run_id

    def _move_to_trash(self, path: Path) -> Path:
        trash = self.runs_dir / f".trash-{path.name}-{secrets.token_hex(4)}"
        os.rename(path, trash)
        return trash

    def _write_tmp_dir(
        self,
        run_id: str,
        config: dict[str, Any],
        metrics: list[dict[str, Any]],
        summary: dict[str, Any],
        states: dict[int, dict[str, torch.Tensor]],
        meta: dict[str, Any],
    ) -> Path:
        tmp_dir = self.runs_dir / f".tmp-{run_id}-{os.getpid()}@{_host_tag()}-{secrets.token_hex(4)}"
        tmp_dir.mkdir()
        try:
            run_files.write_json(tmp_dir / "config.json", config)
            run_files.write_json(tmp_dir / "metrics.json", metrics)
            run_files.write_json(tmp_dir / "summary.json", summary)
            for epoch, state in sorted(states.items()):
                run_files.write_checkpoint(tmp_dir / checkpoint_file(epoch), state)
            written = sorted(tmp_dir.iterdir())
            meta = {
                **meta,
                "checkpoints": sorted(states),
                "files": {path.name: path.stat().st_size for path in written},
                "sha256": {path.name: run_files.file_digest(path) for path in written},
            }
            run_files.write_json(tmp_dir / "meta.json", meta)
            run_files.fsync_path(tmp_dir)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        return tmp_dir

    def _publish_dir(self, tmp_dir: Path, run_id: str) -> None:
        """Rename a written temp folder to its final name. If another writer got there first
        with a complete folder, keep theirs; a damaged folder in the way is moved aside."""
        final = self.runs_dir / run_id
        for _attempt in range(3):
            try:
                os.rename(tmp_dir, final)  # atomic; refuses a non-empty target
                run_files.fsync_path(self.runs_dir)
                return
            except OSError:
                if not final.exists():
                    shutil.rmtree(tmp_dir, ignore_errors=True)
                    raise
            try:
                run_files.verify_run_dir(final, run_id)
            except CorruptRunError as exc:
                logger.warning("replacing damaged run folder %s: %s", final, exc)
                shutil.rmtree(self._move_to_trash(final), ignore_errors=True)
                continue
            shutil.rmtree(tmp_dir, ignore_errors=True)
            return
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise RunStoreError(f"could not publish run folder {final}: it kept being replaced")

    def _commit(
        self,
        run_id: str,
        config: dict[str, Any],
        metrics: list[dict[str, Any]],
        summary: dict[str, Any],
        states: dict[int, dict[str, torch.Tensor]],
        meta: dict[str, Any],
    ) -> RunRecord:
        meta = {"format": FORMAT_VERSION, "id": run_id, "created_at": time.time(), "kdviz": __version__, **meta}
        tmp_dir = self._write_tmp_dir(run_id, config, metrics, summary, states, meta)
        self._publish_dir(tmp_dir, run_id)
        self._index_run(run_id)
        record = self.get(run_id)
        if record is None:
            raise RunStoreError(f"run {run_id} was deleted while it was being saved")
        return record

    def _existing(self, run_id: str, config: dict[str, Any], *, deep: bool = False) -> RunRecord | None:
        """The stored run with this id, None if there is none or it is damaged (it gets replaced).
        `deep` also checksums every file: for writers, which can repair what they find."""
        try:
            record = self.get(run_id)
            if record is not None and deep:
                run_files.verify_run_dir(self.runs_dir / run_id, run_id)
        except CorruptRunError as exc:
            logger.warning("run %s is damaged and will be replaced: %s", run_id, exc)
            return None
        if record is not None and canonical_json(record.config) != canonical_json(config):
            raise RunStoreError(f"config hash collision on run {run_id}: a different config is stored under this id")
        return record

    # -- public API -----------------------------------------------------------------------

    def save(
        self,
        config: dict[str, Any],
        metrics: list[dict[str, Any]],
        summary: dict[str, Any],
        checkpoints: dict[int, dict[str, torch.Tensor]],
        name: str | None = None,
    ) -> RunRecord:
        """Store a finished run under ``config_hash(config)`` and return its record.

        Idempotent: when a run with this config is already stored, that run is returned and
        nothing is written (same config, same run).
        """
        run_id = config_hash(config)
        stored_config = to_json_value(config)
        stored_metrics = metrics_value(metrics)
        stored_summary = summary_value(summary)
        states = checkpoint_states(checkpoints)
        name = run_name(name)
        existing = self._existing(run_id, config, deep=True)
        if existing is not None:
            return existing
        return self._commit(run_id, stored_config, stored_metrics, stored_summary, states, {"name": name})

    def get(self, run_id: str) -> RunRecord | None:
        """The finished run with this id, or None. A stored run whose files are damaged raises
        `CorruptRunError` naming the file."""
        run_dir = self._run_dir(run_id)
        if not self._has_row(run_id) or not run_dir.is_dir():
            return None
        try:
            meta = run_files.verified_meta(run_dir, run_id)
            config = run_files.read_config(run_dir, run_id)
            summary = run_files.read_json(run_dir / "summary.json", dict)
            metrics = run_files.read_json(run_dir / "metrics.json", list)
        except CorruptRunError:
            if not run_dir.exists():  # deleted by another thread while we read
                return None
            raise
        return RunRecord(
            id=run_id,
            config=config,
            summary=summary,
            metrics=metrics,
            checkpoints=sorted(meta["checkpoints"]),
            created_at=float(meta["created_at"]),
            name=meta.get("name"),
        )

    def find(self, config: dict[str, Any]) -> RunRecord | None:
        """The finished run of exactly this config (up to key order and float noise), or None.

        A stored run whose files are damaged counts as absent (logged), so the caller trains
        again and the next `save` replaces it; `get` raises instead.
        """
        run_id = config_hash(config)
        return self._existing(run_id, config) if self._has_row(run_id) else None

    def list(self, *, with_metrics: bool = False, limit: int | None = None, **filters: Any) -> list[RunRecord]:
        """Finished runs, newest first, matching every filter.

        Filters on ``name``, ``kind``, ``method``, ``dataset`` and ``status`` use the index; any
        other keyword compares the config's top-level entry (a spec dict matches its "name"),
        e.g. ``list(dataset="shapes", teacher=run_id, seed=0)``. Damaged runs are skipped and
        logged (see `broken_runs`). Metrics are read only with ``with_metrics=True``.
        """
        where, params = [], []
        for field in INDEXED_FIELDS:
            if field in filters:
                value = filters.pop(field)
                where.append(f"{field} IS ?")
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect() as connection:
            rows = connection.execute(sql + " ORDER BY created_at DESC, rowid DESC", params).fetchall()
        records: list[RunRecord] = []
        for run_id, name, created_at, config_json, summary_json, checkpoints_json in rows:
            try:
                config = json.loads(config_json)
                summary = json.loads(summary_json)
                checkpoints = json.loads(checkpoints_json)
            except (json.JSONDecodeError, RecursionError) as exc:
                logger.warning("skipping run %s: its index row in %s is damaged: %s", run_id, self.index_path, exc)
                continue
            problem = runconfig.listing_problem(config, summary)
            if problem is not None:
                logger.warning("skipping run %s: %s (see `unlisted`)", run_id, problem)
                continue
            if not all(_matches(config.get(key), wanted) for key, wanted in filters.items()):
                continue
            run_dir = self.runs_dir / run_id
            if not run_dir.is_dir():
                continue  # a half-finished delete; recovery drops the row
            try:
                run_files.verified_meta(run_dir, run_id)
                metrics = run_files.read_json(run_dir / "metrics.json", list) if with_metrics else None
            except CorruptRunError as exc:
                logger.warning("skipping damaged run %s: %s", run_id, exc)
                continue
            records.append(
                RunRecord(
                    id=run_id,
                    config=config,
                    summary=summary,
                    metrics=metrics,
                    checkpoints=checkpoints,
                    created_at=created_at,
                    name=name,
                )
            )
            if limit is not None and len(records) >= limit:
                break
        return records

    def unlisted(self) -> dict[str, str]:
        """Indexed runs that `list` skips, run id -> why: damaged files (sizes only, as `list` checks) or a
        config or summary no table of runs can show. Cheap; for showing them as broken, with a delete action."""
        with self._connect() as connection:
            query = "SELECT id, config_json, summary_json FROM runs ORDER BY created_at DESC"
            rows = connection.execute(query).fetchall()
        problems = {}
        for run_id, config_json, summary_json in rows:
            run_dir = self.runs_dir / run_id
            try:
                problem = runconfig.listing_problem(json.loads(config_json), json.loads(summary_json))
            except (json.JSONDecodeError, RecursionError) as exc:
                problem = f"its index row is damaged ({exc})"
            if problem is None and run_dir.is_dir():
                try:
                    run_files.verified_meta(run_dir, run_id)
                except CorruptRunError as exc:
                    problem = str(exc)
            if problem is not None:
                problems[run_id] = problem
        return problems

    def broken_runs(self) -> dict[str, str]:
        """Indexed runs whose files are damaged: run id -> what is wrong (reads and checksums every file)."""
        with self._connect() as connection:
            run_ids = [row[0] for row in connection.execute("SELECT id FROM runs")]
        problems = {}
        for run_id in run_ids:
            run_dir = self.runs_dir / run_id
            try:
                if run_dir.is_dir():  # a missing folder is a half-finished delete, not damage
                    run_files.verify_run_dir(run_dir, run_id)
            except CorruptRunError as exc:
                problems[run_id] = str(exc)
        return problems

    def load_weights(
        self, run_id: str, epoch: int | None = None, device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """The state dict saved at `epoch` (None: the last checkpoint), loaded onto `device`."""
        run_dir = self._run_dir(run_id)
        if not self._has_row(run_id) or not run_dir.is_dir():
            raise RunNotFoundError(f"no finished run {run_id} in {self.root}")
        epochs = sorted(run_files.verified_meta(run_dir, run_id)["checkpoints"])
        if not epochs:
            raise CheckpointNotFoundError(f"run {run_id} has no checkpoints")
        if epoch is None:
            epoch = epochs[-1]
        elif epoch not in epochs:
            raise CheckpointNotFoundError(
                f"run {run_id} has no checkpoint at epoch {epoch}; available epochs: {', '.join(map(str, epochs))}"
            )
        return run_files.load_checkpoint(run_dir / checkpoint_file(epoch), str(device))

    def delete(self, run_id: str) -> bool:
        """Remove a run (index row and folder); False when there was nothing to remove."""
        run_dir = self._run_dir(run_id)
        trash = None
        with self._transaction() as connection:
            if run_dir.exists():
                trash = self._move_to_trash(run_dir)  # invisible from here on, even if we crash
            removed_row = connection.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount > 0
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return removed_row or trash is not None

    def export(self, run_id: str) -> bytes:
        """The run as a zip "run card" (config, metrics, summary, meta, weights) for download."""
        record = self.get(run_id)
        if record is None:
            raise RunNotFoundError(f"no finished run {run_id} in {self.root}")
        run_dir = self.runs_dir / run_id
        names = ["config.json", "metrics.json", "summary.json", "meta.json"]
        names += [checkpoint_file(epoch) for epoch in record.checkpoints]
        files = {}
        for file_name in names:
            path = run_dir / file_name
            if file_name.endswith(".safetensors"):
                run_files.check_safetensors(path)  # a damaged file must not reach a download
            files[file_name] = path.read_bytes()
        return pack_run_card(files)

    def import_run(
        self,
        data: bytes | bytearray | memoryview | IO[bytes],
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        check_config: Callable[[dict[str, Any]], None] | None = None,
        check_weights: bool = True,
    ) -> RunRecord:
        """Store the run in a run card (see `export`) and return its record.

        The card is validated first (`RunCardError` names the problem): its files against the sizes
        and checksums in its meta.json, its config's dataset, model and teacher fields
        (`kdviz.store.runconfig`), its weights against the model where it can be built, and the
        config by `check_config` when given (the app passes `kdviz.distill.check_stored_config`: the
        training fields are the trainer's to judge; it raises `ValueError`). A run with the same id
        that is already stored is returned if the card is identical to it, and otherwise left
        untouched with `RunExistsError`: an import never overwrites stored results.
        `check_weights=False` skips building the model (and so its dataset) for cards whose bytes
        are already pinned by a trusted checksum, such as the shipped samples.
        """
        card = read_run_card(data, max_bytes=max_bytes)
        try:
            if check_config is not None:
                check_config(card.config)
            if check_weights:
                runconfig.check_weights(card.config, card.checkpoints)
        except (ValueError, TypeError) as exc:  # ConfigProblem and the trainer's own checks are ValueErrors
            source = "" if str(exc).startswith("ckpt-") else "config.json: "
            raise RunCardError(f"{source}{exc} (in the run card)") from exc
        existing = self._existing(card.run_id, card.config, deep=True)
        if existing is not None:
            differences = self._differences(existing, card)
            if differences:
                raise RunExistsError(
                    f"run {card.run_id} is already stored with different {', '.join(differences)}; "
                    "delete it first to replace it"
                )
            return existing
        meta = {"name": card.name, "imported": True}
        if isinstance(card.meta.get("created_at"), int | float):
            meta["original_created_at"] = card.meta["created_at"]
        return self._commit(card.run_id, card.config, card.metrics, card.summary, card.checkpoints, meta)

    def _differences(self, stored: RunRecord, card: RunCard) -> list[str]:
        def dumped(value: Any) -> str:
            return json.dumps(value, sort_keys=True)

        differences = []
        if dumped(stored.metrics) != dumped(card.metrics):
            differences.append("metrics")
        if dumped(stored.summary) != dumped(card.summary):
            differences.append("summary")
        if stored.checkpoints != sorted(card.checkpoints):
            differences.append(f"checkpoint epochs ({stored.checkpoints} vs {sorted(card.checkpoints)})")
        else:
            for epoch in stored.checkpoints:
                if not same_state(self.load_weights(stored.id, epoch), card.checkpoints[epoch]):
                    differences.append(f"weights at epoch {epoch}")
        return differences

    # -- training claims (several app processes on one store) -------------------------------------

    def _claim_path(self, run_id: str) -> Path:
        return self.claims_dir / self._run_dir(run_id).name  # _run_dir checks that it is a run id

    def claim(self, run_id: str) -> bool:
        """Claim the training of `run_id` for this process; False while another live process holds it.

        Two app processes on one store (a class served by several processes) thereby never train
        the same run twice: the second waits for the first's run to appear (see `kdviz.jobs`). A
        claim whose process on this host has exited is taken over; one of another host only after
        `STALE_CLAIM_SECONDS`. Release it with `release` when training ends, whatever the outcome.
        """
        path = self._claim_path(run_id)
        self.claims_dir.mkdir(parents=True, exist_ok=True)
        owner = f"{os.getpid()}@{_host_tag()}"
        for _ in range(3):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._claim_is_stale(path):
                    return False
                path.unlink(missing_ok=True)  # its owner is gone: take it over
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(owner)
            return True
        return False

    def _claim_is_stale(self, path: Path) -> bool:
        try:
            owner = path.read_text()
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        pid, _, host = owner.partition("@")
        if pid == str(os.getpid()) and host == _host_tag():
            return False  # ours
        return (pid.isdigit() and _process_is_gone(int(pid), host)) or age > STALE_CLAIM_SECONDS

    def release(self, run_id: str) -> None:
        """Give up this process's claim on `run_id` (no-op when it holds none)."""
        path = self._claim_path(run_id)
        try:
            if path.read_text() == f"{os.getpid()}@{_host_tag()}":
                path.unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def recover(self) -> list[str]:
        """Clean up after crashed writers (see the module docstring); run on every open.

        Returns the names of the leftover folders it removed (``.trash-*``, and ``.tmp-*`` whose
        writer is gone: its process on this host has exited, or it is older than 30 minutes).
        """
        now = time.time()
        indexed = set()
        with self._connect() as connection:
            indexed = {row[0] for row in connection.execute("SELECT id FROM runs")}
        run_dirs = set()
        removed = []
        for entry in os.scandir(self.runs_dir):
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                stale = entry.name.startswith(".tmp-") and (
                    _owner_is_gone(entry.name) or now - entry.stat().st_mtime > STALE_TMP_SECONDS
                )
            except FileNotFoundError:  # another writer renamed or removed it since the scan
                continue
            if entry.name.startswith(".trash-") or stale:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
            elif RUN_ID.fullmatch(entry.name):
                run_dirs.add(entry.name)
        for run_id in sorted(indexed - run_dirs):
            with self._transaction() as connection:
                if not (self.runs_dir / run_id).exists():  # re-checked under the write lock
                    connection.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        for run_id in sorted(run_dirs - indexed):
            self._adopt_orphan(run_id)
        if self.claims_dir.is_dir():
            for entry in os.scandir(self.claims_dir):
                if self._claim_is_stale(Path(entry.path)):
                    Path(entry.path).unlink(missing_ok=True)
                    removed.append(f"claims/{entry.name}")
        return removed

    def _adopt_orphan(self, run_id: str) -> None:
        run_dir = self.runs_dir / run_id
        try:
            self._index_run(run_id)
            logger.info("re-indexed run folder %s", run_dir)
        except CorruptRunError as exc:
            if self._has_row(run_id) or not run_dir.exists():
                return  # another process indexed or removed it meanwhile
            logger.warning("removing incomplete run folder %s: %s", run_dir, exc)
            shutil.rmtree(self._move_to_trash(run_dir), ignore_errors=True)
        except FileNotFoundError:
            return
