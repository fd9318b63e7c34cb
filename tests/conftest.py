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


@pytest.fixture
def app_env(app_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app at the session's store (use with `streamlit.testing.v1.AppTest.from_file(APP)`)."""
    monkeypatch.setenv("KDVIZ_HOME", str(app_home))
    return app_home


def app_page(page: str, **query: str):
    """An AppTest of the whole app opened on `page` (e.g. "app_pages/calibration.py") with URL `query`; not yet run."""
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
