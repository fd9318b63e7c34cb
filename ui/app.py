"""The app's frame: page config, the navigation and the shared sidebar, set up once per script run.

`app.py` calls `run_app()`. Every page starts with `bootstrap()`, which does the same set-up when the
page runs on its own. That happens because a `pages/` folder sits next to `app.py`: Streamlit then
runs its old folder-based multipage mode (`PagesManager.uses_pages_directory`, decided once per
process) until some script run calls `st.navigation` — so a deep link that is a fresh server's first
request (and AppTest) runs `pages/<name>.py` without `app.py`. `bootstrap()` then shows the app's own
navigation (which also switches the process to navigation mode for good), page config and sidebar,
so the page has everything it needs either way.
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from kdviz.workspace import Selection
from ui import state

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"
#: section → (page file in pages/, title, icon); the first page is the default (Home).
PAGES: dict[str, list[tuple[str, str, str]]] = {
    "Start": [("home.py", "Home", ":material/home:"), ("train.py", "Train", ":material/model_training:")],
    "Learn": [("dark_knowledge.py", "Dark knowledge", ":material/school:")],
    "Inspect": [
        ("calibration.py", "Calibration", ":material/tune:"),
        ("representations.py", "Representations & concepts", ":material/hub:"),
        ("attributions.py", "Attributions", ":material/visibility:"),
        ("divergence.py", "Divergence inspector", ":material/compare_arrows:"),
    ],
    "Explanation-guided": [("explanation.py", "Explanation-guided KD", ":material/psychology:")],
    "Translation": [("translation.py", "Word- vs sequence-level KD", ":material/translate:")],
    "Papers": [("papers.py", "Papers", ":material/science:")],
    "Manage": [("runs.py", "Runs", ":material/table_view:")],
}
DEFAULT_PAGE = "home.py"

# True while app.py runs the page navigation chose (in this thread: one script run at a time per session).
_inside_app = threading.local()


def page_path(file: str) -> str:
    """The path of a page for `st.Page` / `st.page_link` (relative to app.py); a missing file is an error."""
    if not (PAGES_DIR / file).is_file():
        raise FileNotFoundError(f"page {file!r} is missing from {PAGES_DIR}")
    return f"pages/{file}"


def _setup() -> st.Page:
    """Page config, the app's navigation and the shared sidebar; returns the page the navigation chose."""
    st.set_page_config(page_title="kdviz — knowledge distillation lab", page_icon="🧪", layout="wide")
    navigation = st.navigation(
        {
            section: [
                st.Page(page_path(file), title=title, icon=icon, default=file == DEFAULT_PAGE)
                for file, title, icon in items
            ]
            for section, items in PAGES.items()
        }
    )
    state.sidebar()
    return navigation


def run_app() -> None:
    """app.py: set up the frame, then run the chosen page (whose `bootstrap()` finds the frame in place)."""
    page = _setup()
    _inside_app.active = True
    try:
        page.run()
    finally:
        _inside_app.active = False


def bootstrap() -> Selection | None:
    """First call of every page: the frame (config, navigation, sidebar) unless app.py set it up in this run.

    Idempotent per script run; returns the sidebar's selection (None when there is nothing to compare).
    """
    if not getattr(_inside_app, "active", False):
        _setup()  # the page runs on its own (folder mode): show the app's navigation and sidebar, not the folder's
    return state.current_selection()
