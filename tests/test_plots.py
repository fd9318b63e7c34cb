"""Figure builders of kdviz.plots: the traces carry the data they were given, axes are titled, bad input is refused."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz import plots
from kdviz.plots.style import FALLBACK_COLORS, OKABE_ITO, ROLE_ALIASES, ROLE_COLORS

CLASSES = ["cat", "dog", "car"]


# --------------------------------------------------------------------------- tiny fixed inputs


def _bins(accuracy: list[float], confidence: list[float], count: list[int]) -> pd.DataFrame:
    edges = np.linspace(0, 1, len(count) + 1)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "confidence": confidence,
            "accuracy": accuracy,
            "count": count,
        }
    )


BINS = {
    "teacher": _bins([np.nan, 0.5, 0.9], [np.nan, 0.55, 0.85], [0, 4, 6]),
    "student": _bins([0.2, 0.4, 1.0], [0.3, 0.5, 0.8], [1, 2, 7]),
}
ROLES = {"teacher": "teacher", "student": "distilled"}
INTERVALS = pd.DataFrame(
    {
        "model": ["teacher", "student", "teacher", "student"],
        "role": ["teacher", "distilled", "teacher", "distilled"],
        "metric": ["ece", "ece", "nll", "nll"],
        "value": [0.05, 0.02, 0.4, 0.5],
        "low": [0.03, 0.025, 0.35, 0.45],
        "high": [0.08, 0.06, 0.45, 0.55],
    }
)
TRUE_POSTERIOR = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
MODEL_PROBS = {"teacher": np.array([[0.8, 0.2], [0.1, 0.9], [0.7, 0.3]])}
IMAGES = np.arange(2 * 3 * 4 * 4, dtype=float).reshape(2, 3, 4, 4)
MAPS = {"teacher": np.linspace(-1, 1, 32).reshape(2, 4, 4), "student": np.linspace(0, 2, 32).reshape(2, 4, 4)}
MASKS = np.zeros((2, 4, 4), dtype=bool)
MASKS[:, 1:3, 1:3] = True
DIVERGENCE = pd.DataFrame(
    {
        "index": [7, 2, 5, 0],
        "kl": [1.5, 0.7, 0.2, 0.01],
        "teacher_pred": [0, 1, 2, 1],
        "student_pred": [1, 1, 0, 1],
        "teacher_conf": [0.9, 0.6, 0.5, 0.95],
        "student_conf": [0.5, 0.7, 0.4, 0.9],
        "category": ["teacher right only", "both right", "both wrong", "both right"],
    }
)
GRID = SimpleNamespace(
    x=np.linspace(-1, 1, 5),
    y=np.linspace(-1, 1, 4),
    teacher_probs=np.full((4, 5, 2), 0.5),
    student_probs=np.full((4, 5, 2), 0.5),
    teacher_class=np.array([[0, 0, 1, 1, 1]] * 4),
    student_class=np.array([[0, 0, 0, 1, 1]] * 4),
    point=np.array([0.1, 0.2]),
)
CONCEPTS = SimpleNamespace(
    entropy_maps=np.array([[[0.2, 1.0], [1.1, 0.9]]]),
    concept_masks=np.array([[[True, False], [False, False]]]),
    foreground_regions=np.array([[[True, True], [False, False]]]),
    background_entropy=np.array([1.0]),
    b=0.25,
)
TCAV = pd.DataFrame(
    {
        "concept": ["stripes", "dots"] * 2,
        "score": [0.8, 0.4, 0.7, 0.5],
        "score_std": [0.05, 0.1, 0.05, 0.1],
        "random_score": [0.5] * 4,
        "p_value": [0.01, 0.6, 0.02, 0.9],
        "significant": [True, False, True, False],
        "model": ["teacher", "teacher", "student", "student"],
    }
)
HISTORY = [
    {"epoch": 1, "loss": 2.0, "loss/ce": 1.5, "loss/kd": 0.5, "test_accuracy": 0.5},
    {"epoch": 2, "loss": 1.0, "loss/ce": 0.6, "loss/kd": 0.4, "test_accuracy": 0.7},
]
RUNS = pd.DataFrame({"method": ["kd", "dkd", "kd"], "temperature": [2.0, 4.0, 8.0], "test_accuracy": [0.8, 0.85, 0.82]})
HEADLINE = pd.DataFrame(
    {
        "model": ["teacher", "scratch", "kd"],
        "role": ["teacher", "scratch", "distilled"],
        "test_accuracy": [0.9, 0.8, 0.85],
        "test_ece": [0.05, 0.08, 0.03],
    }
)

BUILDERS = {
    "reliability_line": lambda: plots.reliability_diagram(BINS, ROLES),
    "reliability_bar": lambda: plots.reliability_diagram(BINS, ROLES, kind="bar"),
    "confidence_histogram": lambda: plots.confidence_histogram({"teacher": [0.2, 0.9, 1.0]}, n_bins=5),
    "metric_intervals": lambda: plots.metric_intervals(INTERVALS),
    "posterior_comparison": lambda: plots.posterior_comparison(TRUE_POSTERIOR, MODEL_PROBS),
    "soft_target_bars": lambda: plots.soft_target_bars({"teacher": [0.7, 0.2, 0.1]}, CLASSES, log_y=True),
    "class_similarity": lambda: plots.class_similarity_heatmap(np.eye(3), CLASSES),
    "logit_gradient": lambda: plots.logit_gradient_bars([0.3, -0.2, -0.1], CLASSES, target=0),
    "loss_curve": lambda: plots.loss_curve([1, 2, 4], {"KD": [0.1, 0.3, 0.2]}, "temperature", "loss", marker_x=3),
    "dkd_split": lambda: plots.dkd_split_bars([0.1, 0.2], [0.3, 0.0], ["T=1", "T=4"]),
    "cka_heatmap": lambda: plots.cka_heatmap(np.array([[1.0, 0.3], [np.nan, 0.8]]), ["a", "b"], ["c", "d"]),
    "projection_categorical": lambda: plots.projection_scatter(np.eye(3)[:, :2], [0, 1, 0], "class"),
    "projection_continuous": lambda: plots.projection_scatter(np.eye(3)[:, :2], [0.1, 0.5, 0.9], "KL"),
    "concept_map": lambda: plots.concept_map(IMAGES[0], CONCEPTS),
    "tcav_bars": lambda: plots.tcav_bars(TCAV),
    "attribution_grid": lambda: plots.attribution_grid(IMAGES, MAPS, masks=MASKS),
    "attribution_lines": lambda: plots.attribution_lines(np.ones((2, 1, 5)), {"teacher": np.zeros((2, 5))}),
    "attribution_bars": lambda: plots.attribution_lines(np.ones((1, 3)), {"t": np.ones((1, 3))}, kind="bar"),
    "agreement_histogram": lambda: plots.agreement_histogram(np.array([0.1, 0.5, np.nan, 0.9])),
    "localization_bars": lambda: plots.localization_bars(
        pd.DataFrame({"model": ["teacher", "student"], "relevance_mass": [0.6, 0.4], "pointing_game": [0.9, 0.5]}),
        chance=0.25,
    ),
    "divergence_scatter": lambda: plots.divergence_scatter(DIVERGENCE),
    "probability_comparison": lambda: plots.probability_comparison([0.7, 0.2, 0.1], [0.3, 0.6, 0.1], CLASSES, 0),
    "decision_boundary": lambda: plots.decision_boundary(GRID, np.array([[0, 0], [0.5, 0.5]]), [0, 1]),
    "learning_curves": lambda: plots.learning_curves({"teacher": HISTORY}, "test_accuracy"),
    "loss_term_curves": lambda: plots.loss_term_curves(HISTORY),
    "parallel_coordinates": lambda: plots.parallel_coordinates(RUNS, ["method", "temperature"], "test_accuracy"),
    "headline_bars": lambda: plots.headline_bars(HEADLINE),
    "kd_diagram": lambda: plots.kd_diagram(),
}


def _axes(fig: go.Figure) -> dict[str, go.layout.XAxis | go.layout.YAxis]:
    """Every cartesian axis of a figure: those in its layout and those its traces refer to."""
    keys = {k for k in fig.layout.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)}
    for trace in fig.data:
        for letter in "xy":
            if f"{letter}axis" in trace:  # unset means the first axis
                keys.add(f"{letter}axis{(trace[f'{letter}axis'] or letter)[1:]}")
    return {k: fig.layout[k] for k in sorted(keys)}


# --------------------------------------------------------------------------- every builder


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_visible_axis_has_a_title(name: str) -> None:
    fig = BUILDERS[name]()
    assert isinstance(fig, go.Figure)
    assert fig.data, "a figure without traces"
    axes = _axes(fig)
    titled = {k for k, ax in axes.items() if ax.title and ax.title.text}
    untitled = [k for k, ax in axes.items() if ax.visible is not False and k not in titled and not ax.matches]
    assert not untitled, f"{name}: axes without a title: {untitled}"
    for key, ax in axes.items():  # a shared axis may go untitled when the axis it matches has a title
        if ax.matches and key not in titled:
            assert ax.showticklabels is False and f"{key[0]}axis{ax.matches[1:]}" in titled
    hidden = [k for k, ax in _axes(fig).items() if ax.visible is False]
    if hidden:  # image grids and the schematic hide their axes: panels must be titled instead
        assert fig.layout.annotations


def test_parallel_coordinates_labels_every_dimension_and_encodes_categories() -> None:
    fig = BUILDERS["parallel_coordinates"]()
    method, temperature = fig.data[0].dimensions
    assert [method.label, temperature.label] == ["method", "temperature"]
    assert list(method.ticktext) == ["dkd", "kd"] and list(method.values) == [1, 0, 1]
    assert list(temperature.values) == [2.0, 4.0, 8.0]
    assert list(fig.data[0].line.color) == [0.8, 0.85, 0.82]


# --------------------------------------------------------------------------- style


def test_role_colours_are_fixed_distinct_and_case_insensitive() -> None:
    assert plots.role_color("teacher") == ROLE_COLORS["teacher"] == "#0072B2"
    assert plots.role_color("Distilled ") == ROLE_COLORS["distilled"] == plots.role_color("student")
    assert len(set(ROLE_COLORS.values())) == 4
    assert set(ROLE_COLORS.values()) <= set(OKABE_ITO)
    assert not set(FALLBACK_COLORS) & set(ROLE_COLORS.values())


def test_unknown_role_colour_is_pinned_across_processes() -> None:
    # crc32("ensemble") % 4 == 0: a salted hash() would change this between runs.
    assert plots.role_color("ensemble") == FALLBACK_COLORS[0] == "#56B4E9"


@given(st.text(min_size=1, max_size=20))
@settings(max_examples=25, deadline=None)
def test_role_colour_is_deterministic_and_never_a_roles_colour_for_unknown_roles(role: str) -> None:
    color = plots.role_color(role)
    assert color == plots.role_color(role)
    if role.strip().lower() not in {*ROLE_COLORS, *ROLE_ALIASES}:
        assert color in FALLBACK_COLORS


def test_models_sharing_a_role_or_a_fallback_colour_are_told_apart() -> None:
    styles = plots.series_styles(["kd", "dkd"], {"kd": "distilled", "dkd": "distilled"})
    assert styles["kd"].color == styles["dkd"].color == ROLE_COLORS["distilled"]
    assert styles["kd"].dash != styles["dkd"].dash and styles["kd"].pattern != styles["dkd"].pattern
    names = ["saliency", "grad_cam", "occlusion", "deeplift"]
    unknown = plots.series_styles(names)
    assert len({s.color for s in unknown.values()}) == 4


def test_class_colours_start_with_okabe_ito_and_stay_distinct() -> None:
    assert plots.class_colors(3) == list(OKABE_ITO[:3])
    many = plots.class_colors(300)
    assert len(set(many)) == 300
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in many)
    with pytest.raises(ValueError, match="non-negative integer"):
        plots.class_colors(-1)


@given(st.integers(0, 60), st.integers(0, 60))
@settings(max_examples=30, deadline=None)
def test_a_class_keeps_its_colour_whatever_the_number_of_classes(a: int, b: int) -> None:
    small, large = sorted((a, b))
    assert plots.class_colors(large)[:small] == plots.class_colors(small)


def test_category_colours_match_the_divergence_categories() -> None:
    source = Path(__file__).parents[1] / "kdviz" / "analysis" / "divergence.py"
    tree = ast.parse(source.read_text())
    (categories,) = [
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DIVERGENCE_CATEGORIES"
    ]
    assert tuple(plots.CATEGORY_COLORS) == categories
    assert len(set(plots.CATEGORY_COLORS.values())) == len(categories)


def test_apply_layout_titles_only_untitled_axes_and_checks_the_legend() -> None:
    fig = go.Figure(go.Scatter(x=[0], y=[0]))
    fig.update_yaxes(title_text="mine")
    plots.apply_layout(fig, title="t", x_title="x title", y_title="ignored")
    assert fig.layout.xaxis.title.text == "x title" and fig.layout.yaxis.title.text == "mine"
    with pytest.raises(ValueError, match="top, right, bottom, none"):
        plots.apply_layout(fig, title=None, x_title=None, y_title=None, legend="left")


def test_house_template_cycles_okabe_ito_and_leaves_plotlys_templates_alone() -> None:
    import plotly.io as pio

    before = pio.templates["plotly_white"].layout.colorway
    fig = BUILDERS["loss_curve"]()
    assert list(fig.layout.template.layout.colorway) == list(OKABE_ITO)
    assert pio.templates["plotly_white"].layout.colorway == before != tuple(OKABE_ITO)


def test_figure_html_inlines_plotly_js_without_remote_scripts() -> None:
    html = plots.figure_html(BUILDERS["loss_curve"]()).decode("utf-8")
    assert "<html>" in html[:100].lower()
    assert "Plotly.newPlot" in html
    assert len(html) > 1_000_000  # the plotly.js bundle itself, not a link to it
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", html, flags=re.IGNORECASE)
    with pytest.raises(ValueError, match="plotly Figure"):
        plots.figure_html({"data": []})


def test_table_csv_keeps_a_meaningful_index_only() -> None:
    plain = pd.DataFrame({"a": [1, 2]})
    assert plots.table_csv(plain) == b"a\n1\n2\n"
    named = pd.DataFrame({"b1": [0.5]}, index=pd.Index(["a1"], name="layers_a"))
    assert plots.table_csv(named) == b"layers_a,b1\na1,0.5\n"


# --------------------------------------------------------------------------- calibration


def test_reliability_diagram_plots_the_bins_accuracy_and_skips_empty_bins() -> None:
    fig = plots.reliability_diagram(BINS, ROLES)
    teacher, student, diagonal = fig.data
    assert list(teacher.y) == [0.5, 0.9] and list(teacher.x) == [0.55, 0.85]
    assert list(student.y) == [0.2, 0.4, 1.0]
    assert [row[2] for row in teacher.customdata] == [4, 6]  # counts in the hover
    assert teacher.line.color == ROLE_COLORS["teacher"] and student.line.color == ROLE_COLORS["distilled"]
    assert list(diagonal.x) == [0, 1] and list(diagonal.y) == [0, 1]
    bars = plots.reliability_diagram(BINS, ROLES, kind="bar").data[0]
    assert np.allclose(bars.x, [0.5, 5 / 6]) and np.allclose(bars.width, [1 / 3, 1 / 3])


def test_reliability_diagram_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="bins is empty"):
        plots.reliability_diagram({})
    with pytest.raises(ValueError, match="lacks column.*accuracy"):
        plots.reliability_diagram({"t": BINS["teacher"].drop(columns="accuracy")})
    with pytest.raises(ValueError, match="'line' or 'bar'"):
        plots.reliability_diagram(BINS, kind="pie")


def test_confidence_histogram_uses_right_closed_bins() -> None:
    # bins of width 0.5: 0.5 is in (0, 0.5], 0.0 goes to the first bin, 0.75 and 1.0 to the second
    fig = plots.confidence_histogram({"teacher": np.array([0.0, 0.5, 0.75, 1.0])}, n_bins=2)
    assert list(fig.data[0].y) == [0.5, 0.5]
    assert list(fig.data[0].x) == [0.25, 0.75]
    with pytest.raises(ValueError, match=r"confidences in \[0, 1\]"):
        plots.confidence_histogram({"teacher": [0.5, 1.5]})


def test_metric_intervals_draws_value_and_interval_per_model_and_metric() -> None:
    fig = plots.metric_intervals(INTERVALS)
    points = [t for t in fig.data if t.mode == "markers"]
    segments = [t for t in fig.data if t.mode == "lines"]
    assert [(t.name, t.y[0]) for t in points] == [
        ("teacher", 0.05),
        ("student", 0.02),
        ("teacher", 0.4),
        ("student", 0.5),
    ]
    # the student's ECE lies below its own interval: drawn as is, not clipped into error bars
    assert list(segments[1].y) == [0.025, 0.06]
    assert [a.text for a in fig.layout.annotations] == ["ECE", "NLL"]
    with pytest.raises(ValueError, match="lacks column.*high"):
        plots.metric_intervals(INTERVALS.drop(columns="high"))


def test_posterior_comparison_plots_the_bayes_class() -> None:
    fig = plots.posterior_comparison(TRUE_POSTERIOR, MODEL_PROBS)
    # Bayes classes 0, 1, 0 (first on the tie)
    assert list(fig.data[0].x) == [0.9, 0.6, 0.5] and list(fig.data[0].y) == [0.8, 0.9, 0.7]
    with pytest.raises(ValueError, match="length mismatch.*2 rows, true_post has 3"):
        plots.posterior_comparison(TRUE_POSTERIOR, {"t": np.array([[0.5, 0.5]] * 2)})


# --------------------------------------------------------------------------- lesson


def test_soft_target_bars_carry_probabilities_and_check_them() -> None:
    fig = plots.soft_target_bars({"teacher": [0.7, 0.2, 0.1], "student": np.array([0.5, 0.3, 0.2])}, CLASSES)
    assert list(fig.data[0].x) == CLASSES and list(fig.data[1].y) == [0.5, 0.3, 0.2]
    with pytest.raises(ValueError, match="3 probabilities for 2 class names"):
        plots.soft_target_bars({"t": [0.7, 0.2, 0.1]}, ["a", "b"])
    with pytest.raises(ValueError, match="did you pass logits"):
        plots.soft_target_bars({"t": [2.0, -1.0, 0.5]}, CLASSES)


def test_logit_gradient_bars_colour_by_sign() -> None:
    fig = plots.logit_gradient_bars(np.array([0.3, -0.2, 0.0]), CLASSES, target=1)
    bars = fig.data[0]
    assert list(bars.y) == [0.3, -0.2, 0.0]
    positive, negative = bars.marker.color[0], bars.marker.color[1]
    assert positive != negative and bars.marker.color[2] == negative
    assert list(bars.marker.line.width) == [0, 2, 0]
    assert list(bars.customdata) == ["pushed down", "pushed up", "unchanged"]
    with pytest.raises(ValueError, match="class index in 0..2"):
        plots.logit_gradient_bars([0.1, 0.1, 0.1], CLASSES, target=3)


def test_loss_curve_marks_the_current_value_by_interpolation() -> None:
    fig = plots.loss_curve([1, 2, 4], {"KD": [0.1, 0.3, 0.2]}, "temperature", "loss", marker_x=3)
    curve, marker = fig.data
    assert list(curve.y) == [0.1, 0.3, 0.2]
    assert marker.x[0] == 3 and marker.y[0] == pytest.approx(0.25)
    assert fig.layout.shapes[0].x0 == 3  # the vertical line
    with pytest.raises(ValueError, match="2 values but x has 3"):
        plots.loss_curve([1, 2, 4], {"KD": [0.1, 0.3]}, "T", "loss")


def test_dkd_split_bars_stack_the_two_terms_with_shares() -> None:
    fig = plots.dkd_split_bars([0.1, 0.2], [0.3, 0.0], ["T=1", "T=4"])
    tckd, nckd = fig.data
    assert fig.layout.barmode == "stack"
    assert list(tckd.y) == [0.1, 0.2] and list(nckd.y) == [0.3, 0.0]
    assert tckd.customdata[0] == pytest.approx(0.25) and nckd.customdata[1] == 0.0
    assert list(plots.dkd_split_bars(0.5, 0.5).data[0].x) == ["setting 0"]
    with pytest.raises(ValueError, match="tckd has 2 values but nckd has 1"):
        plots.dkd_split_bars([0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match=">= 0"):
        plots.dkd_split_bars([-0.1], [0.3])


def test_class_similarity_heatmap_switches_to_diverging_for_signed_values() -> None:
    sequential = plots.class_similarity_heatmap(np.eye(3), CLASSES).data[0]
    diverging = plots.class_similarity_heatmap(np.eye(3) - 0.5, CLASSES).data[0]
    assert sequential.zmid is None and diverging.zmid == 0 and diverging.zmin == -0.5
    with pytest.raises(ValueError, match="square"):
        plots.class_similarity_heatmap(np.ones((2, 3)), CLASSES)


# --------------------------------------------------------------------------- representations


def test_cka_heatmap_uses_a_fixed_scale_and_dataframe_names() -> None:
    frame = pd.DataFrame([[1.0, 0.2], [0.4, np.nan]], index=["t1", "t2"], columns=["s1", "s2"])
    heat = plots.cka_heatmap(frame).data[0]
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)
    assert list(heat.x) == ["s1", "s2"] and list(heat.y) == ["t1", "t2"]
    assert np.isnan(heat.z[1][1]) and heat.texttemplate
    with pytest.raises(ValueError, match="row_names has 1 entries for 2"):
        plots.cka_heatmap(np.eye(2), ["only one"], ["a", "b"])


def test_projection_scatter_carries_sample_indices_in_customdata() -> None:
    points = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [3.0, 1.5]])
    hover = pd.DataFrame({"kl": [0.1, 0.2, 0.3, 0.4]})
    fig = plots.projection_scatter(
        points, [1, 0, 1, 2], "class", hover, indices=[10, 11, 12, 13], category_names=CLASSES
    )
    by_name = {t.name: t for t in fig.data}
    assert list(by_name) == ["cat", "dog", "car"]  # sorted by class index
    assert [row[0] for row in by_name["dog"].customdata] == [10, 12]
    assert [row[1] for row in by_name["dog"].customdata] == [0.1, 0.3]
    assert list(by_name["dog"].x) == [0.0, 2.0]
    assert by_name["dog"].marker.color == OKABE_ITO[1]
    continuous = plots.projection_scatter(points, np.array([0.1, 0.2, 0.3, 0.4]), "KL").data[0]
    assert [row[0] for row in continuous.customdata] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="color has 3 values but points has 4 rows"):
        plots.projection_scatter(points, [0, 1, 0], "class")
    with pytest.raises(ValueError, match="N×2"):
        plots.projection_scatter(np.ones((4, 3)), [0, 1, 0, 1], "class")


def test_projection_scatter_with_many_classes_uses_one_trace_with_per_point_colours() -> None:
    labels = np.arange(40) % 35
    fig = plots.projection_scatter(np.random.default_rng(0).normal(size=(40, 2)), labels, "class")
    (trace,) = fig.data
    assert trace.marker.color == tuple(plots.class_colors(35)[k] for k in labels)
    assert [row[0] for row in trace.customdata] == list(range(40))
    assert [row[-1] for row in trace.customdata[:2]] == ["0", "1"]  # the class, for the hover


class _FakeTensor:
    """Stands in for a torch tensor on a device (detach -> cpu -> numpy) without importing torch."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def detach(self) -> _FakeTensor:
        return self

    def cpu(self) -> _FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.array


def test_builders_accept_tensors() -> None:
    fig = plots.projection_scatter(_FakeTensor(np.eye(2)), _FakeTensor(np.array([0, 1])), "class")
    assert [list(t.x) for t in fig.data] == [[1.0], [0.0]]
    grid = plots.attribution_grid(_FakeTensor(IMAGES), {"teacher": _FakeTensor(MAPS["teacher"])})
    assert np.allclose(grid.data[1].z, MAPS["teacher"][0])


def test_concept_map_marks_concepts_by_region() -> None:
    fig = plots.concept_map(IMAGES[0], CONCEPTS)
    image, heat = fig.data[0], fig.data[1]
    assert np.asarray(image.z).shape == (4, 4, 3)
    assert np.allclose(heat.z, CONCEPTS.entropy_maps[0])
    foreground, background = (t for t in fig.data if t.type == "scatter")
    assert list(foreground.x) == [0.5] and list(foreground.y) == [0.5]  # region (0, 0) spans pixels 0..1
    assert len(background.x) == 0
    with pytest.raises(ValueError, match="out of range.*1 images"):
        plots.concept_map(IMAGES[0], CONCEPTS, index=1)
    with pytest.raises(ValueError, match="ConceptQuantification"):
        plots.concept_map(IMAGES[0], SimpleNamespace(entropy_maps=np.zeros((1, 2, 2))))


def test_tcav_bars_group_models_and_mark_significance() -> None:
    fig = plots.tcav_bars(TCAV)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["teacher", "student"]
    assert list(bars[0].y) == [0.8, 0.4] and list(bars[0].error_y.array) == [0.05, 0.1]
    assert list(bars[0].marker.opacity) == [1.0, 0.45]
    with pytest.raises(ValueError, match="lacks column.*p_value"):
        plots.tcav_bars(TCAV.drop(columns="p_value"))


# --------------------------------------------------------------------------- attributions


def test_attribution_grid_has_one_row_per_sample_and_a_shared_scale_per_column() -> None:
    fig = plots.attribution_grid(IMAGES, MAPS, row_labels=["a", "b"], masks=MASKS)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len([t for t in fig.data if t.type == "image"]) == 2 and len(heatmaps) == 4
    assert np.allclose(heatmaps[0].z, MAPS["teacher"][0])
    teacher_axis, student_axis = fig.layout.coloraxis2, fig.layout.coloraxis3
    assert (teacher_axis.cmin, teacher_axis.cmax, teacher_axis.cmid) == (-1.0, 1.0, 0.0)  # signed: symmetric
    assert (student_axis.cmin, student_axis.cmax) == (0.0, 2.0)  # non-negative: from 0
    assert [a.text for a in fig.layout.annotations[:3]] == ["input", "teacher", "student"]
    assert fig.layout.yaxis.title.text == "a"
    assert len([t for t in fig.data if t.type == "contour"]) == 6  # the mask on every panel


def test_attribution_grid_refuses_mismatched_maps() -> None:
    with pytest.raises(ValueError, match="1 maps but images has 2 samples"):
        plots.attribution_grid(IMAGES, {"t": np.zeros((1, 4, 4))})
    with pytest.raises(ValueError, match="maps are 3×3 but the images are 4×4"):
        plots.attribution_grid(IMAGES, {"t": np.zeros((2, 3, 3))})
    with pytest.raises(ValueError, match="maps is empty"):
        plots.attribution_grid(IMAGES, {})


def test_attribution_lines_draw_signal_and_maps() -> None:
    x = np.arange(10.0).reshape(2, 1, 5)
    maps = {"teacher": np.ones((2, 5)), "student": -np.ones((2, 1, 5))}
    fig = plots.attribution_lines(x, maps)
    assert [t.name for t in fig.data[:3]] == ["teacher", "student", "input"]
    assert list(fig.data[2].y) == [0, 1, 2, 3, 4] and list(fig.data[1].y) == [-1] * 5
    with pytest.raises(ValueError, match="single-channel"):
        plots.attribution_lines(np.ones((2, 3, 5)), maps)


def test_agreement_histogram_counts_finite_values_and_reports_undefined() -> None:
    fig = plots.agreement_histogram({"saliency": np.array([-1.0, -0.9, 0.95, 1.0, np.nan])}, n_bins=2)
    bars = fig.data[0]
    assert list(bars.y) == [2, 2] and list(bars.x) == [-0.5, 0.5]
    assert bars.name == "saliency (1 undefined)"
    assert fig.layout.shapes[0].x0 == pytest.approx(0.0125)  # the mean line


def test_localization_bars_and_chance_line() -> None:
    df = pd.DataFrame({"model": ["teacher"], "relevance_mass": [0.6]})
    fig = plots.localization_bars(df, chance=0.2)
    assert list(fig.data[0].y) == [0.6] and fig.layout.shapes[0].y0 == 0.2
    with pytest.raises(ValueError, match="relevance_mass and/or pointing_game"):
        plots.localization_bars(pd.DataFrame({"model": ["t"], "accuracy": [0.5]}))


# --------------------------------------------------------------------------- divergence


def test_divergence_scatter_puts_sample_indices_in_customdata() -> None:
    fig = plots.divergence_scatter(DIVERGENCE)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name) == ["both right", "teacher right only", "both wrong"]  # the analysis' order
    assert [row[0] for row in by_name["both right"].customdata] == [2, 0]
    assert list(by_name["both right"].y) == [0.7, 0.01] and list(by_name["both right"].x) == [0.6, 0.95]
    assert by_name["both wrong"].marker.color == plots.CATEGORY_COLORS["both wrong"]
    assert sum(len(t.customdata) for t in fig.data) == len(DIVERGENCE)
    by_class = plots.divergence_scatter(DIVERGENCE, color="teacher_pred", class_names=CLASSES)
    assert [t.name for t in by_class.data] == CLASSES
    with pytest.raises(ValueError, match="lacks column.*kl"):
        plots.divergence_scatter(DIVERGENCE.drop(columns="kl"))


def test_probability_comparison_marks_the_true_class() -> None:
    fig = plots.probability_comparison([0.7, 0.2, 0.1], [0.3, 0.6, 0.1], CLASSES, true_class=1)
    assert list(fig.data[0].y) == [0.7, 0.2, 0.1] and list(fig.data[1].y) == [0.3, 0.6, 0.1]
    assert fig.data[0].marker.color == ROLE_COLORS["teacher"]
    assert "true" in fig.layout.xaxis.ticktext[1] and "true" not in fig.layout.xaxis.ticktext[0]
    with pytest.raises(ValueError, match="3 probabilities for 2 class names"):
        plots.probability_comparison([0.7, 0.2, 0.1], [0.5, 0.5], ["a", "b"])


def test_decision_boundary_draws_both_models_regions() -> None:
    fig = plots.decision_boundary(GRID, np.array([[0.0, 0.0], [0.5, 0.5]]), [0, 1])
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert np.array_equal(heatmaps[0].z, GRID.teacher_class) and np.array_equal(heatmaps[1].z, GRID.student_class)
    stars = [t for t in fig.data if t.name == "explained sample"]
    assert [(s.x[0], s.y[0]) for s in stars] == [(0.1, 0.2)] * 2
    with pytest.raises(ValueError, match="class indices in 0..1"):
        plots.decision_boundary(GRID, np.zeros((2, 2)), [0, 2])
    with pytest.raises(ValueError, match="DecisionGrid"):
        plots.decision_boundary(SimpleNamespace(x=[0]), np.zeros((2, 2)), [0, 1])


# --------------------------------------------------------------------------- runs and home


def test_learning_curves_use_epochs_and_name_available_metrics_on_error() -> None:
    fig = plots.learning_curves({"teacher": HISTORY, "kd": HISTORY[:1]}, "test_accuracy", {"kd": "distilled"})
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[0].y) == [0.5, 0.7]
    assert fig.data[1].line.color == ROLE_COLORS["distilled"]
    with pytest.raises(ValueError, match="not in histories.*available: loss, loss/ce"):
        plots.learning_curves({"teacher": HISTORY}, "val_agreement")
    with pytest.raises(ValueError, match="histories is empty"):
        plots.learning_curves({}, "loss")


def test_loss_term_curves_draw_every_term_and_the_total() -> None:
    fig = plots.loss_term_curves(HISTORY)
    assert [t.name for t in fig.data] == ["ce", "kd", "total"]
    assert list(fig.data[1].y) == [0.5, 0.4] and list(fig.data[2].y) == [2.0, 1.0]
    assert [t.name for t in plots.loss_term_curves(HISTORY, ["loss/kd"]).data] == ["kd", "total"]
    with pytest.raises(ValueError, match="unknown loss term.*nckd.*has: ce, kd"):
        plots.loss_term_curves(HISTORY, ["nckd"])


def test_headline_bars_use_role_colours_and_std_columns() -> None:
    frame = HEADLINE.assign(test_accuracy_std=[0.01, 0.02, 0.03])
    fig = plots.headline_bars(frame, ["test_accuracy", "test_ece"])
    accuracy = [t for t in fig.data if t.xaxis == "x"]
    assert [t.y[0] for t in accuracy] == [0.9, 0.8, 0.85]
    assert [t.marker.color for t in accuracy] == [ROLE_COLORS[r] for r in ("teacher", "scratch", "distilled")]
    assert [t.error_y.array[0] for t in accuracy] == [0.01, 0.02, 0.03]
    assert [t.error_y.array for t in fig.data if t.xaxis == "x2"] == [None] * 3
    with pytest.raises(ValueError, match="one row per model.*duplicated: kd"):
        plots.headline_bars(pd.concat([HEADLINE, HEADLINE.tail(1)]))


def test_kd_diagram_softens_with_the_temperature() -> None:
    sharp = plots.kd_diagram(temperature=1.0).data[0].customdata
    soft = plots.kd_diagram(temperature=8.0).data[0].customdata
    assert sum(sharp) == pytest.approx(1.0) and max(soft) < max(sharp)
    with pytest.raises(ValueError, match="positive"):
        plots.kd_diagram(temperature=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plots.kd_diagram(alpha=1.5)
