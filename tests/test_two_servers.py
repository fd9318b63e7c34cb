"""A class served by two app processes on one run store: a run is trained once, and the store stays whole."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdviz.serve import start_app, stop_app
from kdviz.store import RunStore
from ui.warmup import open_session, run_page, script_run

pytestmark = pytest.mark.slow

QUERY = "dataset=moons&tr_method=kd&tr_epochs=8"


async def click_train_student(url: str, seed: int) -> dict:
    """Open Train in a new session of the server at `url`, set the seed, click "Train student"."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    async with open_session(url, 120) as socket:
        first = await script_run(socket, "train", QUERY, timeout=120)
        assert first["errors"] == [], first["errors"]
        widgets = [WidgetState(id=first["ids"]["tr_seed"], int_value=seed)]
        widgets.append(WidgetState(id=first["ids"]["tr_submit_student"], trigger_value=True))
        return await script_run(socket, "train", QUERY, widgets, timeout=120)


def test_two_app_processes_on_one_home_train_a_run_once(tmp_path: Path):
    home = tmp_path / "home"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    servers = []
    try:
        for log_path in logs:
            with open(log_path, "wb") as log:
                servers.append(start_app(home, env={"KDVIZ_LOG_LEVEL": "INFO"}, log=log))
        urls = [url for _, url in servers]

        async def warm_then_click() -> list[dict]:
            await asyncio.gather(*(run_page(url, "train", 120) for url in urls))  # both install the samples
            return await asyncio.gather(*(click_train_student(url, seed=7) for url in urls))  # the same run

        clicks = asyncio.run(warm_then_click())
        for click in clicks:
            assert click["errors"] == [] and click["toasts"], click
        store = RunStore(home, recover=False)
        moons = lambda: [r for r in store.list(dataset="moons") if r.config.get("seed") == 7]  # noqa: E731
        deadline = time.monotonic() + 120
        while not moons() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(moons()) == 1
        time.sleep(1.5)  # the waiting process notices the run within its poll interval
        texts = [log.read_text() for log in logs]
        run_id = moons()[0].id
        trained = [text.count(f"job {run_id}: training") for text in texts]
        waited = [text.count(f"job {run_id}: another process") for text in texts]
        assert sorted(trained) == [0, 1] and sorted(waited) == [0, 1], texts
        assert not list(store.claims_dir.iterdir())  # the claim was released
    finally:
        for server, _ in servers:
            stop_app(server)
    store = RunStore(home)  # reopening recovers: nothing half-written to clean
    assert store.broken_runs() == {} and store.unlisted() == {}
    listing = subprocess.run(
        [sys.executable, "-m", "kdviz", "--home", str(home), "runs", "ls"], capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0 and run_id in listing.stdout, listing.stderr
