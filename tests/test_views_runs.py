"""Runs page computations: the runs table, filters, histories, parallel-coordinate data, cards, deletion."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kdviz.samples import SAMPLES_DIR, sample_roles
from kdviz.store import RunCardError, RunRecord, RunStore
from kdviz.views import runs as rv
from kdviz.workspace import Workspace


def record(run_id: str, method: str = "ce", teacher: str | None = None, **extra) -> RunRecord:
    config = {
        "dataset": {"name": extra.pop("dataset", "toy")},
        "student": {"name": extra.pop("model", "mlp-8"), "arch": "mlp"},
        "method": method,
        "hparams": extra.pop("hparams", {}),
        "epochs": 3,
        "seed": 0,
        "teacher": teacher,
        "train_subset": extra.pop("subset", None),
    }
    history = [{"epoch": e, "loss": 1.0 / e, "loss/ce": 0.5 / e, "train_accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    return RunRecord(
        id=run_id,
        config=config,
        summary=extra.pop("summary", {"test_accuracy": 0.9, "test_ece": 0.05, "params": 42}),
        metrics=extra.pop("metrics", history),
        checkpoints=[3],
        created_at=1_700_000_000.0,
        name=None,
    )


TEACHER = record("t" * 16, model="mlp-64x2")
SCRATCH = record("s" * 16)
STUDENT = record(
    "d" * 16,
    method="kd",
    teacher="t" * 16,
    hparams={"temperature": 4.0, "alpha": 0.9},
    subset=60,
    summary={"test_accuracy": 0.8, "test_ece": 0.1, "test_agreement": 0.85, "params": 42},
)
SELF = record("p" * 16, method="ps_kd", hparams={"alpha_T": 0.8}, dataset="other")


def test_runs_frame_rows_by_hand() -> None:
    frame = rv.runs_frame([TEACHER, SCRATCH, STUDENT, SELF])
    assert frame["kind"].tolist() == ["teacher", "scratch", "distilled", "self"]
    assert frame["model"].tolist() == ["mlp-64x2", "mlp-8", "mlp-8", "mlp-8"]
    row = frame.iloc[2]
    assert row["hparams"] == "alpha=0.9, temperature=4"
    assert row["teacher"] == "tttttt"
    assert row["subset"] == 60
    assert row["test_agreement"] == pytest.approx(0.85)
    assert math.isnan(frame.iloc[0]["test_agreement"])  # a teacher has no agreement with a teacher
    assert math.isnan(frame.iloc[0]["subset"])
    assert frame.iloc[0]["hparams"] == "—"
    assert frame["label"].iloc[2].endswith("dddddd")
    assert frame["created"].iloc[0].year == 2023


def test_table_view_orders_columns_and_names_the_subset() -> None:
    view = rv.table_view(rv.runs_frame([TEACHER, STUDENT]))
    assert list(view.columns[:4]) == ["label", "dataset", "kind", "method"]
    assert "id" not in view.columns
    assert view["subset"].tolist() == ["all", "60"]


def test_filter_runs() -> None:
    frame = rv.runs_frame([TEACHER, SCRATCH, STUDENT, SELF])
    assert rv.filter_runs(frame, kinds=["distilled", "self"])["id"].tolist() == ["d" * 16, "p" * 16]
    assert rv.filter_runs(frame, datasets=["toy"], methods=["ce"])["id"].tolist() == ["t" * 16, "s" * 16]
    assert len(rv.filter_runs(frame, datasets=[], methods=None)) == 4  # empty selection: no filter
    assert rv.filter_runs(frame, datasets=["nope"]).empty
    with pytest.raises(ValueError, match="valid kinds: teacher, scratch, distilled, self"):
        rv.filter_runs(frame, kinds=["student"])


def test_history_metrics_order_and_split() -> None:
    histories = {
        "a": [{"epoch": 1, "loss": 1.0, "loss/kd": 0.2, "loss/ce": 0.8, "val_accuracy": 0.5, "lr": 0.1, "flag": True}],
        "b": [{"epoch": 1, "loss": 2.0, "train_accuracy": 0.4, "note": "x"}],
    }
    assert rv.history_metrics(histories) == ["loss", "loss/ce", "loss/kd", "train_accuracy", "val_accuracy", "lr"]
    having, missing = rv.split_by_metric(histories, "loss/kd")
    assert list(having) == ["a"] and missing == ["b"]
    assert rv.loss_terms(histories["a"]) == ["kd", "ce"]
    assert rv.loss_terms(histories["b"]) == []


def test_hparams_text() -> None:
    assert rv.hparams_text({"temperature": 4.0, "alpha": 0.25, "mode": "sum", "k": 3}) == (
        "alpha=0.25, k=3, mode=sum, temperature=4"
    )
    assert rv.hparams_text(None) == "—"


# --------------------------------------------------------------------------- a real store


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    store = RunStore(tmp_path / "store")
    for role in ("teacher", "scratch", "distilled"):
        store.import_run((Path(SAMPLES_DIR) / "moons" / f"{role}.kdrun").read_bytes())
    return Workspace(store)


def test_histories_and_parallel_frame(ws: Workspace) -> None:
    roles = sample_roles("moons")
    frame = rv.runs_frame(ws.runs())
    assert set(frame["kind"]) == {"teacher", "scratch", "distilled"}
    histories = rv.run_histories(ws, [roles["teacher"], roles["distilled"]])
    teacher_history = ws.record(roles["teacher"]).metrics
    assert list(histories.values())[0] == teacher_history
    assert len(teacher_history) == 40  # one entry per epoch
    assert "loss/kd" in rv.history_metrics(histories)
    rows = rv.parallel_frame(ws, [roles["distilled"], roles["teacher"]], frame)
    assert rows["id"].tolist() == [roles["distilled"], roles["teacher"]]
    assert rows["hp: temperature"].iloc[0] == 4.0 and math.isnan(rows["hp: temperature"].iloc[1])
    assert rows["hp: alpha"].iloc[0] == pytest.approx(0.9)
    # hyperparameters and agreement have gaps for the teacher, so they are not default axes
    assert rv.parallel_defaults(rows) == ["method", "model", "epochs", "test_accuracy", "test_ece"]
    only_students = rv.parallel_frame(ws, [roles["distilled"]], frame)
    assert "hp: temperature" in rv.parallel_defaults(only_students)


def test_export_delete_import_round_trip(ws: Workspace) -> None:
    run_id = sample_roles("moons")["distilled"]
    assert run_id in rv.sample_run_ids(ws)
    name = rv.card_file_name(ws.record(run_id))
    assert name == f"kdviz-moons-kd-mlp-8-{run_id[:8]}.kdrun"
    card = rv.export_card(ws, run_id)
    before = ws.probs(run_id)  # cached; a delete must drop it
    assert rv.delete_run(ws, run_id) is True
    assert ws.store.get(run_id) is None
    assert rv.delete_run(ws, run_id) is False
    restored = rv.import_card(ws, card, max_bytes=len(card))
    assert restored.id == run_id
    assert ws.probs(run_id) is not before  # rebuilt after the import
    with pytest.raises(RunCardError):
        rv.import_card(ws, b"not a zip file", max_bytes=1000)
    with pytest.raises(ValueError, match="at most 10 bytes"):
        rv.import_card(ws, card, max_bytes=10)
