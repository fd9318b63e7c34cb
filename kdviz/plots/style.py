"""Shared look of every kdviz figure: role and class colours, colour scales, layout, and download helpers.

Colours come from the Okabe–Ito palette (Okabe & Ito 2008), which stays distinguishable under the
common forms of colour-vision deficiency. A role (teacher, scratch student, distilled student,
self-distilled student) has the same colour on every page; several models sharing a role are told
apart by line dash, marker symbol and bar pattern instead.
"""

from __future__ import annotations

import colorsys
import functools
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

__all__ = [
    "CATEGORY_COLORS",
    "DIVERGING_SCALE",
    "FALLBACK_COLORS",
    "OKABE_ITO",
    "ROLE_ALIASES",
    "ROLE_COLORS",
    "SEQUENTIAL_SCALE",
    "SeriesStyle",
    "apply_layout",
    "axis_label",
    "category_colors",
    "class_colors",
    "figure_html",
    "house_template",
    "role_color",
    "series_styles",
    "table_csv",
]

#: Okabe–Ito: orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple, black.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")

ROLE_COLORS: dict[str, str] = {
    "teacher": "#0072B2",  # blue
    "scratch": "#E69F00",  # orange
    "distilled": "#009E73",  # bluish green
    "self": "#CC79A7",  # reddish purple
}

#: Other names of roles: a bare "student" is the distilled one (pass `roles` to say otherwise).
ROLE_ALIASES = {"student": "distilled"}

#: Colours for roles not in ROLE_COLORS: the rest of Okabe–Ito plus grey, never a role's colour
#: (Okabe–Ito's yellow is left out: it is barely visible on a white background).
FALLBACK_COLORS = ("#56B4E9", "#D55E00", "#000000", "#999999")

#: Teacher/student correctness categories of `kdviz.analysis.rank_divergence` (same strings and order).
CATEGORY_COLORS: dict[str, str] = {
    "both right": "#009E73",
    "teacher right only": "#0072B2",
    "student right only": "#E69F00",
    "both wrong": "#D55E00",
}

#: Sequential scale (perceptually uniform, colour-blind safe) for non-negative maps: CKA, entropy, saliency.
SEQUENTIAL_SCALE = "Viridis"
#: Diverging scale for signed maps (blue negative, red positive; ColorBrewer RdBu is colour-blind safe).
DIVERGING_SCALE = "RdBu_r"

NEUTRAL_COLOR = "#555555"  # reference lines, inputs drawn behind attributions

_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x")
_PATTERNS = ("", "/", ".", "x", "\\", "+")

_AXIS_LABELS = {
    "kl": "KL(teacher ‖ student) (nats)",
    "teacher_conf": "teacher confidence",
    "student_conf": "student confidence",
    "ece": "ECE",
    "mce": "MCE",
    "nll": "NLL (nats)",
    "brier": "Brier score",
    "epoch": "epoch",
    "loss": "loss",
    "lr": "learning rate",
    "relevance_mass": "relevance mass in mask",
    "pointing_game": "pointing-game hit rate",
    "pointing_hit": "pointing-game hit",
    "spearman": "Spearman rank correlation",
    "topk_iou": "top-k IoU",
    "cosine": "cosine similarity",
    "score": "TCAV score",
}


def role_color(role: str) -> str:
    """Hex colour of a role (case-insensitive; aliases such as "student" resolved).

    An unknown role gets a fallback colour chosen by a stable hash of its name.
    """
    if not isinstance(role, str):
        raise ValueError(f"role must be a string such as {', '.join(ROLE_COLORS)}; got {type(role).__name__}")
    key = role.strip().lower()
    key = ROLE_ALIASES.get(key, key)
    if key in ROLE_COLORS:
        return ROLE_COLORS[key]
    # crc32, not hash(): Python salts str hashes per process, colours must not change between runs.
    return FALLBACK_COLORS[zlib.crc32(key.encode("utf-8")) % len(FALLBACK_COLORS)]


def _hls_hex(hue: float, lightness: float, saturation: float) -> str:
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return f"#{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}"


def class_colors(n: int) -> list[str]:
    """`n` class colours: Okabe–Ito for the first 8, then golden-angle hues (class i's colour never depends on n)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n (number of classes) must be a non-negative integer, got {n!r}")
    colors = list(OKABE_ITO[:n])
    for i in range(len(OKABE_ITO), n):
        j = i - len(OKABE_ITO)
        hue = (j * 0.6180339887498949) % 1.0  # golden-ratio steps spread hues evenly for any n
        lightness = (0.45, 0.62, 0.32)[j % 3]
        saturation = (0.75, 0.55)[(j // 3) % 2]
        colors.append(_hls_hex(hue, lightness, saturation))
    return colors


def category_colors(values: Sequence[Any], names: Sequence[str] | None = None) -> dict[Any, str]:
    """Colour per distinct category, in display order.

    Integer labels get `class_colors` by index (the same class has the same colour on every page,
    sorted); the divergence categories get `CATEGORY_COLORS` (in their order); anything else gets
    class colours in sorted order. `names` (class names) only sizes the palette.
    """
    unique = list(pd.unique(pd.Series(list(values), dtype=object)))
    if not unique:
        raise ValueError("values is empty; need at least one category")
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in unique):
        if min(int(v) for v in unique) < 0:
            raise ValueError(f"integer categories must be class indices >= 0, got {min(int(v) for v in unique)}")
        palette = class_colors(max(max(int(v) for v in unique) + 1, len(names or [])))
        return {v: palette[int(v)] for v in sorted(unique, key=int)}
    if all(str(v) in CATEGORY_COLORS for v in unique):
        present = {str(v): v for v in unique}
        return {present[c]: CATEGORY_COLORS[c] for c in CATEGORY_COLORS if c in present}
    ordered = sorted(unique, key=str)
    return dict(zip(ordered, class_colors(len(ordered))))


@dataclass(frozen=True)
class SeriesStyle:
    """How one model is drawn: its role's colour, plus a dash/symbol/pattern telling apart models of one role."""

    color: str
    dash: str
    symbol: str
    pattern: str


def series_styles(names: Sequence[str], roles: Mapping[str, str] | None = None) -> dict[str, SeriesStyle]:
    """Style per model name; a model's role is `roles[name]`, or the name itself when `roles` lacks it.

    Models of one role share its colour and differ by dash, symbol and pattern; unknown roles in one
    figure get distinct fallback colours while there are enough.
    """
    roles = roles or {}
    seen: dict[str, int] = {}
    role_colors: dict[str, str] = {}
    styles = {}
    for name in names:
        role = str(roles.get(name, name)).strip().lower()
        role = ROLE_ALIASES.get(role, role)
        if role not in role_colors:
            role_colors[role] = _figure_color(role, set(role_colors.values()))
        color = role_colors[role]
        k = seen.get(color, 0)  # earlier series of this colour: the dash/symbol/pattern tells them apart
        seen[color] = k + 1
        styles[name] = SeriesStyle(
            color, _DASHES[k % len(_DASHES)], _SYMBOLS[k % len(_SYMBOLS)], _PATTERNS[k % len(_PATTERNS)]
        )
    return styles


def _figure_color(role: str, used: set[str]) -> str:
    """`role_color(role)`, except that an unknown role whose hashed colour is taken in this figure gets a free one."""
    color = role_color(role)
    if role in ROLE_COLORS or color not in used:
        return color
    start = FALLBACK_COLORS.index(color)
    for step in range(1, len(FALLBACK_COLORS)):
        candidate = FALLBACK_COLORS[(start + step) % len(FALLBACK_COLORS)]
        if candidate not in used:
            return candidate
    return color  # more unknown roles than fallback colours: dash, symbol and pattern still differ


def axis_label(column: str) -> str:
    """Readable axis title for a column name (`test_ece` -> `test ECE`, `loss/kd` -> `loss: kd`)."""
    if column in _AXIS_LABELS:
        return _AXIS_LABELS[column]
    for prefix in ("test_", "val_", "train_"):
        if column.startswith(prefix) and column[len(prefix) :] in _AXIS_LABELS:
            return f"{prefix[:-1]} {_AXIS_LABELS[column[len(prefix) :]]}"
    if column.startswith("loss/"):
        return f"loss: {column[5:]}"
    return column.replace("_", " ")


@functools.cache
def house_template() -> go.layout.Template:
    """plotly_white's layout with Okabe–Ito as the default colour cycle, and only the trace defaults we use.

    The full plotly_white template carries defaults for every trace type; copying it into each
    figure costs tens of milliseconds, this one a few.
    """
    base = pio.templates["plotly_white"]
    colorbar = dict(outlinewidth=0, ticks="")
    pattern = dict(fillmode="overlay", size=10, solidity=0.2)
    return go.layout.Template(
        layout={**base.layout.to_plotly_json(), "colorway": list(OKABE_ITO)},  # a copy: the global stays as is
        data=dict(
            bar=[
                dict(
                    error_x=dict(color="#2a3f5f"),
                    error_y=dict(color="#2a3f5f"),
                    marker=dict(line=dict(color="white", width=0.5), pattern=pattern),
                )
            ],
            heatmap=[dict(colorbar=colorbar)],
            contour=[dict(colorbar=colorbar)],
            scatter=[dict(marker=dict(colorbar=colorbar))],
            scattergl=[dict(marker=dict(colorbar=colorbar))],
            parcoords=[dict(line=dict(colorbar=colorbar))],
        ),
    )


def _axis_keys(fig: go.Figure, letter: str) -> list[str]:
    """Layout keys of every x (or y) axis: those in the layout and those the traces refer to."""
    keys = {k for k in fig.layout.to_plotly_json() if re.fullmatch(rf"{letter}axis\d*", k)}
    for trace in fig.data:
        if f"{letter}axis" in trace:  # cartesian traces; an unset reference means the first axis
            keys.add(f"{letter}axis{(trace[f'{letter}axis'] or letter)[1:]}")
    return sorted(keys)


def _title_untitled_axes(fig: go.Figure, letter: str, title: str | None) -> None:
    if title is None:
        return
    for key in _axis_keys(fig, letter):
        axis = fig.layout[key]
        if not (axis.title and axis.title.text) and not shares_hidden_axis(axis):
            fig.update_layout({key: {"title": {"text": title}}})


def shares_hidden_axis(axis: go.layout.XAxis | go.layout.YAxis) -> bool:
    """True for a shared subplot axis: it matches another and hides its tick labels (only the shown one is titled)."""
    return bool(axis.matches) and axis.showticklabels is False


_LEGENDS = {
    "top": dict(orientation="h", x=0.0, xanchor="left", y=1.02, yanchor="bottom"),
    "right": dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top"),
    "bottom": dict(orientation="h", x=0.0, xanchor="left", y=-0.18, yanchor="top"),
}


def apply_layout(
    fig: go.Figure,
    *,
    title: str | None,
    x_title: str | None,
    y_title: str | None,
    legend: Literal["top", "right", "bottom", "none"] = "top",
    height: int | None = None,
    legend_title: str | None = None,
) -> go.Figure:
    """Give `fig` the house look and axis titles; returns `fig`.

    `x_title` / `y_title` go on every x / y axis that has no title yet (subplot builders title
    their own axes first). `legend` places the legend above the plot (default), to the right,
    below, or hides it.
    """
    if legend not in (*_LEGENDS, "none"):
        raise ValueError(f"legend must be one of top, right, bottom, none; got {legend!r}")
    _title_untitled_axes(fig, "x", x_title)
    _title_untitled_axes(fig, "y", y_title)
    # Subplot titles sit just above the plot area, where a top legend would go: lift the legend over them.
    subplot_titles = any(a.yref == "paper" and a.y is not None and a.y >= 1 for a in fig.layout.annotations)
    lift = 0.07 if legend == "top" and subplot_titles else 0.0
    top = 40 + (30 if title else 0) + (30 if legend == "top" else 0) + (25 if lift else 0)
    fig.update_layout(
        template=house_template(),
        title=dict(text=title or "", x=0.0, xanchor="left", y=0.99, yanchor="top"),
        margin=dict(l=60, r=20 if legend != "right" else 140, t=top, b=50 if legend != "bottom" else 90),
        font=dict(size=13),
        showlegend=legend != "none",
        hoverlabel=dict(namelength=-1),
    )
    if legend != "none":
        placement = {**_LEGENDS[legend], "y": _LEGENDS[legend]["y"] + lift}
        fig.update_layout(legend=dict(**placement, title=dict(text=legend_title or "")))
    if height is not None:
        fig.update_layout(height=int(height))
    return fig


def figure_html(fig: go.Figure) -> bytes:
    """Standalone HTML of `fig` with plotly.js inlined from the installed package (works offline)."""
    if not isinstance(fig, go.Figure):
        raise ValueError(f"figure_html needs a plotly Figure, got {type(fig).__name__}")
    html = fig.to_html(include_plotlyjs=True, full_html=True, include_mathjax=False, config={"displaylogo": False})
    return html.encode("utf-8")


def table_csv(df: pd.DataFrame, index: bool | None = None) -> bytes:
    """UTF-8 CSV of a table; the index is written when it carries information (not a plain 0..n-1 range)."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"table_csv needs a pandas DataFrame, got {type(df).__name__}")
    if index is None:
        index = not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1)
        index = index or df.index.name is not None
    return df.to_csv(index=index).encode("utf-8")
