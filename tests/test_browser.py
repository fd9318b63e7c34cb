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
PAGES = [
    "",
    "train",
    "dark_knowledge",
    "calibration",
    "representations",
    "attributions",
    "divergence",
    "explanation",
    "translation",
    "papers",
    "runs",
]
FINISHED = "[data-testid='stApp'][data-test-script-state='notRunning']"
CONTENT = ".js-plotly-plot, [data-testid='stDataFrame'], [data-testid='stMetric']"
TRAIN_READY = "button:has-text('Train student')"
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"

if not CHROMIUM.exists():
    if os.environ.get("KDVIZ_REQUIRE_BROWSER"):
        raise RuntimeError("browser tests are required but /usr/bin/chromium is missing (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from concurrent.futures import ThreadPoolExecutor

    from kdviz.serve import serve_app
    from ui.warmup import warm

    with serve_app(tmp_path_factory.mktemp("browser-home")) as url:
        # warmed as `kdviz app` warms it (its own thread: Playwright's sync API may hold this one's event loop), so
        # no test depends on running after another; the fresh-server deep link has a test of its own below
        with ThreadPoolExecutor(1) as pool:
            pool.submit(warm, url).result()
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


def open_page(page: object, url: str, timeout: float = 90_000, content: str = CONTENT) -> float:
    """Go to `url`, wait until the app shows `content` and has finished running; return seconds to first content."""
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(content, timeout=timeout)
    first = time.perf_counter() - started
    page.wait_for_selector(FINISHED, timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_selector(FINISHED, timeout=timeout)
    return first


def screenshot_dir(tmp_path: Path) -> Path:
    return ROOT / "docs" / "screenshots" if os.environ.get("KDVIZ_SCREENSHOTS") else tmp_path


def test_every_page_opens_without_errors(server: str, browser: object, tmp_path: Path):
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    out = screenshot_dir(tmp_path)
    open_page(page, server)  # warm-up: the first visit installs the sample models into the store
    timings = {}
    for name in PAGES:
        content = TRAIN_READY if name == "train" else CONTENT
        timings[name or "home"] = open_page(page, f"{server}/{name}", content=content)
        errors = page.locator(ERRORS).all_inner_texts()
        assert not errors, f"page {name or 'home'} shows errors: {errors}"
        page.screenshot(path=str(out / f"{name or 'home'}.png"))
    page.close()
    print("\nfirst content per page (s, sample models, this machine, after the launcher's warm-up):")
    for name, seconds in timings.items():
        print(f"  {name:16s} {seconds:5.2f}")


TEXT_PAGES = ["", "dark_knowledge", "calibration", "representations", "attributions", "divergence"]


def test_text_pages_show_sentences_without_errors(server: str, browser: object, tmp_path: Path):
    """The shipped sentiment pair on every page with a sample view: sentences, not pixels."""
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    out = screenshot_dir(tmp_path)
    for name in TEXT_PAGES:
        open_page(page, f"{server}/{name}?dataset=sentiment", timeout=120_000)
        errors = page.locator(ERRORS).all_inner_texts()
        assert not errors, f"page {name or 'home'} on sentiment shows errors: {errors}"
        page.screenshot(path=str(out / f"text_{name or 'home'}.png"))
    body = page.locator("[data-testid='stApp']").inner_text()
    assert "sentence" in body.lower()  # the Divergence inspector lists and highlights sentences
    page.close()


def _job_keys(page: object) -> set[str]:
    """The job ids shown on a Train page (each job's container carries the key tr_job_<id>)."""
    script = "els => els.map(e => e.className.match(/st-key-tr_job_[0-9a-f]+/)[0])"
    return set(page.locator("[class*='st-key-tr_job_']").evaluate_all(script))


def test_train_a_tiny_run_and_see_it_finish(server: str, browser: object):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    open_page(page, f"{server}/train?tr_dataset=moons&tr_method=kd&tr_epochs=2", content=TRAIN_READY)
    page.get_by_role("button", name="Train student").click()
    page.get_by_text("Finished: pick it in the sidebar").wait_for(timeout=90_000)
    assert not page.locator(ERRORS).all_inner_texts()
    page.close()


def test_two_sessions_asking_for_the_same_training_share_one_job(server: str, browser: object):
    # long enough (60 epochs) that the second request always finds the job still running
    url = f"{server}/train?tr_dataset=shapes&tr_method=kd&tr_epochs=60"
    first, second = browser.new_context(), browser.new_context()
    a, b = first.new_page(), second.new_page()
    open_page(a, url, content=TRAIN_READY)
    open_page(b, url, content=TRAIN_READY)
    a.get_by_role("button", name="Train student").click()
    a.get_by_text("job ", exact=False).first.wait_for(timeout=30_000)
    b.get_by_role("button", name="Train student").click()
    b.get_by_text("shared with 1 other").wait_for(timeout=30_000)
    ids_a, ids_b = _job_keys(a), _job_keys(b)
    assert len(ids_a) == 1 and ids_a == ids_b, (ids_a, ids_b)
    # cancelling: the first session only lets go (the other still watches); the last one stops the job
    a.get_by_role("button", name="Cancel").click()
    a.wait_for_function("!document.querySelector(\"[class*='st-key-tr_job_']\")", timeout=30_000)
    b.get_by_text("shared with 1 other").wait_for(state="detached", timeout=30_000)
    b.get_by_role("button", name="Cancel").click()
    b.wait_for_function("!document.querySelector(\"[class*='st-key-tr_job_']\")", timeout=30_000)
    deadline = time.monotonic() + 60
    while "0 active job(s) on this server" not in b.inner_text("body"):  # the job really stopped
        assert time.monotonic() < deadline, b.inner_text("body")[-500:]
        time.sleep(1)
        open_page(b, url, content=TRAIN_READY)
    first.close()
    second.close()


def test_upload_own_data_good_and_bad(server: str, browser: object, tmp_path: Path):
    good = tmp_path / "points.csv"
    good.write_text("a,b,label\n" + "\n".join(f"{i % 7},{i % 5},{'x' if i % 2 else 'y'}" for i in range(60)))
    bad = tmp_path / "broken.csv"
    bad.write_text("a,b,label\n1,nan,x\n2,3,y\n")
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    open_page(page, f"{server}/train", content=TRAIN_READY)
    page.get_by_text("Use your own data").click()
    for path, expected in ((bad, "Could not use broken.csv"), (good, "Train a teacher on it below")):
        page.locator("input[type='file']").set_input_files(str(path))
        # the click must come after the file has reached the server
        page.locator("[data-testid='stFileChipName']").filter(has_text=path.name).wait_for(timeout=30_000)
        page.get_by_label("Label column (CSV only)").fill("label")
        page.get_by_label("Label column (CSV only)").press("Enter")
        page.wait_for_selector(FINISHED)
        page.get_by_role("button", name="Add this dataset").click()
        page.get_by_text(expected).wait_for(timeout=30_000)
    page.close()


POINT_INDEX = """el => {
    const trace = el.closest('.trace').__data__[0].trace;
    const i = el.__data__.i;
    const custom = trace.customdata[i];
    return Array.isArray(custom) ? custom[0] : custom;
}"""


def test_click_a_point_in_the_divergence_scatter_opens_its_drill_down(server: str, browser: object):
    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    open_page(page, f"{server}/divergence?dataset=moons")
    before = page.evaluate("new URLSearchParams(window.location.search).get('div_sample')")
    points = page.locator(".js-plotly-plot .scatterlayer .trace .points path")
    points.first.wait_for(timeout=60_000)  # the scatter draws after the metrics above it
    positions = range(0, points.count(), max(1, points.count() // 5))
    target, wanted = next((i, idx) for i in positions if str(idx := int(points.nth(i).evaluate(POINT_INDEX))) != before)
    points.nth(target).click(force=True)
    page.wait_for_function(
        f"new URLSearchParams(window.location.search).get('div_sample') !== {before!r}", timeout=60_000
    )
    _finished_again(page)
    chosen = page.evaluate("new URLSearchParams(window.location.search).get('div_sample')")
    assert int(chosen) == wanted  # plotly picks the point under the click
    box = page.locator("[data-testid='stSelectbox']").filter(has_text="Sample (most divergent first)")
    shown = box.inner_text() + " ".join(box.locator("input").evaluate_all("els => els.map(e => e.value)"))
    assert f"#{chosen} · KL" in shown, shown
    assert not page.locator(ERRORS).all_inner_texts()
    page.close()


def _finished_again(page: object) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector(FINISHED, timeout=90_000)


NAV_LINKS = "[data-testid='stSidebarNav'] [data-testid='stSidebarNavLink']"


def test_a_deep_link_as_a_fresh_servers_first_request_gets_the_apps_frame(browser: object, tmp_path: Path):
    """With `pages/` next to app.py a fresh server runs Streamlit's folder mode until st.navigation runs: a deep link
    as its very first request runs the page without app.py. `ui.app.bootstrap()` must give it the app's frame."""
    from kdviz.serve import serve_app

    with serve_app(tmp_path) as fresh:  # no warm-up: this is the server's first script run
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        open_page(page, f"{fresh}/calibration?dataset=digits")
        assert not page.locator(ERRORS).all_inner_texts()
        assert page.locator("h1").first.inner_text().startswith("Calibration")
        assert page.url.split("?")[0].endswith("/calibration")
        sidebar = page.locator("[data-testid='stSidebar']")
        pickers = sidebar.locator("[data-testid='stSelectbox']")
        labels = pickers.locator("label").all_inner_texts()
        assert {"Dataset", "Teacher", "Scratch student", "Distilled student"} <= set(labels), labels
        dataset = pickers.filter(has_text="Dataset")
        assert "digits" in dataset.inner_text() + dataset.locator("input").input_value()
        links = [text.strip().splitlines()[-1] for text in page.locator(NAV_LINKS).all_inner_texts()]  # icon, title
        # the app's navigation (titles, sections), not the folder's file names with app.py as a page
        assert links[:3] == ["Home", "Train", "Dark knowledge"], links
        assert "Explanation-guided KD" in links and "app" not in links and "dark knowledge" not in links
        # the navigation works from there, and the process has left folder mode for every later visitor
        page.locator(NAV_LINKS).filter(has_text="Runs").click()
        page.wait_for_url("**/runs**", timeout=30_000)
        _finished_again(page)
        assert page.locator("h1").first.inner_text().startswith("Runs")
        other = browser.new_page(viewport={"width": 1440, "height": 1100})
        open_page(other, f"{fresh}/divergence?dataset=moons")
        assert page.locator(NAV_LINKS).count() == other.locator(NAV_LINKS).count()
        assert not other.locator(ERRORS).all_inner_texts()
        page.close()
        other.close()


def test_divergence_slices_section_filters_the_scatter(server: str, browser: object, tmp_path: Path):
    page = browser.new_page(viewport={"width": 1440, "height": 2400})
    open_page(page, server)  # the first visit installs the sample models
    first = open_page(page, f"{server}/divergence?dataset=shapes&div_slice=R1")
    print(f"\ndivergence with a slice: first chart {first:.2f} s")
    heading = page.get_by_text("Slices: where the student parts ways, in words")
    heading.wait_for(timeout=60_000)
    assert page.get_by_text("R1 ·").first.is_visible()
    title = page.locator(".js-plotly-plot .gtitle").first.text_content()
    assert " of 1000 test samples" in title, title
    assert not title.startswith("1000 of"), title  # the scatter shows the slice only
    bars = page.locator(".js-plotly-plot").filter(has_text="close the gap")
    bars.wait_for(timeout=60_000)
    assert not page.locator(ERRORS).all_inner_texts()
    heading.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir(tmp_path) / "divergence_slices.png"), full_page=True)
    page.close()
