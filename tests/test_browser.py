"""Real-browser tests: Playwright drives Debian's Chromium against `streamlit run` on a loopback port.

Screenshots of every page go to docs/screenshots/ when KDVIZ_SCREENSHOTS=1 (else to a temporary folder), and the
time each page takes to show its first chart is printed (not asserted): run with `-s` to see it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
PAGES = ["", "train", "dark_knowledge", "calibration", "representations", "attributions", "divergence", "runs"]
FINISHED = "[data-testid='stApp'][data-test-script-state='notRunning']"
CONTENT = ".js-plotly-plot, [data-testid='stDataFrame'], [data-testid='stMetric']"
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"

if not CHROMIUM.exists():
    if os.environ.get("KDVIZ_REQUIRE_BROWSER"):
        raise RuntimeError("browser tests are required but /usr/bin/chromium is missing (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from kdviz.serve import serve_app

    with serve_app(tmp_path_factory.mktemp("browser-home")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


def open_page(page: object, url: str, timeout: float = 90_000) -> float:
    """Go to `url`, wait until the app shows content and has finished running; return seconds to first content."""
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(CONTENT, timeout=timeout)
    first = time.perf_counter() - started
    page.wait_for_selector(FINISHED, timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_selector(FINISHED, timeout=timeout)
    return first


def screenshot_dir(tmp_path: Path) -> Path:
    return ROOT / "docs" / "screenshots" if os.environ.get("KDVIZ_SCREENSHOTS") else tmp_path


def test_every_page_opens_without_errors(server: str, browser: object, tmp_path: Path):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    out = screenshot_dir(tmp_path)
    timings = {}
    for name in PAGES:
        timings[name or "home"] = open_page(page, f"{server}/{name}")
        errors = page.locator(ERRORS).all_inner_texts()
        assert not errors, f"page {name or 'home'} shows errors: {errors}"
        page.screenshot(path=str(out / f"{name or 'home'}.png"), full_page=True)
    page.close()
    print("\nfirst content per page (s, sample models, this machine):")
    for name, seconds in timings.items():
        print(f"  {name:16s} {seconds:5.2f}")
