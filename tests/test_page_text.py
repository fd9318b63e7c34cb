"""Every page opens on the shipped `sentiment` (text) sample without an error or exception."""

from __future__ import annotations

import json
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


def test_attributions_highlight_sentences_and_measure_agreement(app_env):
    at = app_page("pages/attributions.py", dataset="sentiment").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert titles[0].startswith("Test sentence 0 (true class: ") and len(titles) == 4
    rows = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]
    assert rows[0] == "Teacher" and len(rows) == 4  # teacher, scratch, distilled, self-distilled
    agreement = at.dataframe[0].value
    assert len(agreement) == 3 and agreement["top-word agreement"].between(0, 1).all()
