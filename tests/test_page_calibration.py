"""The calibration page: reliability, histograms and metrics; bins, scaling, the true posterior and URL presets."""

from __future__ import annotations

import json

from conftest import app_page

PAGE = "pages/calibration.py"


def specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def titles(at) -> list[str]:
    return [spec["layout"].get("title", {}).get("text", "") for spec in specs(at)]


def test_default_pair_shows_diagrams_and_metrics(app_env):
    at = app_page(PAGE).run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    shown = titles(at)
    assert shown[0] == "Reliability (test split, 15 bins)"
    assert shown[1:3] == ["Confidence histogram", "Calibration metrics with bootstrap intervals"]
    reliability = specs(at)[0]
    names = [trace["name"] for trace in reliability["data"]]
    assert names[:2] == ["Teacher", "Scratch student"] and "perfect calibration" in names
    metrics = at.dataframe[0].value
    assert list(metrics["model"]) == ["Teacher", "Scratch student", "Distilled student", "Self-distilled student"]
    assert {"ece", "ece 95% CI", "mce", "nll", "brier"} <= set(metrics.columns)
    assert any("does not know its Bayes posterior" in i.value for i in at.info)


def test_bins_and_temperature_scaling_change_the_view(app_env):
    at = app_page(PAGE, dataset="gaussians").run()
    assert not at.exception and not at.error
    ece_15 = at.dataframe[0].value["ece"].tolist()
    at.slider(key="cal_bins").set_value(5).run()
    assert titles(at)[0] == "Reliability (test split, 5 bins)"
    assert at.dataframe[0].value["ece"].tolist() != ece_15
    assert at.query_params["cal_bins"] == "5"
    assert not at.metric  # fitted temperatures appear only with scaling on
    at.toggle(key="cal_scaled").set_value(True).run()
    assert not at.exception and not at.error
    assert titles(at)[0] == "Reliability (test split, 5 bins, temperature-scaled on val)"
    assert [m.label for m in at.metric] == ["Teacher", "Scratch student", "Distilled student"]
    assert all(m.value.startswith("T = ") for m in at.metric)


def test_gaussians_compares_models_with_the_true_posterior(app_env):
    at = app_page(PAGE, dataset="gaussians").run()
    assert "Model confidence vs the true posterior" in titles(at)
    posterior = at.dataframe[-1].value
    assert list(posterior["role"]) == ["Teacher", "Scratch student", "Distilled student"]
    assert (posterior["KL(truth ‖ model)"] >= 0).all()
    assert posterior["over-confidence"].notna().all()  # gaussians has ambiguous points


def test_url_presets_round_trip_and_lesson_mode(app_env):
    at = app_page(PAGE, dataset="gaussians", cal_bins="10", cal_scaled="True").run()
    assert at.slider(key="cal_bins").value == 10
    assert at.toggle(key="cal_scaled").value is True
    assert at.query_params["cal_bins"] == "10" and at.query_params["cal_scaled"] == "True"
    assert [s.key for s in at.selectbox if s.key == "cal_split"] == ["cal_split"]
    lesson = app_page(PAGE, dataset="gaussians", lesson="1", cal_bins="99").run()
    assert not lesson.exception and not lesson.error
    assert lesson.slider(key="cal_bins").value == 15  # out of range: the default
    assert not [s for s in lesson.selectbox if s.key == "cal_split"]  # advanced controls hidden
