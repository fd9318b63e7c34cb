"""AppTest of the Representations & concepts page with the sample models."""

from __future__ import annotations

import json

from conftest import app_page, errors, figures, titled

PAGE = "pages/representations.py"


def test_default_pair_shows_cka_and_projections(app_env) -> None:
    at = app_page(PAGE).run()
    assert not at.exception and not errors(at)
    cka = titled(at, "Linear CKA: teacher × distilled student")
    assert cka["data"][0]["y"] == ["body.block1", "body.block2", "body.block3", "body.pool"]
    assert titled(at, "Teacher: body.pool")["layout"]["xaxis"]["title"]["text"] == "PC1"
    student = titled(at, "Distilled student: body.pool")
    assert sum(len(trace["customdata"]) for trace in student["data"]) == 500  # one point per sample
    assert {trace["name"] for trace in student["data"]} == {
        "circle",
        "square",
        "triangle",
        "cross",
        "ring",
        "star",
        "crescent",
        "bar",
    }


def test_checkpoint_slider_and_colouring_change_the_view(app_env) -> None:
    at = app_page(PAGE, dataset="moons").run()
    assert not at.exception and not errors(at)
    before = titled(at, "Linear CKA")["data"][0]["z"]
    at.select_slider(key="rep_epoch").set_value(1).run()
    assert not at.exception and not errors(at)
    after = titled(at, "Linear CKA")
    assert "epoch 1" in after["layout"]["title"]["text"] and after["data"][0]["z"] != before
    at.radio(key="rep_color").set_value("disagreement").run()
    names = {trace["name"] for trace in titled(at, "Teacher: body.hidden2")["data"]}
    assert names <= {"both right", "teacher right only", "student right only", "both wrong"} and names


def test_url_preset_round_trip(app_env) -> None:
    at = app_page(PAGE, dataset="moons", rep_student="scratch", rep_epoch="25").run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="rep_student").value == "scratch"
    assert at.select_slider(key="rep_epoch").value == 25
    assert "Linear CKA: teacher × scratch student at epoch 25" in titled(at, "Linear CKA")["layout"]["title"]["text"]
    at.select_slider(key="rep_epoch").set_value(50).run()
    assert at.query_params["rep_epoch"] == "50"


def test_points_explain_what_is_missing_and_tcav_runs(app_env) -> None:
    at = app_page(PAGE, dataset="moons", rep_tcav="1").run()
    assert not at.exception and not errors(at)
    assert any("Concept maps need images" in info.value for info in at.info)
    tcav = titled(at, "TCAV scores for class")
    models = {trace["name"] for trace in tcav["data"] if trace["type"] == "bar"}
    assert models == {"Teacher", "Scratch student", "Distilled student"}
    # the students (mlp-8) have one hidden layer, which feeds the linear head: TCAV degenerates, and says so
    assert any("linear in every feature layer" in info.value for info in at.info)


def test_lesson_mode_hides_advanced_controls(app_env) -> None:
    at = app_page(PAGE, dataset="moons", lesson="1").run()
    assert not at.exception and not errors(at)
    keys = {widget.key for widget in at.selectbox} | {widget.key for widget in at.toggle}
    assert "rep_layer_t" not in keys and "rep_debiased" not in keys and "rep_student" in keys
    assert titled(at, "Linear CKA")


def test_concepts_on_digits_on_demand(app_env) -> None:
    at = app_page(PAGE, dataset="digits", rep_n_images="1").run()
    assert not at.exception and not errors(at)
    assert not [f for f in figures(at) if "entropy per region" in json.dumps(f["layout"])]
    at.toggle(key="rep_concepts").set_value(True).run()
    assert not at.exception and not errors(at)
    maps = [f for f in figures(at) if "entropy per region" in json.dumps(f["layout"])]
    assert len(maps) == 4  # teacher, scratch, distilled, self
    assert len(at.dataframe) >= 1
