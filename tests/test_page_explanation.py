"""AppTest of the Explanation-guided KD page with the shipped shortcut experiment."""

from __future__ import annotations

import time

from conftest import app_page, titled
from streamlit.testing.v1 import AppTest

PAGE = "pages/explanation.py"


def ok(at: AppTest) -> None:
    assert not at.exception
    assert not [e.value for e in at.error]


def test_default_shows_comparison_tradeoff_maps_and_cards(app_env) -> None:
    at = app_page(PAGE).run()
    ok(at)
    accuracy = titled(at, "Accuracy with the cue random")
    names = {trace["name"] for trace in accuracy["data"]}
    assert {"Teacher", "Scratch student", "KD student", "Explanation-KD λ=1", "Explanation-KD λ=10"} <= names
    assert titled(at, "Where the models look")
    tradeoff = titled(at, "KD (λ = 0) and explanation-KD against λ — chosen λ = 1")
    assert tradeoff["layout"]["xaxis"]["ticktext"] == ["0 (plain KD)", "1", "3", "10"]
    maps = titled(at, "Grad-CAM of the true class — explanation-KD λ = 1, seed 0")
    assert len([t for t in maps["data"] if t["type"] == "heatmap"]) == 4 * 4  # 4 images × 4 models
    comparison, predictions = at.dataframe[0].value, at.dataframe[1].value
    assert comparison["model"].tolist()[:3] == ["Teacher", "Scratch student", "KD student"]
    assert "±" in comparison["shifted-test accuracy"].iloc[2]
    assert predictions["image"].tolist() == [0, 1, 2, 3]
    assert "kdviz experiment shortcut" in " ".join(m.value for m in at.markdown)


def test_lambda_slider_changes_the_maps_and_the_url(app_env) -> None:
    at = app_page(PAGE).run()
    before = titled(at, "Grad-CAM of the true class")
    at.select_slider(key="xai_lambda").set_value(10.0).run()
    ok(at)
    after = titled(at, "Grad-CAM of the true class — explanation-KD λ = 10, seed 0")
    last = [t for t in after["data"] if t["type"] == "heatmap"][3]["z"]
    assert last != [t for t in before["data"] if t["type"] == "heatmap"][3]["z"]
    assert at.query_params["xai_lambda"] == "10.0"
    assert titled(at, "KD (λ = 0) and explanation-KD against λ — chosen λ = 10")
    at.select_slider(key="xai_lambda").set_value(0.0).run()
    ok(at)
    maps = titled(at, "Grad-CAM of the true class — explanation-KD λ = 0")
    assert len([t for t in maps["data"] if t["type"] == "heatmap"]) == 4 * 3  # no separate explanation student


def test_url_preset_and_disagreement_pick(app_env) -> None:
    at = app_page(PAGE, xai_lambda="3", xai_seed="1", xai_pick="where KD and explanation-KD disagree").run()
    ok(at)
    assert at.select_slider(key="xai_lambda").value == 3.0
    assert at.selectbox(key="xai_seed").value == 1
    assert titled(at, "Grad-CAM of the true class — explanation-KD λ = 3, seed 1")
    predictions = at.dataframe[1].value
    assert (predictions["KD predicts"] != predictions["Explanation-KD λ=3 predicts"]).all()
    assert at.query_params["xai_seed"] == "1" and at.query_params["xai_lambda"] == "3.0"


def test_lesson_mode_hides_advanced_controls(app_env) -> None:
    at = app_page(PAGE, lesson="1").run()
    ok(at)
    assert "xai_seed" not in {box.key for box in at.selectbox}
    assert "xai_pick" not in {radio.key for radio in at.radio}
    assert titled(at, "Grad-CAM of the true class — explanation-KD λ = 1, seed 0")


def test_run_section_trains_the_tiny_preset_and_offers_its_results(app_env) -> None:
    at = app_page(PAGE).run()
    ok(at)
    assert at.radio(key="xai_preset").value == "tiny"
    assert "xai_source" not in {r.key for r in at.radio}  # only shipped results so far: no choice
    at.button(key="xai_run").click().run()
    ok(at)
    deadline = time.monotonic() + 120
    while "xai_source" not in {r.key for r in at.radio} and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    ok(at)
    source = at.radio(key="xai_source")
    assert list(source.options) == ["shipped", "your run (tiny)"] and source.value == "your run (tiny)"
    note = " ".join(s.value for s in at.success)
    assert "your run (tiny)" in note and ("Trained" in note or "already stored" in note)
    tradeoff = titled(at, "KD (λ = 0) and explanation-KD against λ")
    assert tradeoff["layout"]["xaxis"]["ticktext"] == ["0 (plain KD)", "1"]  # the tiny preset's sweep
    comparison = at.dataframe[0].value
    assert comparison["runs"].tolist() == [1, 2, 2, 2]  # teacher; scratch, kd, explanation-KD λ=1 over 2 seeds
    assert titled(at, "Grad-CAM of the true class — explanation-KD λ = 1, seed 0")
    source.set_value("shipped").run()
    ok(at)
    assert titled(at, "KD (λ = 0) and explanation-KD against λ")["layout"]["xaxis"]["ticktext"][-1] == "10"


def test_default_preset_from_the_url_is_already_stored(app_env) -> None:
    at = app_page(PAGE, xai_preset="default").run()
    ok(at)
    assert at.radio(key="xai_preset").value == "default"
    assert at.query_params["xai_preset"] == "default"
    assert any("they are the shipped sample runs" in c.value for c in at.caption)
    at.radio(key="xai_preset").set_value("tiny").run()
    assert at.query_params["xai_preset"] == "tiny"


def test_lesson_mode_hides_the_run_section(app_env) -> None:
    at = app_page(PAGE, lesson="1").run()
    ok(at)
    assert "xai_run" not in {b.key for b in at.button}
    assert "Run it here" not in [h.value for h in at.subheader]
