"""A classroom on one server, measured: N browser sessions open the same pages at the same time.

Starts `streamlit run app.py` on a loopback port with a fresh run store (sample models installed on
the first visit), then N Chromium contexts (Debian's /usr/bin/chromium) each open the given pages
one after another, all sessions at once. Prints per page the median and worst time to the first
chart, and the server's resident memory before and after.

    python bench/classroom.py                    # 10 sessions, Home → Dark knowledge → Calibration → Divergence
    python bench/classroom.py --sessions 20 --pages calibration,attributions
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

from kdviz.serve import serve_app

CHROMIUM = "/usr/bin/chromium"
CONTENT = ".js-plotly-plot, [data-testid='stDataFrame'], [data-testid='stMetric']"
FINISHED = "[data-testid='stApp'][data-test-script-state='notRunning']"


def server_proc(port: int) -> Path | None:
    """/proc/<pid> of the server listening on `port` (Linux), or None if not found."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"--server.port\0{port}".encode() in cmdline.read_bytes():
                return cmdline.parent
        except OSError:
            continue
    return None


def server_usage(proc: Path | None) -> tuple[float, float] | None:
    """(resident memory in MiB, CPU seconds used so far) of the server process."""
    if proc is None:
        return None
    rss = next(int(line.split()[1]) / 1024 for line in (proc / "status").read_text().splitlines() if "VmRSS" in line)
    fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def session(browser, url: str, pages: list[str], timings: dict[str, list[float]]) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    for name in pages:
        started = time.perf_counter()
        await page.goto(f"{url}/{name}")
        await page.wait_for_selector(CONTENT, timeout=300_000)
        timings[name].append(time.perf_counter() - started)
        await page.wait_for_selector(FINISHED, timeout=300_000)
    await context.close()


async def main_async(args: argparse.Namespace) -> None:
    pages = [p.strip() for p in args.pages.split(",")]
    with tempfile.TemporaryDirectory() as home, serve_app(home) as url:
        port = int(url.rsplit(":", 1)[1])
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            warm: dict[str, list[float]] = {name: [] for name in pages}
            await session(browser, url, pages, warm)  # one visit first: installs the samples, fills the caches
            proc = server_proc(port)
            before = server_usage(proc)
            timings: dict[str, list[float]] = {name: [] for name in pages}
            started = time.perf_counter()
            await asyncio.gather(*(session(browser, url, pages, timings) for _ in range(args.sessions)))
            wall = time.perf_counter() - started
            after = server_usage(proc)
            await browser.close()
    print(f"{args.sessions} sessions at once, each opening {', '.join(pages)}; all done in {wall:.1f} s")
    print(f"{'page':16s} {'warm-up':>8s} {'median':>8s} {'worst':>8s}  (seconds to first chart)")
    for name in pages:
        values = timings[name]
        print(f"{name or 'home':16s} {warm[name][0]:8.2f} {statistics.median(values):8.2f} {max(values):8.2f}")
    if before is not None and after is not None:
        views = args.sessions * len(pages)
        cpu = after[1] - before[1]
        print(
            f"server: {cpu:.1f} CPU s for {views} page views ({cpu / views:.2f} s each); the rest of the wall time "
            "is the browsers, which share this machine's cores"
        )
        print(f"server memory (RSS): {before[0]:.0f} MiB after the warm-up, {after[0]:.0f} MiB after the classroom")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--pages", default=",dark_knowledge,calibration,divergence")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
