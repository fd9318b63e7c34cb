"""The app's frame (page config, navigation, shared sidebar) when a page runs without app.py (folder mode)."""

from __future__ import annotations

from conftest import app_page, errors


def test_a_page_run_without_app_py_has_the_apps_sidebar_and_navigation(folder_mode) -> None:
    from streamlit.runtime.pages_manager import PagesManager

    at = app_page("pages/calibration.py", dataset="digits").run()
    assert folder_mode == [True]  # Streamlit ran pages/calibration.py on its own, as for a fresh server's deep link
    assert not at.exception and not errors(at)
    assert at.title[0].value == "Calibration"
    assert at.selectbox(key="dataset").value == "digits"
    assert {"teacher", "scratch", "distilled"} <= {box.key for box in at.sidebar.selectbox}
    assert PagesManager.uses_pages_directory is False  # bootstrap() ran st.navigation: the process leaves folder mode
    assert at.get("plotly_chart")
    # the app's navigation is registered: switching to another page by its file works and shows that page
    at.switch_page("pages/runs.py").run()
    assert not at.exception and at.title[0].value == "Runs"


def test_the_root_in_folder_mode_runs_app_py_once(folder_mode) -> None:
    at = app_page("pages/home.py").run()
    assert not at.exception and not errors(at)
    assert [t.value for t in at.title] == ["kdviz — an interactive lab for knowledge distillation"]
    assert len(at.sidebar.selectbox) == len({box.key for box in at.sidebar.selectbox})
