"""Run the Streamlit app in a child process on a loopback port (browser tests, page timings, `kdviz.show`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens on it, else a free port the system picks."""
    if preferred is not None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(
    home: Path | str,
    *,
    port: int | None = None,
    timeout: float = 90.0,
    env: Mapping[str, str] | None = None,
    log: IO[bytes] | None = None,
    address: str = "127.0.0.1",
) -> tuple[subprocess.Popen, str]:
    """Start `streamlit run app.py` with KDVIZ_HOME=`home` (plus `env`); return (process, base URL) once healthy.

    Output goes to `log` (default: this process's own). The caller stops the process.
    """
    port = port or free_port()
    app = ROOT / "app.py"
    if not app.is_file():
        raise FileNotFoundError(f"app.py is not next to the kdviz package ({app}): run from a checkout of kdviz")
    environment = dict(os.environ, KDVIZ_HOME=str(home), PYTHONUNBUFFERED="1", **(env or {}))
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
               "--server.address", address, "--server.headless", "true",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT if log else None)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the app exited with {server.returncode}; see its output")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return server, url
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not start within {timeout:.0f} s")
            time.sleep(0.3)
    except BaseException:
        stop_app(server)
        raise


def stop_app(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


@contextmanager
def serve_app(
    home: Path | str, *, port: int | None = None, timeout: float = 90.0, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Start the app with KDVIZ_HOME=`home` (its log in ``home/server.log``); yield its base URL; stop it after."""
    log_path = Path(home) / "server.log"
    with open(log_path, "wb") as log:
        try:
            server, url = start_app(home, port=port, timeout=timeout, env=env, log=log)
        except (RuntimeError, TimeoutError) as error:
            raise type(error)(f"{error} ({log_path})") from error
        try:
            yield url
        finally:
            stop_app(server)
