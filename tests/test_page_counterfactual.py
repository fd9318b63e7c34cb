"""AppTest of the Divergence page's Counterfactuals section: shapes edits (with Grad-CAM and a sweep behind
a button) and feature sliders with the nearest counterfactual on 2-D point data."""

from __future__ import annotations

import pytest
from conftest import app_page, errors, figures, titled


def _titles(at) -> list[str]:
    return [f["layout"].get("title", {}).get("text", "") for f in figures(at)]


@pytest.mark.slow  # shapes: rendering the dataset and the drill-down's neighbour search take 10-20 s on 2 cores
def test_shapes_edit_then_explain(app_env) -> None:
    at = app_page("pages/divergence.py", dataset="shapes", div_sample="3", div_cf_factor="size").run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="div_cf_factor").value == "size"
    # before the button: the edit and its probabilities, no Grad-CAM and no sweep
    assert "The sample and its edit" in _titles(at)
    assert not [t for t in _titles(at) if t.startswith("Sweeping")]
    slider = at.slider(key="div_cf_value_size_3")
    slider.set_value(6.0).run()
    assert not at.exception and not errors(at)
    bars = titled(at, "Probability of the true class, before and after")
    assert [trace["name"] for trace in bars["data"]] == ["original", "edited"]
    models = bars["data"][0]["x"]
    assert models[0] == "Teacher" and set(models) == {
        "Teacher",
        "Distilled student",
        "Scratch student",
        "Self-distilled student",
    }
    at.button(key="div_cf_explain").click().run()
    assert not at.exception and not errors(at)
    sweep = titled(at, "Sweeping size")
    assert {trace["name"] for trace in sweep["data"]} >= {"Teacher", "Distilled student"}
    assert titled(at, "Grad-CAM of the true class")
    assert any("leaves the teacher" in m.value or "stays within" in m.value for m in at.markdown)
    assert at.query_params["div_cf_factor"] == "size"


def test_points_sliders_and_nearest_counterfactual(app_env) -> None:
    at = app_page("pages/divergence.py", dataset="moons", div_sample="7").run()
    assert not at.exception and not errors(at)
    sliders = {s.key: s for s in at.slider if s.key.startswith("div_cf_feature_")}
    assert set(sliders) == {"div_cf_feature_0_7", "div_cf_feature_1_7"}
    assert titled(at, "Probability of the true class: the sample and the edited point")
    assert any("Nearest counterfactual" in m.value for m in at.markdown)
    before = [m.value for m in at.markdown if "Nearest counterfactual" in m.value][0]
    sliders["div_cf_feature_0_7"].set_value(sliders["div_cf_feature_0_7"].min).run()
    assert not at.exception and not errors(at)
    after = [m.value for m in at.markdown if "Nearest counterfactual" in m.value][0]
    assert after != before


def test_other_data_is_told_what_counterfactuals_need(app_env) -> None:
    at = app_page("pages/divergence.py", dataset="digits").run()
    assert not at.exception and not errors(at)
    assert any("Counterfactual edits work on `shapes`" in info.value for info in at.info)
    assert not [s for s in at.slider if s.key.startswith("div_cf_")]
