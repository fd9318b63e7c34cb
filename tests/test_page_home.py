"""Home: what KD is, links to the tour, the chosen pair's headline numbers, and the registries' real contents."""

from __future__ import annotations

import json

import pytest
from conftest import app_page

PAGE = "pages/home.py"


def chart_titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_home_explains_kd_and_lists_datasets_and_methods(app_env):
    at = app_page(PAGE).run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert "knowledge distillation" in at.title[0].value
    assert chart_titles(at) == ["Knowledge distillation in one picture", "Test accuracy, ECE and agreement"]
    names = set().union(*(set(frame.value["name"]) for frame in at.dataframe if "name" in frame.value))
    assert {"shapes", "digits", "gaussians", "kd", "born_again", "label_smoothing"} <= names
    links = [link.proto.page for link in at.get("page_link")]
    assert {"dark_knowledge", "calibration"} <= set(links)


def test_headline_numbers_come_from_the_runs(app_env):
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    ws = Workspace(RunStore(app_env))
    selection = ws.default_selection("gaussians")
    at = app_page(PAGE, dataset="gaussians").run()
    assert not at.exception and not at.error
    assert at.subheader[1].value == "The chosen pair on gaussians"
    headline = at.dataframe[0].value.set_index("model")
    teacher = ws.record(selection.teacher).summary
    distilled = ws.record(selection.roles["distilled"]).summary
    assert headline.loc["Teacher", "accuracy"] == pytest.approx(teacher["test_accuracy"])
    assert headline.loc["Distilled student", "agreement"] == pytest.approx(distilled["test_agreement"])
    assert headline.loc["Distilled student", "params"] == distilled["params"]
    accuracy = {m.label: m.value for m in at.metric}
    assert accuracy["Teacher accuracy"] == f"{teacher['test_accuracy']:.1%}"
    # changing the dataset in the shared sidebar changes the numbers shown
    at.selectbox(key="dataset").set_value("moons").run()
    assert at.subheader[1].value == "The chosen pair on moons"
    assert at.dataframe[0].value.set_index("model").loc["Teacher", "accuracy"] != headline.loc["Teacher", "accuracy"]


def test_sidebar_offers_only_students_on_the_teachers_own_data(app_env):
    """The shortcut experiment's students share the shapes teacher but not its data: they are not offered."""
    from kdviz.samples import read_manifest, sample_roles

    at = app_page(PAGE).run()
    shortcut = {run["id"] for run in read_manifest()["experiments"]["shortcut"]["runs"]} - {
        sample_roles("shapes")["teacher"]
    }
    for role in ("scratch", "distilled", "self"):
        options = set(at.selectbox(key=role).options)
        assert not any(run_id[:6] in option for option in options for run_id in shortcut), role
    assert any(sample_roles("shapes")["distilled"][:6] in o for o in at.selectbox(key="distilled").options)
