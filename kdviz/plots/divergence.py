"""Divergence figures: the per-sample scatter to pick from, both predictions, both decision boundaries, and a
sample next to its nearest training neighbours (images or 1-D signals)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots._checks import names_for, probability_vector, require_columns, same_length, to_array
from kdviz.plots._images import to_rgb
from kdviz.plots._scatter import is_int, scatter_traces
from kdviz.plots.lesson import soft_target_bars
from kdviz.plots.style import (
    NEUTRAL_COLOR,
    apply_layout,
    axis_label,
    class_colors,
    series_styles,
)

__all__ = [
    "counterfactual_bars",
    "counterfactual_images",
    "decision_boundary",
    "factor_sweep_lines",
    "divergence_scatter",
    "neighbour_gallery",
    "probability_comparison",
    "slice_bars",
    "slice_checkpoint_lines",
]

#: Columns of `rank_divergence` shown on hover by default (those not already on an axis).
DEFAULT_HOVER = ("kl", "teacher_pred", "student_pred", "teacher_conf", "student_conf", "category")


def _number_format(column: pd.Series) -> str:
    return ":.4g" if pd.api.types.is_float_dtype(column) else ""


def divergence_scatter(
    df: pd.DataFrame,
    x: str = "teacher_conf",
    y: str = "kl",
    color: str = "category",
    *,
    index_col: str = "index",
    hover_cols: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    log_y: bool = False,
    title: str | None = "Where teacher and student diverge",
    x_title: str | None = None,
    y_title: str | None = None,
) -> go.Figure:
    """One point per test sample (rows of `kdviz.analysis.rank_divergence`), coloured by `color`.

    Axis titles default to the columns' labels. Dragging zooms; a click selects a point (Streamlit
    turns click-to-select off while the drag mode is lasso/select; the toolbar still offers them).

    Every point carries its sample index (`index_col`) as `customdata[0]`, so Streamlit's
    `on_select` returns it; `hover_cols` follow. Non-float colour columns are categories (the
    correctness categories keep their fixed colours; integer predictions use `class_names` and the
    class colours); a float column gets a continuous scale.
    """
    require_columns(df, list(dict.fromkeys([x, y, color, index_col])), "df", " (pass rank_divergence output)")
    hover = list(hover_cols) if hover_cols is not None else [c for c in DEFAULT_HOVER if c in df and c not in (x, y)]
    require_columns(df, hover, "df")
    hover = [c for c in dict.fromkeys(hover) if c != color]  # the colour column has its own hover line
    custom = df[[index_col, *hover]].to_numpy(dtype=object)
    lines = [f"{axis_label(c)}: %{{customdata[{j}]{_number_format(df[c])}}}" for j, c in enumerate(hover, start=1)]
    values = df[color].to_numpy()
    fig = go.Figure()
    traces = scatter_traces(
        np.column_stack([df[x].to_numpy(float), df[y].to_numpy(float)]),
        values,
        custom,
        lines,
        axis_label(color),
        categorical=not pd.api.types.is_float_dtype(df[color]),
        category_names=class_names,
    )
    for trace in traces:
        fig.add_trace(trace)
    if log_y:
        fig.update_yaxes(type="log")
    fig.update_layout(clickmode="event+select", dragmode="zoom")
    return apply_layout(
        fig,
        title=title,
        x_title=x_title or axis_label(x),
        y_title=y_title or axis_label(y),
        legend_title=axis_label(color),
    )


def probability_comparison(
    p_teacher: Any,
    p_student: Any,
    class_names: Sequence[str],
    true_class: int | None = None,
    *,
    names: tuple[str, str] = ("teacher", "student"),
    roles: Mapping[str, str] | None = None,
    title: str | None = "Teacher and student probabilities",
) -> go.Figure:
    """Both models' class probabilities for one sample as grouped bars; the true class is marked in bold."""
    classes = [str(c) for c in class_names]
    teacher = probability_vector(p_teacher, "p_teacher", len(classes))
    student = probability_vector(p_student, "p_student", len(classes))
    if true_class is not None and not (is_int(true_class) and 0 <= int(true_class) < len(classes)):
        raise ValueError(f"true_class must be a class index in 0..{len(classes) - 1} or None, got {true_class!r}")
    if len(set(names)) != 2:
        raise ValueError(f"names must be two different legend entries, got {names!r}")
    fig = soft_target_bars(dict(zip(names, (teacher, student))), classes, roles, title=title)
    if true_class is not None:
        ticks = [f"<b>{c} (true)</b>" if k == int(true_class) else c for k, c in enumerate(classes)]
        fig.update_xaxes(tickmode="array", tickvals=classes, ticktext=ticks)
    return fig


def _grid_arrays(grid: Any) -> tuple[np.ndarray, ...]:
    for attr in ("x", "y", "teacher_class", "student_class", "teacher_probs", "point"):
        if not hasattr(grid, attr):
            raise ValueError(f"grid must be a DecisionGrid (from explain_divergence); it lacks {attr!r}")
    gx, gy = to_array(grid.x, "grid.x", ndim=1), to_array(grid.y, "grid.y", ndim=1)
    classes = [np.asarray(grid.teacher_class), np.asarray(grid.student_class)]
    for name, c in zip(("teacher_class", "student_class"), classes):
        if c.shape != (len(gy), len(gx)):
            raise ValueError(f"grid.{name} has shape {c.shape}, expected (len(y), len(x)) = {(len(gy), len(gx))}")
    n_classes = int(np.asarray(grid.teacher_probs).shape[-1])
    return gx, gy, classes[0], classes[1], to_array(grid.point, "grid.point", ndim=1), n_classes


def _discrete_scale(colors: list[str]) -> list[list[Any]]:
    k = len(colors)
    scale = []
    for i, c in enumerate(colors):
        scale += [[i / k, c], [(i + 1) / k, c]]
    return scale


def _boundary(gx: np.ndarray, gy: np.ndarray, cls: np.ndarray, n_classes: int, name: str, dash: str, legend: bool):
    return go.Contour(
        x=gx,
        y=gy,
        z=cls.astype(float),
        name=name,
        legendgroup=name,
        showlegend=legend,
        showscale=False,
        contours=dict(start=0.5, end=n_classes - 1.5, size=1.0, coloring="none"),
        line=dict(color="black" if dash == "solid" else NEUTRAL_COLOR, width=2, dash=dash),
        hoverinfo="skip",
    )


def decision_boundary(
    grid: Any,
    points: Any,
    labels: Any,
    *,
    class_names: Sequence[str] | None = None,
    names: tuple[str, str] = ("teacher", "student"),
    title: str | None = "Decision regions",
) -> go.Figure:
    """Teacher (left) and student (right) decision regions on a 2-D `DecisionGrid`, with the data and the sample.

    Each panel shades its model's predicted class; both panels draw the teacher's boundary in
    solid black and the student's dashed grey, so the two can be compared; `points` (N×2) are
    drawn in their label's colour and the explained sample (`grid.point`) as a star.
    """
    gx, gy, teacher_class, student_class, point, n_classes = _grid_arrays(grid)
    xy = to_array(points, "points", ndim=2)
    if xy.shape[1] != 2:
        raise ValueError(f"points must be N×2 (2-D inputs), got shape {tuple(xy.shape)}")
    y = to_array(labels, "labels", ndim=1)
    same_length(len(y), len(xy), f"labels has {len(y)} entries but points has {len(xy)} rows")
    if (y != np.round(y)).any() or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be class indices in 0..{n_classes - 1}")
    y = y.astype(int)
    classes = names_for(class_names, n_classes, "class_names", "class {}")
    colors = class_colors(n_classes)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"{n} regions" for n in names])
    for col, own in enumerate((teacher_class, student_class), start=1):
        fig.add_trace(
            go.Heatmap(
                x=gx,
                y=gy,
                z=own,
                zmin=-0.5,
                zmax=n_classes - 0.5,
                colorscale=_discrete_scale(colors),
                opacity=0.3,
                showscale=False,
                name=f"{names[col - 1]} prediction",
                customdata=np.asarray(classes)[own],
                hovertemplate=f"{names[col - 1]} predicts %{{customdata}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        for model, cls, dash in ((names[0], teacher_class, "solid"), (names[1], student_class, "dash")):
            boundary = _boundary(gx, gy, cls, n_classes, f"{model} boundary", dash, legend=col == 1)
            fig.add_trace(boundary, row=1, col=col)
        for k in range(n_classes):
            member = y == k
            if not member.any():
                continue
            fig.add_trace(
                go.Scatter(
                    x=xy[member, 0],
                    y=xy[member, 1],
                    mode="markers",
                    name=classes[k],
                    legendgroup=f"class {k}",
                    showlegend=col == 1,
                    marker=dict(color=colors[k], size=6, line=dict(color="white", width=0.5)),
                    customdata=np.flatnonzero(member),
                    hovertemplate=f"sample %{{customdata}} · {classes[k]}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=[point[0]],
                y=[point[1]],
                mode="markers",
                name="explained sample",
                legendgroup="sample",
                showlegend=col == 1,
                marker=dict(symbol="star", size=18, color="black", line=dict(color="white", width=1)),
                hovertemplate="explained sample<br>(%{x:.3f}, %{y:.3f})<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(range=[gx.min(), gx.max()], row=1, col=col)
    fig.update_yaxes(range=[gy.min(), gy.max()])
    return apply_layout(fig, title=title, x_title="feature 1 (normalised)", y_title="feature 2 (normalised)")


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


def _slice_order(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["slice"].astype(str)))


def slice_bars(
    comparison: pd.DataFrame,
    *,
    names: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    y_title: str = "disagreement with the teacher",
    percent: bool = True,
    title: str | None = "The same slices across students",
) -> go.Figure:
    """Grouped bars: one group per slice ("all" first), one bar per role, with 95 % interval whiskers.

    `comparison` has columns `slice`, `role`, `rate`, `ci_low`, `ci_high` (and optionally `size`),
    as `kdviz.views.divergence.slice_comparison` returns. Bars take their role's colour; `names`
    maps a role to its legend entry; `descriptions` (slice -> words) go into the hover.
    """
    require_columns(comparison, ["slice", "role", "rate", "ci_low", "ci_high"], "comparison")
    slices = _slice_order(comparison)
    roles = list(dict.fromkeys(comparison["role"].astype(str)))
    names = {role: (names or {}).get(role, role) for role in roles}
    styles = series_styles([names[r] for r in roles], {names[r]: r for r in roles})
    fig = go.Figure()
    fmt = ".0%" if percent else ".3g"
    for role in roles:
        rows = comparison[comparison["role"].astype(str) == role].set_index("slice").reindex(slices)
        words = [(descriptions or {}).get(s, "all test samples" if s == "all" else s) for s in slices]
        style = styles[names[role]]
        fig.add_trace(
            go.Bar(
                x=slices,
                y=rows["rate"].to_numpy(float),
                name=names[role],
                marker=dict(color=style.color, pattern=dict(shape=style.pattern)),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(rows["ci_high"] - rows["rate"]).to_numpy(float),
                    arrayminus=(rows["rate"] - rows["ci_low"]).to_numpy(float),
                    color=NEUTRAL_COLOR,
                    thickness=1,
                ),
                customdata=np.column_stack([words, rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)]),
                hovertemplate=(
                    f"<b>%{{x}}</b> · {names[role]}<br>%{{customdata[0]}}<br>{y_title}: %{{y:{fmt}}} "
                    f"(95% CI %{{customdata[1]:{fmt}}}–%{{customdata[2]:{fmt}}})<extra></extra>"
                ),
            )
        )
    fig.update_layout(barmode="group")
    if percent:
        fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return apply_layout(fig, title=title, x_title="slice", y_title=y_title)


def slice_checkpoint_lines(
    frame: pd.DataFrame,
    *,
    y_title: str = "disagreement with the teacher",
    percent: bool = True,
    title: str | None = "Slices across the student's checkpoints",
) -> go.Figure:
    """One line per slice over the student's checkpoints (`epoch`, `slice`, `rate`, `ci_low`, `ci_high`).

    The "all" line (every test sample) is drawn dashed in neutral grey with its interval as a band.
    """
    require_columns(frame, ["epoch", "slice", "rate", "ci_low", "ci_high"], "frame")
    fig = go.Figure()
    palette = class_colors(max(len(_slice_order(frame)), 1))
    for k, name in enumerate(_slice_order(frame)):
        rows = frame[frame["slice"].astype(str) == name].sort_values("epoch")
        overall = name == "all"
        color = NEUTRAL_COLOR if overall else palette[k % len(palette)]
        fig.add_trace(
            go.Scatter(
                x=rows["epoch"].to_numpy(),
                y=rows["rate"].to_numpy(float),
                name="all test samples" if overall else name,
                mode="lines+markers",
                line=dict(color=color, dash="dash" if overall else "solid", width=2),
                error_y=None if overall else dict(
                    type="data", symmetric=False, array=(rows["ci_high"] - rows["rate"]).to_numpy(float),
                    arrayminus=(rows["rate"] - rows["ci_low"]).to_numpy(float), thickness=1, width=3,
                ),
            )
        )  # fmt: skip
    if percent:
        fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return apply_layout(fig, title=title, x_title="epoch (saved checkpoint)", y_title=y_title)


# --------------------------------------------------------------------------- counterfactuals


def _raw_rgb(image: Any, name: str) -> np.ndarray:
    """H×W×3 uint8 from a raw [0, 1] 3×H×W image (true colours: a colour edit must show as one)."""
    arr = to_array(image, name, ndim=3)
    if arr.shape[0] != 3:
        raise ValueError(f"{name} must be a 3×H×W image with values in [0, 1], got shape {arr.shape}")
    return np.round(np.clip(np.moveaxis(arr, 0, -1), 0.0, 1.0) * 255).astype(np.uint8)


def counterfactual_images(
    original: Any,
    edited: Any,
    cams: Mapping[str, Any] | None = None,
    *,
    labels: tuple[str, str] = ("original", "edited"),
    title: str | None = "The sample and its edit",
) -> go.Figure:
    """The original and the edited image (raw [0, 1], 3×H×W) side by side, each with every model's
    Grad-CAM (`cams`: name -> 2×H×W, original then edit) overlaid on it in a column of its own."""
    images = [_raw_rgb(original, "original"), _raw_rgb(edited, "edited")]
    if images[0].shape != images[1].shape:
        raise ValueError(f"original and edited must have one shape, got {images[0].shape} and {images[1].shape}")
    maps = {name: to_array(value, f"cams[{name!r}]", ndim=3) for name, value in (cams or {}).items()}
    for name, value in maps.items():
        if value.shape != (2, *images[0].shape[:2]):
            raise ValueError(f"cams[{name!r}] must have shape (2, H, W) (original, edit), got {value.shape}")
    columns = ["image", *maps]
    fig = make_subplots(
        rows=2, cols=len(columns), subplot_titles=columns + [""] * len(columns),
        horizontal_spacing=0.02, vertical_spacing=0.05,
    )  # fmt: skip
    height, width = images[0].shape[:2]
    for row, (label, image) in enumerate(zip(labels, images), start=1):
        fig.add_trace(go.Image(z=image, name=label, hoverinfo="skip"), row=row, col=1)
        for col, (name, values) in enumerate(maps.items(), start=2):
            peak = float(values.max()) or 1.0  # one scale per model: original and edit compare directly
            fig.add_trace(go.Image(z=image, hoverinfo="skip", opacity=0.55), row=row, col=col)
            fig.add_trace(
                go.Heatmap(
                    z=values[row - 1], zmin=0.0, zmax=peak, colorscale="Inferno", opacity=0.6, showscale=False,
                    name=f"{name}, {label}",
                    hovertemplate=f"<b>{name}</b> · {label}<br>x %{{x}}, y %{{y}}<br>"
                    "Grad-CAM %{z:.3g}<extra></extra>",
                ),
                row=row, col=col,
            )  # fmt: skip
    for row in (1, 2):
        for col in range(1, len(columns) + 1):
            anchor = fig.get_subplot(row, col).xaxis.plotly_name.replace("axis", "")
            fig.update_xaxes(visible=False, range=[-0.5, width - 0.5], constrain="domain", row=row, col=col)
            fig.update_yaxes(
                range=[height - 0.5, -0.5], scaleanchor=anchor, constrain="domain", showticklabels=False,
                showgrid=False, zeroline=False, visible=col == 1, title_text=labels[row - 1] if col == 1 else None,
                row=row, col=col,
            )  # fmt: skip
    fig = apply_layout(fig, title=title, x_title=None, y_title=None, legend="none")
    fig.update_layout(height=2 * 170 + 90)
    return fig


def counterfactual_bars(
    original: Mapping[str, Any],
    edited: Mapping[str, Any],
    class_names: Sequence[str],
    true_class: int,
    *,
    roles: Mapping[str, str] | None = None,
    title: str | None = "Probability of the true class, before and after the edit",
) -> go.Figure:
    """Per model, its probability of `true_class` on the original (hatched) and the edited sample (solid);
    hover tells each one's predicted class. `original` / `edited`: name -> probability vector."""
    classes = [str(c) for c in class_names]
    if not (is_int(true_class) and 0 <= int(true_class) < len(classes)):
        raise ValueError(f"true_class must be a class index in 0..{len(classes) - 1}, got {true_class!r}")
    missing = sorted(set(original) ^ set(edited))
    if missing:
        raise ValueError(f"original and edited must name the same models; only one names {', '.join(missing)}")
    names = list(original)
    styles = series_styles(names, roles)
    fig = go.Figure()
    for which, probs, pattern in (("original", original, "/"), ("edited", edited, "")):
        vectors = [probability_vector(probs[n], f"{which}[{n!r}]", len(classes)) for n in names]
        fig.add_trace(
            go.Bar(
                x=names,
                y=[float(p[int(true_class)]) for p in vectors],
                name=which,
                customdata=[classes[int(np.argmax(p))] for p in vectors],
                marker=dict(color=[styles[n].color for n in names], pattern=dict(shape=pattern)),
                hovertemplate=f"<b>%{{x}}</b> · {which}<br>p({classes[int(true_class)]}) %{{y:.3f}}"
                "<br>predicts %{customdata}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1])
    return apply_layout(fig, title=title, x_title=None, y_title=f"p({classes[int(true_class)]})")


def factor_sweep_lines(
    sweep: pd.DataFrame,
    *,
    factor: str,
    original_value: float | None = None,
    leaves_at: Mapping[str, Sequence[float]] | None = None,
    roles: Mapping[str, str] | None = None,
    tick_labels: Mapping[float, str] | None = None,
    title: str | None = "Probability of the true class along the factor",
) -> go.Figure:
    """One line per model of a `kdviz.analysis.factor_sweep` (`value`, `model`, `p_true`).

    `original_value` draws a dotted line at the sample's own value; `leaves_at` (model -> values, see
    `first_divergence`) marks where each student's curve leaves the teacher's with large open
    circles. `tick_labels` names discrete values (e.g. cue -1 -> "none").
    """
    require_columns(sweep, ["value", "model", "p_true"], "sweep", " (pass factor_sweep output)")
    models = list(dict.fromkeys(sweep["model"].astype(str)))
    styles = series_styles(models, roles)
    fig = go.Figure()
    for name in models:
        rows = sweep[sweep["model"].astype(str) == name].sort_values("value")
        style = styles[name]
        fig.add_trace(
            go.Scatter(
                x=rows["value"].to_numpy(float), y=rows["p_true"].to_numpy(float), name=name, mode="lines+markers",
                line=dict(color=style.color, dash=style.dash, width=2), marker=dict(symbol=style.symbol, size=7),
                hovertemplate=f"<b>{name}</b><br>{factor} %{{x:.3g}}<br>p(true) %{{y:.3f}}<extra></extra>",
            )
        )  # fmt: skip
        where = [float(v) for v in (leaves_at or {}).get(name, [])]
        if where:
            at = np.isin(rows["value"].to_numpy(float), where)
            fig.add_trace(
                go.Scatter(
                    x=rows["value"].to_numpy(float)[at], y=rows["p_true"].to_numpy(float)[at], mode="markers",
                    showlegend=False,
                    name=f"{name} leaves the teacher",
                    marker=dict(symbol="circle-open", size=18, color=style.color, line=dict(width=2.5)),
                    hovertemplate=f"<b>{name}</b> leaves the teacher at {factor} %{{x:.3g}}<extra></extra>",
                )
            )  # fmt: skip
    if original_value is not None:
        fig.add_vline(
            x=float(original_value), line=dict(color=NEUTRAL_COLOR, dash="dot", width=1.5),
            annotation_text="this sample", annotation_position="bottom right",
        )  # fmt: skip
    if tick_labels:
        fig.update_xaxes(tickmode="array", tickvals=list(tick_labels), ticktext=list(tick_labels.values()))
    fig.update_yaxes(range=[-0.02, 1.02])
    return apply_layout(fig, title=title, x_title=factor, y_title="probability of the true class")
