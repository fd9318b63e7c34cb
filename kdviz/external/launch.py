"""Open the app on a pair: `show(pair)` saves it and starts a kdviz server that can rebuild it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kdviz.models.external import ALLOW_ENV, allow_list
from kdviz.serve import free_port, start_app, stop_app

if TYPE_CHECKING:
    from kdviz.external.pair import Pair

_SERVERS: dict[str, Any] = {}


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules


def show(
    pair: Pair,
    name: str | None = None,
    *,
    port: int = 8501,
    address: str = "127.0.0.1",
    factories: dict[str, Any] | None = None,
    block: bool | None = None,
) -> str:
    """Save `pair` and open the app on it; prints and returns the URL.

    In a notebook the server runs in the background (the call returns at once); from a script
    `block` defaults to True: the server runs until Ctrl-C. Modules of `factories` are allowed on
    this server; pairs saved as exported programs need no permission. The server listens on
    `address` (loopback by default; ``"0.0.0.0"`` serves a classroom) and stops with `stop(url)`.
    """
    from kdviz.store import RunStore

    name = name or pair.name
    store = RunStore()
    pair.save(name, factories=factories, store=store)
    modules = [(f if isinstance(f, str) else f[0]).partition(":")[0].split(".")[0] for f in (factories or {}).values()]
    allowed = allow_list(*modules)
    env = {ALLOW_ENV: allowed} if allowed else {}
    process, base = start_app(store.root, port=free_port(port), env=env, address=address)
    url = f"{base}/?dataset={quote(name)}"
    print(f"kdviz: your pair {name!r} is at {url}", flush=True)
    if _in_notebook():
        try:
            from IPython.display import Markdown, display

            display(Markdown(f"[Open kdviz on {name}]({url})"))
        except ImportError:
            pass
    _SERVERS[url] = process
    if block if block is not None else not _in_notebook():
        try:
            process.wait()
        except KeyboardInterrupt:
            stop(url)
    return url


def stop(url: str | None = None) -> None:
    """Stop the server `show` started for `url` (default: every one it started)."""
    for key in [url] if url else list(_SERVERS):
        process = _SERVERS.pop(key, None)
        if process is not None:
            stop_app(process)
