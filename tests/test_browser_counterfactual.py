"""Real browser: the Divergence page's Counterfactuals section on `shapes` — edit a factor, press the button, see
Grad-CAM and the factor sweep. Saves docs/screenshots/divergence_counterfactuals.png when KDVIZ_SCREENSHOTS=1."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_browser import ERRORS, FINISHED, browser, open_page, screenshot_dir, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def test_counterfactual_section_explains_an_edit(server: str, browser: object, tmp_path: Path) -> None:  # noqa: F811
    # tall enough to hold the whole page: Streamlit scrolls an inner container, which a screenshot does not follow
    page = browser.new_page(viewport={"width": 1440, "height": 4200})
    open_page(page, server)  # the first visit installs the sample models
    open_page(page, f"{server}/divergence?dataset=shapes&div_sample=33&div_cf_factor=size")
    heading = page.get_by_text("Counterfactuals: change the sample, watch every model")
    heading.wait_for(timeout=90_000)
    heading.scroll_into_view_if_needed()
    page.locator(".js-plotly-plot").filter(has_text="The sample and its edit").wait_for(timeout=60_000)
    # move the size slider from the sample's 6.5 to 10.8 with the keyboard (End = 13, then 22 steps of 0.1 down)
    thumb = page.locator("[data-testid='stSlider']").filter(has_text="New value").locator("input[type='range']")
    thumb.focus()
    thumb.press("End")
    for _ in range(22):
        thumb.press("ArrowLeft")
    page.wait_for_timeout(500)
    page.wait_for_selector(FINISHED, timeout=90_000)
    started = time.perf_counter()
    page.get_by_role("button", name="Explain: Grad-CAM of the edit and a sweep of size").click()
    sweep = page.locator(".js-plotly-plot").filter(has_text="Sweeping size")
    sweep.wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").filter(has_text="Grad-CAM of the true class").wait_for(timeout=60_000)
    print(f"\ncounterfactual explain: charts after {time.perf_counter() - started:.2f} s")
    page.wait_for_selector(FINISHED, timeout=90_000)
    assert page.get_by_text("leaves the teacher at size").first.is_visible()
    assert (
        "edited (size 10.8)" in page.locator(".js-plotly-plot").filter(has_text="The sample and its edit").inner_text()
    )
    assert not page.locator(ERRORS).all_inner_texts()
    page.mouse.move(5, 5)  # no tooltip over the charts
    page.wait_for_timeout(300)
    heading.evaluate("e => e.scrollIntoView({block: 'start'})")  # the section at the top of the tall viewport
    page.wait_for_timeout(300)
    top, box = heading.bounding_box()["y"], sweep.bounding_box()
    clip = {"x": 280, "y": top - 20, "width": 1150, "height": box["y"] + box["height"] - top + 40}
    page.screenshot(path=str(screenshot_dir(tmp_path) / "divergence_counterfactuals.png"), clip=clip)
    page.close()
