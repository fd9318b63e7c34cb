"""The Train page: method cards, submitting a job to the shared queue and watching it finish."""

from __future__ import annotations

import time

from tests.conftest import app_page


def _markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_train_page_renders_with_card(app_env):
    at = app_page("pages/train.py", tr_method="dkd").run()
    assert not at.exception
    assert at.selectbox(key="tr_method").value == "dkd"
    assert any("Decoupled" in e.label for e in at.expander)
    at.selectbox(key="tr_method").set_value("label_smoothing").run()
    assert not at.exception
    assert any("smoothing" in e.label.lower() for e in at.expander)


def test_train_a_tiny_student_and_see_it_finish(app_env):
    at = app_page("pages/train.py", tr_dataset="moons", tr_method="kd").run()
    assert not at.exception and not at.error
    at.number_input(key="tr_epochs").set_value(2)
    at.button(key="tr_submit_student").click().run()
    assert not at.exception and not at.error
    deadline = time.monotonic() + 60
    while "Finished" not in " ".join(s.value for s in at.success) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert "Finished" in " ".join(s.value for s in at.success), _markdown(at)
    assert "done" in _markdown(at)


def test_method_needing_a_teacher_without_one_is_explained(app_env):
    at = app_page("pages/train.py", tr_dataset="wine", tr_method="kd").run()
    assert not at.exception
    assert any("learns from a teacher" in i.value for i in at.info)
    assert at.button(key="tr_submit_student").disabled
