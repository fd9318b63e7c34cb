"""AppTest of the Divergence inspector page with the sample models."""

from __future__ import annotations

import pytest
from conftest import app_page, errors
from conftest import figures as plotly_figures

from kdviz.samples import sample_roles

PAGE = "pages/divergence.py"


@pytest.mark.slow  # shapes: generating the dataset and embedding its training images takes 10-20 s on 2 busy cores
def test_default_pair_shows_scatter_table_and_drill_down(app_env) -> None:
    at = app_page(PAGE).run()
    assert not at.exception
    assert not errors(at)
    figures = plotly_figures(at)
    scatter = figures[0]
    assert scatter["layout"]["xaxis"]["title"]["text"].startswith("Teacher confidence")
    # every test sample is a point carrying its index, coloured by category
    indices = [point[0] for trace in scatter["data"] for point in trace["customdata"]]
    assert len(indices) == len(set(indices)) > 100
    assert {trace["name"] for trace in scatter["data"]} <= {
        "both right",
        "teacher right only",
        "student right only",
        "both wrong",
    }
    assert len(at.dataframe) >= 2  # samples and neighbours
    assert len(figures) >= 4  # scatter, probabilities, attributions, neighbours
    assert at.selectbox(key="div_student").value == "distilled"
    assert any("Sample #" in m.value for m in at.markdown)


def test_picking_a_sample_and_axes_changes_the_view(app_env) -> None:
    at = app_page(PAGE, dataset="digits").run()
    assert not at.exception and not errors(at)
    first = [m.value for m in at.markdown if "Sample #" in m.value][0]
    options = at.selectbox(key="div_sample").options
    at.selectbox(key="div_sample").select_index(len(options) - 1).run()
    assert not at.exception and not errors(at)
    second = [m.value for m in at.markdown if "Sample #" in m.value][0]
    assert second != first
    assert at.query_params["div_sample"] == str(at.selectbox(key="div_sample").value)
    at.selectbox(key="div_axes").set_value("true-class probability").run()
    assert plotly_figures(at)[0]["layout"]["yaxis"]["title"]["text"] == "Student probability of the true class"
    at.multiselect(key="div_categories").set_value(["both right"]).run()
    scatter = plotly_figures(at)[0]
    assert [trace["name"] for trace in scatter["data"]] == ["both right"]


def test_url_preset_round_trip_and_points_data(app_env) -> None:
    roles = sample_roles("moons")
    at = app_page(PAGE, dataset="moons", div_sample="7", div_student="scratch").run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="div_sample").value == 7
    assert at.selectbox(key="div_student").value == "scratch"
    assert at.query_params["div_sample"] == "7"
    assert roles["scratch"]
    titles = [fig["layout"]["title"]["text"] for fig in plotly_figures(at)]
    assert any(title.startswith("Decision regions") for title in titles)
    assert "grad_cam" not in at.selectbox(key="div_method").options  # no conv layer in an MLP


@pytest.mark.parametrize("bad", ["-3", "abc"])
def test_bad_sample_in_url_falls_back(app_env, bad: str) -> None:
    at = app_page(PAGE, dataset="moons", div_sample=bad).run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="div_sample").index == 0  # the most divergent sample


def test_lesson_mode_hides_advanced_controls(app_env) -> None:
    at = app_page(PAGE, dataset="moons", lesson="1").run()
    assert not at.exception and not errors(at)
    keys = {widget.key for widget in at.selectbox}
    assert "div_student" in keys and "div_sample" in keys
    assert "div_method" not in keys and "div_class_filter" not in keys
    assert not [s for s in at.slider if s.key == "div_k"]


def test_slices_section_filters_the_scatter_and_compares_students(app_env) -> None:
    at = app_page(PAGE, dataset="moons").run()
    assert not at.exception and not errors(at)
    assert any(h.value.startswith("Slices") for h in at.subheader)
    assert at.selectbox(key="div_slice_source").options == [
        "metadata rules", "teacher feature clusters", "student feature clusters",
    ]  # fmt: skip
    bars = next(f for f in plotly_figures(at) if "close the gap" in f["layout"]["title"]["text"])
    assert {trace["name"] for trace in bars["data"]} == {"Scratch student", "Distilled student"}
    assert bars["data"][0]["x"][0] == "all"
    before = plotly_figures(at)[0]
    total = sum(len(trace["customdata"]) for trace in before["data"])
    options = at.selectbox(key="div_slice").options
    assert options[0] == "all test samples" and len(options) >= 2
    at.selectbox(key="div_slice").select_index(1).run()
    assert not at.exception and not errors(at)
    assert at.query_params["div_slice"] == "R1"
    after = plotly_figures(at)[0]
    shown = sum(len(trace["customdata"]) for trace in after["data"])
    assert 0 < shown < total
    at.selectbox(key="div_slice_source").set_value("teacher feature clusters").run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="div_slice").value == "all"  # R1 is no slice of the clusters
    at.toggle(key="div_slice_epochs").set_value(True).run()
    lines = next(f for f in plotly_figures(at) if "checkpoints" in f["layout"]["title"]["text"])
    assert lines["data"][0]["name"] == "all test samples"
