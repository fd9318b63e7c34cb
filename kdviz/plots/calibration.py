"""Calibration figures: reliability diagrams, confidence histograms, metric intervals, truth vs model confidence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots._checks import nonempty_mapping, require_columns, same_length, to_array
from kdviz.plots.style import NEUTRAL_COLOR, apply_layout, series_styles

__all__ = ["confidence_histogram", "metric_intervals", "posterior_comparison", "reliability_diagram"]

BIN_COLUMNS = ("bin_lower", "bin_upper", "confidence", "accuracy", "count")
METRIC_LABELS = {"ece": "ECE", "mce": "MCE", "adaptive_ece": "adaptive ECE", "nll": "NLL", "brier": "Brier"}


def _diagonal(name: str = "perfect calibration") -> go.Scatter:
    return go.Scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        name=name,
        line=dict(color=NEUTRAL_COLOR, dash="dash", width=1),
        hoverinfo="skip",
    )


def reliability_diagram(
    bins: Mapping[str, pd.DataFrame],
    roles: Mapping[str, str] | None = None,
    *,
    kind: Literal["line", "bar"] = "line",
    title: str | None = "Reliability diagram",
) -> go.Figure:
    """Accuracy against confidence per bin (`kdviz.analysis.reliability_bins` tables), all models on one plot.

    `kind="line"` puts each non-empty bin at its mean confidence; `kind="bar"` draws bins as bars
    over their confidence interval (overlaid, translucent). Empty bins are skipped; the hover shows
    the bin, its mean confidence, accuracy and sample count.
    """
    if kind not in ("line", "bar"):
        raise ValueError(f"kind must be 'line' or 'bar', got {kind!r}")
    tables = nonempty_mapping(bins, "bins", "{'teacher': reliability_bins(...)}")
    styles = series_styles(list(tables), roles)
    fig = go.Figure()
    for name, table in tables.items():
        require_columns(table, BIN_COLUMNS, f"bins[{name!r}]", " (pass the output of reliability_bins)")
        filled = table[table["count"] > 0]
        style = styles[name]
        custom = filled[["bin_lower", "bin_upper", "count", "confidence"]].to_numpy(dtype=float)
        hover = (
            f"<b>{name}</b><br>bin %{{customdata[0]:.2f}}–%{{customdata[1]:.2f}}<br>"
            "mean confidence %{customdata[3]:.3f}<br>accuracy %{y:.3f}<br>%{customdata[2]:.0f} samples<extra></extra>"
        )
        if kind == "line":
            trace = go.Scatter(
                x=filled["confidence"].to_numpy(float),
                y=filled["accuracy"].to_numpy(float),
                mode="lines+markers",
                line=dict(color=style.color, dash=style.dash),
                marker=dict(symbol=style.symbol, size=8),
            )
        else:
            lower, upper = filled["bin_lower"].to_numpy(float), filled["bin_upper"].to_numpy(float)
            trace = go.Bar(
                x=(lower + upper) / 2,
                y=filled["accuracy"].to_numpy(float),
                width=upper - lower,
                opacity=0.55,
                marker=dict(color=style.color, pattern=dict(shape=style.pattern), line=dict(color=style.color)),
            )
        trace.update(name=name, customdata=custom, hovertemplate=hover)
        fig.add_trace(trace)
    fig.add_trace(_diagonal())
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(range=[0, 1], constrain="domain")
    fig.update_yaxes(range=[0, 1.02])
    return apply_layout(fig, title=title, x_title="confidence (top-label probability)", y_title="accuracy")


def confidence_histogram(
    conf: Mapping[str, Any],
    roles: Mapping[str, str] | None = None,
    *,
    n_bins: int = 15,
    title: str | None = "Confidence histogram",
) -> go.Figure:
    """Share of samples per equal-width confidence bin on [0, 1], one bar group per model.

    Bins are (i/n, (i+1)/n], as in `kdviz.analysis.calibration` (0 falls in the first bin).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    values = nonempty_mapping(conf, "conf", "{'teacher': top-label confidences}")
    styles = series_styles(list(values), roles)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    fig = go.Figure()
    for name, raw in values.items():
        c = to_array(raw, f"conf[{name!r}]", ndim=1)
        if (c < 0).any() or (c > 1).any():
            raise ValueError(
                f"conf[{name!r}] must hold confidences in [0, 1], got values in [{c.min():.3g}, {c.max():.3g}]"
            )
        index = np.clip(np.searchsorted(edges, c, side="left") - 1, 0, n_bins - 1)
        counts = np.bincount(index, minlength=n_bins)
        style = styles[name]
        fig.add_trace(
            go.Bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=counts / len(c),
                name=name,
                customdata=np.stack([edges[:-1], edges[1:], counts], axis=1),
                marker=dict(color=style.color, pattern=dict(shape=style.pattern)),
                hovertemplate=(
                    f"<b>{name}</b><br>confidence %{{customdata[0]:.2f}}–%{{customdata[1]:.2f}}<br>"
                    "%{y:.1%} of samples (%{customdata[2]:.0f})<extra></extra>"
                ),
            )
        )
    fig.update_layout(barmode="group", bargap=0.1)
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(tickformat=".0%")
    return apply_layout(fig, title=title, x_title="confidence (top-label probability)", y_title="share of samples")


def metric_intervals(
    table: pd.DataFrame, *, title: str | None = "Calibration metrics with bootstrap intervals"
) -> go.Figure:
    """One panel per metric: each model's value (marker) and its bootstrap interval (vertical segment).

    `table` is long: columns ``model, role, metric, value, low, high`` (NaN low/high: no interval).
    The interval is drawn as its own segment rather than as error bars around the value because a
    point estimate can lie outside its percentile interval (ECE is biased upwards on resamples).
    """
    require_columns(table, ("model", "role", "metric", "value", "low", "high"), "table")
    metrics = list(dict.fromkeys(table["metric"].astype(str)))
    models = list(dict.fromkeys(table["model"].astype(str)))
    roles = dict(zip(table["model"].astype(str), table["role"].astype(str)))
    styles = series_styles(models, roles)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_LABELS.get(m, m) for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        rows = table[table["metric"].astype(str) == metric]
        for model in models:
            row = rows[rows["model"].astype(str) == model]
            if row.empty:
                continue
            value, low, high = (float(row.iloc[0][c]) for c in ("value", "low", "high"))
            style = styles[model]
            fig.add_trace(
                go.Scatter(
                    x=[model, model],
                    y=[low, high],
                    mode="lines",
                    line=dict(color=style.color, width=3),
                    legendgroup=model,
                    showlegend=False,
                    name=f"{model} interval",
                    hovertemplate=f"<b>{model}</b><br>interval {low:.4g} – {high:.4g}<extra>{metric}</extra>",
                ),
                row=1,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=[model],
                    y=[value],
                    mode="markers",
                    name=model,
                    legendgroup=model,
                    showlegend=col == 1,
                    marker=dict(color=style.color, symbol=style.symbol, size=11, line=dict(color="white", width=1)),
                    hovertemplate=f"<b>{model}</b><br>{metric} %{{y:.4g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(title_text=METRIC_LABELS.get(metric, metric), row=1, col=col)
    return apply_layout(fig, title=title, x_title="model", y_title="value")


def posterior_comparison(
    true_post: Any,
    model_probs: Mapping[str, Any],
    roles: Mapping[str, str] | None = None,
    *,
    title: str | None = "Model confidence vs the true posterior",
) -> go.Figure:
    """Each model's probability of the Bayes class against that class's true posterior probability, per sample.

    The Bayes class is the argmax of `true_post` (N×K, e.g. the `gaussians` dataset's known
    posterior); points above the diagonal are over-confident, below under-confident.
    """
    truth = to_array(true_post, "true_post", ndim=2)
    probs = nonempty_mapping(model_probs, "model_probs", "{'teacher': N×K probabilities}")
    bayes = truth.argmax(axis=1)
    rows = np.arange(len(truth))
    styles = series_styles(list(probs), roles)
    fig = go.Figure()
    for name, raw in probs.items():
        p = to_array(raw, f"model_probs[{name!r}]", ndim=2)
        same_length(
            p.shape[0], truth.shape[0], f"model_probs[{name!r}] has {p.shape[0]} rows, true_post has {len(truth)}"
        )
        same_length(
            p.shape[1],
            truth.shape[1],
            f"model_probs[{name!r}] has {p.shape[1]} classes, true_post has {truth.shape[1]}",
        )
        style = styles[name]
        fig.add_trace(
            go.Scatter(
                x=truth[rows, bayes],
                y=p[rows, bayes],
                mode="markers",
                name=name,
                marker=dict(color=style.color, symbol=style.symbol, size=6, opacity=0.6),
                customdata=np.stack([rows, bayes], axis=1),
                hovertemplate=(
                    f"<b>{name}</b><br>sample %{{customdata[0]}} (Bayes class %{{customdata[1]}})<br>"
                    "true posterior %{x:.3f}<br>model probability %{y:.3f}<extra></extra>"
                ),
            )
        )
    fig.add_trace(_diagonal("model = truth"))
    fig.update_xaxes(range=[0, 1.02])
    fig.update_yaxes(range=[0, 1.02])
    return apply_layout(
        fig, title=title, x_title="true posterior of the Bayes class", y_title="model probability of the Bayes class"
    )
