"""The welcome page renders without exceptions and lists the registries' real contents."""

from pathlib import Path

from streamlit.testing.v1 import AppTest


def test_welcome_page_lists_datasets_and_methods(app_env):
    app = AppTest.from_file(str(Path(__file__).parent.parent / "app.py"), default_timeout=60).run()
    assert not app.exception
    assert "knowledge distillation" in app.title[0].value
    frames = [frame.value for frame in app.dataframe]
    names = set().union(*(set(frame["name"]) for frame in frames))
    assert {"shapes", "digits", "gaussians", "kd", "born_again", "label_smoothing"} <= names
