"""Uploaded datasets: validated, kept by content hash, reloadable by spec; bad files change nothing."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from kdviz.data.cache import clear_dataset_cache, get_dataset
from kdviz.data.dataset import DatasetError
from kdviz.data.uploads import list_uploads, load_upload, save_upload, uploads_dir


def _csv(n: int = 60) -> bytes:
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{x:.3f},{y:.3f},{'yes' if x > y else 'no'}" for x, y in rng.normal(size=(n, 2))]
    return "\n".join(rows).encode()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KDVIZ_HOME", str(tmp_path))
    clear_dataset_cache()
    return tmp_path


def test_saved_upload_reloads_by_spec(home: Path):
    spec, dataset = save_upload("My Data.csv", _csv(), label_column="label")
    assert spec["name"].startswith("upload-my_data-") and spec["label_column"] == "label"
    again = get_dataset(spec)
    assert again.name == spec["name"] and again.spec == spec
    np.testing.assert_array_equal(again.x_train.numpy(), dataset.x_train.numpy())
    assert [m["spec"] for m in list_uploads()] == [spec]
    assert save_upload("My Data.csv", _csv(), label_column="label")[0] == spec  # idempotent
    assert again.feature_names == ["a", "b"]  # the columns' names survive the upload's own spec


def test_bad_files_are_refused_and_nothing_is_written(home: Path):
    with pytest.raises(DatasetError, match="label_column"):
        save_upload("x.csv", _csv())
    with pytest.raises(DatasetError, match="unsupported file type '.pkl'"):
        save_upload("model.pkl", pickle.dumps({"a": 1}))
    with pytest.raises(DatasetError):
        save_upload("x.csv", b"a,b,label\n1,nan,yes\n2,3,no\n", label_column="label")
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([object()], dtype=object), y=np.array([0]))
    with pytest.raises(DatasetError):
        save_upload("x.npz", buffer.getvalue())
    assert not uploads_dir().exists() or not any(uploads_dir().iterdir())


def test_missing_or_damaged_upload_is_named(home: Path):
    spec, _ = save_upload("d.csv", _csv(), label_column="label")
    path = uploads_dir() / f"{spec['upload']}.csv"
    path.write_bytes(path.read_bytes() + b"\n1,2,yes")
    with pytest.raises(DatasetError, match="is damaged"):
        load_upload(spec)
    path.unlink()
    with pytest.raises(DatasetError, match="is gone"):
        load_upload(spec)
    with pytest.raises(DatasetError, match="not an uploaded-dataset spec"):
        load_upload({"name": "x", "upload": "../../etc/passwd", "filename": "a.csv"})
