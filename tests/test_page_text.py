"""Every page opens on the shipped `sentiment` (text) sample without an error or exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import app_page

ROOT = Path(__file__).parent.parent
# the Divergence page draws attributions of pixels for its drill-down; a text guard there is pending
PENDING = {"pages/divergence.py": "its drill-down computes input attributions, not defined for token ids yet"}
PAGES = [
    pytest.param(page, marks=pytest.mark.xfail(reason=PENDING[page], strict=False)) if page in PENDING else page
    for page in sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))
]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_opens_on_the_text_sample(app_env, page):
    at = app_page(page, dataset="sentiment").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_dark_knowledge_shows_the_sentence(app_env):
    at = app_page("pages/dark_knowledge.py", dataset="sentiment").run()
    assert not at.exception and not at.error
    assert any(m.value.startswith("**Sample") and "\n\n> " in m.value for m in at.markdown)
    assert at.query_params["dataset"] == "sentiment"
