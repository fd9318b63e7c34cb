"""Papers page figures: one entry's paired differences per seed with their 95 % interval, and the verdict tally."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdviz.plots.style import NEUTRAL_COLOR, OKABE_ITO, apply_layout

__all__ = ["VERDICT_COLORS", "paired_differences", "verdict_bars"]

#: Verdict → colour (Okabe–Ito; none of them a role colour's meaning).
VERDICT_COLORS = {
    "holds": OKABE_ITO[2],  # bluish green
    "holds in part": OKABE_ITO[1],  # sky blue
    "does not hold at this scale": OKABE_ITO[5],  # vermillion
    "not testable here": "#999999",
    "not yet measured": "#DDDDDD",
}


def paired_differences(tests: Sequence[Mapping[str, Any]], *, title: str | None = None) -> go.Figure:
    """One row per test: each seed's difference treatment − baseline (dots), their mean and 95 % interval
    (diamond and bar, coloured by the test's verdict), 0 as a line, and the ±margin band of an equality claim.

    `tests` are the ``tests`` of a `kdviz reproduce` result (metric, treatment, baseline, direction, margin,
    says, seeds, diffs, mean, low, high, verdict).
    """
    if not tests:
        raise ValueError("tests is empty: an entry with a measured result has at least one test")
    fig = make_subplots(
        rows=len(tests),
        cols=1,
        subplot_titles=[f"{t['says']} ({t['metric']}: {t['treatment']} − {t['baseline']})" for t in tests],
        vertical_spacing=min(0.25, 0.6 / len(tests)),
    )
    for row, test in enumerate(tests, start=1):
        color = VERDICT_COLORS.get(test["verdict"], NEUTRAL_COLOR)
        diffs = [d for d in test.get("diffs", []) if d is not None]
        seeds = test.get("seeds", list(range(len(diffs))))
        fig.add_trace(
            go.Scatter(
                x=diffs,
                y=["seeds"] * len(diffs),
                mode="markers",
                marker=dict(color=NEUTRAL_COLOR, size=8, symbol="circle-open"),
                name="one seed",
                text=[f"seed {s}" for s in seeds],
                hovertemplate="%{text}: %{x:+.4f}<extra></extra>",
                showlegend=row == 1,
            ),
            row=row,
            col=1,
        )
        mean, low, high = test.get("mean"), test.get("low"), test.get("high")
        if mean is not None:
            fig.add_trace(
                go.Scatter(
                    x=[mean],
                    y=["mean, 95 % CI"],
                    mode="markers",
                    marker=dict(color=color, size=13, symbol="diamond", line=dict(color="#000000", width=1)),
                    error_x=dict(
                        type="data", symmetric=False, array=[high - mean], arrayminus=[mean - low], color=color
                    ),
                    name="mean, 95 % CI",
                    hovertemplate=f"mean %{{x:+.4f}} [{low:+.4f}, {high:+.4f}]: {test['verdict']}<extra></extra>",
                    showlegend=row == 1,
                ),
                row=row,
                col=1,
            )
        if test.get("direction") == "equal" and test.get("margin"):
            margin = float(test["margin"])
            fig.add_vrect(x0=-margin, x1=margin, fillcolor=OKABE_ITO[2], opacity=0.12, line_width=0, row=row, col=1)
        fig.add_vline(x=0, line=dict(color=NEUTRAL_COLOR, dash="dash", width=1), row=row, col=1)
        fig.update_xaxes(title_text=f"difference in {test['metric']} (claim: {test['direction']})", row=row, col=1)
    return apply_layout(fig, title=title, x_title=None, y_title=None, legend="bottom", height=170 + 150 * len(tests))


def verdict_bars(counts: Mapping[str, int], *, title: str | None = None) -> go.Figure:
    """How many entries got each verdict: one horizontal bar per verdict in its colour."""
    verdicts = list(counts)
    fig = go.Figure(
        go.Bar(
            x=[counts[v] for v in verdicts],
            y=verdicts,
            orientation="h",
            marker_color=[VERDICT_COLORS.get(v, NEUTRAL_COLOR) for v in verdicts],
            text=[counts[v] for v in verdicts],
            textposition="auto",
            hovertemplate="%{y}: %{x} entries<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return apply_layout(fig, title=title, x_title="entries", y_title=None, legend="none", height=260)
