"""Dark-knowledge lesson figures: soft targets, class similarity, KD gradients, loss vs a knob, DKD's two terms,
and the picture of one input (an image, a signal, a point among the others, or a feature row)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from kdviz.plots._checks import names_for, nonempty_mapping, probability_vector, same_length, to_array
from kdviz.plots._images import to_rgb
from kdviz.plots.style import (
    DIVERGING_SCALE,
    NEUTRAL_COLOR,
    OKABE_ITO,
    SEQUENTIAL_SCALE,
    apply_layout,
    class_colors,
    series_styles,
)

__all__ = [
    "INPUT_KINDS",
    "class_similarity_heatmap",
    "dkd_split_bars",
    "logit_gradient_bars",
    "loss_curve",
    "sample_input_figure",
    "soft_target_bars",
]

#: Colours of signed bars: positive (vermillion) and negative (blue) from Okabe–Ito.
POSITIVE_COLOR, NEGATIVE_COLOR = OKABE_ITO[5], OKABE_ITO[4]

#: Largest matrix whose cell values are printed inside the heatmap.
ANNOTATE_MAX = 12


def soft_target_bars(
    probs: Mapping[str, Any],
    class_names: Sequence[str],
    roles: Mapping[str, str] | None = None,
    *,
    log_y: bool = False,
    title: str | None = "Soft targets",
) -> go.Figure:
    """Grouped bars of probability vectors over the classes (e.g. the teacher at T=1 and T=4, the student).

    `log_y=True` shows the tiny probabilities on wrong classes (the "dark knowledge") on a log scale.
    """
    named = nonempty_mapping(probs, "probs", "{'teacher, T=4': probabilities over the classes}")
    classes = [str(c) for c in class_names]
    styles = series_styles(list(named), roles)
    fig = go.Figure()
    for name, raw in named.items():
        p = probability_vector(raw, f"probs[{name!r}]", len(classes))
        style = styles[name]
        fig.add_trace(
            go.Bar(
                x=classes,
                y=p,
                name=name,
                marker=dict(color=style.color, pattern=dict(shape=style.pattern)),
                hovertemplate=f"<b>{name}</b><br>%{{x}}: %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(type="log" if log_y else "linear", range=None if log_y else [0, 1])
    return apply_layout(fig, title=title, x_title="class", y_title="probability")


def class_similarity_heatmap(
    matrix: Any,
    class_names: Sequence[str],
    *,
    value_title: str = "similarity",
    title: str | None = "Class similarity",
) -> go.Figure:
    """K×K heatmap of a class × class matrix (e.g. the teacher's mean soft target of class i on class j).

    A matrix with negative entries gets the diverging scale centred at 0, otherwise the sequential
    one; cells are annotated with their values when K <= 12. Row i is drawn at the top for i = 0.
    """
    m = to_array(matrix, "matrix", ndim=2)
    classes = [str(c) for c in class_names]
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix must be square (classes × classes), got shape {tuple(m.shape)}")
    same_length(m.shape[0], len(classes), f"matrix is {m.shape[0]}×{m.shape[0]} but class_names has {len(classes)}")
    signed = bool((m < 0).any())
    bound = float(np.abs(m).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=classes,
            y=classes,
            colorscale=DIVERGING_SCALE if signed else SEQUENTIAL_SCALE,
            zmid=0 if signed else None,
            zmin=-bound if signed else None,
            zmax=bound if signed else None,
            colorbar=dict(title=dict(text=value_title)),
            texttemplate="%{z:.2f}" if len(classes) <= ANNOTATE_MAX else None,
            hovertemplate=f"row %{{y}}, column %{{x}}<br>{value_title} %{{z:.4f}}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return apply_layout(fig, title=title, x_title="class", y_title="class", legend="none")


def logit_gradient_bars(
    grad: Any,
    class_names: Sequence[str],
    *,
    target: int | None = None,
    title: str | None = "Gradient of the KD loss on each student logit",
) -> go.Figure:
    """Signed bar per class of ∂loss/∂z_k; gradient descent lowers logits with positive bars, raises negative ones.

    `target` (a class index) gets a black outline. For Hinton's KD the bars are
    T·(p_student − p_teacher) at temperature T (with the T² scaling), so they sum to zero.
    """
    g = to_array(grad, "grad", ndim=1)
    classes = [str(c) for c in class_names]
    same_length(g.shape[0], len(classes), f"grad has {g.shape[0]} entries but class_names has {len(classes)}")
    if target is not None and not (isinstance(target, int | np.integer) and 0 <= int(target) < len(classes)):
        raise ValueError(f"target must be a class index in 0..{len(classes) - 1}, got {target!r}")
    outline = [2 if target is not None and k == int(target) else 0 for k in range(len(classes))]
    direction = np.where(g > 0, "pushed down", np.where(g < 0, "pushed up", "unchanged"))
    fig = go.Figure(
        go.Bar(
            x=classes,
            y=g,
            name="∂loss/∂z",
            marker=dict(
                color=[POSITIVE_COLOR if v > 0 else NEGATIVE_COLOR for v in g],
                line=dict(color="black", width=outline),
            ),
            customdata=direction,
            hovertemplate="%{x}: %{y:.4g}<br>logit %{customdata} by a gradient step<extra></extra>",
        )
    )
    fig.add_hline(y=0, line=dict(color="black", width=1))
    return apply_layout(fig, title=title, x_title="class", y_title="∂loss / ∂student logit", legend="none")


def loss_curve(
    x: Any,
    ys: Mapping[str, Any],
    x_title: str,
    y_title: str,
    marker_x: float | None = None,
    *,
    roles: Mapping[str, str] | None = None,
    log_x: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Curves y(x) sharing one x (e.g. KD loss against temperature), with `marker_x` marked on every curve."""
    xs = to_array(x, "x", ndim=1)
    curves = nonempty_mapping(ys, "ys", "{'KD loss': values at each x}")
    styles = series_styles(list(curves), roles)
    fig = go.Figure()
    for name, raw in curves.items():
        y = to_array(raw, f"ys[{name!r}]", ndim=1, finite=False)
        same_length(y.shape[0], xs.shape[0], f"ys[{name!r}] has {y.shape[0]} values but x has {xs.shape[0]}")
        style = styles[name]
        fig.add_trace(
            go.Scatter(x=xs, y=y, mode="lines", name=name, line=dict(color=style.color, dash=style.dash, width=2.5))
        )
        if marker_x is not None:
            order = np.argsort(xs)
            at = float(np.interp(float(marker_x), xs[order], y[order]))
            fig.add_trace(
                go.Scatter(
                    x=[float(marker_x)],
                    y=[at],
                    mode="markers",
                    name=f"{name} at {x_title} = {marker_x:g}",
                    showlegend=False,
                    marker=dict(color=style.color, size=12, symbol=style.symbol, line=dict(color="white", width=1.5)),
                    hovertemplate=f"<b>{name}</b><br>{x_title} %{{x:.3g}}<br>{y_title} %{{y:.4g}}<extra></extra>",
                )
            )
    if marker_x is not None:
        fig.add_vline(x=float(marker_x), line=dict(color="black", dash="dot", width=1))
    if log_x:
        fig.update_xaxes(type="log")
    return apply_layout(fig, title=title, x_title=x_title, y_title=y_title)


def dkd_split_bars(
    tckd: Any,
    nckd: Any,
    labels: Sequence[str] | None = None,
    *,
    term_names: tuple[str, str] = ("TCKD (target vs rest)", "NCKD (among non-targets)"),
    title: str | None = "Decoupled KD: target and non-target terms",
) -> go.Figure:
    """Stacked bars of DKD's two terms per setting (sample, temperature, model...): TCKD below, NCKD on top.

    `tckd`, `nckd` are scalars or equal-length 1-D arrays (e.g. `kdviz.distill.losses_response.dkd_parts`
    values, weighted or not); the hover shows each term's share of the total.
    """
    t = np.atleast_1d(to_array(tckd, "tckd", ndim=(0, 1)))
    n = np.atleast_1d(to_array(nckd, "nckd", ndim=(0, 1)))
    same_length(t.shape[0], n.shape[0], f"tckd has {t.shape[0]} values but nckd has {n.shape[0]}")
    names = names_for(labels, t.shape[0], "labels", "setting {}")
    if (t < 0).any() or (n < 0).any():
        raise ValueError("tckd and nckd are KL divergences and must be >= 0")
    total = t + n
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(total > 0, np.stack([t, n]) / np.where(total > 0, total, 1.0), np.nan)
    fig = go.Figure()
    for values, share, term, color in zip((t, n), shares, term_names, (OKABE_ITO[4], OKABE_ITO[0])):
        fig.add_trace(
            go.Bar(
                x=names,
                y=values,
                name=term,
                marker=dict(color=color),
                customdata=share,
                hovertemplate=f"%{{x}}<br>{term} %{{y:.4g}} (%{{customdata:.0%}} of the total)<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack")
    return apply_layout(fig, title=title, x_title="setting", y_title="loss term")


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
