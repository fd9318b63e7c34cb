"""Explanation-guided KD figures: per-model metric bars with error bars, and the λ trade-off lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots._checks import require_columns
from kdviz.plots.style import NEUTRAL_COLOR, apply_layout, axis_label, series_styles

__all__ = ["metric_bars", "tradeoff_lines"]

_LINE_COLORS = ("#D55E00", "#56B4E9", "#000000")  # vermillion, sky blue, black: no role's colour
_LINE_STYLES = (("solid", "circle"), ("dash", "square"), ("dot", "diamond"))


def _error_color(fill: str) -> str:
    """Error bars that stay visible on their bar: light grey on dark fills, the house dark blue otherwise."""
    red, green, blue = (int(fill.lstrip("#")[k : k + 2], 16) for k in (0, 2, 4))
    return "#AAAAAA" if 0.299 * red + 0.587 * green + 0.114 * blue < 80 else "#2a3f5f"


def metric_bars(
    df: pd.DataFrame,
    metrics: Sequence[str],
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    y_range: tuple[float, float] | None = (0.0, 1.05),
) -> go.Figure:
    """One panel per metric, one bar per model (its role's colour; same-role models differ by pattern), ± std.

    `df` is long: columns ``model``, ``role``, ``metric``, ``mean``, ``std`` (one row per model and metric).
    """
    require_columns(df, ("model", "role", "metric", "mean", "std"), "df")
    if not metrics:
        raise ValueError("metrics is empty: name at least one metric column of df")
    absent = [m for m in metrics if m not in set(df["metric"])]
    if absent:
        raise ValueError(
            f"df has no rows for metric {absent[0]!r}; it has {', '.join(map(str, df['metric'].unique()))}"
        )
    labels = labels or {}
    models = list(dict.fromkeys(df["model"].astype(str)))
    roles = dict(zip(df["model"].astype(str), df["role"].astype(str)))
    styles = series_styles(models, roles)
    names = [labels.get(m, axis_label(m)) for m in metrics]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=names, shared_yaxes=False)
    for col, metric in enumerate(metrics, start=1):
        rows = df[df["metric"] == metric]
        for model in models:
            row = rows[rows["model"].astype(str) == model]
            if row.empty:
                continue
            style = styles[model]
            mean, std = float(row["mean"].iloc[0]), float(row["std"].iloc[0])
            fig.add_trace(
                go.Bar(
                    x=[model],
                    y=[mean],
                    error_y=dict(
                        type="data", array=[std], visible=std > 0, color=_error_color(style.color), thickness=2
                    ),
                    name=model,
                    legendgroup=model,
                    showlegend=col == 1,
                    marker=dict(color=style.color, pattern=dict(shape=style.pattern)),
                    hovertemplate=f"<b>{model}</b><br>{names[col - 1]}: %{{y:.3f}} ± {std:.3f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(showticklabels=False, title_text="model (see legend)", row=1, col=col)
        fig.update_yaxes(title_text=names[col - 1], row=1, col=col)
        if y_range is not None:
            fig.update_yaxes(range=list(y_range), row=1, col=col)
    fig.update_layout(bargap=0.15)
    return apply_layout(fig, title=title, x_title="model", y_title=None, height=380)


def tradeoff_lines(
    df: pd.DataFrame,
    chosen: float | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Each metric against λ (evenly spaced categories; λ = 0 labelled plain KD), ± std, `chosen` λ shaded.

    `df` has columns ``lambda``, ``metric``, ``mean``, ``std`` (`kdviz.views.explanation.tradeoff_series`).
    """
    require_columns(df, ("lambda", "metric", "mean", "std"), "df")
    if df.empty:
        raise ValueError("df is empty: the trade-off needs at least one λ")
    labels = labels or {}
    lams = sorted({float(v) for v in df["lambda"]})
    ticks = ["0 (plain KD)" if lam == 0 else f"{lam:g}" for lam in lams]
    position = {lam: k for k, lam in enumerate(lams)}
    fig = go.Figure()
    for k, metric in enumerate(dict.fromkeys(df["metric"])):
        rows = df[df["metric"] == metric].sort_values("lambda")
        dash, symbol = _LINE_STYLES[k % len(_LINE_STYLES)]
        name = labels.get(metric, axis_label(metric))
        fig.add_trace(
            go.Scatter(
                x=[position[float(v)] for v in rows["lambda"]],
                y=rows["mean"].to_numpy(float),
                error_y=dict(type="data", array=rows["std"].to_numpy(float)),
                mode="lines+markers",
                name=name,
                line=dict(color=_LINE_COLORS[k % len(_LINE_COLORS)], dash=dash, width=2),
                marker=dict(symbol=symbol, size=9),
                customdata=np.asarray(ticks)[[position[float(v)] for v in rows["lambda"]]],
                hovertemplate=f"<b>{name}</b><br>λ = %{{customdata}}: %{{y:.3f}}<extra></extra>",
            )
        )
    if chosen is not None:
        if float(chosen) not in position:
            raise ValueError(f"chosen λ {chosen:g} is not in the sweep; valid: {', '.join(f'{v:g}' for v in lams)}")
        fig.add_vline(
            x=position[float(chosen)],
            line=dict(color=NEUTRAL_COLOR, width=12),
            opacity=0.15,
        )
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(lams))), ticktext=ticks, range=[-0.4, len(lams) - 0.6])
    fig.update_yaxes(range=[0, 1.05])
    return apply_layout(fig, title=title, x_title="explanation weight λ", y_title="score (mean ± std over seeds)")
