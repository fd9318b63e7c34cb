"""Translation page figures: the seqkd experiment's metrics per method, and outputs with per-token probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots.style import NEUTRAL_COLOR, OKABE_ITO, SEQUENTIAL_SCALE, apply_layout

__all__ = ["method_bars", "token_probabilities"]


def method_bars(
    summary: Sequence[Mapping[str, Any]],
    teacher: Mapping[str, Any],
    metrics: Sequence[str],
    labels: Mapping[str, str] | None = None,
    *,
    title: str | None = None,
) -> go.Figure:
    """One panel per metric: per method the mean over seeds with its 95 % half-interval, the teacher as a line.

    `summary` rows hold ``method``, ``<metric>_mean`` and ``<metric>_half`` (NaN or None: no interval).
    """
    if not summary or not metrics:
        raise ValueError("method_bars needs at least one summary row and one metric")
    labels = labels or {}
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[labels.get(m, m) for m in metrics])
    methods = [str(row["method"]) for row in summary]
    for col, metric in enumerate(metrics, start=1):
        means = [_num(row.get(f"{metric}_mean")) for row in summary]
        halves = [_num(row.get(f"{metric}_half")) for row in summary]
        fig.add_trace(
            go.Bar(
                x=methods,
                y=means,
                error_y=dict(type="data", array=[0.0 if np.isnan(h) else h for h in halves], visible=True),
                marker_color=OKABE_ITO[1],
                name="students (mean ± 95 % CI)",
                showlegend=col == 1,
                hovertemplate="%{x}: %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        value = _num(teacher.get(metric))
        if not np.isnan(value):
            fig.add_trace(
                go.Scatter(
                    x=methods,
                    y=[value] * len(methods),
                    mode="lines",
                    line=dict(color=NEUTRAL_COLOR, dash="dash"),
                    name="teacher",
                    showlegend=col == 1,
                    hovertemplate=f"teacher: {value:.3f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    return apply_layout(fig, title=title, x_title=None, y_title=None, height=380)


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def token_probabilities(
    rows: Sequence[tuple[str, Sequence[str], Sequence[float]]], *, title: str | None = None
) -> go.Figure:
    """A heat map: one row per model output (label, tokens, each token's probability), cells coloured by the
    probability the model gave the token it wrote, the token written in the cell."""
    if not rows:
        raise ValueError("token_probabilities needs at least one (label, tokens, probs) row")
    for label, tokens, probs in rows:
        if len(tokens) != len(probs):
            raise ValueError(f"row {label!r}: {len(tokens)} tokens but {len(probs)} probabilities")
    width = max(len(tokens) for _, tokens, _ in rows)
    z = np.full((len(rows), width), np.nan)
    text = np.full((len(rows), width), "", dtype=object)
    for i, (_label, tokens, probs) in enumerate(rows):
        z[i, : len(probs)] = probs
        text[i, : len(tokens)] = list(tokens)
    labels = [label for label, _, _ in rows]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(1, width + 1)),
            y=labels,
            text=text,
            texttemplate="%{text}",
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL_SCALE,
            colorbar=dict(title="p(token)"),
            hovertemplate="%{y}, position %{x}: %{text} (p = %{z:.3f})<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    fig.update_yaxes(autorange="reversed")
    return apply_layout(
        fig, title=title, x_title="target position", y_title=None, legend="none", height=90 + 45 * len(rows)
    )
