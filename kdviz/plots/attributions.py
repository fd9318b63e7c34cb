"""Attribution figures: image grids, 1-D / tabular attribution lines, agreement histograms, localisation bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots._checks import names_for, nonempty_mapping, require_columns, same_length, to_array
from kdviz.plots._images import to_rgb
from kdviz.plots.style import (
    DIVERGING_SCALE,
    NEUTRAL_COLOR,
    SEQUENTIAL_SCALE,
    apply_layout,
    axis_label,
    series_styles,
)

__all__ = ["agreement_histogram", "attribution_grid", "attribution_lines", "localization_bars"]

MASK_COLOR = "#000000"  # visible in the legend too (a white outline would vanish there)
ROW_HEIGHT = 150
#: Value ranges of the `attribution_agreement` columns (absolute maps: cosine is non-negative).
AGREEMENT_RANGES = {"spearman": (-1.0, 1.0), "topk_iou": (0.0, 1.0), "cosine": (0.0, 1.0)}


def _image_batch(images: Any) -> np.ndarray:
    x = to_array(images, "images", ndim=(3, 4))
    return x if x.ndim == 4 else x[:, None]


def _map_batch(raw: Any, name: str, n: int, size: tuple[int, int]) -> np.ndarray:
    m = to_array(raw, name, ndim=(3, 4))
    if m.ndim == 4:  # N×C×H×W: pool channels by summing, as kdviz.analysis.localization does
        m = m.sum(axis=1)
    same_length(m.shape[0], n, f"{name} has {m.shape[0]} maps but images has {n} samples")
    if m.shape[1:] != size:
        raise ValueError(f"{name} maps are {m.shape[1]}×{m.shape[2]} but the images are {size[0]}×{size[1]}")
    return m


def _column_scale(values: np.ndarray, signed: bool | None) -> dict[str, Any]:
    """Colour axis shared by one column: symmetric diverging for signed maps, sequential from 0 otherwise."""
    if signed is None:
        signed = bool((values < 0).any())
    if signed:
        bound = float(np.abs(values).max()) or 1.0
        return dict(colorscale=DIVERGING_SCALE, cmin=-bound, cmax=bound, cmid=0.0)
    low = min(0.0, float(values.min()))
    return dict(colorscale=SEQUENTIAL_SCALE, cmin=low, cmax=float(values.max()) if values.max() > low else low + 1.0)


def _mask_outline(mask: np.ndarray, show_legend: bool) -> go.Contour:
    return go.Contour(
        z=mask.astype(float),
        contours=dict(start=0.5, end=0.5, size=1.0, coloring="none"),
        line=dict(color=MASK_COLOR, width=1.5),
        showscale=False,
        name="ground-truth mask",
        legendgroup="mask",
        showlegend=show_legend,
        hoverinfo="skip",
    )


def attribution_grid(
    images: Any,
    maps: Mapping[str, Any],
    row_labels: Sequence[str] | None = None,
    masks: Any = None,
    *,
    signed: bool | None = None,
    title: str | None = "Attributions",
) -> go.Figure:
    """One row per sample: the input, then each model's attribution map, with one colour scale per column.

    `images` N×C×H×W or N×H×W (min–max scaled for display); `maps` name → N×H×W (or N×C×H×W,
    summed over channels). A column whose maps have negative values (or every column with
    `signed=True`) uses a diverging scale symmetric about 0, otherwise a sequential one from 0.
    `masks` (N×H×W, optional) are outlined on every panel.
    """
    x = _image_batch(images)
    n, size = x.shape[0], (x.shape[2], x.shape[3])
    named = {k: _map_batch(v, f"maps[{k!r}]", n, size) for k, v in nonempty_mapping(maps, "maps").items()}
    labels = names_for(row_labels, n, "row_labels", "sample {}")
    mask = None
    if masks is not None:
        mask = to_array(masks, "masks", ndim=3)
        if mask.shape != (n, *size):
            raise ValueError(f"masks must have shape {(n, *size)} (one H×W mask per sample), got {tuple(mask.shape)}")
    columns = ["input", *named]
    titles = columns + [""] * (len(columns) * (n - 1))
    fig = make_subplots(
        rows=n, cols=len(columns), subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.03
    )
    for j, (name, values) in enumerate(named.items(), start=2):
        scale = _column_scale(values, signed)
        domain = fig.get_subplot(1, j).xaxis.domain
        fig.layout[f"coloraxis{j}"] = dict(
            **scale,
            colorbar=dict(
                orientation="h",
                x=(domain[0] + domain[1]) / 2,
                xanchor="center",
                y=-0.01,
                yanchor="top",
                len=domain[1] - domain[0],
                lenmode="fraction",
                thickness=10,
                title=dict(text=name, side="bottom"),
            ),
        )
    for i in range(n):
        fig.add_trace(go.Image(z=to_rgb(x[i], f"images[{i}]"), name=labels[i], hoverinfo="skip"), row=i + 1, col=1)
        for j, (name, values) in enumerate(named.items(), start=2):
            fig.add_trace(
                go.Heatmap(
                    z=values[i],
                    coloraxis=f"coloraxis{j}",
                    name=f"{name}, {labels[i]}",
                    hovertemplate=f"<b>{name}</b> · {labels[i]}<br>x %{{x}}, y %{{y}}<br>"
                    "attribution %{z:.4g}<extra></extra>",
                ),
                row=i + 1,
                col=j,
            )
        if mask is not None:
            for j in range(1, len(columns) + 1):
                fig.add_trace(_mask_outline(mask[i], show_legend=i == 0 and j == 1), row=i + 1, col=j)
    height, width = size
    for i in range(1, n + 1):
        for j in range(1, len(columns) + 1):
            subplot = fig.get_subplot(i, j)
            fig.update_xaxes(visible=False, range=[-0.5, width - 0.5], constrain="domain", row=i, col=j)
            fig.update_yaxes(
                range=[height - 0.5, -0.5],
                scaleanchor=subplot.xaxis.plotly_name.replace("axis", ""),
                constrain="domain",
                showticklabels=False,
                showgrid=False,
                zeroline=False,
                row=i,
                col=j,
            )
            if j == 1:
                fig.update_yaxes(title_text=labels[i - 1], row=i, col=j)
            else:
                fig.update_yaxes(visible=False, row=i, col=j)
    fig = apply_layout(fig, title=title, x_title=None, y_title=None, legend="top" if mask is not None else "none")
    fig.update_layout(height=ROW_HEIGHT * n + 140, margin=dict(b=70))
    return fig


def _signal_batch(raw: Any, name: str) -> np.ndarray:
    a = to_array(raw, name, ndim=(2, 3))
    if a.ndim == 3:
        if a.shape[1] != 1:
            raise ValueError(f"{name} must be N×L, N×D or single-channel N×1×L, got {a.shape[1]} channels")
        a = a[:, 0]
    return a


def attribution_lines(
    x: Any,
    maps: Mapping[str, Any],
    row_labels: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    *,
    kind: Literal["line", "bar"] = "line",
    roles: Mapping[str, str] | None = None,
    title: str | None = "Attributions",
) -> go.Figure:
    """One row per sample: each model's attribution per position (lines) or per feature (bars), with the input.

    For 1-D signals (N×L or N×1×L, e.g. mnist1d) use `kind="line"`; for tabular rows (N×D) use
    `kind="bar"` and `feature_names`. The input itself is drawn in grey on a secondary y axis.
    """
    if kind not in ("line", "bar"):
        raise ValueError(f"kind must be 'line' (signals) or 'bar' (tabular features), got {kind!r}")
    signal = _signal_batch(x, "x")
    n, length = signal.shape
    named = nonempty_mapping(maps, "maps")
    values = {}
    for name, raw in named.items():
        values[name] = _signal_batch(raw, f"maps[{name!r}]")
        if values[name].shape != signal.shape:
            raise ValueError(f"maps[{name!r}] has shape {values[name].shape} but x has shape {signal.shape}")
    labels = names_for(row_labels, n, "row_labels", "sample {}")
    positions = names_for(feature_names, length, "feature_names") if kind == "bar" else np.arange(length)
    styles = series_styles(list(values), roles)
    fig = make_subplots(
        rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.05, specs=[[{"secondary_y": True}] for _ in range(n)]
    )
    for i in range(n):
        for name, v in values.items():
            style = styles[name]
            common = dict(name=name, legendgroup=name, showlegend=i == 0)
            hover = f"<b>{name}</b> · {labels[i]}<br>%{{x}}: %{{y:.4g}}<extra></extra>"
            if kind == "line":
                trace = go.Scatter(x=positions, y=v[i], mode="lines", line=dict(color=style.color, dash=style.dash))
            else:
                trace = go.Bar(x=positions, y=v[i], marker=dict(color=style.color, pattern=dict(shape=style.pattern)))
            trace.update(**common, hovertemplate=hover)
            fig.add_trace(trace, row=i + 1, col=1, secondary_y=False)
        fig.add_trace(
            go.Scatter(
                x=positions,
                y=signal[i],
                name="input",
                legendgroup="input",
                showlegend=i == 0,
                mode="lines" if kind == "line" else "markers",
                line=dict(color=NEUTRAL_COLOR, width=1, dash="dot"),
                marker=dict(color=NEUTRAL_COLOR, symbol="diamond", size=7),
                hovertemplate=f"input · {labels[i]}<br>%{{x}}: %{{y:.4g}}<extra></extra>",
            ),
            row=i + 1,
            col=1,
            secondary_y=True,
        )
        fig.update_yaxes(title_text=f"{labels[i]}: attribution", row=i + 1, col=1, secondary_y=False)
        fig.update_yaxes(title_text="input", showgrid=False, row=i + 1, col=1, secondary_y=True)
    fig.update_layout(barmode="group", height=max(300, 180 * n + 120))
    return apply_layout(fig, title=title, x_title="position" if kind == "line" else "feature", y_title=None)


def _agreement_range(metric: str, values: list[np.ndarray]) -> tuple[float, float]:
    if metric in AGREEMENT_RANGES:
        return AGREEMENT_RANGES[metric]
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def agreement_histogram(
    values: Any,
    *,
    metric: str = "spearman",
    n_bins: int = 20,
    roles: Mapping[str, str] | None = None,
    title: str | None = "Teacher ↔ student attribution agreement",
) -> go.Figure:
    """Histogram of per-sample agreement (`attribution_agreement` column `metric`); several series overlaid.

    `values` is one array or a mapping name → array (e.g. one per attribution method). NaN
    samples (constant maps) are left out and counted in the legend; a dashed line marks each mean.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    series = nonempty_mapping(values if isinstance(values, Mapping) else {metric: values}, "values")
    arrays = {name: to_array(v, f"values[{name!r}]", ndim=1, finite=False) for name, v in series.items()}
    low, high = _agreement_range(metric, list(arrays.values()))
    edges = np.linspace(low, high, n_bins + 1)
    styles = series_styles(list(arrays), roles)
    fig = go.Figure()
    for name, v in arrays.items():
        finite = v[np.isfinite(v)]
        counts, _ = np.histogram(np.clip(finite, low, high), bins=edges)
        undefined = len(v) - len(finite)
        label = name if undefined == 0 else f"{name} ({undefined} undefined)"
        style = styles[name]
        fig.add_trace(
            go.Bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=counts,
                width=edges[1] - edges[0],
                name=label,
                opacity=0.6,
                marker=dict(color=style.color, pattern=dict(shape=style.pattern)),
                customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                hovertemplate=f"<b>{name}</b><br>%{{customdata[0]:.2f}}–%{{customdata[1]:.2f}}: %{{y}} samples"
                "<extra></extra>",
            )
        )
        if finite.size:
            fig.add_vline(x=float(finite.mean()), line=dict(color=style.color, dash="dash", width=2))
    fig.update_layout(barmode="overlay")
    return apply_layout(fig, title=title, x_title=axis_label(metric), y_title="samples")


def localization_bars(
    df: pd.DataFrame,
    *,
    chance: float | None = None,
    roles: Mapping[str, str] | None = None,
    title: str | None = "Localisation against the ground-truth mask",
) -> go.Figure:
    """Relevance mass and pointing-game rate per model (`localization_summary` rows), one panel each.

    `df` has a `model` column, one or both of `relevance_mass`, `pointing_game`, and optionally
    `role` and `method` (then methods go on the x axis, models are grouped). `chance`, the mean
    share of the image inside the mask, is what a uniform (or random) map scores on both: a dashed line.
    """
    require_columns(df, ("model",), "df")
    metrics = [m for m in ("relevance_mass", "pointing_game") if m in df.columns]
    if not metrics:
        raise ValueError(
            f"df needs a relevance_mass and/or pointing_game column; it has {', '.join(map(str, df.columns))}"
        )
    if "role" in df.columns:
        roles = {**dict(zip(df["model"].astype(str), df["role"].astype(str))), **(roles or {})}
    models = list(dict.fromkeys(df["model"].astype(str)))
    styles = series_styles(models, roles)
    x_column = "method" if "method" in df.columns else "model"
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[axis_label(m) for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        for model in models:
            rows = df[df["model"].astype(str) == model]
            style = styles[model]
            fig.add_trace(
                go.Bar(
                    x=rows[x_column].astype(str),
                    y=rows[metric].to_numpy(float),
                    name=model,
                    legendgroup=model,
                    showlegend=col == 1,
                    marker=dict(color=style.color, pattern=dict(shape=style.pattern)),
                    hovertemplate=f"<b>{model}</b><br>%{{x}}: %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(range=[0, 1.05], title_text=axis_label(metric), row=1, col=col)
    if chance is not None:
        if not 0 <= chance <= 1:
            raise ValueError(f"chance must be a share in [0, 1], got {chance}")
        for col in range(1, len(metrics) + 1):
            fig.add_hline(y=float(chance), line=dict(color="black", dash="dash", width=1), row=1, col=col)
    fig.update_layout(barmode="group")
    return apply_layout(fig, title=title, x_title=x_column, y_title=None)
