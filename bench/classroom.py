"""A classroom on one server, measured: N sessions open pages at the same moment.

Two modes, both against `streamlit run app.py` on a loopback port with a fresh run store:

- ``protocol`` (default): each session speaks Streamlit's own websocket protocol, as a browser does
  (BackMsg ``rerun_script`` for a page over ``/_stcore/stream``, ForwardMsgs until
  ``script_finished``) — no browsers, so the numbers are the server's alone. Each session's time
  runs from its request to its script's finish; exceptions shown by a page count as errors.
- ``browser``: N Chromium contexts (Debian's /usr/bin/chromium) open the pages one after another,
  all at once; the browsers share this machine's cores with the server.

Prints per page p50 / p95 / max seconds, errors, the server's CPU seconds per view and its memory.

    python bench/classroom.py --sessions 1,10,30                       # every page, same page for all sessions
    python bench/classroom.py --sessions 30 --mix                      # 30 sessions spread over the pages
    python bench/classroom.py --mode browser --sessions 10 --pages ,calibration
    python bench/classroom.py --jobs 30                                # 30 sessions each queue a training job

``--jobs N``: N sessions open the Train page on ``moons`` at once, each sets its own seed and clicks
"Train student" (a 3-epoch kd student of the shipped teacher) — N different jobs in the shared queue.
Reports the click's answer time, whether each session saw its job queued (with its queue position)
and no error, how long until all N runs are stored, and page views of other sessions meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from kdviz.serve import serve_app

CHROMIUM = "/usr/bin/chromium"
CONTENT = ".js-plotly-plot, [data-testid='stDataFrame'], [data-testid='stMetric']"
FINISHED = "[data-testid='stApp'][data-test-script-state='notRunning']"
ALL_PAGES = [
    "", "dark_knowledge", "calibration", "representations", "attributions", "divergence", "explanation", "runs",
    "papers", "translation",
]  # fmt: skip


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- protocol mode -------------------------------------------------------------------------------------


async def protocol_view(url: str, page: str, timeout: float = 600.0) -> tuple[float, list[str]]:
    """Open `page` in a new session over the websocket; (seconds to the script's finish, error texts shown)."""
    from ui.warmup import run_page

    started = time.perf_counter()
    try:
        status, errors = await run_page(url, page, timeout)
    except (ConnectionError, TimeoutError, OSError) as error:
        return time.perf_counter() - started, [f"{type(error).__name__}: {error}"]
    if status != "FINISHED_SUCCESSFULLY":
        errors.append(status)
    return time.perf_counter() - started, errors


async def protocol_burst(url: str, pages: list[str]) -> list[tuple[str, float, list[str]]]:
    """One session per entry of `pages`, all started at once."""
    results = await asyncio.gather(*(protocol_view(url, page) for page in pages))
    return [(page, seconds, errors) for page, (seconds, errors) in zip(pages, results)]


def report(title: str, results: list[tuple[str, float, list[str]]], cpu: float, rss: float | None) -> None:
    by_page: dict[str, list[float]] = {}
    for page, seconds, _ in results:
        by_page.setdefault(page or "home", []).append(seconds)
    errors = [f"{page or 'home'}: {e}" for page, _, errs in results for e in errs]
    print(f"\n{title}: {len(results)} views, {len(errors)} errors, server {cpu:.1f} CPU s "
          f"({cpu / len(results):.2f} s per view)" + (f", RSS {rss:.0f} MiB" if rss else ""))  # fmt: skip
    print(f"  {'page':16s} {'n':>3s} {'p50':>7s} {'p95':>7s} {'max':>7s}")
    for page, values in by_page.items():
        print(f"  {page:16s} {len(values):3d} {statistics.median(values):7.2f} {percentile(values, 0.95):7.2f} "
              f"{max(values):7.2f}")  # fmt: skip
    for error in errors[:5]:
        print("  error:", error[:200])


def run_protocol(args: argparse.Namespace) -> None:
    pages = [p.strip() for p in args.pages.split(",")] if args.pages is not None else ALL_PAGES
    with tempfile.TemporaryDirectory() as home, serve_app(home) as url:
        proc = server_proc(int(url.rsplit(":", 1)[1]))
        started = time.perf_counter()
        asyncio.run(protocol_burst(url, [""]))  # the first visit installs the samples
        print(f"cold start: first view {time.perf_counter() - started:.1f} s")
        for page in pages:  # one warm-up view per page fills the shared caches, as a teacher's preview would
            asyncio.run(protocol_burst(url, [page]))
        for n in [int(s) for s in args.sessions.split(",")]:
            if args.mix:
                before = server_usage(proc)
                results = asyncio.run(protocol_burst(url, [pages[i % len(pages)] for i in range(n)]))
                after = server_usage(proc)
                report(f"{n} sessions over {len(pages)} pages at once", results, after[1] - before[1], after[0])
                continue
            for page in pages:
                before = server_usage(proc)
                results = asyncio.run(protocol_burst(url, [page] * n))
                after = server_usage(proc)
                report(f"{n} sessions open {page or 'home'} at once", results, after[1] - before[1], after[0])


# -- job mode: every session queues its own training job ------------------------------------------------

JOB_QUERY = "dataset=moons&tr_method=kd&tr_epochs=3"


async def queue_job(url: str, seed: int, timeout: float = 600.0) -> tuple[float, list[str], str]:
    """Open Train, set the seed, click "Train student"; (seconds the click took, errors, the job line seen)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    from ui.warmup import open_session, script_run

    async with open_session(url, timeout) as socket:
        first = await script_run(socket, "train", JOB_QUERY, timeout=timeout)
        ids = first["ids"]
        missing = [key for key in ("tr_seed", "tr_submit_student") if key not in ids]
        if missing or first["errors"]:
            return 0.0, first["errors"] + [f"widget {key} not on the Train page" for key in missing], ""
        widgets = [WidgetState(id=ids["tr_seed"], int_value=seed), WidgetState(id=ids["tr_submit_student"])]
        widgets[1].trigger_value = True
        started = time.perf_counter()
        clicked = await script_run(socket, "train", JOB_QUERY, widgets, timeout)
        seconds = time.perf_counter() - started
    line = next((text for text in clicked["markdown"] if "queued" in text or "running" in text), "")
    errors = clicked["errors"] + ([] if clicked["toasts"] else ["no toast after the click"])
    return seconds, errors, line


def run_jobs(args: argparse.Namespace) -> None:
    from kdviz.store import RunStore

    n = int(args.jobs)
    with tempfile.TemporaryDirectory() as home, serve_app(home) as url:
        proc = server_proc(int(url.rsplit(":", 1)[1]))
        asyncio.run(protocol_burst(url, ["", "train", "calibration"]))  # installs the samples, warms the pages
        store = RunStore(Path(home), recover=False)
        before = {r.id for r in store.list(dataset="moons")}
        usage = server_usage(proc)
        started = time.perf_counter()
        clicks = asyncio.run(_gather(*(queue_job(url, 100 + i) for i in range(n))))
        answered = [c[0] for c in clicks]
        print(f"\n{n} sessions each queue a different job (moons, kd, 3 epochs): clicks answered "
              f"p50 {statistics.median(answered):.2f} s, p95 {percentile(answered, 0.95):.2f} s, "
              f"max {max(answered):.2f} s")  # fmt: skip
        errors = [e for _, errs, _ in clicks for e in errs]
        positions = [line for _, _, line in clicks if "position" in line]
        print(f"  {len(errors)} errors; {len(positions)} sessions saw their queue position, e.g. "
              f"{positions[-1] if positions else '-'!r}")  # fmt: skip
        for error in errors[:5]:
            print("  error:", error[:200])
        views = asyncio.run(protocol_burst(url, ["calibration"] * n))
        print(f"  meanwhile {n} other sessions opened calibration: p95 "
              f"{percentile([v[1] for v in views], 0.95):.2f} s, {sum(len(v[2]) for v in views)} errors")  # fmt: skip
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            done = {r.id for r in store.list(dataset="moons")} - before
            if len(done) >= n:
                break
            time.sleep(1.0)
        after = server_usage(proc)
        cpu = f", server {after[1] - usage[1]:.0f} CPU s, RSS {after[0]:.0f} MiB" if usage and after else ""
        print(f"  {len(done)}/{n} runs stored {time.perf_counter() - started:.1f} s after the clicks{cpu}")


async def _gather(*tasks):
    return await asyncio.gather(*tasks)


# -- browser mode --------------------------------------------------------------------------------------


async def browser_session(browser, url: str, pages: list[str], timings: dict[str, list[float]]) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    for name in pages:
        started = time.perf_counter()
        await page.goto(f"{url}/{name}")
        await page.wait_for_selector(CONTENT, timeout=300_000)
        timings[name].append(time.perf_counter() - started)
        await page.wait_for_selector(FINISHED, timeout=300_000)
    await context.close()


async def run_browser_async(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    pages = [p.strip() for p in (args.pages if args.pages is not None else ",dark_knowledge,calibration").split(",")]
    sessions = int(args.sessions.split(",")[-1])
    with tempfile.TemporaryDirectory() as home, serve_app(home) as url:
        port = int(url.rsplit(":", 1)[1])
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            warm: dict[str, list[float]] = {name: [] for name in pages}
            await browser_session(browser, url, pages, warm)  # one visit first: installs the samples
            proc = server_proc(port)
            before = server_usage(proc)
            timings: dict[str, list[float]] = {name: [] for name in pages}
            started = time.perf_counter()
            await asyncio.gather(*(browser_session(browser, url, pages, timings) for _ in range(sessions)))
            wall = time.perf_counter() - started
            after = server_usage(proc)
            await browser.close()
    print(f"{sessions} browser sessions at once, each opening {', '.join(pages)}; all done in {wall:.1f} s")
    print(f"{'page':16s} {'warm-up':>8s} {'median':>8s} {'worst':>8s}  (seconds to first chart)")
    for name in pages:
        values = timings[name]
        print(f"{name or 'home':16s} {warm[name][0]:8.2f} {statistics.median(values):8.2f} {max(values):8.2f}")
    if before is not None and after is not None:
        views = sessions * len(pages)
        cpu = after[1] - before[1]
        print(f"server: {cpu:.1f} CPU s for {views} page views ({cpu / views:.2f} s each); RSS {after[0]:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("protocol", "browser"), default="protocol")
    parser.add_argument("--sessions", default="1,10,30", help="comma-separated session counts (browser: the last)")
    parser.add_argument("--pages", default=None, help="comma-separated page paths ('' is Home); default: all ten")
    parser.add_argument("--mix", action="store_true", help="spread the sessions over the pages instead of one page")
    parser.add_argument("--jobs", default=None, help="N sessions each queue a different training job (see above)")
    args = parser.parse_args()
    if args.jobs:
        run_jobs(args)
    elif args.mode == "browser":
        asyncio.run(run_browser_async(args))
    else:
        run_protocol(args)


if __name__ == "__main__":
    main()
