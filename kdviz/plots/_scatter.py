"""Point-cloud traces shared by the projection and divergence scatters: sample index first in customdata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from kdviz.plots._checks import to_array
from kdviz.plots.style import SEQUENTIAL_SCALE, category_colors

#: Above this many points scatters switch to WebGL (SVG gets slow).
WEBGL_MIN_POINTS = 5000
#: Above this many categories, points share one trace with per-point colours (no legend entry per category).
MAX_LEGEND_CATEGORIES = 30


def is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def category_label(value: Any, names: Sequence[str] | None) -> str:
    """Display name of a category: `names[value]` for an integer label when names are given."""
    if names is not None and is_int(value):
        if not 0 <= int(value) < len(names):
            raise ValueError(f"category {value} has no name; the names list has {len(names)} entries")
        return str(names[int(value)])
    return str(value)


def scatter_traces(
    xy: np.ndarray,
    values: np.ndarray,
    custom: np.ndarray,
    lines: list[str],
    color_title: str,
    *,
    categorical: bool,
    category_names: Sequence[str] | None = None,
) -> list[go.Scatter | go.Scattergl]:
    """Marker traces of N points coloured by `values`.

    `custom` (N×C object array) holds the sample index in column 0; `lines` are extra hover lines
    referring to its other columns. Categorical values give one trace per category (legend
    entries), or, beyond 30 categories, one trace with per-point colours; others a continuous scale.
    """
    trace_type = go.Scattergl if len(xy) > WEBGL_MIN_POINTS else go.Scatter
    head = "sample %{customdata[0]}"
    if not categorical:
        numeric = to_array(values, "color", ndim=1)
        template = "<br>".join([head, f"{color_title} %{{marker.color:.4g}}", *lines]) + "<extra></extra>"
        marker = dict(
            color=numeric,
            colorscale=SEQUENTIAL_SCALE,
            size=7,
            opacity=0.85,
            colorbar=dict(title=dict(text=color_title)),
        )
        return [
            trace_type(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="markers",
                name=color_title,
                showlegend=False,
                customdata=custom,
                marker=marker,
                hovertemplate=template,
            )
        ]
    colors = category_colors(values.tolist(), category_names)
    codes, uniques = pd.factorize(pd.Series(values.tolist(), dtype=object))
    code_of = {value: i for i, value in enumerate(uniques)}
    if len(colors) > MAX_LEGEND_CATEGORIES:
        palette = np.array([colors[value] for value in uniques], dtype=object)
        labels = np.array([category_label(value, category_names) for value in uniques], dtype=object)
        template = "<br>".join([head, f"{color_title}: %{{customdata[{custom.shape[1]}]}}", *lines])
        return [
            trace_type(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="markers",
                name=color_title,
                showlegend=False,
                customdata=np.column_stack([custom, labels[codes]]),
                hovertemplate=template + "<extra></extra>",
                marker=dict(color=palette[codes].tolist(), size=6, opacity=0.8),
            )
        ]
    traces = []
    for value, colour in colors.items():
        member = codes == code_of[value]
        label = category_label(value, category_names)
        template = "<br>".join([head, f"{color_title}: {label}", *lines]) + "<extra></extra>"
        traces.append(
            trace_type(
                x=xy[member, 0],
                y=xy[member, 1],
                mode="markers",
                name=label,
                customdata=custom[member],
                marker=dict(color=colour, size=7, opacity=0.8, line=dict(color="white", width=0.5)),
                hovertemplate=template,
            )
        )
    return traces
