"""Own pairs with per-sample metadata: `Pair(..., metadata=frame)` checked row by row, kept when the pair's
arrays are saved (as JSON, never pickled) and read back for the Divergence page's slices."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from own_models import TabularNet

from kdviz.data.arrays import load_arrays, save_arrays
from kdviz.data.dataset import DatasetError
from kdviz.external.pair import Pair


def _pair(**options) -> Pair:
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.arange(40) % 3
    return Pair(TabularNet(), TabularNet(), test=(x[:20], y[:20]), train=(x[20:], y[20:]), **options)


def test_metadata_is_kept_per_split_and_survives_saving(tmp_path) -> None:
    site = pd.DataFrame({"site": [f"s{i % 4}" for i in range(20)], "age": range(20)}, index=range(100, 120))
    pair = _pair(metadata={"test": site, "train": site.assign(age=lambda f: f["age"] + 50)})
    assert pair.dataset.metadata("test")["age"].tolist() == list(range(20))  # the caller's index is dropped
    assert pair.dataset.metadata("train")["age"].iloc[0] == 50
    assert pair.dataset.metadata("val") is None
    spec = save_arrays(pair.dataset, "with-meta", tmp_path)
    again = load_arrays(spec, tmp_path)
    assert again.metadata("test").equals(pair.dataset.metadata("test"))
    assert again.metadata("train")["age"].tolist() == list(range(50, 70))
    plain = save_arrays(_pair().dataset, "with-meta", tmp_path)
    assert plain != spec and load_arrays(plain, tmp_path).metadata("test") is None


def test_a_frame_means_the_test_split_and_bad_metadata_is_named() -> None:
    assert _pair(metadata=pd.DataFrame({"a": range(20)})).dataset.metadata("test")["a"].iloc[-1] == 19
    with pytest.raises(DatasetError, match="metadata for the test split has 5 rows but the split has 20 samples"):
        _pair(metadata=pd.DataFrame({"a": range(5)}))
    with pytest.raises(DatasetError, match="must be a pandas DataFrame, got dict"):
        _pair(metadata={"test": {"a": [1]}})
    with pytest.raises(DatasetError, match="unknown split\\(s\\) tset"):
        _pair(metadata={"tset": pd.DataFrame({"a": range(20)})})


def test_a_kdviz_dataset_brings_its_own_metadata() -> None:
    spec = {"name": "shapes", "n_train": 16, "n_val": 16, "n_test": 16, "seed": 0}
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8))
    pair = Pair(net, net, data=spec)
    assert {"size", "hue", "cue"} <= set(pair.dataset.metadata("test").columns)
