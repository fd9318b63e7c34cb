"""Runs page: every stored run as a table row, learning histories, parallel-coordinate data, card import/export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kdviz.distill import check_stored_config
from kdviz.samples import read_manifest
from kdviz.store import RunRecord
from kdviz.workspace import Workspace, run_label, run_role

__all__ = [
    "HEADLINE_METRICS",
    "RUN_KINDS",
    "TABLE_COLUMNS",
    "UNPACK_FACTOR",
    "broken_runs",
    "card_file_name",
    "delete_run",
    "export_card",
    "filter_runs",
    "history_metrics",
    "hparams_text",
    "import_card",
    "loss_terms",
    "parallel_defaults",
    "parallel_frame",
    "run_histories",
    "run_kind",
    "runs_frame",
    "sample_run_ids",
    "split_by_metric",
    "table_view",
]

#: Kinds of run, which are also the role colours of the app.
RUN_KINDS = ("teacher", "scratch", "distilled", "self")
#: Summary numbers every row shows (NaN where a run lacks one: agreement exists only for students of a teacher).
HEADLINE_METRICS = ("test_accuracy", "test_ece", "test_agreement")
#: An uploaded card may unpack to at most this many times its upload limit.
UNPACK_FACTOR = 4
_METRIC_ORDER = ("loss", "train_accuracy", "val_accuracy", "test_accuracy", "val_agreement", "teacher_agreement")
_NOT_CURVES = frozenset({"epoch"})


def run_kind(record: RunRecord, teacher_ids: Iterable[str] = ()) -> str:
    """teacher (trained from labels and taught some stored run), scratch, distilled or self."""
    role = run_role(record)
    return "teacher" if role == "scratch" and record.id in set(teacher_ids) else role


def _taught_by(record: RunRecord) -> list[str]:
    config = record.config
    teachers = [config["teacher"]] if isinstance(config.get("teacher"), str) and config["teacher"] else []
    listed = config.get("teachers")
    return teachers + [t for t in (listed if isinstance(listed, list) else []) if isinstance(t, str)]


def _model_name(spec: Any) -> str:
    if isinstance(spec, Mapping):
        return str(spec.get("name") or spec.get("label") or spec.get("arch") or "?")
    return str(spec)


def hparams_text(hparams: Mapping[str, Any] | None) -> str:
    """Method hyperparameters as short text, sorted by name: ``alpha=0.9, temperature=4`` ("—" when none)."""
    if not hparams:
        return "—"
    parts = []
    for name in sorted(hparams):
        value = hparams[name]
        parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return ", ".join(parts)


def _number(value: Any, default: float) -> float:
    """`value` as a float for a table cell; `default` for anything else (a table of runs never fails on one)."""
    return float(value) if _is_number(value) else default


def broken_runs(ws: Workspace) -> dict[str, str]:
    """Stored runs the table cannot show (damaged files, or a config no run of kdviz has): id -> why."""
    return ws.store.unlisted()


def runs_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: id, label, dataset, model, method, kind, hparams, epochs, subset, teacher, headline
    metrics (`HEADLINE_METRICS`, NaN where missing), params, seed, created (local time)."""
    teacher_ids = {t for record in records for t in _taught_by(record)}
    rows = []
    for record in records:
        config, summary = record.config, record.summary
        dataset = config.get("dataset")
        subset = config.get("train_subset")
        rows.append(
            {
                "id": record.id,
                "label": run_label(record),
                "dataset": dataset.get("name") if isinstance(dataset, Mapping) else str(dataset),
                "model": _model_name(config.get("student")),
                "method": str(config.get("method", "?")),
                "kind": run_kind(record, teacher_ids),
                "hparams": hparams_text(config.get("hparams")),
                "epochs": int(_number(config.get("epochs"), 0)),
                "subset": _number(subset, np.nan) or np.nan,
                "teacher": ", ".join(t[:6] for t in _taught_by(record)) or "—",
                **{metric: _number(summary.get(metric), np.nan) for metric in HEADLINE_METRICS},
                "params": int(_number(summary.get("params"), 0)),
                "seed": config.get("seed"),
                "created": pd.Timestamp(dt.datetime.fromtimestamp(record.created_at)).floor("s"),
            }
        )
    columns = ["id", "label", "dataset", "model", "method", "kind", "hparams", "epochs", "subset", "teacher"]
    columns += [*HEADLINE_METRICS, "params", "seed", "created"]
    return pd.DataFrame(rows, columns=columns)


TABLE_COLUMNS = (
    "label", "dataset", "kind", "method", "hparams", *HEADLINE_METRICS, "epochs", "subset", "model", "params",
    "teacher", "seed", "created",
)  # fmt: skip


def table_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs table as shown: the most telling columns first, the training subset as text ("all" for none)."""
    view = frame[list(TABLE_COLUMNS)].copy()
    view["subset"] = [("all" if np.isnan(n) else f"{int(n)}") for n in frame["subset"].to_numpy(float)]
    return view


def filter_runs(
    frame: pd.DataFrame,
    *,
    datasets: Iterable[str] | None = None,
    methods: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Rows whose dataset, method and kind are in the given lists (None or empty: no filter on that column)."""
    kinds = list(kinds or [])
    unknown = sorted(set(kinds) - set(RUN_KINDS))
    if unknown:
        raise ValueError(f"unknown run kind(s) {', '.join(unknown)}; valid kinds: {', '.join(RUN_KINDS)}")
    keep = np.ones(len(frame), dtype=bool)
    for column, wanted in (("dataset", datasets), ("method", methods), ("kind", kinds)):
        wanted = list(wanted or [])
        if wanted:
            keep &= frame[column].isin(wanted).to_numpy()
    return frame.loc[keep].reset_index(drop=True)


# --------------------------------------------------------------------------- histories


def run_histories(ws: Workspace, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Per-epoch metric dicts of each run, keyed by the run's label (unique: it ends with a short id)."""
    histories = {}
    for run_id in run_ids:
        record = ws.record(run_id)
        histories[run_label(record)] = list(record.metrics or [])
    return histories


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def history_metrics(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Numeric metrics found in any history: the total loss, its terms, accuracies, agreement, then the rest."""
    found = {
        key
        for history in histories.values()
        for row in history
        for key, value in row.items()
        if key not in _NOT_CURVES and _is_number(value)
    }
    first = [m for m in _METRIC_ORDER[:1] if m in found]
    terms = sorted(m for m in found if m.startswith("loss/"))
    middle = [m for m in _METRIC_ORDER[1:] if m in found]
    rest = sorted(found - set(first) - set(terms) - set(middle))
    return first + terms + middle + rest


def split_by_metric(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], metric: str
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """(histories that record `metric`, names of the runs that do not)."""
    having = {name: list(h) for name, h in histories.items() if any(metric in row for row in h)}
    return having, [name for name in histories if name not in having]


def loss_terms(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the run's loss terms (its ``loss/<term>`` entries), in first-seen order."""
    return [key[5:] for key in dict.fromkeys(k for row in history for k in row) if key.startswith("loss/")]


# --------------------------------------------------------------------------- parallel coordinates


def parallel_frame(ws: Workspace, run_ids: Sequence[str], frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of `frame` for `run_ids` with one numeric column per hyperparameter (``hp: name``; NaN where a
    run's method has no such hyperparameter)."""
    rows = frame.set_index("id").loc[list(run_ids)].reset_index()
    hparams = [ws.record(run_id).config.get("hparams") or {} for run_id in rows["id"]]
    names = sorted({name for h in hparams for name, value in h.items() if _is_number(value)})
    for name in names:
        rows[f"hp: {name}"] = [float(h[name]) if _is_number(h.get(name)) else np.nan for h in hparams]
    return rows


def parallel_defaults(frame: pd.DataFrame) -> list[str]:
    """Default axes: method, model, hyperparameters, epochs, subset, headline metrics — those with no gaps."""
    candidates = ["method", "model", *[c for c in frame.columns if c.startswith("hp: ")], "epochs", "subset"]
    candidates += list(HEADLINE_METRICS)
    present = [c for c in candidates if c in frame.columns and frame[c].notna().all()]
    if "method" in present and frame["method"].nunique() == 1 and len(present) > 3:
        present.remove("method")  # one method: an axis with one tick says nothing
    return present


# --------------------------------------------------------------------------- cards and deletion


def sample_run_ids(ws: Workspace) -> set[str]:
    """Ids of the shipped sample runs (they are re-installed when the server starts)."""
    datasets = read_manifest(ws.samples_dir)["datasets"].values()
    return {run["id"] for entry in datasets for run in entry.get("runs", {}).values()}


def card_file_name(record: RunRecord) -> str:
    """Download name of a run card, e.g. ``kdviz-digits-kd-cnn-xs-40c2edbe.kdrun``."""
    row = runs_frame([record]).iloc[0]
    safe = "-".join(str(part).replace("/", "_").replace(" ", "_") for part in (row.dataset, row.method, row.model))
    return f"kdviz-{safe}-{record.id[:8]}.kdrun"


def export_card(ws: Workspace, run_id: str) -> bytes:
    """The run card (zip of config, metrics, summary, weights) of a stored run."""
    return ws.store.export(run_id)


def delete_run(ws: Workspace, run_id: str) -> bool:
    """Delete a stored run and drop the workspace caches; False when there was nothing to delete."""
    removed = ws.store.delete(run_id)
    ws.forget(run_id)
    return removed


def import_card(ws: Workspace, data: bytes, max_bytes: int) -> RunRecord:
    """Store the run of an uploaded card (validated: `RunCardError` names the problem) and drop the caches.

    The file may have at most `max_bytes`; it may unpack to at most `UNPACK_FACTOR` times that (weights
    hardly compress, so a real card unpacks to about its own size; this stops zip bombs).
    """
    if len(data) > max_bytes:
        raise ValueError(f"the file has {len(data):,} bytes; run cards may have at most {max_bytes:,} bytes")
    record = ws.store.import_run(data, max_bytes=UNPACK_FACTOR * max_bytes, check_config=check_stored_config)
    ws.forget(record.id)
    return record
