"""The dark-knowledge lesson's picture of one input: an image, a signal, a point among the others, or a feature row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from kdviz.plots._checks import names_for, same_length, to_array
from kdviz.plots._images import to_rgb
from kdviz.plots.style import NEUTRAL_COLOR, apply_layout, class_colors

__all__ = ["INPUT_KINDS", "sample_input_figure"]

INPUT_KINDS = ("image", "signal", "points", "tabular")


def _points_figure(
    x: np.ndarray, points: Any, point_labels: Any, class_names: Sequence[str] | None, label: int | None
) -> go.Figure:
    cloud = to_array(points, "points", ndim=2)
    if cloud.shape[1] != 2 or x.shape != (2,):
        raise ValueError(f"points must be N×2 and x a 2-vector, got {tuple(cloud.shape)} and {tuple(x.shape)}")
    labels = np.asarray(point_labels, dtype=np.int64) if point_labels is not None else np.zeros(len(cloud), np.int64)
    same_length(len(labels), len(cloud), "point_labels and points")
    k = int(max(labels.max(), label or 0)) + 1
    names = names_for(class_names, len(class_names) if class_names is not None else k, "class_names", "class {}")
    colors = class_colors(len(names))
    fig = go.Figure()
    for c, name in enumerate(names):
        member = labels == c
        if member.any():
            fig.add_trace(
                go.Scatter(
                    x=cloud[member, 0], y=cloud[member, 1], mode="markers", name=name,
                    marker=dict(color=colors[c], size=6, opacity=0.45),
                    hovertemplate=f"{name}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
                )
            )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[x[0]], y=[x[1]], mode="markers", name="this sample",
            marker=dict(color=colors[label] if label is not None else NEUTRAL_COLOR, size=18, symbol="star",
                        line=dict(color="black", width=2)),
            hovertemplate="this sample<br>(%{x:.2f}, %{y:.2f})<extra></extra>",
        )
    )  # fmt: skip
    return fig


def sample_input_figure(
    x: Any,
    kind: str,
    *,
    label: int | None = None,
    class_names: Sequence[str] | None = None,
    points: Any = None,
    point_labels: Any = None,
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
    height: int = 260,
) -> go.Figure:
    """One input as the model sees it (normalised values).

    - `image`: C×H×W or H×W, min–max scaled for display;
    - `signal`: C×L or L, one line per channel;
    - `points`: a 2-vector drawn as a star among `points` (N×2) coloured by `point_labels`;
    - `tabular`: a D-vector as one bar per feature (`feature_names`).
    """
    if kind not in INPUT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(INPUT_KINDS)}; got {kind!r}")
    value = to_array(x, "x", ndim=(1, 2, 3))
    if title is None and label is not None:
        title = f"true class: {class_names[label] if class_names is not None else label}"
    if kind == "image":
        fig = go.Figure(go.Image(z=to_rgb(value, "x"), hoverinfo="skip"))
        fig.update_xaxes(showticklabels=False)
        fig.update_yaxes(showticklabels=False, scaleanchor="x")
        return apply_layout(fig, title=title, x_title="pixel column", y_title="pixel row", legend="none", height=height)
    if kind == "signal":
        channels = value[None] if value.ndim == 1 else value.reshape(value.shape[0], -1)
        fig = go.Figure(
            [
                go.Scatter(y=channel, mode="lines", name=f"channel {c}", line=dict(color=NEUTRAL_COLOR, width=2))
                for c, channel in enumerate(channels)
            ]
        )
        legend = "top" if len(channels) > 1 else "none"
        return apply_layout(
            fig, title=title, x_title="position", y_title="value (normalised)", legend=legend, height=height
        )
    if kind == "points":
        fig = _points_figure(value.reshape(-1), points, point_labels, class_names, label)
        return apply_layout(fig, title=title, x_title="feature 1", y_title="feature 2", legend="right", height=height)
    row = value.reshape(-1)
    names = names_for(feature_names, row.shape[0], "feature_names", "feature {}")
    fig = go.Figure(go.Bar(x=names, y=row, marker=dict(color=NEUTRAL_COLOR), name="value"))
    return apply_layout(
        fig, title=title, x_title="feature", y_title="value (standardised)", legend="none", height=height
    )
