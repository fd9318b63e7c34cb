"""Explanation-guided KD figures: bars per model and metric, and the λ trade-off lines."""

from __future__ import annotations

import pandas as pd
import pytest

from kdviz.plots import metric_bars, role_color, tradeoff_lines


def _bars() -> pd.DataFrame:
    rows = [
        ("Teacher", "teacher", "shifted_accuracy", 0.9, 0.0),
        ("KD student", "distilled", "shifted_accuracy", 0.3, 0.05),
        ("X λ=1", "explanation", "shifted_accuracy", 0.5, 0.1),
        ("X λ=3", "explanation", "shifted_accuracy", 0.6, 0.02),
        ("Teacher", "teacher", "iid_accuracy", 0.92, 0.0),
        ("KD student", "distilled", "iid_accuracy", 0.88, 0.01),
        ("X λ=1", "explanation", "iid_accuracy", 0.7, 0.03),
        ("X λ=3", "explanation", "iid_accuracy", 0.65, 0.04),
    ]
    return pd.DataFrame(rows, columns=["model", "role", "metric", "mean", "std"])


def test_metric_bars_one_bar_per_model_and_panel_in_role_colours() -> None:
    fig = metric_bars(_bars(), ["shifted_accuracy", "iid_accuracy"], labels={"iid_accuracy": "in-distribution"})
    assert len(fig.data) == 8
    first = {trace.name: trace for trace in fig.data[:4]}
    assert first["Teacher"].marker.color == role_color("teacher")
    assert first["KD student"].marker.color == role_color("distilled")
    assert first["X λ=1"].marker.color == first["X λ=3"].marker.color == role_color("explanation")
    assert first["X λ=1"].marker.pattern.shape != first["X λ=3"].marker.pattern.shape
    assert list(first["X λ=1"].error_y.array) == [0.1] and first["X λ=1"].y == (0.5,)
    assert first["Teacher"].error_y.visible is False  # a single run has no spread
    assert [a.text for a in fig.layout.annotations] == ["shifted accuracy", "in-distribution"]
    assert fig.layout.yaxis.title.text == "shifted accuracy" and fig.layout.yaxis2.title.text == "in-distribution"
    assert sum(trace.showlegend for trace in fig.data) == 4


def test_metric_bars_bad_input() -> None:
    with pytest.raises(ValueError, match="no rows for metric 'pointing_game'"):
        metric_bars(_bars(), ["pointing_game"])
    with pytest.raises(ValueError, match="metrics is empty"):
        metric_bars(_bars(), [])
    with pytest.raises(ValueError, match="std"):
        metric_bars(_bars().drop(columns=["std"]), ["iid_accuracy"])


def test_tradeoff_lines_evenly_spaced_lambdas_and_marker() -> None:
    series = pd.DataFrame(
        {
            "lambda": [0.0, 1.0, 10.0, 10.0, 0.0, 1.0],
            "metric": ["a", "a", "a", "b", "b", "b"],
            "mean": [0.3, 0.5, 0.4, 0.9, 0.7, 0.8],
            "std": [0.01, 0.02, 0.03, 0.0, 0.0, 0.0],
        }
    )
    fig = tradeoff_lines(series, 10.0, title="t")
    assert list(fig.layout.xaxis.ticktext) == ["0 (plain KD)", "1", "10"]
    a, b = fig.data
    assert list(a.x) == [0, 1, 2] and list(a.y) == [0.3, 0.5, 0.4]
    assert list(b.x) == [0, 1, 2] and list(b.y) == [0.7, 0.8, 0.9]  # sorted by λ
    assert list(a.error_y.array) == [0.01, 0.02, 0.03]
    assert fig.layout.shapes[0].x0 == fig.layout.shapes[0].x1 == 2  # the chosen λ's band
    assert fig.layout.xaxis.title.text == "explanation weight λ" and fig.layout.yaxis.title.text
    with pytest.raises(ValueError, match="chosen λ 3 is not in the sweep; valid: 0, 1, 10"):
        tradeoff_lines(series, 3.0)
    with pytest.raises(ValueError, match="df is empty"):
        tradeoff_lines(series.iloc[:0])
