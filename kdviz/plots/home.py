"""The Home page's schematic of knowledge distillation, drawn with Plotly shapes and annotations."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from kdviz.plots.style import NEUTRAL_COLOR, ROLE_COLORS, apply_layout

__all__ = ["kd_diagram"]

#: Logits of the toy teacher and student whose softened probabilities are drawn as small bar charts.
EXAMPLE_TEACHER_LOGITS = (5.0, 3.0, 1.5, 0.5, -1.0)
EXAMPLE_STUDENT_LOGITS = (3.5, 3.0, 0.5, 1.0, 0.0)


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _softmax(logits: tuple[float, ...], temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=float) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


class _Canvas:
    """Shapes and annotations collected as plain dicts and set on the figure at once (add_* per item is slow)."""

    def __init__(self) -> None:
        self.shapes: list[dict] = []
        self.annotations: list[dict] = []

    def text(self, x: float, y: float, text: str, size: int = 12) -> None:
        self.annotations.append(dict(x=x, y=y, text=text, showarrow=False, font=dict(size=size)))

    def box(self, x0: float, x1: float, y0: float, y1: float, text: str, color: str) -> None:
        self.shapes.append(
            dict(
                type="rect",
                x0=x0,
                x1=x1,
                y0=y0,
                y1=y1,
                line=dict(color=color, width=2),
                fillcolor=_rgba(color, 0.12),
                layer="below",
            )
        )
        self.text((x0 + x1) / 2, (y0 + y1) / 2, text, size=13)

    def arrow(self, start: tuple[float, float], end: tuple[float, float], text: str = "", dash: bool = False) -> None:
        self.annotations.append(
            dict(
                x=end[0],
                y=end[1],
                ax=start[0],
                ay=start[1],
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                text="",
                showarrow=True,
                arrowhead=2,
                arrowsize=1.2,
                arrowwidth=1.8,
                arrowcolor=NEUTRAL_COLOR if dash else "black",
            )
        )
        if text:
            self.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.22, text)


def _bars(x0: float, y0: float, probs: np.ndarray, color: str, name: str, height: float = 1.4) -> go.Bar:
    """A tiny bar chart of `probs` whose lower-left corner is (x0, y0), as one Bar trace (hover shows values)."""
    width = 0.3
    xs = x0 + width / 2 + np.arange(len(probs)) * (width + 0.08)
    return go.Bar(
        x=xs,
        y=probs * height,
        base=y0,
        width=width,
        marker=dict(color=color),
        name=name,
        showlegend=False,
        customdata=probs,
        hovertemplate=f"{name}<br>class %{{pointNumber}}: p = %{{customdata:.3f}}<extra></extra>",
    )


def kd_diagram(temperature: float = 4.0, alpha: float = 0.9) -> go.Figure:
    """Teacher → softened probabilities at `temperature` → student trained on soft and hard targets.

    The small bar charts are the softmax at T of fixed example logits, so the picture changes with
    the temperature; `alpha` is the weight of the soft (KL) term in the loss shown.
    """
    if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if not (isinstance(alpha, int | float) and 0 <= alpha <= 1):
        raise ValueError(f"alpha (weight of the soft-target term) must be in [0, 1], got {alpha!r}")
    teacher, student = ROLE_COLORS["teacher"], ROLE_COLORS["distilled"]
    c = _Canvas()
    c.box(0.1, 1.5, 2.55, 3.45, "input x", NEUTRAL_COLOR)
    c.box(2.3, 4.5, 3.9, 5.5, "<b>teacher</b><br>large, frozen", teacher)
    c.box(2.5, 4.3, 0.6, 1.9, "<b>student</b><br>small, trained", student)
    c.arrow((1.5, 3.2), (2.3, 4.5))
    c.arrow((1.5, 2.8), (2.5, 1.3))
    c.text(6.3, 5.55, f"softmax(z<sub>t</sub> / T), T = {temperature:g}")
    c.text(6.3, 0.4, "softmax(z<sub>s</sub> / T)")
    c.arrow((4.5, 4.7), (5.25, 4.7), "logits")
    c.arrow((4.3, 1.25), (5.25, 1.25), "logits")
    c.box(5.3, 7.3, 2.6, 3.4, "hard label y", NEUTRAL_COLOR)
    loss = (
        f"loss = {alpha:g}·T²·KL(p<sub>t</sub><sup>T</sup> ‖ p<sub>s</sub><sup>T</sup>)"
        f"<br>+ {1 - alpha:g}·CE(y, p<sub>s</sub>)"
    )
    c.box(8.0, 10.6, 2.1, 3.9, loss, "#000000")
    c.arrow((7.3, 4.4), (8.6, 3.9))
    c.arrow((7.3, 1.2), (8.6, 2.1))
    c.arrow((7.3, 3.0), (8.0, 3.0))
    # Gradients flow back to the student only: a dashed path under the picture, ending in an arrow.
    c.shapes.append(
        dict(type="path", path="M 9.3 2.1 L 9.3 -0.3 L 3.4 -0.3 L 3.4 0.3", line=dict(color=NEUTRAL_COLOR, dash="dash"))
    )
    c.arrow((3.4, 0.2), (3.4, 0.6), dash=True)
    c.text(7.6, 0.0, "gradients update the student only", size=11)
    fig = go.Figure(
        [
            _bars(5.3, 4.0, _softmax(EXAMPLE_TEACHER_LOGITS, temperature), teacher, f"teacher at T = {temperature:g}"),
            _bars(5.3, 0.7, _softmax(EXAMPLE_STUDENT_LOGITS, temperature), student, f"student at T = {temperature:g}"),
        ],
        layout=dict(
            xaxis=dict(visible=False, range=[0, 10.8], fixedrange=True),
            yaxis=dict(visible=False, range=[-0.5, 5.9], fixedrange=True),
            height=380,
            bargap=0,
            dragmode=False,
        ),
    )
    fig = apply_layout(fig, title="Knowledge distillation in one picture", x_title=None, y_title=None, legend="none")
    # Set last: every layout update after many annotations exist costs plotly a walk over all of them.
    fig.update_layout(shapes=c.shapes, annotations=c.annotations)
    return fig
