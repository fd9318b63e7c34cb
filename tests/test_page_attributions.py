"""AppTest of the Attributions page with the sample models."""

from __future__ import annotations

from conftest import app_page, errors, figures, titled

PAGE = "pages/attributions.py"


def row_titles(fig: dict) -> list[str]:
    """Per-sample row labels: the y-axis titles that start with the sample number."""
    axes = [(int(key[5:] or 1), axis) for key, axis in fig["layout"].items() if key.startswith("yaxis")]
    texts = [axis.get("title", {}).get("text", "") for _, axis in sorted(axes, key=lambda pair: pair[0])]
    return [text for text in texts if text.startswith("#")]


def test_default_pair_shows_maps_agreement_and_localisation(app_env) -> None:
    at = app_page(PAGE).run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="att_method").value == "grad_cam"
    grid = titled(at, "Grad-CAM maps")
    heatmaps = [trace for trace in grid["data"] if trace["type"] == "heatmap"]
    assert len(heatmaps) == 6 * 4  # 6 samples × teacher, scratch, distilled, self
    agreement = titled(at, "Agreement with the teacher's Grad-CAM maps (200 samples)")
    assert {trace["name"].split(" (")[0] for trace in agreement["data"]} == {
        "Scratch student",
        "Distilled student",
        "Self-distilled student",
    }
    localisation = titled(at, "Localisation against the ground-truth mask")
    assert {trace["name"] for trace in localisation["data"]} == {
        "Teacher",
        "Scratch student",
        "Distilled student",
        "Self-distilled student",
    }
    assert len(at.dataframe) == 2  # agreement and localisation tables


def test_method_and_sample_choice_change_the_maps(app_env) -> None:
    at = app_page(PAGE, dataset="digits", att_n="3").run()
    assert not at.exception and not errors(at)
    before = row_titles(titled(at, "Grad-CAM maps"))
    assert len(before) == 3 and before[0].startswith("#0 ")
    at.radio(key="att_pick").set_value("where they disagree").run()
    assert not at.exception and not errors(at)
    after = row_titles(titled(at, "Grad-CAM maps"))
    assert after != before and "(disagree)" in after[0]
    at.selectbox(key="att_method").set_value("saliency").run()
    assert not at.exception and not errors(at)
    assert titled(at, "Saliency maps")
    assert at.query_params["att_method"] == "saliency"


def test_signals_and_points_draw_lines_and_bars(app_env) -> None:
    at = app_page(PAGE, dataset="mnist1d", att_n="2").run()
    assert not at.exception and not errors(at)
    lines = titled(at, "Grad-CAM maps")
    assert {trace["type"] for trace in lines["data"]} == {"scatter"}
    at = app_page(PAGE, dataset="moons", att_n="2").run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="att_method").value == "saliency"  # no conv layer: no Grad-CAM
    bars = titled(at, "Saliency maps")
    assert {trace["type"] for trace in bars["data"]} >= {"bar"}
    assert any("no ground-truth foreground masks" in info.value for info in at.info)


def test_lesson_mode_and_a_teacher_alone(app_env) -> None:
    at = app_page(PAGE, dataset="moons", lesson="1", att_n="2").run()
    assert not at.exception and not errors(at)
    assert "att_target" not in {widget.key for widget in at.radio}
    assert titled(at, "Saliency maps")
    at = app_page(PAGE, dataset="moons", att_n="2").run()
    for role in ("scratch", "distilled", "self"):  # unselect every student in the shared sidebar
        if role in {box.key for box in at.selectbox}:
            at.selectbox(key=role).set_value(None)
    at.run()
    assert not at.exception and not errors(at)
    assert titled(at, "Saliency maps")
    assert any("Only a teacher is selected" in info.value for info in at.info)


def test_url_preset_round_trip_and_slow_methods_wait(app_env) -> None:
    at = app_page(PAGE, dataset="moons", att_method="integrated_gradients", att_start="10", att_n="2").run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="att_method").value == "integrated_gradients"
    assert at.number_input(key="att_start").value == 10
    rows = row_titles(titled(at, "Integrated gradients maps"))
    assert rows[0].startswith("#10 ") and rows[1].startswith("#11 ")
    assert not [f for f in figures(at) if f["layout"].get("title", {}).get("text", "").startswith("Agreement")]
    at.toggle(key="att_agree").set_value(True).run()
    assert titled(at, "Agreement with the teacher's Integrated gradients maps")
    assert at.query_params["att_agree"] == "True"
