"""AppTest of the Papers page: the overview of all entries, one entry's tests and figure, untested entries."""

from __future__ import annotations

from conftest import app_page, errors, figures

from kdviz.experiments import papers as pp
from kdviz.views import papers as pv

PAGE = "pages/papers.py"


def test_overview_lists_every_paper_with_a_verdict(app_env) -> None:
    at = app_page(PAGE).run()
    assert not at.exception and not errors(at)
    overview = at.dataframe[0].value
    assert len(overview) == len(pp.PAPERS)
    assert set(overview["verdict"]) <= set(pp.VERDICTS)
    shipped = pv.load_results()
    measured = [k for k in pp.PAPERS if k in shipped and shipped[k].get("tests")]
    # every shipped measurement shows as a verdict, and every untestable entry says so
    shown = dict(zip(pv.overview(shipped)["key"], overview["verdict"]))
    assert all(shown[k] not in (pp.NOT_MEASURED, pp.UNTESTABLE) for k in measured)
    assert all(shown[k] == pp.UNTESTABLE for k, p in pp.PAPERS.items() if not p.presets)
    assert any(f["layout"]["title"]["text"] == "Verdicts" for f in figures(at))


def test_a_measured_entry_shows_its_tests_and_differences(app_env) -> None:
    shipped = pv.load_results()
    measured = [k for k in pp.PAPERS if k in shipped and shipped[k].get("tests")]
    assert measured, "sample_models/papers/results.json ships no measured entry"
    key = measured[0]
    at = app_page(PAGE, paper=key).run()
    assert not at.exception and not errors(at)
    tests = at.dataframe[1].value
    assert len(tests) == len(shipped[key]["tests"])
    assert "difference [95 % CI]" in tests.columns
    assert any(f["layout"]["title"]["text"] == "Paired differences per seed" for f in figures(at))
    assert any("Verdict:" in box.value for box in [*at.success, *at.info, *at.warning])


def test_an_untestable_entry_says_why(app_env) -> None:
    key = next(k for k, p in pp.PAPERS.items() if not p.presets)
    at = app_page(PAGE, paper=key).run()
    assert not at.exception and not errors(at)
    assert any(pp.UNTESTABLE in box.value for box in at.info)
    assert not [b for b in at.button if b.key == "papers_run"]


def test_run_here_trains_the_tiny_preset_through_the_job_queue(app_env) -> None:
    import time

    at = app_page(PAGE, paper="hinton_kd").run()  # a teacher first, then the students
    assert not at.exception and not errors(at)
    assert at.radio(key="papers_preset").value == "tiny"
    at.button(key="papers_run").click().run()
    deadline = time.monotonic() + 120
    while "(tiny)" not in " ".join(s.value for s in at.success) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception and not errors(at)
    note = " ".join(s.value for s in at.success)
    assert "hinton_kd (tiny)" in note and "verdict" in note and "tiny results are not kept" in note
    at.run()
    assert "7 of 7 runs of this preset are stored" in " ".join(c.value for c in at.caption)


def test_a_translation_entry_points_to_the_shell_and_the_translation_page(app_env) -> None:
    at = app_page(PAGE, paper="sequence_kd").run()
    assert not at.exception and not errors(at)
    assert len(at.dataframe[1].value) == 3  # its three tests, from the shipped seqkd result
    assert not [b for b in at.button if b.key == "papers_run"]  # not through the job queue
    text = " ".join(m.value for m in at.markdown)
    assert "kdviz experiment seqkd" in text and "kdviz reproduce sequence_kd" in text
