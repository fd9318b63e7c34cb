"""Page figures are built once per distinct input (kdviz.plots._memo) and the workspace reuses its listing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import kdviz.plots as plots
from kdviz.plots import _memo


@pytest.fixture(autouse=True)
def _empty_cache():
    _memo.clear()
    yield
    _memo.clear()


def counting_builder():
    calls = []

    def build(values, title="t"):
        calls.append(1)
        return {"values": np.asarray(values).tolist(), "title": title}

    return _memo.memoised(build), calls


def test_same_inputs_build_once_and_share_the_figure():
    build, calls = counting_builder()
    first = build(np.arange(5.0), title="a")
    second = build(np.arange(5.0), title="a")  # equal contents, a different array object
    assert first is second and len(calls) == 1


@pytest.mark.parametrize(
    "other",
    [
        (np.arange(5.0) + 1e-12, "a"),  # any change of a value
        (np.arange(5, dtype=np.float32), "a"),  # same numbers, other dtype
        (np.arange(5.0).reshape(5, 1), "a"),  # same bytes, other shape
        (np.arange(5.0), "b"),  # another option
    ],
)
def test_any_difference_builds_again(other):
    build, calls = counting_builder()
    build(np.arange(5.0), title="a")
    build(other[0], title=other[1])
    assert len(calls) == 2


def test_frames_dicts_and_dataclasses_are_digested_by_content():
    @dataclasses.dataclass
    class Fit:
        temperature: float
        runs: list

    frame = pd.DataFrame({"model": ["a", "b"], "value": [0.1, 0.2]})
    value = {"fit": Fit(1.5, ["x"]), "frame": frame, "tensor": torch.ones(3)}
    same = {"fit": Fit(1.5, ["x"]), "frame": frame.copy(), "tensor": torch.ones(3)}
    assert _memo.digest_of(value) == _memo.digest_of(same)
    changed = frame.assign(value=[0.1, 0.3])
    assert _memo.digest_of({**value, "frame": changed}) != _memo.digest_of(value)
    assert _memo.digest_of(Fit(1.5, ["x"])) != _memo.digest_of(Fit(1.5, ["y"]))


def test_arguments_it_cannot_digest_bypass_the_cache():
    build, calls = counting_builder()
    build(np.arange(3.0), title=object())
    build(np.arange(3.0), title=object())
    assert len(calls) == 2


@given(st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=20))
def test_digest_depends_only_on_content(values):
    assert _memo.digest_of(np.array(values)) == _memo.digest_of(np.array(list(values)))
    assert _memo.digest_of([values, "x"]) != _memo.digest_of([values, "y"])


def test_exported_page_builders_are_memoised_and_equal_to_the_uncached_figure():
    frame = pd.DataFrame(
        {"model": ["t", "s"], "role": ["teacher", "distilled"], "metric": ["ece", "ece"], "value": [0.1, 0.2],
         "low": [0.05, 0.1], "high": [0.15, 0.3]}
    )  # fmt: skip
    fig = plots.metric_intervals(frame)
    assert plots.metric_intervals(frame.copy()) is fig
    assert fig.to_dict() == plots.metric_intervals.uncached(frame).to_dict()
    assert plots.metric_intervals(frame.assign(value=[0.1, 0.25])) is not fig


def test_pages_never_modify_the_shared_figures():
    """Builders' figures are shared by every session: pages pass options to the builder instead."""
    import re
    from pathlib import Path

    pages = Path(__file__).resolve().parent.parent / "pages"
    mutate = re.compile(r"\.(update_layout|update_xaxes|update_yaxes|update_traces|add_trace|add_shape|add_annotation"
                        r"|add_vline|add_hline|for_each_trace)\(")  # fmt: skip
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(pages.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if mutate.search(line)
    ]
    assert offenders == []
