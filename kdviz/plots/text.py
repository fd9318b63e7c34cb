"""Figures for text: a sentence highlighted by each model's token attributions, one row per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from kdviz.plots.style import DIVERGING_SCALE, apply_layout


def highlighted_sentence(
    words: Sequence[str], scores: Mapping[str, np.ndarray], *, title: str | None = None
) -> go.Figure:
    """The sentence `words` once per model (rows, in the order of `scores`), each word coloured by its
    score for that model: red pushes towards the explained class, blue away; one symmetric scale per row
    (each row divided by its largest |score|), so models on different logit scales compare by pattern.
    """
    if not words:
        raise ValueError("the sentence has no words to draw")
    names = list(scores)
    rows = []
    for name in names:
        row = np.asarray(scores[name], dtype=float)[: len(words)]
        if row.shape != (len(words),):
            raise ValueError(f"scores of {name!r} have {row.shape[0]} values for {len(words)} words")
        peak = np.abs(row).max()
        rows.append(row / peak if peak > 0 else row)
    raw = np.array([np.asarray(scores[n], dtype=float)[: len(words)] for n in names])
    fig = go.Figure(
        go.Heatmap(
            z=np.array(rows),
            x=list(range(len(words))),
            y=names,
            text=[list(words)] * len(names),
            texttemplate="%{text}",
            customdata=raw,
            zmin=-1,
            zmax=1,
            colorscale=DIVERGING_SCALE,
            showscale=False,
            hovertemplate="%{y}: %{text}<br>score %{customdata:.3g}<extra></extra>",
            xgap=2,
            ygap=4,
        )
    )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(autorange="reversed")
    return apply_layout(fig, title=title, x_title="word", y_title=None, legend="none", height=90 + 45 * len(names))
