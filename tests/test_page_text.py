"""Every page opens on the shipped `sentiment` (text) sample without an error or exception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import app_page

ROOT = Path(__file__).parent.parent
PAGES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


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


def test_divergence_shows_sentences_token_attributions_text_slices_and_edits(app_env):
    at = app_page("pages/divergence.py", dataset="sentiment").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    tables = [d.value for d in at.dataframe if "sentence" in d.value.columns]
    assert tables and tables[0]["sentence"].str.len().gt(0).all()  # the sample table shows each sentence
    assert any(m.value.startswith("**Sample #") and "\n\n> " in m.value for m in at.markdown)
    assert at.selectbox(key="div_method").value == "gradient_x_input"
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    highlighted = [t for t in titles if t.startswith("gradient × embedding of each model's predicted class")]
    assert len(highlighted) == 1
    # slices from the sentence's metadata, never from the sentence itself
    at.selectbox(key="div_slice_source").set_value("metadata rules")
    at.selectbox(key="div_slice_target").set_value("kl").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    rules = [m.value for m in at.markdown if m.value.startswith("- **R")]
    assert rules and not any("text" in r for r in rules)
    # the counterfactual: edit the sentence, every model reads it again
    box = at.text_input[0]
    box.set_value(box.value + " but the food was zzzqx").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("read as <unk>): zzzqx" in m.value for m in at.markdown)
