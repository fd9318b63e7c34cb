"""AppTest of the Translation page: the shipped seqkd table, the method chart, and outputs side by side."""

from __future__ import annotations

from conftest import app_page, errors, titled

from kdviz.views import translation as tv

PAGE = "pages/translation.py"


def test_page_shows_the_shipped_experiment(app_env) -> None:
    result = tv.load_results()
    assert result is not None, "sample_models/seqkd/results.json is missing"
    at = app_page(PAGE).run()
    assert not at.exception and not errors(at)
    summary = at.dataframe[0].value
    assert list(summary["model"]) == ["teacher", *[row["method"] for row in result["summary"]]]
    assert len(at.dataframe[1].value) == len(result["tests"])
    titled(at, "Students by method")
    tokens = titled(at, "Each model's output")
    labels = tokens["data"][0]["y"]
    assert labels[:3] == ["reference (sampled)", "teacher (beam)", "scratch (greedy)"]


def test_choosing_another_input_shows_its_outputs(app_env) -> None:
    result = tv.load_results()
    at = app_page(PAGE).run()
    at.selectbox(key="translation_input").set_value(1).run()
    assert not at.exception and not errors(at)
    cells = titled(at, "Each model's output")["data"][0]["text"]
    assert cells[0][: len(result["examples"]["inputs"][1]["reference"])] == result["examples"]["inputs"][1]["reference"]
