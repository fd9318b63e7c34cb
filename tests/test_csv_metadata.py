"""CSV metadata columns: kept out of the features, split like the samples, refused with a specific message
when unknown or the label; kept through an upload's spec; offered to the Divergence page's slice rules."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from kdviz.data.cache import check_spec
from kdviz.data.dataset import DatasetError
from kdviz.data.files import load_csv
from kdviz.data.uploads import load_upload, save_upload
from kdviz.views.divergence import slice_metadata


def _csv(n: int = 30) -> bytes:
    rows = ["id,a,site,b,label"]
    for i in range(n):
        rows.append(f"{i},{i * 1.5},{'north' if i % 3 else 'south'},{(i % 5) - 2},{'yes' if i % 2 else 'no'}")
    return ("\n".join(rows) + "\n").encode()


def test_metadata_columns_stay_out_of_the_features_and_follow_each_split() -> None:
    ds = load_csv(_csv(), "label", metadata=["site", "id"], seed=3)
    assert ds.input_shape == (2,) and ds.spec["feature_names"] == ["a", "b"]
    assert ds.spec["metadata"] == ["site", "id"]
    mean, std = np.array(ds.normalization["mean"]), np.array(ds.normalization["std"])
    for split in ("train", "val", "test"):
        meta = ds.metadata(split)
        x, _ = ds.split(split)
        assert list(meta.columns) == ["site", "id"] and len(meta) == len(x)
        a = x.numpy()[:, 0] * std[0] + mean[0]  # feature a is 1.5 × id: each row's metadata is its own
        assert np.allclose(a, meta["id"].to_numpy() * 1.5, atol=1e-4)
        assert set(meta["site"]) <= {"north", "south"}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (["site", "colour"], "metadata column(s) 'colour' not found; available columns: 'id', 'a', 'site'"),
        (["label"], "metadata column 'label' is the label column"),
        ("site", "metadata must be a list of column names"),
        ([""], "metadata must be a list of column names"),
        (["id", "a", "b", "site"], "has no feature columns besides the label column 'label' and the metadata columns"),
    ],
)
def test_bad_metadata_is_refused_with_a_specific_message(metadata, message: str) -> None:
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        load_csv(_csv(), "label", metadata=metadata, filename="people.csv")
    assert str(raised.value).startswith("'people.csv': ")


def test_non_numeric_columns_can_be_metadata_but_not_features() -> None:
    with pytest.raises(DatasetError, match="non-numeric feature columns: 'site'"):
        load_csv(_csv(), "label")
    without = load_csv(_csv(), "label", metadata=["site"])
    assert without.input_shape == (3,) and without.spec["feature_names"] == ["id", "a", "b"]
    assert load_csv(_csv().replace(b"north", b"1").replace(b"south", b"2"), "label").metadata("test") is None


def test_an_upload_keeps_its_metadata_option(tmp_path) -> None:
    spec, ds = save_upload("people.csv", _csv(), root=tmp_path, label_column="label", metadata=["site"])
    assert spec["metadata"] == ["site"]
    check_spec(spec)  # a stored run's spec with metadata is valid
    again = load_upload(spec, root=tmp_path)
    assert again.metadata("test")["site"].tolist() == ds.metadata("test")["site"].tolist()


def test_slice_rules_see_the_features_then_the_metadata() -> None:
    ds = load_csv(_csv(), "label", metadata=["site"])
    cache: dict = {}
    ws = SimpleNamespace(
        dataset=lambda run_id: ds,
        labels=lambda run_id, split="test": ds.split(split)[1].numpy(),
        cached=lambda key, make: cache.setdefault(key, make()),
    )
    meta, columns = slice_metadata(ws, "run", "test")
    assert list(meta.columns) == ["class", "id", "a", "b", "site"]
    assert meta["site"].tolist() == ds.metadata("test")["site"].tolist()
    assert columns == {"class": ("class", "")}
