"""Divergence inspector extras: a sample next to its nearest training neighbours (images or 1-D signals)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots._checks import names_for, same_length, to_array
from kdviz.plots._images import to_rgb
from kdviz.plots.style import NEUTRAL_COLOR, apply_layout, class_colors

__all__ = ["neighbour_gallery"]

PANEL_HEIGHT = 130


def _image_panels(fig: go.Figure, sample: np.ndarray, neighbours: np.ndarray) -> None:
    for col, image in enumerate([sample, *neighbours], start=1):
        fig.add_trace(go.Image(z=to_rgb(image, "image"), hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(visible=False, row=1, col=col)
        fig.update_yaxes(visible=False, row=1, col=col)


def _signal_panels(
    fig: go.Figure, sample: np.ndarray, neighbours: np.ndarray, labels: list[int] | None, titles: list[str]
) -> None:
    colors = class_colors(max(labels) + 1) if labels else []
    for col, signal in enumerate([sample, *neighbours], start=1):
        color = NEUTRAL_COLOR if col == 1 or not labels else colors[labels[col - 2]]
        fig.add_trace(
            go.Scatter(
                y=signal.ravel(),
                mode="lines",
                name=titles[col - 1],
                line=dict(color=color, width=2),
                showlegend=False,
                hovertemplate="position %{x}<br>value %{y:.3g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        if col > 1:  # the sample in grey behind each neighbour, for comparison
            fig.add_trace(
                go.Scatter(
                    y=sample.ravel(),
                    mode="lines",
                    line=dict(color=NEUTRAL_COLOR, width=1, dash="dot"),
                    showlegend=False,
                    hoverinfo="skip",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="position", row=1, col=col)
        fig.update_yaxes(title_text="value (normalised)" if col == 1 else "", showticklabels=col == 1, row=1, col=col)


def neighbour_gallery(
    sample: Any,
    neighbours: Any,
    neighbour_titles: Sequence[str] | None = None,
    *,
    labels: Sequence[int] | None = None,
    sample_title: str = "sample",
    title: str | None = "Nearest training samples",
) -> go.Figure:
    """The explained sample, then its neighbours, one panel each (one row).

    Images: `sample` C×H×W / H×W and `neighbours` k×C×H×W / k×H×W, min–max scaled per image.
    Signals: `sample` 1×L / L and `neighbours` k×1×L / k×L, drawn as lines (neighbours in their
    label's class colour when `labels` is given, the sample dotted behind each).
    """
    x = to_array(sample, "sample", ndim=(1, 2, 3))
    near = to_array(neighbours, "neighbours", ndim=(2, 3, 4))
    if near.shape[1:] != x.shape:
        raise ValueError(
            f"neighbours must be k×{'×'.join(map(str, x.shape))} like the sample, got shape {tuple(near.shape)}"
        )
    k = near.shape[0]
    titles = [sample_title, *names_for(neighbour_titles, k, "neighbour_titles", "neighbour {}")]
    if labels is not None:
        same_length(len(labels), k, "labels and neighbours")
        labels = [int(label) for label in labels]
        if min(labels) < 0:
            raise ValueError("labels must be class indices >= 0")
    is_signal = x.ndim == 1 or (x.ndim == 2 and x.shape[0] == 1 and x.shape[1] > 3)
    fig = make_subplots(rows=1, cols=k + 1, subplot_titles=titles, horizontal_spacing=0.015 if not is_signal else 0.03)
    if is_signal:
        _signal_panels(fig, x, near, labels, titles)
        fig = apply_layout(fig, title=title, x_title="position", y_title=None, legend="none")
    else:
        if x.ndim != 2 and x.shape[0] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(x.shape)}")
        _image_panels(fig, x, near)
        fig = apply_layout(fig, title=title, x_title=None, y_title=None, legend="none")
    fig.update_annotations(font=dict(size=11))
    fig.update_layout(height=PANEL_HEIGHT + (100 if title else 70))
    return fig
