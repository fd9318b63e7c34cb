"""The one job-progress widget: what a page submitted to the shared queue, polled once a second, never blocking.

`job_progress` runs a fragment every second while `active` (a page's jobs are unfinished): it draws the
page's `show()` (cards, a progress bar), the queue line and, once `show()` says all is done, reruns the
whole page (new runs appear in the sidebar; polling stops). `JobBatch` is the session state of a batch
of runs a page starts and watches (running / since when / the last note), with its Run and Cancel
buttons' callbacks; `job_card` draws one job with its live curves and a Cancel button.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from kdviz.jobs import Job, JobRegistry
from kdviz.plots import learning_curves, loss_term_curves
from kdviz.views import jobs as jv
from kdviz.views import train as tv
from ui.widgets import chart, guard

#: Seconds between two polls of a page's jobs.
POLL_SECONDS = 1.0
_NOTE_BOXES = {"success": st.success, "info": st.info, "error": st.error}


def job_progress(
    registry: JobRegistry,
    *,
    active: bool,
    show: Callable[[], bool],
    what: str,
    queue: bool = True,
    queue_note: str = "",
) -> None:
    """Every `POLL_SECONDS` while `active`: the queue's length (when `queue`), then `show()`, which returns True once
    everything the page waits for is done — then the whole page reruns and polling stops."""

    @st.fragment(run_every=POLL_SECONDS if active else None)
    def poll() -> None:
        with guard(what):
            if queue:
                st.caption(jv.queue_line(registry, queue_note))
            if show() and active:
                st.rerun(scope="app")

    poll()


def job_card(job: Job, owner: str, key: str) -> None:
    """One job: what it trains, its state, an epoch bar, live loss-term and accuracy curves, Cancel or Finished."""
    snap = job.snapshot()
    with st.container(border=True, key=f"{key}_job_{job.id}"):
        st.markdown(f"**{tv.describe_config(snap['config'])}** · job `{job.id[:10]}`")
        st.markdown(tv.job_line(snap))
        if snap["epochs"]:
            st.progress(min(1.0, snap["epoch"] / snap["epochs"]))
        if snap["history"]:
            left, right = st.columns(2)
            with left, guard("draw the loss terms"):
                chart(loss_term_curves(snap["history"]), key=f"{key}_terms_{job.id}")
            with right, guard("draw the accuracy"):
                metric = "val_accuracy" if "val_accuracy" in snap["history"][-1] else "train_accuracy"
                chart(learning_curves({"this run": snap["history"]}, metric), key=f"{key}_acc_{job.id}")
        if not job.finished:
            st.button("Cancel", key=f"{key}_cancel_{job.id}", on_click=_cancel_job, args=(job, owner))
        elif snap["state"] == "done":
            st.success("Finished: pick it in the sidebar of any page.")


def _cancel_job(job: Job, owner: str) -> None:
    """Let go of a job: it stops unless another session still watches it (then it trains on for them)."""
    others = [o for o in job.owners if o != owner]
    job.cancel(owner=owner)
    st.toast("Cancelled." if not others else f"You let go of it; it keeps training for {len(others)} other session(s).")


class JobBatch:
    """A batch of runs one page starts and watches, kept in session state under `key`_running / _started / _note."""

    def __init__(self, key: str) -> None:
        self.key = key

    @property
    def running(self) -> str | None:
        """The name of the batch being run (e.g. a preset), None when idle."""
        return st.session_state.get(f"{self.key}_running")

    def start(self, name: str) -> None:
        """Button callback: start submitting and polling batch `name`."""
        st.session_state[f"{self.key}_running"] = name
        st.session_state[f"{self.key}_started"] = None
        st.session_state.pop(f"{self.key}_note", None)

    def stop(self, kind: str, note: str) -> None:
        """Stop polling and leave a note (`kind`: success, info or error) for the next run of the page."""
        st.session_state.pop(f"{self.key}_running", None)
        st.session_state[f"{self.key}_note"] = (kind, note)

    def started(self, done: int) -> tuple[int, float]:
        """(runs stored when polling began, time.monotonic() then); the first call records `done`."""
        key = f"{self.key}_started"
        if st.session_state.get(key) is None:
            st.session_state[key] = (done, time.monotonic())
        return st.session_state[key]

    def show_note(self) -> None:
        kind, note = st.session_state.get(f"{self.key}_note", (None, None))
        if note:
            _NOTE_BOXES[kind](note)

    def progress(
        self,
        registry: JobRegistry,
        *,
        advance: Callable[[str], dict[str, Any]],
        lines: Callable[[dict[str, Any]], str],
        cancel: Callable[[str], str],
        finish: Callable[[str, dict[str, Any], int, float], str],
        what: str,
    ) -> None:
        """The batch's progress, polled every second while it runs (`job_progress`).

        `advance(name)` submits what can start and returns ``{total, done, complete, errors}``; `lines`
        describes the unfinished runs; `cancel(name)` lets go of them and returns the note to show;
        `finish(name, progress, done_at_start, seconds)` is called once all runs are stored and returns the
        success note.
        """

        def show() -> bool:
            name = self.running
            if name is None:
                self.show_note()
                return False
            progress = advance(name)
            done_at_start, since = self.started(progress["done"])
            if progress["errors"]:
                self.stop("error", "A run failed: " + "; ".join(progress["errors"]))
                return True
            if progress["complete"]:
                self.stop("success", finish(name, progress, done_at_start, time.monotonic() - since))
                return True
            st.progress(
                progress["done"] / progress["total"], text=f"{progress['done']} of {progress['total']} runs stored"
            )
            st.markdown(lines(progress))
            st.button("Cancel", key=f"{self.key}_cancel", on_click=self._cancel, args=(cancel, name))
            return False

        running = self.running is not None
        job_progress(registry, active=running, show=show, what=what, queue=running, queue_note=" (shared by everyone)")

    def _cancel(self, cancel: Callable[[str], str], name: str) -> None:
        self.stop("info", cancel(name))
