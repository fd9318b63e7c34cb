"""Representation and concept figures: CKA heatmaps, 2-D feature projections, concept maps, TCAV bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots._checks import names_for, require_columns, same_length, to_array
from kdviz.plots._images import to_rgb
from kdviz.plots._scatter import scatter_traces
from kdviz.plots.style import (
    NEUTRAL_COLOR,
    OKABE_ITO,
    SEQUENTIAL_SCALE,
    apply_layout,
    series_styles,
)

__all__ = ["cka_heatmap", "concept_map", "projection_scatter", "tcav_bars"]

#: Largest side of a CKA matrix whose values are printed in the cells.
ANNOTATE_MAX = 12
FOREGROUND_COLOR, BACKGROUND_COLOR = OKABE_ITO[2], OKABE_ITO[5]


def cka_heatmap(
    matrix: Any,
    row_names: Sequence[str] | None = None,
    col_names: Sequence[str] | None = None,
    row_title: str = "teacher layer",
    col_title: str = "student layer",
    *,
    title: str | None = "Linear CKA",
) -> go.Figure:
    """CKA matrix (rows × columns, e.g. `kdviz.analysis.cka_matrix`) on a fixed 0..1 scale.

    A DataFrame supplies its own index/columns as names. NaN cells (constant layers) stay blank;
    values are printed in the cells when both sides are at most 12. The first row is at the top.
    """
    if isinstance(matrix, pd.DataFrame):
        row_names = list(matrix.index) if row_names is None else row_names
        col_names = list(matrix.columns) if col_names is None else col_names
        matrix = matrix.to_numpy(dtype=float)
    m = to_array(matrix, "matrix", ndim=2, finite=False)
    if np.isinf(m).any():
        raise ValueError("matrix contains infinite values; CKA lies in [0, 1] (NaN marks an undefined cell)")
    rows = names_for(row_names, m.shape[0], "row_names", "{}")
    cols = names_for(col_names, m.shape[1], "col_names", "{}")
    annotate = max(m.shape) <= ANNOTATE_MAX
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=cols,
            y=rows,
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL_SCALE,
            colorbar=dict(title=dict(text="CKA")),
            texttemplate="%{z:.2f}" if annotate else None,
            hovertemplate=f"{row_title} %{{y}}<br>{col_title} %{{x}}<br>CKA %{{z:.3f}}<extra></extra>",
            hoverongaps=False,
        )
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return apply_layout(fig, title=title, x_title=col_title, y_title=row_title, legend="none")


def _hover_parts(hover: pd.DataFrame | None, n: int) -> tuple[list[str], list[np.ndarray]]:
    if hover is None:
        return [], []
    if not isinstance(hover, pd.DataFrame):
        raise ValueError(f"hover must be a pandas DataFrame (one row per point) or None, got {type(hover).__name__}")
    same_length(len(hover), n, f"hover has {len(hover)} rows but there are {n} points")
    return [str(c) for c in hover.columns], [hover[c].to_numpy() for c in hover.columns]


def _format(value: np.ndarray) -> str:
    return ":.4g" if np.issubdtype(np.asarray(value).dtype, np.floating) else ""


def projection_scatter(
    points: Any,
    color: Any,
    color_title: str,
    hover: pd.DataFrame | None = None,
    categorical: bool | None = None,
    *,
    indices: Any = None,
    category_names: Sequence[str] | None = None,
    x_title: str = "component 1",
    y_title: str = "component 2",
    title: str | None = None,
) -> go.Figure:
    """2-D projection (N×2, e.g. `kdviz.analysis.project_features`), coloured by a per-point value.

    Categorical colours (default for non-float `color`, e.g. class labels or disagreement
    categories) give one trace per category (one trace with per-point colours beyond 30
    categories); a float `color` gets a continuous scale. Every point's
    sample index (`indices`, default 0..N-1) is `customdata[0]`, so a selection in the app returns
    it; `hover` columns follow in customdata and the hover. `category_names` names integer labels.
    """
    xy = to_array(points, "points", ndim=2)
    if xy.shape[1] != 2:
        raise ValueError(f"points must be N×2 (a 2-D projection), got shape {tuple(xy.shape)}")
    n = xy.shape[0]
    values = np.asarray(color.detach().cpu().numpy() if hasattr(color, "detach") else color)
    if values.ndim != 1:
        raise ValueError(f"color must be 1-D (one value per point), got shape {tuple(values.shape)}")
    same_length(values.shape[0], n, f"color has {values.shape[0]} values but points has {n} rows")
    index = np.arange(n) if indices is None else np.asarray(indices)
    same_length(index.shape[0], n, f"indices has {index.shape[0]} entries but points has {n} rows")
    hover_names, hover_values = _hover_parts(hover, n)
    custom = np.empty((n, 1 + len(hover_values)), dtype=object)
    custom[:, 0] = index
    for j, column in enumerate(hover_values, start=1):
        custom[:, j] = column
    lines = [
        f"{name}: %{{customdata[{j}]{_format(v)}}}" for j, (name, v) in enumerate(zip(hover_names, hover_values), 1)
    ]
    if categorical is None:
        categorical = not np.issubdtype(values.dtype, np.floating)
    fig = go.Figure()
    for trace in scatter_traces(
        xy, values, custom, lines, color_title, categorical=categorical, category_names=category_names
    ):
        fig.add_trace(trace)
    return apply_layout(fig, title=title, x_title=x_title, y_title=y_title, legend_title=color_title)


def _concept_arrays(concepts: Any, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    for attr in ("entropy_maps", "concept_masks", "foreground_regions", "background_entropy", "b"):
        if not hasattr(concepts, attr):
            raise ValueError(
                f"concepts must be a ConceptQuantification (kdviz.analysis.quantify_concepts); it lacks {attr!r}"
            )
    n_images = len(concepts.entropy_maps)
    if not (isinstance(index, int | np.integer) and 0 <= int(index) < n_images):
        raise ValueError(
            f"index {index!r} is out of range; the quantification holds {n_images} images (0..{n_images - 1})"
        )
    i = int(index)
    entropy = to_array(concepts.entropy_maps[i], "entropy_maps[index]", ndim=2)
    is_concept = np.asarray(concepts.concept_masks[i], dtype=bool)
    foreground = np.asarray(concepts.foreground_regions[i], dtype=bool)
    return entropy, is_concept, foreground, float(concepts.background_entropy[i]), float(concepts.b)


def _cell_edges(size: int, cells: int) -> np.ndarray:
    """Pixel edges of `cells` regions along an axis of `size` pixels (same assignment as quantify_concepts)."""
    starts = [int(np.argmax((np.arange(size) * cells) // size == c)) for c in range(cells)]
    return np.array([*starts, size], dtype=float) - 0.5


def concept_map(
    image: Any,
    concepts: Any,
    index: int = 0,
    *,
    title: str | None = "Visual concepts",
    height: int | None = None,
) -> go.Figure:
    """The input with its concept regions outlined, beside the per-region entropy map (`quantify_concepts`).

    Left: the image (H×W or C×H×W, min–max scaled) with concept regions boxed, green on the
    foreground and vermillion on the background. Right: entropy per region in nats (low: the layer
    keeps the region; concepts lie more than b below the background mean), foreground regions
    outlined in grey and concept regions marked.
    """
    rgb = to_rgb(image, "image")
    entropy, is_concept, foreground, background, margin = _concept_arrays(concepts, index)
    image_h, image_w = rgb.shape[:2]
    grid_h, grid_w = entropy.shape
    if grid_h > image_h or grid_w > image_w:
        raise ValueError(f"the {grid_h}×{grid_w} concept grid does not fit the {image_h}×{image_w} image")
    ys, xs = _cell_edges(image_h, grid_h), _cell_edges(image_w, grid_w)
    centre_y, centre_x = (ys[:-1] + ys[1:]) / 2, (xs[:-1] + xs[1:]) / 2
    fig = make_subplots(rows=1, cols=2, subplot_titles=["input and concepts", "entropy per region"])
    fig.add_trace(go.Image(z=rgb, name="input", hoverinfo="skip"), row=1, col=1)
    fig.add_trace(
        go.Heatmap(
            z=entropy,
            x=xs,
            y=ys,
            colorscale=SEQUENTIAL_SCALE,
            colorbar=dict(title=dict(text="entropy (nats)")),
            name="entropy",
            hovertemplate="entropy %{z:.3f} nats<extra></extra>",
        ),
        row=1,
        col=2,
    )
    for on_foreground, colour, label in (
        (True, FOREGROUND_COLOR, "foreground"),
        (False, BACKGROUND_COLOR, "background"),
    ):
        r, c = np.nonzero(is_concept & (foreground == on_foreground))
        for rr, cc in zip(r, c):
            fig.add_shape(
                type="rect",
                x0=xs[cc],
                x1=xs[cc + 1],
                y0=ys[rr],
                y1=ys[rr + 1],
                line=dict(color=colour, width=2),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=centre_x[c],
                y=centre_y[r],
                mode="markers",
                name=f"concept on the {label} ({len(r)})",
                marker=dict(symbol="x", size=10, color=colour, line=dict(color="white", width=1)),
                hovertemplate=f"{label} concept<extra></extra>",
            ),
            row=1,
            col=2,
        )
    r, c = np.nonzero(foreground)
    for rr, cc in zip(r, c):
        fig.add_shape(
            type="rect",
            x0=xs[cc],
            x1=xs[cc + 1],
            y0=ys[rr],
            y1=ys[rr + 1],
            line=dict(color=NEUTRAL_COLOR, width=1, dash="dot"),
            row=1,
            col=2,
        )
    for col in (1, 2):
        fig.update_xaxes(
            range=[-0.5, image_w - 0.5], showgrid=False, zeroline=False, constrain="domain", row=1, col=col
        )
        fig.update_yaxes(
            range=[image_h - 0.5, -0.5],
            showgrid=False,
            zeroline=False,
            scaleanchor=f"x{'' if col == 1 else 2}",
            constrain="domain",
            row=1,
            col=col,
        )
    subtitle = f"background mean {background:.2f} nats, concepts below {background - margin:.2f}"
    return apply_layout(
        fig,
        title=f"{title} — {subtitle}" if title else subtitle,
        x_title="x (pixels)",
        y_title="y (pixels)",
        height=height,
    )


def tcav_bars(
    df: pd.DataFrame, roles: Mapping[str, str] | None = None, *, title: str | None = "TCAV scores"
) -> go.Figure:
    """TCAV score per concept (`kdviz.analysis.tcav_scores` rows), grouped by model when `df` has a `model` column.

    Error bars are the score's standard deviation over random CAVs; non-significant scores are
    drawn hatched and lighter; a short black tick marks the random-CAV (null) score.
    """
    require_columns(df, ("concept", "score", "random_score", "p_value", "significant"), "df", " (from tcav_scores)")
    frame = df.copy()
    if "model" not in frame.columns:
        frame["model"] = "model"
    if "role" in frame.columns:
        roles = {**dict(zip(frame["model"].astype(str), frame["role"].astype(str))), **(roles or {})}
    models = list(dict.fromkeys(frame["model"].astype(str)))
    styles = series_styles(models, roles)
    fig = go.Figure()
    for model in models:
        rows = frame[frame["model"].astype(str) == model]
        style = styles[model]
        significant = rows["significant"].astype(bool).to_numpy()
        std = rows["score_std"].to_numpy(float) if "score_std" in rows.columns else None
        fig.add_trace(
            go.Bar(
                x=rows["concept"].astype(str),
                y=rows["score"].to_numpy(float),
                name=model,
                offsetgroup=model,
                error_y=None if std is None else dict(type="data", array=std, visible=True),
                marker=dict(
                    color=style.color,
                    opacity=np.where(significant, 1.0, 0.45),
                    pattern=dict(shape=np.where(significant, style.pattern, "/")),
                ),
                customdata=np.stack([rows["p_value"].to_numpy(float), rows["random_score"].to_numpy(float)], axis=1),
                hovertemplate=(
                    f"<b>{model}</b><br>concept %{{x}}<br>TCAV score %{{y:.3f}}<br>p = %{{customdata[0]:.3g}}"
                    "<br>random CAVs %{customdata[1]:.3f}<extra></extra>"
                ),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=rows["concept"].astype(str),
                y=rows["random_score"].to_numpy(float),
                mode="markers",
                name="random CAVs (null)",
                legendgroup="null",
                showlegend=model == models[0],
                offsetgroup=model,
                marker=dict(symbol="line-ew", size=24, line=dict(color="black", width=3)),
                hovertemplate=f"<b>{model}</b><br>random CAVs %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group", scattermode="group")
    fig.update_yaxes(range=[0, 1.05])
    return apply_layout(fig, title=title, x_title="concept", y_title="TCAV score")
