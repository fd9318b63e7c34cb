"""Shared fixtures: app tests run against a private run store with the shipped sample models installed."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


@pytest.fixture(scope="session")
def app_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KDVIZ_HOME for this test session holding the sample runs (the app installs them on start)."""
    from kdviz.samples import install_samples
    from kdviz.store import RunStore

    home = tmp_path_factory.mktemp("kdviz-home")
    install_samples(RunStore(home))
    return home


def _navigation_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make AppTest run app.py's `st.navigation`, as a warm server does.

    With a `pages/` folder next to app.py, Streamlit starts every process (and every AppTest run, which resets
    `PagesManager.uses_pages_directory`) in its old folder mode until a script run calls `st.navigation`: a page
    then runs on its own, without app.py. `ui.app.bootstrap()` makes that harmless (the `folder_mode` fixture
    tests it); every other app test sees what visitors of a running server see, app.py first.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    class NavigationModePagesManager(PagesManager):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", NavigationModePagesManager)


@pytest.fixture
def app_env(app_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app at the session's store (use with `app_page`), in navigation mode (see `_navigation_mode`)."""
    monkeypatch.setenv("KDVIZ_HOME", str(app_home))
    _navigation_mode(monkeypatch)
    return app_home


@pytest.fixture
def folder_mode(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> list[bool | None]:
    """Like `app_env`, but AppTest runs as a fresh server's first request does: a page without app.py.

    Returns, per AppTest run, whether Streamlit started it in folder mode.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    class RecordingPagesManager(PagesManager):
        def __init__(self, *args, **kwargs) -> None:
            PagesManager.uses_pages_directory = None  # AppTest's own reset lands on this subclass: redo it here
            super().__init__(*args, **kwargs)
            started_in_folder_mode.append(PagesManager.uses_pages_directory)

    started_in_folder_mode: list[bool | None] = []
    monkeypatch.setattr(app_test, "PagesManager", RecordingPagesManager)
    return started_in_folder_mode


def app_page(page: str, **query: str):
    """An AppTest of the whole app opened on `page` (e.g. "pages/calibration.py") with URL `query`; not yet run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(page)
    for key, value in query.items():
        at.query_params[key] = value
    return at


def figures(at) -> list[dict]:
    """The Plotly specs of every chart an AppTest run shows, in order."""
    import json

    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def titled(at, prefix: str) -> dict:
    """The first chart whose title starts with `prefix` (fails listing the titles there are)."""
    found = [f for f in figures(at) if f["layout"].get("title", {}).get("text", "").startswith(prefix)]
    assert found, f"no figure titled {prefix!r}: {[f['layout'].get('title', {}).get('text') for f in figures(at)]}"
    return found[0]


def errors(at) -> list[str]:
    """The texts of the st.error boxes an AppTest run shows."""
    return [e.value for e in at.error]
