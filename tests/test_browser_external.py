"""Real browser on your own pair: `kdviz.show(pair)` starts the app, and every page opens on the saved pair."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from own_models import MixerNet, ResNetish, TupleOutputNet, toy_images
from test_browser import CHROMIUM, CONTENT, ERRORS, PAGES, TRAIN_READY, open_page

import kdviz
from kdviz.models.external import ALLOW_ENV

pytestmark = pytest.mark.browser
NAME = "own-pair"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`kdviz.show` on a pair: teacher as an exported program, student from an allowed factory, a scratch student."""
    saved = {key: os.environ.get(key) for key in ("KDVIZ_HOME", ALLOW_ENV, "PYTHONPATH")}
    os.environ["KDVIZ_HOME"] = str(tmp_path_factory.mktemp("own-home"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), saved["PYTHONPATH"]]))  # own_models
    os.environ.pop(ALLOW_ENV, None)
    torch.manual_seed(0)
    x, y, masks = toy_images(160, seed=3)
    x_test, y_test, masks_test = toy_images(60, seed=4)
    pair = kdviz.Pair(ResNetish(), TupleOutputNet(), test=(x_test, y_test), train=(x, y), masks=masks_test,
                      scratch=MixerNet(), name=NAME)  # fmt: skip
    url = kdviz.show(pair, factories={"student": ("own_models:make_tuple_net", {"width": 6})}, port=0, block=False)
    try:
        yield url
    finally:
        kdviz.stop(url)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


def test_every_page_opens_on_your_own_pair(shown: str, browser: object, tmp_path: Path) -> None:
    assert shown.endswith(f"/?dataset={NAME}")
    base = shown.split("/?")[0]
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    for name in PAGES:
        open_page(page, f"{base}/{name}?dataset={NAME}", content=TRAIN_READY if name == "train" else CONTENT)
        errors = [e.inner_text() for e in page.query_selector_all(ERRORS)]
        assert not errors, (name, errors)
        boxes = page.locator("[data-testid='stSidebar'] input[role='combobox']")
        pickers = " | ".join(boxes.nth(i).input_value() for i in range(boxes.count()))
        assert NAME in pickers and "ResNetish" in pickers and "TupleOutputNet" in pickers, (name, pickers)
        if name in ("calibration", "divergence", "representations"):
            page.screenshot(path=str(tmp_path / f"own_pair_{name}.png"), full_page=False)


def test_a_session_over_the_websocket_runs_a_page(shown: str) -> None:
    """The warm-up's and the classroom benchmark's session runner: one script run of a page, its errors."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from ui.warmup import run_page

    def session(page: str) -> tuple[str, list[str]]:  # its own thread: Playwright's sync API holds this one's loop
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(lambda: asyncio.run(run_page(base, page, timeout=120))).result()

    base = shown.split("/?")[0]
    assert session("calibration") == ("FINISHED_SUCCESSFULLY", [])
    status, errors = session("no_such_page")
    assert any("page not found" in error for error in errors), (status, errors)
