"""Warm a freshly started server: one script run of every page, as a browser's first visits would do.

`python -m ui.warmup [streamlit run options]` waits for ``/_stcore/health``, then opens one Streamlit
session over the websocket (``/_stcore/stream``, protobuf messages; a plain GET of ``/`` only serves
the static front end and runs no script), asks for a run of the root page and waits until it has
finished. That run installs the sample models, builds the default dataset, loads the default pair
and calls `st.navigation` — which also ends Streamlit's folder-based multipage mode for this process
(see `ui.app`). Then every other page runs once, which fills the shared caches (arrays, figures) with
each page's default view. The launcher (`kdviz app`, `scripts/run_app.sh`) starts it in the background.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.request
from typing import Any

#: ForwardMsg.script_finished statuses that end a full run (not a fragment's).
_FINISHED = ("FINISHED_SUCCESSFULLY", "FINISHED_WITH_COMPILE_ERROR")
#: Element types whose widget ids `script_run` reports (by the widget's user key).
_WIDGETS = ("button", "number_input", "selectbox", "slider", "text_input", "checkbox", "toggle", "radio")


def server_url(argv: list[str]) -> str:
    """The loopback URL of the server that `streamlit run` starts with options `argv` (port, base path)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--server.port", dest="port", type=int, default=None)
    parser.add_argument("--server.baseUrlPath", dest="base", default="")
    parser.add_argument("--server.address", dest="address", default="")
    known, _ = parser.parse_known_args(argv)
    address = known.address or os.environ.get("STREAMLIT_SERVER_ADDRESS", "")
    host = address if address not in ("", "0.0.0.0", "::", "localhost") else "127.0.0.1"
    port = known.port or int(os.environ.get("STREAMLIT_SERVER_PORT", "8501"))
    base = (known.base or os.environ.get("STREAMLIT_SERVER_BASE_URL_PATH", "")).strip("/")
    return f"http://{host}:{port}" + (f"/{base}" if base else "")


def wait_healthy(url: str, timeout: float) -> None:
    """Return once `url`/_stcore/health answers 200; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become healthy within {timeout:.0f} s")
        time.sleep(0.3)


def open_session(url: str, timeout: float = 300.0) -> Any:
    """A new Streamlit session on the server at `url` (an async context manager yielding the websocket)."""
    from websockets.asyncio.client import connect

    ws_url = "ws" + url.removeprefix("http") + "/_stcore/stream"
    return connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=timeout)


async def script_run(
    socket: Any, page: str = "", query: str = "", widgets: list[Any] | None = None, timeout: float = 300.0
) -> dict[str, Any]:
    """Ask an open session for one run of `page` (with URL `query` and `widgets`' states) and read it to its end.

    Returns what the run showed: ``status`` (the finish status), ``errors`` (exceptions, error boxes,
    a page the app does not have), ``toasts``, ``markdown`` texts and widget ``ids`` by their user key.
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    request = BackMsg()
    request.rerun_script.query_string = query
    request.rerun_script.page_name = page
    request.rerun_script.page_script_hash = ""
    if widgets:
        request.rerun_script.widget_states.widgets.extend(widgets)
    await socket.send(request.SerializeToString())
    shown: dict[str, Any] = {"errors": [], "toasts": [], "markdown": [], "ids": {}}
    async with asyncio.timeout(timeout):
        async for frame in socket:
            if not isinstance(frame, bytes):
                continue
            msg = ForwardMsg()
            msg.ParseFromString(frame)
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                which = element.WhichOneof("type")
                if which == "exception":
                    shown["errors"].append(f"exception: {element.exception.message}")
                elif which == "alert" and element.alert.format == 1:  # ERROR
                    shown["errors"].append(element.alert.body)
                elif which == "toast":
                    shown["toasts"].append(element.toast.body)
                elif which == "markdown":
                    shown["markdown"].append(element.markdown.body)
                elif which in _WIDGETS:
                    widget_id = getattr(element, which).id
                    shown["ids"][widget_id.rsplit("-", 1)[-1]] = widget_id
            elif kind == "page_not_found":
                shown["errors"].append(f"page not found: {page!r}")
            elif kind == "script_finished":
                status = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
                if status in _FINISHED:
                    shown["status"] = status
                    return shown
    raise ConnectionError("the server closed the session before the run finished")


async def run_page(url: str, page: str = "", timeout: float = 300.0) -> tuple[str, list[str]]:
    """Open a new session on the server at `url`, run `page` ("" is the root) once; (finish status, errors shown).

    Errors are the texts of exceptions and error boxes the run displayed, and a page the app does not have.
    """
    async with open_session(url, timeout) as socket:
        shown = await script_run(socket, page, timeout=timeout)
    return shown["status"], shown["errors"]


def app_pages() -> list[str]:
    """The page names a session asks for ("" is Home), in the navigation's order."""
    from ui.app import DEFAULT_PAGE, PAGES

    files = [file for items in PAGES.values() for file, _, _ in items]
    return ["" if file == DEFAULT_PAGE else file.removesuffix(".py") for file in files]


def warm(url: str, timeout: float = 300.0, pages: list[str] | None = None, log: Any = None) -> float:
    """Wait for the server at `url`, then run Home and each of `pages` (default: every page) once in a
    throw-away session, so the samples, datasets and every page's default figures are ready in the shared
    caches before the first visitor; seconds it all took. `log(text)` gets a progress line per page."""
    wait_healthy(url, timeout)
    started = time.perf_counter()
    status, _ = asyncio.run(run_page(url, "", timeout))
    if status != "FINISHED_SUCCESSFULLY":
        raise RuntimeError(f"the warm-up run ended with {status}")
    todo = [page for page in (app_pages() if pages is None else pages) if page]
    for number, page in enumerate(todo, 1):
        page_started = time.perf_counter()
        asyncio.run(run_page(url, page, timeout))
        if log is not None:
            log(f"kdviz: warmed {page} ({number}/{len(todo)}) in {time.perf_counter() - page_started:.1f} s")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Warm the server that `streamlit run app.py argv...` starts; report on stderr, never fail the launcher."""
    url = server_url(sys.argv[1:] if argv is None else argv)
    try:
        seconds = warm(url, log=lambda line: print(line, file=sys.stderr))
    except Exception as error:  # noqa: BLE001 — a failed warm-up only means a slower first visit
        print(f"kdviz: warm-up of {url} failed ({error}); the first visitor waits for the set-up", file=sys.stderr)
        return 1
    print(f"kdviz: ready at {url}: warmed in {seconds:.1f} s (samples installed, every page's default view cached)",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
