"""Training-run figures: learning curves, every loss term of a run, parallel coordinates, headline bars."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots._checks import nonempty_mapping, require_columns
from kdviz.plots.style import SEQUENTIAL_SCALE, apply_layout, axis_label, class_colors, series_styles

__all__ = ["headline_bars", "learning_curves", "loss_term_curves", "parallel_coordinates"]


def _check_history(history: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(history, Sequence) or isinstance(history, str) or not history:
        raise ValueError(f"{name} must be a non-empty list of per-epoch metric dicts (Run.history)")
    if not all(isinstance(row, Mapping) for row in history):
        raise ValueError(f"{name} must hold one dict of metrics per epoch")
    return [dict(row) for row in history]


def _series(history: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs (the `epoch` entry, else 1, 2, ...) and the values of `key` (NaN where an epoch lacks it)."""
    epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(history)], dtype=float)
    values = np.array([row.get(key, np.nan) for row in history], dtype=float)
    return epochs, values


def _integer_epochs(fig: go.Figure, epochs: list[np.ndarray]) -> None:
    """Ticks on whole epochs only (at most about ten of them)."""
    last = max(float(np.nanmax(e)) for e in epochs if len(e))
    fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(last / 10)))


def _available(history: list[dict[str, Any]]) -> list[str]:
    return sorted({k for row in history for k in row if k != "epoch"})


def learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    metric: str,
    roles: Mapping[str, str] | None = None,
    *,
    title: str | None = None,
    y_title: str | None = None,
) -> go.Figure:
    """One metric of several runs against the epoch (`Run.history` lists), coloured by role; `y_title`
    replaces the metric's own axis label."""
    runs = {
        name: _check_history(h, f"histories[{name!r}]") for name, h in nonempty_mapping(histories, "histories").items()
    }
    styles = series_styles(list(runs), roles)
    fig = go.Figure()
    for name, history in runs.items():
        if not any(metric in row for row in history):
            raise ValueError(
                f"metric {metric!r} is not in histories[{name!r}]; available: {', '.join(_available(history))}"
            )
        epochs, values = _series(history, metric)
        style = styles[name]
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=values,
                mode="lines+markers" if len(epochs) <= 30 else "lines",
                name=name,
                line=dict(color=style.color, dash=style.dash),
                marker=dict(symbol=style.symbol),
                hovertemplate=f"<b>{name}</b><br>epoch %{{x}}<br>{axis_label(metric)} %{{y:.4g}}<extra></extra>",
            )
        )
    _integer_epochs(fig, [np.asarray(t.x, dtype=float) for t in fig.data])
    return apply_layout(fig, title=title, x_title="epoch", y_title=y_title or axis_label(metric))


def loss_term_curves(
    history: Sequence[Mapping[str, Any]], terms: Sequence[str] | None = None, *, title: str | None = "Loss terms"
) -> go.Figure:
    """Every named loss term of one run (`loss/<term>` entries of its history) and the total, per epoch.

    `terms` may be given with or without the `loss/` prefix; by default all terms are drawn.
    """
    rows = _check_history(history, "history")
    present = [k for k in dict.fromkeys(k for row in rows for k in row) if k.startswith("loss/")]
    if terms is None:
        keys = present
    else:
        keys = [t if t.startswith("loss/") else f"loss/{t}" for t in terms]
        missing = [k for k in keys if k not in present]
        if missing:
            valid = ", ".join(k[5:] for k in present) or "none"
            raise ValueError(f"unknown loss term(s) {', '.join(k[5:] for k in missing)}; this run has: {valid}")
    if not keys and not any("loss" in row for row in rows):
        raise ValueError(f"history has no loss entries; available: {', '.join(_available(rows))}")
    colors = class_colors(len(keys))
    fig = go.Figure()
    for key, color in zip(keys, colors):
        epochs, values = _series(rows, key)
        fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=key[5:], line=dict(color=color)))
    if any("loss" in row for row in rows):
        epochs, values = _series(rows, "loss")
        fig.add_trace(
            go.Scatter(x=epochs, y=values, mode="lines", name="total", line=dict(color="black", dash="dash", width=2))
        )
    _integer_epochs(fig, [np.asarray(t.x, dtype=float) for t in fig.data])
    return apply_layout(fig, title=title, x_title="epoch", y_title="loss (mean per sample)")


def _encode(column: pd.Series) -> tuple[np.ndarray, dict[str, Any]]:
    """Values of a column for Parcoords: numbers as they are, categories as codes with tick labels."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(float), {}
    categories = sorted(column.astype(str).unique())
    codes = column.astype(str).map({c: i for i, c in enumerate(categories)}).to_numpy(float)
    return codes, dict(tickvals=list(range(len(categories))), ticktext=categories, range=[-0.5, len(categories) - 0.5])


def parallel_coordinates(
    df: pd.DataFrame, dimensions: Sequence[str], color: str, *, title: str | None = "Runs"
) -> go.Figure:
    """One line per run across `dimensions` (hyperparameters, metrics); text columns become labelled axes.

    Lines are coloured by `color` (continuous for numbers, one colour per category otherwise).
    Rows with a missing value in a drawn column are left out and counted in the title.
    """
    if not dimensions:
        raise ValueError("dimensions is empty; name at least one column of df")
    columns = list(dict.fromkeys([*dimensions, color]))
    require_columns(df, columns, "df")
    complete = df[columns].notna().all(axis=1)
    frame = df.loc[complete, columns]
    if frame.empty:
        raise ValueError(f"every row of df has a missing value in {', '.join(columns)}")
    dims = []
    for name in dimensions:
        values, ticks = _encode(frame[name])
        dims.append(dict(label=axis_label(name), values=values, **ticks))
    colour_values, colour_ticks = _encode(frame[color])
    if colour_ticks:
        n = len(colour_ticks["ticktext"])
        palette = class_colors(n)
        scale = [[0.0, palette[0]], [1.0, palette[0]]] if n == 1 else [[i / (n - 1), c] for i, c in enumerate(palette)]
        colorbar = dict(
            title=dict(text=axis_label(color)), tickvals=colour_ticks["tickvals"], ticktext=colour_ticks["ticktext"]
        )
    else:
        scale, colorbar = SEQUENTIAL_SCALE, dict(title=dict(text=axis_label(color)))
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line=dict(color=colour_values, colorscale=scale, showscale=True, colorbar=dict(**colorbar, x=1.06)),
        )
    )
    dropped = int((~complete).sum())
    note = f" ({dropped} rows with missing values left out)" if dropped else ""
    fig = apply_layout(fig, title=f"{title or ''}{note}" or None, x_title=None, y_title=None, legend="none")
    # Parcoords draws axis labels above the plot and its colour bar at the right edge: make room for both.
    fig.update_layout(margin=dict(l=80, r=150, t=fig.layout.margin.t + 30))
    return fig


def _std_column(df: pd.DataFrame, metric: str) -> str | None:
    for candidate in (f"{metric}_std", f"{metric.removesuffix('_mean')}_std"):
        if candidate in df.columns and candidate != metric:
            return candidate
    return None


def headline_bars(
    df: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    model_col: str = "model",
    role_col: str = "role",
    title: str | None = "Headline numbers",
) -> go.Figure:
    """One panel per metric (accuracy, ECE, agreement...), one bar per model in its role's colour.

    `metrics` defaults to every numeric column except `seed` and `*_std`; a `<metric>_std` column
    (or `<name>_std` for `<name>_mean`, as in `compare_methods`' summary) adds error bars. Without a
    `role_col` column, each model's name is its role.
    """
    require_columns(df, (model_col,), "df")
    if metrics is None:
        metrics = [
            c
            for c in df.columns
            if pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c])
            and c != "seed"
            and not str(c).endswith("_std")
            and c != model_col
        ]
        if not metrics:
            raise ValueError(f"df has no numeric metric columns; it has {', '.join(map(str, df.columns))}")
    require_columns(df, metrics, "df")
    models = df[model_col].astype(str).tolist()
    if len(set(models)) != len(models):
        raise ValueError(
            f"df must have one row per {model_col} (aggregate seeds first); duplicated: {_duplicates(models)}"
        )
    roles = dict(zip(models, df[role_col].astype(str))) if role_col in df.columns else None
    styles = series_styles(models, roles)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[axis_label(m) for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        std_column = _std_column(df, metric)
        for i, model in enumerate(models):
            style = styles[model]
            std = None if std_column is None else float(df[std_column].iloc[i])
            fig.add_trace(
                go.Bar(
                    x=[model],
                    y=[float(df[metric].iloc[i])],
                    name=model,
                    legendgroup=model,
                    showlegend=col == 1,
                    marker=dict(color=style.color, pattern=dict(shape=style.pattern)),
                    error_y=None if std is None else dict(type="data", array=[std]),
                    hovertemplate=f"<b>{model}</b><br>{axis_label(metric)} %{{y:.4g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(title_text=axis_label(metric), row=1, col=col)
    return apply_layout(fig, title=title, x_title=model_col, y_title=None)


def _duplicates(names: list[str]) -> str:
    return ", ".join(sorted({n for n in names if names.count(n) > 1}))


def sweep_heatmap(cells: pd.DataFrame, axes: Sequence[str], *, title: str = "Gain over scratch") -> go.Figure:
    """Gain over scratch (mean over seeds, ± 95 % CI in each cell) across a sweep's grid.

    `cells` is `kdviz.views.sweeps.sweep_cells`'s table; x is `axes[0]`, y is `axes[1]` (one row when
    the grid has one axis; further axes are averaged). Blue cells: KD helped; red: it hurt.
    """
    require_columns(cells, ["gain_mean", "gain_ci", "n"], "sweep_heatmap")
    x_axis = axes[0] if axes else None
    y_axis = axes[1] if len(axes) > 1 else None
    frame = cells.copy()
    frame["_x"] = frame[x_axis] if x_axis else "defaults"
    frame["_y"] = frame[y_axis] if y_axis else ""
    grouped = frame.groupby(["_y", "_x"], sort=True).agg(
        gain=("gain_mean", "mean"), ci=("gain_ci", "mean"), n=("n", "sum")
    )
    xs = sorted(frame["_x"].unique(), key=_sort_key)
    ys = sorted(frame["_y"].unique(), key=_sort_key)
    z = np.full((len(ys), len(xs)), np.nan)
    text = [["" for _ in xs] for _ in ys]
    for (y, x), row in grouped.iterrows():
        i, j = ys.index(y), xs.index(x)
        z[i, j] = row["gain"]
        ci = "" if math.isnan(row["ci"]) else f"<br>± {row['ci']:.3f}"
        text[i][j] = f"{row['gain']:+.3f}{ci}<br>n={int(row['n'])}"
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=[[None if v != v else float(v) for v in row] for row in z],
            x=[_tick(v) for v in xs],
            y=[_tick(v) for v in ys],
            text=text,
            texttemplate="%{text}",
            colorscale="RdBu",
            zmid=0.0,
            zmin=-bound or -1,
            zmax=bound or 1,
            colorbar={"title": "gain"},
            hovertemplate="%{x}, %{y}<br>gain %{text}<extra></extra>",
        )
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return apply_layout(fig, title=title, x_title=x_axis or "", y_title=y_axis or "", legend="none")


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if isinstance(value, int | float) and value == value else (1, str(value))


def _tick(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)
