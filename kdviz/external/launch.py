"""Open the app on a pair: `show(pair)` saves it and starts a kdviz server that can rebuild it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kdviz.models.external import ALLOW_ENV

if TYPE_CHECKING:
    from kdviz.external.pair import Pair

APP = Path(__file__).resolve().parent.parent.parent / "app.py"


def free_port(preferred: int = 8501) -> int:
    """`preferred` when nothing listens there, else a free port the system picks."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(port: int, streamlit_args: list[str] | None = None) -> list[str]:
    """The command line that serves the app (headless) on `port`."""
    if not APP.is_file():
        raise FileNotFoundError(f"app.py is not next to the kdviz package ({APP}): run from a checkout of kdviz")
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
        *(streamlit_args or []),
    ]  # fmt: skip


def server_env(allow_modules: list[str], home: Any = None) -> dict[str, str]:
    """This process's environment plus the server's allowed factory modules (and store, when given)."""
    env = dict(os.environ)
    allowed = [m for m in env.get(ALLOW_ENV, "").split(",") if m] + list(allow_modules)
    if allowed:
        env[ALLOW_ENV] = ",".join(dict.fromkeys(allowed))
    if home is not None:
        env["KDVIZ_HOME"] = str(home)
    return env


def wait_until_up(port: int, timeout: float = 60.0) -> bool:
    """True once the server at `port` answers its health check (False after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules


def show(
    pair: Pair,
    name: str | None = None,
    *,
    port: int = 8501,
    factories: dict[str, Any] | None = None,
    block: bool | None = None,
) -> str:
    """Save `pair` and open the app on it; prints and returns the URL.

    In a notebook the server runs in the background (the call returns at once); from a script
    `block` defaults to True: the server runs until Ctrl-C. Modules of `factories` are allowed on
    this server; pairs saved as exported programs need no permission.
    """
    from kdviz.store import RunStore

    name = name or pair.name
    store = RunStore()
    pair.save(name, factories=factories, store=store)
    modules = [
        (f if isinstance(f, str) else f[0]).partition(":")[0].split(".")[0] for f in (factories or {}).values()
    ]
    port = free_port(port)
    process = subprocess.Popen(server_command(port), env=server_env(modules, store.root))
    url = f"http://localhost:{port}/?dataset={quote(name)}"
    if not wait_until_up(port):
        process.terminate()
        raise RuntimeError(f"the kdviz server did not start on port {port}; see its output above")
    print(f"kdviz: your pair {name!r} is at {url}", flush=True)
    if _in_notebook():
        try:
            from IPython.display import Markdown, display

            display(Markdown(f"[Open kdviz on {name}]({url})"))
        except ImportError:
            pass
    if block if block is not None else not _in_notebook():
        try:
            process.wait()
        except KeyboardInterrupt:
            process.terminate()
    show.process = process  # type: ignore[attr-defined]  # the last server, for callers that stop it
    return url
