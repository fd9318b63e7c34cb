"""The dark-knowledge lesson page: real teacher logits re-softened by a slider, every section drawn, URL presets."""

from __future__ import annotations

import base64
import json

import numpy as np
from conftest import app_page

PAGE = "pages/dark_knowledge.py"


def figures(at) -> dict[str, dict]:
    """Plotly specs of the page's charts by title."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {spec["layout"].get("title", {}).get("text", ""): spec for spec in specs}


def soft_target_bars(at) -> dict[str, list[float]]:
    """Series of the soft-target chart (the page's second chart, after the input)."""
    spec = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert spec["layout"]["title"]["text"].startswith("True class")
    return {trace["name"]: values(trace["y"]) for trace in spec["data"]}


def values(encoded) -> list[float]:
    """Plotly's JSON array, plain or binary-encoded ({"dtype": "f8", "bdata": base64})."""
    if isinstance(encoded, dict):
        return np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=np.dtype(encoded["dtype"])).tolist()
    return list(encoded)


def test_default_pair_shows_every_section(app_env):
    at = app_page(PAGE).run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 9  # input, soft targets, similarity, gradient, loss curve, 3 DKD, LS
    titles = list(figures(at))
    assert any(t.startswith("Teacher's mean soft target per true class") for t in titles)
    assert any(t.startswith("Loss terms as T moves") for t in titles)
    assert [m.label for m in at.metric] == ["(1−α)·CE(y, p_s)", "α·T²·KL(p_t^T ‖ p_s^T)", "total loss"]


def test_temperature_slider_resoftens_the_teachers_logits(app_env):
    at = app_page(PAGE, dataset="gaussians", dk_index="3", dk_T="1.0").run()
    assert not at.exception and not at.error
    before = soft_target_bars(at)
    assert set(before) == {"Teacher, T = 1", "Distilled student, T = 1"}  # T = 1: a single teacher series
    at.slider(key="dk_T").set_value(8.0).run()
    after = soft_target_bars(at)
    assert set(after) == {"Teacher, T = 1", "Teacher, T = 8", "Distilled student, T = 8"}
    hard, soft = after["Teacher, T = 1"], after["Teacher, T = 8"]
    assert hard == before["Teacher, T = 1"]
    assert max(soft) < max(hard)  # a higher temperature flattens the teacher's distribution
    assert at.query_params["dk_T"] == "8.0"


def test_url_presets_round_trip(app_env):
    at = app_page(PAGE, dataset="gaussians", dk_index="17", dk_alpha="0.5").run()
    assert at.number_input(key="dk_index").value == 17
    assert at.slider(key="dk_alpha").value == 0.5
    assert "Sample 17" in figures(at)
    at.number_input(key="dk_index").set_value(42).run()
    assert at.query_params["dk_index"] == "42"
    assert "Sample 42" in figures(at)


def test_bad_url_values_fall_back_to_defaults(app_env):
    default = app_page(PAGE, dataset="gaussians").run()
    at = app_page(PAGE, dataset="gaussians", dk_T="99", dk_index="-3").run()
    assert not at.exception and not at.error
    assert at.slider(key="dk_T").value == default.slider(key="dk_T").value == 4.0
    assert at.number_input(key="dk_index").value == default.number_input(key="dk_index").value


def test_random_button_picks_an_instructive_sample(app_env):
    from kdviz.store import RunStore
    from kdviz.views.lesson import instructive_samples
    from kdviz.workspace import Workspace

    ws = Workspace(RunStore(app_env))
    teacher = ws.default_selection("gaussians").teacher
    candidates = instructive_samples(ws.logits(teacher), ws.labels(teacher), 50).tolist()
    at = app_page(PAGE, dataset="gaussians", dk_index="0").run()
    assert at.number_input(key="dk_index").value == 0
    at.button[0].click().run()
    index = at.number_input(key="dk_index").value
    assert index in candidates
    assert f"Sample {index}" in figures(at)


def test_lesson_mode_hides_advanced_controls_and_two_classes_have_no_nckd(app_env):
    at = app_page(PAGE, dataset="moons", lesson="1").run()
    assert not at.exception and not at.error
    assert [t.key for t in at.toggle] == []
    assert any("NCKD is always 0" in i.value for i in at.info)
