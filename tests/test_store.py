"""Tests of the run store: config hashing, crash safety, concurrency, run cards, bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
import time
import zipfile
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

from kdviz.store import (
    CheckpointNotFoundError,
    ConfigError,
    CorruptRunError,
    InvalidRunError,
    RunCardError,
    RunExistsError,
    RunNotFoundError,
    RunStore,
    RunStoreError,
    canonical_json,
    config_hash,
)
from kdviz.store import files as run_files

CONFIG = {
    "dataset": {"name": "moons", "noise": 0.2},
    "method": "kd",
    "hparams": {"temperature": 4.0, "alpha": 0.9},
    "epochs": 5,
    "seed": 0,
    "teacher": None,
}
CANONICAL = (
    '{"dataset":{"name":"moons","noise":0.2},"epochs":5,"hparams":{"alpha":0.9,"temperature":4},'
    '"method":"kd","seed":0,"teacher":null}'
)


def config(**changes) -> dict:
    return {**CONFIG, **changes}


def state(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(4, 3, generator=generator)
    weight[0, 0] = float("nan")  # bit-exact storage must keep NaN payloads and signs
    weight[0, 1] = -0.0
    return {
        "layer.weight": weight,
        "layer.bias": torch.randn(4, generator=generator).to(torch.bfloat16),
        "head.weight": torch.randn(3, 5, generator=generator).t(),  # not contiguous
        "half": torch.randn(2, 2, generator=generator).half(),
        "steps": torch.tensor(7, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }


METRICS = [{"epoch": 1, "loss": 1.25, "test_acc": 0.5}, {"epoch": 2, "loss": 0.75, "test_acc": 0.625}]
SUMMARY = {"test_acc": 0.625, "ece": 0.0625}


def save_run(store: RunStore, cfg: dict | None = None, **kwargs):
    checkpoints = kwargs.pop("checkpoints", {1: state(1), 2: state(2)})
    return store.save(
        cfg or CONFIG, kwargs.pop("metrics", METRICS), kwargs.pop("summary", SUMMARY), checkpoints, **kwargs
    )


def same_bits(left: torch.Tensor, right: torch.Tensor) -> bool:
    return (
        left.dtype == right.dtype
        and left.shape == right.shape
        and torch.equal(
            left.contiguous().reshape(-1).view(torch.uint8), right.contiguous().reshape(-1).view(torch.uint8)
        )
    )


def zip_card(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def card_files(card: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(card)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home")


# -- hashing ------------------------------------------------------------------------------


def test_hash_is_sha256_of_canonical_json_and_stable():
    assert canonical_json(CONFIG) == CANONICAL
    assert config_hash(CONFIG) == hashlib.sha256(CANONICAL.encode()).hexdigest()[:16]
    assert config_hash(CONFIG) == "47a3d72722358da4"  # pinned: run ids must not change between versions


def test_hash_ignores_key_order_at_every_level():
    reordered = {
        "teacher": None,
        "seed": 0,
        "hparams": {"alpha": 0.9, "temperature": 4.0},
        "epochs": 5,
        "method": "kd",
        "dataset": {"noise": 0.2, "name": "moons"},
    }
    assert config_hash(reordered) == config_hash(CONFIG)


@pytest.mark.parametrize(
    ("given", "same_as"),
    [
        (0.90, 0.9),
        (0.1 + 0.2, 0.3),  # slider arithmetic noise
        (4.0, 4),
        (np.float32(0.9), 0.9),
        (np.float64(0.25), 0.25),
        (np.int64(3), 3),
        (-0.0, 0),
        ((1, 2.0), [1, 2]),
        (torch.tensor(0.5), 0.5),
    ],
)
def test_equivalent_values_hash_alike(given, same_as):
    assert config_hash({"value": given}) == config_hash({"value": same_as})


@pytest.mark.parametrize(
    ("left", "right"), [(0.9, 0.91), (1e-4, 1.1e-4), (True, 1), ("1", 1), (None, 0), ([1, 2], [2, 1])]
)
def test_different_values_hash_differently(left, right):
    assert config_hash({"value": left}) != config_hash({"value": right})


def test_hash_is_16_lowercase_hex():
    run_id = config_hash({"anything": [1, "two", {"three": 3.5}]})
    assert len(run_id) == 16 and int(run_id, 16) >= 0 and run_id == run_id.lower()


@pytest.mark.parametrize(
    ("bad_config", "message"),
    [
        ({"model": {"layers": [1, {2, 3}]}}, "value of type set at 'model.layers[1]' is not JSON-serialisable"),
        ({"model": {1: "a"}}, "key 1 at 'model' is a int; only str keys can be stored as JSON"),
        ({"lr": float("nan")}, "nan at 'lr' is not allowed in a config"),
        ({"lr": float("inf")}, "inf at 'lr' is not allowed in a config"),
        ({"data": Path("x.csv")}, "value of type PosixPath at 'data' is not JSON-serialisable"),
        ({"weights": torch.zeros(3)}, "value of type Tensor at 'weights' is not JSON-serialisable"),
        (["not", "a", "dict"], "a config must be a dict, got list"),
    ],
)
def test_unserialisable_config_is_rejected_with_its_key_path(bad_config, message):
    with pytest.raises(ConfigError) as excinfo:
        config_hash(bad_config)
    assert message in str(excinfo.value)


# -- round trip -----------------------------------------------------------------------------


def test_save_get_round_trip_is_bit_exact(store: RunStore):
    record = save_run(store, name="hinton T=4")
    assert record.id == config_hash(CONFIG)
    assert record.config == CONFIG and record.metrics == METRICS and record.summary == SUMMARY
    assert record.checkpoints == [1, 2] and record.name == "hinton T=4"
    assert abs(record.created_at - time.time()) < 60
    assert store.get(record.id) == record
    for epoch in (1, 2):
        loaded = store.load_weights(record.id, epoch)
        assert loaded.keys() == state(epoch).keys()
        for key, tensor in state(epoch).items():
            assert same_bits(loaded[key], tensor), key
    run_dir = store.root / "runs" / record.id
    names = sorted(path.name for path in run_dir.iterdir())
    assert names == [
        "ckpt-1.safetensors",
        "ckpt-2.safetensors",
        "config.json",
        "meta.json",
        "metrics.json",
        "summary.json",
    ]
    assert json.loads((run_dir / "config.json").read_text()) == CONFIG


def test_store_files_are_plain_json_and_safetensors(store: RunStore):
    record = save_run(store)
    run_dir = store.root / "runs" / record.id
    # a safetensors file starts with an 8-byte header length and a JSON header: no pickle anywhere
    raw = (run_dir / "ckpt-2.safetensors").read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8 : 8 + header_length])["layer.weight"]["dtype"] == "F32"
    with closing(sqlite3.connect(store.root / "index.sqlite")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = connection.execute("SELECT id, kind, method, dataset, status FROM runs").fetchone()
    assert row == (record.id, "standalone", "kd", "moons", "done")


def test_tied_weights_are_stored(store: RunStore):
    shared = torch.arange(6.0).reshape(2, 3)
    record = save_run(store, checkpoints={3: {"encoder.weight": shared, "decoder.weight": shared}})
    loaded = store.load_weights(record.id)
    assert torch.equal(loaded["encoder.weight"], shared) and torch.equal(loaded["decoder.weight"], shared)


def test_find_matches_equivalent_config(store: RunStore):
    record = save_run(store)
    equivalent = config(hparams={"alpha": np.float32(0.9), "temperature": 4}, dataset={"noise": 0.2, "name": "moons"})
    assert store.find(equivalent) == record
    assert store.find(config(seed=1)) is None


def test_save_is_idempotent_and_does_not_rewrite(store: RunStore):
    first = save_run(store, name="first")
    run_dir = store.root / "runs" / first.id
    before = {path.name: path.stat().st_mtime_ns for path in run_dir.iterdir()}
    second = save_run(store, metrics=[{"loss": 9.0}], summary={"test_acc": 0.1}, checkpoints={7: state(7)}, name="x")
    assert second == first
    assert {path.name: path.stat().st_mtime_ns for path in run_dir.iterdir()} == before
    assert len(store.list()) == 1


def test_list_is_newest_first_and_filters(store: RunStore):
    teacher = save_run(store, config(method="ce", dataset={"name": "shapes", "size": 32}))
    time.sleep(0.01)
    student = save_run(store, config(teacher=teacher.id, student={"name": "mlp", "width": 8}))
    time.sleep(0.01)
    other = save_run(store, config(seed=1, method={"name": "dkd", "beta": 8.0}))
    assert [record.id for record in store.list()] == [other.id, student.id, teacher.id]
    assert [record.id for record in store.list(dataset="shapes")] == [teacher.id]
    assert [record.id for record in store.list(method="kd")] == [student.id]
    assert [record.id for record in store.list(method="dkd")] == [other.id]
    assert [record.id for record in store.list(kind="student")] == [student.id]
    assert [record.id for record in store.list(teacher=teacher.id)] == [student.id]
    assert [record.id for record in store.list(student="mlp", dataset="moons")] == [student.id]
    assert [record.id for record in store.list(seed=1)] == [other.id]
    assert store.list(dataset="digits") == []
    assert len(store.list(limit=2)) == 2


def test_list_reads_metrics_only_when_asked(store: RunStore):
    record = save_run(store)
    listed = store.list()[0]
    assert listed.metrics is None and listed.summary == SUMMARY and listed.checkpoints == [1, 2]
    assert listed.config == CONFIG and listed.created_at == record.created_at
    assert store.list(with_metrics=True)[0] == record


def test_delete(store: RunStore):
    record = save_run(store)
    keep = save_run(store, config(seed=3))
    assert store.delete(record.id) is True
    assert store.get(record.id) is None and store.find(CONFIG) is None
    assert [run.id for run in store.list()] == [keep.id]
    assert not (store.root / "runs" / record.id).exists()
    assert store.delete(record.id) is False
    assert save_run(store).id == record.id  # can be saved again


def test_load_weights_defaults_to_last_and_lists_epochs_on_error(store: RunStore):
    record = save_run(store, checkpoints={1: state(1), 10: state(10), 5: state(5)})
    assert record.checkpoints == [1, 5, 10]
    assert same_bits(store.load_weights(record.id)["layer.bias"], state(10)["layer.bias"])
    with pytest.raises(
        CheckpointNotFoundError, match=rf"run {record.id} has no checkpoint at epoch 4; available epochs: 1, 5, 10"
    ):
        store.load_weights(record.id, 4)
    with pytest.raises(RunNotFoundError, match="no finished run 0123456789abcdef"):
        store.load_weights("0123456789abcdef")
    with pytest.raises(ValueError, match=r"'\.\./\.\.' is not a run id"):
        store.get("../..")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"loss": 1.0}}, "metrics must be a list of per-epoch dicts, got dict"),
        ({"metrics": [{"loss": 1.0}, 0.5]}, r"metrics\[1\] must be a dict of metric values, got float"),
        ({"metrics": [{"loss": object()}]}, r"value of type object at 'metrics\[0\].loss' is not JSON-serialisable"),
        ({"summary": [0.5]}, "summary must be a dict, got list"),
        ({"checkpoints": [state(1)]}, "checkpoints must be a dict"),
        ({"checkpoints": {"last": state(1)}}, "checkpoint epoch 'last' is not an int"),
        ({"checkpoints": {-1: state(1)}}, "checkpoint epoch -1 is negative"),
        ({"checkpoints": {1: {}}}, "checkpoint at epoch 1 must be a non-empty dict"),
        ({"checkpoints": {1: {"w": np.zeros(3)}}}, "checkpoint at epoch 1: 'w' is a ndarray, not a torch.Tensor"),
        ({"checkpoints": {1: {"w": torch.eye(2).to_sparse()}}}, "checkpoint at epoch 1: 'w' is sparse"),
        ({"name": "two\nlines"}, "a run name must be a non-empty single-line str"),
    ],
)
def test_save_rejects_bad_input_and_stores_nothing(store: RunStore, kwargs, message):
    with pytest.raises(InvalidRunError, match=message):
        save_run(store, **kwargs)
    assert store.list() == [] and os.listdir(store.root / "runs") == []


def test_metric_values_may_be_nan_and_tensors(store: RunStore):
    record = save_run(store, metrics=[{"loss": torch.tensor(float("nan")), "acc": np.float32(0.5)}])
    assert np.isnan(record.metrics[0]["loss"]) and record.metrics[0]["acc"] == 0.5


# -- crash safety ---------------------------------------------------------------------------


def test_crash_while_writing_files_leaves_no_run(store: RunStore, monkeypatch):
    def crash(path, state):
        raise OSError("disk full")

    monkeypatch.setattr(run_files, "write_checkpoint", crash)
    with pytest.raises(OSError, match="disk full"):
        save_run(store)
    assert store.get(config_hash(CONFIG)) is None and store.find(CONFIG) is None and store.list() == []
    assert os.listdir(store.root / "runs") == []  # the temp folder was removed
    monkeypatch.undo()
    assert save_run(store).checkpoints == [1, 2]


def test_crash_after_rename_before_index_row(store: RunStore, monkeypatch):
    def crash(self, run_id):
        raise KeyboardInterrupt  # the process dies between the rename and the index insert

    monkeypatch.setattr(RunStore, "_index_run", crash)
    with pytest.raises(KeyboardInterrupt):
        save_run(store)
    run_id = config_hash(CONFIG)
    assert (store.root / "runs" / run_id / "meta.json").exists()
    assert store.get(run_id) is None and store.find(CONFIG) is None and store.list() == []
    with pytest.raises(RunNotFoundError):
        store.load_weights(run_id)
    monkeypatch.undo()
    record = save_run(store)
    assert record.id == run_id and store.list() == [store.list()[0]] and len(store.list()) == 1
    assert os.listdir(store.root / "runs") == [run_id]  # the second writer's copy was discarded
    assert same_bits(store.load_weights(run_id)["layer.weight"], state(2)["layer.weight"])


def test_reopening_reindexes_a_complete_orphan_folder(store: RunStore, monkeypatch):
    monkeypatch.setattr(RunStore, "_index_run", lambda self, run_id: (_ for _ in ()).throw(SystemExit(1)))
    with pytest.raises(SystemExit):
        save_run(store, name="orphan")
    monkeypatch.undo()
    reopened = RunStore(store.root)
    record = reopened.get(config_hash(CONFIG))
    assert record is not None and record.name == "orphan" and record.metrics == METRICS
    assert [run.id for run in reopened.list()] == [record.id]


def test_reopening_removes_stale_temp_and_incomplete_orphans(store: RunStore):
    runs_dir = store.root / "runs"
    stale = runs_dir / f".tmp-{config_hash(CONFIG)}-0000aaaa"
    fresh = runs_dir / f".tmp-{config_hash(CONFIG)}-0000bbbb"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(CONFIG))
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    orphan = runs_dir / config_hash(config(seed=9))
    orphan.mkdir()
    (orphan / "config.json").write_text(json.dumps(config(seed=9)))  # no meta.json: never completed
    unrelated = runs_dir / "notes"
    unrelated.mkdir()
    reopened = RunStore(store.root)
    assert not stale.exists() and fresh.exists()  # a live writer may still own the fresh one
    assert not orphan.exists() and unrelated.exists()
    assert reopened.list() == [] and reopened.find(CONFIG) is None
    assert save_run(reopened).id == config_hash(CONFIG)


def test_crash_during_delete_leaves_run_invisible_then_cleaned(store: RunStore):
    record = save_run(store)
    runs_dir = store.root / "runs"
    os.rename(runs_dir / record.id, runs_dir / f".trash-{record.id}-00000000")  # delete's first step
    assert store.get(record.id) is None and store.list() == [] and store.find(CONFIG) is None
    reopened = RunStore(store.root)
    assert os.listdir(runs_dir) == []
    assert reopened.delete(record.id) is False  # the row was dropped on open


def test_a_lost_index_is_rebuilt_from_the_folders(store: RunStore):
    first = save_run(store)
    second = save_run(store, config(seed=2))
    (store.root / "index.sqlite").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(store.root / "index.sqlite") + suffix).unlink(missing_ok=True)
    with pytest.raises(RunStoreError, match=r"index\.sqlite is unreadable .*move it away"):
        RunStore(store.root)
    (store.root / "index.sqlite").unlink()
    rebuilt = RunStore(store.root)
    assert [run.id for run in rebuilt.list()] == [second.id, first.id]


# -- damaged runs ---------------------------------------------------------------------------


def test_corrupt_json_names_the_file_and_list_skips_the_run(store: RunStore, caplog):
    damaged = save_run(store)
    healthy = save_run(store, config(seed=5))
    metrics_path = store.root / "runs" / damaged.id / "metrics.json"
    metrics_path.write_text("[{oops")
    with pytest.raises(
        CorruptRunError, match=rf"{metrics_path} has 6 bytes, expected \d+: it was truncated or modified"
    ):
        store.get(damaged.id)
    assert [run.id for run in store.list()] == [healthy.id]
    assert f"skipping damaged run {damaged.id}" in caplog.text
    problems = store.broken_runs()
    assert list(problems) == [damaged.id] and f"{metrics_path} has 6 bytes" in problems[damaged.id]


def test_same_size_json_damage_is_reported_as_invalid_json(store: RunStore):
    record = save_run(store)
    summary_path = store.root / "runs" / record.id / "summary.json"
    size = summary_path.stat().st_size
    summary_path.write_bytes(b"{" + b"x" * (size - 1))
    with pytest.raises(CorruptRunError, match=rf"{summary_path} is not valid JSON \(line 1, column 2"):
        store.get(record.id)
    assert list(store.broken_runs()) == [record.id]


def test_corrupt_safetensors_names_the_file(store: RunStore):
    record = save_run(store)
    path = store.root / "runs" / record.id / "ckpt-2.safetensors"
    path.write_bytes(b"\xff" * path.stat().st_size)  # same size: only parsing can tell
    with pytest.raises(CorruptRunError, match=rf"{path} is not a readable safetensors file"):
        store.load_weights(record.id)
    assert same_bits(store.load_weights(record.id, 1)["half"], state(1)["half"])
    assert f"{path} does not match its checksum in meta.json" in store.broken_runs()[record.id]
    with pytest.raises(CorruptRunError, match="ckpt-2.safetensors"):
        store.export(record.id)


def test_saving_again_repairs_a_damaged_run(store: RunStore):
    record = save_run(store)
    (store.root / "runs" / record.id / "ckpt-1.safetensors").unlink()
    assert store.find(CONFIG) is None  # damaged counts as absent, so the caller retrains
    repaired = save_run(store)
    assert repaired.id == record.id and store.broken_runs() == {}
    assert same_bits(store.load_weights(record.id, 1)["layer.weight"], state(1)["layer.weight"])


def test_silent_weight_damage_is_found_by_checksum_and_repaired_by_save(store: RunStore):
    record = save_run(store)
    path = store.root / "runs" / record.id / "ckpt-1.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # flips bits in the tensor data; header and size stay valid
    path.write_bytes(bytes(raw))
    assert store.find(CONFIG) == record  # fast lookups do not read weights
    assert store.broken_runs() == {record.id: f"{path} does not match its checksum in meta.json: it was modified"}
    assert save_run(store).id == record.id  # a writer checks everything and replaces the damaged run
    assert store.broken_runs() == {}
    repaired = store.load_weights(record.id, 1)
    assert all(same_bits(repaired[key], tensor) for key, tensor in state(1).items())


def test_edited_config_is_detected(store: RunStore):
    record = save_run(store)
    config_path = store.root / "runs" / record.id / "config.json"
    original = config_path.read_text()
    config_path.write_text(original.replace('"seed": 0', '"seed": 1'))
    with pytest.raises(CorruptRunError, match=rf"{config_path} does not hash to the run id {record.id}"):
        store.get(record.id)


# -- concurrency ----------------------------------------------------------------------------


def run_threads(target, count: int) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target(index)
        except BaseException as exc:  # reported by the assertions below
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("separate_stores", [False, True], ids=["shared-store", "store-per-thread"])
def test_concurrent_saves_of_one_config_make_one_run(tmp_path: Path, separate_stores: bool):
    root = tmp_path / "home"
    shared = RunStore(root)
    results = run_threads(
        lambda index: save_run(RunStore(root) if separate_stores else shared, name=f"thread {index}"), 8
    )
    errors = [result for result in results if isinstance(result, BaseException)]
    assert errors == []
    assert len({(record.id, record.created_at, record.name) for record in results}) == 1
    assert os.listdir(root / "runs") == [config_hash(CONFIG)]
    assert len(RunStore(root).list()) == 1


def test_concurrent_saves_of_different_configs(tmp_path: Path):
    store = RunStore(tmp_path / "home")
    results = run_threads(lambda index: save_run(store, config(seed=index), checkpoints={1: state(index)}), 6)
    assert [record.config["seed"] for record in results] == list(range(6))
    assert sorted(record.config["seed"] for record in store.list()) == list(range(6))


# -- run cards ------------------------------------------------------------------------------


def model_state(seed: int) -> dict[str, torch.Tensor]:
    """Weights of the card config's model (an imported card's weights must fit its architecture)."""
    from kdviz.models import build_model

    state = build_model("mlp-8", input_shape=(2,), num_classes=2, input_kind="points", seed=seed).state_dict()
    state["head.weight"][0, 0] = float("nan")  # bit-exact round trips keep NaN payloads
    return state


def card_config(**changes) -> dict:
    """A config the trainer could have stored: the store validates imported cards' dataset and model."""
    from kdviz.models import resolve_spec

    return {**CONFIG, "student": resolve_spec("mlp-8"), **changes}


def save_card_run(store: RunStore, **kwargs):
    checkpoints = kwargs.pop("checkpoints", {1: model_state(1), 2: model_state(2)})
    return save_run(store, card_config(), checkpoints=checkpoints, **kwargs)


def test_export_import_round_trip(store: RunStore, tmp_path: Path):
    record = save_card_run(store, name="shared with the class")
    card = store.export(record.id)
    assert card == store.export(record.id)  # deterministic bytes
    assert sorted(card_files(card)) == [
        "ckpt-1.safetensors",
        "ckpt-2.safetensors",
        "config.json",
        "meta.json",
        "metrics.json",
        "summary.json",
    ]
    other = RunStore(tmp_path / "other")
    imported = other.import_run(io.BytesIO(card))
    assert imported.id == record.id and imported.name == record.name
    assert (imported.config, imported.metrics, imported.summary) == (record.config, record.metrics, record.summary)
    for epoch in record.checkpoints:
        for key, tensor in store.load_weights(record.id, epoch).items():
            assert same_bits(other.load_weights(imported.id, epoch)[key], tensor)
    assert other.import_run(card) == imported  # identical: a no-op


def test_import_never_overwrites_a_different_run(store: RunStore, tmp_path: Path):
    card = store.export(save_card_run(store).id)
    other = RunStore(tmp_path / "other")
    mine = save_card_run(other, metrics=[{"loss": 0.5}], checkpoints={1: model_state(1), 2: model_state(3)})
    with pytest.raises(
        RunExistsError, match=rf"run {mine.id} is already stored with different metrics, weights at epoch 2"
    ):
        other.import_run(card)
    assert other.get(mine.id) == mine
    assert same_bits(other.load_weights(mine.id, 2)["head.weight"], model_state(3)["head.weight"])


def test_export_of_unknown_run(store: RunStore):
    with pytest.raises(RunNotFoundError, match="no finished run 0000000000000000"):
        store.export("0000000000000000")


@pytest.fixture
def good_files(store: RunStore) -> dict[str, bytes]:
    return card_files(store.export(save_card_run(store).id))


def edited(files: dict[str, bytes], **changes: bytes | None) -> bytes:
    result = dict(files)
    for name, data in changes.items():
        name = name.replace("__", ".")
        if data is None:
            result.pop(name)
        else:
            result[name] = data
    return zip_card(result)


@pytest.mark.parametrize(
    ("make_card", "message"),
    [
        (lambda files: b"", "the run card is empty"),
        (lambda files: b"PK\x03\x04 not really", "not a zip file"),
        (lambda files: zip_card({**files, "../config.json": b"{}"}), r"unsafe file name '\.\./config\.json'"),
        (lambda files: zip_card({**files, "/etc/passwd.json": b"{}"}), "unsafe file name '/etc/passwd.json'"),
        (lambda files: zip_card({**files, "run/extra.json": b"{}"}), "unsafe file name 'run/extra.json'"),
        (lambda files: zip_card({**files, "..\\evil.json": b"{}"}), "unsafe file name"),
        (
            lambda files: zip_card({**files, "notes.txt": b"hi"}),
            "unexpected file 'notes.txt'.*only .json and .safetensors",
        ),
        (lambda files: zip_card({**files, "model.pkl": b"x"}), "unexpected file 'model.pkl'"),
        (
            lambda files: zip_card({**files, "extra.json": b"{}"}),
            "unexpected file 'extra.json' in the run card; a run card holds config.json",
        ),
        (lambda files: zip_card({**files, "ckpt-01.safetensors": b"x"}), "unexpected file 'ckpt-01.safetensors'"),
        (lambda files: edited(files, summary__json=None), "the run card lacks summary.json"),
        (
            lambda files: edited(files, metrics__json=b'[{"loss": 1.0,}]'),
            r"metrics.json in the run card is not valid JSON \(line 1, column 15",
        ),
        (lambda files: edited(files, summary__json=b"\xff\xfe"), "summary.json in the run card is not UTF-8"),
        (
            lambda files: edited(files, config__json=b"[1, 2]"),
            "config.json in the run card must hold a JSON dict, got list",
        ),
        (lambda files: edited(files, metrics__json=b"[1]"), r"metrics.json\[0\] must be a dict"),
        (
            lambda files: edited(files, config__json=json.dumps(config(seed=4)).encode()),
            "config was edited after export",
        ),
        (
            lambda files: edited(
                files, meta__json=json.dumps({**json.loads(files["meta.json"]), "checkpoints": [1]}).encode()
            ),
            r"lists checkpoints \[1\] but the card holds \[1, 2\]",
        ),
        (
            lambda files: edited(files, **{"ckpt-2__safetensors": b"\x00" * 64}),
            "ckpt-2.safetensors in the run card is not a valid safetensors file",
        ),
    ],
    ids=[
        "empty",
        "not-zip",
        "parent-dir",
        "absolute",
        "folder",
        "backslash",
        "txt",
        "pickle-name",
        "unknown-json",
        "leading-zero-epoch",
        "missing-summary",
        "bad-json",
        "not-utf8",
        "config-not-dict",
        "metrics-not-dicts",
        "edited-config",
        "meta-checkpoints",
        "bad-safetensors",
    ],
)
def test_import_rejects_bad_cards(tmp_path: Path, good_files, make_card, message):
    target = RunStore(tmp_path / "target")
    with pytest.raises(RunCardError, match=message):
        target.import_run(make_card(good_files))
    assert target.list() == [] and os.listdir(target.root / "runs") == []


def test_import_refuses_pickles(tmp_path: Path, good_files):
    pickled = io.BytesIO()
    torch.save(state(2), pickled)  # a pickle dressed up as a checkpoint must never be loaded
    card = edited(good_files, **{"ckpt-2__safetensors": pickled.getvalue()})
    with pytest.raises(RunCardError, match="ckpt-2.safetensors in the run card is not a valid safetensors file"):
        RunStore(tmp_path / "target").import_run(card)


def test_import_enforces_size_limits_and_unique_names(tmp_path: Path, good_files):
    target = RunStore(tmp_path / "target")
    card = zip_card(good_files)
    with pytest.raises(RunCardError, match="the run card is larger than the limit of 100 bytes"):
        target.import_run(card, max_bytes=100)
    big = zip_card({**good_files, "ckpt-9.safetensors": b"\x00" * 200_000})  # compresses to almost nothing
    with pytest.raises(RunCardError, match="the run card unpacks to more than the limit of 100,000 bytes"):
        target.import_run(big, max_bytes=100_000)
    buffer = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buffer, "w") as archive:
        for name, data in [*good_files.items(), ("summary.json", b"{}")]:
            archive.writestr(name, data)
    with pytest.raises(RunCardError, match="summary.json appears twice in the run card"):
        target.import_run(buffer.getvalue())


# -- root -----------------------------------------------------------------------------------


def test_root_defaults_to_kdviz_home(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KDVIZ_HOME", str(tmp_path / "lab"))
    assert RunStore().root == tmp_path / "lab"
    assert (tmp_path / "lab" / "index.sqlite").exists() and (tmp_path / "lab" / "runs").is_dir()
    monkeypatch.setenv("KDVIZ_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert RunStore().root == tmp_path / "user" / ".kdviz"
    monkeypatch.delenv("KDVIZ_HOME")
    assert RunStore().root == tmp_path / "user" / ".kdviz"
    assert RunStore(tmp_path / "explicit").root == tmp_path / "explicit"


_KILLED_WRITER = """
import os, sys, torch
from kdviz.store import RunStore
from kdviz.store import files as run_files
from kdviz.store.runs import RunStore as _RunStore

where = sys.argv[2]
if where == "mid-write":
    real = run_files.write_checkpoint
    def write_then_die(path, state):
        real(path, state)
        os._exit(9)  # killed after the first checkpoint file: no cleanup, no exception handlers
    run_files.write_checkpoint = write_then_die
else:
    _RunStore._index_run = lambda self, run_id: os._exit(9)  # killed between rename and index row
store = RunStore(sys.argv[1])
state = {"w": torch.arange(6.0).reshape(2, 3)}
store.save({"method": "kd", "seed": 0}, [{"epoch": 1, "loss": 1.0}], {"test_accuracy": 0.5}, {1: state, 2: state})
"""


@pytest.mark.parametrize("where", ["mid-write", "before-index"])
def test_a_killed_writer_process_never_leaves_a_visible_half_run(tmp_path: Path, where: str):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path), where], capture_output=True)
    assert result.returncode == 9, result.stderr.decode()
    cfg = {"method": "kd", "seed": 0}
    store = RunStore(tmp_path)
    if where == "mid-write":
        assert store.get(config_hash(cfg)) is None and store.find(cfg) is None and store.list() == []
    else:  # the folder was complete: reopening re-indexes it as the whole run it is
        record = store.get(config_hash(cfg))
        assert record is not None and record.checkpoints == [1, 2]
    weights = {"w": torch.ones(2)}
    record = store.save(cfg, [{"epoch": 1, "loss": 1.0}], {"test_accuracy": 0.5}, {1: weights, 2: weights})
    assert len(store.list()) == 1 and store.get(record.id) is not None


# -- training claims: several app processes on one store ----------------------------------------


def test_a_claim_is_held_until_released(store: RunStore):
    run_id = "0123456789abcdef"
    assert store.claim(run_id)
    assert not store.claim(run_id)  # held (here by this very process: a second registry waits too)
    store.release(run_id)
    assert store.claim(run_id)
    with pytest.raises(ValueError, match="not a run id"):
        store.claim("../../etc")


def test_a_dead_process_claim_is_taken_over_and_recovered(store: RunStore):
    import subprocess
    import sys

    from kdviz.store.runs import _host_tag

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    store.claims_dir.mkdir(exist_ok=True)
    (store.claims_dir / "0123456789abcdef").write_text(f"{dead_pid}@{_host_tag()}")
    assert store.claim("0123456789abcdef")  # its owner has exited
    (store.claims_dir / "fedcba9876543210").write_text(f"{dead_pid}@{_host_tag()}")
    (store.claims_dir / "00000000000000aa").write_text(f"{os.getppid()}@{_host_tag()}")  # a live process
    assert "claims/fedcba9876543210" in store.recover()
    assert sorted(p.name for p in store.claims_dir.iterdir()) == ["00000000000000aa", "0123456789abcdef"]
    assert not store.claim("00000000000000aa")
